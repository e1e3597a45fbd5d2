"""``earthengine``: Sentinel-2 L1C/L2A from Google Earth Engine (harmonized collections).

``search`` is one ``value:compute`` request per season window (``system:index``, acquisition time,
scene cloud and spacecraft of every image over the patch); pixels come from ``computePixels`` on the
patch's own UTM grid, one request per resolution group for all the scenes of a location
(:meth:`EarthEngineSource.read_many`), with the per-patch cloud and valid masks in the same request.
DN are uint16 as delivered (the harmonized collections need no offset), 0 where there is no data.
Plumbing (credentials, the process-wide client, limits, error mapping) is in ``earthengine_client``;
the expressions and request packing in ``earthengine_images``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections import OrderedDict

import numpy as np

from ..bands import DN_SCALE
from ..errors import SourceUnavailable
from ..grid import PatchGrid
from .base import Masks, SceneRead, SceneRef, Source, as_date
from . import earthengine_client as client
from . import earthengine_images as images

log = logging.getLogger(__name__)

#: image properties returned by search, in this order
PROPERTIES = ("system:index", "system:time_start", "CLOUDY_PIXEL_PERCENTAGE", "SPACECRAFT_NAME")
MASK_CACHE = 256


class EarthEngineSource(Source):
    """Sentinel-2 from Earth Engine.

    ``credentials`` is the path of a service-account JSON key; without it, Application Default
    Credentials are used, or none at all when ``url`` points at another endpoint (test servers).
    ``project`` defaults to ``EE_PROJECT`` / ``GOOGLE_CLOUD_PROJECT``. ``cloud`` picks the per-patch
    cloud mask: ``s2cloudless`` (probability > 50), ``cloudscoreplus`` (cs < 0.6) or ``qa60``.
    Requests share a process-wide cap of ``max_concurrency`` and ``requests_per_second`` (the
    documented per-project quotas are 40 and 100).
    """

    name = "earthengine"
    synthetic = False
    io_bound = True
    license = "other"
    providers = (
        {"name": "ESA", "roles": ["producer", "licensor"], "url": "https://sentinel.esa.int/"},
        {"name": "Google Earth Engine", "roles": ["host"], "url": "https://earthengine.google.com/"},
    )
    scale = DN_SCALE
    nodata = 0

    def __init__(self, product: str = "L2A", *, project: str | None = None,
                 credentials: str | os.PathLike | None = None, url: str | None = None, high_volume: bool = False, max_concurrency: int = 40,
                 requests_per_second: float = 100.0, cloud: str = "s2cloudless", timeout: float = 120.0):
        super().__init__(product)
        if cloud not in images.CLOUD_METHODS:
            raise ValueError(f"earthengine: unknown cloud method {cloud!r}: "
                             f"use one of {', '.join(images.CLOUD_METHODS)}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"earthengine: max_concurrency must be a positive integer, got {max_concurrency!r}")
        for opt, v in (("requests_per_second", requests_per_second), ("timeout", timeout)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"earthengine: {opt} must be a positive number, got {v!r}")
        self.collection = images.COLLECTIONS[product]
        self.cloud = cloud
        self.high_volume = bool(high_volume)
        self.endpoint = (url.rstrip("/") if url else
                         client.HIGH_VOLUME_URL if self.high_volume else client.STANDARD_URL)
        self.endpoint_kind = "custom" if url else "high-volume" if self.high_volume else "standard"
        self.max_concurrency = max_concurrency
        self.requests_per_second = float(requests_per_second)
        self.timeout = float(timeout)
        self._ee = client.import_ee()
        self._auth = client.resolve_auth(project, credentials, url)  # local checks only, no request
        self.project = self._auth.project
        self._masks: OrderedDict[tuple, Masks] = OrderedDict()
        self._partial: dict = {}
        log.debug("earthengine source: %s, %s endpoint, project %s, cloud %s", self.collection,
                  self.endpoint_kind, self.project, self.cloud)

    # ------------------------------------------------------------------ plumbing
    def _call(self, what: str, key: tuple, fn):
        """One request, made after (re)initialising (retries are the collector's, and counted there)."""

        def run():
            client.initialise(self._auth, self.endpoint, self.timeout, self.max_concurrency, self.requests_per_second)
            return fn()

        return client.call(run, self.counters, what)

    # ------------------------------------------------------------------ searching
    def search(self, grid: PatchGrid, start: dt.date, end: dt.date) -> list[SceneRef]:
        ee = self._ee
        start, end = as_date(start, "start", "earthengine"), as_date(end, "end", "earthengine")
        if end < start:
            raise ValueError(f"earthengine: empty date window {start} .. {end}: end is before start")

        def found():  # expressions can be built only once ee is initialised (inside the call)
            footprint = ee.Geometry.Rectangle(list(grid.bounds), f"EPSG:{grid.epsg}", False)
            return (ee.ImageCollection(self.collection).filterBounds(footprint)
                    .filterDate(start.isoformat(), (end + dt.timedelta(days=1)).isoformat())  # end exclusive
                    .reduceColumns(ee.Reducer.toList(len(PROPERTIES)), list(PROPERTIES)))

        result = self._call("search", ("search", grid, start, end), lambda: ee.data.computeValue(found()))
        rows = result.get("list") if isinstance(result, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == len(PROPERTIES) for r in rows):
            self.counters["errors_garbled"] += 1
            raise SourceUnavailable(f"Earth Engine search: unexpected answer {str(result)[:80]!r}")
        scenes = []
        for index, millis, cloud, spacecraft in rows:
            scenes.append(SceneRef(
                scene_id=str(index),
                datetime=dt.datetime.fromtimestamp(millis / 1000, dt.timezone.utc),
                cloud_cover=100.0 if cloud is None else float(cloud),
                platform=str(spacecraft or "sentinel-2").lower().replace(" ", "-"),
                product=self.product,
                extra={"asset_id": f"{self.collection}/{index}", "system_index": str(index)},
            ))
        return scenes

    # ------------------------------------------------------------------ reading
    def read_masks(self, scene: SceneRef, grid: PatchGrid) -> Masks:
        """Cloud and valid masks at 10 m: one small request (two bands), cached for the read."""
        return self.read_masks_many([scene], grid)[0]

    def read_masks_many(self, scenes: list[SceneRef], grid: PatchGrid) -> list[Masks]:
        """Masks of several scenes of one patch, in one request for those not cached yet."""
        for s in scenes:
            self._check_scene(s)
        todo = [images.Layer(i, masks=True) for i, s in enumerate(scenes) if self._cached(s, grid) is None]
        if todo:
            self._fetch(scenes, grid, MASK_RES, todo)
        return [self._cached(s, grid) for s in scenes]

    def read(self, scene: SceneRef, grid: PatchGrid, bands: dict[int, tuple[str, ...]]) -> SceneRead:
        return self.read_many([scene], grid, bands)[0]

    def read_many(self, scenes: list[SceneRef], grid: PatchGrid, bands: dict[int, tuple[str, ...]]) -> list[SceneRead]:
        """Read several scenes of one patch (all seasons of a location): one computePixels request per
        resolution group, split only where the 48 MiB limit requires; masks ride with the 10 m group
        unless cached from :meth:`read_masks`."""
        bands = self.check_bands(bands)
        for s in scenes:
            self._check_scene(s)
        need = {i for i, s in enumerate(scenes) if self._cached(s, grid) is None}
        pixels: list[dict[int, np.ndarray]] = [{} for _ in scenes]
        ids = tuple(s.scene_id for s in scenes)
        if self._partial.get("batch") != (grid, ids):  # groups read before a failure are kept for the retry
            self._partial = {"batch": (grid, ids)}
        for res, names in bands.items():
            with_masks = res == MASK_RES
            got = self._partial.get((res, names))
            if got is None:
                layers = [images.Layer(i, names, with_masks and i in need) for i in range(len(scenes))]
                got = self._partial[(res, names)] = self._fetch(scenes, grid, res, [x for x in layers if x.names()])
            for i in range(len(scenes)):
                pixels[i][res] = (np.stack([got[f"s{i}_{b}"] for b in names]) if names
                                  else np.zeros((0, *grid.shape(res)), np.uint16))
            if with_masks:
                need = set()
        if need:
            self._fetch(scenes, grid, MASK_RES, [images.Layer(i, masks=True) for i in sorted(need)])
        self._partial = {}
        out = []
        for i, s in enumerate(scenes):
            masks = self._cached(s, grid)
            if MASK_RES in pixels[i]:
                pixels[i][MASK_RES][:, ~masks.valid] = self.nodata
            out.append(SceneRead(s, pixels[i], dict(bands), masks))
        return out

    def _fetch(self, scenes: list[SceneRef], grid: PatchGrid, res: int, layers: list[images.Layer]) -> dict:
        """computePixels for ``layers`` at ``res``: band name -> (H, W) uint16; masks go to the cache."""
        ee = self._ee
        shape = grid.shape(res)
        got: dict[str, np.ndarray] = {}
        for chunk in images.plan(layers, shape):
            names = [n for layer in chunk for n in layer.names()]

            def pixels(chunk=chunk, names=names):
                params = {
                    "expression": images.expression(ee, chunk, scenes, self.collection, self.cloud),
                    "fileFormat": "NPY",  # what NUMPY_NDARRAY sends; decoded here to tell garbled answers from bugs
                    "grid": images.grid_spec(grid, res),
                    "bandIds": names,
                }
                return images.decode(ee.data.computePixels(params), names, shape)

            key = ("pixels", grid, res, tuple(names), tuple(scenes[layer.index].scene_id for layer in chunk))
            data = self._call("pixels", key, pixels)
            got.update(data)
            for layer in chunk:
                if layer.masks:
                    i = layer.index
                    cloud, valid = data[f"s{i}_cloud"] != 0, data[f"s{i}_valid"] != 0
                    self._remember(scenes[i], grid, Masks(cloud, np.zeros_like(cloud), valid))
        return got

    # ------------------------------------------------------------------ mask cache
    def _cached(self, scene: SceneRef, grid: PatchGrid) -> Masks | None:
        m = self._masks.get((scene.scene_id, grid))
        if m is None:
            return None
        self._masks.move_to_end((scene.scene_id, grid))
        return Masks(m.cloud.copy(), m.shadow.copy(), m.valid.copy())

    def _remember(self, scene: SceneRef, grid: PatchGrid, masks: Masks) -> None:
        self._masks[(scene.scene_id, grid)] = masks
        while len(self._masks) > MASK_CACHE:
            self._masks.popitem(last=False)

    # ------------------------------------------------------------------ checks
    def _check_scene(self, scene: SceneRef) -> None:
        if scene.product != self.product:
            raise ValueError(f"earthengine: scene {scene.scene_id} is {scene.product} but this source reads "
                             f"{self.product}: build EarthEngineSource(product={scene.product!r})")

    def check(self) -> dict:
        """Initialise and list one image of the collection (one tiny request)."""
        ee = self._ee
        self._call("check", ("check",), lambda: ee.data.computeValue(
            ee.ImageCollection(self.collection).limit(1).aggregate_array("system:index")))
        return {"project": self.project, "endpoint": self.endpoint, "collection": self.collection,
                "max_concurrency": self.max_concurrency}

    def describe(self) -> dict:
        return {**super().describe(), "collection": self.collection, "cloud": self.cloud,
                "endpoint": self.endpoint_kind, "project": self.project}


MASK_RES = images.MASK_RESOLUTION

