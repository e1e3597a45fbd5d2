"""A loopback STAC API serving small Cloud-Optimized GeoTIFFs, for the ``stac`` source tests.

:func:`make_scenes` writes the test data into a folder: a 9 x 9 km UTM tile (EPSG:32631) observed on
four dates (10 m B02 B03 B04 B08, 20 m B05 and an SCL asset with scripted clouds and no data, Earth
Search v1 asset keys), one scene of the same place in EPSG:4326 (collection ``s2-wgs84``, assets
found through ``eo:bands``), and a static catalog of the UTM scenes (``static/catalog.json`` with
a child collection and relative hrefs).

:class:`StacServer` answers ``GET /`` (landing page), ``GET /collections[/<id>]``, ``GET|POST
/search`` (bbox / intersects, datetime interval, collections, limit, ``next`` links carrying a
``token``), ``GET|HEAD /data/<file>`` (HTTP range requests), ``GET /static/...`` (the static
catalog) and ``GET /api/sas/v1/token/<collection>`` (a Planetary-Computer-style SAS token). With
``require_token`` set, data requests without the current token's ``sig`` are refused with 403.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

from .base import LoopbackServer, Request, Response, file_response

EPSG = 32631
ORIGIN = (600_000, 5_000_000)  # upper-left corner of the tile (x, y), on the 60 m lattice
SIZE_M = 9_000
BANDS_10M = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}
COLLECTION = "sentinel-2-l2a"
WGS84_COLLECTION = "s2-wgs84"


@dataclass(frozen=True)
class Scene:
    id: str
    date: dt.date
    cloud_cover: float
    #: SCL script: list of (class, (x0, y0, x1, y1) in metres from the tile's upper-left corner)
    scl: tuple = ()


#: two scenes per season window (anchors 2021-01-10 and 2021-04-15, 30-day windows)
SCENES = (
    # the clearer scene by scene-level cover, but a cloud and its shadow over the upper-left patch
    Scene("S2A_31TEJ_20210105_0_L2A", dt.date(2021, 1, 5), 5.0,
          ((8, (0, 0, 3000, 2000)), (9, (0, 2000, 3000, 3000)), (3, (3000, 0, 4000, 3000)))),
    Scene("S2B_31TEJ_20210115_0_L2A", dt.date(2021, 1, 15), 12.0, ((10, (6000, 6000, 9000, 9000)),)),
    # no data over the left third (outside the swath)
    Scene("S2A_31TEJ_20210410_0_L2A", dt.date(2021, 4, 10), 1.0, ((0, (0, 0, 3000, 9000)),)),
    Scene("S2B_31TEJ_20210420_0_L2A", dt.date(2021, 4, 20), 8.0, ()),
)


def band_pixels(scene_index: int, band: str, shape) -> np.ndarray:
    """Deterministic DN of one band of one scene on the tile (row-major pattern, never 0)."""
    h, w = shape
    r, c = np.mgrid[0:h, 0:w]
    k = list(BANDS_10M).index(band) if band in BANDS_10M else 7
    return (1 + 1000 * k + 97 * scene_index + (r * 13 + c * 7) % 991).astype(np.uint16)


def scl_pixels(scene: Scene, res: int = 20) -> np.ndarray:
    n = SIZE_M // res
    scl = np.full((n, n), 4, np.uint8)  # vegetation
    for cls, (x0, y0, x1, y1) in scene.scl:
        scl[y0 // res: y1 // res, x0 // res: x1 // res] = cls
    return scl


def wgs84_value(lon, lat, bounds) -> np.ndarray:
    """A smooth (linear) field in lon/lat, so a bilinear reprojection is easy to predict."""
    w, s, e, n = bounds
    return 1000 + 40000 * (np.asarray(lon) - w) / (e - w) + 20000 * (n - np.asarray(lat)) / (n - s)


def _write_cog(path: Path, arr: np.ndarray, crs: str, transform, nodata=None) -> None:
    import rasterio

    with rasterio.open(path, "w", driver="COG", width=arr.shape[1], height=arr.shape[0], count=1,
                       dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata, blocksize=256,
                       compress="deflate", overview_resampling="nearest") as ds:
        ds.write(arr, 1)


def _lonlat_bounds() -> tuple[float, float, float, float]:
    from seco_data.grid import to_lonlat

    x0, y0 = ORIGIN
    xs = [x0, x0 + SIZE_M, x0, x0 + SIZE_M]
    ys = [y0, y0, y0 - SIZE_M, y0 - SIZE_M]
    lons, lats = to_lonlat(EPSG, xs, ys)
    return min(lons), min(lats), max(lons), max(lats)


def _item(id_, t, cc, bounds, assets, collection, epsg) -> dict:
    w, s, e, n = bounds
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": id_, "collection": collection,
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
        "bbox": [w, s, e, n],
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "properties": {"datetime": f"{t:%Y-%m-%d}T10:30:00Z", "eo:cloud_cover": cc,
                       "platform": "sentinel-2a" if id_.startswith("S2A") else "sentinel-2b",
                       "proj:epsg": epsg},
        "links": [], "assets": assets,
    }


def make_scenes(root: Path) -> list[dict]:
    """Write the COGs and the static catalog under ``root``; return the API's items (hrefs are
    ``{base}/data/<file>`` templates, filled in with the server's address when served)."""
    from affine import Affine

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    bounds = _lonlat_bounds()
    items = []
    for i, sc in enumerate(SCENES):
        assets = {}
        for band, key in BANDS_10M.items():
            name = f"{sc.id}_{band}.tif"
            _write_cog(data / name, band_pixels(i, band, (900, 900)), f"EPSG:{EPSG}", Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), 0)
            assets[key] = {"href": f"{{base}}/data/{name}", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                           "roles": ["data"], "eo:bands": [{"name": band, "common_name": key}]}
        name = f"{sc.id}_B05.tif"
        _write_cog(data / name, band_pixels(i, "B05", (450, 450)), f"EPSG:{EPSG}", Affine(20, 0, ORIGIN[0], 0, -20, ORIGIN[1]), 0)
        assets["rededge1"] = {"href": f"{{base}}/data/{name}", "roles": ["data"], "eo:bands": [{"name": "B05"}]}
        name = f"{sc.id}_SCL.tif"
        _write_cog(data / name, scl_pixels(sc), f"EPSG:{EPSG}", Affine(20, 0, ORIGIN[0], 0, -20, ORIGIN[1]), 0)
        assets["scl"] = {"href": f"{{base}}/data/{name}", "roles": ["data"]}
        items.append(_item(sc.id, sc.date, sc.cloud_cover, bounds, assets, COLLECTION, EPSG))
    # the same place in EPSG:4326, ~0.0001 degree pixels, assets named only through eo:bands
    w, s, e, n = bounds[0] - 0.002, bounds[1] - 0.002, bounds[2] + 0.002, bounds[3] + 0.002
    res = 0.0001
    width, height = int(round((e - w) / res)), int(round((n - s) / res))
    lon = w + (np.arange(width) + 0.5) * res
    lat = n - (np.arange(height) + 0.5) * res
    field = np.round(wgs84_value(lon[None, :], lat[:, None], (w, s, e, n))).astype(np.uint16)
    assets = {}
    for band, common in BANDS_10M.items():
        name = f"WGS84_20210301_{band}.tif"
        _write_cog(data / name, field, "EPSG:4326", Affine(res, 0, w, 0, -res, n), 0)
        assets[f"band-{common}"] = {"href": f"{{base}}/data/{name}", "roles": ["data"],
                                    "eo:bands": [{"name": band, "common_name": common}]}
    items.append(_item("S2A_WGS84_20210301", dt.date(2021, 3, 1), 3.0, (w, s, e, n), assets, WGS84_COLLECTION, 4326))
    _write_static(root, [i for i in items if i["collection"] == COLLECTION])
    (root / "wgs84.json").write_text(json.dumps({"bounds": [w, s, e, n]}))
    return items


