"""Finding scenes for the ``stac`` source: STAC APIs (pystac-client) and static catalogs (pystac).

Also: which asset of an item holds which band (Earth Search v1 names, ``B02``-style keys, or
``eo:bands`` / ``bands`` entries), HTTP error mapping, and Planetary Computer URL signing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import numpy as np

from ..bands import BANDS
from ..errors import SourceError, SourceUnavailable
from .http import http_error, retry_after

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'seco[stac]'"
CATALOG_HINT = ("pass url= a STAC API root, or a static catalog.json (local path or http(s) URL); "
                "`seco-data sources make-local-catalog DIR` builds one over local GeoTIFFs")

#: default collection per product for well-known APIs (host suffix -> product -> collection)
KNOWN_APIS = {
    "earth-search.aws.element84.com": {"L2A": "sentinel-2-l2a", "L1C": "sentinel-2-l1c"},
    "planetarycomputer.microsoft.com": {"L2A": "sentinel-2-l2a"},
}

#: Earth Search v1 asset keys of the Sentinel-2 bands
EARTH_SEARCH = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
    "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B10": "cirrus", "B11": "swir16", "B12": "swir22",
}
#: STAC common names that name exactly one Sentinel-2 band (rededge is ambiguous in older lists)
COMMON_NAMES = {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "nir": "B08",
                "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11", "swir22": "B12",
                "rededge071": "B05", "rededge075": "B06", "rededge078": "B07"}
SCL_KEYS = ("scl", "SCL")


# -- HTTP ------------------------------------------------------------------------------------

def stac_error(status: int | None, what: str, retry_after_s: float | None = None, detail: str = "") -> SourceError:
    """The seco error for an HTTP status of a STAC service or asset host."""
    return http_error(status, what, retry_after_s=retry_after_s, detail=detail, hint=CATALOG_HINT if status == 404 else None,
                      credentials_hint="the server refused access: check the signing option or the credentials in "
                                       "the environment (e.g. PC_SDK_SUBSCRIPTION_KEY)")


def is_url(href: str) -> bool:
    return urlsplit(str(href)).scheme in ("http", "https")


def fetch_json(url: str, timeout: float, counters: Counter, what: str = "STAC request", headers: dict | None = None):
    """GET a JSON document over http(s), mapping failures onto the seco error hierarchy."""
    req = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})
    counters["requests"] += 1
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        raise stac_error(e.code, f"{what} {url}", retry_after(e.headers.get("Retry-After")),
                         e.read().decode("utf-8", "replace")) from None
    except (urllib.error.URLError, OSError) as e:  # refused, reset, timeout, truncated body
        raise SourceUnavailable(f"{what} {url} failed: {getattr(e, 'reason', None) or e}") from None
    counters["bytes"] += len(body)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceUnavailable(f"{what} {url} answered malformed JSON ({e})") from None


# -- bands and assets ------------------------------------------------------------------------

@dataclass(frozen=True)
class AssetRef:
    key: str
    href: str
    bidx: int = 1  # 1-based band index inside the asset


def _band_entries(asset: dict) -> list[dict]:
    return asset.get("eo:bands") or asset.get("bands") or []


def _canonical(name) -> str | None:
    if not isinstance(name, str):
        return None
    n = name.strip().upper().replace("_", "")
    m = re.fullmatch(r"B0?(\d{1,2}A?)", n)
    if not m:
        return None
    n = "B8A" if m.group(1) == "8A" else f"B{int(m.group(1)):02d}" if m.group(1).isdigit() else None
    return n if n in BANDS else None


def band_asset(item: dict, band: str, overrides: dict | None = None) -> AssetRef:
    """The asset (and band index in it) that holds ``band`` in ``item``."""
    assets = item.get("assets") or {}
    if overrides and band in overrides:
        key = overrides[band]
        if key not in assets:
            raise SourceError(f"item {item.get('id')} has no asset {key!r} (assets option for {band})",
                              hint=f"its assets: {', '.join(sorted(assets))}")
        return AssetRef(key, assets[key]["href"])
    for key in (band, band.lower(), f"B{int(band[1:]):d}" if band[1:].isdigit() else band, EARTH_SEARCH[band]):
        if key in assets:
            entries = _band_entries(assets[key])
            if len(entries) <= 1:
                return AssetRef(key, assets[key]["href"])
    common = BANDS[band].common_name
    by_common = None
    for key, a in assets.items():
        for i, e in enumerate(_band_entries(a)):
            if _canonical(e.get("name")) == band:
                return AssetRef(key, a["href"], i + 1)
            if by_common is None and COMMON_NAMES.get(e.get("common_name", "")) == band and common:
                by_common = AssetRef(key, a["href"], i + 1)
    if by_common is not None:
        return by_common
    raise SourceError(
        f"item {item.get('id')} has no asset for band {band} (assets: {', '.join(sorted(assets))})",
        hint=f"map bands to asset keys with the assets option, e.g. assets={{'{band}': 'KEY'}}",
    )


@dataclass(frozen=True)
class CloudSpec:
    """How to read per-pixel cloud from an asset: ``scl`` classes, a ``probability`` (cloud when
    >= threshold) or a binary ``mask`` (cloud when non-zero)."""

    key: str
    kind: str = "scl"
    threshold: float = 50.0


def cloud_spec(option) -> CloudSpec | None:
    if option is None:
        return None
    if isinstance(option, str):
        return CloudSpec(option, "scl" if option.lower() == "scl" else "probability")
    if isinstance(option, dict) and isinstance(option.get("key"), str):
        kind = option.get("kind", "scl" if option["key"].lower() == "scl" else "probability")
        if kind not in ("scl", "probability", "mask"):
            raise ValueError(f"stac: cloud_asset kind must be scl, probability or mask, got {kind!r}")
        return CloudSpec(option["key"], kind, float(option.get("threshold", 50.0)))
    raise TypeError("stac: cloud_asset must be an asset key or {'key': ..., 'kind': scl|probability|mask, "
                    f"'threshold': ...}}, got {option!r}")


def cloud_asset(item: dict, spec: CloudSpec | None) -> tuple[AssetRef, CloudSpec] | None:
    """The item's cloud asset: the configured one, else an SCL asset when present, else None."""
    assets = item.get("assets") or {}
    if spec is not None:
        if spec.key not in assets:
            raise SourceError(f"item {item.get('id')} has no cloud asset {spec.key!r}",
                              hint=f"its assets: {', '.join(sorted(assets))}; or drop the cloud_asset option")
        return AssetRef(spec.key, assets[spec.key]["href"]), spec
    for key in SCL_KEYS:
        if key in assets:
            return AssetRef(key, assets[key]["href"]), CloudSpec(key, "scl")
    return None


