"""The files of one location in the SeCo layout: names, 8-bit conversion, metadata, previews.

Runs in the export's workers: :func:`write_location` writes location ``i`` into a temporary folder
and renames it into place, so a location folder is complete or absent; on object storage, object by
object (each whole), the location being complete once all of its objects are there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from ...bands import ALIASES, to_uint8
from ...catalog.index import Asset, Location, Patch
from ...errors import CatalogError
from ...geotiff import encode_raster
from ...outputs import fsync_dir, write_many
from ...storage import is_url, store_for

_SECO_NAME = {v: k for k, v in ALIASES.items()}  # B01 -> B1
PREVIEW = ("B04", "B03", "B02")


def seco_band_name(band: str) -> str:
    """SeCo's file name for a canonical band (``B01`` -> ``B1``, ``B8A`` -> ``B8A``)."""
    return _SECO_NAME.get(band, band)


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


def _tif(pixels: np.ndarray, crs: str, transform: tuple, compress: str, descriptions: Sequence[str]) -> bytes:
    import rasterio
    from rasterio.transform import Affine

    georef = bool(crs) and len(transform) >= 6
    e = encode_raster(pixels, rasterio.CRS.from_user_input(crs) if georef else None,
                      Affine(*transform[:6]) if georef else None, 0, tuple(descriptions),
                      nodata=0 if pixels.dtype == np.uint16 else None,  # the catalog's no-data DN
                      compress=compress, fast=False)
    return e.data


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


def location_files(location: Location, settings) -> dict[str, bytes]:
    """The files of a location's folder by their path inside it: per scene folder its band GeoTIFFs
    then ``metadata.json``, and with ``preview`` the scene's RGB preview beside its folder."""
    files: dict[str, bytes] = {}
    for patch, folder in zip(location.patches, scene_folders(location)):
        cache: dict = {}
        for band in settings.bands:
            pixels, asset = _band(patch, band, cache)
            if settings.bits == 8:
                pixels = _eight_bit(pixels, asset)
            elif pixels.dtype != np.uint16:
                raise CatalogError(f"{asset.path} holds {pixels.dtype} pixels: 16-bit output needs uint16 DN",
                                   hint="export this catalog with --bits 8")
            name = seco_band_name(band)
            files[f"{folder}/{name}.tif"] = _tif(pixels[None], asset.crs, asset.transform, settings.compress, [name])
        files[f"{folder}/metadata.json"] = (json.dumps(scene_metadata(patch), ensure_ascii=False) + "\n").encode()
        if settings.preview:
            rgb, assets = [], []
            for band in PREVIEW:
                pixels, asset = _band(patch, band, cache)
                rgb.append(_eight_bit(pixels, asset))
                assets.append(asset)
            files[f"{folder}.tif"] = _tif(preview_rgb(np.stack(rgb)), assets[0].crs, assets[0].transform,
                                          settings.compress, ["B4", "B3", "B2"])
    return files


def location_names(location: Location, settings) -> list[str]:
    """The paths :func:`location_files` gives, without making the files (to see what is written)."""
    names = []
    for folder in scene_folders(location):
        names += [f"{folder}/{seco_band_name(b)}.tif" for b in settings.bands] + [f"{folder}/metadata.json"]
        if settings.preview:
            names.append(f"{folder}.tif")
    return names


def counts_of(files: dict[str, int]) -> tuple[int, int, int]:
    """(scenes, files, bytes) of a location folder's files, given by path and size."""
    return len({rel.split("/")[0] for rel in files if "/" in rel}), len(files), sum(files.values())


def write_location(i: int, location: Location, out: str, settings) -> tuple[int, int, int]:
    """Write location ``i`` to ``OUT/<i:06d>`` and return (scenes, files, bytes).

    In a folder: into a temporary folder, renamed into place, so a location folder is complete or
    absent. On object storage (``out`` a URL): object by object, each whole; a location is complete
    once every one of its objects is there (:func:`location_names`), and a rerun writes a location
    that is not again (the same bytes)."""
    files = location_files(location, settings)
    key = f"{i:06d}"
    counts = counts_of({rel: len(data) for rel, data in files.items()})
    if is_url(out):
        store_for(out).put_many(key, files)
        return counts
    out_p = Path(out)
    tmp = partial_dir(out_p) / f"{key}.{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    folders: dict[str, dict[str, bytes]] = {}
    for rel, data in files.items():
        folder, _, name = rel.rpartition("/")
        folders.setdefault(folder, {})[name] = data
    for folder, group in folders.items():  # the scene folders, then the previews beside them
        (tmp / folder).mkdir(exist_ok=True)
        write_many(tmp / folder, group)
    os.rename(tmp, out_p / key)
    fsync_dir(out_p)
    return counts


def count_files(folder: Path) -> tuple[int, int, int]:
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




def meta_dir(out: Path) -> Path:
    """Where the settings, the index and the partial writes of the export in ``out`` live."""
    return out.parent / f".{out.name}.seco"


def partial_dir(out: Path) -> Path:
    return meta_dir(out) / "partial"
