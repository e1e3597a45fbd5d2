"""Dask worker plugins for tests/test_cluster.py, importable by the workers (the cluster fixture puts
this folder on their PYTHONPATH)."""

from __future__ import annotations

import os

from distributed import WorkerPlugin


class KillOnce(WorkerPlugin):
    """SIGKILL the worker process when it starts its ``after``-th task, once per cluster (a marker file
    says it happened): the scheduler sees the worker die mid-task, the nanny starts another."""

    name = "seco-test-kill-once"

    def __init__(self, marker: str, after: int):
        self.marker, self.after = marker, after

    def setup(self, worker):
        self.started = 0

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing":
            return
        self.started += 1
        if self.started >= self.after:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
            os.kill(os.getpid(), 9)


_transport = {}


def request_through_quota(endpoint: str, quota: str, limit: int) -> int:
    """One request through Earth Engine's transport (as the source makes them), built once per worker
    process with a ``limit`` of concurrent requests for the quota ``quota``; returns the status."""
    from seco_data.sources.earthengine_client import Transport

    t = _transport.get(quota)
    if t is None:
        t = _transport[quota] = Transport(endpoint, timeout=30.0, max_concurrency=limit, requests_per_second=1000.0,
                                          quota=quota)
    response, _ = t.request(endpoint + "/v1/ping")
    return int(response.status)
