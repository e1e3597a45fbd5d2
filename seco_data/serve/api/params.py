"""STAC API item-search parameters: parsing and validating ``bbox``, ``datetime``, ``ids``,
``collections``, ``limit`` and paging tokens, from a GET query string or a POST body."""

from __future__ import annotations

import datetime as dt
import math
import re
import json
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qs, urlencode

DEFAULT_LIMIT = 10
MAX_LIMIT = 10_000
#: deepest JSON nesting a request body may have (a GeoJSON MultiPolygon in a search body is 6)
MAX_DEPTH = 32
#: most coordinates an ``intersects`` geometry may have
MAX_COORDINATES = 100_000
UNSUPPORTED = ("filter", "query", "sortby", "fields")
#: RFC 3339 date-time (STAC API item search): a 4-digit year, ``T``, a time zone, ``.`` fractions
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$")
GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                  "GeometryCollection")


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
    intersects: dict | None = field(default=None, compare=False)  # the GeoJSON geometry as given
    geometry: object = field(default=None, compare=False, repr=False)  # ... as a shapely geometry

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
        if self.intersects is not None:
            p["intersects"] = self.intersects
        if self.offset:
            p["token"] = str(self.offset)
        return p

    def query_string(self) -> str:
        def text(v):
            if isinstance(v, dict):
                return json.dumps(v, separators=(",", ":"))
            return ",".join(map(_num, v)) if isinstance(v, list) else v

        return urlencode({k: text(v) for k, v in self.params().items()})


def _num(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------- parameter parsing
def parse_bbox(value, *, get: bool = False) -> tuple[float, float, float, float]:
    """A bbox: comma-separated numbers in a GET query, a JSON array of numbers in a POST body."""
    if get and isinstance(value, str):
        try:
            nums = [float(p) for p in value.split(",")]
        except ValueError:
            raise _bad("bbox", f"not numbers: {value!r}") from None
    elif not get and isinstance(value, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        nums = [float(v) for v in value]
    else:
        raise _bad("bbox", "expected 4 (or 6) numbers" + ("" if get else " as a JSON array"))
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
    """Microseconds since the epoch of an RFC 3339 date-time; a time zone is required."""
    if not isinstance(text, str) or not _RFC3339.match(text):
        raise _bad("datetime", f"{text!r} is not an RFC 3339 date-time with a time zone "
                               "(e.g. 2020-06-01T00:00:00Z)")
    try:
        t = dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError as e:  # month 13, day 32, hour 25 ...
        raise _bad("datetime", f"{text!r} is not a valid date-time: {e}") from None
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


def parse_intersects(value, *, get: bool = False):
    """``(geometry as given, shapely geometry)`` of a GeoJSON geometry (a JSON string in a GET query)."""
    import shapely
    import shapely.geometry

    if get:
        try:
            value = parse_json(value.encode("utf-8") if isinstance(value, str) else b"")
        except ApiError:
            raise _bad("intersects", "expected a GeoJSON geometry (JSON)") from None
    if not isinstance(value, dict) or value.get("type") not in GEOMETRY_TYPES:
        raise _bad("intersects", f"expected a GeoJSON geometry (type one of {', '.join(GEOMETRY_TYPES)})")
    key = "geometries" if value["type"] == "GeometryCollection" else "coordinates"
    if not isinstance(value.get(key), list):
        raise _bad("intersects", f"a {value['type']} needs a {key!r} array")
    try:
        geom = shapely.geometry.shape(value)
        count = shapely.get_num_coordinates(geom)
    except Exception as e:  # noqa: BLE001 - shapely raises many kinds for malformed coordinates
        raise _bad("intersects", f"not a valid GeoJSON geometry: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if count > MAX_COORDINATES:
        raise _bad("intersects", f"at most {MAX_COORDINATES} coordinates")
    if geom.is_empty:
        raise _bad("intersects", "the geometry is empty")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return value, geom


def parse_search(params: dict, *, get: bool = False) -> Query:
    """A :class:`Query` from search parameters: a POST body (``get=False``: typed JSON values), or a
    GET query with one string per key (``get=True``)."""
    for k in UNSUPPORTED:
        if params.get(k) not in (None, "", [], {}):
            raise _bad(k, "not supported by this server (supported: bbox, intersects, datetime, ids, "
                          "collections, limit)")
    q = Query()
    if params.get("bbox") not in (None, ""):
        q = replace(q, bbox=parse_bbox(params["bbox"], get=get))
    if params.get("intersects") not in (None, ""):
        if q.bbox is not None:
            raise _bad("intersects", "bbox and intersects cannot be used together")
        given, geom = parse_intersects(params["intersects"], get=get)
        q = replace(q, intersects=given, geometry=geom)
    if params.get("datetime") not in (None, ""):
        if not isinstance(params["datetime"], str):
            raise _bad("datetime", "expected a string")
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


def parse_json(body: bytes):
    """A request body's JSON, after checking its nesting is at most :data:`MAX_DEPTH` deep (Python's
    parser recurses: a 100k-deep body was a ``RecursionError`` and a 500)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "InvalidParameterValue", "the request body is not UTF-8") from None
    depth = 0
    for m in _JSON_TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise ApiError(400, "InvalidParameterValue", f"JSON nested deeper than {MAX_DEPTH} levels")
        elif c in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except ValueError as e:
        raise ApiError(400, "InvalidParameterValue", f"not JSON: {e}") from None


#: brackets outside JSON strings (strings are matched whole, so brackets inside them are skipped)
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
