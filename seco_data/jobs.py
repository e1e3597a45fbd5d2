"""One bounded worker pool for every long command: sample, both exports, import and thumbnails.

:class:`Pool` runs tasks inline, on threads (work that waits on a network) or on processes (work
that needs the CPU). Whatever the kind:

- a worker is prepared once by ``setup()`` (a source with its HTTP client, say); a task reaches
  what it returned through :func:`context`; ``teardown`` releases it when the pool closes;
- process workers ignore Ctrl-C (the parent handles it), use one BLAS thread each, and exit by
  themselves when their parent dies (kill -9): they never outlive it, so a rerun cannot start while
  one of them still writes (they share the parent's output lock);
- a worker killed from outside (out of memory) surfaces as :class:`~seco_data.errors.WorkerDied`,
  not as an internal error;
- leaving the pool's ``with`` block on an error or Ctrl-C drops queued tasks and waits for the running
  ones, which end by themselves (each task writes its output atomically or not at all);
- the number of workers is capped (:func:`cap_workers`): never more than there are tasks, nor more
  processes than a few per core.

:func:`run` feeds a pool from an iterator with a bounded number of tasks in flight. Progress is one
event type, :class:`Progress`, for every command; the CLI draws it.

On a Dask cluster (:func:`use_cluster`: ``--cluster tcp://HOST:8786``, ``--cluster local:N`` or
``SECO_CLUSTER``), every thread and process pool of the command runs on the cluster's workers instead
(kind ``dask``): the same tasks, the same ``setup`` (once per worker thread), the same results; this
process stays the only writer of the ledger. A worker that dies is replaced by the cluster and its
tasks run again (they write atomically, so a rerun task writes the same files);
:class:`~seco_data.errors.WorkerDied` only when the scheduler gives a task up.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

from .errors import UsageError, WorkerDied

log = logging.getLogger(__name__)

KINDS = ("inline", "thread", "process", "dask")
#: most worker processes per core, and most threads, whatever --workers asks for
PROCESSES_PER_CORE = 4
MAX_THREADS = 256

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """What a long command has done so far: units done (resumed ones included), the total when
    known, counts by outcome (accepted/rejected, written/present/failed, ...), the stage for work in
    several passes (evaluation: features, epochs) and figures worth showing (loss, images/s)."""

    done: int
    total: int | None = None
    unit: str = "item"
    counts: Mapping[str, int] = field(default_factory=dict)
    stage: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[Progress], None]


def default_workers(kind: str) -> int:
    """Workers when the user names no number: one process per core, or 8 threads (network waits)."""
    return 8 if kind == "thread" else (os.cpu_count() or 1)


def check_workers(workers: int | None) -> None:
    """Refuse a number of workers that is not a whole number of at least 1 (None: the default)."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UsageError(f"--workers must be a whole number of at least 1, got {workers!r}")


def cap_workers(workers: int | None, kind: str, tasks: int | None = None) -> int:
    """``workers`` (None: :func:`default_workers`) within sane bounds for ``kind`` (and never more
    than ``tasks``); warns when capped."""
    check_workers(workers)
    if workers is None:
        workers = default_workers(kind)
    limit = MAX_THREADS if kind == "thread" else PROCESSES_PER_CORE * (os.cpu_count() or 1)
    n = min(workers, limit)
    if tasks is not None:
        n = max(1, min(n, tasks))
    if n < workers and workers > limit:
        log.warning("--workers %d capped to %d (%s)", workers, n,
                    f"at most {MAX_THREADS} threads" if kind == "thread"
                    else f"at most {PROCESSES_PER_CORE} processes per core on {os.cpu_count()} cores")
    return n


# -- worker side ----------------------------------------------------------------------------------

_thread_ctx = threading.local()
_process_ctx: list = []  # [context] in a worker process


def context() -> Any:
    """What the pool's ``setup()`` returned, in the worker running the current task."""
    if hasattr(_thread_ctx, "value"):
        return _thread_ctx.value
    if _process_ctx:
        return _process_ctx[0]
    raise RuntimeError("jobs.context() called outside a pool task")


def _watch_parent(ppid: int) -> None:
    """Exit when the pool's owner ``ppid`` dies (kill -9): never outlive it. A forked worker is its
    child (reparented when it dies); one started by a fork server is not, and asks whether it lives."""
    if os.getppid() == ppid:
        while os.getppid() == ppid:
            time.sleep(0.2)
    else:
        while True:
            try:
                os.kill(ppid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
            time.sleep(0.2)
    os._exit(1)


def _init_process(ppid: int, setup: Callable[[], Any] | None, environ: dict | None = None) -> None:
    from threadpoolctl import threadpool_limits

    if environ is not None:  # a fork server's child has the server's environment: take the parent's
        os.environ.clear()
        os.environ.update(environ)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True, name="seco-watch-parent").start()
    threadpool_limits(limits=1)  # parallelism comes from the workers; BLAS pools would oversubscribe
    _thread_ctx.__dict__.clear()  # a context of the forking thread is not this worker's
    _process_ctx[:] = [setup() if setup is not None else None]