# -- items -----------------------------------------------------------------------------------

def item_time(item: dict) -> dt.datetime:
    props = item.get("properties") or {}
    text = props.get("datetime") or props.get("start_datetime")
    if not text:
        raise SourceError(f"item {item.get('id')} has no datetime")
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def default_collection(url: str, product: str) -> str | None:
    host = urlsplit(url).hostname or ""
    for suffix, by_product in KNOWN_APIS.items():
        if host.endswith(suffix):
            return by_product.get(product)
    return None


# -- static catalogs -------------------------------------------------------------------------

class StaticIndex:
    """Every item of a static catalog, indexed once by bbox and time (vectorised filters)."""

    def __init__(self, items: list[dict]):
        self.items = items
        self.bbox = np.array([_bbox(i) for i in items], float).reshape(-1, 4)
        self.t = np.array([item_time(i).timestamp() for i in items], float)
        self.collection = np.array([i.get("collection") or "" for i in items], object)

    def query(self, geometry, bbox, start: dt.datetime, end: dt.datetime, collection: str | None) -> list[dict]:
        b = self.bbox
        hit = ((b[:, 0] <= bbox[2]) & (b[:, 2] >= bbox[0]) & (b[:, 1] <= bbox[3]) & (b[:, 3] >= bbox[1])
               & (self.t >= start.timestamp()) & (self.t <= end.timestamp()))
        if collection:
            hit &= self.collection == collection
        out = []
        for k in np.flatnonzero(hit):
            geom = self.items[k].get("geometry")
            if geom is None or _intersects(geom, geometry):
                out.append(self.items[k])
        return out


def _bbox(item: dict) -> list[float]:
    b = item.get("bbox")
    if b and len(b) == 4:
        return list(b)
    if b and len(b) == 6:  # 3-D bbox
        return [b[0], b[1], b[3], b[4]]
    raise SourceError(f"item {item.get('id')} has no bbox", hint="every catalog item needs a bbox")


