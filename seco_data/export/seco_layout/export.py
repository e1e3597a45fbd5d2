"""Export a catalog to the SeCo folder layout, read unchanged by torchgeo's ``SeasonalContrastS2``
and by the SeCo reference loaders (ServiceNow/seasonal-contrast ``datasets/seco_dataset.py``)::

    OUT/<i:06d>/<scene>/<band>.tif       one single-band GeoTIFF per band, native size (264/132/44 px)
    OUT/<i:06d>/<scene>/metadata.json    Earth-Engine-like properties (as SeCo's downloader wrote) + seco's
    OUT/<i:06d>/<scene>.tif              with ``preview``: RGB uint8 preview, as in SeCo-100K
    .OUT.seco/index.csv                  (beside OUT) i -> catalog location, season, item id, scene folder
    .OUT.seco/seco_layout.json           (beside OUT) settings, catalog (path, collection, parquet sha256), counts

``i`` runs 0..N-1 in catalog order (torchgeo opens ``f'{index:06}'``). Band files use SeCo's names
(``B1`` ... ``B9``, ``B8A``, ``B10``, ``B11``, ``B12``). ``bits=8`` converts DN as SeCo did
(``rescale_intensity(DN / 10000, in_range=(0, 1), out_range=np.uint8)``: clip, x255, truncate);
``bits=16`` keeps DN. Catalogs of 8-bit data (imported SeCo) are copied unchanged. Files carry the
catalog's exact CRS and transform, where SeCo wrote approximate lon/lat bounds; both readers ignore
georeferencing. OUT holds location folders only (SeCo's loaders take every entry of OUT for a
location); seco's own files live beside it, in ``.<OUT name>.seco/``.

Each location is written into ``.<OUT name>.seco/partial/`` and renamed into place, so a location folder is
complete or absent; a rerun with the same settings and catalog skips finished locations (same
bytes). ``partial`` is removed at the end of a run.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import os
import re
import shutil
import signal
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ... import __version__
from ...bands import ALIASES, BANDS, canonical
from ...errors import CatalogError, OutputError, UsageError
from ...geotiff import write_atomic
from ...hashing import sha256_file
from ...recipe import differences
from ...catalog.index import Asset, CatalogIndex, Location, Patch

log = logging.getLogger(__name__)

#: choices for ``compress``: lossless codecs, and ``jpeg`` (8-bit only, lossy) as in the SeCo release
COMPRESSIONS = ("deflate", "zstd", "lzw", "jpeg", "none")
BITS = (8, 16)
#: seco's own files live beside OUT, in ``.<OUT name>.seco/``, never inside it: SeCo's loaders take
#: every folder of OUT for a location (pathlib's glob("*") matches hidden names too) and
#: SeasonalContrastBasic opens every entry of OUT as a folder, so OUT holds location folders only
LAYOUT_FILE = "seco_layout.json"
INDEX_FILE = "index.csv"


def meta_dir(out: Path) -> Path:
    """Where the settings, the index and the partial writes of the export in ``out`` live."""
    return out.parent / f".{out.name}.seco"


def partial_dir(out: Path) -> Path:
    return meta_dir(out) / "partial"
LAYOUT_VERSION = 1
_SECO_NAME = {v: k for k, v in ALIASES.items()}  # B01 -> B1
_LOCATION_DIR = re.compile(r"^\d{6}$")
_PREVIEW = ("B04", "B03", "B02")


@dataclass(frozen=True)
class SecoLayoutReport:
    """Totals of the layout in ``out``; ``skipped`` counts locations already finished by an earlier run."""

    out: Path
    locations: int
    scenes: int
    files: int
    bytes: int
    seconds: float
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


@dataclass(frozen=True)
class _Settings:
    bits: int
    bands: tuple[str, ...]  # canonical
    compress: str
    preview: bool

    def to_dict(self) -> dict:
        return {"bits": self.bits, "bands": [seco_band_name(b) for b in self.bands],
                "compress": self.compress, "preview": self.preview}


def seco_band_name(band: str) -> str:
    """SeCo's file name for a canonical band (``B01`` -> ``B1``, ``B8A`` -> ``B8A``)."""
    return _SECO_NAME.get(band, band)


def to_uint8(dn: np.ndarray, scale: float) -> np.ndarray:
    """SeCo's 8-bit conversion: ``floor(clip(DN * scale, 0, 1) * 255)``."""
    return np.floor(np.clip(dn.astype(np.float64) * scale, 0.0, 1.0) * 255.0).astype(np.uint8)


