"""A real HTTP server on 127.0.0.1 for tests: routes, recorded requests, injected faults, latency.

Each remote-source test server (Earth Engine, Sentinel Hub, STAC) builds on :class:`LoopbackServer`:
it registers routes that answer in the service's wire format; tests then assert on
``server.requests`` (what was asked) and inject faults with :meth:`LoopbackServer.fault`.

Fault kinds (applied to the next ``times`` requests whose path matches ``path``):
- ``status``: answer ``status`` (429, 500, 503 ...) with an optional ``Retry-After`` header value
  (given verbatim: seconds for most services, milliseconds for Sentinel Hub) and a JSON ``body``;
- ``timeout``: hold the request for ``seconds`` before answering normally (clients time out first);
- ``drop``: close the connection without answering;
- ``truncate``: announce the full Content-Length, send half the body, close;
- ``garbage``: answer 200 with ``body`` (default: malformed JSON).

``peak`` records the most requests the server was answering at once (quotas are tested on it).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str  # without the query
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    raw_query: str = ""

    def json(self):
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj, status: int = 200, headers: dict | None = None) -> "Response":
        return cls(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})


@dataclass
class Fault:
    kind: str
    path: str = ".*"
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    seconds: float = 5.0
    body: bytes | None = None
    hits: int = 0


Handler = Callable[[Request, re.Match], Response]


class LoopbackServer:
    def __init__(self):
        self._routes: list[tuple[str, re.Pattern, Handler]] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.latency = 0.0  # seconds added to every answer
        self.active = 0  # requests being answered now
        self.peak = 0  # the most ever answered at once
        self._httpd: ThreadingHTTPServer | None = None

    # -- set-up ----------------------------------------------------------------------------------
    def route(self, method: str, pattern: str):
        """Decorator: ``handler(request, match) -> Response`` for paths fully matching ``pattern``."""
        def deco(fn: Handler) -> Handler:
            self._routes.append((method.upper(), re.compile(pattern), fn))
            return fn
        return deco

    def fault(self, kind: str, path: str = ".*", times: int = 1, **kw) -> Fault:
        f = Fault(kind, path, times, **kw)
        with self._lock:
            self._faults.append(f)
        return f

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def calls(self, method: str | None = None, path: str = ".*") -> list[Request]:
        rx = re.compile(path)
        with self._lock:
            return [r for r in self.requests if (method is None or r.method == method) and rx.search(r.path)]

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> "LoopbackServer":
        server = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                try:
                    server._dispatch(self)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- dispatch --------------------------------------------------------------------------------
    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.hits < f.times and re.search(f.path, path):
                    f.hits += 1
                    return f
        return None

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        h.seco_answering = True
        try:
            self._dispatch_one(h)
        finally:
            self._answered(h)

    def _answered(self, h: BaseHTTPRequestHandler) -> None:
        """The request no longer counts as being answered: called before its answer goes out (a client
        that has it may send the next request before this thread gets back here), or at the end."""
        with self._lock:
            if getattr(h, "seco_answering", False):
                h.seco_answering = False
                self.active -= 1

    def _dispatch_one(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        req = Request(h.command, parts.path, parse_qs(parts.query), dict(h.headers.items()), body, parts.query)
        with self._lock:
            self.requests.append(req)
        if self.latency:
            time.sleep(self.latency)
        fault = self._take_fault(parts.path)
        if fault is not None:
            if fault.kind == "drop":
                h.close_connection = True
                h.connection.shutdown(2)
                return
            if fault.kind == "timeout":
                time.sleep(fault.seconds)
            elif fault.kind == "status":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                body = fault.body if fault.body is not None else json.dumps(
                    {"error": {"code": fault.status, "message": "injected fault", "status": "UNAVAILABLE"}}).encode()
                self._answered(h)
                self._send(h, Response(fault.status, body, {"Content-Type": "application/json", **headers}),
                           head=req.method == "HEAD")  # a HEAD answer has no body
                return
            elif fault.kind == "garbage":
                self._answered(h)
                self._send(h, Response(200, fault.body if fault.body is not None else b'{"oops": [1, 2',
                                       {"Content-Type": "application/json"}))
                return
        resp = self._answer(req)
        self._answered(h)
        if fault is not None and fault.kind == "truncate":
            h.send_response(resp.status)
            for k, v in resp.headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(resp.body)))
            h.end_headers()
            h.wfile.write(resp.body[: len(resp.body) // 2])
            h.close_connection = True
            return
        self._send(h, resp, head=req.method == "HEAD")

    def _answer(self, req: Request) -> Response:
        for method, rx, fn in self._routes:
            if method in (req.method, "*") or (req.method == "HEAD" and method == "GET"):
                m = rx.fullmatch(req.path)
                if m:
                    try:
                        return fn(req, m)
                    except Exception as e:  # a bug in a test server: answer 500 and say why
                        return Response.json({"error": {"code": 500, "message": f"test server: {e!r}"}}, 500)
        return Response.json({"error": {"code": 404, "message": f"no route for {req.method} {req.path}"}}, 404)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, resp: Response, head: bool = False) -> None:
        # headers and body go out in two writes: without TCP_NODELAY each answer waits ~40 ms for
        # the client's delayed ACK (Nagle)
        h.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        h.send_response(resp.status)
        for k, v in resp.headers.items():
            h.send_header(k, v)
        if not any(k.lower() == "content-length" for k in resp.headers):  # (a HEAD answer may give the GET's)
            h.send_header("Content-Length", str(len(resp.body)))
        h.end_headers()
        if not head:
            h.wfile.write(resp.body)


def file_response(path: Path, req: Request, content_type: str = "image/tiff") -> Response:
    """Serve a file with HTTP range support (``bytes=a-b``), as object stores serve COGs."""
    data = Path(path).read_bytes()
    rng = req.headers.get("Range") or req.headers.get("range")
    headers = {"Content-Type": content_type, "Accept-Ranges": "bytes"}
    if rng:
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
        if not m:
            return Response(416, b"", headers)
        start = int(m.group(1)) if m.group(1) else len(data) - int(m.group(2))
        end = int(m.group(2)) if m.group(1) and m.group(2) else len(data) - 1
        end = min(end, len(data) - 1)
        if start > end:
            return Response(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
        return Response(206, data[start:end + 1], {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"})
    return Response(200, data, headers)
