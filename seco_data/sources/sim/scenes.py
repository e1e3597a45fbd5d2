"""Render one scene on one patch: mixing weights -> reflectance -> noisy uint16 DN per resolution.

Each 10 m pixel is a mix of at most four endmembers: two for its land-cover class (e.g. green leaf
and soil, weighted by the crop's vigour on that date), seasonal snow, and cloud. Shadows darken
the surface part, thin cloud edges blend over it. The 20 m and 60 m bands use the 2x2 / 6x6 block
means of the weights, which is exactly the block mean of the 10 m reflectance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import climate, phenology
from .acquisitions import Acquisition
from .clouds import SkyMasks
from .landcover import SNOW_OCT, Landscape, RES
from .noise import key, noise_cdf, unit, white
from .spectra import (E_BROADLEAF, E_CLOUD, E_CONIFER, E_DRY, E_GREEN, E_ROCK, E_SAND, E_SNOW, E_SOIL,
                      E_TURBID, E_URBAN, E_WATER, ENDMEMBERS, dn_matrix, noise_sigma)

N_END = len(ENDMEMBERS)
# per class (water, evergreen, deciduous, cropland, grassland, urban, bare, snow_ice)
_E2 = np.array([E_TURBID, E_DRY, E_DRY, E_SOIL, E_DRY, E_GREEN, E_DRY, E_ROCK], dtype=np.int64)
_SNOW_SHOWS = np.array([0.0, 0.55, 0.75, 1.0, 0.95, 0.7, 1.0, 0.0], dtype=np.float32)
_BARE = {"sand": E_SAND, "soil": E_SOIL, "rock": E_ROCK}


@dataclass(frozen=True)
class Atmosphere:
    aerosol: float  # path reflectance factor (1 = average)
    water_vapour: float  # cm of precipitable water


def atmosphere(seed: int, acq: Acquisition) -> Atmosphere:
    t = acq.tile
    u = unit(seed, "aerosol", *t.ints, acq.day)
    summer = math.cos(2 * math.pi * (phenology.season(t.lat, acq.doy).sd - 196) / 365.0)
    humid = math.exp(-((t.lat / 28.0) ** 2)) * (0.75 + 0.25 * summer)
    wv = 0.4 + 4.0 * humid + 0.5 * unit(seed, "vapour", *t.ints, acq.day)
    return Atmosphere(0.5 + 1.4 * u * u, wv)


def _class_tables(lon: float, lat: float, season: phenology.Season):
    e1 = np.array([E_WATER, E_BROADLEAF if abs(lat) < 25 else E_CONIFER, E_BROADLEAF, E_GREEN, E_GREEN,
                   E_URBAN, _BARE[climate.bare_kind(lon, lat)], E_SNOW], dtype=np.int64)
    a = np.array([1, 0, 0, 0, 0, 1, 1, 1], dtype=np.float32)
    urban_green = -(0.5 + 0.5 * season.deciduous)
    b = np.array([-1.0, 1.0, season.deciduous, 0.0, season.grass, urban_green, -1.0, -1.0], dtype=np.float32)
    return e1, a, b


def weights(seed: int, ls: Landscape, acq: Acquisition, sky: SkyMasks) -> np.ndarray:
    """Mixing weights (N_END, H, W) float32 of every 10 m pixel."""
    t = ls.tile
    h, w = ls.cls.shape
    n = h * w
    anomaly = climate.regional_at(seed, "snow", t.lon, t.lat)
    season = phenology.season(t.lat, acq.doy, anomaly)
    cls = ls.cls.ravel()
    e1_t, a_t, b_t = _class_tables(t.lon, t.lat, season)
    e1 = e1_t[cls]
    e2 = _E2[cls]
    w1 = a_t[cls] + b_t[cls] * ls.mix.ravel()
    p = ls.parcels
    if p.index.size:
        v, straw = phenology.crop_state(season.sd, t.lat, p.kind, p.shift, p.vmax)
        w1[p.index] = v[p.parcel]
        e2[p.index] = np.where(straw, E_DRY, E_SOIL)[p.parcel]

    k = ls.tex.ravel().copy()
    snow = None
    if season.snow > 0.0:
        cdf = noise_cdf(SNOW_OCT, RES)
        thr = np.float32(cdf.below(season.snow))
        snow = np.clip((thr - ls.snow_noise.ravel()) / np.float32(0.15 * cdf.std), 0.0, 1.0)
        snow *= _SNOW_SHOWS[cls]
        k *= np.float32(1.0) - snow
    if sky.shade is not None:
        atten = sky.shade.ravel() * (np.float32(1.0) - sky.alpha.ravel())
        k *= atten
    W = np.zeros((N_END, n), dtype=np.float32)
    flat = W.reshape(-1)
    ar = np.arange(n, dtype=np.int64)
    flat[e1 * n + ar] = w1 * k
    flat[e2 * n + ar] = (np.float32(1.0) - w1) * k
    if snow is not None:
        sw = snow * ls.tex.ravel()
        if sky.shade is not None:
            sw *= atten
        W[E_SNOW] += sw
    if sky.bright is not None:
        W[E_CLOUD] = sky.bright.ravel()
    return W.reshape(N_END, h, w)


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f blocks of the last two axes (sums of strided views: fast for small f)."""
    if f == 1:
        return a
    rows = a[:, 0::f, :].copy()
    for i in range(1, f):
        rows += a[:, i::f, :]
    out = rows[:, :, 0::f].copy()
    for j in range(1, f):
        out += rows[:, :, j::f]
    out *= np.float32(1.0 / (f * f))
    return out


