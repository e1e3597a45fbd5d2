"""Patch grids: a square on the location's UTM zone, snapped to the 10 m lattice.

All resolution groups of a patch share the same upper-left corner and extent, so a 2640 m patch is
264 px at 10 m, 132 px at 20 m and 44 px at 60 m, and the pixels of every group nest exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from affine import Affine

LATTICE_M = 10
#: Sentinel-2 / UTM coverage used for sampling (UTM is undefined beyond these latitudes).
MIN_LAT, MAX_LAT = -80.0, 84.0


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the standard UTM zone holding (lon, lat) (WGS 84 / UTM, no Norway exceptions)."""
    if not (MIN_LAT <= lat <= MAX_LAT):
        raise ValueError(f"latitude {lat:.4f} is outside UTM coverage [{MIN_LAT}, {MAX_LAT}]")
    lon = ((lon + 180.0) % 360.0) - 180.0
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


@lru_cache(maxsize=256)
def _transformer(src: int, dst: int):
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


def to_utm(epsg: int, lon, lat):
    """Project lon/lat (degrees, scalars or arrays) into ``epsg``."""
    return _transformer(4326, epsg).transform(lon, lat)


def to_lonlat(epsg: int, x, y):
    """Unproject ``epsg`` coordinates to lon/lat degrees."""
    return _transformer(epsg, 4326).transform(x, y)


@dataclass(frozen=True)
class PatchGrid:
    """A square patch on a UTM grid: upper-left corner (x0, y0) in metres, side ``size_m``."""

    epsg: int
    x0: int
    y0: int
    size_m: int = 2640

    @classmethod
    def around(cls, lon: float, lat: float, size_m: int = 2640) -> "PatchGrid":
        """The patch whose centre is nearest to (lon, lat), corner snapped to the 10 m lattice."""
        if size_m <= 0 or size_m % 60:
            raise ValueError(f"patch size {size_m} m must be a positive multiple of 60 m")
        epsg = utm_epsg(lon, lat)
        x, y = to_utm(epsg, lon, lat)
        half = size_m / 2
        x0 = int(round((x - half) / LATTICE_M)) * LATTICE_M
        y0 = int(round((y + half) / LATTICE_M)) * LATTICE_M
        return cls(epsg, x0, y0, size_m)

    def shape(self, resolution: int) -> tuple[int, int]:
        n = self.size_m // resolution
        return (n, n)

    def transform(self, resolution: int) -> Affine:
        return Affine(resolution, 0.0, self.x0, 0.0, -resolution, self.y0)

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """(left, bottom, right, top) in the grid's CRS."""
        return (self.x0, self.y0 - self.size_m, self.x0 + self.size_m, self.y0)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.size_m / 2, self.y0 - self.size_m / 2)

    @property
    def centre_lonlat(self) -> tuple[float, float]:
        return to_lonlat(self.epsg, *self.centre)

    def footprint_lonlat(self, densify: int = 1) -> list[tuple[float, float]]:
        """Closed ring of the footprint in lon/lat, corners (and ``densify``-1 points per edge)."""
        left, bottom, right, top = self.bounds
        pts = []
        for (ax, ay), (bx, by) in (
            ((left, top), (right, top)),
            ((right, top), (right, bottom)),
            ((right, bottom), (left, bottom)),
            ((left, bottom), (left, top)),
        ):
            for k in range(densify):
                t = k / densify
                pts.append((ax + (bx - ax) * t, ay + (by - ay) * t))
        xs, ys = zip(*pts)
        lons, lats = to_lonlat(self.epsg, list(xs), list(ys))
        ring = list(zip(lons, lats))
        ring.append(ring[0])
        return ring

    def bbox_lonlat(self) -> tuple[float, float, float, float]:
        ring = self.footprint_lonlat()
        lons = [p[0] for p in ring]
        lats = [p[1] for p in ring]
        return (min(lons), min(lats), max(lons), max(lats))

