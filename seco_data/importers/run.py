"""``import_dataset``: a released layout into OUT, in parallel, resumably; the catalog at the end.

The import keeps a ledger like ``sample``: every selected location folder is a candidate (its number
the location's), recorded ``pending`` before a worker converts it, then ``accepted`` with its seasons
and files, or ``rejected`` with the reason it was skipped. A rerun resumes: accepted locations are
kept, pending ones (interrupted) and skipped ones (their files may have been fixed since) redone,
and locations no longer selected (a smaller ``--limit``, gone from SRC) removed.

OUT may be object storage (``s3://bucket/prefix``, compact catalogs), as for ``sample``
(:mod:`seco_data.remote`): workers write each location's files to the bucket, the ledger and index
parts stay in a local staging folder, and a snapshot of them is uploaded every
:data:`SNAPSHOT_EVERY_S` seconds and at the end, so the same command resumes here or elsewhere.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .. import jobs
from ..catalog.layout import LAYOUTS, LEDGER, remove_location
from ..catalog.ledger import Ledger
from ..catalog.rebuild import finalize
from ..catalog.repair import reopen_damaged
from ..errors import IncompleteError, UsageError
from ..outputs import claim_output
from ..remote import fetch_catalog, publish_catalog, remote_catalog
from .convert import convert_location, describe
from .layouts import Layout, Skip, find_layout, list_locations

log = logging.getLogger(__name__)

#: seconds between snapshots of an import to object storage (its ledger, uploaded beside the data)
SNAPSHOT_EVERY_S = 60.0

COPERNICUS = {"name": "ESA", "roles": ["producer", "licensor"], "url": "https://sentinel.esa.int/"}


@dataclass(frozen=True)
class SkippedLocation:
    folder: str  # the source location folder's name
    reason: str
    detail: str


@dataclass(frozen=True)
class ImportReport:
    out: Path | str  # a folder, or an object-storage URL
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


def identity(layout: Layout, catalog_layout: str) -> dict:
    """What makes two imports the same output (``--limit``, like ``--n``, only changes its size)."""
    return {"kind": layout.kind, "src": str(layout.root.resolve()), "product": layout.product, "name": layout.name,
            "layout": catalog_layout}


def import_dataset(
    kind: str,
    src: str | Path,
    out: str | Path,
    *,
    product: str | None = None,
    workers: int | None = 1,
    overwrite: bool = False,
    progress: jobs.ProgressFn | None = None,
    limit: int | None = None,
    layout: str = "compact",
    thumbnails: bool = True,
    repair: str | None = None,
) -> ImportReport:
    """Import the released ``kind`` layout (``seco`` or ``ssl4eo``) at ``src`` as a catalog in ``out``.

    ``product`` (ssl4eo: ``s2c`` L1C or ``s2a`` L2A) defaults to the SRC folder's name, else ``s2c``.
    ``limit`` keeps the first N locations (by number); ``layout`` is the catalog's (``compact`` or
    ``per-patch``). Locations already in ``out`` are kept (resume), unless ``repair`` (``quick`` or
    ``full``) finds their files missing or damaged: then they are imported again. Unusable ones are
    skipped and counted by reason. Raises :class:`IncompleteError` when none is usable.
    """
    jobs.check_workers(workers)
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    if layout not in LAYOUTS:
        raise UsageError(f"unknown catalog layout {layout!r}", hint=f"use one of {', '.join(LAYOUTS)}")
    t0 = time.perf_counter()
    source = find_layout(kind, src, product)
    remote = remote_catalog(out, layout, overwrite)
    if remote is None:
        out = Path(out).expanduser()
        if out.resolve() == source.root.resolve() or source.root.resolve() in out.resolve().parents:
            raise UsageError(f"--out {out} lies inside the source {source.root}", hint="write the catalog elsewhere")
    else:
        fetch_catalog(remote)  # a resume elsewhere starts from the output's snapshot
    target = remote.url if remote else out  # where the files go
    out = remote.staging if remote else out  # the ledger, the index parts, the lock
    with claim_output(out, kind="import", identity=identity(source, layout), overwrite=overwrite):
        selected = list_locations(source.root)[:limit]
        ledger = Ledger(out / LEDGER, create=not (out / LEDGER).exists())
        try:
            if repair and ledger.get("catalog") is not None:
                reopen_damaged(target, ledger, repair, workers)
            report = _import(source, out, target, ledger, selected, layout, thumbnails, workers, progress, limit, t0,
                             (lambda: publish_catalog(remote)) if remote else None)
        finally:
            ledger.close()
        if remote:
            publish_catalog(remote)
        return report


def _import(source, out, target, ledger, selected, layout, thumbnails, workers, progress, limit, t0,
            snapshot) -> ImportReport:
    cm = describe(source, layout)
    db = ledger.db
    known = dict(db.execute("SELECT idx, status FROM candidates").fetchall())
    wanted: dict[int, str] = {}
    skips: list[SkippedLocation] = []
    for loc, name in selected:
        if loc in wanted:
            skips.append(SkippedLocation(name, "duplicate_location", f"{name}: location {loc} appears twice"))
        else:
            wanted[loc] = name
    removed = 0
    with ledger:
        for loc, status in known.items():
            if loc not in wanted or status != "accepted":  # no longer selected, interrupted, or skipped before
                remove_location(target, source.name, loc, source.seasons, layout)
                db.execute("DELETE FROM patches WHERE location = ?", (loc,))
                db.execute("DELETE FROM candidates WHERE idx = ?", (loc,))
                removed += loc not in wanted and status == "accepted"
        done = {loc for loc, status in known.items() if status == "accepted" and loc in wanted}
        todo = [(loc, name) for loc, name in wanted.items() if loc not in done]
        ledger.add_candidates([(loc, 0.0, 0.0, name, None, "pending", None) for loc, name in todo])
        if ledger.get("created") is None:
            ledger.set("created", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        ledger.set("catalog", json.dumps({**cm, **_collection_text(source, layout, len(selected), limit)}))
    imported = _run(source, target, ledger, todo, layout, thumbnails, workers, progress, len(selected), len(done), skips,
                    snapshot)
    locations = len(done) + len(imported)
    reasons = dict(sorted(Counter(s.reason for s in skips).items()))
    if not locations:
        raise IncompleteError(
            f"none of the {len(selected)} locations under {source.root} could be imported ("
            + (", ".join(f"{k} {v}" for k, v in reasons.items()) or "no location folders") + ")",
            hint="check that the download is complete (run with -v for each location's problem)")
    finalize(out, ledger)
    skips.sort(key=lambda s: (int(s.folder), s.folder) if s.folder.isdigit() else (1 << 62, s.folder))
    return ImportReport(target, source.root, source.kind, source.name, source.product, len(selected), len(imported),
                        len(done), removed, locations * source.seasons, reasons, tuple(skips),
                        time.perf_counter() - t0)


def _convert(source: Layout, location: int, folder: str, out: str | Path, layout: str, thumbnails: bool):
    """:func:`convert_location` in a worker: ``(seasons, files, centre)``, or ``(reason, detail)`` if skipped."""
    import rasterio

    try:
        with rasterio.Env():  # one GDAL environment for the location's ~60 files
            return convert_location(source, location, folder, out, layout, thumbnails)
    except Skip as e:
        return e.reason, e.detail


def _run(source, out, ledger, todo, layout, thumbnails, workers, progress, total, resumed, skips,
         snapshot=None) -> list[int]:
    """Convert ``todo`` locations into ``out`` (a folder or a URL) in this process or in worker
    processes; return those imported. ``snapshot`` (object storage) is called every
    :data:`SNAPSHOT_EVERY_S` seconds.

    Workers share the run's lock on OUT, so a rerun cannot clean up while one still writes.
    """
    imported: list[int] = []
    last_snapshot = time.monotonic()

    def tell():
        if progress:
            progress(jobs.Progress(resumed + len(imported) + len(skips), total, "location",
                                   {"imported": len(imported), "resumed": resumed, "skipped": len(skips)}))

    tell()
    tasks = ((source, loc, name, out, layout, thumbnails) for loc, name in todo)
    with jobs.Pool(jobs.cap_workers(workers, "process", max(1, len(todo))), kind="process") as pool:
        for (_, loc, name, *_), result in jobs.run(pool, _convert, tasks):
            with ledger:
                if len(result) == 3:
                    rows, files, (lon, lat) = result
                    ledger.db.execute("UPDATE candidates SET lon = ?, lat = ? WHERE idx = ?", (lon, lat, loc))
                    ledger.accept(loc, rows, files)
                    imported.append(loc)
                else:
                    ledger.reject(loc, *result)
                    log.info("skipping location %s: %s: %s", name, *result)
                    skips.append(SkippedLocation(name, *result))
            tell()
            if snapshot is not None and time.monotonic() - last_snapshot > SNAPSHOT_EVERY_S:
                snapshot()
                last_snapshot = time.monotonic()
    return imported


def _collection_text(layout: Layout, catalog_layout: str, found: int, limit: int | None) -> dict:
    """The imported collection's description, providers, licence and recipe-like record."""
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
              "bands": list(layout.bands), "seasons": {"count": layout.seasons}, "layout": catalog_layout,
              "import": {**identity(layout, catalog_layout), "layout": layout.layout, "limit": limit}}
    providers = [COPERNICUS, authors]  # seco's own entry is added by the collection
    return {"recipe": recipe, "providers": providers, "license": license, "requested": found}
