"""``sim``: the embedded, offline, deterministic Sentinel-2 simulator (the default source)."""

from __future__ import annotations

import datetime as dt
import logging
from functools import lru_cache

import numpy as np

from ...grid import PatchGrid
from ..base import Masks, SceneRead, SceneRef, Source, as_date
from . import acquisitions as acq_mod
from .clouds import SkyMasks, sky, sky_masks
from .landcover import CLASS_NAMES, landcover, landscape
from .scenes import render
from .tiles import tile_of

log = logging.getLogger(__name__)



@lru_cache(maxsize=16)
def _masks(seed: int, scene_id: str, dtime: dt.datetime, cloud_cover: float, grid: PatchGrid) -> SkyMasks:
    """Masks and cloud optics of a scene on a grid; cached so that reading the chosen candidate
    does not redo what probing it did. The arrays are shared: hand out copies."""
    tile = tile_of(grid)
    day = acq_mod.day_of(tile, dtime)
    doy = (acq_mod.EPOCH + dt.timedelta(days=day)).timetuple().tm_yday
    m = sky_masks(sky(seed, tile, day, doy, cloud_cover), grid, optics=True)
    for a in (m.cloud, m.shadow, m.valid, m.alpha, m.bright, m.shade):
        a.setflags(write=False)
    return m


class SimSource(Source):
    """Simulated Sentinel-2 L1C/L2A scenes for any place and date, computed on the fly.

    Pixels are a pure function of (seed, absolute position, date, band): two instances, two runs
    or two overlapping grids agree. ``seed`` picks another synthetic world.
    """

    name = "sim"
    synthetic = True
    io_bound = False
    providers = (
        {
            "name": "seco simulator",
            "roles": ["producer", "processor"],
            "description": "Synthetic Sentinel-2-like scenes generated offline by seco's built-in "
                           "simulator (seco_data.sources.sim); not real observations.",
        },
    )
    scale = 1e-4
    nodata = 0
    #: synthetic pixels, not Copernicus data
    license = "CC0-1.0"

    def __init__(self, product: str = "L2A", *, seed: int = 0):
        super().__init__(product)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"sim: seed must be an integer, got {seed!r}")
        self.seed = int(seed)
        log.debug("sim source: product %s, world seed %d", self.product, self.seed)

    # ------------------------------------------------------------------ searching
    def search(self, grid: PatchGrid, start: dt.date, end: dt.date) -> list[SceneRef]:
        start, end = as_date(start, "start", "sim"), as_date(end, "end", "sim")
        if end < start:
            raise ValueError(f"sim: empty date window {start} .. {end}: end is before start")
        tile = tile_of(grid)
        out = []
        for a in acq_mod.acquisitions(self.seed, tile, start, end):
            swath = sky(self.seed, tile, a.day, a.doy, a.cloud_cover).swath is not None
            out.append(SceneRef(
                scene_id=a.scene_id(self.product),
                datetime=a.datetime,
                cloud_cover=a.cloud_cover,
                platform=a.platform,
                product=self.product,
                extra={"tile": tile.code, "epsg": tile.epsg, "relative_orbit": a.orbit, "day": a.day,
                       "swath_edge": swath},
            ))
        return out

    # ------------------------------------------------------------------ reading
    def _check_scene(self, scene: SceneRef, grid: PatchGrid) -> None:
        if scene.product != self.product:
            raise ValueError(f"sim: scene {scene.scene_id} is {scene.product} but this source reads "
                             f"{self.product}: build SimSource(product={scene.product!r})")
        code = tile_of(grid).code
        if not scene.scene_id.endswith(f"_T{code}"):
            raise ValueError(f"sim: scene {scene.scene_id} does not cover this grid (tile {code}): "
                             "read scenes returned by search() for the same grid")

    def read_masks(self, scene: SceneRef, grid: PatchGrid) -> Masks:
        self._check_scene(scene, grid)
        m = _masks(self.seed, scene.scene_id, scene.datetime, scene.cloud_cover, grid)
        return Masks(m.cloud.copy(), m.shadow.copy(), m.valid.copy())

    def read(self, scene: SceneRef, grid: PatchGrid, bands: dict[int, tuple[str, ...]]) -> SceneRead:
        """uint16 DN (scale 1e-4, 0 = no data) of ``bands`` grouped by resolution (10, 20 or 60 m;
        a band asked at another resolution than its native one is simply averaged to it)."""
        self._check_scene(scene, grid)
        bands = self.check_bands(bands)
        m = _masks(self.seed, scene.scene_id, scene.datetime, scene.cloud_cover, grid)
        tile = tile_of(grid)
        acq = acq_mod.acquisition(self.seed, tile, acq_mod.day_of(tile, scene.datetime))
        pixels = render(self.seed, landscape(grid, self.seed), acq, m, self.product, scene.scene_id, bands)
        return SceneRead(scene, pixels, bands, Masks(m.cloud.copy(), m.shadow.copy(), m.valid.copy()))

    # ------------------------------------------------------------------ helpers
    def landcover(self, grid: PatchGrid) -> np.ndarray:
        """(H, W) uint8 land-cover classes at 10 m, indices into :attr:`class_names`."""
        return landcover(grid, self.seed)

    class_names = CLASS_NAMES

    def describe(self) -> dict:
        return {**super().describe(), "seed": self.seed}

