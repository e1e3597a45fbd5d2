"""One location of a released layout, converted: read and checked, re-encoded losslessly, catalogued."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..bands import group_by_resolution
from ..catalog.item import ItemSpec, RasterFile, build_item
from ..catalog.layout import asset_name, item_id, location_dir
from ..errors import OutputError, disk_full, is_disk_full
from ..geotiff import encode_raster
from ..catalog.writer import item_files
from ..outputs import fsync_dir, write_many
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
        written: dict[str, bytes] = {}
        items = []
        for season, (scene, files, geo, valid) in enumerate(encoded):
            iid = item_id(layout.name, location, season)
            for res, e in files:
                written[asset_name(iid, res)] = e.data
            items.append(build_item(item_spec(layout, location, folder, season, scene, files, geo, valid)))
        written.update(item_files(items))
        write_many(tmp, written)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, final)
        fsync_dir(final.parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(e):
            raise disk_full(final, e) from None
        raise OutputError(f"cannot write location {location} into {out}: {e.strerror or e}",
                          hint="fix the folder's permissions, then rerun to resume") from None
    return len(encoded)


def _bounds(t, h: int, w: int) -> tuple[float, float, float, float]:
    xs, ys = (t.c, t.c + t.a * w), (t.f, t.f + t.e * h)
    return (min(xs), min(ys), max(xs), max(ys))


def item_spec(layout: Layout, location: int, folder: str, season: int, scene: Scene, files, geo,
              valid: float) -> ItemSpec:
    """The item of one imported scene: unknown platform and scene cloud are left out,
    ``seco:cloud_fraction`` is null, and the item says where it came from."""
    iid = item_id(layout.name, location, season)
    rasters = []
    for res, e in files:
        t = geo[res]
        h = w = PATCH_M // res
        rasters.append(RasterFile(href=asset_name(iid, res), resolution=res, bands=tuple(e.bands), sha256=e.sha256,
                                  size=e.size, crs="EPSG:4326", shape=(h, w), transform=(t.a, t.b, t.c, t.d, t.e, t.f),
                                  bbox=_bounds(t, h, w), dtype=layout.dtype, nodata=layout.nodata, scale=layout.scale))
    w, s, e, n = rasters[0].bbox
    source = {"name": layout.source, "product": layout.product, "synthetic": False}
    return ItemSpec(
        collection=layout.name, item_id=iid, location=location, season=season, datetime=scene.datetime,
        ring=[(w, s), (e, s), (e, n), (w, n), (w, s)], crs="EPSG:4326", rasters=tuple(rasters), source=source,
        scene_id=scene.scene_id, valid_fraction=valid, point=((w + e) / 2, (s + n) / 2),
        platform=scene.platform, scene_cloud=scene.cloud, cloud_fraction=None,
        extra={"seco:imported_from": layout.layout, "seco:source_folder": f"{folder}/{scene.folder.name}"})