def preview_rgb(rgb8: np.ndarray) -> np.ndarray:
    """SeCo-100K's preview of 8-bit B4,B3,B2: ``rescale_intensity(rgb8, in_range=(0, 255 * 0.3),
    out_range=(0, 255)).astype(np.uint8)`` (clip, stretch, truncate)."""
    hi = 255 * 0.3
    x = np.clip(rgb8.astype(np.float64), 0.0, hi)
    return ((x - 0.0) / (hi - 0.0) * (255.0 - 0.0) + 0.0).astype(np.uint8)


def scene_folders(location: Location) -> list[str]:
    """Filesystem-safe, unique scene folder names of a location's patches (by season)."""
    names: list[str] = []
    for p in location.patches:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", p.scene_id or p.item_id).strip("_")[:150] or f"season{p.season}"
        name, k = base, 1
        while name in names:
            name = f"{base}_s{p.season}" if k == 1 else f"{base}_s{p.season}_{k}"
            k += 1
        names.append(name)
    return names


def _spacecraft(platform: str) -> str:
    m = re.fullmatch(r"sentinel-?2([a-d])", platform.strip().lower())
    return f"Sentinel-2{m.group(1).upper()}" if m else platform


def scene_metadata(patch: Patch) -> dict:
    """``metadata.json`` of a scene folder: the Earth Engine keys SeCo's downloader stored, plus seco's."""
    t = dt.datetime.fromisoformat(patch.datetime.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return {
        "system:index": patch.scene_id,
        "system:time_start": int(round(t.timestamp() * 1000)),
        "CLOUDY_PIXEL_PERCENTAGE": patch.scene_cloud,
        "SPACECRAFT_NAME": _spacecraft(patch.platform),
        "datetime": patch.datetime,
        "seco:item_id": patch.item_id,
        "seco:location": patch.location,
        "seco:season": patch.season,
        "seco:cloud_fraction": patch.cloud_fraction,
        "seco:valid_fraction": patch.valid_fraction,
    }


# -- one location (runs in a worker) -----------------------------------------------------------------


def _write_tif(path: Path, pixels: np.ndarray, crs: str, transform: tuple, compress: str,
               descriptions: Sequence[str]) -> None:
    import rasterio
    from rasterio.transform import Affine

    from ...geotiff import _block

    count, h, w = pixels.shape
    profile = dict(driver="GTiff", width=w, height=h, count=count, dtype=pixels.dtype.name)
    if crs and len(transform) >= 6:
        profile.update(crs=rasterio.CRS.from_user_input(crs), transform=Affine(*transform[:6]))
    if compress == "jpeg":  # as SeCo's downloader: strips, GDAL's default quality
        profile.update(compress="jpeg")
    else:
        profile.update(tiled=True, blockxsize=_block(w), blockysize=_block(h))
        if compress != "none":
            profile.update(compress=compress, predictor=2)
    if pixels.dtype == np.uint16:
        profile.update(nodata=0)  # the catalog's no-data DN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(pixels)
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)


def _band(patch: Patch, band: str, cache: dict) -> tuple[np.ndarray, Asset]:
    for a in patch.assets:
        if band in a.bands:
            if a.key not in cache:
                cache[a.key] = a.read()
            return cache[a.key][a.bands.index(band)], a
    raise CatalogError(f"item {patch.item_id} has no band {band}",
                       hint="export the bands every item has (--bands), or check the catalog with `seco-data verify`")


def _eight_bit(pixels: np.ndarray, asset: Asset) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return to_uint8(pixels, asset.scale)
    raise CatalogError(f"{asset.path} holds {pixels.dtype} pixels; only uint16 and uint8 are exported")


def _write_location(i: int, location: Location, out: str, settings: _Settings) -> tuple[int, int, int]:
    """Write location ``i`` into a temporary folder and rename it to ``OUT/<i:06d>``; return
    (scenes, files, bytes)."""
    out_p = Path(out)
    tmp = partial_dir(out_p) / f"{i:06d}.{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for patch, folder in zip(location.patches, scene_folders(location)):
        scene = tmp / folder
        scene.mkdir()
        cache: dict = {}
        for band in settings.bands:
            pixels, asset = _band(patch, band, cache)
            if settings.bits == 8:
                pixels = _eight_bit(pixels, asset)
            elif pixels.dtype != np.uint16:
                raise CatalogError(f"{asset.path} holds {pixels.dtype} pixels: 16-bit output needs uint16 DN",
                                   hint="export this catalog with --bits 8")
            name = seco_band_name(band)
            _write_tif(scene / f"{name}.tif", pixels[None], asset.crs, asset.transform, settings.compress, [name])
        (scene / "metadata.json").write_text(json.dumps(scene_metadata(patch), ensure_ascii=False) + "\n", "utf-8")
        if settings.preview:
            rgb, assets = [], []
            for band in _PREVIEW:
                pixels, asset = _band(patch, band, cache)
                rgb.append(_eight_bit(pixels, asset))
                assets.append(asset)
            _write_tif(tmp / f"{folder}.tif", preview_rgb(np.stack(rgb)), assets[0].crs, assets[0].transform,
                       settings.compress, ["B4", "B3", "B2"])
    counts = _count(tmp)
    os.rename(tmp, out_p / f"{i:06d}")
    return counts


