"""Service quotas that hold for the whole run, on one machine or on a Dask cluster.

A source caps its concurrent requests and its request rate (Earth Engine: 40 concurrent requests
and a rate per project). In one process a ``threading`` semaphore and a token bucket do it; on a
Dask cluster every worker process runs its own source, so the cap is a ``distributed.Semaphore``
shared through the scheduler (one lease per request in flight, cluster-wide) and the rate is split
evenly among the worker processes: adding machines never breaks the quota.
"""

from __future__ import annotations

import threading


def _dask_worker():
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        return get_worker()
    except ValueError:  # not inside a Dask worker
        return None


def on_cluster() -> bool:
    """Whether this code runs inside a Dask worker."""
    return _dask_worker() is not None


def concurrency_limit(name: str, limit: int):
    """A context-manager semaphore of ``limit`` slots: process-wide here, cluster-wide on Dask
    (``name`` identifies the quota, e.g. the service and project)."""
    if on_cluster():
        from distributed import Semaphore

        return Semaphore(max_leases=limit, name=f"seco-quota-{name}")
    return threading.BoundedSemaphore(limit)


def rate_share(rate: float) -> float:
    """This process's share of a request rate: all of it here, 1/N of it on each of N Dask worker
    processes."""
    worker = _dask_worker()
    if worker is None:
        return rate
    try:
        n = len(worker.client.scheduler_info(n_workers=-1)["workers"]) if hasattr(worker, "client") else 1
    except Exception:  # noqa: BLE001 - an unreachable scheduler: be conservative only as far as known
        n = 1
    return rate / max(1, n)


__all__ = ["concurrency_limit", "on_cluster", "rate_share"]
