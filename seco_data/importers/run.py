"""``import_dataset``: a released layout into OUT, in parallel, resumably; the catalog at the end."""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .. import jobs
from ..catalog.layout import is_part_name
from ..catalog.rebuild import file_items
from ..catalog.writer import CollectionMeta, write_catalog
from ..errors import IncompleteError, UsageError
from ..outputs import claim_output
from .convert import TMP, convert_location
from .layouts import Layout, Skip, find_layout, list_locations

log = logging.getLogger(__name__)

COPERNICUS = {"name": "ESA", "roles": ["producer", "licensor"], "url": "https://sentinel.esa.int/"}


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


def identity(layout: Layout) -> dict:
    """What makes two imports the same output (``--limit``, like ``--n``, only changes its size)."""
    return {"kind": layout.kind, "src": str(layout.root.resolve()), "product": layout.product, "name": layout.name}


def _finished(out: Path) -> dict[int, Path]:
    """Location folders already in OUT (each was renamed into place complete)."""
    found = {}
    for part in out.iterdir():
        if part.is_dir() and is_part_name(part.name):
            for loc in part.iterdir():
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
    progress: jobs.ProgressFn | None = None,
    limit: int | None = None,
) -> ImportReport:
    """Import the released ``kind`` layout (``seco`` or ``ssl4eo``) at ``src`` as a catalog in ``out``.

    ``product`` (ssl4eo: ``s2c`` L1C or ``s2a`` L2A) defaults to the SRC folder's name, else ``s2c``.
    ``limit`` keeps the first N locations (by number). Locations already in ``out`` are kept (resume);
    unusable ones are skipped and counted by reason. Raises :class:`IncompleteError` when none is usable.
    """
    jobs.check_workers(workers)
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    t0 = time.perf_counter()
    layout = find_layout(kind, src, product)
    out = Path(out).expanduser()
    if out.resolve() == layout.root.resolve() or layout.root.resolve() in out.resolve().parents:
        raise UsageError(f"--out {out} lies inside the source {layout.root}", hint="write the catalog elsewhere")
    with claim_output(out, kind="import", identity=identity(layout), overwrite=overwrite,
                      ignore=lambda name: name == TMP):
        shutil.rmtree(out / TMP, ignore_errors=True)  # partial locations of an interrupted run
        selected = list_locations(layout.root)[:limit]
        wanted = {loc for loc, _ in selected}
        finished = _finished(out)
        removed = 0
        for loc, path in sorted(finished.items()):
            if loc not in wanted:  # no longer selected (smaller --limit, or gone from SRC)
                shutil.rmtree(path)
                removed += 1
        for part in out.iterdir():
            if part.is_dir() and is_part_name(part.name) and not any(p.is_dir() for p in part.iterdir()):
                shutil.rmtree(part)
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


def _run(layout, out, todo, workers, progress, total, resumed, skips) -> list[int]:
    """Convert ``todo`` locations in this process or in worker processes; return those imported.

    Workers share the run's lock on OUT, so a rerun cannot clean up while one still writes.
    """
    imported: list[int] = []

    def tell():
        if progress:
            progress(jobs.Progress(resumed + len(imported) + len(skips), total, "location",
                                   {"imported": len(imported), "resumed": resumed, "skipped": len(skips)}))

    tell()
    with jobs.Pool(jobs.cap_workers(workers, "process", max(1, len(todo))), kind="process") as pool:
        for (_, loc, name, _), result in jobs.run(pool, _convert, ((layout, loc, name, out) for loc, name in todo)):
            if result is None:
                imported.append(loc)
            else:
                log.info("skipping location %s: %s: %s", name, *result)
                skips.append(SkippedLocation(name, *result))
            tell()
    return imported

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
              "import": {**identity(layout), "layout": layout.layout, "limit": limit}}
    stats = {"requested": found, "locations": len(locations), "items": len(locations) * layout.seasons,
             "candidates": found, "rejections": reasons, "skipped_scenes": {}}
    source = {"name": layout.source, "product": layout.product, "synthetic": False, "imported_from": layout.layout}
    providers = [COPERNICUS, authors, {"name": "seco", "roles": ["processor"],
                                       "description": "Re-encoded losslessly and catalogued by seco-data import."}]
    meta = CollectionMeta(name=layout.name, seasons=layout.seasons, source=source, recipe=recipe, stats=stats,
                          providers=providers, license=license)
    return write_catalog(out, file_items(out, locations, layout.seasons), meta)
