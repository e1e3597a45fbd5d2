"""A scripted source for tests: scenes and masks chosen by the test, pixels from the grid position."""

from __future__ import annotations

import datetime as dt

import numpy as np

from seco_data.errors import SourceUnavailable
from seco_data.sources.base import Masks, SceneRead, SceneRef, Source


class ScriptedSource(Source):
    """Every 5 days one scene. ``script(day_index) -> (scene_cloud %, patch cloud fraction, valid fraction)``.

    Masks are exact: the first ``round(f * H * W)`` pixels (row-major) are cloudy / invalid.
    Pixels are a deterministic function of (grid, date, band) so round trips can be checked.
    """

    name = "scripted"
    synthetic = True
    io_bound = True
    providers = ({"name": "test", "roles": ["producer"]},)

    def __init__(self, product="L2A", script=None, fail_first=0, start=dt.date(2015, 7, 1)):
        super().__init__(product)
        self.script = script or (lambda k: (0.0, 0.0, 1.0))
        self.start = start
        self.fail_first = fail_first
        self.calls = {"search": 0, "read_masks": 0, "read": 0}

    def search(self, grid, start, end):
        self.calls["search"] += 1
        if self.fail_first > 0:
            self.fail_first -= 1
            raise SourceUnavailable("simulated 503")
        out = []
        d0 = (start - self.start).days // 5
        for k in range(max(d0, 0), (end - self.start).days // 5 + 1):
            day = self.start + dt.timedelta(days=5 * k)
            if start <= day <= end:
                cc, _, _ = self.script(k)
                t = dt.datetime.combine(day, dt.time(10, 30), tzinfo=dt.timezone.utc)
                out.append(SceneRef(f"SCRIPT_{day:%Y%m%d}_{k}", t, cc, product=self.product, extra={"k": k}))
        return out

    def _masks(self, scene, shape):
        _, cloud, valid = self.script(scene.extra["k"])
        n = shape[0] * shape[1]
        c = np.zeros(n, bool)
        v = np.ones(n, bool)
        v[: round((1 - valid) * n)] = False
        nv = int(v.sum())
        c[n - nv : n - nv + round(cloud * nv)] = True
        return Masks(c.reshape(shape), np.zeros(shape, bool), v.reshape(shape))

    def read_masks(self, scene, grid):
        self.calls["read_masks"] += 1
        return self._masks(scene, grid.shape(10))

    def read(self, scene, grid, bands):
        self.calls["read"] += 1
        pixels = {}
        for res, names in bands.items():
            h, w = grid.shape(res)
            base = (grid.x0 // 10 + grid.y0 // 10 + scene.extra["k"]) % 5000
            arr = np.empty((len(names), h, w), np.uint16)
            for i, b in enumerate(names):
                arr[i] = (base + 100 * i + np.arange(h * w).reshape(h, w) % 997 + 1).astype(np.uint16)
            pixels[res] = arr
        return SceneRead(scene, pixels, dict(bands), self._masks(scene, grid.shape(10)))
