"""Where a patch sits: its 100 km tile (MGRS-style code), lon/lat lattices, the sun.

A simulated "scene" is one tile on one date. Tiles are the 100 km squares of the patch's UTM zone,
named like Sentinel-2 MGRS tiles (zone, latitude band, column and row letters of the 100 km square,
in the AA lettering scheme).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...grid import PatchGrid, to_lonlat
from .noise import lattice_weights

TILE_M = 100_000
_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_COLS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
_ROWS = "ABCDEFGHJKLMNPQRSTUV"


@dataclass(frozen=True)
class Tile:
    """A 100 km square of a UTM zone and what is constant over it."""

    epsg: int
    col: int  # floor(easting / 100 km)
    row: int  # floor(northing / 100 km)
    lon: float  # centre
    lat: float
    code: str  # e.g. "31UDQ"

    @property
    def zone(self) -> int:
        return self.epsg % 100

    @property
    def ints(self) -> tuple[int, int, int]:
        return (self.epsg, self.col, self.row)


def mgrs_code(zone: int, col: int, row: int, lat: float) -> str:
    """Zone + latitude band + 100 km column/row letters (MGRS AA scheme)."""
    band = _BANDS[min(max(int((lat + 80.0) // 8.0), 0), len(_BANDS) - 1)]
    c = _COLS[(zone - 1) % 3][min(max(col, 1), 8) - 1]
    r = _ROWS[(row + (5 if zone % 2 == 0 else 0)) % 20]
    return f"{zone:02d}{band}{c}{r}"


@lru_cache(maxsize=4096)
def tile_at(epsg: int, col: int, row: int) -> Tile:
    lon, lat = to_lonlat(epsg, (col + 0.5) * TILE_M, (row + 0.5) * TILE_M)
    lat = float(min(max(lat, -80.0), 84.0))
    return Tile(epsg, col, row, float(lon), lat, mgrs_code(epsg % 100, col, row, lat))


def tile_of(grid: PatchGrid) -> Tile:
    """The tile holding the grid's centre (every patch belongs to exactly one tile)."""
    cx, cy = grid.centre
    return tile_at(grid.epsg, int(cx // TILE_M), int(cy // TILE_M))


def pixel_centres(grid: PatchGrid, res: int) -> tuple[np.ndarray, np.ndarray]:
    """Absolute int64 eastings (columns) and northings (rows) of pixel centres at ``res``.

    Pixel centres are offset by half a pixel; at 10 m they sit on whole metres (x0 + 5 + 10 i).
    """
    h, w = grid.shape(res)
    half = res // 2
    xs = grid.x0 + half + res * np.arange(w, dtype=np.int64)
    ys = grid.y0 - half - res * np.arange(h, dtype=np.int64)
    return xs, ys


@dataclass(frozen=True)
class Lattice:
    """A coarse absolute lattice (spacing ``step`` m) covering a grid, nodes (nj, ni), rows north first."""

    step: int
    ix: np.ndarray  # (ni,) node column indices
    iy: np.ndarray  # (nj,) node row indices (descending northing)

    @classmethod
    def covering(cls, grid: PatchGrid, step: int, margin: int = 0) -> "Lattice":
        """Nodes around the grid, plus ``margin`` extra nodes on every side."""
        left, bottom, right, top = grid.bounds
        ix = np.arange(left // step - margin, right // step + 2 + margin, dtype=np.int64)
        iy = np.arange(top // step + 1 + margin, bottom // step - 2 - margin, -1, dtype=np.int64)
        return cls(step, ix, iy)

    def sample(self, values: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear value of node ``values`` at arbitrary float64 positions ``x``/``y`` (same shape)."""
        fx = x / self.step
        fy = y / self.step
        i0 = np.floor(fx)
        j0 = np.floor(fy)
        tx = fx - i0
        ty = fy - j0
        col = i0.astype(np.int64) - self.ix[0]
        row = self.iy[0] - j0.astype(np.int64)  # row of the southern node; the northern is row - 1
        ni = len(self.ix)
        flat = values.reshape(-1)
        s0 = flat[row * ni + col]
        s1 = flat[row * ni + col + 1]
        n0 = flat[(row - 1) * ni + col]
        n1 = flat[(row - 1) * ni + col + 1]
        south = s0 + (s1 - s0) * tx
        north = n0 + (n1 - n0) * tx
        return south + (north - south) * ty

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.iy), len(self.ix))

    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        x = np.broadcast_to(self.ix[None, :] * self.step, self.shape)
        y = np.broadcast_to(self.iy[:, None] * self.step, self.shape)
        return x, y

    def weights(self, xs: np.ndarray, ys: np.ndarray, smooth: bool = False):
        """(ia, wx, ja, wy) to interpolate node fields to pixel centres ``xs``/``ys``."""
        ia, wx, ja, wy = lattice_weights(xs, ys, self.step, int(self.iy[0]), int(self.ix[0]))
        if smooth:
            wx = wx * wx * (3 - 2 * wx)
            wy = wy * wy * (3 - 2 * wy)
        return ia, wx, ja, wy


def lattice_lonlat(epsg: int, lattice: Lattice, dx=None, dy=None) -> tuple[np.ndarray, np.ndarray]:
    """lon/lat of the lattice nodes (optionally displaced by dx/dy metres)."""
    x, y = lattice.xy()
    if dx is not None:
        x = x + dx
        y = y + dy
    lon, lat = to_lonlat(epsg, np.ascontiguousarray(x, dtype=np.float64).ravel(),
                         np.ascontiguousarray(y, dtype=np.float64).ravel())
    return np.asarray(lon).reshape(lattice.shape), np.asarray(lat).reshape(lattice.shape)


def sun_position(lat: float, doy: int, solar_hour: float = 10.5) -> tuple[float, float]:
    """Sun (azimuth clockwise from north, elevation), degrees, at local solar time ``solar_hour``."""
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
    h = math.radians(15.0 * (solar_hour - 12.0))
    phi = math.radians(lat)
    sin_el = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(h)
    el = math.degrees(math.asin(max(-1.0, min(1.0, sin_el))))
    east = -math.cos(decl) * math.sin(h)
    north = math.cos(phi) * math.sin(decl) - math.sin(phi) * math.cos(decl) * math.cos(h)
    az = math.degrees(math.atan2(east, north)) % 360.0
    return az, el
