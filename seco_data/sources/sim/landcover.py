"""Land cover of a patch at 10 m: water, forests, crop parcels, grass, urban, bare, snow/ice.

Everything is a function of absolute UTM position (and the world seed), so overlapping grids see
the same landscape:

* coarse fields (biome class mix, urban probability) live on an absolute 500 m lattice whose nodes
  are projected to lon/lat exactly, then interpolated to pixels;
* sea comes from the 1 km land mask read at domain-warped pixel positions (irregular coasts, no
  1 km staircases); small lakes and rivers from noise;
* contiguous regions come from thresholding value noise at the level where its calibrated CDF
  equals the wanted class probability (forest vs open land, evergreen vs deciduous, crops / grass /
  bare / snow along one noise, urban on its own noise);
* crops are split into rectangular parcels (~100-500 m) on an absolute 640 m block lattice, each
  with its own crop calendar.

A patch's landscape is date-independent and kept in a small LRU cache: a location's seasons and
candidate scenes all hit the same grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...grid import PatchGrid
from ...landmask import is_land
from . import climate
from .cities import urban_probability
from .noise import Octaves, Scratch, fbm, hash_unit, key, lerp_lattice, noise_cdf, white
from .phenology import SUMMER_CROP, WINTER_CROP
from .tiles import Lattice, Tile, lattice_lonlat, pixel_centres, tile_of

CLASS_NAMES = ("water", "evergreen_forest", "deciduous_forest", "cropland", "grassland", "urban",
               "bare", "snow_ice")
WATER, EVERGREEN, DECIDUOUS, CROPLAND, GRASSLAND, URBAN, BARE, SNOW_ICE = range(len(CLASS_NAMES))
_OPEN = np.array([CROPLAND, GRASSLAND, BARE, SNOW_ICE], dtype=np.uint8)

RES = 10
ENV_STEP = 500  # m, lattice of the coarse fields
BLOCK = 640  # m, lattice of crop parcel blocks

FOREST_OCT = Octaves((2560, 1280, 640, 320, 160, 80), (1.0, 0.55, 0.32, 0.2, 0.12, 0.07))
EVERGREEN_OCT = Octaves((5120, 2560, 1280, 640), (1.0, 0.5, 0.3, 0.15))
OPEN_OCT = Octaves((2560, 1280, 640, 320, 160), (1.0, 0.55, 0.3, 0.18, 0.1))
URBAN_OCT = Octaves((1280, 640, 320, 160, 80, 40), (1.0, 0.6, 0.4, 0.25, 0.15, 0.1))
LAKE_OCT = Octaves((1280, 640, 320, 160), (1.0, 0.5, 0.3, 0.15))
RIVER_OCT = Octaves((2560, 1280, 640), (1.0, 0.5, 0.25))
PRESENCE_OCT = Octaves((20480,), (1.0,))
WARP_OCT = Octaves((2560, 1280, 640, 320, 160), (1.0, 0.55, 0.32, 0.18, 0.1))
SNOW_OCT = Octaves((1280, 640, 320, 160, 80), (1.0, 0.6, 0.4, 0.25, 0.15))
MIX_OCT = Octaves((160, 80, 40), (1.0, 0.6, 0.4))

WARP_M = 450.0  # m of coastline domain warp per unit of noise (noise std ~0.5)
WARP_MAX = 1000  # m, at most (the lattice margin covers it)
RIVER_WIDTH = 0.006  # |noise| below this is river (~30-60 m wide)


@dataclass(frozen=True)
class Parcels:
    """Crop pixels (flat indices into the patch) and the calendar of the parcel each belongs to."""

    index: np.ndarray  # (n,) int64 flat pixel indices
    parcel: np.ndarray  # (n,) int32 into the arrays below
    kind: np.ndarray  # (P,) SUMMER_CROP / WINTER_CROP
    shift: np.ndarray  # (P,) days
    vmax: np.ndarray  # (P,) peak green cover
    bright: np.ndarray  # (P,) soil brightness factor


@dataclass(frozen=True)
class Landscape:
    """Date-independent description of a patch at 10 m."""

    grid: PatchGrid
    tile: Tile
    cls: np.ndarray  # (H, W) uint8 class
    mix: np.ndarray  # (H, W) float32: class-specific sub-pixel mix (density, turbidity, ...)
    tex: np.ndarray  # (H, W) float32 brightness texture around 1
    snow_noise: np.ndarray  # (H, W) float32, thresholded by the season's snow fraction
    parcels: Parcels


def _offset(k: int) -> tuple[int, int]:
    return (int(k % 5120) // 10 * 10, int((k >> 20) % 5120) // 10 * 10)


def _field(seed: int, name: str, epsg: int, xs, ys, octaves: Octaves, scratch: Scratch) -> np.ndarray:
    k = key(seed, name, epsg)
    return fbm(k, xs, ys, octaves, _offset(k), scratch=scratch)


def _interp(values: np.ndarray, w, scratch: Scratch) -> np.ndarray:
    """Node values interpolated to the pixels (``w`` from :meth:`Lattice.weights`)."""
    ia, wx, ja, wy = w
    out = np.empty(scratch.a.shape, dtype=np.float32)
    return lerp_lattice(values.astype(np.float32), ia, wx, ja, wy, out, scratch, add=False)


def _land(seed: int, grid: PatchGrid, xs, ys, scratch: Scratch) -> np.ndarray:
    """Land from the 1 km land mask, looked up at domain-warped positions of every pixel.

    Each pixel reads the mask at its position displaced by up to ~1 km of fractal noise, so coasts
    follow the mask at the 1 km scale but are irregular down to ~100 m (no 1 km staircases).
    Positions are turned into lon/lat by bilinear interpolation between exactly projected nodes
    of an absolute 500 m lattice.
    """
    shape = scratch.a.shape
    nodes = Lattice.covering(grid, ENV_STEP, margin=3)
    lon, lat = lattice_lonlat(grid.epsg, nodes)
    landv = is_land(lon, lat)
    if landv.all():
        return np.ones(shape, dtype=bool)
    if not landv.any():
        return np.zeros(shape, dtype=bool)
    lon = lon[0, 0] + (lon - lon[0, 0] + 180.0) % 360.0 - 180.0  # no jump across the antimeridian
    dx = _field(seed, "coast-dx", grid.epsg, xs, ys, WARP_OCT, scratch)
    dy = _field(seed, "coast-dy", grid.epsg, xs, ys, WARP_OCT, scratch)
    reach = float(WARP_MAX)
    x = xs[None, :] + np.clip(dx.astype(np.float64) * WARP_M, -reach, reach)
    y = ys[:, None] + np.clip(dy.astype(np.float64) * WARP_M, -reach, reach)
    return is_land(nodes.sample(lon, x, y), nodes.sample(lat, x, y))


def _water(seed: int, grid: PatchGrid, tile: Tile, xs, ys, scratch: Scratch):
    """(water, inland) boolean masks: sea from the warped land mask, plus lakes and rivers."""
    land = _land(seed, grid, xs, ys, scratch)
    if not land.any():
        return ~land, land
    lake_p = climate.lake_fraction(tile.lat)
    if climate.bare_kind(tile.lon, tile.lat) == "sand":
        lake_p *= 0.2
    lake_level = noise_cdf(LAKE_OCT, RES).threshold(lake_p)
    lake = _field(seed, "lake", grid.epsg, xs, ys, LAKE_OCT, scratch) > lake_level
    kp = key(seed, "river-presence", grid.epsg)
    rivers_level = 0.55 if lake_p < 0.005 else 0.25  # fewer rivers in dry lands
    presence = fbm(kp, xs, ys, PRESENCE_OCT, _offset(kp), scratch=scratch) > rivers_level
    if presence.any():
        river = np.abs(_field(seed, "river", grid.epsg, xs, ys, RIVER_OCT, scratch)) < RIVER_WIDTH
        inland = land & (lake | (river & presence))
    else:
        inland = land & lake
    return ~land | inland, inland


def _parcels(seed: int, grid: PatchGrid, tile: Tile, cls: np.ndarray, xs, ys) -> Parcels:
    """Split crop pixels into rectangular parcels; parcel west/south edge pixels become grass margins."""
    h, w = cls.shape
    index = np.flatnonzero(cls.ravel() == CROPLAND)
    rows, cols = index // w, index % w
    bx_all, by_all = xs // BLOCK, ys // BLOCK
    bx0, by0 = int(bx_all.min()), int(by_all.min())
    nbx, nby = int(bx_all.max()) - bx0 + 1, int(by_all.max()) - by0 + 1
    bxs = np.arange(bx0, bx0 + nbx)[None, :]
    bys = np.arange(by0, by0 + nby)[:, None]
    k = key(seed, "parcels", grid.epsg)

    def u(*parts):  # per block uniform (nby, nbx)
        return hash_unit(key(k, *parts), bxs, bys).astype(np.float64)

    def q(v):  # cuts on the 10 m lattice
        return np.round(v / 10.0) * 10.0

    c1 = q(110 + 210 * u("c1"))
    c2 = q(c1 + 110 + 210 * u("c2"))
    c1 = np.where(u("one") < 0.15, BLOCK, c1)
    c2 = np.where(c2 > BLOCK - 100, BLOCK, c2)
    ycuts = np.stack([np.zeros_like(c1), c1, c2], axis=-1)  # (nby, nbx, 3) strip south edges
    xcuts = np.zeros((nby, nbx, 3, 4))  # per strip: west edges of up to 4 parcels
    for s in range(3):
        d = np.zeros((nby, nbx))
        for c in range(1, 4):
            d = q(d + 100 + 230 * u("d", s, c))
            xcuts[:, :, s, c] = np.where(d > BLOCK - 90, BLOCK, d)
    bi = bx_all[cols] - bx0
    bj = by_all[rows] - by0
    lx = xs[cols] - bx_all[cols] * BLOCK
    ly = ys[rows] - by_all[rows] * BLOCK
    strip = (ly >= ycuts[bj, bi, 1]).astype(np.int64) + (ly >= ycuts[bj, bi, 2])
    col = np.zeros_like(strip)
    for c in range(1, 4):
        col += lx >= xcuts[bj, bi, strip, c]
    margin = (lx - xcuts[bj, bi, strip, col] < RES) | (ly - ycuts[bj, bi, strip] < RES)
    pid = ((bj * nbx + bi) * 3 + strip) * 4 + col
    # parcel parameters from the absolute parcel identity
    gid = (bx0 + np.arange(nbx))[None, :, None] * 16 + np.arange(12)[None, None, :]
    gy = np.broadcast_to((by0 + np.arange(nby))[:, None, None], (nby, nbx, 12))

    def ph(name):  # per parcel uniform, from the absolute parcel identity
        return hash_unit(key(k, name), gid, gy).reshape(-1)

    a = abs(tile.lat)
    p_winter = 0.42 if 35 <= a <= 58 else 0.25
    kind = np.where(ph("kind") < p_winter, WINTER_CROP, SUMMER_CROP).astype(np.int8)
    shift = (ph("shift") * 40.0 - 20.0).astype(np.float32)
    vmax = (0.72 + 0.28 * ph("vmax")).astype(np.float32)
    hedge = ph("hedge") < 0.7
    bright = (0.85 + 0.3 * ph("bright")).astype(np.float32)
    margin &= hedge[pid]
    if margin.any():
        cls.ravel()[index[margin]] = GRASSLAND
        keep = ~margin
        index, pid = index[keep], pid[keep]
    return Parcels(index=index, parcel=pid.astype(np.int32), kind=kind, shift=shift, vmax=vmax,
                   bright=bright)


def _build(grid: PatchGrid, seed: int) -> Landscape:
    tile = tile_of(grid)
    xs, ys = pixel_centres(grid, RES)
    shape = (len(ys), len(xs))
    scratch = Scratch(shape)
    env = Lattice.covering(grid, ENV_STEP)
    lon, lat = lattice_lonlat(grid.epsg, env)
    wlin = env.weights(xs, ys)
    epsg = grid.epsg

    water, inland = _water(seed, grid, tile, xs, ys, scratch)

    mix = climate.natural_mix(seed, lon, lat)  # (nj, ni, 6)
    pf = mix[..., 0] + mix[..., 1]
    pe = mix[..., 0] / np.maximum(pf, 1e-9)
    opn = np.cumsum(mix[..., 2:], axis=-1) / np.maximum(1.0 - pf, 1e-9)[..., None]

    def region(name, octaves, p_nodes):
        """Pixels where the field is below the calibrated level of probability p (interpolated)."""
        levels = noise_cdf(octaves, RES).below(np.clip(p_nodes, 0.0, 1.0))
        thr = _interp(levels, wlin, scratch)
        return _field(seed, name, epsg, xs, ys, octaves, scratch) < thr

    forest = region("forest", FOREST_OCT, pf)
    evergreen = region("evergreen", EVERGREEN_OCT, pe)
    n_open = _field(seed, "open", epsg, xs, ys, OPEN_OCT, scratch)
    open_idx = np.zeros(shape, dtype=np.uint8)
    cdf = noise_cdf(OPEN_OCT, RES)
    for c in range(3):
        if (opn[..., c] < 1.0 - 1e-9).any():
            open_idx += n_open >= _interp(cdf.below(np.clip(opn[..., c], 0, 1)), wlin, scratch)
    cls = _OPEN[open_idx]
    cls[forest] = DECIDUOUS
    cls[forest & evergreen] = EVERGREEN

    rural = 0.012 if abs(tile.lat) < 60 else 0.003
    p_urban = 1.0 - (1.0 - urban_probability(lon, lat)) * (1.0 - rural)
    cls[region("urban", URBAN_OCT, p_urban)] = URBAN
    cls[water] = WATER

    parcels = _parcels(seed, grid, tile, cls, xs, ys)

    # class-specific sub-pixel mix from fine noise: canopy density, turbidity, green share ...
    u = np.clip(0.5 + 0.45 * _field(seed, "mix", epsg, xs, ys, MIX_OCT, scratch), 0.0, 1.0)
    m0 = np.array([0.05, 0.75, 0.75, 0.0, 0.7, 0.05, 0.0, 0.0], dtype=np.float32)
    m1 = np.array([0.25, 0.25, 0.25, 0.0, 0.3, 0.40, 0.2, 0.15], dtype=np.float32)
    mixf = m0[cls] + m1[cls] * u
    if inland.any():
        mixf[inland] = 0.45 + 0.4 * u[inland]

    kw = key(seed, "texture", epsg)
    col0, row0 = grid.x0 // RES, -grid.y0 // RES
    tex = np.float32(1.0) + np.float32(0.03) * white(kw, col0, row0, *shape)
    if parcels.index.size:
        tex.ravel()[parcels.index] *= parcels.bright[parcels.parcel]
    snow_noise = _field(seed, "snow", epsg, xs, ys, SNOW_OCT, scratch)
    for a in (cls, mixf, tex, snow_noise, parcels.index, parcels.parcel):
        a.setflags(write=False)  # shared through the cache
    return Landscape(grid, tile, cls, mixf, tex, snow_noise, parcels)


@lru_cache(maxsize=16)
def landscape(grid: PatchGrid, seed: int = 0) -> Landscape:
    """The (cached) landscape of ``grid`` in the world ``seed``. Treat the arrays as read-only."""
    return _build(grid, seed)


def landcover(grid: PatchGrid, seed: int = 0) -> np.ndarray:
    """(H, W) uint8 land-cover classes at 10 m (indices into :data:`CLASS_NAMES`)."""
    return landscape(grid, seed).cls.copy()