def _count(folder: Path) -> tuple[int, int, int]:
    """(scenes, files, bytes) of a finished location folder."""
    scenes = files = size = 0
    for entry in os.scandir(folder):
        if entry.is_dir():
            scenes += 1
            for f in os.scandir(entry.path):
                files += 1
                size += f.stat().st_size
        else:
            files += 1
            size += entry.stat().st_size
    return scenes, files, size


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C


# -- the export ----------------------------------------------------------------------------------------


def _settings(index: CatalogIndex, bits, bands, compress, preview) -> _Settings:
    if bits not in BITS:
        raise UsageError(f"bits must be 8 or 16, not {bits!r}")
    if compress not in COMPRESSIONS:
        raise UsageError(f"unknown compression {compress!r}", hint=f"use one of {', '.join(COMPRESSIONS)}")
    if compress == "jpeg" and bits == 16:
        raise UsageError("JPEG compression needs 8-bit output",
                         hint="JPEG is lossy and 8-bit only: use --bits 8, or a lossless --compress with --bits 16")
    first = next(index.patches(batch=64), None)
    held = {b for a in first.assets for b in a.bands} if first else set()
    dtypes = {a.dtype for a in first.assets if a.bands} if first else set()  # data assets, not the thumbnail
    if bits == 16 and dtypes - {"uint16"}:
        raise UsageError(f"{index.root} holds {'/'.join(sorted(dtypes))} pixels; 16-bit output needs uint16 DN",
                         hint="use --bits 8 for catalogs of 8-bit data (e.g. imported SeCo)")
    if isinstance(bands, str):
        bands = [b for b in bands.split(",") if b.strip()]
    if bands is None:
        chosen = tuple(b for b in BANDS if b in held)
    else:
        chosen = []
        for b in bands:
            try:
                c = canonical(b)
            except KeyError:
                raise UsageError(f"unknown band {b!r}",
                                 hint="use Sentinel-2 band names: B1 ... B12 (or B01 ... B12), B8A") from None
            if first is not None and c not in held:
                raise UsageError(f"band {b} is not in the catalog {index.name}",
                                 hint=f"it holds {' '.join(seco_band_name(x) for x in BANDS if x in held)}")
            if c not in chosen:
                chosen.append(c)
        chosen = tuple(b for b in BANDS if b in chosen)  # table order: the order given does not matter
        if not chosen:
            raise UsageError("no band selected", hint="pass band names, e.g. --bands B2,B3,B4")
    if preview and first is not None and not set(_PREVIEW) <= held:
        raise UsageError("a preview needs B2, B3 and B4, which the catalog lacks", hint="export without --preview")
    return _Settings(bits, chosen, compress, bool(preview))


def _identity(index: CatalogIndex, settings: _Settings) -> dict:
    return {
        "format": "seco",
        "layout_version": LAYOUT_VERSION,
        "settings": settings.to_dict(),
        "catalog": {"path": str(index.root), "collection": index.name, "items_sha256": sha256_file(index.parquet)},
    }


def _ours(entry: str) -> bool:
    return bool(_LOCATION_DIR.match(entry))


