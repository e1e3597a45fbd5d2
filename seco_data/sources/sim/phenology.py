"""Seasons: vegetation vigour, crop calendars and snow cover by latitude, hemisphere and date.

Everything is expressed on the *season day* (day of year in the north, shifted by half a year in
the south), so mid-summer is day ~196 in both hemispheres. Growing seasons shorten towards the
poles; the tropics follow a wet season instead of temperature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIDSUMMER = 196.0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))


def _cyc(d: float) -> float:
    """Signed day difference wrapped to [-182.5, 182.5)."""
    return (d + 182.5) % 365.0 - 182.5


def growing_season_length(lat: float) -> float:
    """Days between green-up and leaf fall (temperature-limited), ~365 in the tropics."""
    a = abs(lat)
    return float(np.interp(a, [0, 23, 30, 40, 50, 60, 68, 75], [365, 330, 270, 225, 190, 140, 105, 80]))


def warmth(sd: float, lat: float) -> float:
    """0-1: is it growing season (temperature-wise) on season day ``sd``?"""
    length = growing_season_length(lat)
    if length >= 360:
        return 1.0
    t = _cyc(sd - MIDSUMMER)
    return _sigmoid((t + length / 2) / 10.0) * _sigmoid((length / 2 - t) / 14.0)


def wetness(sd: float, lat: float) -> float:
    """0-1: is it the wet season? Tropics: summer rains; mediterranean belt: winter rains."""
    a = abs(lat)
    summer_rain = 0.5 + 0.5 * math.cos(2 * math.pi * _cyc(sd - 205) / 365.0)
    winter_rain = 0.5 + 0.5 * math.cos(2 * math.pi * _cyc(sd - 50) / 365.0)
    w_tropic = float(np.interp(a, [0, 5, 22, 27], [0.0, 1.0, 1.0, 0.0]))
    w_med = float(np.interp(a, [27, 32, 40, 45], [0.0, 1.0, 1.0, 0.0]))
    always = 1.0 - w_tropic - w_med
    equatorial = float(np.interp(a, [0, 5], [1.0, 0.0]))
    wet = w_tropic * summer_rain + w_med * winter_rain + always * 0.85
    return min(1.0, wet + 0.6 * equatorial * (1 - wet))


@dataclass(frozen=True)
class Season:
    """Scalar vigour of the non-crop vegetation on one date at one tile latitude."""

    deciduous: float  # leaf-on fraction of deciduous forest
    grass: float  # green fraction of grassland
    snow: float  # seasonal snow cover fraction of land
    sd: float  # season day


def season(lat: float, doy: int, snow_anomaly: float = 0.0) -> Season:
    sd = float(doy if lat >= 0 else (doy + 182) % 365)
    warm = warmth(sd, lat)
    wet = wetness(sd, lat)
    a = abs(lat)
    if a < 23:
        dec = 0.35 + 0.65 * wet
    else:
        dec = warm
    grass = (0.18 + 0.82 * wet) * (0.2 + 0.8 * warm)
    return Season(deciduous=dec, grass=grass, snow=snow_fraction(lat, doy, snow_anomaly), sd=sd)


def snow_fraction(lat: float, doy: int, anomaly: float = 0.0) -> float:
    """Seasonal snow cover of land: 0 in summer, rising with latitude and with winter (peak mid-Feb)."""
    a = abs(lat)
    if a < 36.0:
        return 0.0
    sd = doy if lat >= 0 else (doy + 182) % 365
    winter = 0.5 + 0.5 * math.cos(2 * math.pi * _cyc(sd - 45) / 365.0)
    # snow-line latitude ~56 deg at the peak of winter (later and rarer towards 45 deg), so maritime
    # mid-latitudes (no continentality in this model) see little snow and none by spring
    w0 = 0.35 + max(0.0, 62.0 - a) * 0.05 + 0.1 * anomaly
    if a > 60.0:
        w0 -= min(a - 60.0, 15.0) * 0.012  # the far north keeps snow longer
    return float(min(max((winter - w0) / 0.3, 0.0), 1.0))


# ----------------------------------------------------------------------------- crops
SUMMER_CROP, WINTER_CROP = 0, 1


def crop_state(sd: float, lat: float, kind: np.ndarray, shift: np.ndarray, vmax: np.ndarray):
    """Per parcel: green vigour (0-1) and whether the non-green part is straw (True) or soil.

    Summer crops (maize, soy) peak a few weeks after midsummer; winter cereals green up in spring,
    peak in late spring and are harvested early summer, then stubble, then ploughed soil. At high
    latitudes seasons shorten; in the tropics crops follow the rains.
    """
    a = abs(lat)
    length = min(growing_season_length(lat), 150.0)
    if a < 23:
        peak = np.where(kind == SUMMER_CROP, 215.0, 260.0) + shift  # rain-fed, first/second crop
    else:
        winter_peak = MIDSUMMER - 55.0 + 0.8 * max(a - 45, 0)  # later towards the north
        peak = np.where(kind == SUMMER_CROP, MIDSUMMER + 18.0, winter_peak) + shift
    t = (sd - peak + 182.5) % 365.0 - 182.5  # days after peak
    width = np.where(kind == SUMMER_CROP, length / 3.2, length / 2.6)
    harvest = np.where(kind == SUMMER_CROP, length * 0.42, length * 0.38)
    v = np.exp(-((t / width) ** 2))
    if a >= 23:  # winter cereals stay sparse-green over winter (until snow or spring growth)
        dormant = (kind == WINTER_CROP) & (t < 0) & (t > -170)
        v = np.where(dormant, np.maximum(v, 0.22), v)
    v = np.where(t > harvest, 0.0, v) * vmax
    straw = (t > 0) & (t < harvest + 25.0)
    return v.astype(np.float32), straw
