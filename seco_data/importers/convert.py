"""One location of a released layout, converted: read and checked, re-encoded losslessly, catalogued."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..bands import group_by_resolution
from ..catalog.layout import asset_name, data_key, files_dir, item_id, location_id, thumbnail_name
from ..catalog.ledger import LocationRow, PatchRow, thumbnail_entry
from ..catalog.rebuild import location_items
from ..catalog.thumbnails import quicklook
from ..catalog.writer import item_files
from ..errors import OutputError, SecoError, disk_full, is_disk_full
from ..geotiff import encode_raster
from ..storage import store_for
from .layouts import Layout, Skip, scene_of

PATCH_M = 2640


def _read_band(path: Path, size: int, dtype: str) -> tuple[np.ndarray, object]:
    import rasterio

    rel = f"{path.parent.parent.name}/{path.parent.name}/{path.name}"
    try:
        with rasterio.open(path) as ds:
            if ds.count != 1 or ds.dtypes[0] != dtype:
                raise Skip("wrong_format", f"{rel}: {ds.count} x {ds.dtypes[0]}, expected 1 x {dtype}")
            if (ds.height, ds.width) != (size, size):
                raise Skip("wrong_size", f"{rel}: {ds.height} x {ds.width} px, expected {size} x {size}")
            if ds.crs is None or ds.crs.to_epsg() != 4326:
                raise Skip("bad_georeference", f"{rel}: CRS {ds.crs}, expected lon/lat (EPSG:4326)")
            return ds.read(1), ds.transform
    except Skip:
        raise
    except Exception as e:  # noqa: BLE001 - any GDAL failure on a source file skips its location
        raise Skip("unreadable_band", f"{rel}: {' '.join(str(e).split())[:200]}") from None


def valid_fraction(groups: dict[int, np.ndarray]) -> float:
    """Fraction of 10 m pixels non-zero in every band (coarser groups repeated onto the 10 m grid)."""
    mask = None
    for arr in groups.values():
        m = (arr != 0).all(axis=0)
        f = PATCH_M // 10 // m.shape[0]
        m = m.repeat(f, 0).repeat(f, 1) if f > 1 else m
        mask = m if mask is None else mask & m
    return float(mask.mean())


def convert_location(layout: Layout, location: int, folder: str, out: str | Path, catalog_layout: str,
                     thumbnails: bool) -> tuple[list[dict], list[dict], tuple[float, float]]:
    """Convert one source location into OUT (its files written together, atomically and durably);
    return its ledger rows: the seasons, the files (compact) and the location's lon/lat centre.
    Raises ``Skip`` for a location that cannot be imported."""
    src = layout.root / folder
    scenes = sorted((scene_of(Path(e.path)) for e in os.scandir(src) if e.is_dir()),
                    key=lambda s: (s.datetime, s.scene_id))
    if len(scenes) != layout.seasons:
        raise Skip("wrong_scene_count", f"{folder}: {len(scenes)} scene folders, expected {layout.seasons}")
    groups = group_by_resolution(layout.bands)
    read = []
    for scene in scenes:
        arrays, geo = {}, {}
        for res, bands in groups.items():
            got = []
            for b in bands:
                if b not in scene.files:
                    raise Skip("missing_band", f"{folder}/{scene.folder.name}/{_src_name(b)}.tif")
                got.append(_read_band(scene.files[b], PATCH_M // res, layout.dtype))
            t0 = got[0][1]
            if any(not t.almost_equals(t0, precision=1e-12) for _, t in got):
                raise Skip("bad_georeference", f"{folder}/{scene.folder.name}: the {res} m bands differ in transform")
            arrays[res], geo[res] = np.stack([a for a, _ in got]), t0
        read.append((scene, arrays, geo))
    try:
        return _write(layout, location, folder, out, read, groups, catalog_layout, thumbnails)
    except SecoError:  # object storage's own errors (unavailable, refused) say what to do
        raise
    except OSError as e:
        if is_disk_full(e):
            raise disk_full(out, e) from None
        raise OutputError(f"cannot write location {location} into {out}: {e.strerror or e}",
                          hint="fix the folder's permissions, then rerun to resume") from None


def _src_name(band: str) -> str:
    return band if band in ("B10", "B11", "B12", "B8A") else f"B{int(band[1:])}"


def _georef(t, res: int) -> dict:
    h = w = PATCH_M // res
    xs, ys = (t.c, t.c + t.a * w), (t.f, t.f + t.e * h)
    return {"crs": "EPSG:4326", "shape": [h, w], "transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "bbox": [min(xs), min(ys), max(xs), max(ys)]}


def _write(layout: Layout, location: int, folder: str, out: str | Path, read: list, groups: dict, catalog_layout: str,
           thumbnails: bool) -> tuple[list[dict], list[dict], tuple[float, float]]:
    seasons = layout.seasons
    finest = min(groups)
    files: dict[str, bytes] = {}
    rows, entries = [], []
    for season, (scene, arrays, geo) in enumerate(read):
        extra = {"seco:source_folder": f"{folder}/{scene.folder.name}"}
        if catalog_layout == "compact" and season and any(
                not geo[res].almost_equals(read[0][2][res], precision=1e-12) for res in groups):
            extra["seco:transform"] = list(geo[finest])[:6]  # the compact file keeps the first season's
        rows.append({"season": season, "item_id": item_id(layout.name, location, season), "scene_id": scene.scene_id,
                     "datetime": scene.datetime.isoformat(), "platform": scene.platform, "scene_cloud": scene.cloud,
                     "cloud_fraction": None, "valid_fraction": valid_fraction(arrays), "window_start": None,
                     "window_end": None, "assets": [], "extra": extra})
    if catalog_layout == "compact":
        lid = location_id(layout.name, location)
        for res, bands in groups.items():
            stack = np.concatenate([arrays[res] for _, arrays, _ in read])
            names = tuple(f"s{s}:{b}" for s in range(seasons) for b in bands)
            e = encode_raster(stack, "EPSG:4326", read[0][2][res], res, names, nodata=layout.nodata,
                              tags={"SOURCE": f"{layout.layout}:{folder}"})
            name = asset_name(lid, res)
            files[name] = e.data
            entries.append({"key": data_key(res), "href": name, "sha256": e.sha256, "size": e.size,
                            **_georef(read[0][2][res], res)})
        if thumbnails:
            data = quicklook([(arrays[finest], groups[finest]) for _, arrays, _ in read], layout.scale, layout.nodata)
            files[thumbnail_name(lid)] = data
            entries.append(thumbnail_entry(thumbnail_name(lid), data))
    else:
        for season, (scene, arrays, geo) in enumerate(read):
            iid = item_id(layout.name, location, season)
            tags = {"SCENE_ID": scene.scene_id, "DATETIME": scene.datetime.isoformat(),
                    "SOURCE": f"{layout.layout}:{folder}/{scene.folder.name}"}
            for res, bands in groups.items():
                e = encode_raster(arrays[res], "EPSG:4326", geo[res], res, bands, nodata=layout.nodata, tags=tags)
                files[asset_name(iid, res)] = e.data
                rows[season]["assets"].append({"resolution": res, "href": asset_name(iid, res), "bands": list(bands),
                                               "sha256": e.sha256, "size": e.size, **_georef(geo[res], res)})
            if thumbnails:
                data = quicklook([(arrays[finest], groups[finest])], layout.scale, layout.nodata)
                files[thumbnail_name(iid)] = data
                rows[season]["assets"].append(thumbnail_entry(thumbnail_name(iid), data))
    w, s, e, n = _georef(read[0][2][finest], finest)["bbox"]
    centre = ((w + e) / 2, (s + n) / 2)
    if catalog_layout == "per-patch":  # item JSONs beside their files, written with them
        row = LocationRow(location, centre[0], centre[1], folder, None, [],
                          tuple(PatchRow(location=location, **r) for r in rows))
        files.update(item_files(location_items(row, describe(layout, catalog_layout))))
    store_for(out).put_many(files_dir(location, seasons, catalog_layout), files)  # a folder, or object storage
    return rows, entries, centre


def describe(layout: Layout, catalog_layout: str) -> dict:
    """What the ledger records about an imported catalog (``catalog`` meta key)."""
    return {
        "name": layout.name, "seasons": layout.seasons, "layout": catalog_layout,
        "band_groups": {str(k): list(v) for k, v in group_by_resolution(layout.bands).items()},
        "dtype": layout.dtype, "nodata": layout.nodata, "scale": layout.scale,
        "source": {"name": layout.source, "product": layout.product, "synthetic": False, "imported_from": layout.layout},
        "origins": False, "item_extra": {"seco:imported_from": layout.layout},
    }
