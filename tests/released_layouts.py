"""Tiny datasets in the exact folder layouts of the released SeCo and SSL4EO-S12 downloads.

Written the way the reference download scripts write them (ServiceNow/seasonal-contrast
``datasets/seco_downloader.py``; zhu-xlab/SSL4EO-S12 ``src/download_data/ssl4eo_s12_downloader.py``):
one single-band GeoTIFF per band named after the band without a leading zero (``B1.tif``, ``B8A.tif``),
georeferenced in ``+proj=latlong`` with the scripts' half-pixel-shifted transform, and a
``metadata.json`` holding the Earth Engine image properties (``json.dump`` of a flat dict).

- SeCo: ``ROOT/<loc:06d>/<scene id>/<band>.tif``, uint8 = floor(clip(DN / 10000, 0, 1) * 255),
  JPEG-compressed, 5 scenes per location; SeCo-100K also has a 3-band RGB preview
  ``ROOT/<loc:06d>/<scene id>.tif`` beside each scene folder.
- SSL4EO-S12: ``ROOT/<s2c|s2a>/<loc:07d>/<scene id>/<band>.tif``, uint16 DN, uncompressed,
  4 scenes per location, plus ``ROOT/center_coords.csv``.

Pixels, dates and metadata are drawn from ``seed``: the same arguments give the same files.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np

SECO_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")
L1C_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
SIZE = {"B1": 44, "B9": 44, "B10": 44, "B2": 264, "B3": 264, "B4": 264, "B8": 264,
        "B5": 132, "B6": 132, "B7": 132, "B8A": 132, "B11": 132, "B12": 132}
RGB_BANDS = ("B4", "B3", "B2")
PATCH_M = 2640
#: the SSL4EO-S12 reference dates (2021-09-22, 06-21, 03-20, 2020-12-21), in time order
SSL4EO_DATES = (dt.date(2020, 12, 21), dt.date(2021, 3, 20), dt.date(2021, 6, 21), dt.date(2021, 9, 22))


def location_point(seed: int, location: int) -> tuple[float, float]:
    """The (lon, lat) centre of a location, drawn from ``seed``."""
    rng = np.random.default_rng([seed, location, 1])
    return float(rng.uniform(-170, 170)), float(rng.uniform(-55, 65))


def _coords(lon: float, lat: float) -> list[list[float]]:
    """[[lon_min, lat_max], [lon_max, lat_min]] of a 2.64 km square, as the scripts keep them."""
    half_lat = PATCH_M / 2 / 111_320
    half_lon = half_lat / math.cos(math.radians(lat))
    return [[lon - half_lon, lat + half_lat], [lon + half_lon, lat - half_lat]]


def _transform(coords, height: int, width: int):
    """The reference scripts' ``save_geotiff`` transform (they write ``*``, which affine >= 2.4 spells ``@``)."""
    from affine import Affine

    xres = (coords[1][0] - coords[0][0]) / width
    yres = (coords[0][1] - coords[1][1]) / height
    return Affine.translation(coords[0][0] - xres / 2, coords[0][1] + yres / 2) @ Affine.scale(xres, -yres)


def save_geotiff(img: np.ndarray, coords, filename: Path, compress) -> None:
    """``save_geotiff`` of the reference scripts: ``img`` is (H, W, C)."""
    import rasterio

    height, width, channels = img.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": channels,
        "crs": "+proj=latlong",
        "transform": _transform(coords, height, width),
        "dtype": img.dtype,
        "compress": compress,
    }
    with rasterio.open(filename, "w", **profile) as f:
        f.write(img.transpose(2, 0, 1))


