"""A minimal, read-only STAC API over a catalog's ``items.parquet`` (served under ``/api``).

Landing page, conformance, collections, collection items (paged), single items and item search
(GET and POST: ``bbox``, ``datetime``, ``ids``, ``collections``, ``limit``, paging by ``next``
links). The search columns (id, bbox, datetime, collection) are loaded once into numpy arrays and
reloaded when the file changes, so a search over 100,000 items is a few vectorised comparisons;
only the rows of the page being answered are decoded, from their parquet row groups (a few kept in
a small cache), and turned back into item dicts by ``stac_geoparquet.arrow``.

rustac (``rustac.DuckdbClient`` / ``rustac.search_sync``, 0.9.18) was evaluated for the search and
not used: it needs DuckDB's ``spatial`` extension and downloads it on first use, which fails
offline ("IO Error: Failed to download extension "spatial" at URL
"http://extensions.duckdb.org/v1.5.6/linux_amd64/spatial.duckdb_extension.gz""); with
``install_extensions=False`` it fails with 'Extension ".../spatial.duckdb_extension" not found',
and the only pre-built bundle (rustac-duckdb-extensions 1.5.1.post0) is built for DuckDB 1.5.1,
which DuckDB 1.5.6 refuses to load. pyarrow and numpy, already dependencies, do the job.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
from urllib.parse import quote, urljoin

from ...catalog.index import ITEM_JSON_LINK
from ...catalog.layout import CATALOG, COLLECTION, GEOJSON, INDEX, JSON
from ...errors import CatalogError
from .index import ItemIndex
from .openapi import OPENAPI, SERVICE_DESC, openapi, service_doc
from .params import ApiError, Query, get_params, parse_json, parse_search

log = logging.getLogger(__name__)

CONFORMS_TO = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]


class StacApi:
    """Answers ``/api/...`` requests: ``handle`` returns ``(status, body, content type, headers)``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock = threading.Lock()
        self._index: ItemIndex | None = None
        self._docs: dict[str, tuple[tuple, dict]] = {}

    # -- data, reloaded when the files change
    def _json(self, name: str) -> dict:
        path = self.root / name
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._docs.get(name)
            if cached and cached[0] == stamp:
                return cached[1]
            doc = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise CatalogError(f"cannot read {path}: {e}") from None
        self._docs[name] = (stamp, doc)
        return doc

    def collection(self) -> dict:
        return self._json(COLLECTION)

    def index(self) -> ItemIndex:
        path = self.root / INDEX
        try:
            st = path.stat()
        except OSError as e:
            raise CatalogError(f"cannot read {path}: {e}",
                               hint="restore it with `seco-data catalog rebuild`") from None
        with self._lock:
            if self._index is None or self._index.stamp != (st.st_mtime_ns, st.st_size):
                log.info("loading the search index %s", path)
                self._index = ItemIndex(path, self.collection().get("id", ""))
            return self._index

    # -- dispatch
    def handle(self, method: str, segs: list[str], query: str, body: bytes, base: str, url: str | None = None):
        """``url``: the requested URL (configured base + path + query), the ``self`` link of
        search and item-list pages."""
        api = base.rstrip("/") + "/api"
        try:
            if method == "POST":
                if segs != ["search"]:
                    raise ApiError(405, "MethodNotAllowed", "POST is only allowed on /api/search")
                params = parse_json(body or b"{}")
                if not isinstance(params, dict):
                    raise ApiError(400, "InvalidParameterValue", "the request body must be a JSON object")
                return 200, self.search(parse_search(params), api, base, post=True, url=url), GEOJSON, {}
            if not segs:
                return 200, self.landing(api, base), JSON, {}
            if segs == ["conformance"]:
                return 200, {"conformsTo": CONFORMS_TO}, JSON, {}
            if segs == [OPENAPI]:
                return 200, openapi(api, self.collection().get("id", "")), SERVICE_DESC, {}
            if segs == [OPENAPI + ".html"]:
                return 200, service_doc(api), "text/html; charset=utf-8", {}
            if segs == ["search"]:
                q = parse_search(get_params(query), get=True)
                return 200, self.search(q, api, base, url=url), GEOJSON, {}
            if segs[0] == "collections":
                return self._collections(segs[1:], query, api, base, url)
            raise ApiError(404, "NotFound", f"no such API path: /api/{'/'.join(segs)}")
        except ApiError as e:
            return e.status, e.body(), JSON, {}
        except CatalogError as e:
            log.error("%s", e.one_line())
            return 500, {"code": "CatalogError", "description": e.one_line()}, JSON, {}

    def _collections(self, segs, query, api, base, url=None):
        coll = self.collection()
        cid = coll.get("id", "")
        if not segs:
            return 200, {"collections": [self.api_collection(api, base)],
                         "links": [_link("self", f"{api}/collections", JSON), _link("root", api, JSON),
                                   _link("parent", api, JSON)]}, JSON, {}
        if segs[0] != cid:
            raise ApiError(404, "NotFound", f"no collection {segs[0]!r} (this catalog has {cid!r})")
        if len(segs) == 1:
            return 200, self.api_collection(api, base), JSON, {}
        if segs[1] != "items" or len(segs) > 3:
            raise ApiError(404, "NotFound", f"no such API path: /api/collections/{'/'.join(segs)}")
        if len(segs) == 3:
            index = self.index()
            i = index.find(segs[2])
            if i is None or index.collection[i].as_py() != cid:
                raise ApiError(404, "NotFound", f"no item {segs[2]!r} in collection {cid!r}")
            return 200, self.api_item(index.rows(np.array([i]))[0], api, base), GEOJSON, {}
        params = get_params(query)
        for k in ("ids", "collections"):
            params.pop(k, None)
        q = replace(parse_search(params, get=True), collections=(cid,))
        return 200, self.search(q, api, base, items_of=cid, url=url), GEOJSON, {}

    # -- documents
    def landing(self, api: str, base: str) -> dict:
        cat = self._json(CATALOG)
        cid = self.collection().get("id", "")
        return {
            "type": "Catalog",
            "stac_version": cat.get("stac_version", "1.1.0"),
            "id": f"{cat.get('id', 'seco')}-api",
            "title": cat.get("title", "seco catalog"),
            "description": cat.get("description", "") + " (STAC API served by seco-data catalog serve)",
            "conformsTo": CONFORMS_TO,
            "links": [
                _link("self", api, JSON), _link("root", api, JSON),
                _link("conformance", f"{api}/conformance", JSON, "STAC/OGC conformance classes"),
                _link("service-desc", f"{api}/{OPENAPI}", SERVICE_DESC, "OpenAPI description"),
                _link("service-doc", f"{api}/{OPENAPI}.html", "text/html", "API documentation"),
                _link("data", f"{api}/collections", JSON, "collections"),
                {**_link("search", f"{api}/search", GEOJSON, "item search"), "method": "GET"},
                {**_link("search", f"{api}/search", GEOJSON, "item search"), "method": "POST"},
                _link("child", f"{api}/collections/{quote(cid)}", JSON, cid),
                _link("alternate", f"{base}/{CATALOG}", JSON, "static STAC catalog"),
            ],
        }

    def api_collection(self, api: str, base: str) -> dict:
        coll = dict(self.collection())
        cid = quote(coll.get("id", ""))
        keep = [_absolute(link, base) for link in coll.get("links", [])
                if link.get("rel") not in ("self", "root", "parent", "child", "item", "items", "collection")]
        coll["links"] = [
            _link("self", f"{api}/collections/{cid}", JSON), _link("root", api, JSON), _link("parent", api, JSON),
            _link("items", f"{api}/collections/{cid}/items", GEOJSON),
            _link("alternate", f"{base}/{COLLECTION}", JSON, "static STAC collection"),
            *keep,
        ]
        if coll.get("assets"):
            coll["assets"] = {k: _absolute(a, base) for k, a in coll["assets"].items()}
        return coll

    def api_item(self, item: dict, api: str, base: str) -> dict:
        """An item as stored (hrefs relative to the catalog root) with absolute server URLs."""
        cid = quote(item.get("collection") or self.collection().get("id", ""))
        links = [_link("self", f"{api}/collections/{cid}/items/{quote(item['id'])}", GEOJSON),
                 _link("root", api, JSON), _link("parent", f"{api}/collections/{cid}", JSON),
                 _link("collection", f"{api}/collections/{cid}", JSON)]
        for link in item.get("links") or []:
            rel = link.get("rel")
            if rel == "self" or (rel == "alternate" and link.get("title") == ITEM_JSON_LINK["title"]):
                links.append({**_absolute(link, base), "rel": "alternate", "title": "static STAC item"})
            elif rel not in ("root", "parent", "collection"):
                links.append(_absolute(link, base))
        out = dict(item, links=links)
        out["assets"] = {k: _absolute(a, base) for k, a in (item.get("assets") or {}).items()}
        return out

    def search(self, q: Query, api: str, base: str, *, post: bool = False, items_of: str | None = None,
               url: str | None = None) -> dict:
        index = self.index()
        matched = index.match(q)
        page = matched[q.offset:q.offset + q.limit]
        features = [self.api_item(it, api, base) for it in index.rows(page)]
        here = f"{api}/collections/{quote(items_of)}/items" if items_of else f"{api}/search"
        links = [_link("root", api, JSON)]
        if items_of:
            links += [_link("collection", f"{api}/collections/{quote(items_of)}", JSON),
                      _link("parent", f"{api}/collections/{quote(items_of)}", JSON)]
        nxt = replace(q, offset=q.offset + len(page))
        if items_of:
            nxt = replace(nxt, collections=None)
        if post:
            links.append({**_link("self", url or here, GEOJSON), "method": "POST", "body": q.params()})
            if nxt.offset < len(matched):
                links.append({**_link("next", here, GEOJSON), "method": "POST", "body": nxt.params(),
                              "merge": False})
        else:
            shown = replace(q, collections=None) if items_of else q
            links.append(_link("self", url or f"{here}?{shown.query_string()}", GEOJSON))
            if nxt.offset < len(matched):
                links.append({**_link("next", f"{here}?{nxt.query_string()}", GEOJSON), "method": "GET"})
        return {"type": "FeatureCollection", "features": features, "links": links,
                "numberMatched": int(len(matched)), "numberReturned": len(features)}


def _link(rel: str, href: str, type_: str, title: str | None = None) -> dict:
    return {"rel": rel, "href": href, "type": type_, **({"title": title} if title else {})}


def _absolute(obj: dict, base: str) -> dict:
    """``obj`` (a link or an asset) with its href resolved against the catalog root URL."""
    href = obj.get("href")
    if not isinstance(href, str) or "://" in href:
        return obj
    return {**obj, "href": urljoin(base.rstrip("/") + "/", href)}