def _call_in_process(fn: Callable, args: tuple, kwargs: dict):
    return fn(*args, **kwargs)


_dask_contexts: dict = {}  # (pool token, thread id) -> context, in a Dask worker process
_dask_lock = threading.Lock()


def _call_on_dask(token: str, setup: Callable[[], Any] | None, fn: Callable, args: tuple, kwargs: dict):
    """A task on a Dask worker thread: the pool's context of this thread (made once), then ``fn``."""
    key = (token, threading.get_ident())
    with _dask_lock:
        made = key in _dask_contexts
    if not made:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        value = setup() if setup is not None else None
        with _dask_lock:
            _dask_contexts[key] = value
    _thread_ctx.value = _dask_contexts[key]
    try:
        return fn(*args, **kwargs)
    finally:
        del _thread_ctx.value


def _teardown_on_dask(token: str, teardown: Callable[[Any], None] | None) -> int:
    with _dask_lock:
        mine = [k for k in _dask_contexts if k[0] == token]
        values = [_dask_contexts.pop(k) for k in mine]
    for value in values:
        if teardown is not None:
            try:
                teardown(value)
            except Exception as e:  # noqa: BLE001 - closing must not hide the run's own outcome
                log.debug("worker teardown failed: %s", e)
    return len(values)


# -- the cluster ------------------------------------------------------------------------------------

_cluster: dict = {"client": None}


def current_client():
    """The Dask client of :func:`use_cluster`, or None when commands run on this machine."""
    return _cluster["client"]


@contextlib.contextmanager
def use_cluster(address: str | None):
    """Run the pools of the commands inside this block on a Dask cluster: ``tcp://HOST:PORT`` (a
    running scheduler), ``local:N`` (start N worker processes here, one thread each; ``local:NxT``: T
    threads each) or None (no cluster, unless ``SECO_CLUSTER`` names one)."""
    address = address or os.environ.get("SECO_CLUSTER") or None
    if not address:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError("--cluster needs Dask distributed", hint="pip install 'seco[cluster]'") from None
    cluster = None
    if address.startswith("local:"):
        spec = address.split(":", 1)[1]
        n, _, t = spec.partition("x")
        if not n.isdigit() or int(n) < 1 or (t and (not t.isdigit() or int(t) < 1)):
            raise UsageError(f"--cluster {address!r}: use local:N or local:NxT (N worker processes, T threads each)")
        cluster = LocalCluster(n_workers=int(n), threads_per_worker=int(t or 1), processes=True, host="127.0.0.1",
                               dashboard_address=":0", protocol="tcp")
        address = cluster.scheduler_address
    elif not address.startswith(("tcp://", "tls://", "ucx://", "ws://", "wss://", "inproc://")):
        raise UsageError(f"--cluster {address!r} is not a scheduler address",
                         hint="pass tcp://HOST:8786 (a running dask scheduler) or local:N")
    try:
        client = Client(address, timeout=30)
    except (OSError, TimeoutError) as e:
        if cluster is not None:
            cluster.close()
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {e}",
                         hint="start it (dask scheduler / dask-jobqueue) or check --cluster") from None
    previous = _cluster["client"]
    _cluster["client"] = client
    log.info("running on the Dask cluster at %s (%d worker threads)", address, sum(client.nthreads().values()))
    try:
        yield client
    finally:
        _cluster["client"] = previous
        client.close()
        if cluster is not None:
            cluster.close()


# -- the pool -------------------------------------------------------------------------------------


def _start_method(setup) -> str:
    """fork (fast: workers inherit what is imported), unless object storage was used here: its I/O
    runtime (obstore's tokio) does not survive a fork, so workers then start from a fork server that
    never touched it (their set-up must then pickle; one that does not is forked, and must not use
    object storage)."""
    methods = mp.get_all_start_methods()
    storage = sys.modules.get("seco_data.storage")
    if storage is not None and storage.runtime_started() and "forkserver" in methods:
        try:
            pickle.dumps(setup)
            return "forkserver"
        except (pickle.PicklingError, AttributeError, TypeError):
            log.debug("pool set-up %r does not pickle: forked", setup)
    return "fork" if "fork" in methods else "spawn"


