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

import datetime as dt
import json
import logging
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urljoin

import numpy as np

from ...errors import CatalogError

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 10
MAX_LIMIT = 10_000
GEOJSON = "application/geo+json"
JSON = "application/json"
CONFORMS_TO = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
UNSUPPORTED = ("intersects", "filter", "query", "sortby")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")
_NEVER_LO = np.iinfo(np.int64).max  # an item without a time never matches a datetime filter
_NEVER_HI = np.iinfo(np.int64).min


class ApiError(Exception):
    """An error answered as ``{"code": ..., "description": ...}`` with an HTTP status."""

    def __init__(self, status: int, code: str, description: str, parameter: str | None = None):
        super().__init__(description)
        self.status, self.code, self.description, self.parameter = status, code, description, parameter

    def body(self) -> dict:
        return {"code": self.code, "description": self.description,
                **({"parameter": self.parameter} if self.parameter else {})}


def _bad(parameter: str, why: str) -> ApiError:
    return ApiError(400, "InvalidParameterValue", f"{parameter}: {why}", parameter)


@dataclass(frozen=True)
class Query:
    bbox: tuple[float, float, float, float] | None = None
    start: int | None = None  # microseconds since the epoch, inclusive; None: open
    end: int | None = None
    has_datetime: bool = False
    datetime: str | None = None  # as given, for next links
    ids: tuple[str, ...] | None = None
    collections: tuple[str, ...] | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    def params(self) -> dict:
        """The query as search parameters (POST body form), with the token of its offset."""
        p: dict = {"limit": self.limit}
        if self.bbox is not None:
            p["bbox"] = list(self.bbox)
        if self.datetime is not None:
            p["datetime"] = self.datetime
        if self.ids is not None:
            p["ids"] = list(self.ids)
        if self.collections is not None:
            p["collections"] = list(self.collections)
        if self.offset:
            p["token"] = str(self.offset)
        return p

    def query_string(self) -> str:
        return urlencode({k: ",".join(map(_num, v)) if isinstance(v, list) else v
                          for k, v in self.params().items()})


