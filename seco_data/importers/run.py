"""``import_dataset``: a released layout into OUT, in parallel, resumably; the catalog at the end."""

from __future__ import annotations

import concurrent.futures as cf
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
from typing import Callable, Iterator

from .. import __version__
from ..errors import IncompleteError, OutputError, UsageError
from ..lock import LOCK, lock_output
from ..catalog.writer import CatalogWriter, dump_json, location_dir, location_items
from .convert import TMP, convert_location
from .layouts import Layout, Skip, find_layout, list_locations

log = logging.getLogger(__name__)

MANIFEST = "import.json"
COPERNICUS = {"name": "ESA", "roles": ["producer", "licensor"], "url": "https://sentinel.esa.int/"}


@dataclass(frozen=True)
class ImportProgress:
    """Handed to the progress callback after every location."""

    total: int
    done: int  # resumed + imported + skipped
    imported: int
    resumed: int
    skipped: int


@dataclass(frozen=True)
class SkippedLocation:
    folder: str  # the source location folder's name
    reason: str
    detail: str


@dataclass(frozen=True)
class ImportReport:
    out: Path
    src: Path  # the layout root actually read
    kind: str
    name: str
    product: str
    found: int  # location folders considered (after ``limit``)
    imported: int  # converted by this run
    resumed: int  # already in OUT from an earlier run
    removed: int  # locations in OUT no longer among the selected ones, deleted
    items: int
    skipped: dict = field(default_factory=dict)  # reason -> count
    skipped_locations: tuple[SkippedLocation, ...] = ()
    seconds: float = 0.0

    @property
    def locations(self) -> int:
        return self.imported + self.resumed

    def to_dict(self) -> dict:
        return {
            "out": str(self.out), "src": str(self.src), "kind": self.kind, "name": self.name,
            "product": self.product, "found": self.found, "locations": self.locations,
            "imported": self.imported, "resumed": self.resumed, "removed": self.removed, "items": self.items,
            "skipped": dict(self.skipped),
            "skipped_locations": [{"folder": s.folder, "reason": s.reason, "detail": s.detail}
                                  for s in self.skipped_locations],
            "seconds": round(self.seconds, 3),
        }


def _manifest(layout: Layout) -> dict:
    return {"kind": layout.kind, "src": str(layout.root.resolve()), "product": layout.product, "name": layout.name}


def _prepare_out(out: Path, layout: Layout, overwrite: bool) -> None:
    """Refuse an OUT with foreign content or another import (unless ``overwrite``); write the manifest."""
    want = _manifest(layout)
    path = out / MANIFEST
    if path.exists():
        try:
            have = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise OutputError(f"cannot read {path}: {e}", hint="move the folder aside or choose another --out") from None
        diff = [k for k in want if have.get(k) != want[k]]
        if diff and not overwrite:
            raise UsageError(
                f"{out} holds an import of {have.get('kind')} {have.get('src')} ({', '.join(diff)} differ)",
                hint="rerun with the original arguments to resume, pass --overwrite to replace it, or choose another --out")
        if diff or overwrite:
            log.info("overwriting the import in %s", out)
            for p in out.iterdir():
                if p.name != LOCK:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    else:
        others = sorted(p.name for p in out.iterdir() if p.name not in (LOCK, TMP))
        if others:
            raise OutputError(f"{out} is not empty and holds no seco-data import ({', '.join(others[:3])} ...)",
                              hint="choose an empty or new folder with --out (--overwrite replaces only an earlier import)")
    dump_json(path, {**want, "software": {"name": "seco", "version": __version__}})


def _finished(out: Path) -> dict[int, Path]:
    """Location folders already in OUT (each was renamed into place complete)."""
    found = {}
    for shard in out.iterdir():
        if shard.is_dir() and shard.name.isdigit():
            for loc in shard.iterdir():
                if loc.is_dir() and loc.name.isdigit():
                    found[int(loc.name)] = loc
    return found


