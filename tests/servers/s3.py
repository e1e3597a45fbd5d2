"""A loopback S3-compatible server for object-storage tests: moto's server mode (a real HTTP server
speaking the S3 wire protocol) behind a :class:`~servers.base.LoopbackServer` that forwards every
request to it, so tests record what reached storage and inject faults (503 SlowDown, timeouts,
dropped connections) as for the other services."""

from __future__ import annotations

import http.client

from .base import LoopbackServer, Response

BUCKET = "seco-test"
#: S3's throttling answer (what AWS sends when a prefix is over its request rate)
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


class S3Server(LoopbackServer):
    """Start with ``with S3Server() as s3:``; ``s3.env()`` is the environment a client needs."""

    def __init__(self, bucket: str = BUCKET):
        super().__init__()
        self.bucket = bucket
        self._moto = None

        @self.route("*", ".*")
        def forward(req, m):
            host, port = self._moto.get_host_and_port()
            conn = http.client.HTTPConnection(host, port, timeout=60)
            try:
                path = req.path + (f"?{req.raw_query}" if req.raw_query else "")
                headers = {k: v for k, v in req.headers.items() if k.lower() not in _HOP}
                conn.request(req.method, path, body=req.body or None, headers=headers)
                r = conn.getresponse()
                body = r.read()
                keep = {k: v for k, v in r.getheaders() if k.lower() not in _HOP}
                if req.method == "HEAD" and r.getheader("Content-Length"):
                    keep["Content-Length"] = r.getheader("Content-Length")  # the object's size
                return Response(r.status, body, keep)
            finally:
                conn.close()

    def start(self) -> "S3Server":
        from moto.server import ThreadedMotoServer

        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        super().start()
        import boto3

        boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="test",
                     aws_secret_access_key="test").create_bucket(Bucket=self.bucket)
        self.requests.clear()
        return self

    def stop(self) -> None:
        super().stop()
        if self._moto is not None:
            self._moto.stop()

    def env(self) -> dict[str, str]:
        """The standard AWS variables pointing a client at this server."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test-secret",
                "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}

    def keys(self, prefix: str = "") -> dict[str, bytes]:
        """Every object under ``prefix`` and its bytes (read through boto3, not seco)."""
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
        out = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                out[o["Key"]] = s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read()
        return out
