"""``sample``: collect a seasonal dataset into OUT, resumably, with any number of workers.

Determinism: candidates are drawn from a counter-based stream and screened in index order in this
process (:class:`~seco_data.sample.locations.Screen`: exact, whatever the order results come back
in); a candidate is drawn only while ``accepted + live < n`` (live: screened, not yet resolved). So
every drawn candidate is needed unless it fails, nothing is collected beyond n, and the result is
always the first n candidates (in stream order) that pass every filter, whatever the number of
workers.

Crash safety: a worker writes only its own location's files (compact layout: 3 multi-season
GeoTIFFs and a quicklook strip in the part folder; per-patch: a folder per location), all fsync'd
then renamed together; this process alone writes the ledger, in one transaction per batch of
screened candidates and per batch of results, and marks a location accepted only after its worker
has returned. A rerun deletes the files of locations left pending and processes them again. Workers
share the run's output lock and die with their parent, so a rerun cannot start while any process of
a killed run is still writing.

The index is built part by part during the run (:mod:`seco_data.catalog.rebuild`): a part as soon
as none of its candidates can change, so the end of a run, and a resume, only touch the last parts.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import jobs
from ..catalog.layout import (LEDGER, RECIPE, asset_name, data_key, files_dir, item_id, location_id,
                              locations_per_part, remove_location, thumbnail_name)
from ..catalog.ledger import Ledger, LocationRow, PatchRow, thumbnail_entry
from ..catalog.rebuild import build_parts, index_state, location_items, stale_parts
from ..catalog.repair import MODES as REPAIR_MODES
from ..catalog.repair import reopen_damaged
from ..catalog.rebuild import finalize as finalize_catalog
from ..catalog.thumbnails import quicklook
from ..catalog.writer import item_files
from ..errors import IncompleteError, Interrupted, LedgerError, SourceUnavailable, UsageError
from ..geotiff import encode
from ..outputs import claim_output, write_atomic
from ..remote import fetch_catalog, publish_catalog, remote_catalog
from ..storage import store_for
from ..recipe import NOT_IDENTITY, Recipe
from ..sources import Source, get_source
from .locations import Candidate, Screen, make_sampler
from .select import Outcome, RetryPolicy, collect_location

log = logging.getLogger(__name__)

#: abort when this many locations in a row fail on source errors (after their own retries)
MAX_CONSECUTIVE_ERRORS = 10
#: candidates screened (and recorded in the ledger) per transaction
SCREEN_BATCH = 64

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
    repaired: int = 0  # locations whose damaged files were collected again (--repair)

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
            "repaired": self.repaired,
        }


def recipe_source(recipe: Recipe) -> SourceFactory:
    """The factory of the source the recipe names (picklable, for process workers)."""
    return functools.partial(get_source, recipe.source, recipe.product, **recipe.source_options)


def identity(recipe: Recipe) -> dict:
    """What makes two runs the same dataset: the recipe, less its size and description."""
    return {"recipe": {k: v for k, v in json.loads(json.dumps(recipe.to_dict())).items() if k not in NOT_IDENTITY}}


def describe_catalog(recipe: Recipe, source: Source) -> dict:
    """What the ledger records about the catalog (``catalog`` meta key), what items are built from."""
    return {
        "name": recipe.name,
        "seasons": recipe.seasons.count,
        "layout": recipe.layout,
        "band_groups": {str(k): list(v) for k, v in recipe.band_groups.items()},
        "dtype": "uint16",
        "nodata": source.nodata,
        "scale": float(source.scale),
        "source": source.describe(),
        "providers": list(source.providers),
        "license": source.license,
        "recipe": recipe.to_dict(),
        "requested": recipe.n,
    }


# -- one location (in a worker) ------------------------------------------------------------------------


def _location(recipe: Recipe, task: tuple, retry: RetryPolicy, out: str | Path, cm: dict) -> Outcome:
    """Select, read, encode and write one location; its ledger rows travel back in ``patches`` / ``files``."""
    source: Source = jobs.context()
    idx, lon, lat, origin, grid = task
    o = collect_location(source, recipe, idx, grid, retry)
    if o.accepted:
        o.patches, o.files = _write_location(out, recipe, o, lon, lat, origin, cm)
        o.reads = {}  # the pixels are on disk: do not send them back
    return o


def _season_rows(o: Outcome, name: str, assets: dict[int, list]) -> list[dict]:
    rows = []
    for c in o.choices:
        rows.append({
            "season": c.season,
            "item_id": item_id(name, o.index, c.season),
            "scene_id": c.scene.scene_id,
            "datetime": c.scene.datetime.isoformat(),
            "platform": c.scene.platform,
            "scene_cloud": float(c.scene.cloud_cover),
            "cloud_fraction": c.cloud_fraction,
            "valid_fraction": c.valid_fraction,
            "window_start": c.window.start.isoformat(),
            "window_end": c.window.end.isoformat(),
            "assets": assets.get(c.season, []),
        })
    return rows


def _write_location(out: str | Path, recipe: Recipe, o: Outcome, lon: float, lat: float, origin: str,
                    cm: dict) -> tuple[list[dict], list[dict]]:
    """Write one accepted location's files (and, per-patch, its item JSONs) together, into the output
    folder or bucket ``out``; return its ledger rows: the seasons and, compact, the files."""
    seasons = recipe.seasons.count
    store = store_for(out)
    folder = files_dir(o.index, seasons, recipe.layout)
    groups = recipe.band_groups
    finest = min(groups)
    files: dict[str, bytes] = {}  # written together, item JSONs last (after every file they point to)
    nodata, scale = cm["nodata"], cm["scale"]
    if recipe.layout == "compact":
        lid = location_id(recipe.name, o.index)
        entries = []
        scenes = ";".join(f"s{c.season}={c.scene.scene_id}@{c.scene.datetime.isoformat()}" for c in o.choices)
        for res, bands in groups.items():
            stack = np.concatenate([o.reads[c.season].pixels[res] for c in o.choices])
            names = tuple(f"s{c.season}:{b}" for c in o.choices for b in bands)
            e = encode(stack, o.grid, res, names, nodata=nodata, compress=recipe.compress, tags={"SCENES": scenes})
            name = asset_name(lid, res)
            files[name] = e.data
            entries.append({"key": data_key(res), "href": name, "sha256": e.sha256, "size": e.size})
        if recipe.thumbnails:
            data = quicklook([(o.reads[c.season].pixels[finest], groups[finest]) for c in o.choices], scale, nodata)
            name = thumbnail_name(lid)
            files[name] = data
            entries.append(thumbnail_entry(name, data))
        store.put_many(folder, files)
        return _season_rows(o, recipe.name, {}), entries
    assets: dict[int, list] = {}
    for c in o.choices:
        iid = item_id(recipe.name, o.index, c.season)
        tags = {"SCENE_ID": c.scene.scene_id, "DATETIME": c.scene.datetime.isoformat()}
        entries = []
        for res, bands in groups.items():
            e = encode(o.reads[c.season].pixels[res], o.grid, res, bands, nodata=nodata, compress=recipe.compress,
                       tags=tags)
            name = asset_name(iid, res)
            files[name] = e.data
            entries.append({"resolution": res, "href": name, "bands": list(bands), "sha256": e.sha256, "size": e.size})
        if recipe.thumbnails:
            data = quicklook([(o.reads[c.season].pixels[finest], groups[finest])], scale, nodata)
            name = thumbnail_name(iid)
            files[name] = data
            entries.append(thumbnail_entry(name, data))
        assets[c.season] = entries
    rows = _season_rows(o, recipe.name, assets)
    row = LocationRow(o.index, lon, lat, origin or "", o.grid, [],
                      tuple(PatchRow(location=o.index, **r) for r in rows))
    files.update(item_files(location_items(row, cm)))
    store.put_many(folder, files)
    return rows, []


def _build_source(factory: SourceFactory) -> Source:
    try:
        return factory()
    except (TypeError, ValueError) as e:  # a source's own check of its options
        if isinstance(e, UsageError):
            raise
        raise UsageError(f"invalid source options: {' '.join(str(e).split())}",
                         hint="check source_options in the recipe or --set source_options.KEY=VALUE") from None


# -- the ledger ----------------------------------------------------------------------------------------


def open_ledger(out: Path, recipe: Recipe, source: Source) -> Ledger:
    """Open (resume) or create the ledger of ``out`` (already claimed for this recipe); refuse an --n
    smaller than what is collected. The recipe and catalog description are recorded with the
    current ``n``."""
    path = out / LEDGER
    if path.exists():
        ledger = Ledger(path)
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
    with ledger:  # n and description may change from one run to the next
        ledger.set("recipe", json.dumps(recipe.to_dict(), sort_keys=True))
        ledger.set("catalog", json.dumps(describe_catalog(recipe, source), sort_keys=True))
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
    repair: str | None = None,
) -> Report:
    """Collect ``recipe.n`` locations into ``out`` (resuming whatever is there); return the report.

    ``source_factory`` builds the imagery source (default: the one the recipe names); it is called
    once here to check the set-up before anything is written, then once per worker.
    ``overwrite`` replaces an output collected with another recipe. ``repair`` (``quick``: every
    recorded file exists with its size; ``full``: and its checksum) first looks for accepted
    locations whose files are missing or damaged, and collects them again. Raises
    :class:`IncompleteError` (after writing the catalog) when the candidate budget runs out.
    """
    t0 = time.perf_counter()
    jobs.check_workers(workers)
    if repair is not None and repair not in REPAIR_MODES:
        raise UsageError(f"unknown repair mode {repair!r}", hint=f"use one of {', '.join(REPAIR_MODES)}")
    remote = remote_catalog(out, recipe.layout, overwrite)
    target = remote.url if remote else Path(out)  # where the files go
    out = remote.staging if remote else Path(out)  # the ledger, the index parts, the lock
    factory = source_factory or recipe_source(recipe)
    source = _build_source(factory)  # configuration errors first, before anything is written
    try:
        if remote:
            fetch_catalog(remote)  # a resume elsewhere starts from the output's snapshot
        with claim_output(out, kind="sample", identity=identity(recipe), overwrite=overwrite) as claim:
            ledger = open_ledger(out, recipe, source)
            try:
                write_atomic(out / RECIPE, recipe.to_yaml())
                from threadpoolctl import threadpool_limits

                checkpoint = (lambda: publish_catalog(remote)) if remote else None
                with threadpool_limits(limits=1):  # also in this process (inline work, writes)
                    repaired = reopen_damaged(target, ledger, repair, workers) if repair else 0
                    Run(recipe, out, ledger, source, factory, workers, progress, retry, target=target,
                        checkpoint=checkpoint).run()
                counts = finalize_catalog(out, ledger).counts
                if remote:
                    publish_catalog(remote)
            finally:
                ledger.close()
    finally:
        source.close()
    report = Report(target, recipe.n, counts["accepted"], counts["patches"], counts["candidates"],
                    counts["rejections"], counts["skipped_scenes"], time.perf_counter() - t0, claim.resumed,
                    counts["source"], repaired)
    if not report.complete:
        raise IncompleteError(
            f"only {report.accepted} of {report.requested} locations passed the filters after "
            f"{report.candidates} candidates (catalog written for those)",
            hint="loosen filters (scene_cloud_max, patch_cloud_max, coverage_min) or raise max_draws_per_location",
        )
    return report


def finalize(out: str | Path) -> Report:
    """(Re)write the index, the items and the collection of OUT from its ledger alone."""
    out = Path(out)
    t0 = time.perf_counter()
    done = finalize_catalog(out, write_items=True)
    c = done.counts
    return Report(out, done.collection["seco:stats"]["requested"], c["accepted"], c["patches"], c["candidates"],
                  c["rejections"], c["skipped_scenes"], time.perf_counter() - t0, False, c["source"])


class Run:
    """One run of the collection loop (see the module docstring)."""

    def __init__(self, recipe, out, ledger, source, factory, workers, progress, retry, *, target=None,
                 checkpoint=None):
        self.recipe, self.out, self.ledger, self.source = recipe, out, ledger, source
        self.target = target if target is not None else out  # where workers write the files (a folder or a URL)
        self.checkpoint = checkpoint  # called when index parts were built (a remote output's snapshot)
        self.factory, self.workers, self.progress, self.retry = factory, workers, progress, retry
        self.cm = json.loads(ledger.get("catalog"))
        self.seasons = recipe.seasons.count
        self.per_part = locations_per_part(self.seasons)
        self.screen = Screen(recipe.locations, recipe.patch_size_m)
        self.ready: deque = deque()  # screened tasks waiting for a worker, in index order
        self.tasks: dict[int, tuple] = {}  # every live candidate (ready, in flight, deferred) -> its task
        self.in_flight: dict = {}  # future -> idx
        self.built_below = 0  # index parts below this location are current

    # -- resume -------------------------------------------------------------------------------------
    def restore(self) -> None:
        ledger, recipe = self.ledger, self.recipe
        with ledger:  # locations lost to an outage are tried again: the rerun gives the fault-free result
            requeued = ledger.requeue("source_error")
        if requeued:
            log.info("retrying %d locations that failed on source errors", requeued)
        counts = ledger.counts()
        self.accepted, self.rejected = counts["accepted"], counts["rejected"]
        self.reasons = Counter(counts["rejections"])
        pending = ledger.pending()
        for idx, *_ in pending:  # files of unfinished locations may be partial: start them again
            self._remove_files(idx)
        if pending:
            log.info("resuming: %d locations were in flight", len(pending))
        if self.accepted >= recipe.n:
            return  # nothing left to collect: the screen is not needed
        for idx, grid in ledger.accepted_grids():
            self.screen.restore_accepted(idx, grid)
        rejections = []
        for idx, lon, lat, origin, grid in pending:
            v = self.screen.restore_pending(Candidate(idx, lon, lat, origin), grid)
            if v.reason is not None:
                rejections.append((idx, v.reason))
                continue
            self.tasks[idx] = (idx, lon, lat, origin, grid)
            if not v.deferred:
                self.ready.append(idx)
        if rejections:
            with ledger:
                for idx, reason in rejections:
                    ledger.reject(idx, reason)
            self._count_rejections(r for _, r in rejections)

    def _remove_files(self, idx: int) -> None:
        remove_location(self.target, self.recipe.name, idx, self.seasons, self.recipe.layout)

    def _count_rejections(self, reasons) -> None:
        for r in reasons:
            self.rejected += 1
            self.reasons[r] += 1

    # -- drawing ------------------------------------------------------------------------------------
    def live(self) -> int:
        return len(self.tasks)

    def draw(self) -> None:
        """Screen candidates (recorded in one transaction) until enough tasks are ready or live."""
        recipe = self.recipe
        screened = []
        while (not self.exhausted and self.accepted + self.live() < recipe.n
               and len(self.ready) + len(self.in_flight) < self.pool.capacity and len(screened) < SCREEN_BATCH):
            c = next(self.stream, None)
            if c is None or c.index >= self.budget:
                self.exhausted = True
                break
            v = self.screen.check(c)
            screened.append((c.index, c.lon, c.lat, c.origin, v.grid,
                             "pending" if v.reason is None else "rejected", v.reason))
            self.next_index = c.index + 1
            if v.reason is not None:
                self._count_rejections([v.reason])
                continue
            self.tasks[c.index] = (c.index, c.lon, c.lat, c.origin, v.grid)
            if not v.deferred:
                self.ready.append(c.index)
        if screened:
            with self.ledger:
                self.ledger.add_candidates(screened)

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> None:
        recipe, ledger = self.recipe, self.ledger
        self.restore()
        self.budget = recipe.n * recipe.max_draws_per_location
        self.next_index = ledger.next_index()
        self.stream = make_sampler(recipe.locations, recipe.seed).stream(self.next_index)
        self.exhausted = self.accepted >= recipe.n
        kind = "thread" if self.source.io_bound else "process"
        n_workers = jobs.cap_workers(self.workers, kind, tasks=max(1, recipe.n - self.accepted))
        if n_workers <= 1 and jobs.current_client() is None:
            self.pool = jobs.Pool(1, setup=lambda: self.source)  # the source built up front does the work
        else:
            self.pool = jobs.Pool(n_workers, kind=kind, setup=self.factory, teardown=lambda s: s.close())
        self.consecutive_errors = 0
        try:
            with self.pool:
                self.report()
                while self.accepted < recipe.n:
                    self.draw()
                    # never more in flight than still needed (a resume may hold more pending candidates
                    # than that): whatever order results come back in, the first n that pass are kept
                    while (self.ready and len(self.in_flight) < self.pool.capacity
                           and self.accepted + len(self.in_flight) < recipe.n):
                        idx = self.ready.popleft()
                        fut = self.pool.submit(_location, recipe, self.tasks[idx], self.retry, str(self.target),
                                               self.cm)
                        self.in_flight[fut] = idx
                    if not self.in_flight:
                        if self.ready or (not self.exhausted and self.accepted + self.live() < recipe.n):
                            continue
                        break
                    done = sorted(self.pool.wait(self.in_flight), key=lambda f: self.in_flight[f])
                    self.resolve([(self.in_flight.pop(f), jobs.result(f)) for f in done])
                    self.report()
                    self.build_finished_parts()
        except KeyboardInterrupt:
            # the pool dropped queued work and waited for running work (bounded by retries and timeouts), so
            # nothing writes a file that a rerun has just cleaned once the lock is released
            raise Interrupted(f"interrupted with {self.accepted} of {recipe.n} locations collected in {self.out}") \
                from None
        finally:
            for idx in self.in_flight.values():  # stopped early: what their workers wrote is not recorded
                self._remove_files(idx)

    def resolve(self, results: list[tuple[int, Outcome]]) -> None:
        """Record a batch of outcomes in one transaction, and what they release or reject."""
        released, overlapped = [], []
        with self.ledger:
            for idx, o in results:
                self.tasks.pop(idx, None)
                if o.accepted:
                    self.ledger.accept(idx, o.patches, o.files)
                else:
                    self.ledger.reject(idx, o.reason, o.detail)
                self.ledger.add_skips(o.skipped)
                self.ledger.add_source_stats(o.source_stats)
                ready, rejected = self.screen.resolve(idx, o.accepted)
                released += ready
                for j in rejected:
                    self.ledger.reject(j, "overlap")
                    self.tasks.pop(j, None)
                    overlapped.append(j)
        self.ready.extend(sorted(released))
        self.ready = deque(sorted(self.ready))
        self._count_rejections("overlap" for _ in overlapped)
        for idx, o in results:
            if o.accepted:
                self.accepted += 1
                self.consecutive_errors = 0
                continue
            self._count_rejections([o.reason])
            if o.reason == "source_error":
                self.consecutive_errors += 1
                if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                    raise SourceUnavailable(f"the {self.recipe.source} source failed for {self.consecutive_errors} "
                                            f"locations in a row: {o.detail}")
            else:
                self.consecutive_errors = 0

    def build_finished_parts(self) -> None:
        """Build the index parts no candidate of which can change any more (all below every live one)."""
        low = min([self.next_index, *self.tasks])
        if low // self.per_part <= self.built_below // self.per_part:
            return
        state = index_state(self.out)
        state["layout"] = self.cm["layout"]
        stale = stale_parts(self.ledger, self.cm, state, below=(low // self.per_part) * self.per_part,
                            start=self.built_below)
        if stale:
            build_parts(self.out, self.ledger, self.cm, stale, write_items=False, state=state)
            if self.checkpoint is not None:
                self.checkpoint()
        self.built_below = low

    def report(self) -> None:
        if self.progress:
            self.progress(jobs.Progress(self.accepted, self.recipe.n, "location",
                                        {"accepted": self.accepted, "rejected": self.rejected,
                                         **{f"rejected_{k}": v for k, v in self.reasons.items()}}))
