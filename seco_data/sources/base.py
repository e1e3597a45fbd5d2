"""The source interface: find candidate scenes in a time window, read one scene on a patch grid.

A source is a small class (pystac ``StacIO`` style): clients are built in ``__init__``, never at
import, and everything the collector needs goes through three methods.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..bands import DN_SCALE
from ..grid import PatchGrid


@dataclass(frozen=True)
class SceneRef:
    """One acquisition that may cover a patch."""

    scene_id: str
    datetime: dt.datetime  # acquisition time, UTC, timezone-aware
    cloud_cover: float  # scene-level cloud percentage, 0-100
    platform: str = "sentinel-2a"
    product: str = "L2A"
    #: source-specific details (tile, orbit, asset hrefs ...); not used for equality
    extra: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Masks:
    """Per-pixel quality masks of a scene on a patch grid (any one resolution, usually 10 m).

    ``cloud`` marks cloud and cirrus, ``shadow`` cloud shadow (all False when the source has no
    shadow information), ``valid`` pixels that hold data (not no-data / outside the swath).
    """

    cloud: np.ndarray
    shadow: np.ndarray
    valid: np.ndarray

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean())

    @property
    def cloud_fraction(self) -> float:
        """Fraction of the valid pixels that are cloud or cloud shadow (1.0 when none is valid)."""
        n = int(self.valid.sum())
        if n == 0:
            return 1.0
        return float(((self.cloud | self.shadow) & self.valid).sum() / n)


@dataclass
class SceneRead:
    """Pixels of one scene on a patch grid: uint16 DN arrays ``(bands, H, W)`` per resolution."""

    scene: SceneRef
    pixels: dict[int, np.ndarray]
    bands: dict[int, tuple[str, ...]]
    masks: Masks


class Source(abc.ABC):
    """Base class of every imagery source."""

    #: registry name (``--source``)
    name: str = ""
    #: pixels are simulated: items are marked synthetic in the catalog
    synthetic: bool = False
    #: True when the work is waiting on a network (threads), False when CPU-bound (processes)
    io_bound: bool = True
    #: STAC provider entries describing where the data comes from
    providers: tuple[dict, ...] = ()
    #: DN scale to reflectance
    scale: float = DN_SCALE
    #: DN written where no data exists
    nodata: int = 0
    #: SPDX id of the data licence, or "other" (Copernicus Sentinel data terms, linked in the catalog)
    license: str = "other"

    def __init__(self, product: str = "L2A"):
        if product not in ("L1C", "L2A"):
            raise ValueError(f"unknown product {product!r}: use L1C or L2A")
        self.product = product
        #: usage counters (requests, retries, processing_units, bytes ...): the collector sums the
        #: increase over each location into the run's report and the catalog's stats
        self.counters: Counter = Counter()

    def check(self) -> dict:
        """Verify credentials and reachability cheaply (no pixels) for ``seco-data sources check``.

        Returns facts worth showing (endpoint, project, quota ...), never a secret. Raises
        :class:`CredentialsError`, :class:`SourceUnavailable` or :class:`SourceError`.
        """
        return {}

    @abc.abstractmethod
    def search(self, grid: PatchGrid, start: dt.date, end: dt.date) -> list[SceneRef]:
        """Scenes that cover ``grid`` acquired in [start, end] (inclusive dates), any order."""

    @abc.abstractmethod
    def read(self, scene: SceneRef, grid: PatchGrid, bands: dict[int, tuple[str, ...]]) -> SceneRead:
        """Read ``bands`` (grouped by native resolution) of ``scene`` on ``grid``, with masks."""

    def check_bands(self, bands: dict[int, tuple[str, ...]]) -> dict[int, tuple[str, ...]]:
        """Validate a read request (bands grouped by 10/20/60 m, all of this product); drop empty groups."""
        from ..bands import PRODUCT_BANDS

        allowed = PRODUCT_BANDS[self.product]
        out = {}
        for res, names in bands.items():
            if int(res) not in (10, 20, 60):
                raise ValueError(f"{self.name}: resolution {res} m is not one of 10, 20, 60")
            for b in names:
                if b not in allowed:
                    raise ValueError(f"{self.name}: band {b!r} is not a Sentinel-2 {self.product} band: "
                                     f"use one of {', '.join(allowed)}")
            if names:
                out[int(res)] = tuple(names)
        return out

    def read_many(self, scenes: list[SceneRef], grid: PatchGrid, bands: dict[int, tuple[str, ...]]) -> list[SceneRead]:
        """Read several scenes of one location (all its seasons). Sources that can batch them into
        fewer requests (Earth Engine: one request per resolution group) override this."""
        return [self.read(s, grid, bands) for s in scenes]

    def read_masks(self, scene: SceneRef, grid: PatchGrid) -> Masks:
        """Only the quality masks. Sources where masks are cheaper than pixels override this."""
        return self.read(scene, grid, {}).masks

    def describe(self) -> dict:
        """JSON-able description recorded in the catalog (never any secret)."""
        return {"name": self.name, "product": self.product, "synthetic": self.synthetic}

    def close(self) -> None:  # pragma: no cover - nothing to release by default
        pass


def as_date(d, what: str, source: str) -> dt.date:
    """``d`` as a date (a datetime gives its date); a TypeError naming ``source`` and ``what`` otherwise."""
    if isinstance(d, dt.datetime):
        return d.date()
    if isinstance(d, dt.date):
        return d
    raise TypeError(f"{source}: {what} must be a datetime.date, got {type(d).__name__}")