def import_dataset(
    kind: str,
    src: str | Path,
    out: str | Path,
    *,
    product: str | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[ImportProgress], None] | None = None,
    limit: int | None = None,
) -> ImportReport:
    """Import the released ``kind`` layout (``seco`` or ``ssl4eo``) at ``src`` as a catalog in ``out``.

    ``product`` (ssl4eo: ``s2c`` L1C or ``s2a`` L2A) defaults to the SRC folder's name, else ``s2c``.
    ``limit`` keeps the first N locations (by number). Locations already in ``out`` are kept (resume);
    unusable ones are skipped and counted by reason. Raises :class:`IncompleteError` when none is usable.
    """
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    t0 = time.perf_counter()
    layout = find_layout(kind, src, product)
    out = Path(out).expanduser()
    if out.resolve() == layout.root.resolve() or layout.root.resolve() in out.resolve().parents:
        raise UsageError(f"--out {out} lies inside the source {layout.root}", hint="write the catalog elsewhere")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out}: {e.strerror or e}",
                          hint="choose a folder you can write to with --out") from None
    lock = lock_output(out)
    try:
        _prepare_out(out, layout, overwrite)
        shutil.rmtree(out / TMP, ignore_errors=True)  # partial locations of an interrupted run
        selected = list_locations(layout.root)[:limit]
        wanted = {loc for loc, _ in selected}
        finished = _finished(out)
        removed = 0
        for loc, path in sorted(finished.items()):
            if loc not in wanted:  # no longer selected (smaller --limit, or gone from SRC)
                shutil.rmtree(path)
                removed += 1
        for shard in out.iterdir():
            if shard.is_dir() and shard.name.isdigit() and not any(p.is_dir() for p in shard.iterdir()):
                shutil.rmtree(shard)
        done = {loc for loc in finished if loc in wanted}
        skips: list[SkippedLocation] = []
        seen: set[int] = set()
        todo = []
        for loc, name in selected:
            if loc in seen:
                skips.append(SkippedLocation(name, "duplicate_location", f"{name}: location {loc} appears twice"))
            elif loc not in done:
                todo.append((loc, name))
            seen.add(loc)
        imported = _run(layout, out, todo, workers, progress, len(selected), len(done), skips)
        shutil.rmtree(out / TMP, ignore_errors=True)  # after an interruption a rerun removes it (under the lock)
        locations = sorted(done) + sorted(imported)
        reasons = dict(sorted(Counter(s.reason for s in skips).items()))
        if not locations:
            raise IncompleteError(
                f"none of the {len(selected)} locations under {layout.root} could be imported ("
                + (", ".join(f"{k} {v}" for k, v in reasons.items()) or "no location folders") + ")",
                hint="check that the download is complete (run with -v for each location's problem)")
        _finalize(out, layout, locations, len(selected), reasons, limit)
    finally:
        os.close(lock)
    skips.sort(key=lambda s: (int(s.folder), s.folder))
    return ImportReport(out, layout.root, kind, layout.name, layout.product, len(selected), len(imported), len(done),
                        removed, len(locations) * layout.seasons, reasons, tuple(skips), time.perf_counter() - t0)


def _convert(layout: Layout, location: int, folder: str, out: Path) -> tuple[str, str] | None:
    """:func:`convert_location` in a worker: None when imported, else (reason, detail)."""
    import rasterio

    try:
        with rasterio.Env():  # one GDAL environment for the location's ~60 files
            convert_location(layout, location, folder, out)
    except Skip as e:
        return e.reason, e.detail
    return None


def _watch_parent(ppid: int) -> None:
    while os.getppid() == ppid:
        time.sleep(0.5)
    os._exit(1)  # the parent died (kill -9): never outlive it


