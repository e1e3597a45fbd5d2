"""The world map's basemap, offline: an equirectangular land/sea PNG from the 1 km GLOBE land mask.

No tile server is reachable from where seco runs, so the map is drawn on a picture made from data
that ships with a package (``global-land-mask``, memory-mapped by :mod:`seco_data.landmask`). Each
output pixel is shaded by the fraction of land in its block of 1/120 degree cells, so coastlines come
out anti-aliased. The PNG is made once per machine and cached beside the land mask cache.
"""

from __future__ import annotations

import logging
import struct
import zlib

import numpy as np

from ... import landmask
from ...outputs import write_atomic

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 2880, 1440  # 0.125 degree per pixel (~260 KB); rows from 90 N down, columns from 180 W
SEA = (0xDC, 0xE9, 0xF2)  # must match --sea in static/style.css
LAND = (0xF7, 0xF4, 0xEC)
COAST = (0x9C, 0xA8, 0xB3)  # shade of mixed pixels: a thin darker line along the coasts
_VERSION = 1


def encode_png(rgb: np.ndarray) -> bytes:
    """A truecolour 8-bit PNG of an (H, W, 3) uint8 array (no dependency beyond zlib)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    raw = np.zeros((h, 1 + 3 * w), np.uint8)  # filter byte 0 (None) per row
    raw[:, 1:] = rgb.reshape(h, 3 * w)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
            + chunk(b"IEND", b""))


def land_fraction_grid(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Fraction of land per pixel of a ``height`` x ``width`` equirectangular grid, north row first."""
    nrows, ncols = landmask.NROWS, landmask.NCOLS
    if nrows % height or ncols % width:
        raise ValueError(f"{width}x{height} does not divide the {ncols}x{nrows} land mask")
    fy, fx = nrows // height, ncols // width
    bits = landmask.packed_bits()  # the packed, memory-mapped mask (shared page cache, no 930 MB unpack)
    out = np.empty((height, width), np.float32)
    step = max(1, 64 // fy)  # output rows per strip: ~64 source rows (~2.7 MB unpacked) at a time
    for r0 in range(0, height, step):
        r1 = min(height, r0 + step)
        block = np.unpackbits(np.asarray(bits[r0 * fy:r1 * fy]), axis=1)  # (rows, ncols) 0/1
        sums = block.reshape(r1 - r0, fy, width, fx).sum(axis=(1, 3), dtype=np.int32)
        out[r0:r1] = sums / float(fy * fx)
    return out[::-1]  # the mask is stored south to north


def render(frac: np.ndarray) -> np.ndarray:
    """Colours for a land-fraction grid: sea, land, and a darker line where both meet."""
    f = frac[..., None]
    base = np.asarray(SEA, np.float32) * (1 - f) + np.asarray(LAND, np.float32) * f
    edge = (4 * f * (1 - f)) ** 0.7  # 1 on pixels that are half land, 0 on pure land or sea
    rgb = base * (1 - 0.8 * edge) + np.asarray(COAST, np.float32) * 0.8 * edge
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def land_png() -> bytes:
    """The basemap PNG (WIDTH x HEIGHT), built on first use and cached in the seco cache dir."""
    path = landmask.cache_dir() / f"viewer-land-{WIDTH}x{HEIGHT}-v{_VERSION}.png"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    log.info("building the viewer basemap %s (once)", path)
    data = encode_png(render(land_fraction_grid()))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return data