def _dn(rng: np.random.Generator, band: str, size: int) -> np.ndarray:
    """Smooth field plus noise, Sentinel-2-like DN (0-10000 mostly, a few saturated pixels)."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = 1600 + 300 * SECO_BANDS.index(band) if band in SECO_BANDS else 1600
    field = base + 800 * np.sin(3 * x + rng.uniform(0, 6)) * np.cos(2 * y + rng.uniform(0, 6))
    dn = field + rng.normal(0, 150, (size, size))
    dn[0, :3] = (12000, 10000, 9999)  # out of [0, 1] reflectance: clipped to 255 in the uint8 layout
    return np.clip(dn, 1, 20000).astype(np.uint16)


def _nodata_corner(arrays: dict[str, np.ndarray]) -> None:
    """Zero the top-left 1/4 x 1/4 of every band (a scene edge crossing the patch)."""
    for a in arrays.values():
        n = a.shape[0] // 4
        a[:n, :n] = 0


def _scene_id(start: dt.datetime, tile: str, rng: np.random.Generator) -> str:
    granule = start + dt.timedelta(minutes=int(rng.integers(5, 40)), seconds=int(rng.integers(0, 60)))
    return f"{start:%Y%m%dT%H%M%S}_{granule:%Y%m%dT%H%M%S}_T{tile}"


def ee_properties(scene_id: str, time_start: dt.datetime, *, level: str, spacecraft: str, cloud: float,
                  orbit: int, lon: float, lat: float) -> dict:
    """The Earth Engine properties of a Sentinel-2 image (``get_properties(image)`` of the scripts)."""
    datatake, granule, tile = scene_id.split("_")
    ms = int(time_start.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
    sat = spacecraft[-1]
    d = 1.0
    props = {
        "CLOUDY_PIXEL_PERCENTAGE": cloud,
        "CLOUD_COVERAGE_ASSESSMENT": cloud,
        "DATASTRIP_ID": f"S2{sat}_OPER_MSI_{level}_DS_EPAE_{granule}_S{datatake}_N02.14",
        "DATATAKE_IDENTIFIER": f"GS2{sat}_{datatake}_0{orbit:05d}_N02.14",
        "DATATAKE_TYPE": "INS-NOBS",
        "DEGRADED_MSI_DATA_PERCENTAGE": 0,
        "FORMAT_CORRECTNESS": "PASSED",
        "GENERAL_QUALITY": "PASSED",
        "GENERATION_TIME": ms + 3_600_000,
        "GEOMETRIC_QUALITY": "PASSED",
        "GRANULE_ID": f"{level}_{tile}_A0{orbit:05d}_{granule}",
        "MEAN_SOLAR_AZIMUTH_ANGLE": 140.5,
        "MEAN_SOLAR_ZENITH_ANGLE": 35.25,
        "MGRS_TILE": tile[1:],
        "PROCESSING_BASELINE": "02.14",
        "PRODUCT_ID": f"S2{sat}_MSI{level}_{datatake}_N0214_R{orbit:03d}_{tile}_{granule}",
        "RADIOMETRIC_QUALITY": "PASSED",
        "SENSING_ORBIT_DIRECTION": "DESCENDING",
        "SENSING_ORBIT_NUMBER": orbit,
        "SENSOR_QUALITY": "PASSED",
        "SOLAR_IRRADIANCE_B1": 1884.69,
        "SPACECRAFT_NAME": spacecraft,
        "system:asset_size": 1_071_987_234,
        "system:footprint": {"type": "LinearRing", "coordinates": [
            [lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]},
        "system:index": scene_id,
        "system:time_end": ms,
        "system:time_start": ms,
    }
    if level == "L2A":
        props.update({"AOT_RETRIEVAL_ACCURACY": 0, "CLOUD_SHADOW_PERCENTAGE": 0.5, "NODATA_PIXEL_PERCENTAGE": 0,
                      "WATER_PERCENTAGE": 1.25})
    return dict(sorted(props.items()))


def _scenes(rng: np.random.Generator, dates: list[dt.date], level: str, lon: float, lat: float) -> list[tuple[str, dict]]:
    """(scene id, metadata) per date; time_start falls some minutes after the datatake start."""
    tile = f"{int((lon + 180) // 6) + 1:02d}{'CDEFGHJKLMNPQRSTUVWX'[min(19, int((lat + 80) // 8))]}" + "KD"
    out = []
    for d in dates:
        start = dt.datetime(d.year, d.month, d.day, 7 + int(rng.integers(0, 5)), int(rng.integers(0, 60)),
                            int(rng.integers(0, 60)))
        sid = _scene_id(start, tile, rng)
        t = start + dt.timedelta(minutes=int(rng.integers(1, 4)), seconds=int(rng.integers(0, 60)),
                                 milliseconds=int(rng.integers(0, 1000)))
        meta = ee_properties(sid, t, level=level, spacecraft=f"Sentinel-2{'AB'[int(rng.integers(0, 2))]}",
                             cloud=round(float(rng.uniform(0, 10)), 4), orbit=int(rng.integers(1, 143)), lon=lon, lat=lat)
        out.append((sid, meta))
    return out


def make_seco_layout(root: str | Path, n_locations: int = 2, *, seasons: int = 5, preview: bool = True,
                     seed: int = 0, variant: str | None = "100k", first_location: int = 0) -> Path:
    """Write a SeCo-100K/1M download under ``root``; return the dataset folder.

    ``variant`` names the folder the zip extracts to (``seasonal_contrast_<variant>``); None writes
    the locations directly into ``root``. The last scene of location ``first_location`` has a no-data
    corner (zeros in every band, as delivered then JPEG-coded).
    """
    ds = Path(root) / f"seasonal_contrast_{variant}" if variant else Path(root)
    ds.mkdir(parents=True, exist_ok=True)
    for loc in range(first_location, first_location + n_locations):
        rng = np.random.default_rng([seed, loc])
        lon, lat = location_point(seed, loc)
        reference = dt.date(2020, 10, 1) - dt.timedelta(days=int(rng.integers(0, 365)))
        dates = sorted(reference - dt.timedelta(weeks=12 * k) for k in range(seasons))
        coords = _coords(lon, lat)
        for s, (sid, meta) in enumerate(_scenes(rng, dates, "L2A", lon, lat)):
            scene = ds / f"{loc:06d}" / sid
            scene.mkdir(parents=True, exist_ok=True)
            raster = {}
            for band in SECO_BANDS:
                dn = _dn(rng, band, SIZE[band])
                raster[band] = np.floor(np.clip(dn / 10000, 0, 1) * 255).astype(np.uint8)  # rescale_intensity
            if loc == first_location and s == seasons - 1:
                _nodata_corner(raster)
            for band, img in raster.items():
                save_geotiff(img[:, :, None], coords, scene / f"{band}.tif", "JPEG")
            if preview:
                rgb = np.dstack([raster[b] for b in RGB_BANDS]).astype(float)
                rgb = (np.clip(rgb, 0, 255 * 0.3) / (255 * 0.3) * 255).astype(np.uint8)
                save_geotiff(rgb, coords, scene.parent / f"{sid}.tif", "JPEG")
            (scene / "metadata.json").write_text(json.dumps(meta))
    return ds


def make_ssl4eo_layout(root: str | Path, n_locations: int = 2, *, product: str = "s2c", seed: int = 0,
                       first_location: int = 0) -> Path:
    """Write an SSL4EO-S12 download's ``<product>`` folder (``s2c`` L1C or ``s2a`` L2A) under ``root``;
    return that folder (``root/<product>``). The last scene of location ``first_location`` has a
    no-data corner (exactly 1/16 of every band is 0)."""
    if product not in ("s2c", "s2a"):
        raise ValueError(f"product must be s2c or s2a, got {product!r}")
    level = "L1C" if product == "s2c" else "L2A"
    bands = L1C_BANDS if product == "s2c" else SECO_BANDS
    ds = Path(root) / product
    ds.mkdir(parents=True, exist_ok=True)
    centres = []
    for loc in range(first_location, first_location + n_locations):
        rng = np.random.default_rng([seed, loc, 2])
        lon, lat = location_point(seed, loc)
        centres.append(f"{loc},{lon},{lat}\n")
        delta = dt.timedelta(days=int(rng.integers(0, 365)))
        dates = [d - delta for d in SSL4EO_DATES]
        coords = _coords(lon, lat)
        for s, (sid, meta) in enumerate(_scenes(rng, dates, level, lon, lat)):
            scene = ds / f"{loc:07d}" / sid
            scene.mkdir(parents=True, exist_ok=True)
            raster = {band: _dn(rng, band, SIZE[band]) for band in bands}
            if loc == first_location and s == len(dates) - 1:
                _nodata_corner(raster)
            for band, img in raster.items():
                save_geotiff(img[:, :, None], coords, scene / f"{band}.tif", "None")
            (scene / "metadata.json").write_text(json.dumps(meta))
    with open(Path(root) / "center_coords.csv", "a") as f:
        f.writelines(centres)
    return ds
