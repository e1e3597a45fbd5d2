"""Climate of the simulated world: biome class mix, cloudiness and the scene cloud-cover draw.

All of it is a smooth function of latitude (by hemisphere), day of year and a few continental-scale
noises on lon/lat (aridity, farming intensity, cloudiness), so neighbouring places look alike and
the world is the same every run.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .noise import Octaves, fbm_points, key, unit

#: natural (non-water, non-urban) classes in the order the biome table lists them
NATURAL = ("evergreen_forest", "deciduous_forest", "cropland", "grassland", "bare", "snow_ice")

# |latitude| anchors -> relative weights of NATURAL (northern hemisphere; south mirrors it, with
# Antarctica handled apart)
_LAT = np.array([0, 10, 16, 24, 32, 40, 50, 58, 66, 72, 80, 90], dtype=np.float64)
_MIX = np.array([
    [0.60, 0.06, 0.14, 0.16, 0.04, 0.00],  # equatorial rain forest
    [0.45, 0.10, 0.17, 0.23, 0.05, 0.00],
    [0.12, 0.10, 0.22, 0.40, 0.16, 0.00],  # savanna
    [0.07, 0.06, 0.18, 0.34, 0.35, 0.00],  # subtropics (deserts come from DESERTS below)
    [0.08, 0.07, 0.32, 0.30, 0.23, 0.00],  # mediterranean / steppe
    [0.12, 0.16, 0.42, 0.24, 0.06, 0.00],  # warm temperate farmland
    [0.14, 0.22, 0.44, 0.18, 0.02, 0.00],  # temperate farmland and forest
    [0.45, 0.20, 0.14, 0.15, 0.06, 0.00],  # hemiboreal
    [0.50, 0.15, 0.03, 0.20, 0.12, 0.00],  # boreal
    [0.05, 0.02, 0.00, 0.45, 0.38, 0.10],  # tundra
    [0.00, 0.00, 0.00, 0.15, 0.45, 0.40],  # polar desert
    [0.00, 0.00, 0.00, 0.05, 0.30, 0.65],
])
_ANTARCTIC = np.array([0.0, 0.0, 0.0, 0.0, 0.08, 0.92])

#: the great dry regions (lon_min, lon_max, lat_min, lat_max): a prior on aridity, so that deserts sit
#: where they are on Earth rather than along the whole subtropical belt
DESERTS = (
    (-17.0, 33.0, 15.0, 31.0),  # Sahara
    (34.0, 60.0, 15.0, 32.0),  # Arabia
    (50.0, 75.0, 24.0, 37.0),  # Iran, Afghanistan, Thar
    (52.0, 68.0, 37.0, 46.0),  # Karakum, Kyzylkum
    (75.0, 112.0, 36.0, 46.0),  # Taklamakan, Gobi
    (115.0, 145.0, -32.0, -19.0),  # Australian interior
    (12.0, 25.0, -29.0, -17.0),  # Namib, Kalahari
    (-72.0, -68.5, -30.0, -15.0),  # Atacama
    (-118.0, -102.0, 25.0, 40.0),  # Sonoran, Chihuahuan, Great Basin
    (-72.0, -65.0, -50.0, -38.0),  # Patagonian steppe
    (40.0, 51.0, 2.0, 12.0),  # Horn of Africa
)
_DESERT_EDGE = 3.0  # degrees over which the prior fades out

_REGIONAL = Octaves((8000, 3000), (1.0, 0.45))  # milli-degrees: continental-scale anomalies
_MDEG = 1000.0


def regional(seed: int, name: str, lon, lat) -> np.ndarray:
    """A smooth anomaly in about [-1, 1] over lon/lat (a few degrees across)."""
    x = np.round(np.asarray(lon, dtype=np.float64) * _MDEG).astype(np.int64)
    y = np.round(np.asarray(lat, dtype=np.float64) * _MDEG).astype(np.int64)
    v = fbm_points(key(seed, "regional", name), x, y, _REGIONAL)
    return np.clip(v / np.float32(0.9), -1.0, 1.0)


@lru_cache(maxsize=4096)
def regional_at(seed: int, name: str, lon: float, lat: float) -> float:
    """:func:`regional` at one place (cached: used per tile and per scene)."""
    return float(regional(seed, name, lon, lat))


def desert_prior(lon, lat) -> np.ndarray:
    """0-1: how deep inside one of the :data:`DESERTS` a place is."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    out = np.zeros(np.broadcast(lon, lat).shape)
    for x0, x1, y0, y1 in DESERTS:
        inside_x = np.clip(np.minimum(lon - x0, x1 - lon) / _DESERT_EDGE + 0.5, 0.0, 1.0)
        inside_y = np.clip(np.minimum(lat - y0, y1 - lat) / _DESERT_EDGE + 0.5, 0.0, 1.0)
        out = np.maximum(out, inside_x * inside_y)
    return out