def _clear(out: Path, remove: bool) -> None:
    """Remove a previous export from ``out`` if ``remove``;
    refuse to touch anything else."""
    foreign = sorted(p.name for p in out.iterdir() if not _ours(p.name))
    if foreign:
        raise OutputError(f"{out} holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, "
                          "which is not part of a SeCo layout export",
                          hint="choose an empty or new --out; --overwrite only replaces a previous export")
    for p in out.iterdir() if remove else ():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def _prepare(out: Path, identity: dict, overwrite: bool, locked: bool) -> None:
    """Refuse an ``out`` holding anything but this same export (unless ``overwrite``); once
    ``locked``, clear it for an overwrite."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is not a folder", hint="choose a folder for --out")
    if not out.exists() or not any(out.iterdir()):
        return
    layout = meta_dir(out) / LAYOUT_FILE
    old = None
    if layout.is_file():
        try:
            d = json.loads(layout.read_text("utf-8"))
            old = {k: d.get(k) for k in identity}
        except (OSError, ValueError, AttributeError):
            old = None
    if old == identity:
        return
    if not overwrite:
        if old is None:
            raise OutputError(f"{out} is not empty and holds no SeCo layout export",
                              hint="choose an empty or new --out, or pass --overwrite to replace a previous export")
        diff = ", ".join(differences(old, identity))
        raise OutputError(f"{out} holds a SeCo layout export with other settings or of another catalog ({diff})",
                          hint="rerun with the same settings to resume, pass --overwrite to replace it, "
                          "or choose another --out")
    _clear(out, remove=locked)


def _lock(partial: Path):
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None
    fd = os.open(partial / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OutputError(f"another export is writing {partial.parent.parent / partial.parent.name[1:-5]}",
                          hint="wait for it to finish, or choose another --out") from None
    return fd


def export_seco_layout(catalog, out, *, bits=8, bands=None, compress="deflate", preview=False,
                       workers=1, overwrite=False, progress=None) -> SecoLayoutReport:
    """Export ``catalog`` to the SeCo folder layout in ``out`` (see the module docstring).

    ``bands``: canonical or SeCo names (default every band of the catalog); ``progress``: called with
    the number of locations done so far after each location. Rerunning with the same settings
    resumes; other settings or other content in ``out`` raise :class:`OutputError` unless
    ``overwrite`` (which only ever removes a previous export).
    """
    t0 = time.monotonic()
    if workers < 1:
        raise UsageError(f"workers must be >= 1, not {workers}")
    index = CatalogIndex(catalog)
    settings = _settings(index, bits, bands, compress, preview)
    identity = _identity(index, settings)
    out = Path(out).resolve()
    _prepare(out, identity, overwrite, locked=False)  # before creating anything in out
    partial = partial_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        partial.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {partial}: {e}", hint="choose a writable --out") from None
    fd = _lock(partial)
    try:
        _prepare(out, identity, overwrite, locked=True)
        for p in partial.iterdir():  # left by an interrupted run
            if p.name != "lock":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        _write_json(meta_dir(out) / LAYOUT_FILE, {**identity, "software": {"name": "seco", "version": __version__},
                                        "complete": False})
        log.info("exporting %s to %s (%d-bit, %s, %d bands)", index.root, out, settings.bits, settings.compress,
                 len(settings.bands))
        totals, n, skipped = _run(index, out, settings, workers, progress)
        counts = {"locations": n, "scenes": totals[0], "files": totals[1], "bytes": totals[2]}
        _write_json(meta_dir(out) / LAYOUT_FILE, {**identity, "software": {"name": "seco", "version": __version__},
                                        "complete": True, "counts": counts})
        os.replace(partial / INDEX_FILE, meta_dir(out) / INDEX_FILE)
        if fd is not None:
            os.unlink(partial / "lock")
        shutil.rmtree(partial, ignore_errors=True)
    finally:
        if fd is not None:
            os.close(fd)
    report = SecoLayoutReport(out, n, totals[0], totals[1], totals[2], time.monotonic() - t0,
                              {"finished": skipped} if skipped else {})
    log.info("SeCo layout: %d locations, %d scenes, %d files, %d bytes in %.1f s (%d already finished)",
             n, totals[0], totals[1], totals[2], report.seconds, skipped)
    return report


def _write_json(path: Path, obj: dict) -> None:
    write_atomic(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode())


def _run(index: CatalogIndex, out: Path, settings: _Settings, workers: int,
         progress: Callable[[int], None] | None) -> tuple[list[int], int, int]:
    """Write every location not yet in ``out``; stream ``index.csv`` in catalog order."""
    totals = [0, 0, 0]
    done = skipped = n = 0

    def finish(counts: Iterable[int]) -> None:
        nonlocal done
        for k, v in enumerate(counts):
            totals[k] += v
        done += 1
        if progress:
            progress(done)

    with open(partial_dir(out) / INDEX_FILE, "w", newline="", encoding="utf-8") as f:
        rows = csv.writer(f)
        rows.writerow(["index", "location", "season", "item_id", "scene_id", "folder"])
        if workers <= 1:
            pool = None
        else:
            import multiprocessing as mp

            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
            pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker)
        pending: set = set()
        try:
            for i, loc in enumerate(index.locations()):
                n = i + 1
                for p, folder in zip(loc.patches, scene_folders(loc)):
                    rows.writerow([f"{i:06d}", p.location, p.season, p.item_id, p.scene_id, folder])
                target = out / f"{i:06d}"
                if target.is_dir():
                    skipped += 1
                    finish(_count(target))
                elif pool is None:
                    finish(_write_location(i, loc, str(out), settings))
                else:
                    pending.add(pool.submit(_write_location, i, loc, str(out), settings))
                    while len(pending) >= 2 * workers:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            finish(fut.result())
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    finish(fut.result())
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    return totals, n, skipped
