"""True-colour PNG quicklooks of patches, and ``catalog thumbnails`` for catalogs made without them.

The picture (fixed, so thumbnails compare across seasons, locations and catalogs):

* bands B04, B03, B02 of the item's finest data GeoTIFF (its 10 m group) as red, green, blue; an
  asset without all three gives a grey picture of its first band (the same value in R, G and B);
* reflectance = DN x ``raster:scale`` (1e-4 for uint16 DN, 1/255 for 8-bit SeCo imports), so 16-bit
  and 8-bit catalogs of the same scene look alike;
* stretch: ``v = clip(reflectance / 0.3, 0, 1) ** (1 / 1.3)`` and ``round(255 v)`` (half up): the
  0..0.3 reflectance range of SeCo's own previews, with a mild gamma that lifts vegetation and water
  out of the dark end;
* no-data: a pixel whose rendered bands all equal the GeoTIFF's nodata value (DN 0 in seco
  catalogs) is black (0, 0, 0); files without a nodata value (SeCo imports) have none. (No alpha
  channel: it would cost 15 % more bytes for the few patches with no-data pixels);
* size: native (264 x 264 px for a 2640 m patch at 10 m) unless a side exceeds :data:`MAX_SIDE`;
  then the reflectance is averaged over f x f blocks (no-data pixels left out; a block without
  valid pixels is no-data), f the smallest integer that brings both sides within the cap, and the
  last rows and columns that do not fill a block are dropped;
* north up: rows and columns are flipped when the GeoTIFF's transform runs south-up or east-left.

The PNG is an 8-bit RGB image without georeferencing, encoded by GDAL's PNG driver (rasterio, no
new dependency), and its bytes depend on the pixels alone: same input, same file, same checksum.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import CatalogError, OutputError, UsageError
from ..geotiff import write_atomic
from .writer import THUMBNAIL, dump_json, location_items, thumbnail_asset, thumbnail_name

log = logging.getLogger(__name__)

RGB = ("B04", "B03", "B02")
#: reflectance shown as full white
REFLECTANCE_MAX = 0.3
#: display gamma: v ** (1 / GAMMA) brightens the mid-tones
GAMMA = 1.3
#: longest side of a thumbnail in pixels: a 264 px patch stays native, larger ones are averaged
#: down by an integer factor (a 512 px patch to 256 px)
MAX_SIDE = 320
#: PNG deflate level: on a 264 px simulator patch, level 3 encodes in ~8 ms and level 6 in ~32 ms for
#: 7 % fewer bytes (9: no further gain); collection writes one per item, so speed wins
ZLEVEL = 3


# -- one picture -----------------------------------------------------------------------------------


def render(pixels: np.ndarray, bands: Sequence[str], scale: float, nodata: float | None = 0,
           *, max_side: int = MAX_SIDE) -> np.ndarray:
    """The RGB picture (3, h, w) uint8 of ``pixels`` (bands, H, W) in DN, north up; see the module
    docstring for the stretch, the grey fallback and the no-data rule."""
    if pixels.ndim != 3 or pixels.shape[0] != len(bands) or not len(bands):
        raise ValueError(f"expected pixels (bands={len(bands)}, H, W), got {pixels.shape}")
    names = list(bands)
    pick = [names.index(b) for b in RGB] if all(b in names for b in RGB) else [0, 0, 0]
    chosen = pixels[pick]
    valid = np.ones(chosen.shape[1:], bool) if nodata is None else ~np.all(chosen == nodata, axis=0)
    refl = chosen.astype(np.float64) * float(scale)
    h, w = valid.shape
    f = max(1, -(-max(h, w) // max_side))
    if f > 1:
        h, w = h // f, w // f
        if not h or not w:
            raise ValueError(f"pixels {pixels.shape[1:]} are too narrow to average by {f}")
        v = valid[: h * f, : w * f].reshape(h, f, w, f)
        count = v.sum(axis=(1, 3))
        total = (refl[:, : h * f, : w * f] * valid[: h * f, : w * f]).reshape(3, h, f, w, f).sum(axis=(2, 4))
        refl = total / np.maximum(count, 1)
        valid = count > 0
    v = np.clip(refl / REFLECTANCE_MAX, 0.0, 1.0) ** (1.0 / GAMMA)
    rgb = np.floor(v * 255.0 + 0.5).astype(np.uint8)
    rgb[:, ~valid] = 0
    return rgb


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of ``image`` (bands, h, w) uint8 (1 to 4 bands), through GDAL's PNG driver."""
    import rasterio
    from rasterio.io import MemoryFile

    if image.dtype != np.uint8 or image.ndim != 3 or not 1 <= image.shape[0] <= 4:
        raise ValueError(f"expected uint8 (1-4, h, w), got {image.dtype} {image.shape}")
    n, h, w = image.shape
    # a pixel-grid transform (not the identity, which rasterio warns about) and no PAM sidecar: the
    # PNG holds pixels only, and no global warning filter is touched (thread-safe)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), MemoryFile() as mem:
        with mem.open(driver="PNG", width=w, height=h, count=n, dtype="uint8", zlevel=ZLEVEL,
                      transform=rasterio.Affine(1, 0, 0, 0, -1, h)) as dst:
            dst.write(image)
        return mem.read()


