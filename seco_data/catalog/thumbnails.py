"""True-colour quicklooks of patches: the picture and its image file (``catalog thumbnails`` is in
:mod:`seco_data.catalog.add_thumbnails`).

Catalogs carry JPEG quicklooks at half resolution (:data:`SIDE`: 132 px for a 264 px patch), one
per item in the per-patch layout, one strip of every season side by side per location in the compact
layout: ~5 KB a season instead of ~110 KB for a native-size PNG. :func:`thumbnail_png` draws the
same picture losslessly (PNG, native size), e.g. to check the stretch.

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

The image is 8-bit RGB without georeferencing, encoded by GDAL's JPEG (quality 90) or PNG driver
(rasterio, no new dependency); its bytes depend on the pixels alone: same input, same file, same
checksum. A compact GeoTIFF's bands are described ``s<season>:<band>`` (``s0:B04``): each season is
drawn from its own bands.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import CatalogError

RGB = ("B04", "B03", "B02")
#: reflectance shown as full white
REFLECTANCE_MAX = 0.3
#: display gamma: v ** (1 / GAMMA) brightens the mid-tones
GAMMA = 1.3
#: longest side of a thumbnail in pixels: a 264 px patch stays native, larger ones are averaged
#: down by an integer factor (a 512 px patch to 256 px)
MAX_SIDE = 320
#: PNG deflate level: on a 264 px simulator patch, level 3 encodes in ~8 ms and level 6 in ~32 ms for
#: 7 % fewer bytes (9: no further gain)
ZLEVEL = 3
#: catalog quicklooks: at most this many pixels a side per season (264 px patches: 132 px)
SIDE = 132
JPEG_QUALITY = 90
#: image formats -> GDAL drivers
FORMATS = {"jpeg": "JPEG", "png": "PNG"}


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


def encode_image(image: np.ndarray, fmt: str = "jpeg") -> bytes:
    """JPEG (quality :data:`JPEG_QUALITY`) or PNG bytes of ``image`` (bands, h, w) uint8 (1 to 4
    bands), through GDAL's drivers."""
    import rasterio
    from rasterio.io import MemoryFile

    if image.dtype != np.uint8 or image.ndim != 3 or not 1 <= image.shape[0] <= 4:
        raise ValueError(f"expected uint8 (1-4, h, w), got {image.dtype} {image.shape}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown image format {fmt!r}: use one of {', '.join(FORMATS)}")
    n, h, w = image.shape
    opts = {"zlevel": ZLEVEL} if fmt == "png" else {"quality": JPEG_QUALITY}
    # a pixel-grid transform (not the identity, which rasterio warns about) and no PAM sidecar: the
    # file holds pixels only, and no global warning filter is touched (thread-safe)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), MemoryFile() as mem:
        with mem.open(driver=FORMATS[fmt], width=w, height=h, count=n, dtype="uint8",
                      transform=rasterio.Affine(1, 0, 0, 0, -1, h), **opts) as dst:
            dst.write(image)
        return mem.read()


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of ``image`` (bands, h, w) uint8."""
    return encode_image(image, "png")


def strip(pictures: Sequence[np.ndarray]) -> np.ndarray:
    """Pictures (3, h, w) of the same height side by side, in order."""
    return np.ascontiguousarray(np.concatenate(list(pictures), axis=2))


def quicklook(seasons: Sequence[tuple[np.ndarray, Sequence[str]]], scale: float, nodata: float | None = 0,
              *, max_side: int = SIDE, fmt: str = "jpeg") -> bytes:
    """The quicklook file of a location's seasons ((pixels, band names) each, north up), side by side."""
    return encode_image(strip([render(px, bands, scale, nodata, max_side=max_side) for px, bands in seasons]), fmt)


def read_seasons(src: bytes | str | Path, bands: Sequence[str] | None = None) -> tuple[list, float | None]:
    """The seasons of a GeoTIFF (a path, or its bytes) as ``[(pixels north up, band names)]`` and its
    nodata value: one per ``s<season>:`` prefix of the band descriptions (compact layout), else one.

    Band names come from the file's band descriptions (seco writes them), else from ``bands`` (the
    STAC asset's). An unreadable file raises :class:`CatalogError` naming it."""
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
    seasons: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        prefix = name.split(":", 1)[0] if ":" in name and name.startswith("s") else ""
        seasons.setdefault(prefix, []).append(i)
    out = []
    for prefix, rows in seasons.items():
        out.append((pixels[rows], [names[i].split(":", 1)[-1] if prefix else names[i] for i in rows]))
    return out, nodata


def thumbnail(src: bytes | str | Path, *, scale: float, bands: Sequence[str] | None = None, max_side: int = SIDE,
              fmt: str = "jpeg") -> bytes:
    """The quicklook of one GeoTIFF (every season it holds, side by side); ``scale`` is the asset's
    ``raster:scale``."""
    seasons, nodata = read_seasons(src, bands)
    return quicklook(seasons, scale, nodata, max_side=max_side, fmt=fmt)


def thumbnail_png(src: bytes | str | Path, *, scale: float, bands: Sequence[str] | None = None,
                  max_side: int = MAX_SIDE) -> bytes:
    """The lossless PNG quicklook of one single-season GeoTIFF, native size unless over ``max_side``."""
    return thumbnail(src, scale=scale, bands=bands, max_side=max_side, fmt="png")