def aridity(seed: int, lon, lat) -> np.ndarray:
    """-1 (humid) .. 1 (desert): the desert prior plus a continental-scale anomaly."""
    prior = desert_prior(lon, lat)
    noise = regional(seed, "aridity", lon, lat).astype(np.float64)
    return np.clip(1.3 * prior - 0.25 + 0.55 * noise, -1.0, 1.0)


def natural_mix(seed: int, lon, lat) -> np.ndarray:
    """Probabilities (..., 6) of the NATURAL classes at lon/lat (sums to 1)."""
    lat = np.asarray(lat, dtype=np.float64)
    a = np.abs(lat)
    mix = np.stack([np.interp(a, _LAT, _MIX[:, c]) for c in range(_MIX.shape[1])], axis=-1)
    south = np.clip((-lat - 60.0) / 4.0, 0.0, 1.0)[..., None]  # Antarctica
    mix = mix * (1 - south) + _ANTARCTIC * south
    arid = aridity(seed, lon, lat)
    farm = regional(seed, "farming", lon, lat).astype(np.float64)
    scale = np.stack([
        np.exp(-1.2 * arid), np.exp(-1.2 * arid), np.exp(-0.8 * arid + 1.0 * farm),
        np.exp(0.5 * arid), np.exp(1.6 * arid), np.ones_like(arid),
    ], axis=-1)
    mix = mix * scale
    return mix / mix.sum(axis=-1, keepdims=True)


def lake_fraction(lat: float) -> float:
    """Share of land under small lakes (boreal shields are full of them)."""
    a = abs(lat)
    return float(np.interp(a, [0, 15, 25, 35, 45, 55, 62, 70, 80], [0.010, 0.005, 0.002, 0.005, 0.010,
                                                                     0.04, 0.07, 0.06, 0.01]))


def bare_kind(lon: float, lat: float) -> str:
    """What bare ground looks like here: desert sand, soil or rock."""
    if float(desert_prior(lon, lat)) > 0.5:
        return "sand"
    return "rock" if abs(lat) >= 58.0 else "soil"


# ----------------------------------------------------------------------------- clouds
def cloudiness(seed: int, lon: float, lat: float, doy: int) -> float:
    """Climatological mean cloud fraction (0-1) for this place and day of year."""
    a = abs(lat)
    base = float(np.interp(a, [0, 8, 15, 22, 30, 40, 50, 60, 70, 90],
                           [0.60, 0.58, 0.40, 0.20, 0.24, 0.40, 0.52, 0.60, 0.60, 0.55]))
    summer = math.cos(2 * math.pi * ((doy if lat >= 0 else doy + 182) - 196) / 365.25)
    tropic = float(np.interp(a, [0, 4, 10, 18, 26], [0.2, 0.6, 1.0, 0.8, 0.0]))
    extra = float(np.interp(a, [25, 35, 50, 90], [0.0, 0.6, 1.0, 0.7]))
    c = base + 0.22 * tropic * summer - 0.12 * extra * summer
    c += 0.12 * regional_at(seed, "cloudiness", lon, lat)
    return min(max(c, 0.05), 0.88)


def draw_cloud_cover(mean: float, u1: float, u2: float) -> float:
    """Scene cloud percentage from two uniforms: clear / partly cloudy (long tail) / overcast.

    The mixture's mean is ``mean`` (as a fraction) so climatology holds on average.
    """
    c = min(max(mean, 0.02), 0.95)
    w_clear = 0.12 + 0.45 * (1.0 - c) ** 2
    w_over = 0.70 * c * c
    m_part = (c - 0.95 * w_over - 0.004 * w_clear) / max(1.0 - w_clear - w_over, 1e-6)
    m_part = min(max(m_part, 0.03), 0.92)
    if u1 < w_clear:
        frac = 0.0 if u1 < 0.5 * w_clear else 0.008 * u2
    elif u1 < w_clear + w_over:
        frac = 0.90 + 0.10 * u2
    else:
        frac = u2 ** (1.0 / m_part - 1.0)  # power law with mean m_part
    return round(100.0 * min(max(frac, 0.0), 1.0), 4)


def scene_cloud_cover(seed: int, tile_ints: tuple[int, int, int], day: int, lon: float, lat: float,
                      doy: int) -> float:
    """The deterministic cloud percentage of one tile on one day."""
    u1 = unit(seed, "cc1", *tile_ints, day)
    u2 = unit(seed, "cc2", *tile_ints, day)
    return draw_cloud_cover(cloudiness(seed, lon, lat, doy), u1, u2)
