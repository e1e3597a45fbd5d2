"""``sample``: collect a seasonal dataset into OUT, resumably, with any number of workers.

Determinism: candidates are drawn from a counter-based stream and screened in index order in this
process; a candidate is dispatched only while ``accepted + in_flight < n``. So every dispatched
candidate is needed unless it fails, nothing is collected beyond n, and the result is always the
first n candidates (in stream order) that pass every filter, whatever the number of workers and
whatever order the results come back in.

Crash safety: a worker writes only its own location's folder (GeoTIFFs, PNG thumbnails and item JSON, each through
a temporary name and ``os.replace``); this process alone writes the ledger, and marks a location
accepted only after its worker has returned. A rerun deletes the folders of locations left pending
and processes them again. Forked workers share the run's exclusive lock and die with their parent,
so a rerun cannot start while any process of a killed run is still writing.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import IncompleteError, LedgerError, OutputError, SecoError, SourceUnavailable, UsageError
from ..geotiff import write_atomic
from .ledger import Ledger, PatchRow
from ..lock import LOCK, lock_output
from .locations import Screen, make_sampler
from ..recipe import NOT_IDENTITY, Recipe, differences, recipe_from_dict
from .select import Outcome, RetryPolicy, collect_location
from ..sources import Source, get_source
from ..catalog.writer import CatalogWriter, asset_name, item_id, location_dir, thumbnail_name
from ..catalog.thumbnails import ledger_entry, thumbnail_png

log = logging.getLogger(__name__)

LEDGER = "ledger.sqlite"
RECIPE = "recipe.yaml"
#: abort when this many locations in a row fail on source errors (after their own retries)
MAX_CONSECUTIVE_ERRORS = 10


class Interrupted(SecoError):
    exit_code = 130
    hint = "rerun the same command to resume"


@dataclass
class Progress:
    """Handed to the progress callback after every resolved location."""

    n: int
    accepted: int
    rejected: int
    in_flight: int
    rejections: Counter = field(default_factory=Counter)


@dataclass
class Report:
    out: Path
    requested: int
    accepted: int
    patches: int
    candidates: int
    rejections: dict
    skipped_scenes: dict
    seconds: float
    resumed: bool
    source_stats: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.accepted >= self.requested

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "requested": self.requested,
            "locations": self.accepted,
            "patches": self.patches,
            "candidates": self.candidates,
            "rejections": self.rejections,
            "skipped_scenes": self.skipped_scenes,
            "source": self.source_stats,
            "seconds": round(self.seconds, 3),
            "resumed": self.resumed,
        }


# -- workers -----------------------------------------------------------------------------------

_worker_source: Source | None = None


def _watch_parent(ppid: int) -> None:
    while True:
        if os.getppid() != ppid:  # the parent died (kill -9): never outlive it
            os._exit(1)
        time.sleep(0.5)


def _init_process(name: str, product: str, options: dict, ppid: int) -> None:
    global _worker_source
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()
    threadpool_limits(limits=1)  # parallelism comes from the workers; BLAS pools would oversubscribe
    _worker_source = get_source(name, product, **options)


def _work(source: Source, recipe: Recipe, task: tuple, retry: RetryPolicy, out: Path) -> Outcome:
    """Select, read, encode and write one location; its ledger rows travel back in ``patches``."""
    idx, lon, lat, origin, grid = task
    o = collect_location(source, recipe, idx, grid, retry)
    if o.accepted:
        o.patches = _write_location(out, source, recipe, o, lon, lat, origin)
        o.encoded = {}  # the bytes are on disk: do not send them back
    return o


def _process_task(recipe: Recipe, task: tuple, retry: RetryPolicy, out: Path) -> Outcome:
    return _work(_worker_source, recipe, task, retry, out)


class _Inline:
    """An executor that runs each task when submitted (workers=1)."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def submit(self, *args) -> cf.Future:
        f: cf.Future = cf.Future()
        try:
            f.set_result(self.fn(*args))
        except BaseException as e:  # noqa: BLE001 - delivered through the future
            f.set_exception(e)
        return f

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def _executor(recipe: Recipe, source: Source, workers: int):
    if workers <= 1:
        return _Inline(lambda r, t, p, o: _work(source, r, t, p, o))
    if source.io_bound:
        made: list[Source] = []  # one source (client, session) per thread, closed at shutdown
        local = threading.local()

        def thread_task(r, t, p, o):
            s = getattr(local, "source", None)
            if s is None:
                s = local.source = get_source(recipe.source, recipe.product, **recipe.source_options)
                made.append(s)
            return _work(s, r, t, p, o)

        pool = cf.ThreadPoolExecutor(max_workers=workers)
        return _Submit(pool, thread_task, made)
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
    pool = cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_init_process,
        initargs=(recipe.source, recipe.product, dict(recipe.source_options), os.getpid()),
    )
    return _Submit(pool, _process_task)


