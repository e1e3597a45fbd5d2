"""``catalog thumbnails``: give every item of a catalog its PNG quicklook, then refresh the index.

For catalogs sampled before thumbnails existed, or imported. Items are processed by a pool of
threads (decoding, deflate and file I/O release the GIL) under the catalog's lock; each PNG and item
JSON is written atomically, so a rerun finishes what an interrupted run left. A sampled catalog's
ledger rows get the thumbnail entries, so that a rebuild from the ledger keeps them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..bands import default_scale
from .. import jobs
from ..errors import CatalogError
from ..outputs import lock, write_atomic, write_json
from ..sample.ledger import thumbnail_entry
from .index import IndexFile
from .item import thumbnail_asset
from .layout import COLLECTION, INDEX, LEDGER, THUMBNAIL, location_dirs, thumbnail_name
from .rebuild import rebuild
from .thumbnails import RGB, thumbnail_png

log = logging.getLogger(__name__)

#: failure reasons of ``catalog thumbnails``
REASONS = ("unreadable_item", "no_data_asset", "missing_geotiff", "unreadable_geotiff", "write_error")


@dataclass
class ThumbnailReport:
    root: Path
    items: int = 0
    written: int = 0
    present: int = 0  # a PNG was already there (kept)
    failed: Counter = field(default_factory=Counter)  # reason -> count
    failures: list[str] = field(default_factory=list)  # "<file>: <reason>: <detail>", every one
    index: str = ""  # how the index was refreshed: "ledger" (sampled) or "items" (imported)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        return {"root": str(self.root), "items": self.items, "written": self.written, "present": self.present,
                "failed": dict(sorted(self.failed.items())), "failures": self.failures, "index": self.index,
                "seconds": round(self.seconds, 3), "ok": self.ok}


@dataclass(frozen=True)
class _Result:
    status: str  # written, present, failed
    item_id: str = ""
    entry: dict | None = None  # ledger entry
    reason: str = ""
    detail: str = ""


def _item_files(root: Path) -> Iterator[Path]:
    for folder in location_dirs(root):
        yield from sorted(folder.glob("*.json"))


def _source_asset(item: dict) -> dict | None:
    """The finest data asset, preferring one that holds B04, B03 and B02."""
    data = [a for a in (item.get("assets") or {}).values()
            if "data" in (a.get("roles") or []) and a.get("bands") and a.get("href")]
    if not data:
        return None

    def key(a):
        names = {b.get("name") for b in a["bands"]}
        return (not set(RGB) <= names, a.get("gsd") or a.get("raster:spatial_resolution") or 0)

    return min(data, key=key)


def _scale(asset: dict) -> float:
    s = asset.get("raster:scale")
    if s:
        return float(s)
    return default_scale(asset.get("data_type") or "uint16")


def _process(path: Path, overwrite: bool) -> _Result:
    """Make (or keep) one item's thumbnail and put its asset in the item JSON (atomic rewrite)."""
    try:
        item = json.loads(path.read_text("utf-8"))
        item_id = item["id"]
        assets = item.setdefault("assets", {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return _Result("failed", reason="unreadable_item", detail=f"{path}: {' '.join(str(e).split())}")
    name = thumbnail_name(item_id)
    png_path = path.parent / name
    status = "present"
    try:
        if png_path.is_file() and not overwrite:
            png = png_path.read_bytes()
        else:
            a = _source_asset(item)
            if a is None:
                return _Result("failed", item_id, reason="no_data_asset", detail=f"{path}: no data asset with bands")
            tif = Path(os.path.normpath(os.path.join(path.parent, a["href"])))
            if not tif.is_file():
                return _Result("failed", item_id, reason="missing_geotiff", detail=f"{tif}: missing")
            try:
                png = thumbnail_png(tif, scale=_scale(a), bands=[b.get("name") for b in a["bands"]])
            except CatalogError as e:
                return _Result("failed", item_id, reason="unreadable_geotiff", detail=str(e))
            write_atomic(png_path, png)
            status = "written"
        entry = thumbnail_entry(name, png)
        asset = thumbnail_asset("./" + name, entry["sha256"], entry["size"])
        if assets.get(THUMBNAIL) != asset:
            assets.pop(THUMBNAIL, None)
            assets[THUMBNAIL] = asset  # last, as in items written by `seco-data sample`
            write_json(path, item, indent=None)
    except OSError as e:
        return _Result("failed", item_id, reason="write_error", detail=f"{png_path}: {e.strerror or e}")
    return _Result(status, item_id, entry)


class _LedgerUpdate:
    """Adds thumbnail entries to the asset lists of a sampled catalog's ledger rows, in batches, so
    that ``collect.finalize`` (and ``seco-data catalog rebuild``) index them."""

    def __init__(self, path: Path):
        from ..sample.ledger import Ledger

        self.ledger = Ledger(path, create=False)
        self.pending: list[tuple[str, dict]] = []

    def add(self, item_id: str, entry: dict) -> None:
        self.pending.append((item_id, entry))
        if len(self.pending) >= 1000:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        with self.ledger:  # one transaction per batch
            for item_id, entry in self.pending:
                self.ledger.set_asset(item_id, entry)  # False: files of a location the ledger does not hold
        self.pending.clear()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.ledger.close()


def add_thumbnails(root: str | Path, *, overwrite: bool = False, workers: int = 1,
                   progress: jobs.ProgressFn | None = None) -> ThumbnailReport:
    """Give every item of the catalog in ``root`` its thumbnail PNG and ``thumbnail`` asset, then
    refresh the index (``items.parquet``, sub-catalogs, collection) so it carries them.

    Existing PNGs are kept (all are redrawn with ``overwrite``). Resumable: each PNG and item JSON is
    written atomically, and a rerun finishes what an interrupted run left. A failing item (unreadable
    JSON or GeoTIFF, missing file) is counted by reason and named in ``failures``; the others go on.
    """
    t0 = time.perf_counter()
    jobs.check_workers(workers)
    root = Path(root)
    if not (root / COLLECTION).is_file():
        raise CatalogError(f"{root} is not a seco catalog (no {COLLECTION})",
                           hint="point at the --out folder of `seco-data sample` or `seco-data import`")
    report = ThumbnailReport(root)
    try:
        total = IndexFile(root / INDEX).num_rows
    except CatalogError:  # only a progress total: count as we go
        total = None

    def tell():
        if progress:
            progress(jobs.Progress(report.items, total, "item", {"written": report.written, "present": report.present,
                                                                 "failed": sum(report.failed.values())}))

    with lock(root, what="writing to"):  # not while `seco-data sample` or `import` writes the same catalog
        ledger = _LedgerUpdate(root / LEDGER) if (root / LEDGER).exists() else None
        try:
            tell()
            n = jobs.cap_workers(workers, "thread", total)
            with jobs.Pool(n, kind="thread") as pool:
                for _, r in jobs.run(pool, _process, ((path, overwrite) for path in _item_files(root)), window=64 * n):
                    report.items += 1
                    if r.status == "failed":
                        report.failed[r.reason] += 1
                        report.failures.append(f"{r.reason}: {r.detail}")
                        log.info("thumbnail failed (%s): %s", r.reason, r.detail)
                    else:
                        setattr(report, r.status, getattr(report, r.status) + 1)
                        if ledger is not None:
                            ledger.add(r.item_id, r.entry)
                    if report.items % 64 == 0:
                        tell()
            tell()
        finally:
            if ledger is not None:
                ledger.close()
        if report.items == 0:
            raise CatalogError(f"{root} has no item JSON files", hint="is the collection finished?")
        rebuild(root, locked=True)
        report.index = "ledger" if ledger is not None else "items"
    report.seconds = time.perf_counter() - t0
    return report