def _num(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------- parameter parsing
def parse_bbox(value) -> tuple[float, float, float, float]:
    if isinstance(value, str):
        parts = [p for p in value.split(",")]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise _bad("bbox", "expected 4 (or 6) numbers")
    try:
        nums = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise _bad("bbox", f"not numbers: {value!r}") from None
    if len(nums) == 6:  # 3D: minx, miny, minz, maxx, maxy, maxz
        nums = [nums[0], nums[1], nums[3], nums[4]]
    if len(nums) != 4:
        raise _bad("bbox", f"expected 4 (or 6) numbers, got {len(nums)}")
    w, s, e, n = nums
    if not all(math.isfinite(v) for v in nums):
        raise _bad("bbox", "numbers must be finite")
    if not (-90 <= s <= n <= 90):
        raise _bad("bbox", "latitudes must satisfy -90 <= south <= north <= 90")
    if not (-180 <= w <= 180 and -180 <= e <= 180):
        raise _bad("bbox", "longitudes must lie in [-180, 180]")
    return w, s, e, n


def _instant(text: str) -> int:
    if not _RFC3339.match(text):
        raise _bad("datetime", f"{text!r} is not an RFC 3339 date-time (e.g. 2020-06-01T00:00:00Z)")
    t = dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00").replace(" ", "T"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_datetime(value) -> tuple[int | None, int | None]:
    """``(start, end)`` in microseconds (None: open end) of an instant or an interval."""
    if not isinstance(value, str) or not value.strip():
        raise _bad("datetime", "expected an RFC 3339 date-time or interval")
    value = value.strip()
    if "/" not in value:
        t = _instant(value)
        return t, t
    parts = value.split("/")
    if len(parts) != 2:
        raise _bad("datetime", "an interval has exactly one '/'")
    a, b = (p.strip() for p in parts)
    start = None if a in ("", "..") else _instant(a)
    end = None if b in ("", "..") else _instant(b)
    if start is None and end is None:
        raise _bad("datetime", "an interval needs at least one closed end")
    if start is not None and end is not None and start > end:
        raise _bad("datetime", "the interval starts after it ends")
    return start, end


def _strings(name: str, value) -> tuple[str, ...]:
    if isinstance(value, str):
        out = [v.strip() for v in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        out = [v.strip() for v in value]
    else:
        raise _bad(name, "expected a list of strings")
    return tuple(v for v in out if v)


def parse_limit(value) -> int:
    try:
        n = int(value)
        if isinstance(value, float) and n != value:
            raise ValueError
    except (TypeError, ValueError):
        raise _bad("limit", f"expected an integer, got {value!r}") from None
    if n < 1:
        raise _bad("limit", "must be at least 1")
    return min(n, MAX_LIMIT)  # OGC API Features: a larger limit is clamped, not an error


def parse_token(value) -> int:
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    raise _bad("token", "not a paging token from a next link of this server")


def parse_search(params: dict) -> Query:
    """A :class:`Query` from search parameters (POST body, or GET query with one value per key)."""
    for k in UNSUPPORTED:
        if params.get(k) not in (None, "", [], {}):
            raise _bad(k, "not supported by this server (supported: bbox, datetime, ids, collections, limit)")
    q = Query()
    if params.get("bbox") not in (None, ""):
        q = replace(q, bbox=parse_bbox(params["bbox"]))
    if params.get("datetime") not in (None, ""):
        start, end = parse_datetime(params["datetime"])
        q = replace(q, start=start, end=end, has_datetime=True, datetime=params["datetime"].strip())
    if params.get("ids") not in (None, ""):
        q = replace(q, ids=_strings("ids", params["ids"]))
    if params.get("collections") not in (None, ""):
        q = replace(q, collections=_strings("collections", params["collections"]))
    if params.get("limit") not in (None, ""):
        q = replace(q, limit=parse_limit(params["limit"]))
    if params.get("token") not in (None, ""):
        q = replace(q, offset=parse_token(params["token"]))
    return q


def get_params(query: str) -> dict:
    try:
        raw = parse_qs(query, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "InvalidParameterValue", "the query string is not valid UTF-8") from None
    out = {}
    for k, vals in raw.items():
        out[k] = ",".join(vals) if k in ("ids", "collections") else vals[-1]
    return out


# ---------------------------------------------------------------------- the index
class ItemIndex:
    """Search columns of ``items.parquet`` in memory; item rows decoded on demand."""

    ROW_GROUP_CACHE = 4

    def __init__(self, path: Path, default_collection: str):
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        st = path.stat()
        self.stamp = (st.st_mtime_ns, st.st_size)
        try:
            self._file = pq.ParquetFile(path)
            names = set(self._file.schema_arrow.names)
            cols = [c for c in ("id", "bbox", "geometry", "datetime", "start_datetime", "end_datetime",
                                "collection") if c in names]
            if "id" not in names:
                raise CatalogError(f"{path} has no id column", hint="rebuild it with `seco-data catalog rebuild`")
            if "bbox" in names:
                cols.remove("geometry")
            t = self._file.read(columns=cols)
        except CatalogError:
            raise
        except Exception as e:  # pyarrow raises several types for broken files
            raise CatalogError(f"cannot read {path}: {e}", hint="rebuild it with `seco-data catalog rebuild`") from None
        self.n = t.num_rows
        self.ids = t.column("id").combine_chunks()
        if "bbox" in names:
            b = t.column("bbox").combine_chunks()
            if pa.types.is_struct(b.type):
                parts = [b.field(k) for k in ("xmin", "ymin", "xmax", "ymax")]
            else:  # list of 4 (or 6) numbers
                width = 6 if self.n and len(b[0]) == 6 else 4
                parts = [pc.list_element(b, i) for i in ((0, 1, 3, 4) if width == 6 else (0, 1, 2, 3))]
            self.xmin, self.ymin, self.xmax, self.ymax = (
                p.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False) for p in parts)
        else:
            import shapely

            bounds = shapely.bounds(shapely.from_wkb(t.column("geometry").to_numpy(zero_copy_only=False)))
            self.xmin, self.ymin, self.xmax, self.ymax = (bounds[:, i] for i in range(4))

        def micros(name: str, fill: int) -> np.ndarray | None:
            if name not in t.column_names:
                return None
            c = t.column(name).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
            return c.fill_null(fill).to_numpy()

        when_lo, when_hi = micros("datetime", _NEVER_LO), micros("datetime", _NEVER_HI)
        start, end = micros("start_datetime", _NEVER_LO), micros("end_datetime", _NEVER_HI)
        # an item's time is its datetime, or else its start_datetime/end_datetime range
        self.lo = _coalesce(when_lo, start, _NEVER_LO, self.n)
        self.hi = _coalesce(when_hi, end, _NEVER_HI, self.n)
        if "collection" in t.column_names:
            self.collection = t.column("collection").combine_chunks().fill_null(default_collection)
        else:
            self.collection = pa.array([default_collection] * self.n, pa.string())
        sizes = [self._file.metadata.row_group(i).num_rows for i in range(self._file.metadata.num_row_groups)]
        self._starts = np.cumsum([0] + sizes)
        self._cache: OrderedDict[int, object] = OrderedDict()
        self._lock = threading.Lock()

    def match(self, q: Query) -> np.ndarray:
        """Row numbers (in file order) of the items matching ``q``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        mask = np.ones(self.n, dtype=bool)
        if q.ids is not None:
            mask &= pc.is_in(self.ids, value_set=pa.array(q.ids, pa.string())).to_numpy(zero_copy_only=False)
        if q.collections is not None:
            mask &= pc.is_in(self.collection, value_set=pa.array(q.collections, pa.string())).to_numpy(
                zero_copy_only=False)
        if q.bbox is not None:
            mask &= self._bbox_mask(q.bbox)
        if q.has_datetime:
            if q.start is not None:
                mask &= self.hi >= q.start
            if q.end is not None:
                mask &= self.lo <= q.end
            mask &= self.lo != _NEVER_LO
        return np.flatnonzero(mask)

    def _bbox_mask(self, bbox) -> np.ndarray:
        w, s, e, n = bbox
        with np.errstate(invalid="ignore"):
            lat = (self.ymin <= n) & (self.ymax >= s)
            # longitudes as one or two intervals each (a box crossing the antimeridian has w > e)
            q = [(w, e)] if w <= e else [(w, 180.0), (-180.0, e)]
            plain = self.xmin <= self.xmax
            lon = np.zeros(self.n, dtype=bool)
            for qw, qe in q:
                lon |= plain & (self.xmin <= qe) & (self.xmax >= qw)
                # an item crossing the antimeridian covers [xmin, 180] and [-180, xmax]
                lon |= ~plain & ((self.xmin <= qe) | (self.xmax >= qw))
        return lat & lon

    def find(self, item_id: str) -> int | None:
        import pyarrow.compute as pc

        i = pc.index(self.ids, item_id).as_py()
        return None if i < 0 else i

    def rows(self, rows: np.ndarray) -> list[dict]:
        """The item dicts of the given row numbers, in that order (hrefs as stored)."""
        import pyarrow as pa
        from stac_geoparquet.arrow import stac_table_to_items

        if len(rows) == 0:
            return []
        groups = np.searchsorted(self._starts, rows, side="right") - 1
        parts = []
        for g in np.unique(groups):
            local = rows[groups == g] - self._starts[g]
            parts.append(self._row_group(int(g)).take(pa.array(local)))
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        by_id = {}
        for item in stac_table_to_items(table):
            by_id.setdefault(item["id"], []).append(item)
        order = self.ids.take(pa.array(rows)).to_pylist()
        return [by_id[i].pop(0) for i in order]

    def _row_group(self, g: int):
        with self._lock:
            t = self._cache.get(g)
            if t is None:
                t = self._file.read_row_group(g)
                self._cache[g] = t
                while len(self._cache) > self.ROW_GROUP_CACHE:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(g)
            return t


def _coalesce(a, b, never, n) -> np.ndarray:
    if a is None and b is None:
        return np.full(n, never, dtype=np.int64)
    if a is None:
        return b
    if b is None:
        return a
    return np.where(a == never, b, a)


# ---------------------------------------------------------------------- the API
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
        return self._json("collection.json")

    def index(self) -> ItemIndex:
        path = self.root / "items.parquet"
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
    def handle(self, method: str, segs: list[str], query: str, body: bytes, base: str):
        api = base.rstrip("/") + "/api"
        try:
            if method == "POST":
                if segs != ["search"]:
                    raise ApiError(405, "MethodNotAllowed", "POST is only allowed on /api/search")
                try:
                    params = json.loads(body or b"{}")
                except ValueError as e:
                    raise ApiError(400, "InvalidParameterValue", f"the request body is not JSON: {e}") from None
                if not isinstance(params, dict):
                    raise ApiError(400, "InvalidParameterValue", "the request body must be a JSON object")
                return 200, self.search(parse_search(params), api, base, post=True), GEOJSON, {}
            if not segs:
                return 200, self.landing(api, base), JSON, {}
            if segs == ["conformance"]:
                return 200, {"conformsTo": CONFORMS_TO}, JSON, {}
            if segs == ["search"]:
                return 200, self.search(parse_search(get_params(query)), api, base), GEOJSON, {}
            if segs[0] == "collections":
                return self._collections(segs[1:], query, api, base)
            raise ApiError(404, "NotFound", f"no such API path: /api/{'/'.join(segs)}")
        except ApiError as e:
            return e.status, e.body(), JSON, {}
        except CatalogError as e:
            log.error("%s", e.one_line())
            return 500, {"code": "CatalogError", "description": e.one_line()}, JSON, {}

    def _collections(self, segs, query, api, base):
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
        q = replace(parse_search(params), collections=(cid,))
        return 200, self.search(q, api, base, items_of=cid), GEOJSON, {}

    # -- documents
    def landing(self, api: str, base: str) -> dict:
        cat = self._json("catalog.json")
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
                _link("data", f"{api}/collections", JSON, "collections"),
                {**_link("search", f"{api}/search", GEOJSON, "item search"), "method": "GET"},
                {**_link("search", f"{api}/search", GEOJSON, "item search"), "method": "POST"},
                _link("child", f"{api}/collections/{quote(cid)}", JSON, cid),
                _link("alternate", f"{base}/catalog.json", JSON, "static STAC catalog"),
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
            _link("alternate", f"{base}/collection.json", JSON, "static STAC collection"),
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
            if rel == "self":
                links.append({**_absolute(link, base), "rel": "alternate", "title": "static STAC item"})
            elif rel not in ("root", "parent", "collection"):
                links.append(_absolute(link, base))
        props = dict(item.get("properties") or {})
        for k in ("datetime", "start_datetime", "end_datetime", "created", "updated"):
            v = props.get(k)
            if isinstance(v, str) and v.endswith(".000000Z"):  # as written in the item JSON
                props[k] = v[:-8] + "Z"
        out = dict(item, links=links, properties=props)
        out["assets"] = {k: _absolute(a, base) for k, a in (item.get("assets") or {}).items()}
        return out

    def search(self, q: Query, api: str, base: str, *, post: bool = False, items_of: str | None = None) -> dict:
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
            links.append({**_link("self", here, GEOJSON), "method": "POST", "body": q.params()})
            if nxt.offset < len(matched):
                links.append({**_link("next", here, GEOJSON), "method": "POST", "body": nxt.params(),
                              "merge": False})
        else:
            shown = replace(q, collections=None) if items_of else q
            links.append(_link("self", f"{here}?{shown.query_string()}", GEOJSON))
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

