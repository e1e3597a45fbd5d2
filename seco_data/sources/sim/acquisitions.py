"""When the simulated constellation sees a place: relative orbit, 5-day revisit, time, scene id.

Sentinel-2A and 2B share 143 relative orbits in a 10-day cycle, 180 degrees apart, so a place is
seen every 5 days, alternately by each unit (every 10 days before 2B's operations began in 2017), at about 10:30 local solar time on the descending
pass. The simulated record starts on 2015-06-27. The orbit (hence the day phase) is derived from
the tile's longitude, corrected for the slant of the ground track.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from . import climate
from .noise import unit
from .tiles import Tile

EPOCH = dt.date(2015, 6, 27)
#: Sentinel-2B's first operational acquisitions: before, only 2A flies (a 10-day revisit)
S2B_START = dt.date(2017, 7, 1)
_EPOCH_DT = dt.datetime(EPOCH.year, EPOCH.month, EPOCH.day, tzinfo=dt.timezone.utc)
REVISIT_DAYS = 5
N_ORBITS = 143
_TRACK_DEG = 360.0 / N_ORBITS  # spacing of neighbouring ground tracks at the equator
_ORBIT1_LON = -33.5  # equator crossing of relative orbit 1 (arbitrary but fixed)
_SLANT = 0.22  # degrees of longitude per degree of latitude along the descending track
_INV10 = 43  # 10 * 43 = 1 (mod 143): consecutive orbits are 10 tracks apart


@dataclass(frozen=True)
class Acquisition:
    """One tile seen on one day."""

    tile: Tile
    day: int  # days since EPOCH
    orbit: int  # relative orbit 1-143
    platform: str
    datetime: dt.datetime
    cloud_cover: float

    @property
    def doy(self) -> int:
        return (EPOCH + dt.timedelta(days=self.day)).timetuple().tm_yday

    def scene_id(self, product: str) -> str:
        unit_code = "S2A" if self.platform == "sentinel-2a" else "S2B"
        return (f"{unit_code}_MSI{product}_{self.datetime:%Y%m%dT%H%M%S}_R{self.orbit:03d}"
                f"_T{self.tile.code}")


def relative_orbit(lon: float, lat: float) -> int:
    """Relative orbit whose ground track passes nearest to (lon, lat)."""
    lon_eq = lon - _SLANT * lat
    q = int(round((_ORBIT1_LON - lon_eq) / _TRACK_DEG)) % N_ORBITS
    return (_INV10 * q) % N_ORBITS + 1


def cycle_day(orbit: int) -> int:
    """Day (0-9) of the 10-day cycle on which Sentinel-2A flies ``orbit``."""
    return ((orbit - 1) * 10) // N_ORBITS


def utc_hours(tile: Tile, orbit: int) -> float:
    """Sensing time (hours after midnight UTC of the acquisition day, may leave [0, 24))."""
    jitter = (unit("time-jitter", orbit) - 0.5) * 0.05
    return 10.5 - tile.lon / 15.0 - tile.lat * 0.0044 + jitter


def acquisition(seed: int, tile: Tile, day: int) -> Acquisition:
    orbit = relative_orbit(tile.lon, tile.lat)
    a_day = cycle_day(orbit)
    platform = "sentinel-2a" if (day - a_day) % 10 == 0 else "sentinel-2b"
    when = _EPOCH_DT + dt.timedelta(days=day, hours=utc_hours(tile, orbit))
    when = when.replace(microsecond=0)
    doy = (EPOCH + dt.timedelta(days=day)).timetuple().tm_yday
    cc = climate.scene_cloud_cover(seed, tile.ints, day, tile.lon, tile.lat, doy)
    return Acquisition(tile, day, orbit, platform, when, cc)


def acquisitions(seed: int, tile: Tile, start: dt.date, end: dt.date) -> list[Acquisition]:
    """Every acquisition of ``tile`` whose UTC date is in [start, end]."""
    phase = cycle_day(relative_orbit(tile.lon, tile.lat)) % REVISIT_DAYS
    first = max((start - EPOCH).days - 2, 0)
    last = (end - EPOCH).days + 2
    first += (phase - first) % REVISIT_DAYS
    out = []
    for day in range(first, last + 1, REVISIT_DAYS):
        acq = acquisition(seed, tile, day)
        d = acq.datetime.date()
        if start <= d <= end and d >= EPOCH and (acq.platform == "sentinel-2a" or d >= S2B_START):
            out.append(acq)
    return out


def day_of(tile: Tile, when: dt.datetime) -> int:
    """The acquisition day (since EPOCH) of a sensing time over ``tile``."""
    orbit = relative_orbit(tile.lon, tile.lat)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    hours = (when - _EPOCH_DT).total_seconds() / 3600.0 - utc_hours(tile, orbit)
    return int(round(hours / 24.0))
