"""Season schedule: one acquisition window per anchor date, shifted per location by a seeded amount.

As in SeCo and SSL4EO-S12, every location gets one random shift (whole days in [0, shift_days))
subtracted from all its anchors, so its seasons keep their spacing while the dataset covers every
time of year. The shift is a pure function of (seed, location id): any worker, any order, same dates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from ..recipe import Seasons

_STREAM = 0x5EA5


@dataclass(frozen=True)
class Window:
    season: int
    start: dt.datetime  # inclusive, UTC
    end: dt.datetime  # exclusive, UTC

    @property
    def centre(self) -> dt.datetime:
        return self.start + (self.end - self.start) / 2

    def contains(self, t: dt.datetime) -> bool:
        return self.start <= t < self.end


def location_shift(seed: int, location_id: int, shift_days: int) -> int:
    """The seeded shift in whole days for one location."""
    if shift_days <= 0:
        return 0
    rng = np.random.default_rng([seed, _STREAM, location_id])
    return int(rng.integers(0, shift_days))


def windows(spec: Seasons, seed: int, location_id: int) -> list[Window]:
    """The location's windows, in anchor order: centred on anchor - shift at 12:00 UTC."""
    shift = location_shift(seed, location_id, spec.shift_days)
    half = dt.timedelta(days=spec.window_days / 2)
    out = []
    for i, anchor in enumerate(spec.anchors):
        centre = dt.datetime.combine(anchor, dt.time(12), tzinfo=dt.timezone.utc) - dt.timedelta(days=shift)
        out.append(Window(i, centre - half, centre + half))
    return out