class Pool:
    """A bounded pool of ``workers`` of ``kind`` (see the module docstring)."""

    def __init__(self, workers: int = 1, *, kind: str = "process", setup: Callable[[], Any] | None = None,
                 teardown: Callable[[Any], None] | None = None, name: str = "seco", local: bool = False):
        if kind not in KINDS:
            raise UsageError(f"unknown pool kind {kind!r}: use one of {', '.join(KINDS)}")
        client = None if local else _cluster["client"]  # local: work on this machine's files, never the cluster
        if client is not None and kind in ("thread", "process", "dask"):
            kind = "dask"
            workers = sum(client.nthreads().values()) or 1
        self.kind = "inline" if workers <= 1 and kind != "dask" else kind
        self.workers = max(1, workers)
        self._client = client if self.kind == "dask" else None
        self._token = f"{name}-{os.getpid()}-{id(self)}-{time.monotonic_ns()}"
        self.setup, self.teardown = setup, teardown
        self._made: list = []  # contexts made in this process (inline and thread kinds)
        self._made_lock = threading.Lock()
        self._executor: cf.Executor | None = None
        if self.kind == "thread":
            self._executor = cf.ThreadPoolExecutor(self.workers, thread_name_prefix=name)
        elif self.kind == "process":
            method = _start_method(setup)
            # (the fork server started with the environment of its time: object storage's endpoint and
            # credentials, say, may have changed since)
            environ = dict(os.environ) if method == "forkserver" else None
            self._executor = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context(method),
                                                    initializer=_init_process, initargs=(os.getpid(), setup, environ))
        elif self.kind == "dask":
            self._executor = self._client.get_executor(pure=False)

    @property
    def capacity(self) -> int:
        """How many tasks to keep in flight to keep every worker busy."""
        return 1 if self.kind == "inline" else 2 * self.workers

    def _local_context(self) -> Any:
        if not hasattr(_thread_ctx, "value"):
            value = self.setup() if self.setup is not None else None
            with self._made_lock:
                self._made.append(value)
            _thread_ctx.value = value
        return _thread_ctx.value

    def _call_local(self, fn: Callable, args: tuple, kwargs: dict):
        self._local_context()
        return fn(*args, **kwargs)

    def submit(self, fn: Callable[..., T], *args, **kwargs) -> cf.Future:
        """Run ``fn(*args, **kwargs)`` on a worker (at once, here, for the inline kind)."""
        if self.kind == "inline":
            f: cf.Future = cf.Future()
            try:
                f.set_result(self._call_local(fn, args, kwargs))
            except BaseException as e:  # noqa: BLE001 - delivered through the future
                f.set_exception(e)
            return f
        if self.kind == "thread":
            return self._executor.submit(self._call_local, fn, args, kwargs)
        if self.kind == "dask":
            return self._executor.submit(_call_on_dask, self._token, self.setup, fn, args, kwargs)
        return self._executor.submit(_call_in_process, fn, args, kwargs)

    @staticmethod
    def wait(futures: Iterable[cf.Future]) -> set[cf.Future]:
        """The futures among ``futures`` that are done, waiting until at least one is."""
        done, _ = cf.wait(list(futures), return_when=cf.FIRST_COMPLETED)
        return done

    def close(self, cancel: bool = False) -> None:
        """Stop the pool: with ``cancel``, queued tasks are dropped; running ones always finish."""
        if self.kind == "dask" and self._executor is not None:
            self._executor.shutdown(wait=not cancel)  # (Dask cancels what is queued when not waiting)
            self._executor = None
            try:
                self._client.run(_teardown_on_dask, self._token, self.teardown)
            except Exception as e:  # noqa: BLE001 - a cluster going away must not hide the run's outcome
                log.debug("teardown on the cluster failed: %s", e)
            return
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=cancel)
            self._executor = None
        if self.kind in ("inline", "thread") and self.teardown is not None:
            with self._made_lock:
                made, self._made = self._made, []
            for value in made:
                try:
                    self.teardown(value)
                except Exception as e:  # noqa: BLE001 - closing must not hide the run's own outcome
                    log.debug("worker teardown failed: %s", e)
        if self.kind == "inline" and hasattr(_thread_ctx, "value"):
            del _thread_ctx.value

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(cancel=exc_type is not None)


def result(future: cf.Future):
    """``future.result()``, with a worker killed from outside reported as :class:`WorkerDied`."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise WorkerDied("a worker process died before finishing its task") from None
    except Exception as e:
        if type(e).__name__ == "KilledWorker":  # the Dask scheduler gave a task up after workers died running it
            raise WorkerDied(f"Dask workers died running a task too often ({' '.join(str(e).split())[:200]})") from None
        raise


def run(pool: Pool, fn: Callable[..., Any], tasks: Iterable[T], *, window: int | None = None,
        ordered: bool = False) -> Iterator[tuple[T, Any]]:
    """Run ``fn(*task)`` (or ``fn(task)`` for a non-tuple task) for every task on ``pool``, keeping at
    most ``window`` (default: the pool's capacity) in flight; yield ``(task, result)`` in completion
    order, or in task order with ``ordered``. A task's exception is raised here (leave the pool's
    ``with`` block to cancel the rest)."""
    window = window or pool.capacity
    it = iter(tasks)
    in_flight: dict[cf.Future, T] = {}  # insertion order is task order
    exhausted = False
    while True:
        while not exhausted and len(in_flight) < window:
            task = next(it, _END)
            if task is _END:
                exhausted = True
                break
            args = task if isinstance(task, tuple) else (task,)
            in_flight[pool.submit(fn, *args)] = task
        if not in_flight:
            return
        if ordered:
            fut = next(iter(in_flight))
            cf.wait([fut])
            finished = [fut]
        else:
            finished = Pool.wait(in_flight)
        for fut in finished:
            task = in_flight.pop(fut)
            yield task, result(fut)


_END = object()