def render(seed: int, ls: Landscape, acq: Acquisition, sky: SkyMasks, product: str, scene_id: str,
           bands: dict[int, tuple[str, ...]]) -> dict[int, np.ndarray]:
    """uint16 DN arrays (nbands, H, W) per resolution; 0 where there is no data."""
    if not any(bands.values()):
        return {res: np.zeros((0, *ls.grid.shape(res)), dtype=np.uint16) for res in bands}
    atm = atmosphere(seed, acq)
    W10 = weights(seed, ls, acq, sky)
    by_res = {10: W10}
    out = {}
    for res in sorted(bands):
        names = bands[res]
        h, w = ls.grid.shape(res)
        if not names:
            out[res] = np.zeros((0, h, w), dtype=np.uint16)
            continue
        if res not in by_res:
            if res == 60 and 20 in by_res:
                by_res[res] = block_mean(by_res[20], 3)
            else:
                by_res[res] = block_mean(W10, res // RES)
        Wr = by_res[res]
        m, off = dn_matrix(product, names, atm.aerosol, atm.water_vapour)
        # einsum, not matmul: single-threaded (no BLAS thread pool fighting the worker processes)
        # and a fixed summation order per pixel
        dn = np.einsum("be,en->bn", m, Wr.reshape(N_END, -1), optimize=False)
        dn += off[:, None]
        sigma0, rel = noise_sigma(names)
        col0, row0 = ls.grid.x0 // res, -ls.grid.y0 // res
        dn3 = dn.reshape(len(names), h, w)
        for i, b in enumerate(names):
            noise = white(key(seed, "sensor", scene_id, b, res), col0, row0, h, w)
            sig = dn3[i] * np.float32(rel)
            sig += sigma0[i]
            sig *= noise
            dn3[i] += sig
        np.rint(dn, out=dn)
        np.clip(dn, 1.0, 65535.0, out=dn)
        arr = dn.astype(np.uint16).reshape(len(names), h, w)
        if not sky.valid.all():
            f = res // RES
            v = sky.valid if f == 1 else sky.valid.reshape(h, f, w, f).all(axis=(1, 3))
            arr[:, ~v] = 0
        out[res] = arr
    return out