def _write_static(root: Path, items: list[dict]) -> None:
    """``static/catalog.json`` -> ``static/<collection>/collection.json`` -> items, relative hrefs."""
    base = root / "static"
    coll = base / COLLECTION
    (coll / "items").mkdir(parents=True, exist_ok=True)
    (base / "catalog.json").write_text(json.dumps({
        "type": "Catalog", "stac_version": "1.0.0", "id": "test-static", "description": "test",
        "links": [{"rel": "root", "href": "./catalog.json"}, {"rel": "child", "href": f"./{COLLECTION}/collection.json"}]}))
    links = [{"rel": "root", "href": "../catalog.json"}, {"rel": "parent", "href": "../catalog.json"}]
    for it in items:
        d = json.loads(json.dumps(it).replace("{base}/data/", "../../../data/"))
        d["links"] = [{"rel": "root", "href": "../../catalog.json"}, {"rel": "collection", "href": "../collection.json"}]
        (coll / "items" / f"{it['id']}.json").write_text(json.dumps(d))
        links.append({"rel": "item", "href": f"./items/{it['id']}.json"})
    w = min(i["bbox"][0] for i in items), min(i["bbox"][1] for i in items)
    e = max(i["bbox"][2] for i in items), max(i["bbox"][3] for i in items)
    (coll / "collection.json").write_text(json.dumps({
        "type": "Collection", "stac_version": "1.0.0", "id": COLLECTION, "description": "test", "license": "other",
        "extent": {"spatial": {"bbox": [[w[0], w[1], e[0], e[1]]]},
                   "temporal": {"interval": [["2021-01-01T00:00:00Z", "2021-12-31T00:00:00Z"]]}},
        "links": links}))


