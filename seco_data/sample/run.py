"""``sample``: collect a seasonal dataset into OUT, resumably, with any number of workers.

Determinism: candidates are drawn from a counter-based stream and screened in index order in this
process; a candidate is dispatched only while ``accepted + in_flight < n``. So every dispatched
candidate is needed unless it fails, nothing is collected beyond n, and the result is always the
first n candidates (in stream order) that pass every filter, whatever the number of workers and
whatever order the results come back in.

Crash safety: a worker writes only its own location's folder (GeoTIFFs, PNG thumbnails and item
JSON, each atomically and durably); this process alone writes the ledger, and marks a location
accepted only after its worker has returned. A rerun deletes the folders of locations left pending
and processes them again. Workers share the run's output lock and die with their parent, so a
rerun cannot start while any process of a killed run is still writing.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import jobs
from ..catalog.item import build_item
from ..catalog.layout import LEDGER, RECIPE, asset_name, item_id, location_dir, thumbnail_name
from ..catalog.rebuild import item_spec, rebuild_from_ledger
from ..catalog.thumbnails import thumbnail_png
from ..catalog.writer import item_files
from ..errors import IncompleteError, Interrupted, LedgerError, SourceUnavailable, UsageError
from ..outputs import claim_output, write_atomic, write_many
from ..recipe import NOT_IDENTITY, Recipe
from ..sources import Source, get_source
from .ledger import Ledger, PatchRow, thumbnail_entry
from .locations import Screen, make_sampler
from .select import Outcome, RetryPolicy, collect_location

log = logging.getLogger(__name__)

#: abort when this many locations in a row fail on source errors (after their own retries)
MAX_CONSECUTIVE_ERRORS = 10

#: builds the run's imagery source; called once per worker (and once up front, to check the set-up)
SourceFactory = Callable[[], Source]


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


def recipe_source(recipe: Recipe) -> SourceFactory:
    """The factory of the source the recipe names (picklable, for process workers)."""
    return functools.partial(get_source, recipe.source, recipe.product, **recipe.source_options)


def identity(recipe: Recipe) -> dict:
    """What makes two runs the same dataset: the recipe, less its size and description."""
    return {"recipe": {k: v for k, v in json.loads(json.dumps(recipe.to_dict())).items() if k not in NOT_IDENTITY}}


# -- one location (in a worker) ------------------------------------------------------------------------


def _location(recipe: Recipe, task: tuple, retry: RetryPolicy, out: Path) -> Outcome:
    """Select, read, encode and write one location; its ledger rows travel back in ``patches``."""
    source: Source = jobs.context()
    idx, lon, lat, origin, grid = task
    o = collect_location(source, recipe, idx, grid, retry)
    if o.accepted:
        o.patches = _write_location(out, source, recipe, o, lon, lat, origin)
        o.encoded = {}  # the bytes are on disk: do not send them back
    return o


def _write_location(out: Path, source: Source, recipe: Recipe, o: Outcome, lon: float, lat: float,
                    origin: str) -> list[dict]:
    """Write one accepted location's GeoTIFFs, thumbnails and items; return its ledger rows."""
    seasons = recipe.seasons.count
    folder = out / location_dir(o.index, seasons)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}  # written together, the item JSONs last (after every file they point to)
    patches, rows = [], []
    for c in o.choices:
        iid = item_id(recipe.name, o.index, c.season)
        assets = []
        for e in o.encoded[c.season]:
            name = asset_name(iid, e.resolution)
            files[name] = e.data
            assets.append({"resolution": e.resolution, "href": name, "bands": list(e.bands), "sha256": e.sha256,
                           "size": e.size})
        finest = min(o.encoded[c.season], key=lambda e: e.resolution)
        png = thumbnail_png(finest.data, scale=source.scale, bands=finest.bands)
        thumb = thumbnail_name(iid)
        files[thumb] = png
        assets.append(thumbnail_entry(thumb, png))
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
    describe = source.describe()
    files.update(item_files(build_item(item_spec(r, recipe.name, describe, source.scale)) for r in rows))
    write_many(folder, files)
    return patches


def source_metadata(source: Source) -> dict:
    """What the catalog says about a source (recorded in the ledger; never a secret)."""
    return {
        "describe": source.describe(),
        "providers": list(source.providers),
        "license": source.license,
        "scale": source.scale,
    }


# -- the ledger ----------------------------------------------------------------------------------------