def _intersects(a: dict, b: dict) -> bool:
    from shapely.geometry import shape

    return shape(a).intersects(shape(b))


_INDEXES: dict[str, StaticIndex] = {}
_INDEX_LOCK = threading.Lock()


def static_index(href: str, timeout: float, counters: Counter) -> StaticIndex:
    """The index of the static catalog at ``href`` (built once per process, shared by threads)."""
    key = href if is_url(href) else f"{href}@{os.stat(href).st_mtime_ns}"  # a rebuilt local catalog is re-read
    with _INDEX_LOCK:
        if key in _INDEXES:
            return _INDEXES[key]
        index = StaticIndex(_walk(href, timeout, counters))
        _INDEXES[key] = index
        log.info("stac: indexed %d items of %s", len(index.items), href)
        return index


def _walk(href: str, timeout: float, counters: Counter) -> list[dict]:
    import pystac

    class IO(pystac.StacIO):
        def read_text(self, source, *args, **kwargs) -> str:
            s = str(getattr(source, "href", source))
            if is_url(s):
                return json.dumps(fetch_json(s, timeout, counters, "reading the catalog"))
            try:
                return Path(s).read_text("utf-8")
            except OSError as e:
                raise SourceError(f"cannot read {s}: {e.strerror or e}", hint=CATALOG_HINT) from None

        def write_text(self, dest, txt, *args, **kwargs) -> None:  # pragma: no cover - read only
            raise SourceError("the stac source never writes catalogs")

    try:
        root = pystac.read_file(href, stac_io=IO())
    except SourceError:
        raise
    except (ValueError, KeyError, TypeError, pystac.STACError) as e:
        raise SourceError(f"{href} is not a STAC catalog ({e})", hint=CATALOG_HINT) from None
    if not isinstance(root, pystac.Catalog):
        raise SourceError(f"{href} is a STAC {type(root).__name__}, not a catalog", hint=CATALOG_HINT)
    items = []
    for item in root.get_items(recursive=True):
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        for key, asset in item.assets.items():
            d["assets"][key]["href"] = asset.get_absolute_href()
        if not d.get("collection") and item.collection_id:
            d["collection"] = item.collection_id
        items.append(d)
    return items


# -- Planetary Computer signing ---------------------------------------------------------------

_TOKENS: dict[str, tuple[str, float]] = {}
_TOKEN_LOCK = threading.Lock()


class PlanetaryComputerSigner:
    """Appends a SAS token (``GET <token_url>`` -> ``{"token", "msft:expiry"}``) to asset hrefs on
    Azure blob storage (and on the token service's own host), caching tokens until shortly before
    they expire. ``PC_SDK_SUBSCRIPTION_KEY`` from the environment is sent when set."""

    def __init__(self, stac_url: str, token_url: str | None, timeout: float, counters: Counter):
        self.token_url = token_url or urljoin(stac_url.rstrip("/"), "../sas/v1/token/{collection}")
        self.timeout, self.counters = timeout, counters
        self.hosts = {urlsplit(self.token_url).hostname}

    def sign(self, href: str, collection: str | None) -> str:
        host = urlsplit(href).hostname or ""
        if not is_url(href) or not (host.endswith(".blob.core.windows.net") or host in self.hosts):
            return href
        if "sig=" in (urlsplit(href).query or ""):
            return href
        token = self.token(collection or "")
        return f"{href}{'&' if '?' in href else '?'}{token}"

    def token(self, collection: str) -> str:
        url = self.token_url.format(collection=collection)
        with _TOKEN_LOCK:
            got = _TOKENS.get(url)
            if got and got[1] - 300 > time.time():
                return got[0]
        key = os.environ.get("PC_SDK_SUBSCRIPTION_KEY")
        doc = fetch_json(url, self.timeout, self.counters, "signing token",
                         headers={"Ocp-Apim-Subscription-Key": key} if key else None)
        try:
            token = doc["token"]
            expiry = dt.datetime.fromisoformat(doc.get("msft:expiry", "").replace("Z", "+00:00")).timestamp()
        except (KeyError, TypeError, ValueError):
            raise SourceUnavailable(f"signing token {url} answered no token/msft:expiry") from None
        with _TOKEN_LOCK:
            _TOKENS[url] = (token, expiry)
        return token