def _init_worker(ppid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()


def _run(layout, out, todo, workers, progress, total, resumed, skips) -> list[int]:
    """Convert ``todo`` locations in this process or ``workers`` processes; return those imported.

    Forked workers share the run's lock on OUT, so a rerun cannot clean up while one still writes.
    """
    imported: list[int] = []

    def record(loc: int, name: str, result: tuple[str, str] | None) -> None:
        if result is None:
            imported.append(loc)
        else:
            log.info("skipping location %s: %s: %s", name, *result)
            skips.append(SkippedLocation(name, *result))
        if progress:
            progress(ImportProgress(total, resumed + len(imported) + len(skips), len(imported), resumed, len(skips)))

    if workers == 1:
        for loc, name in todo:
            record(loc, name, _convert(layout, loc, name, out))
        return imported
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                  initargs=(os.getpid(),))
    in_flight: dict[cf.Future, tuple[int, str]] = {}
    queue = iter(todo)
    try:
        while True:
            for loc, name in queue:  # a bounded queue: at most 2 x workers locations dispatched
                in_flight[pool.submit(_convert, layout, loc, name, out)] = (loc, name)
                if len(in_flight) >= 2 * workers:
                    break
            if not in_flight:
                break
            finished, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            for fut in sorted(finished, key=lambda f: in_flight[f][0]):
                loc, name = in_flight.pop(fut)
                record(loc, name, fut.result())
    finally:  # on an error or Ctrl-C: drop queued work, wait for running locations (each ends renamed or removed)
        pool.shutdown(wait=True, cancel_futures=True)
    return imported


def _items(out: Path, layout: Layout, locations: list[int]) -> Iterator[dict]:
    for loc in locations:
        yield from location_items(out / location_dir(loc, layout.seasons))


def _finalize(out: Path, layout: Layout, locations: list[int], found: int, reasons: dict, limit: int | None) -> dict:
    if layout.kind == "seco":
        title = {"seco-100k": "SeCo-100K", "seco-1m": "SeCo-1M"}.get(layout.name, "SeCo")
        what = (f"{title} (Mañas et al., Seasonal Contrast, ICCV 2021): Sentinel-2 L2A patches, 12 bands, uint8 "
                "(reflectance clipped to [0, 1] x 255, truncated; the JPEG-decoded pixels of the release)")
        license = "other"
        authors = {"name": "Mañas et al. (ServiceNow), SeCo dataset", "roles": ["processor", "host"],
                   "url": "https://github.com/ServiceNow/seasonal-contrast"}
    else:
        title = "SSL4EO-S12"
        what = (f"SSL4EO-S12 (Wang et al., 2022) {'s2c' if layout.product == 'L1C' else 's2a'}: Sentinel-2 "
                f"{layout.product} patches, {len(layout.bands)} bands, uint16 DN (reflectance = DN / 10000)")
        license = "CC-BY-4.0"
        authors = {"name": "Wang et al. (TUM, zhu-xlab), SSL4EO-S12 dataset", "roles": ["processor", "licensor", "host"],
                   "url": "https://github.com/zhu-xlab/SSL4EO-S12"}
    description = (f"{what}, {layout.seasons} seasons per location, imported with `seco-data import {layout.kind}` "
                   f"from the released folder layout at {layout.root.resolve()}: pixels unchanged, re-encoded "
                   "losslessly, lon/lat georeferencing (EPSG:4326) of the source files.")
    recipe = {"name": layout.name, "description": description, "product": layout.product,
              "bands": list(layout.bands), "seasons": {"count": layout.seasons},
              "import": {**_manifest(layout), "layout": layout.layout, "limit": limit}}
    stats = {"requested": found, "locations": len(locations), "items": len(locations) * layout.seasons,
             "candidates": found, "rejections": reasons, "skipped_scenes": {}}
    source = {"name": layout.source, "product": layout.product, "synthetic": False, "imported_from": layout.layout}
    providers = [COPERNICUS, authors, {"name": "seco", "roles": ["processor"],
                                       "description": "Re-encoded losslessly and catalogued by seco-data import."}]
    writer = CatalogWriter(out, name=layout.name, seasons=layout.seasons, source=source, scale=layout.scale)
    return writer.finalize_items(_items(out, layout, locations), recipe=recipe, stats=stats, providers=providers,
                                 license=license)
