"""One location of a released layout, converted: read and checked, re-encoded losslessly, catalogued."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..bands import BANDS, group_by_resolution
from ..errors import OutputError
from ..geotiff import encode_raster
from ..catalog.writer import EXTENSIONS, GEOTIFF, STAC_VERSION, _iso, asset_name, dump_json, item_id, location_dir
from .layouts import Layout, Scene, Skip, scene_of

PATCH_M = 2640
#: where a location is assembled before its rename into place (under OUT)
TMP = ".import-tmp"


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


def convert_location(layout: Layout, location: int, folder: str, out: Path) -> int:
    """Convert one source location into ``OUT/<shard>/<loc:07d>`` (through a temporary folder renamed
    into place); return its item count. Raises ``Skip`` for a location that cannot be imported."""
    src = layout.root / folder
    scenes = sorted((scene_of(Path(e.path)) for e in os.scandir(src) if e.is_dir()),
                    key=lambda s: (s.datetime, s.scene_id))
    if len(scenes) != layout.seasons:
        raise Skip("wrong_scene_count", f"{folder}: {len(scenes)} scene folders, expected {layout.seasons}")
    groups = group_by_resolution(layout.bands)
    encoded = []
    for season, scene in enumerate(scenes):
        arrays, geo = {}, {}
        for res, bands in groups.items():
            read = []
            for b in bands:
                if b not in scene.files:
                    raise Skip("missing_band", f"{folder}/{scene.folder.name}/{_src_name(b)}.tif")
                read.append(_read_band(scene.files[b], PATCH_M // res, layout.dtype))
            t0 = read[0][1]
            if any(not t.almost_equals(t0, precision=1e-12) for _, t in read):
                raise Skip("bad_georeference", f"{folder}/{scene.folder.name}: the {res} m bands differ in transform")
            arrays[res], geo[res] = np.stack([a for a, _ in read]), t0
        tags = {"SCENE_ID": scene.scene_id, "DATETIME": scene.datetime.isoformat(),
                "SOURCE": f"{layout.layout}:{folder}/{scene.folder.name}"}
        files = [(res, encode_raster(arrays[res], "EPSG:4326", geo[res], res, groups[res], nodata=layout.nodata,
                                     tags=tags)) for res in groups]
        encoded.append((scene, files, {res: geo[res] for res in groups}, valid_fraction(arrays)))
    return _write_location(layout, location, folder, out, encoded)


def _src_name(band: str) -> str:
    return band if band in ("B10", "B11", "B12", "B8A") else f"B{int(band[1:])}"


def _write_location(layout: Layout, location: int, folder: str, out: Path, encoded: list) -> int:
    final = out / location_dir(location, layout.seasons)
    tmp = out / TMP / f"{location:07d}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for season, (scene, files, geo, valid) in enumerate(encoded):
            iid = item_id(layout.name, location, season)
            for res, e in files:
                (tmp / asset_name(iid, res)).write_bytes(e.data)
            dump_json(tmp / f"{iid}.json", build_item(layout, location, folder, season, scene, files, geo, valid))
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write location {location} into {out}: {e.strerror or e}",
                          hint="free space or fix permissions, then rerun to resume") from None
    return len(encoded)


def _band_entries(bands) -> list[dict]:
    return [{"name": b, "description": BANDS[b].description, "eo:common_name": BANDS[b].common_name,
             "eo:center_wavelength": BANDS[b].center_wavelength,
             "eo:full_width_half_max": BANDS[b].full_width_half_max} for b in bands]


def _bounds(t, h: int, w: int) -> list[float]:
    xs, ys = (t.c, t.c + t.a * w), (t.f, t.f + t.e * h)
    return [min(xs), min(ys), max(xs), max(ys)]


def build_item(layout: Layout, location: int, folder: str, season: int, scene: Scene, files, geo, valid: float) -> dict:
    """The STAC Item of one imported scene (the properties of :func:`seco_data.stac.build_item`;
    unknown platform and scene cloud are left out, ``seco:cloud_fraction`` is null)."""
    iid = item_id(layout.name, location, season)
    assets = {}
    for res, e in files:
        t = geo[res]
        h = w = PATCH_M // res
        asset = {
            "href": "./" + asset_name(iid, res), "type": GEOTIFF, "title": f"{res} m bands: {' '.join(e.bands)}",
            "roles": ["data"], "gsd": float(res), "data_type": layout.dtype,
            **({"nodata": layout.nodata} if layout.nodata is not None else {}),
            "proj:code": "EPSG:4326", "proj:shape": [h, w], "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "proj:bbox": _bounds(t, h, w), "raster:scale": layout.scale, "raster:offset": 0.0,
            "raster:spatial_resolution": float(res), "file:checksum": "1220" + e.sha256, "file:size": e.size,
            "bands": _band_entries(e.bands),
        }
        assets[f"data_{res}m"] = asset
    w, s, e, n = assets["data_10m"]["proj:bbox"]
    props = {"datetime": _iso(scene.datetime)}
    if scene.platform:
        props["platform"] = scene.platform
    props.update({"constellation": "sentinel-2", "instruments": ["msi"]})
    if scene.cloud is not None:
        props["eo:cloud_cover"] = round(scene.cloud, 3)
    props.update({
        "proj:code": "EPSG:4326",
        "seco:location": location,
        "seco:season": season,
        "seco:scene_id": scene.scene_id,
        "seco:cloud_fraction": None,
        "seco:valid_fraction": round(valid, 6),
        "seco:point": [round((w + e) / 2, 7), round((s + n) / 2, 7)],
        "seco:source": layout.source,
        "seco:product": layout.product,
        "seco:synthetic": False,
        "seco:imported_from": layout.layout,
        "seco:source_folder": f"{folder}/{scene.folder.name}",
    })
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    return {
        "type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": EXTENSIONS, "id": iid,
        "geometry": {"type": "Polygon", "coordinates": [[[round(x, 7), round(y, 7)] for x, y in ring]]},
        "bbox": [round(w, 7), round(s, 7), round(e, 7), round(n, 7)],
        "properties": props,
        "links": [
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
            {"rel": "collection", "href": "../../collection.json", "type": "application/json"},
        ],
        "assets": assets,
        "collection": layout.name,
    }