def thumbnail_png(src: bytes | str | Path, *, scale: float, bands: Sequence[str] | None = None,
                  max_side: int = MAX_SIDE) -> bytes:
    """The PNG quicklook of one GeoTIFF (a path, or its bytes in memory).

    Band names come from the file's band descriptions (seco writes them), else from ``bands`` (the
    STAC asset's); ``scale`` is the asset's ``raster:scale``. An unreadable file raises
    :class:`CatalogError` naming it.
    """
    import rasterio
    from rasterio.io import MemoryFile

    name = "GeoTIFF in memory" if isinstance(src, bytes) else str(src)
    try:
        with ExitStack() as stack:
            ds = stack.enter_context(stack.enter_context(MemoryFile(src)).open() if isinstance(src, bytes)
                                     else rasterio.open(src))
            pixels, names, nodata, t = ds.read(), list(ds.descriptions), ds.nodata, ds.transform
    except (rasterio.errors.RasterioError, OSError) as e:
        why = " ".join(f"{e}{': ' + str(e.__cause__) if e.__cause__ else ''}".split())
        raise CatalogError(f"cannot read {name}: {why}", hint="check the catalog with `seco-data verify`") from None
    if not all(names) or len(set(names)) != len(names):
        if bands is None or len(bands) != len(names):
            names = [f"band{i}" for i in range(1, len(names) + 1)]  # unnamed bands: grey of the first
        else:
            names = list(bands)
    if t.e > 0:  # south-up rows
        pixels = pixels[:, ::-1]
    if t.a < 0:
        pixels = pixels[:, :, ::-1]
    return encode_png(render(pixels, names, scale, nodata, max_side=max_side))


def ledger_entry(href: str, png: bytes) -> dict:
    """The thumbnail's entry in a ledger row's asset list (``stac.build_item`` turns it into the
    ``thumbnail`` asset); ``href`` is the file name beside the item."""
    return {"role": THUMBNAIL, "href": href, "sha256": hashlib.sha256(png).hexdigest(), "size": len(png)}


# -- a whole catalog -------------------------------------------------------------------------------

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


def _location_dirs(root: Path) -> Iterator[Path]:
    """``<shard:04d>/<location:07d>`` folders, in location order."""
    for shard in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
        yield from sorted(p for p in shard.iterdir() if p.is_dir() and p.name.isdigit())


def _item_files(root: Path) -> Iterator[Path]:
    for folder in _location_dirs(root):
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
    return 1 / 255 if asset.get("data_type") == "uint8" else 1e-4


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
        entry = ledger_entry(name, png)
        asset = thumbnail_asset("./" + name, entry["sha256"], entry["size"])
        if assets.get(THUMBNAIL) != asset:
            assets.pop(THUMBNAIL, None)
            assets[THUMBNAIL] = asset  # last, as in items written by `seco-data sample`
            dump_json(path, item)
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