class StacServer(LoopbackServer):
    """See the module docstring. ``searches`` records every search's parameters (GET and POST)."""

    def __init__(self, root: Path, items: list[dict], page_size: int = 2):
        super().__init__()
        self.root, self.items, self.page_size = Path(root), items, page_size
        self.searches: list[dict] = []
        self.require_token = False
        self.token = "st=2021-01-01&se=2099-01-01&sp=rl&sig=c2VjcmV0"
        self.token_requests = 0
        self._slock = threading.Lock()
        self.route("GET", r"/")(self._landing)
        self.route("GET", r"/collections")(self._collections)
        self.route("GET", r"/collections/([^/]+)")(self._collection)
        self.route("GET", r"/search")(self._search)
        self.route("POST", r"/search")(self._search)
        self.route("GET", r"/data/([\w.\-]+)")(self._data)
        self.route("GET", r"/static/(.+)")(self._static)
        self.route("GET", r"/api/sas/v1/token/([\w\-]+)")(self._token)

    @staticmethod
    def _base(req: Request) -> str:
        return f"http://{req.headers.get('Host')}"

    def _served(self, item: dict, base: str) -> dict:
        d = json.loads(json.dumps(item).replace("{base}", base))
        d["links"] = [{"rel": "self", "href": f"{base}/collections/{item['collection']}/items/{item['id']}"},
                      {"rel": "collection", "href": f"{base}/collections/{item['collection']}"},
                      {"rel": "root", "href": f"{base}/"}]
        return d

    def _landing(self, req, m):
        b = self._base(req)
        return Response.json({
            "type": "Catalog", "stac_version": "1.0.0", "id": "loopback-stac", "description": "test STAC API",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
                           "https://api.stacspec.org/v1.0.0/item-search#query",
                           "https://api.stacspec.org/v1.0.0/collections",
                           "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
                           "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"],
            "links": [{"rel": "self", "href": f"{b}/", "type": "application/json"},
                      {"rel": "root", "href": f"{b}/", "type": "application/json"},
                      {"rel": "data", "href": f"{b}/collections", "type": "application/json"},
                      {"rel": "search", "href": f"{b}/search", "type": "application/geo+json", "method": "GET"},
                      {"rel": "search", "href": f"{b}/search", "type": "application/geo+json", "method": "POST"}]})

    def _coll_doc(self, cid: str, b: str) -> dict:
        return {"type": "Collection", "stac_version": "1.0.0", "id": cid, "description": cid, "license": "other",
                "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                           "temporal": {"interval": [["2015-06-23T00:00:00Z", None]]}},
                "links": [{"rel": "self", "href": f"{b}/collections/{cid}"}, {"rel": "root", "href": f"{b}/"},
                          {"rel": "items", "href": f"{b}/collections/{cid}/items"}]}

    def _collections(self, req, m):
        b = self._base(req)
        ids = sorted({i["collection"] for i in self.items})
        return Response.json({"collections": [self._coll_doc(c, b) for c in ids], "links": []})

    def _collection(self, req, m):
        if m.group(1) not in {i["collection"] for i in self.items}:
            return Response.json({"code": "NotFound", "description": "no such collection"}, 404)
        return Response.json(self._coll_doc(m.group(1), self._base(req)))

    def _search(self, req: Request, m):
        if req.method == "POST":
            p = req.json() or {}
        else:
            q = {k: v[0] for k, v in req.query.items()}
            p = dict(q)
            for key in ("intersects", "query"):
                if key in q:
                    p[key] = json.loads(q[key])
            if "bbox" in q:
                p["bbox"] = [float(v) for v in q["bbox"].split(",")]
            if "collections" in q:
                p["collections"] = q["collections"].split(",")
        with self._slock:
            self.searches.append({"method": req.method, **p})
        hits = [i for i in self.items if _matches(i, p)]
        hits.sort(key=lambda i: (i["properties"]["datetime"], i["id"]))
        offset = int(p.get("token") or 0)
        limit = min(int(p.get("limit") or 10), self.page_size)
        page = hits[offset: offset + limit]
        b = self._base(req)
        links = [{"rel": "root", "href": f"{b}/"}]
        if offset + limit < len(hits):
            nxt = {**{k: v for k, v in p.items() if k != "token"}, "token": str(offset + limit)}
            if req.method == "POST":
                links.append({"rel": "next", "href": f"{b}/search", "method": "POST", "body": nxt, "merge": False})
            else:
                enc = {k: (json.dumps(v) if isinstance(v, dict) else ",".join(map(str, v)) if isinstance(v, list) else v)
                       for k, v in nxt.items()}
                links.append({"rel": "next", "href": f"{b}/search?{urlencode(enc)}", "method": "GET"})
        return Response.json({"type": "FeatureCollection", "features": [self._served(i, b) for i in page],
                              "links": links, "numberMatched": len(hits), "numberReturned": len(page)},
                             headers={"Content-Type": "application/geo+json"})

    def _data(self, req: Request, m):
        path = self.root / "data" / m.group(1)
        if not path.is_file():
            return Response.json({"error": "not found"}, 404)
        if self.require_token and req.query.get("sig", [""])[0] != self.token.rsplit("sig=", 1)[1]:
            return Response(403, b"<Error><Code>AuthenticationFailed</Code></Error>", {"Content-Type": "application/xml"})
        return file_response(path, req)

    def _static(self, req: Request, m):
        rel = m.group(1)
        path = (self.root / "static" / rel).resolve()
        if ".." in rel or not path.is_file():
            return Response.json({"error": "not found"}, 404)
        return file_response(path, req, content_type="application/json")

    def _token(self, req: Request, m):
        with self._slock:
            self.token_requests += 1
        expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
        return Response.json({"msft:expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"), "token": self.token})

    # -- helpers for tests --------------------------------------------------------------------
    def data_requests(self, pattern: str = r"\.tif$") -> list[Request]:
        return [r for r in self.calls(path=r"^/data/") if re.search(pattern, r.path)]


def _matches(item: dict, p: dict) -> bool:
    from shapely.geometry import box, shape

    if p.get("collections") and item["collection"] not in p["collections"]:
        return False
    geom = shape(item["geometry"])
    if p.get("intersects") and not geom.intersects(shape(p["intersects"])):
        return False
    if p.get("bbox") and not geom.intersects(box(*p["bbox"][:4])):
        return False
    if p.get("datetime"):
        start, _, end = str(p["datetime"]).partition("/")
        t = item["properties"]["datetime"]
        if start not in ("", "..") and _ts(t) < _ts(start):
            return False
        if end not in ("", "..") and _ts(t) > _ts(end or start):
            return False
    for prop, ops in (p.get("query") or {}).items():
        v = item["properties"].get(prop)
        for op, ref in ops.items():
            if v is None or not {"lt": v < ref, "lte": v <= ref, "gt": v > ref, "gte": v >= ref,
                                 "eq": v == ref}.get(op, True):
                return False
    return True


def _ts(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
