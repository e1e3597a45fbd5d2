"""Reading one asset of a STAC item on a patch grid: windowed Cloud-Optimized GeoTIFF reads.

Remote assets go through GDAL's ``/vsicurl/``: only the header and the tiles under the patch are
fetched with HTTP range requests. An asset already on the patch's UTM grid (same CRS, north-up,
pixel size an integer multiple of the patch resolution, corner on the lattice) is read as a plain
window (nearest-neighbour repeat when the asset is coarser); any other asset is resampled onto the
patch grid with a ``WarpedVRT``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from ..errors import SourceError, SourceUnavailable
from ..grid import PatchGrid
from .stac_catalog import CATALOG_HINT, is_url, stac_error

#: GDAL settings for remote reads. ``CPL_VSIL_CURL_NON_CACHED`` keeps GDAL from remembering a failed
#: request (a single 503 would otherwise make the file unreadable for the rest of the process).
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.JP2",
    "CPL_VSIL_CURL_NON_CACHED": "/vsicurl/",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_MAX_RETRY": "0",  # the collector's retry policy is the one retry layer
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "VSI_CACHE": "FALSE",
}


def gdal_env(timeout: float) -> dict:
    return {**GDAL_ENV, "GDAL_HTTP_TIMEOUT": str(max(1, math.ceil(timeout)))}


def gdal_path(href: str) -> str:
    parts = urlsplit(href)
    if parts.scheme == "s3":
        return f"/vsis3/{parts.netloc}{parts.path}"
    if parts.scheme in ("gs", "gcs"):
        return f"/vsigs/{parts.netloc}{parts.path}"
    if parts.scheme == "file":
        return parts.path
    return href


def read_on_grid(href: str, bidx: int, grid: PatchGrid, res: int, *, nearest: bool, timeout: float,
                 counters) -> tuple[np.ndarray, int]:
    """Band ``bidx`` of the raster at ``href`` on ``grid`` at ``res`` metres, and the value that
    marks no data in the result (the asset's nodata, or 0). Pixels outside the asset hold it too."""
    import rasterio
    from rasterio.errors import RasterioError

    counters["asset_reads"] += 1
    try:
        with rasterio.Env(**gdal_env(timeout)):
            with rasterio.open(gdal_path(href)) as ds:
                if not 1 <= bidx <= ds.count:
                    raise SourceError(f"{href} has {ds.count} bands, not band {bidx}")
                nodata = int(ds.nodata) if ds.nodata is not None and float(ds.nodata).is_integer() else 0
                arr = _aligned(ds, bidx, grid, res, nodata, nearest)
                if arr is None:
                    arr = _warped(ds, bidx, grid, res, nodata, nearest)
                    counters["warped_reads"] += 1
    except SourceError:
        raise
    except RasterioError as e:
        raise _raster_error(e, href) from None
    return arr, nodata


def _aligned(ds, bidx, grid: PatchGrid, res: int, nodata: int, nearest: bool) -> np.ndarray | None:
    """A plain window read when the asset shares the patch's grid, else None."""
    t = ds.transform
    if ds.crs is None or ds.crs.to_epsg() != grid.epsg or t.b != 0 or t.d != 0 or t.e != -t.a:
        return None
    k = t.a / res
    if abs(k - round(k)) > 1e-9 or round(k) < 1 or (round(k) > 1 and not nearest):
        return None
    k = int(round(k))
    dx, dy = (grid.x0 - t.c) / res, (t.f - grid.y0) / res  # offset in patch pixels
    if abs(dx - round(dx)) > 1e-6 or abs(dy - round(dy)) > 1e-6:
        return None
    h, w = grid.shape(res)
    rows = (int(round(dy)) + np.arange(h)) // k  # source row of every patch row (floor division)
    cols = (int(round(dx)) + np.arange(w)) // k
    out = np.full((h, w), nodata, ds.dtypes[bidx - 1])
    rin = (rows >= 0) & (rows < ds.height)
    cin = (cols >= 0) & (cols < ds.width)
    if rin.any() and cin.any():
        r0, r1 = rows[rin].min(), rows[rin].max() + 1
        c0, c1 = cols[cin].min(), cols[cin].max() + 1
        from rasterio.windows import Window

        block = ds.read(bidx, window=Window(int(c0), int(r0), int(c1 - c0), int(r1 - r0)))
        out[np.ix_(rin, cin)] = block[np.ix_(rows[rin] - r0, cols[cin] - c0)]
    return out.astype(np.uint16, copy=False)


def _warped(ds, bidx, grid: PatchGrid, res: int, nodata: int, nearest: bool) -> np.ndarray:
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    h, w = grid.shape(res)
    if nearest:
        how = Resampling.nearest
    else:  # bilinear between neighbours; average when the asset is finer than the patch
        finer = ds.crs is not None and ds.crs.is_projected and abs(ds.transform.a) < res * 0.75
        how = Resampling.average if finer else Resampling.bilinear
    with WarpedVRT(ds, crs=f"EPSG:{grid.epsg}", transform=grid.transform(res), width=w, height=h,
                   resampling=how, src_nodata=nodata, nodata=nodata) as vrt:
        return vrt.read(bidx).astype(np.uint16, copy=False)


def _raster_error(e: Exception, href: str) -> SourceError:
    msg = " ".join(str(e).split())
    if not is_url(href) and urlsplit(href).scheme in ("", "file"):
        path = Path(urlsplit(href).path if href.startswith("file:") else href)
        if not path.exists():
            return SourceError(f"asset file {path} does not exist", hint=CATALOG_HINT)
        return SourceError(f"cannot read asset {path}: {msg}")
    m = re.search(r"HTTP (?:response )?code:? (\d{3})", msg)
    if m:
        return stac_error(int(m.group(1)), f"reading {_redact(href)}", detail=msg)
    return SourceUnavailable(f"reading {_redact(href)} failed: {msg}")


def _redact(href: str) -> str:
    """An href without its query string (signed URLs carry tokens)."""
    p = urlsplit(href)
    return f"{p.scheme}://{p.netloc}{p.path}" if p.query else href