def open_ledger(out: Path, recipe: Recipe) -> Ledger:
    """Open (resume) or create the ledger of ``out`` (already claimed for this recipe); refuse an --n
    smaller than what is collected. The recipe is recorded with its current ``n``."""
    path = out / LEDGER
    if path.exists():
        ledger = Ledger(path, create=False)
        stored = ledger.get("fingerprint")
        if stored != recipe.fingerprint():
            ledger.close()
            raise LedgerError(f"{path} does not belong to this output (its recipe fingerprint is {stored!r})")
        done = ledger.counts()["accepted"]
        if recipe.n < done:
            ledger.close()
            raise UsageError(
                f"{out} already holds {done} locations, more than --n {recipe.n}",
                hint=f"pass --n {done} or more (a larger --n grows the dataset)",
            )
    else:
        ledger = Ledger(path, create=True)
        with ledger:
            ledger.set("fingerprint", recipe.fingerprint())
            ledger.set("patch_size_m", str(recipe.patch_size_m))
            ledger.set("created", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    with ledger:
        ledger.set("recipe", json.dumps(recipe.to_dict(), sort_keys=True))  # n and description may change
    return ledger


# -- the run -----------------------------------------------------------------------------------------


def sample(
    recipe: Recipe,
    out: str | Path,
    *,
    workers: int | None = 1,
    progress: jobs.ProgressFn | None = None,
    retry: RetryPolicy = RetryPolicy(),
    source_factory: SourceFactory | None = None,
    overwrite: bool = False,
) -> Report:
    """Collect ``recipe.n`` locations into ``out`` (resuming whatever is there); return the report.

    ``source_factory`` builds the imagery source (default: the one the recipe names); it is called
    once here to check the set-up before anything is written, then once per worker.
    ``overwrite`` replaces an output collected with another recipe. Raises
    :class:`IncompleteError` (after writing the catalog) when the candidate budget runs out.
    """
    t0 = time.perf_counter()
    jobs.check_workers(workers)
    out = Path(out)
    factory = source_factory or recipe_source(recipe)
    source = _build_source(factory)  # configuration errors first, before anything is written
    try:
        with claim_output(out, kind="sample", identity=identity(recipe), overwrite=overwrite) as claim:
            ledger = open_ledger(out, recipe)
            try:
                write_atomic(out / RECIPE, recipe.to_yaml())
                with ledger:
                    ledger.set("source", json.dumps(source_metadata(source), sort_keys=True))
                from threadpoolctl import threadpool_limits

                with threadpool_limits(limits=1):  # also in this process (inline work, writes)
                    _run(recipe, out, ledger, source, factory, workers, progress, retry)
                _, counts = rebuild_from_ledger(out, ledger)
            finally:
                ledger.close()
    finally:
        source.close()
    report = Report(out, recipe.n, counts["accepted"], counts["patches"], counts["candidates"],
                    counts["rejections"], counts["skipped_scenes"], time.perf_counter() - t0, claim.resumed,
                    counts["source"])
    if not report.complete:
        raise IncompleteError(
            f"only {report.accepted} of {report.requested} locations passed the filters after "
            f"{report.candidates} candidates (catalog written for those)",
            hint="loosen filters (scene_cloud_max, patch_cloud_max, coverage_min) or raise max_draws_per_location",
        )
    return report


def _build_source(factory: SourceFactory) -> Source:
    try:
        return factory()
    except (TypeError, ValueError) as e:  # a source's own check of its options
        if isinstance(e, UsageError):
            raise
        raise UsageError(f"invalid source options: {' '.join(str(e).split())}",
                         hint="check source_options in the recipe or --set source_options.KEY=VALUE") from None


def finalize(out: str | Path) -> Report:
    """(Re)write the catalog tree and the parquet index of OUT from its ledger alone."""
    out = Path(out)
    t0 = time.perf_counter()
    collection, c = rebuild_from_ledger(out)
    return Report(out, collection["seco:stats"]["requested"], c["accepted"], c["patches"], c["candidates"],
                  c["rejections"], c["skipped_scenes"], time.perf_counter() - t0, False, c["source"])


def _run(recipe, out, ledger, source, factory, workers, progress, retry) -> None:
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
    kind = "thread" if source.io_bound else "process"
    n_workers = jobs.cap_workers(workers, kind, tasks=max(1, recipe.n - accepted))
    if n_workers <= 1:
        pool = jobs.Pool(1, setup=lambda: source)  # the source built up front does the work
    else:
        pool = jobs.Pool(n_workers, kind=kind, setup=factory, teardown=lambda s: s.close())
    in_flight: dict = {}  # future -> (idx, lon, lat, origin, grid)
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

    def report_progress():
        if progress:
            progress(jobs.Progress(accepted, recipe.n, "location", {"accepted": accepted, "rejected": rejected,
                                                                    **{f"rejected_{k}": v for k, v in reasons.items()}}))

    try:
        with pool:
            report_progress()
            while accepted < recipe.n:
                while not exhausted and accepted + len(in_flight) < recipe.n and len(in_flight) < pool.capacity:
                    task = next_task()
                    if task is None:
                        break
                    in_flight[pool.submit(_location, recipe, task, retry, out)] = task
                if not in_flight:
                    break
                for fut in sorted(pool.wait(in_flight), key=lambda f: in_flight[f][0]):
                    idx = in_flight.pop(fut)[0]
                    outcome: Outcome = jobs.result(fut)
                    with ledger:
                        if outcome.accepted:
                            ledger.accept(idx, outcome.patches)
                        else:
                            ledger.reject(idx, outcome.reason, outcome.detail)
                        ledger.add_skips(outcome.skipped)
                        ledger.add_source_stats(outcome.source_stats)
                    if outcome.accepted:
                        accepted += 1
                        consecutive_errors = 0
                    else:
                        rejected += 1
                        reasons[outcome.reason] += 1
                        if outcome.reason == "source_error":
                            consecutive_errors += 1
                            if consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                                raise SourceUnavailable(
                                    f"the {recipe.source} source failed for {consecutive_errors} locations in a row: "
                                    f"{outcome.detail}")
                        else:
                            consecutive_errors = 0
                    report_progress()
    except KeyboardInterrupt:
        # the pool dropped queued work and waited for running work (bounded by retries and timeouts), so
        # nothing writes a folder that a rerun has just cleaned once the lock is released
        raise Interrupted(f"interrupted with {accepted} of {recipe.n} locations collected in {out}") from None
