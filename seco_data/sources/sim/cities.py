"""Urban intensity from the gazetteer: a coarse 1-degree bucket index of cities, built once."""

from __future__ import annotations

import math
import threading

import numpy as np

from ...gazetteer import load_cities

_lock = threading.Lock()
_index: "CityIndex | None" = None

#: urban radius of a city of population p: R0 * sqrt(p / 10_000) km (constant density)
_R0_KM = 0.75
_PEAK = 2.6  # urban intensity at a city centre (p_urban = 1 - exp(-intensity))


class CityIndex:
    """Cities bucketed by integer (lat, lon) degree cell, for nearby-city look-ups."""

    def __init__(self):
        c = load_cities()
        lat = np.asarray(c.lat, dtype=np.float64)
        lon = np.asarray(c.lon, dtype=np.float64)
        cell = self.cell_id(lon, lat)
        order = np.argsort(cell, kind="stable")
        self.cell = cell[order]
        self.lon = lon[order]
        self.lat = lat[order]
        pop = np.maximum(np.asarray(c.population, dtype=np.float64)[order], 1e3)  # a few have 0
        self.radius_km = _R0_KM * np.sqrt(pop / 1e4)

    @staticmethod
    def cell_id(lon, lat):
        r = np.floor(np.asarray(lat) + 90.0).astype(np.int64)
        c = np.floor((np.asarray(lon) + 180.0) % 360.0).astype(np.int64)
        return r * 360 + c

    def near(self, lon: float, lat: float) -> np.ndarray:
        """Indices of cities in the 1-degree cells around (lon, lat) (about 100 km or more)."""
        k = min(int(math.ceil(1.0 / max(math.cos(math.radians(lat)), 0.05))), 20)
        cells = [
            int(self.cell_id(lon + dlon, lat + dlat))
            for dlat in (-1, 0, 1)
            for dlon in range(-k, k + 1)
        ]
        cells = sorted(set(cells))
        lo = np.searchsorted(self.cell, cells, side="left")
        hi = np.searchsorted(self.cell, cells, side="right")
        parts = [np.arange(a, b) for a, b in zip(lo, hi) if b > a]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def city_index() -> CityIndex:
    global _index
    if _index is None:
        with _lock:
            if _index is None:
                _index = CityIndex()
    return _index


def urban_probability(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Probability (0-1) that ground at lon/lat (arrays of nearby points) is built up."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    idx = city_index()
    near = idx.near(float(lon.mean()), float(lat.mean()))
    if near.size == 0:
        return np.zeros(lon.shape)
    clon, clat, rad = idx.lon[near], idx.lat[near], idx.radius_km[near]
    kx = 111.32 * np.cos(np.radians(lat.ravel()))[:, None]  # per point: no dependence on neighbours
    dx = ((lon.ravel()[:, None] - clon[None, :] + 180.0) % 360.0 - 180.0) * kx
    dy = (lat.ravel()[:, None] - clat[None, :]) * 110.57
    q = (dx * dx + dy * dy) / (rad * rad)[None, :]
    contrib = np.where(q < 9.0, np.exp(-np.minimum(q, 9.0)), 0.0)
    p = 1.0 - np.exp(-_PEAK * contrib.sum(axis=1))
    # rounded, so that the candidate set (which depends on the query) cannot change the last bits
    return np.round(p, 6).reshape(lon.shape)
