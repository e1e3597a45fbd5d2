"""``catalog thumbnails``: give every item of a catalog its quicklook, then refresh the index.

For catalogs collected or imported without quicklooks (recipe ``thumbnails: false``), or to draw
them again (``overwrite``). Each accepted location of the ledger is drawn by a pool of threads
(decoding, JPEG and file I/O release the GIL) under the catalog's lock: per season from its data
GeoTIFF (per-patch layout), or every season side by side from the location's finest GeoTIFF
(compact). Each file is written atomically, its entry recorded in the ledger, and the index rebuilt
for the parts that changed, so a rerun finishes what an interrupted run left.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .. import jobs
from ..errors import CatalogError
from ..outputs import lock, write_atomic
from .layout import LEDGER, THUMBNAIL, files_dir, location_id, thumbnail_name
from .ledger import Ledger, LocationRow, thumbnail_entry
from .rebuild import catalog_meta, finalize
from .thumbnails import thumbnail

log = logging.getLogger(__name__)

#: failure reasons of ``catalog thumbnails``
REASONS = ("no_data_asset", "missing_geotiff", "unreadable_geotiff", "write_error")


@dataclass
class ThumbnailReport:
    root: Path
    items: int = 0  # quicklooks considered (one per location in the compact layout, per item else)
    written: int = 0
    present: int = 0  # a quicklook was already there (kept)
    failed: Counter = field(default_factory=Counter)  # reason -> count
    failures: list[str] = field(default_factory=list)  # "<reason>: <file>: <detail>", every one
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        return {"root": str(self.root), "items": self.items, "written": self.written, "present": self.present,
                "failed": dict(sorted(self.failed.items())), "failures": self.failures,
                "seconds": round(self.seconds, 3), "ok": self.ok}


@dataclass(frozen=True)
class _Job:
    """One quicklook to draw: where from, where to, and what record entry to update."""

    location: int
    item_id: str | None  # per-patch: the season's item; compact: None (the location's files)
    source: Path | None  # the GeoTIFF drawn from
    target: Path
    scale: float
    bands: tuple[str, ...]


@dataclass(frozen=True)
class _Result:
    status: str  # written, present, failed
    job: _Job
    entry: dict | None = None  # record entry
    reason: str = ""
    detail: str = ""


def _jobs(root: Path, row: LocationRow, cm: dict) -> list[_Job]:
    folder = root / files_dir(row.location, cm["seasons"], cm["layout"])
    finest = str(min(int(k) for k in cm["band_groups"]))
    bands = tuple(cm["band_groups"][finest])
    scale = float(cm.get("scale", 1e-4))
    if cm["layout"] == "compact":
        data = next((f for f in row.files if f.get("key") == f"data_{finest}m"), None)
        name = thumbnail_name(location_id(cm["name"], row.location))
        return [_Job(row.location, None, folder / data["href"] if data else None, folder / name, scale, bands)]
    out = []
    for p in row.patches:
        data = min((a for a in p.assets if a.get("role") != THUMBNAIL), key=lambda a: a.get("resolution", 0),
                   default=None)
        out.append(_Job(row.location, p.item_id, folder / data["href"] if data else None,
                        folder / thumbnail_name(p.item_id), scale, tuple((data or {}).get("bands") or bands)))
    return out


def _draw(job: _Job, overwrite: bool) -> _Result:
    try:
        if job.target.is_file() and not overwrite:
            return _Result("present", job, thumbnail_entry(job.target.name, job.target.read_bytes()))
        if job.source is None:
            return _Result("failed", job, reason="no_data_asset", detail=f"{job.target}: no data GeoTIFF recorded")
        if not job.source.is_file():
            return _Result("failed", job, reason="missing_geotiff", detail=f"{job.source}: missing")
        try:
            data = thumbnail(job.source, scale=job.scale, bands=job.bands)
        except CatalogError as e:
            return _Result("failed", job, reason="unreadable_geotiff", detail=str(e))
        write_atomic(job.target, data)
        return _Result("written", job, thumbnail_entry(job.target.name, data))
    except OSError as e:
        return _Result("failed", job, reason="write_error", detail=f"{job.target}: {e.strerror or e}")


def add_thumbnails(root: str | Path, *, overwrite: bool = False, workers: int | None = None,
                   progress: jobs.ProgressFn | None = None) -> ThumbnailReport:
    """Give every item of the catalog in ``root`` its quicklook and ``thumbnail`` asset, then
    refresh the index (``items.parquet``, sub-catalogs, collection, per-patch item JSONs).

    Existing quicklooks are kept (all are drawn again with ``overwrite``). A failing item (missing or
    unreadable GeoTIFF) is counted by reason and named in ``failures``; the others go on.
    """
    t0 = time.perf_counter()
    jobs.check_workers(workers)
    root = Path(root)
    if not (root / LEDGER).is_file():
        raise CatalogError(f"{root} is not a seco catalog (no {LEDGER})",
                           hint="point at the --out folder of `seco-data sample` or `seco-data import`")
    report = ThumbnailReport(root)
    with lock(root, what="writing to"):  # not while `seco-data sample` or `import` writes the same catalog
        ledger = Ledger(root / LEDGER)
        try:
            cm = catalog_meta(ledger)
            counts = ledger.counts()
            total = counts["accepted"] if cm["layout"] == "compact" else counts["patches"]

            def tell():
                if progress:
                    progress(jobs.Progress(report.items, total, "item",
                                           {"written": report.written, "present": report.present,
                                            "failed": sum(report.failed.values())}))

            todo = (job for row in ledger.locations() for job in _jobs(root, row, cm))
            entries: list[_Result] = []
            tell()
            n = jobs.cap_workers(workers, "thread", max(1, total))
            with jobs.Pool(n, kind="thread") as pool:
                for _, r in jobs.run(pool, _draw, ((job, overwrite) for job in todo), window=32 * n):
                    report.items += 1
                    if r.status == "failed":
                        report.failed[r.reason] += 1
                        report.failures.append(f"{r.reason}: {r.detail}")
                        log.info("thumbnail failed (%s): %s", r.reason, r.detail)
                    else:
                        setattr(report, r.status, getattr(report, r.status) + 1)
                        entries.append(r)
                    if len(entries) >= 1000:
                        _record(ledger, entries)
                    if report.items % 64 == 0:
                        tell()
            _record(ledger, entries)
            tell()
            if report.items == 0:
                raise CatalogError(f"{root} has no items", hint="is the collection finished?")
            finalize(root, ledger, write_items=True)
        finally:
            ledger.close()
    report.seconds = time.perf_counter() - t0
    return report


def _record(ledger: Ledger, results: list[_Result]) -> None:
    """Record a batch of drawn quicklooks in the ledger (one transaction)."""
    if not results:
        return
    with ledger:
        for r in results:
            if r.job.item_id is None:
                ledger.set_file(r.job.location, r.entry)
            else:
                ledger.set_asset(r.job.item_id, r.entry)
    results.clear()


__all__ = ["REASONS", "ThumbnailReport", "add_thumbnails"]