def _items_in_order(root: Path) -> Iterator[dict]:
    """Item dicts from the JSON files, by location then season (the order of ``items.parquet``)."""
    for folder in _location_dirs(root):
        yield from location_items(folder)


def reindex_items(root: str | Path) -> dict:
    """Rewrite ``items.parquet``, the sub-catalogs and the collection of a catalog without a ledger
    (``seco-data import``) from its item JSON files and its collection's recorded recipe, stats,
    providers and license; return the collection."""
    from .writer import CatalogWriter

    root = Path(root)
    try:
        coll = json.loads((root / "collection.json").read_text("utf-8"))
        seasons = int(coll["seco:recipe"]["seasons"]["count"])
        writer = CatalogWriter(root, name=coll["id"], seasons=seasons, source=coll["seco:source"], scale=1e-4)
        recipe, stats, providers, license = coll["seco:recipe"], coll["seco:stats"], coll["providers"], coll["license"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CatalogError(f"cannot read the seco collection of {root}: {e}",
                           hint="point at the --out folder of `seco-data sample` or `seco-data import`") from None
    return writer.finalize_items(_items_in_order(root), recipe=recipe, stats=stats, providers=providers,
                                 license=license)


def _count_items(root: Path) -> int | None:
    try:
        import pyarrow.parquet as pq

        return pq.ParquetFile(root / "items.parquet").metadata.num_rows
    except Exception:  # noqa: BLE001 - only a progress total: count as we go
        return None


def add_thumbnails(root: str | Path, *, overwrite: bool = False, workers: int = 1,
                   progress: Callable[[int, int | None], None] | None = None) -> ThumbnailReport:
    """Give every item of the catalog in ``root`` its thumbnail PNG and ``thumbnail`` asset, then
    refresh the index (``items.parquet``, sub-catalogs, collection) so it carries them.

    Existing PNGs are kept (all are redrawn with ``overwrite``). Resumable: each PNG and item JSON is
    written atomically, and a rerun finishes what an interrupted run left. A failing item (unreadable
    JSON or GeoTIFF, missing file) is counted by reason and named in ``failures``; the others go on.
    """
    from ..sample.run import LEDGER, finalize
    from ..lock import lock_output

    t0 = time.perf_counter()
    root = Path(root)
    if not (root / "collection.json").is_file():
        raise CatalogError(f"{root} is not a seco catalog (no collection.json)",
                           hint="point at the --out folder of `seco-data sample` or `seco-data import`")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    try:
        lock = lock_output(root)  # not while `seco-data sample` or `import` writes the same catalog
    except OutputError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write to {root}: {e.strerror or e}",
                          hint="use a catalog folder you can write to") from None
    report = ThumbnailReport(root)
    total = _count_items(root)
    try:
        ledger = _LedgerUpdate(root / LEDGER) if (root / LEDGER).exists() else None
        try:
            with ThreadPoolExecutor(workers) as pool:  # decoding, deflate and file I/O release the GIL
                batch: list[Path] = []

                def drain():
                    for r in pool.map(lambda p: _process(p, overwrite), batch):
                        report.items += 1
                        if r.status == "failed":
                            report.failed[r.reason] += 1
                            report.failures.append(f"{r.reason}: {r.detail}")
                            log.info("thumbnail failed (%s): %s", r.reason, r.detail)
                        else:
                            setattr(report, r.status, getattr(report, r.status) + 1)
                            if ledger is not None:
                                ledger.add(r.item_id, r.entry)
                    batch.clear()
                    if progress:
                        progress(report.items, total)

                if progress:
                    progress(0, total)
                for path in _item_files(root):
                    batch.append(path)
                    if len(batch) >= 64 * workers:
                        drain()
                drain()
        finally:
            if ledger is not None:
                ledger.close()
        if report.items == 0:
            raise CatalogError(f"{root} has no item JSON files", hint="is the collection finished?")
        if ledger is not None:
            finalize(root)
            report.index = "ledger"
        else:
            reindex_items(root)
            report.index = "items"
    finally:
        os.close(lock)
    report.seconds = time.perf_counter() - t0
    return report
