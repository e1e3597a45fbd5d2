"""Clouds, cloud shadows and swath-edge no-data of one scene on a patch grid.

The cloud field is multi-octave value noise on absolute UTM coordinates (20 m cells, structures of
a few km), keyed by the zone and the acquisition day, with a random lattice phase per day. Its
distribution is calibrated once (:class:`~.noise.NoiseCDF`), so thresholding it at the level
exceeded with probability ``cloud_cover / 100`` makes *every* pixel cloudy with exactly that
probability: averaged over patches, the cloud fraction honours the scene's stated percentage.

Shadows are the same field read at a point displaced towards the sun (cloud height over the tangent
of the sun elevation), i.e. the (thicker part of the) cloud mask shifted away from the sun, where
there is no cloud.
Some scenes lie at the edge of the orbit's swath: beyond a straight, slightly slanted line (fixed in
absolute coordinates for the scene) there is no data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...grid import PatchGrid
from .noise import Octaves, Scratch, fbm, key, noise_cdf, unit
from .tiles import TILE_M, Tile, pixel_centres, sun_position

CLOUD_RES = 20
CLOUD_OCT = Octaves((5120, 2560, 1280, 640, 320, 160, 80), (1.0, 0.62, 0.4, 0.26, 0.17, 0.11, 0.07))
SWATH_EDGE_P = 0.18  # share of scenes cut by the swath edge
SHADOW_CORE = 0.7  # shadows are cast by the thickest 70 % of the cloud area


@dataclass(frozen=True)
class Sky:
    """What one scene (tile x day) looks like from above: cloud field, sun, swath edge."""

    cloud_key: int
    offset: tuple[int, int]
    cover: float  # 0-1
    shift: tuple[int, int]  # metres (east, north) towards the sun, multiple of CLOUD_RES
    #: (cos, sin, c, side): no data where side * (x cos - y sin - c) > 0; None inside the swath
    swath: tuple[float, float, float, float] | None
    sun_azimuth: float
    sun_elevation: float


def sky(seed: int, tile: Tile, day: int, doy: int, cloud_cover: float) -> Sky:
    epsg = tile.epsg
    kc = key(seed, "clouds", epsg, day)
    span = CLOUD_OCT.spacings[0] * 2
    offset = (int(kc % span) // CLOUD_RES * CLOUD_RES, int((kc >> 24) % span) // CLOUD_RES * CLOUD_RES)
    az, el = sun_position(tile.lat, doy)
    height = 500.0 + 2700.0 * unit(seed, "cloud-height", epsg, day) ** 1.5
    length = min(height / math.tan(math.radians(max(el, 8.0))), 8_000.0)
    shift = (int(round(length * math.sin(math.radians(az)) / CLOUD_RES)) * CLOUD_RES,
             int(round(length * math.cos(math.radians(az)) / CLOUD_RES)) * CLOUD_RES)
    swath = None
    if unit(seed, "swath", *tile.ints, day) < SWATH_EDGE_P:
        # the swath edge cuts off between 5 % and 50 % of the tile, on its east or west side
        theta = math.radians(11.0 + 4.0 * (unit(seed, "swath-angle", *tile.ints, day) - 0.5))
        lost = 0.05 + 0.45 * unit(seed, "swath-lost", *tile.ints, day)
        side = 1.0 if unit(seed, "swath-side", *tile.ints, day) < 0.5 else -1.0
        px, py = (tile.col + 0.5) * TILE_M, (tile.row + 0.5) * TILE_M
        cos_t, sin_t = math.cos(theta), math.sin(theta)
        swath = (cos_t, sin_t, px * cos_t - py * sin_t + side * (0.5 - lost) * TILE_M, side)
    return Sky(kc, offset, min(max(cloud_cover / 100.0, 0.0), 1.0), shift, swath, az, el)


@dataclass
class SkyMasks:
    """Masks at 10 m, and (when asked) the cloud opacity and shadow darkening."""

    cloud: np.ndarray
    shadow: np.ndarray
    valid: np.ndarray
    alpha: np.ndarray | None = None  # cloud opacity 0-1 (thin edges)
    bright: np.ndarray | None = None  # cloud endmember weight: opacity x thickness brightness
    shade: np.ndarray | None = None  # surface illumination factor (shadows < 1)


def valid_mask(s: Sky, grid: PatchGrid, res: int = 10) -> np.ndarray:
    h, w = grid.shape(res)
    if s.swath is None:
        return np.ones((h, w), dtype=bool)
    cos_t, sin_t, c, side = s.swath
    xs, ys = pixel_centres(grid, res)
    d = (xs.astype(np.float64) * cos_t)[None, :] - (ys.astype(np.float64) * sin_t + c)[:, None]
    return d * side <= 0.0


def _cells(grid: PatchGrid):
    """20 m cell centres covering the grid, and the (row, col) phase of the grid in them."""
    h, w = grid.shape(10)
    sr, sc = (grid.y0 // 10) % 2, (grid.x0 // 10) % 2
    nr, nc = (h + sr + 1) // 2, (w + sc + 1) // 2
    top = (grid.y0 - 5) // CLOUD_RES
    left = grid.x0 // CLOUD_RES
    xs = CLOUD_RES * (left + np.arange(nc, dtype=np.int64)) + CLOUD_RES // 2
    ys = CLOUD_RES * (top - np.arange(nr, dtype=np.int64)) + CLOUD_RES // 2
    return xs, ys, sr, sc


def _up(a: np.ndarray, sr: int, sc: int, h: int, w: int) -> np.ndarray:
    return np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)[sr:sr + h, sc:sc + w]


def sky_masks(s: Sky, grid: PatchGrid, optics: bool = False) -> SkyMasks:
    """Cloud / shadow / valid masks at 10 m; with ``optics`` also opacity and shade factors."""
    h, w = grid.shape(10)
    valid = valid_mask(s, grid)
    if s.cover <= 0.0 or not valid.any():
        false = np.zeros((h, w), dtype=bool)
        if not optics:
            return SkyMasks(false, false.copy(), valid)
        zeros = np.zeros((h, w), dtype=np.float32)
        return SkyMasks(false, false.copy(), valid, zeros, zeros, np.ones((h, w), dtype=np.float32))
    cdf = noise_cdf(CLOUD_OCT, CLOUD_RES)
    thr = float(cdf.threshold(s.cover))
    thr_core = float(cdf.threshold(SHADOW_CORE * s.cover))  # only the thicker clouds cast shadows
    ramp = 0.35 * cdf.std
    xs, ys, sr, sc = _cells(grid)
    scratch = Scratch((len(ys), len(xs)))
    n = fbm(s.cloud_key, xs, ys, CLOUD_OCT, s.offset, scratch=scratch)
    n_sh = fbm(s.cloud_key, xs + s.shift[0], ys + s.shift[1], CLOUD_OCT, s.offset, scratch=scratch)
    cloud20 = n > thr
    shadow20 = (n_sh > thr_core) & ~cloud20
    cloud = _up(cloud20, sr, sc, h, w) & valid
    shadow = _up(shadow20, sr, sc, h, w) & valid
    if not optics:
        return SkyMasks(cloud, shadow, valid)
    excess = (n - np.float32(thr)) / np.float32(ramp)
    alpha20 = np.where(cloud20, 0.25 + 0.75 * np.clip(excess, 0.0, 1.0), 0.0).astype(np.float32)
    bright20 = alpha20 * (0.8 + 0.35 * np.clip(excess / 3.0, 0.0, 1.0))  # thick cores are brighter
    thick_sh = np.clip((n_sh - np.float32(thr_core)) / np.float32(ramp), 0.0, 1.0)
    shade20 = np.where(shadow20, 1.0 - 0.62 * (0.4 + 0.6 * thick_sh), 1.0).astype(np.float32)
    up = lambda a: _up(a.astype(np.float32, copy=False), sr, sc, h, w)
    return SkyMasks(cloud, shadow, valid, up(alpha20), up(bright20), up(shade20))
