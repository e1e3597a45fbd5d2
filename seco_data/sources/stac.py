"""``stac``: Sentinel-2 scenes from any STAC API or static STAC catalog, read as Cloud-Optimized GeoTIFFs.

Where: ``url`` is a STAC API root (Earth Search, Planetary Computer, ...: searched with pystac-client)
or a static catalog (a local ``catalog.json`` or an http(s) URL to one: walked once with pystac and
indexed by bbox and time). What: the bands of each item are found by asset key (Earth Search v1
names, ``B02``-style keys) or by the assets' ``eo:bands`` / ``bands`` entries; ``assets`` overrides.
How: only the patch window is fetched (HTTP range requests through GDAL), resampled onto the patch
grid only when the asset is on another grid. Per-patch clouds come from the item's SCL asset (or the
``cloud_asset`` option); without one a scene counts as cloud-free.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from ..bands import BANDS, PRODUCT_BANDS
from ..errors import SourceError, SourceUnavailable
from ..catalog.layout import CATALOG
from ..grid import PatchGrid
from .http import retry_after
from .base import Masks, SceneRead, SceneRef, Source
from .stac_catalog import (
    CATALOG_HINT, INSTALL_HINT, band_asset, cloud_asset, cloud_spec, default_collection, fetch_json,
    stac_error, is_url, item_time, PlanetaryComputerSigner, static_index,
)
from .stac_read import read_on_grid

log = logging.getLogger(__name__)

#: SCL classes: 3 cloud shadow, 8 / 9 cloud medium / high probability, 10 thin cirrus, 0 no data
SCL_SHADOW, SCL_CLOUD, SCL_NODATA = (3,), (8, 9, 10), 0
#: bands tried, in order, to find valid pixels when an item has no SCL asset
VALID_BANDS = ("B02", "B03", "B04", "B08")


class StacSource(Source):
    """Sentinel-2 L1C/L2A from a STAC API or a static STAC catalog (see the module docstring).

    Options: ``url`` (required), ``collection`` (default per product for Earth Search and Planetary
    Computer, else every collection), ``assets`` ({band: asset key}), ``cloud_asset`` (asset key, or
    ``{"key", "kind": scl|probability|mask, "threshold"}``), ``signing`` (``"planetarycomputer"`` or
    ``{"type": "planetarycomputer", "token_url": ".../{collection}"}``), ``query`` (passed to the API
    search, e.g. ``{"eo:cloud_cover": {"lt": 50}}``), ``timeout`` (seconds per HTTP request).
    """

    name = "stac"
    synthetic = False
    io_bound = True
    license = "other"
    providers = (
        {"name": "European Space Agency / Copernicus", "roles": ["producer", "licensor"],
         "url": "https://sentinels.copernicus.eu/web/sentinel/missions/sentinel-2"},
    )

    def __init__(self, product: str = "L2A", *, url, collection=None, assets=None, cloud_asset=None,
                 signing=None, query=None, timeout: float = 60.0):
        super().__init__(product)
        if not isinstance(url, (str, os.PathLike)) or not str(url):
            raise TypeError(f"stac: url must be a STAC API / catalog URL or a catalog path, got {url!r}")
        if collection is not None and not isinstance(collection, str):
            raise TypeError(f"stac: collection must be a collection id, got {collection!r}")
        if assets is not None and not (isinstance(assets, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in assets.items())):
            raise TypeError(f"stac: assets must map band names to asset keys, got {assets!r}")
        if query is not None and not isinstance(query, dict):
            raise TypeError(f"stac: query must be a mapping (STAC query extension), got {query!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise TypeError(f"stac: timeout must be a positive number of seconds, got {timeout!r}")
        self.url = str(url)
        self.timeout = float(timeout)
        self.query = dict(query) if query else None
        self.assets = {_band(b): k for b, k in (assets or {}).items()}
        self.cloud = cloud_spec(cloud_asset)
        self.remote = is_url(self.url)
        if not self.remote:
            path = Path(self.url[7:] if self.url.startswith("file://") else self.url).expanduser()
            path = path / CATALOG if path.is_dir() else path
            if not path.is_file():
                raise SourceError(f"no STAC catalog at {path}", hint=CATALOG_HINT)
            self.url = str(path.resolve())
        self.collection = collection if collection is not None else (
            default_collection(self.url, product) if self.remote else None)
        self.signer = self._signer(signing)
        self._kind: str | None = None if self.remote else "static"
        self._client = None
        self._retry_after: float | None = None
        self._masks: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def _signer(self, signing) -> PlanetaryComputerSigner | None:
        if signing is None:
            return None
        if signing == "planetarycomputer":
            signing = {"type": "planetarycomputer"}
        if not isinstance(signing, dict) or signing.get("type") != "planetarycomputer" or set(signing) - {"type", "token_url"}:
            raise TypeError("stac: signing must be 'planetarycomputer' or {'type': 'planetarycomputer', "
                            f"'token_url': ...}}, got {signing!r}")
        return PlanetaryComputerSigner(self.url, signing.get("token_url"), self.timeout, self.counters)

    # ------------------------------------------------------------------ catalogs
    @property
    def kind(self) -> str:
        """``api`` or ``static`` (an http(s) URL is looked at once to tell)."""
        if self._kind is None:
            root = fetch_json(self.url, self.timeout, self.counters, "opening the STAC root")
            if not isinstance(root, dict) or "links" not in root:
                raise SourceError(f"{self.url} is not a STAC catalog or API root", hint=CATALOG_HINT)
            conforms = " ".join(root.get("conformsTo") or [])
            search = any(link.get("rel") == "search" for link in root.get("links", []))
            self._kind = "api" if ("item-search" in conforms or search) else "static"
        return self._kind

    def _api(self):
        if self._client is None:
            try:
                from pystac_client import Client
                from pystac_client.stac_api_io import StacApiIO
                from urllib3 import Retry
            except ImportError:
                raise SourceError("the stac source needs pystac-client to search STAC APIs",
                                  hint=INSTALL_HINT) from None
            # no retries here (redirects are followed): failures go to the collector's policy, the one retry layer
            io = StacApiIO(timeout=self.timeout, max_retries=Retry(total=None, connect=0, read=0, status=0,
                                                                   other=0, redirect=5))
            io.session.hooks["response"].append(self._on_response)
            self._client = self._api_call(lambda: Client.open(self.url, stac_io=io, timeout=self.timeout),
                                          "opening the STAC API")
        return self._client

    def _on_response(self, resp, *args, **kwargs):
        self.counters["requests"] += 1
        self.counters["bytes"] += len(resp.content or b"")
        self._retry_after = retry_after(resp.headers.get("Retry-After"))

    def _api_call(self, fn, what: str):
        from pystac_client.exceptions import APIError

        self._retry_after = None
        try:
            return fn()
        except SourceError:
            raise
        except APIError as e:
            code = getattr(e, "status_code", None)
            raise stac_error(code, f"{what} {self.url}", self._retry_after if code else None, str(e)) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SourceUnavailable(f"{what} {self.url}: malformed JSON ({e})") from None
        except OSError as e:
            raise SourceUnavailable(f"{what} {self.url} failed: {e}") from None

    # ------------------------------------------------------------------ searching
    def search(self, grid: PatchGrid, start: dt.date, end: dt.date) -> list[SceneRef]:
        t0 = dt.datetime.combine(_date(start), dt.time(0), tzinfo=dt.timezone.utc)
        t1 = dt.datetime.combine(_date(end), dt.time(23, 59, 59), tzinfo=dt.timezone.utc)
        if t1 < t0:
            raise ValueError(f"stac: empty date window {start} .. {end}: end is before start")
        ring = [list(p) for p in grid.footprint_lonlat(densify=4)]
        geometry = {"type": "Polygon", "coordinates": [ring]}
        bbox = grid.bbox_lonlat()
        if self.kind == "static":
            items = static_index(self.url, self.timeout, self.counters).query(geometry, bbox, t0, t1, self.collection)
        else:
            client = self._api()
            window = f"{t0:%Y-%m-%dT%H:%M:%SZ}/{t1:%Y-%m-%dT%H:%M:%SZ}"
            kw = {"collections": [self.collection] if self.collection else None, "intersects": geometry,
                  "datetime": window, "limit": 100}
            if self.query:
                kw["query"] = self.query
            items = self._api_call(lambda: list(client.search(**kw).items_as_dicts()), "searching")
        return [self._scene(i) for i in items]

    def _scene(self, item: dict) -> SceneRef:
        props = item.get("properties") or {}
        cc = props.get("eo:cloud_cover")
        platform = props.get("platform") or _platform(item.get("id", ""))
        return SceneRef(scene_id=item["id"], datetime=item_time(item), cloud_cover=float(cc or 0.0),
                        platform=str(platform).lower(), product=self.product, extra={"item": item})

    # ------------------------------------------------------------------ reading
    def _href(self, item: dict, href: str) -> str:
        return self.signer.sign(href, item.get("collection") or self.collection) if self.signer else href

    def _read(self, item: dict, ref, grid: PatchGrid, res: int, nearest: bool):
        return read_on_grid(self._href(item, ref.href), ref.bidx, grid, res, nearest=nearest,
                            timeout=self.timeout, counters=self.counters)

    def read_masks(self, scene: SceneRef, grid: PatchGrid) -> Masks:
        key = (scene.scene_id, grid)
        with self._lock:
            if key in self._masks:
                self._masks.move_to_end(key)
                m = self._masks[key]
                return Masks(m.cloud.copy(), m.shadow.copy(), m.valid.copy())
        item = _item(scene)
        shape = grid.shape(10)
        found = cloud_asset(item, self.cloud)
        cloud = np.zeros(shape, bool)
        shadow = np.zeros(shape, bool)
        valid = None
        if found is not None:
            ref, spec = found
            arr, nodata = self._read(item, ref, grid, 10, nearest=True)
            if spec.kind == "scl":
                valid = (arr != SCL_NODATA) & (arr != nodata)
                cloud = np.isin(arr, SCL_CLOUD)
                shadow = np.isin(arr, SCL_SHADOW)
            elif spec.kind == "mask":
                cloud = (arr != 0) & (arr != nodata)
            else:
                cloud = (arr >= spec.threshold) & (arr != nodata)
        if valid is None:  # no SCL: valid where a 10 m band holds data
            ref = self._first_band(item)
            arr, nodata = self._read(item, ref, grid, 10, nearest=True)
            valid = (arr != nodata) & (arr != 0)
        masks = Masks(cloud & valid, shadow & valid, valid)
        with self._lock:
            self._masks[key] = masks
            while len(self._masks) > 8:
                self._masks.popitem(last=False)
        return Masks(cloud.copy() & valid, shadow.copy() & valid, valid.copy())

    def _first_band(self, item: dict):
        for b in VALID_BANDS + tuple(BANDS):
            try:
                return band_asset(item, b, self.assets)
            except SourceError:
                continue
        raise SourceError(f"item {item.get('id')} has no Sentinel-2 band asset",
                          hint="map bands to asset keys with the assets option")

    def read(self, scene: SceneRef, grid: PatchGrid, bands: dict[int, tuple[str, ...]]) -> SceneRead:
        """uint16 DN of ``bands`` grouped by resolution, 0 where the masks say no data."""
        item = _item(scene)
        masks = self.read_masks(scene, grid)
        pixels, groups = {}, {}
        for res, names in bands.items():
            res, names = int(res), tuple(_band(b) for b in names)
            for b in names:
                if b not in PRODUCT_BANDS[self.product]:
                    raise ValueError(f"stac: band {b} does not exist in {self.product} products")
            h, w = grid.shape(res)
            arr = np.zeros((len(names), h, w), np.uint16)
            for i, b in enumerate(names):
                a, nodata = self._read(item, band_asset(item, b, self.assets), grid, res, nearest=False)
                if nodata:
                    a = np.where(a == nodata, 0, a)
                arr[i] = a
            arr[:, ~_downsample(masks.valid, res // 10 if res >= 10 else 1)] = 0
            pixels[res], groups[res] = arr, names
        return SceneRead(scene, pixels, groups, masks)

    # ------------------------------------------------------------------ service
    def check(self) -> dict:
        kind = self.kind
        if kind == "static":
            index = static_index(self.url, self.timeout, self.counters)
            items = [i for i in index.items if not self.collection or i.get("collection") == self.collection]
            sample = [i["id"] for i in items[:3]]
        else:
            client = self._api()
            kw = {"collections": [self.collection] if self.collection else None, "max_items": 3, "limit": 3}
            sample = self._api_call(lambda: [i["id"] for i in client.search(**kw).items_as_dicts()], "checking")
        return {"url": _redact(self.url), "kind": kind, "collection": self.collection, "items_sample": sample}

    def close(self) -> None:
        io = getattr(self._client, "_stac_io", None) if self._client is not None else None
        if io is not None and getattr(io, "session", None) is not None:
            io.session.close()
        self._client = None

    def describe(self) -> dict:
        if self.cloud is not None:
            clouds = f"{self.cloud.kind} asset {self.cloud.key!r}"
        else:
            clouds = ("SCL asset when an item has one (3 shadow, 8/9 cloud, 10 cirrus, 0 no data); items "
                      "without a cloud asset are treated as cloud-free")
        return {**super().describe(), "url": _redact(self.url), "collection": self.collection,
                "cloud_mask": clouds, "resampling": "window read on the patch grid; bilinear (nearest for "
                "masks) when an asset is on another grid", "signing": "planetarycomputer" if self.signer else None}


def _band(name: str) -> str:
    from ..bands import canonical

    try:
        return canonical(name)
    except KeyError:
        raise ValueError(f"stac: unknown band {name!r}: use one of {', '.join(BANDS)}") from None


def _item(scene: SceneRef) -> dict:
    item = scene.extra.get("item") if scene.extra else None
    if not isinstance(item, dict):
        raise ValueError(f"stac: scene {scene.scene_id} carries no STAC item: read scenes returned by search()")
    return item


def _date(d) -> dt.date:
    if isinstance(d, dt.datetime):
        return d.date()
    if isinstance(d, dt.date):
        return d
    raise TypeError(f"stac: dates must be datetime.date, got {type(d).__name__}")


def _platform(scene_id: str) -> str:
    head = scene_id.upper()[:3]
    return {"S2A": "sentinel-2a", "S2B": "sentinel-2b", "S2C": "sentinel-2c"}.get(head, "sentinel-2")


def _downsample(valid: np.ndarray, f: int) -> np.ndarray:
    """A coarse pixel is valid when all the 10 m pixels under it are."""
    if f <= 1:
        return valid
    h, w = valid.shape[0] // f, valid.shape[1] // f
    return valid[: h * f, : w * f].reshape(h, f, w, f).all(axis=(1, 3))


def _redact(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname}{f':{p.port}' if p.port else ''}{p.path}" if p.scheme else url
