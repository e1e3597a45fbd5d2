"""A loopback Earth Engine (Cloud API v1) for tests, speaking what earthengine-api 1.7 sends.

Routes (matched on path suffixes, as the wheel's discovery document uses ``/v1alpha/...`` paths):
- ``GET .../$discovery/rest`` and ``GET .../projects/<p>/algorithms``: the documents shipped in the
  ``ee`` wheel (``ee/tests/cloud_api_discovery_document.json``, ``ee/tests/algorithms.json``);
- ``POST .../projects/<p>/value:compute``: evaluates the serialized expression graph for the
  functions a scene search uses (``ImageCollection.load``, ``Collection.filter`` with
  ``Filter.intersects`` / ``Filter.dateRangeContains``, ``Collection.reduceColumns`` with
  ``Reducer.toList``, ``Collection.limit``, ``AggregateFeatureCollection.array``) over a scripted
  scene table;
- ``POST .../projects/<p>/image:computePixels``: evaluates the image graph (``Image.load``,
  ``select``, ``rename``, ``unmask``, ``mask``, ``reduce``, ``gt``, ``lt``, ``neq``, ``bitwiseAnd``,
  ``constant``, ``addBands``, ``toUint16``) on the requested grid and answers NPY bytes of a
  structured array (one field per band); 400 past the 48 MiB limit;
- ``POST /token``: an OAuth token endpoint for service-account keys pointing at this server.

Scenes: one every ``every_days`` days from 2015-07-01 (day index k); ``script(k)`` gives
``(scene cloud %, patch cloud fraction, valid fraction)`` or None (no acquisition). On any patch,
the invalid pixels are a strip at the top, the cloudy ones a strip at the bottom of the valid part;
DN are :func:`dn` of the pixel centre, band and k, so tests can recompute what was served.
Unknown functions, assets or bands answer 400 with Earth Engine's error shape.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import threading
from pathlib import Path

import numpy as np

from .base import LoopbackServer, Request, Response

EPOCH = dt.date(2015, 7, 1)
S2 = {"COPERNICUS/S2_HARMONIZED": "L1C", "COPERNICUS/S2_SR_HARMONIZED": "L2A"}
PROBABILITY = "COPERNICUS/S2_CLOUD_PROBABILITY"
CLOUD_SCORE = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"
EE_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
MAX_BYTES = 48 * 2**20
_INDEX = re.compile(r"(\d{8})T103021_\d{8}T103021_T(\w+)")


def dn(band: str, xc, yc, k: int) -> np.ndarray:
    """The DN served for an Earth Engine band name at pixel centres (xc, yc) of scene k (1..20000)."""
    ix = np.floor(np.asarray(xc) / 10).astype(np.int64)
    iy = np.floor(np.asarray(yc) / 10).astype(np.int64)
    return (1 + (ix * 3 + iy * 7 + EE_BANDS.index(band) * 1009 + k * 131) % 20000).astype(np.uint16)


def ee_band(name: str) -> str:
    return name[0] + name[1:].lstrip("0") if name[1:].isdigit() else name


class EvalError(Exception):
    pass


class _Img:
    """An evaluated image: band name -> (values, mask), values with their pixel type."""

    def __init__(self, bands: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.bands = bands


class EarthEngineServer(LoopbackServer):
    def __init__(self, script=None, *, project: str = "test-project", every_days: int = 5, require_auth: bool = False):
        super().__init__()
        self.script = script or (lambda k: (5.0, 0.0, 1.0))
        self.project = project
        self.every_days = every_days
        self.require_auth = require_auth
        self.tokens: list[str] = []
        self.searches: list[dict] = []  # collection, crs, bounds, start, end of every evaluated search
        self.pixel_requests: list[dict] = []  # grid, bandIds, fileFormat, loaded assets
        self._rec = threading.Condition()
        #: hold evaluations until this many are in flight at once, then let every one through (to observe
        #: concurrency without timing: a client that never overlaps them is let through after 10 s, and
        #: max_in_flight says so)
        self.gate = 0
        self.in_flight = self.max_in_flight = 0
        ee_tests = _ee_tests()
        discovery = (ee_tests / "cloud_api_discovery_document.json").read_bytes()
        algorithms = (ee_tests / "algorithms.json").read_bytes()
        js = {"Content-Type": "application/json; charset=UTF-8"}

        @self.route("GET", r".*/\$discovery/rest")
        def _discovery(req, m):
            return Response(200, discovery, js)

        @self.route("GET", r".*/projects/([^/]+)/algorithms")
        def _algorithms(req, m):
            return self._guard(req, m.group(1)) or Response(200, algorithms, js)

        @self.route("POST", r".*/projects/([^/]+)/value:compute")
        def _value(req, m):
            return self._guard(req, m.group(1)) or self._evaluate(req, pixels=False)

        @self.route("POST", r".*/projects/([^/]+)/image:computePixels")
        def _pixels(req, m):
            return self._guard(req, m.group(1)) or self._evaluate(req, pixels=True)

        @self.route("POST", r"/token")
        def _token(req, m):
            with self._rec:
                token = f"ya29.loopback-{len(self.tokens)}"
                self.tokens.append(token)
            return Response.json({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    # -- scenes ----------------------------------------------------------------------------------
    def scene_index(self, k: int, tile: str = "31TCJ") -> str:
        d = EPOCH + dt.timedelta(days=self.every_days * k)
        return f"{d:%Y%m%d}T103021_{d:%Y%m%d}T103021_T{tile}"

    def scene_k(self, index: str) -> int:
        m = _INDEX.fullmatch(index)
        if not m:
            raise EvalError(f"Image.load: Image asset with index '{index}' not found.")
        days = (dt.datetime.strptime(m.group(1), "%Y%m%d").date() - EPOCH).days
        k = days // self.every_days
        if days % self.every_days or k < 0 or self.script(k) is None:
            raise EvalError(f"Image.load: Image asset with index '{index}' not found.")
        return k

    def _table(self, coll: dict) -> list[dict]:
        if coll["id"] not in S2:
            raise EvalError(f"ImageCollection.load: ImageCollection asset '{coll['id']}' not found.")
        start = coll.get("start") or dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)
        end = coll.get("end") or start + dt.timedelta(days=30)
        tile = "31TCJ"
        if coll.get("bounds"):
            b = coll["bounds"]
            zone = int(b["crs"].split(":")[1]) % 100
            tile = f"{zone:02d}{'CDEFGHJKLMNPQRSTUVWX'[int(b['coords'][1] // 100000) % 20]}" \
                   f"{'ABCDEFGH'[int(b['coords'][0] // 100000) % 8]}{'ABCDEFGHJK'[int(b['coords'][1] // 10000) % 10]}"
        rows = []
        k = max(0, ((start.date() - EPOCH).days + self.every_days - 1) // self.every_days)
        while True:
            day = EPOCH + dt.timedelta(days=self.every_days * k)
            t = dt.datetime.combine(day, dt.time(10, 30, 21), tzinfo=dt.timezone.utc)
            if t >= end:
                break
            s = self.script(k)
            if s is not None and t >= start:
                rows.append({"system:index": self.scene_index(k, tile), "system:time_start": int(t.timestamp() * 1000),
                             "CLOUDY_PIXEL_PERCENTAGE": float(s[0]),
                             "SPACECRAFT_NAME": "Sentinel-2A" if k % 2 == 0 else "Sentinel-2B"})
            k += 1
        return rows[: coll["limit"]] if coll.get("limit") is not None else rows

    # -- what tests check ------------------------------------------------------------------------
    def expected(self, index: str, band: str, grid_x0: float, grid_y0: float, res: int, n: int) -> np.ndarray:
        """The (n, n) uint16 DN served for seco band ``band`` of scene ``index`` (0 where invalid)."""
        ctx = _grid_ctx(grid_x0, grid_y0, res, n)
        k = self.scene_k(index)
        valid, _ = self._strips(ctx, k)
        return np.where(valid, dn(ee_band(band), ctx["xc"], ctx["yc"], k), 0).astype(np.uint16)

    # -- handlers --------------------------------------------------------------------------------
    def _guard(self, req: Request, project: str) -> Response | None:
        if self.require_auth and req.headers.get("authorization", req.headers.get("Authorization", "")) \
                not in {f"Bearer {t}" for t in self.tokens}:
            return _error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        if project != self.project:
            return _error(403, f"Caller does not have required permission to use project {project}.",
                          "PERMISSION_DENIED")
        return None

    def _evaluate(self, req: Request, pixels: bool) -> Response:
        with self._rec:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.gate:
                if self.in_flight >= self.gate:
                    self.gate = 0  # reached: open for good
                    self._rec.notify_all()
                else:
                    self._rec.wait_for(lambda: not self.gate, timeout=10)
        try:
            return self._compute(req, pixels)
        finally:
            with self._rec:
                self.in_flight -= 1

    def _compute(self, req: Request, pixels: bool) -> Response:
        body = req.json()
        ctx: dict = {"loads": []}
        try:
            if pixels:
                g = body["grid"]
                at = g["affineTransform"]
                if at.get("shearX") or at.get("shearY") or at["scaleX"] != -at["scaleY"]:
                    raise EvalError("only north-up square grids are served here")
                n = g["dimensions"]["width"]
                if g["dimensions"]["height"] != n:
                    raise EvalError("only square grids are served here")
                ctx.update(_grid_ctx(at["translateX"], at["translateY"], at["scaleX"], n))
            value = _Graph(body["expression"], self, ctx).result()
            if not pixels:
                return Response.json({"result": value})
            if not isinstance(value, _Img):
                raise EvalError("computePixels: the expression is not an Image")
            names = body.get("bandIds") or list(value.bands)
            unknown = [b for b in names if b not in value.bands]
            if unknown:
                raise EvalError(f"Image.select: Band pattern '{unknown[0]}' did not match any bands.")
            dtype = np.dtype([(b, value.bands[b][0].dtype) for b in names])
            size = dtype.itemsize * n * n
            with self._rec:
                self.pixel_requests.append({"grid": g, "bandIds": names, "fileFormat": body.get("fileFormat"),
                                            "loads": ctx["loads"], "bytes": size})
            if len(names) > 1024 or size > MAX_BYTES:
                raise EvalError(f"Total request size ({size} bytes) must be less than or equal to {MAX_BYTES} bytes.")
            arr = np.zeros((n, n), dtype)
            for b in names:
                v, mk = value.bands[b]
                arr[b] = np.where(mk, v, 0)
            buf = io.BytesIO()
            np.save(buf, arr)
            return Response(200, buf.getvalue(), {"Content-Type": "application/octet-stream"})
        except EvalError as e:
            return _error(400, str(e), "INVALID_ARGUMENT")

    def _strips(self, ctx: dict, k: int) -> tuple[np.ndarray, np.ndarray]:
        _, cloud, valid = self.script(k)
        top, size = ctx["y0"], ctx["size"]
        ok = ctx["yc"] < top - (1 - valid) * size
        cloudy = ok & (ctx["yc"] < top - size + cloud * valid * size)
        return ok, cloudy

    def load(self, asset: str, ctx: dict) -> _Img:
        coll, _, index = asset.rpartition("/")
        k = self.scene_k(index)
        ctx["loads"].append(asset)
        valid, cloudy = self._strips(ctx, k)
        full = np.ones_like(valid)
        if coll in S2:
            bands = {b: (dn(b, ctx["xc"], ctx["yc"], k), valid) for b in EE_BANDS
                     if b != "B10" or S2[coll] == "L1C"}
            qa = np.where(cloudy, 1 << (10 + k % 2), 0).astype(np.uint16)  # opaque or cirrus bit
            bands["QA60"] = (qa, valid)
        elif coll == PROBABILITY:
            bands = {"probability": (np.where(cloudy, 90, 5).astype(np.uint8), full)}
        elif coll == CLOUD_SCORE:
            cs = np.where(cloudy, 0.2, 0.95).astype(np.float32)
            bands = {"cs": (cs, full), "cs_cdf": (cs, full)}
        else:
            raise EvalError(f"Image.load: Image asset '{asset}' not found.")
        return _Img(bands)


def _grid_ctx(x0, y0, res, n) -> dict:
    c = (np.arange(n) + 0.5) * res
    xc, yc = np.meshgrid(x0 + c, y0 - c)
    return {"xc": xc, "yc": yc, "y0": y0, "size": n * res, "shape": (n, n)}


def _error(code: int, message: str, status: str) -> Response:
    return Response.json({"error": {"code": code, "message": message, "status": status}}, code)


def _ee_tests() -> Path:
    import ee

    return Path(ee.__file__).parent / "tests"


def _parse_date(v) -> dt.datetime:
    if isinstance(v, (int, float)):
        return dt.datetime.fromtimestamp(v / 1000, dt.timezone.utc)
    d = dt.datetime.fromisoformat(str(v))
    return d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)


class _Graph:
    """Evaluates a serialized Earth Engine expression (``{"result", "values"}``)."""

    def __init__(self, expr: dict, server: EarthEngineServer, ctx: dict):
        self.values, self.root = expr["values"], expr["result"]
        self.server, self.ctx = server, ctx
        self.memo: dict[str, object] = {}

    def result(self):
        return self.ref(self.root)

    def ref(self, name: str):
        if name not in self.memo:
            self.memo[name] = self.node(self.values[name])
        return self.memo[name]

    def node(self, v: dict):
        if "constantValue" in v:
            return v["constantValue"]
        if "integerValue" in v:
            return int(v["integerValue"])
        if "valueReference" in v:
            return self.ref(v["valueReference"])
        if "arrayValue" in v:
            return [self.node(x) for x in v["arrayValue"]["values"]]
        if "dictionaryValue" in v:
            return {k: self.node(x) for k, x in v["dictionaryValue"]["values"].items()}
        if "functionInvocationValue" in v:
            f = v["functionInvocationValue"]
            name = f.get("functionName")
            fn = _FUNCTIONS.get(name)
            if fn is None:
                raise EvalError(f"test server: unsupported function {name!r}")
            args = {k: self.node(a) for k, a in f.get("arguments", {}).items()}
            return fn(self, **args)
        raise EvalError(f"test server: unsupported value {sorted(v)}")

    # -- helpers used by the functions -------------------------------------------------------
    def constant(self, value) -> _Img:
        shape = self.ctx["shape"]
        values = value if isinstance(value, list) else [value]
        names = ["constant"] if len(values) == 1 else [f"constant_{i}" for i in range(len(values))]
        return _Img({n: (np.full(shape, x, np.float64 if isinstance(x, float) else np.int64), np.ones(shape, bool))
                     for n, x in zip(names, values)})


def _img(g: _Graph, x) -> _Img:
    return x if isinstance(x, _Img) else g.constant(x)


def _select(g, input, bandSelectors, newNames=None):
    img = _img(g, input)
    missing = [b for b in bandSelectors if b not in img.bands]
    if missing:
        raise EvalError(f"Image.select: Band pattern '{missing[0]}' did not match any bands. "
                        f"Available bands: [{', '.join(img.bands)}]")
    names = newNames or bandSelectors
    return _Img({n: img.bands[b] for b, n in zip(bandSelectors, names)})


def _rename(g, input, names):
    img = _img(g, input)
    if len(names) != len(img.bands):
        raise EvalError(f"Image.rename: The number of names ({len(names)}) must match the number of bands "
                        f"({len(img.bands)}).")
    return _Img(dict(zip(names, img.bands.values())))


def _unmask(g, input, value=None, sameFootprint=True):
    img, fill = _img(g, input), _img(g, 0 if value is None else value)
    fv = next(iter(fill.bands.values()))[0]
    return _Img({b: (np.where(m, v, fv).astype(v.dtype), np.ones_like(m)) for b, (v, m) in img.bands.items()})


def _binary(op):
    def fn(g, image1, image2):
        a, b = _img(g, image1), _img(g, image2)
        bv, bm = next(iter(b.bands.values()))
        out = {}
        for name, (v, m) in a.bands.items():
            r = op(v, bv)
            out[name] = (r.astype(np.uint8) if r.dtype == bool else r, m & bm)
        return _Img(out)
    return fn


def _add_bands(g, dstImg, srcImg, names=None, overwrite=False):
    a, b = _img(g, dstImg), _img(g, srcImg)
    dup = [n for n in b.bands if n in a.bands]
    if dup and not overwrite:
        raise EvalError(f"Image.addBands: Can't add a band named '{dup[0]}' to an image because a band with "
                        "this name already exists.")
    return _Img({**a.bands, **b.bands})


def _reduce(g, image, reducer):
    if reducer != "min":
        raise EvalError(f"test server: unsupported reducer {reducer!r}")
    img = _img(g, image)
    vs = np.stack([v for v, _ in img.bands.values()])
    ms = np.stack([m for _, m in img.bands.values()])
    return _Img({"min": (vs.min(axis=0), ms.any(axis=0))})


def _load_collection(g, id):
    return {"id": id}


def _filter(g, collection, filter):
    out = dict(collection)
    kind, *rest = filter
    if kind == "bounds":
        out["bounds"] = rest[0]
    else:
        out["start"], out["end"] = rest
    return out


def _intersects(g, leftField, rightValue, maxError=None):
    if leftField != ".all" or not isinstance(rightValue, dict) or "coords" not in rightValue:
        raise EvalError("test server: Filter.intersects only on .all with a rectangle")
    return ("bounds", rightValue)


def _date_range_contains(g, leftValue, rightField):
    if rightField != "system:time_start":
        raise EvalError(f"test server: date filter on {rightField!r}")
    return ("date", *leftValue)


def _rectangle(g, coordinates, crs=None, geodesic=None, evenOdd=None):
    return {"coords": list(coordinates), "crs": crs or "EPSG:4326", "geodesic": geodesic}


def _reduce_columns(g, collection, reducer, selectors, weightSelectors=None):
    if not (isinstance(reducer, tuple) and reducer[0] == "toList" and reducer[1] == len(selectors)):
        raise EvalError("test server: reduceColumns needs Reducer.toList(len(selectors))")
    rows = _materialise(g, collection)
    return {"list": [[r.get(s) for s in selectors] for r in rows]}


def _materialise(g, collection) -> list[dict]:
    with g.server._rec:
        g.server.searches.append({"collection": collection["id"], "crs": (collection.get("bounds") or {}).get("crs"),
                                  "bounds": (collection.get("bounds") or {}).get("coords"),
                                  "start": collection.get("start"), "end": collection.get("end"),
                                  "limit": collection.get("limit")})
    return g.server._table(collection)


_FUNCTIONS = {
    "Image.load": lambda g, id, version=None: g.server.load(id, g.ctx),
    "Image.constant": lambda g, value: g.constant(value),
    "Image.select": _select,
    "Image.rename": _rename,
    "Image.unmask": _unmask,
    "Image.mask": lambda g, image: _Img({b: (m.astype(np.uint8), np.ones_like(m))
                                         for b, (v, m) in _img(g, image).bands.items()}),
    "Image.reduce": _reduce,
    "Image.gt": _binary(lambda a, b: a > b),
    "Image.lt": _binary(lambda a, b: a < b),
    "Image.neq": _binary(lambda a, b: a != b),
    "Image.bitwiseAnd": _binary(lambda a, b: np.bitwise_and(a.astype(np.int64), np.asarray(b, np.int64))),
    "Image.addBands": _add_bands,
    "Image.toUint16": lambda g, value: _Img({b: (np.clip(v, 0, 65535).astype(np.uint16), m)
                                             for b, (v, m) in _img(g, value).bands.items()}),
    "Reducer.min": lambda g: "min",
    "Reducer.toList": lambda g, tupleSize=None, numOptional=None: ("toList", tupleSize),
    "ImageCollection.load": _load_collection,
    "Collection.filter": _filter,
    "Collection.limit": lambda g, collection, limit=None, key=None, ascending=None: {**collection, "limit": limit},
    "Collection.reduceColumns": _reduce_columns,
    "AggregateFeatureCollection.array": lambda g, collection, property: [
        r.get(property) for r in _materialise(g, collection)],
    "Filter.intersects": _intersects,
    "Filter.dateRangeContains": _date_range_contains,
    "DateRange": lambda g, start, end=None, timeZone=None: (_parse_date(start), _parse_date(end)),
    "Feature": lambda g, geometry, metadata=None: geometry,
    "GeometryConstructors.Rectangle": _rectangle,
    "Projection": lambda g, crs, transform=None, transformWkt=None: crs,
}
