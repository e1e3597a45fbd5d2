"""``sentinelhub``: Sentinel-2 L1C/L2A from Sentinel Hub or the Copernicus Data Space Ecosystem.

Scenes come from the Catalog API (STAC search over the patch's lon/lat box, paged with
``context.next``); pixels and masks from the Process API on the exact patch grid (UTM bounds, one
request per resolution group, time range +-1 minute around the scene's acquisition, ``leastCC``
mosaicking), as uint16 DN. Credentials come only from ``SH_CLIENT_ID`` / ``SH_CLIENT_SECRET``.
Every request, retry and processing unit spent is counted in ``self.counters``.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import re
import tarfile
import threading
from collections import OrderedDict

import numpy as np

from ..bands import DN_SCALE
from ..errors import CredentialsError, SourceError, SourceUnavailable
from ..grid import PatchGrid
from . import sentinelhub_client as shc
from .base import Masks, SceneRead, SceneRef, Source

log = logging.getLogger(__name__)

#: endpoint presets: base URL, token URL, host provider
ENDPOINTS = {
    "sentinelhub": (
        "https://services.sentinel-hub.com",
        "https://services.sentinel-hub.com/auth/realms/main/protocol/openid-connect/token",
        {"name": "Sinergise (a Planet company): Sentinel Hub", "roles": ["host", "processor"],
         "url": "https://www.sentinel-hub.com"},
    ),
    "cdse": (
        "https://sh.dataspace.copernicus.eu",
        "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token",
        {"name": "Copernicus Data Space Ecosystem", "roles": ["host", "processor"],
         "url": "https://dataspace.copernicus.eu"},
    ),
}
ENV_ID, ENV_SECRET = "SH_CLIENT_ID", "SH_CLIENT_SECRET"
INSTALL_HINT = "pip install 'seco[sentinelhub]'"
#: Process API time range around a scene's acquisition time
TIME_SLACK = dt.timedelta(minutes=1)
PAGE_LIMIT = 100
MAX_PAGES = 200

_COLLECTIONS_LOCK = threading.Lock()


def _sentinelhub():
    try:
        import sentinelhub
    except ImportError:
        raise SourceError("the sentinelhub source needs the sentinelhub package", hint=INSTALL_HINT) from None
    return sentinelhub


def collection_for(product: str, base_url: str):
    """The S2 collection of ``product`` bound to ``base_url`` (built-in ones carry their own URL)."""
    sh = _sentinelhub()
    builtin = {"L1C": sh.DataCollection.SENTINEL2_L1C, "L2A": sh.DataCollection.SENTINEL2_L2A}[product]
    base_url = base_url.rstrip("/")
    if (builtin.service_url or "").rstrip("/") == base_url:
        return builtin
    name = f"SECO_SENTINEL2_{product}_" + re.sub(r"[^A-Za-z0-9]+", "_", base_url.split("://", 1)[-1]).strip("_").upper()
    with _COLLECTIONS_LOCK:  # extend_enum is not thread-safe
        wanted = builtin.value.derive(service_url=base_url)
        for dc in sh.DataCollection:  # reuse a collection already bound to that URL, whatever its name
            if dc.value == wanted:
                return dc
        return builtin.define_from(name, service_url=base_url)


def evalscript(bands: tuple[str, ...], masks: bool = True) -> str:
    """Bands as raw DN (UINT16) in output ``bands``; ``CLM`` and ``dataMask`` in output ``masks``."""
    inputs = list(bands) + (["CLM", "dataMask"] if masks else [])
    outputs, values = [], []
    if bands:
        outputs.append(f'{{id: "bands", bands: {len(bands)}, sampleType: "UINT16"}}')
        values.append("bands: [" + ", ".join(f"s.{b}" for b in bands) + "]")
    if masks:
        outputs.append('{id: "masks", bands: 2, sampleType: "UINT8"}')
        values.append("masks: [s.CLM, s.dataMask]")
    return (
        "//VERSION=3\n"
        "function setup() {\n"
        "  return {\n"
        f"    input: [{{bands: {inputs!r}, units: \"DN\"}}],\n".replace("'", '"')
        + f"    output: [{', '.join(outputs)}]\n"
        "  };\n"
        "}\n"
        "function evaluatePixel(s) {\n"
        f"  return {{{', '.join(values)}}};\n"
        "}\n"
    )


class SentinelHubSource(Source):
    """Sentinel-2 from a Sentinel Hub deployment (``endpoint`` ``sentinelhub`` or ``cdse``, or any
    ``base_url``/``token_url``). Each request is sent once (429, 5xx, timeouts and broken connections
    are left to the collector's retry policy, the one retry layer); ``timeout`` is the seconds allowed
    per request. ``scene_cloud_max`` (percent) optionally filters the Catalog search server-side."""

    name = "sentinelhub"
    synthetic = False
    io_bound = True
    license = "other"
    scale = DN_SCALE
    nodata = 0

    def __init__(self, product: str = "L2A", *, base_url: str | None = None, token_url: str | None = None,
                 endpoint: str | None = None, timeout: float = 120.0, scene_cloud_max: float | None = None):
        super().__init__(product)
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"sentinelhub: unknown endpoint {endpoint!r}: use one of {', '.join(ENDPOINTS)}")
        preset = ENDPOINTS[endpoint or "sentinelhub"]
        self.base_url = (base_url or preset[0]).rstrip("/")
        self.token_url = token_url or preset[1]
        if endpoint is None:
            endpoint = next((k for k, v in ENDPOINTS.items() if v[0] == self.base_url), "custom")
        self.endpoint = endpoint
        if isinstance(timeout, bool) or not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"sentinelhub: timeout must be a positive number of seconds, got {timeout!r}")
        if scene_cloud_max is not None and not 0 <= scene_cloud_max <= 100:
            raise ValueError(f"sentinelhub: scene_cloud_max must be in [0, 100], got {scene_cloud_max!r}")
        self.timeout = float(timeout)
        self.scene_cloud_max = scene_cloud_max
        host = preset[2] if self.endpoint in ENDPOINTS else {
            "name": "Sentinel Hub deployment", "roles": ["host", "processor"], "url": self.base_url}
        self.providers = (
            {"name": "European Space Agency (Copernicus Sentinel-2)", "roles": ["producer", "licensor"],
             "url": "https://sentinels.copernicus.eu/web/sentinel/missions/sentinel-2"},
            host,
        )

        client_id, secret = os.environ.get(ENV_ID, "").strip(), os.environ.get(ENV_SECRET, "").strip()
        missing = [k for k, v in ((ENV_ID, client_id), (ENV_SECRET, secret)) if not v]
        if missing:
            raise CredentialsError(f"Sentinel Hub credentials missing: {' and '.join(missing)} not set",
                                   hint=shc.CREDENTIALS_HINT)
        shc.require_secure(self.token_url)
        sh = _sentinelhub()
        self.client_id = client_id
        # use_defaults: never read or write ~/.config/sentinelhub; one attempt and no 429 loop wherever
        # sentinelhub-py's stock client would still run
        self.config = sh.SHConfig(
            use_defaults=True, sh_client_id=client_id, sh_client_secret=secret, sh_base_url=self.base_url,
            sh_token_url=self.token_url, max_download_attempts=1, download_sleep_time=0.0,
            download_timeout_seconds=self.timeout, max_retries=1,
        )
        self.collection = collection_for(product, self.base_url)
        self._client = shc.make_client(self.config, self.counters, timeout=self.timeout)
        #: masks probed by read_masks, reused when the same scene is then read (few entries: one
        #: location's candidates at a time; a source instance serves one thread)
        self._masks: OrderedDict = OrderedDict()
        log.debug("sentinelhub source: %s %s at %s", self.endpoint, product, self.base_url)

    # ------------------------------------------------------------------ searching
    def _catalog(self, payload: dict) -> list[dict]:
        url = f"{self.base_url}/api/v1/catalog/1.0.0/search"
        features, body = [], dict(payload)
        for _ in range(MAX_PAGES):
            page = shc.decode_json(shc.post_json(self._client, url, body, accept="application/geo+json"), "catalog")
            if not isinstance(page, dict) or not isinstance(page.get("features"), list):
                raise SourceUnavailable("Sentinel Hub sent a catalog answer without features")
            features += page["features"]
            nxt = (page.get("context") or {}).get("next")
            if nxt is None or not page["features"]:
                return features
            body = {**payload, "next": nxt}
        raise SourceError(f"Sentinel Hub catalog search returned more than {MAX_PAGES} pages",
                          hint="narrow the season window (seasons.window_days)")

    def search(self, grid: PatchGrid, start: dt.date, end: dt.date) -> list[SceneRef]:
        if end < start:
            raise ValueError(f"sentinelhub: empty date window {start} .. {end}: end is before start")
        payload = {
            "collections": [self.collection.catalog_id],
            "bbox": [round(v, 7) for v in grid.bbox_lonlat()],
            "datetime": f"{start:%Y-%m-%d}T00:00:00Z/{end:%Y-%m-%d}T23:59:59Z",
            "limit": PAGE_LIMIT,
            "fields": {"include": ["id", "properties.datetime", "properties.eo:cloud_cover", "properties.platform"],
                       "exclude": []},
        }
        if self.scene_cloud_max is not None:
            payload["filter"] = f"eo:cloud_cover <= {self.scene_cloud_max:g}"
            payload["filter-lang"] = "cql2-text"
        scenes = [s for s in (self._scene(f) for f in self._catalog(payload)) if s is not None]
        return _one_per_acquisition(scenes)

    def _scene(self, feature: dict) -> SceneRef | None:
        try:
            sid = str(feature["id"])
            props = feature.get("properties") or {}
            when = dt.datetime.fromisoformat(str(props["datetime"]).replace("Z", "+00:00"))
            when = when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)
            cloud = float(props.get("eo:cloud_cover", 100.0))
        except (KeyError, TypeError, ValueError):
            log.warning("sentinelhub: skipping an unreadable catalog feature %r", str(feature)[:120])
            return None
        platform = str(props.get("platform") or "").lower() or _platform_from_id(sid)
        return SceneRef(sid, when, cloud, platform=platform, product=self.product,
                        extra={"acquired": when.isoformat(), "collection": self.collection.catalog_id})

    # ------------------------------------------------------------------ reading
    def _process(self, scene: SceneRef, grid: PatchGrid, res: int, bands: tuple[str, ...], masks: bool):
        sh = _sentinelhub()
        responses = ([sh.SentinelHubRequest.output_response("bands", sh.MimeType.TIFF)] if bands else []) + (
            [sh.SentinelHubRequest.output_response("masks", sh.MimeType.TIFF)] if masks else [])
        request = sh.SentinelHubRequest(
            evalscript=evalscript(bands, masks),
            input_data=[sh.SentinelHubRequest.input_data(
                self.collection, time_interval=(scene.datetime - TIME_SLACK, scene.datetime + TIME_SLACK),
                mosaicking_order=sh.MosaickingOrder.LEAST_CC)],
            responses=responses,
            bbox=sh.BBox(grid.bounds, crs=sh.CRS(grid.epsg)),
            size=grid.shape(res)[::-1],  # (width, height)
            config=self.config,
        )
        response = shc.download(self._client, request.download_list[0])
        out = _decode(response.content, [r["identifier"] for r in responses])
        h, w = grid.shape(res)
        for key, n in (("bands", len(bands)), ("masks", 2)):
            if key in out and out[key].shape != (n, h, w):
                raise SourceUnavailable(f"Sentinel Hub sent {key} of shape {out[key].shape} for scene "
                                        f"{scene.scene_id}, expected {(n, h, w)}")
        return out

    def read_masks(self, scene: SceneRef, grid: PatchGrid) -> Masks:
        m = _masks(self._process(scene, grid, 10, (), True)["masks"])
        self._masks[(scene.scene_id, grid)] = m
        while len(self._masks) > 32:
            self._masks.popitem(last=False)
        return m

    def read(self, scene: SceneRef, grid: PatchGrid, bands: dict[int, tuple[str, ...]]) -> SceneRead:
        """uint16 DN of ``bands`` grouped by resolution (0 = no data), with the masks of the finest."""
        bands = self.check_bands(bands)
        masks = self._masks.pop((scene.scene_id, grid), None)  # probed already: not asked again
        pixels, finest = {}, 10 if masks is not None else None
        for res in sorted(bands):
            # masks come with the finest group only (unless read_masks already fetched them); coarser
            # no-data is their block reduction (a 20 or 60 m pixel is valid only where all its finer
            # pixels are): 2 fewer rasters per group
            out = self._process(scene, grid, res, bands[res], masks is None)
            data = out["bands"].astype(np.uint16, copy=False)
            if masks is None:
                masks, finest = _masks(out["masks"]), res
                data[:, out["masks"][1] == 0] = self.nodata
            else:
                f = res // finest
                h, w = grid.shape(res)
                valid = masks.valid if f == 1 else masks.valid.reshape(h, f, w, f).all(axis=(1, 3))
                data[:, ~valid] = self.nodata
            pixels[res] = data
        if masks is None:
            masks = self.read_masks(scene, grid)
        return SceneRead(scene, pixels, bands, masks)

    # ------------------------------------------------------------------ the rest
    def check(self) -> dict:
        """Fetch a token and run one tiny catalog search; report where and who (never the secret)."""
        shc.session_for(self.config, self.timeout).token  # noqa: B018 - fetches or renews the token
        self._catalog({"collections": [self.collection.catalog_id], "bbox": [14.50, 46.04, 14.51, 46.05],
                       "datetime": "2023-06-01T00:00:00Z/2023-06-10T23:59:59Z", "limit": 1})
        return {"endpoint": self.endpoint, "base_url": self.base_url, "client_id": self.client_id[:4] + "...",
                "collection": self.collection.api_id}

    def describe(self) -> dict:
        return {**super().describe(), "endpoint": self.endpoint, "base_url": self.base_url}

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        http = getattr(self._client, "_http", None)
        if http is not None:
            http.close()
            self._client._http = None


def _platform_from_id(scene_id: str) -> str:
    m = re.match(r"S2([A-D])_", scene_id.upper())
    return f"sentinel-2{m.group(1).lower()}" if m else "sentinel-2a"


def _one_per_acquisition(scenes: list[SceneRef]) -> list[SceneRef]:
    """Tiles of one datatake (within the Process time range of each other) give the same mosaic:
    keep the least cloudy of each, the one ``leastCC`` mosaicking puts on top."""
    out: list[SceneRef] = []
    for s in sorted(scenes, key=lambda s: (s.datetime, s.cloud_cover, s.scene_id)):
        if out and abs(s.datetime - out[-1].extra["group_start"]) <= TIME_SLACK:
            if s.cloud_cover < out[-1].cloud_cover:
                out[-1] = SceneRef(s.scene_id, s.datetime, s.cloud_cover, s.platform, s.product,
                                   {**s.extra, "group_start": out[-1].extra["group_start"]})
            continue
        out.append(SceneRef(s.scene_id, s.datetime, s.cloud_cover, s.platform, s.product,
                            {**s.extra, "group_start": s.datetime}))
    return [SceneRef(s.scene_id, s.datetime, s.cloud_cover, s.platform, s.product,
                     {k: v for k, v in s.extra.items() if k != "group_start"}) for s in out]


def _masks(m: np.ndarray) -> Masks:
    clm, data = m[0], m[1]
    valid = (data == 1) & (clm != 255)
    return Masks(cloud=(clm == 1) & valid, shadow=np.zeros(clm.shape, bool), valid=valid)


def _decode(content: bytes, identifiers: list[str]) -> dict[str, np.ndarray]:
    """GeoTIFF bytes (one response) or a tar of ``<identifier>.tif`` (several) -> arrays by identifier."""
    try:
        if len(identifiers) == 1:
            return {identifiers[0]: _tiff(content)}
        got = {}
        with tarfile.open(fileobj=io.BytesIO(content)) as tar:
            for member in tar.getmembers():
                stem = member.name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
                if stem in identifiers and member.isfile():
                    got[stem] = _tiff(tar.extractfile(member).read())
    except SourceUnavailable:
        raise
    except Exception as e:  # noqa: BLE001 - any decoding failure of a 200 answer is a garbled body
        raise SourceUnavailable(f"Sentinel Hub sent an unreadable image ({type(e).__name__})") from None
    missing = [i for i in identifiers if i not in got]
    if missing:
        raise SourceUnavailable(f"Sentinel Hub's answer lacks the {', '.join(missing)} response(s)")
    return got


def _tiff(data: bytes) -> np.ndarray:
    from rasterio.io import MemoryFile

    with MemoryFile(data) as mem, mem.open() as ds:
        return ds.read()