class _Submit:
    def __init__(self, pool, fn, sources: list[Source] | None = None):
        self.pool, self.fn, self.sources = pool, fn, sources or []

    def submit(self, *args):
        return self.pool.submit(self.fn, *args)

    def shutdown(self, wait=True, cancel_futures=False):
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:
            for s in self.sources:
                s.close()


# -- output folder -----------------------------------------------------------------------------


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(
            f"cannot write to {out}: {e.strerror or e}", hint="choose a folder you can write to with --out"
        ) from None


def open_ledger(out: Path, recipe: Recipe) -> tuple[Ledger, bool]:
    """Open (resume) or create the ledger; refuse a ledger made with another recipe."""
    path = out / LEDGER
    if path.exists():
        ledger = Ledger(path, create=False)
        stored = ledger.get("fingerprint")
        if stored is None:
            raise LedgerError(f"{path} is not a seco ledger")
        if stored != recipe.fingerprint():
            old = json.loads(ledger.get("recipe") or "{}")
            diff = differences(old, json.loads(json.dumps(recipe.to_dict())), ignore=NOT_IDENTITY)
            ledger.close()
            raise UsageError(
                f"{out} was collected with different settings ({', '.join(diff[:5]) or 'recipe'} differ)",
                hint="rerun with the original arguments to resume, or use another --out",
            )
        done = ledger.counts()["accepted"]
        if recipe.n < done:
            ledger.close()
            raise UsageError(
                f"{out} already holds {done} locations, more than --n {recipe.n}",
                hint=f"pass --n {done} or more (a larger --n grows the dataset)",
            )
        return ledger, True
    leftovers = [p.name for p in out.iterdir() if p.name != LOCK]
    if leftovers:
        raise OutputError(
            f"{out} is not empty and holds no seco ledger ({', '.join(sorted(leftovers)[:3])} ...)",
            hint="choose an empty or new folder with --out",
        )
    ledger = Ledger(path, create=True)
    with ledger:
        ledger.set("fingerprint", recipe.fingerprint())
        ledger.set("recipe", json.dumps(recipe.to_dict(), sort_keys=True))
        ledger.set("patch_size_m", str(recipe.patch_size_m))
        ledger.set("created", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    return ledger, False


# -- the run -----------------------------------------------------------------------------------


def sample(
    recipe: Recipe,
    out: str | Path,
    *,
    workers: int = 1,
    progress: Callable[[Progress], None] | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> Report:
    """Collect ``recipe.n`` locations into ``out`` (resuming whatever is there); return the report.

    Raises :class:`IncompleteError` (after writing the catalog) when the candidate budget runs out.
    """
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    t0 = time.perf_counter()
    out = Path(out)
    source = get_source(recipe.source, recipe.product, **recipe.source_options)  # configuration errors first
    try:
        _prepare_out(out)
        lock = lock_output(out)
        try:
            ledger, resumed = open_ledger(out, recipe)
            try:
                write_atomic(out / RECIPE, recipe.to_yaml().encode())
                with ledger:
                    ledger.set("source", json.dumps(source_metadata(source), sort_keys=True))
                from threadpoolctl import threadpool_limits

                with threadpool_limits(limits=1):  # also in this process (inline work, writes)
                    _run(recipe, out, ledger, source, workers, progress, retry)
                report = finalize(out, ledger=ledger, seconds=time.perf_counter() - t0)
                report.resumed = resumed
            finally:
                ledger.close()
        finally:
            os.close(lock)
    finally:
        source.close()
    if not report.complete:
        raise IncompleteError(
            f"only {report.accepted} of {report.requested} locations passed the filters after "
            f"{report.candidates} candidates (catalog written for those)",
            hint="loosen filters (scene_cloud_max, patch_cloud_max, coverage_min) or raise max_draws_per_location",
        )
    return report


def _run(recipe, out, ledger, source, workers, progress, retry) -> None:
    seasons = recipe.seasons.count
    screen = Screen(recipe.locations, recipe.patch_size_m)
    for grid in ledger.footprints():
        screen.restore(grid)
    with ledger:  # locations lost to an outage are tried again: the rerun gives the fault-free result
        requeued = ledger.requeue("source_error")
    if requeued:
        log.info("retrying %d locations that failed on source errors", requeued)
    pending = ledger.pending()
    for idx, *_ in pending:  # files of unfinished locations may be partial: start them again
        shutil.rmtree(out / location_dir(idx, seasons), ignore_errors=True)
    if pending:
        log.info("resuming: %d locations were in flight", len(pending))
    sampler = make_sampler(recipe.locations, recipe.seed)
    stream = sampler.stream(ledger.next_index())
    budget = recipe.n * recipe.max_draws_per_location
    counts = ledger.counts()
    accepted, rejected = counts["accepted"], counts["rejected"]
    reasons = Counter(counts["rejections"])
    executor = _executor(recipe, source, workers)
    in_flight: dict[cf.Future, tuple] = {}  # future -> (idx, lon, lat, origin, grid)
    capacity = max(1, 2 * workers)
    consecutive_errors = 0
    exhausted = False

    def next_task():
        nonlocal exhausted, rejected
        if pending:
            return pending.pop(0)
        while True:
            c = next(stream, None)
            if c is None or c.index >= budget:
                exhausted = True
                return None
            v = screen.check(c)
            with ledger:
                ledger.add_candidate(c.index, c.lon, c.lat, c.origin, v.grid,
                                     "pending" if v.reason is None else "rejected", v.reason)
            if v.reason is None:
                return c.index, c.lon, c.lat, c.origin, v.grid
            rejected += 1
            reasons[v.reason] += 1

    try:
        while accepted < recipe.n:
            while not exhausted and accepted + len(in_flight) < recipe.n and len(in_flight) < capacity:
                task = next_task()
                if task is None:
                    break
                in_flight[executor.submit(recipe, task, retry, out)] = task
            if not in_flight:
                break
            done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: in_flight[f][0]):
                idx, lon, lat, origin, _ = in_flight.pop(fut)
                outcome: Outcome = fut.result()
                if outcome.accepted:
                    with ledger:
                        ledger.accept(idx, outcome.patches)
                        ledger.add_skips(outcome.skipped)
                        ledger.add_source_stats(outcome.source_stats)
                    accepted += 1
                    consecutive_errors = 0
                else:
                    with ledger:
                        ledger.reject(idx, outcome.reason, outcome.detail)
                        ledger.add_skips(outcome.skipped)
                        ledger.add_source_stats(outcome.source_stats)
                    rejected += 1
                    reasons[outcome.reason] += 1
                    if outcome.reason == "source_error":
                        consecutive_errors += 1
                        if consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                            raise SourceUnavailable(
                                f"the {recipe.source} source failed for {consecutive_errors} locations in a row: "
                                f"{outcome.detail}"
                            )
                    else:
                        consecutive_errors = 0
                if progress:
                    progress(Progress(recipe.n, accepted, rejected, len(in_flight), reasons))
    except KeyboardInterrupt:
        # queued work is dropped; running work (bounded by retries and timeouts) must end before the
        # lock is released, or it could write a folder that a rerun has just cleaned
        executor.shutdown(wait=True, cancel_futures=True)
        raise Interrupted(f"interrupted with {accepted} of {recipe.n} locations collected in {out}") from None
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _write_location(out: Path, source: Source, recipe: Recipe, o: Outcome, lon: float, lat: float,
                    origin: str) -> list[dict]:
    """Write one accepted location's GeoTIFFs, thumbnails and items; return its ledger rows."""
    seasons = recipe.seasons.count
    folder = out / location_dir(o.index, seasons)
    folder.mkdir(parents=True, exist_ok=True)
    patches, rows = [], []
    for c in o.choices:
        iid = item_id(recipe.name, o.index, c.season)
        assets = []
        for e in o.encoded[c.season]:
            name = asset_name(iid, e.resolution)
            write_atomic(folder / name, e.data)
            assets.append({"resolution": e.resolution, "href": name, "bands": list(e.bands), "sha256": e.sha256, "size": e.size})
        finest = min(o.encoded[c.season], key=lambda e: e.resolution)
        png = thumbnail_png(finest.data, scale=source.scale, bands=finest.bands)
        thumb = thumbnail_name(iid)
        write_atomic(folder / thumb, png)  # before the item JSON, like every file it points to
        assets.append(ledger_entry(thumb, png))
        p = {
            "season": c.season,
            "item_id": iid,
            "scene_id": c.scene.scene_id,
            "datetime": c.scene.datetime.isoformat(),
            "platform": c.scene.platform,
            "scene_cloud": float(c.scene.cloud_cover),
            "cloud_fraction": c.cloud_fraction,
            "valid_fraction": c.valid_fraction,
            "window_start": c.window.start.isoformat(),
            "window_end": c.window.end.isoformat(),
            "assets": assets,
        }
        patches.append(p)
        rows.append(PatchRow(location=o.index, lon=lon, lat=lat, origin=origin or "", grid=o.grid, **p))
    CatalogWriter(out, name=recipe.name, seasons=seasons, source=source.describe(), scale=source.scale).write_items(rows)
    return patches


def source_metadata(source: Source) -> dict:
    """What the catalog says about a source (recorded in the ledger; never a secret)."""
    return {
        "describe": source.describe(),
        "providers": list(source.providers),
        "license": source.license,
        "scale": source.scale,
    }


def finalize(out: str | Path, *, ledger: Ledger | None = None, seconds: float = 0.0) -> Report:
    """(Re)write the catalog tree and the parquet index of OUT from its ledger alone."""
    out = Path(out)
    own = ledger is None
    if own:
        ledger = Ledger(out / LEDGER, create=False)
    try:
        recipe = recipe_from_dict(json.loads(ledger.get("recipe") or "{}"))
        meta = json.loads(ledger.get("source") or "null") or {
            "describe": {"name": recipe.source, "product": recipe.product, "synthetic": recipe.source == "sim"},
            "providers": [], "license": "other", "scale": 1e-4,
        }
        counts = ledger.counts()
        stats = {
            "requested": recipe.n,
            "locations": counts["accepted"],
            "items": counts["patches"],
            "candidates": counts["candidates"],
            "rejections": counts["rejections"],
            "skipped_scenes": counts["skipped_scenes"],
            "source": counts["source"],
        }
        writer = CatalogWriter(out, name=recipe.name, seasons=recipe.seasons.count, source=meta["describe"],
                               scale=meta["scale"])
        providers = meta["providers"] + [{
            "name": "seco",
            "roles": ["processor"],
            "description": "Seasonal patches selected, cut and catalogued by seco-data sample.",
        }]
        writer.finalize(ledger, recipe=recipe.to_dict(), stats=stats, providers=providers, license=meta["license"])
        return Report(out, recipe.n, counts["accepted"], counts["patches"], counts["candidates"],
                      counts["rejections"], counts["skipped_scenes"], seconds, resumed=False,
                      source_stats=counts["source"])
    finally:
        if own:
            ledger.close()
