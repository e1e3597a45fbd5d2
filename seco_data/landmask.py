"""A global 1 km land/water mask (GLOBE, via the ``global-land-mask`` package), memory-mapped.

``global-land-mask`` decompresses a 930 MB boolean array at import (several seconds, per process).
We decompress it once, pack it to bits (117 MB) in the user cache and memory-map that file, so every
process (and every worker) shares one copy from the page cache and starts instantly.
"""

from __future__ import annotations

import logging
import os
import threading
from importlib.util import find_spec
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

NROWS, NCOLS = 21600, 43200  # 1/120 degree, rows from lat -90 upwards, cols from lon -180
_CACHE_NAME = "landmask-globe-v2.npy"
_lock = threading.Lock()
_bits: np.ndarray | None = None


def cache_dir() -> Path:
    """Where seco caches derived data (``SECO_CACHE_DIR``, else ``~/.cache/seco``)."""
    return Path(os.environ.get("SECO_CACHE_DIR") or Path.home() / ".cache" / "seco")


def _build(path: Path) -> None:
    spec = find_spec("global_land_mask")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("global-land-mask is not installed: pip install global-land-mask")
    src = Path(list(spec.submodule_search_locations)[0]) / "globe_combined_mask_compressed.npz"
    log.info("building the land mask cache %s (once)", path)
    with np.load(src) as z:
        mask = ~z["mask"]  # the package stores an ocean mask; lakes count as land there
        lat = z["lat"]
    if mask.shape != (NROWS, NCOLS):
        raise RuntimeError(f"unexpected land mask shape {mask.shape}")
    if lat[0] > lat[-1]:  # store rows south to north
        mask = mask[::-1]
    bits = np.packbits(mask, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    from .outputs import atomic_file

    with atomic_file(path) as f:
        np.save(f, bits)


def packed_bits() -> np.ndarray:
    """The whole mask packed to bits (``np.packbits`` along columns; NROWS rows from lat -90 upwards,
    NCOLS columns from lon -180), memory-mapped from the cache (built on first use)."""
    global _bits
    if _bits is None:
        with _lock:
            if _bits is None:
                path = cache_dir() / _CACHE_NAME
                if not path.exists():
                    _build(path)
                _bits = np.load(path, mmap_mode="r")
    return _bits


def is_land(lon, lat) -> np.ndarray:
    """Boolean array: True where (lon, lat) in degrees is land (1 km GLOBE mask)."""
    bits = packed_bits()
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    row = np.clip(((lat + 90.0) * 120.0).astype(np.int64), 0, NROWS - 1)
    col = np.clip((((lon + 180.0) % 360.0) * 120.0).astype(np.int64), 0, NCOLS - 1)
    byte = bits[row, col >> 3]
    return ((byte >> (7 - (col & 7))) & 1).astype(bool)


def land_fraction(lon, lat) -> float:
    """Fraction of the given sample points that are on land."""
    return float(is_land(lon, lat).mean())
