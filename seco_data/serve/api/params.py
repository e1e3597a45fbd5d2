"""STAC API item-search parameters: parsing and validating ``bbox``, ``datetime``, ``ids``,
``collections``, ``limit`` and paging tokens, from a GET query string or a POST body."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, urlencode

DEFAULT_LIMIT = 10
MAX_LIMIT = 10_000
UNSUPPORTED = ("intersects", "filter", "query", "sortby")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")


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
