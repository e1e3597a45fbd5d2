"""`seco-data catalog serve`: static STAC files, the STAC API, CORS, ranges and path safety.

Every test talks to a real server on 127.0.0.1 (port 0) over the simulator's demo catalog, or over a
generated catalog whose items.parquet holds many rows (built with pyarrow from the demo's rows).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from helpers import index_items
from seco_data.serve.server import Forbidden, is_loopback, make_server, parse_range, safe_segments, start_server
from seco_data.errors import CatalogError, UsageError

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # requests (pystac-client) and GDAL honour proxy variables: never send 127.0.0.1 through one
    for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def served(demo_catalog):
    server, url = start_server(demo_catalog)
    yield url
    server.shutdown()
    server.server_close()


def request(url: str, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    """(status, headers, body) for a raw request target: no client-side normalisation of ``path``."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True,
                        skip_host=any(k.lower() == "host" for k in headers or {}))
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get_json(url: str, path: str) -> dict:
    status, headers, body = request(url, path)
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


def demo_items(root: Path) -> list[dict]:
    """The items of a catalog as stored (compact: rows of items.parquet; per-patch: the item JSON files)."""
    files = sorted(root.glob("[0-9]*/[0-9]*/*.json"))
    return [json.loads(p.read_text()) for p in files] if files else index_items(root)


@pytest.fixture(scope="module")
def served_per_patch(per_patch_catalog):
    server, url = start_server(per_patch_catalog)
    yield url
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------- a generated bigger catalog
def make_big(demo: Path, out: Path, n: int, seed: int = 0) -> dict:
    """A catalog of ``n`` items (rows of the demo's items.parquet with new ids, boxes and times);
    returns the generated columns, the independent truth the tests filter."""
    out.mkdir(parents=True)
    for f in ("catalog.json", "collection.json"):
        shutil.copy(demo / f, out / f)
    import shapely

    t = pq.read_table(demo / "items.parquet")
    t = pa.concat_tables([t] * (n // t.num_rows + 1)).slice(0, n)
    rng = np.random.default_rng(seed)
    lon = rng.uniform(-179.5, 179.0, n)
    lat = rng.uniform(-60, 70, n)
    size = 0.5
    crossing = np.arange(n) % 97 == 0  # some boxes cross the antimeridian (xmin > xmax)
    lon[crossing] = 179.8
    xmax = np.where(crossing, -179.7, lon + size)
    ids = [f"big-{i:06d}" for i in range(n)]
    micros = (dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc) - EPOCH).total_seconds() * 1e6 + \
        rng.integers(0, 3 * 365 * 86400, n) * 1_000_000
    micros = micros.astype(np.int64)
    geoms = shapely.to_wkb(shapely.box(lon, lat, np.where(crossing, 180.0, xmax), lat + size))
    cols = {
        "id": pa.array(ids),
        "bbox": pa.StructArray.from_arrays([pa.array(v) for v in (lon, lat, xmax, lat + size)],
                                           names=["xmin", "ymin", "xmax", "ymax"]),
        "datetime": pa.array(micros).cast(pa.timestamp("us", tz="UTC")),
        "geometry": pa.array(geoms, pa.binary()),
    }
    for name, arr in cols.items():
        i = t.schema.get_field_index(name)
        t = t.set_column(i, t.schema.field(i), arr)
    pq.write_table(t, out / "items.parquet", row_group_size=5000)
    return {"id": ids, "xmin": lon, "ymin": lat, "xmax": xmax, "ymax": lat + size, "t": micros}


def truth(cols: dict, bbox=None, start=None, end=None) -> list[str]:
    """Ids matching a search, by a plain Python loop over the generated columns."""
    out = []
    for i, item_id in enumerate(cols["id"]):
        if bbox is not None:
            w, s, e, n = bbox
            if not (cols["ymin"][i] <= n and cols["ymax"][i] >= s):
                continue
            q = [(w, e)] if w <= e else [(w, 180), (-180, e)]
            x0, x1 = cols["xmin"][i], cols["xmax"][i]
            boxes = [(x0, x1)] if x0 <= x1 else [(x0, 180), (-180, x1)]
            if not any(a <= qe and b >= qw for qw, qe in q for a, b in boxes):
                continue
        t = EPOCH + dt.timedelta(microseconds=int(cols["t"][i]))
        if start is not None and t < start:
            continue
        if end is not None and t > end:
            continue
        out.append(item_id)
    return out


@pytest.fixture(scope="module")
def big(demo_catalog, tmp_path_factory):
    root = tmp_path_factory.mktemp("big") / "big"
    cols = make_big(demo_catalog, root, 3000)
    server, url = start_server(root)
    yield url, cols
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------- STAC API through pystac-client
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_pystac_client_search_pages_match_an_independent_filter(big, method):
    from pystac_client import Client

    url, cols = big
    client = Client.open(url + "/api")
    bbox = [-20.0, -10.0, 60.0, 50.0]
    start = dt.datetime(2020, 6, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(2021, 5, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
    search = client.search(bbox=bbox, datetime=[start, end], limit=25, method=method)
    pages = [[it.id for it in page.items] for page in search.pages()]
    got = [i for p in pages for i in p]
    expected = truth(cols, bbox, start, end)
    assert 100 < len(expected) < len(cols["id"]) // 2  # the filter selects, and paging is needed
    assert len(pages) == -(-len(expected) // 25) and all(len(p) == 25 for p in pages[:-1])
    assert got == expected  # same items, file order, none twice
    assert search.matched() == len(expected)


def test_search_antimeridian_open_intervals_and_ids(big):
    from pystac_client import Client

    url, cols = big
    client = Client.open(url + "/api")
    bbox = [170.0, -70.0, -170.0, 80.0]  # crosses the antimeridian
    got = [it.id for it in client.search(bbox=bbox, limit=100).items()]
    assert got == truth(cols, bbox) and len(got) >= 3000 // 97

    cut = dt.datetime(2020, 3, 1, tzinfo=dt.timezone.utc)
    got = [it.id for it in client.search(datetime="../2020-03-01T00:00:00Z", limit=500).items()]
    assert got == truth(cols, end=cut) and got
    got = [it.id for it in client.search(datetime="2022-10-01T00:00:00Z/..", limit=500, method="GET").items()]
    assert got == truth(cols, start=dt.datetime(2022, 10, 1, tzinfo=dt.timezone.utc)) and got

    t = EPOCH + dt.timedelta(microseconds=int(cols["t"][1234]))  # an instant: items at exactly that time
    got = [it.id for it in client.search(datetime=t.strftime("%Y-%m-%dT%H:%M:%SZ")).items()]
    assert "big-001234" in got and got == truth(cols, start=t, end=t)

    want = ["big-000007", "big-002999", "big-001500"]
    got = [it.id for it in client.search(ids=want + ["no-such-item"]).items()]
    assert sorted(got) == sorted(want)
    assert [it.id for it in client.search(collections=["demo"], max_items=3).items()] == cols["id"][:3]
    assert list(client.search(collections=["other"]).items()) == []


def test_search_item_assets_are_absolute_and_fetchable(served, demo_catalog, served_per_patch, per_patch_catalog):
    from pystac_client import Client

    # compact: the location's item; its files in the part folder; no item JSON to point to
    items = list(Client.open(served + "/api").search(ids=["demo-0000001"]).items())
    assert [i.id for i in items] == ["demo-0000001"]
    href = items[0].assets["data_10m"].href
    assert href == f"{served}/0000/demo-0000001_10m.tif"
    with urllib.request.urlopen(href) as r:
        assert r.read() == (demo_catalog / "0000/demo-0000001_10m.tif").read_bytes()
    assert [link.href for link in items[0].links if link.rel == "alternate"] == []
    # per-patch: a season's item, and its JSON file as the alternate
    served = served_per_patch
    items = list(Client.open(served + "/api").search(ids=["demo-0000001-s2"]).items())
    assert [i.id for i in items] == ["demo-0000001-s2"]
    href = items[0].assets["data_10m"].href
    assert href == f"{served}/0000/0000001/demo-0000001-s2_10m.tif"
    with urllib.request.urlopen(href) as r:
        assert r.read() == (per_patch_catalog / "0000/0000001/demo-0000001-s2_10m.tif").read_bytes()
    alternate = [link.href for link in items[0].links if link.rel == "alternate"]
    assert alternate == [f"{served}/0000/0000001/demo-0000001-s2.json"]
    assert get_json(served, "/0000/0000001/demo-0000001-s2.json")["id"] == "demo-0000001-s2"


def test_api_documents_and_collection_items(served, demo_catalog):
    landing = get_json(served, "/api")
    assert {"https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
            "https://api.stacspec.org/v1.0.0/collections",
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core"} <= set(landing["conformsTo"])
    rels = {(link["rel"], link.get("method")) for link in landing["links"]}
    assert {("self", None), ("root", None), ("conformance", None), ("data", None), ("search", "GET"),
            ("search", "POST")} <= rels
    assert get_json(served, "/api/conformance")["conformsTo"] == landing["conformsTo"]
    colls = get_json(served, "/api/collections")["collections"]
    assert [c["id"] for c in colls] == ["demo"]
    coll = get_json(served, "/api/collections/demo")
    assert coll["extent"] == json.loads((demo_catalog / "collection.json").read_text())["extent"]
    links = {link["rel"]: link["href"] for link in coll["links"]}
    assert links["self"] == f"{served}/api/collections/demo"
    assert links["items"] == f"{served}/api/collections/demo/items"
    assert all(link["href"].startswith("http") for link in coll["links"])

    ids, path = [], "/api/collections/demo/items?limit=2"
    while path:
        page = get_json(served, path)
        assert page["numberMatched"] == 5 and page["numberReturned"] == len(page["features"])
        ids += [f["id"] for f in page["features"]]
        nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
        path = nxt[0].removeprefix(served) if nxt else None
    assert ids == sorted(i["id"] for i in demo_items(demo_catalog))

    item = get_json(served, "/api/collections/demo/items/demo-0000006")
    assert item["id"] == "demo-0000006" and len(item["properties"]["seco:seasons"]) == 4
    assert item["properties"] == next(i for i in demo_items(demo_catalog) if i["id"] == "demo-0000006")["properties"]
    for path in ("/api/collections/demo/items/nope", "/api/collections/nope", "/api/collections/nope/items",
                 "/api/nothing"):
        status, _, body = request(served, path)
        assert status == 404 and json.loads(body)["code"] == "NotFound", path


@pytest.mark.parametrize("query,parameter", [
    ("bbox=1,2,3", "bbox"),
    ("bbox=a,b,c,d", "bbox"),
    ("bbox=0,50,10,40", "bbox"),
    ("datetime=yesterday", "datetime"),
    ("datetime=../..", "datetime"),
    ("datetime=2021-01-01T00:00:00Z/2020-01-01T00:00:00Z", "datetime"),
    ("limit=0", "limit"),
    ("limit=ten", "limit"),
    ("token=abc", "token"),
    ("intersects=%7B%7D", "intersects"),
    ("intersects=not-json", "intersects"),
    ("intersects=%7B%22type%22%3A%22Polygon%22%2C%22coordinates%22%3A%5B%5B1%5D%5D%7D", "intersects"),
    ("datetime=1985-13-12T23:20:50.52Z", "datetime"),  # month 13 (a 500 before)
    ("datetime=2020-01-01T00:00:00", "datetime"),  # no time zone
    ("datetime=2020-01-01", "datetime"),
])
def test_invalid_search_parameters_are_400_naming_them(served, query, parameter):
    status, headers, body = request(served, "/api/search?" + query)
    assert status == 400 and headers["content-type"] == "application/json"
    err = json.loads(body)
    assert err["parameter"] == parameter and err["description"].startswith(parameter)


def test_post_search_body_and_paging(served):
    def post(body):
        return request(served, "/api/search", "POST", {"Content-Type": "application/json"},
                       json.dumps(body).encode() if not isinstance(body, bytes) else body)

    status, _, body = post({"limit": 2, "bbox": [-180, -90, 180, 90]})
    page = json.loads(body)
    assert status == 200 and page["numberReturned"] == 2 and page["numberMatched"] == 5
    nxt = [link for link in page["links"] if link["rel"] == "next"][0]
    assert nxt["method"] == "POST" and nxt["body"]["token"] == "2" and nxt["body"]["bbox"] == [-180, -90, 180, 90]
    page2 = json.loads(post(nxt["body"])[2])
    assert len({f["id"] for f in page["features"]} | {f["id"] for f in page2["features"]}) == 4
    assert post(b"{not json")[0] == 400
    status, _, body = post({"bbox": [1, 2]})
    assert status == 400 and json.loads(body)["parameter"] == "bbox"
    status, _, body = post({"limit": 20000})  # larger than the maximum: clamped, not an error
    assert status == 200 and json.loads(body)["numberReturned"] == 5


def test_pystac_reads_the_static_catalog(served_per_patch, per_patch_catalog):
    """Per-patch catalogs are browsable as static files (compact ones through the API: above)."""
    import pystac

    served = served_per_patch
    cat = pystac.Catalog.from_file(served + "/catalog.json")
    items = list(cat.get_items(recursive=True))
    assert sorted(i.id for i in items) == sorted(i["id"] for i in demo_items(per_patch_catalog)) and len(items) == 8
    href = items[0].assets["data_20m"].get_absolute_href()
    assert href.startswith(served + "/0000/")
    with urllib.request.urlopen(href) as r:
        assert r.headers["Content-Type"] == "image/tiff; application=geotiff"


# ---------------------------------------------------------------------- HTTP behaviour
def test_cors_on_every_response_and_preflight(served):
    for path in ("/catalog.json", "/api/search", "/api/search?limit=zero", "/missing.json", "/../x"):
        _, headers, _ = request(served, path)
        assert headers["access-control-allow-origin"] == "*", path
        assert "Content-Range" in headers["access-control-expose-headers"]
    status, headers, body = request(served, "/api/search", "OPTIONS", {
        "Origin": "https://radiantearth.github.io", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 204 and body == b""
    assert headers["access-control-allow-origin"] == "*"
    assert {"GET", "HEAD", "POST", "OPTIONS"} <= {m.strip() for m in headers["access-control-allow-methods"].split(",")}
    allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "range"} <= allowed
    exposed = {h.strip().lower() for h in headers["access-control-expose-headers"].split(",")}
    assert {"content-range", "content-length", "etag"} <= exposed


def test_range_requests_types_and_caching(served, demo_catalog):
    rel = "0000/demo-0000002_10m.tif"
    data = (demo_catalog / rel).read_bytes()
    size = len(data)
    status, h, body = request(served, "/" + rel, headers={"Range": "bytes=100-1123"})
    assert status == 206 and body == data[100:1124] and h["content-range"] == f"bytes 100-1123/{size}"
    assert h["content-length"] == "1024" and h["content-type"] == "image/tiff; application=geotiff"
    status, h, body = request(served, "/" + rel, headers={"Range": "bytes=-10"})
    assert status == 206 and body == data[-10:]
    status, h, body = request(served, "/" + rel, headers={"Range": f"bytes={size - 5}-"})
    assert status == 206 and body == data[-5:] and h["content-range"] == f"bytes {size - 5}-{size - 1}/{size}"
    status, h, body = request(served, "/" + rel, headers={"Range": f"bytes={size}-{size + 10}"})
    assert status == 416 and h["content-range"] == f"bytes */{size}"
    status, h, body = request(served, "/" + rel, headers={"Range": "bytes=0-1,5-9"})  # several: whole file
    assert status == 200 and body == data
    status, h, body = request(served, "/" + rel)
    assert status == 200 and body == data and h["accept-ranges"] == "bytes"
    status, h2, body = request(served, "/" + rel, "HEAD")
    assert status == 200 and body == b"" and h2["content-length"] == str(size)
    status, _, body = request(served, "/" + rel, headers={"If-None-Match": h["etag"]})
    assert status == 304 and body == b""
    status, _, body = request(served, "/" + rel, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert status == 200 and body == data  # the file changed since: the whole file
    status, _, body = request(served, "/" + rel, headers={"Range": "bytes=0-9", "If-Range": h["etag"]})
    assert status == 206 and body == data[:10]
    for path, ctype in (("/catalog.json", "application/json"), ("/items.parquet", "application/vnd.apache.parquet")):
        status, h, body = request(served, path)
        assert status == 200 and h["content-type"] == ctype and body == (demo_catalog / path[1:]).read_bytes()


def test_parse_range():
    assert parse_range("bytes=0-0", 10) == (0, 0)
    assert parse_range("bytes=5-100", 10) == (5, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=-30", 10) == (0, 9)
    assert parse_range("bytes=10-", 10) == "unsatisfiable"
    assert parse_range("bytes=-0", 10) == "unsatisfiable"
    for bad in ("bytes=5-2", "items=0-1", "bytes=-", "bytes=1-2,4-5", ""):
        assert parse_range(bad, 10) is None


def test_rasterio_opens_a_served_geotiff_by_vsicurl(served, demo_catalog):
    import rasterio

    rel = "0000/demo-0000006_20m.tif"
    with rasterio.open(demo_catalog / rel) as src:
        local, profile = src.read(), src.profile
    env = dict(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GDAL_HTTP_MAX_RETRY="0", CPL_VSIL_CURL_USE_HEAD="YES",
               VSI_CACHE="FALSE")
    try:
        with rasterio.Env(**env), rasterio.open(f"/vsicurl/{served}/{rel}") as src:
            remote, remote_profile = src.read(), src.profile
    except rasterio.errors.RasterioIOError as e:
        if "curl" in str(e).lower() and "support" in str(e).lower():
            pytest.skip(f"this GDAL has no curl support: {e}")
        raise
    assert np.array_equal(local, remote)
    assert remote_profile["crs"] == profile["crs"] and remote_profile["transform"] == profile["transform"]


# ---------------------------------------------------------------------- safety
@pytest.fixture()
def guarded(demo_catalog, tmp_path):
    """A catalog next to a secret file, with symlinks inside it pointing out (and one pointing in)."""
    secret = b"TOP-SECRET-" + os.urandom(8).hex().encode()
    (tmp_path / "secret.txt").write_bytes(secret)
    root = tmp_path / "cat"
    shutil.copytree(demo_catalog, root)
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (root / "leakdir").symlink_to(tmp_path, target_is_directory=True)
    (root / "0000" / "alias.json").symlink_to(root / "catalog.json")
    (root / "0000" / "ledger.json").symlink_to(root / "ledger.sqlite")  # allowed name, forbidden target
    (root / ".partial.json").write_bytes(secret)
    (root / ".hidden").mkdir()
    (root / ".hidden" / "item.json").write_bytes(secret)
    server, url = start_server(root)
    yield url, root, tmp_path, secret
    server.shutdown()
    server.server_close()


def test_safe_segments():
    assert safe_segments("/0000//0000001/a%20b.json") == ["0000", "0000001", "a b.json"]
    assert safe_segments("/") == []
    for bad in ("/a/../b", "/a/%2e%2e/b", "/a/%2E./b", "/./a", "/a%2fb", "/a%5cb", "/a\\b", "/%252e%252e/x",
                "/a%00b", "/a%0ab"):
        with pytest.raises(Forbidden):
            safe_segments(bad)


def test_no_path_outside_the_catalog_is_served(guarded):
    url, root, outside, secret = guarded
    absolute = str(outside / "secret.txt")
    attempts = [
        "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt", "/%252e%252e/secret.txt", "/%252e%252e%252fsecret.txt",
        "/..%5csecret.txt", "/..\\secret.txt", "/0000/../../secret.txt", "/0000/%2e%2e/%2e%2e/secret.txt",
        "/%00/../secret.txt", "/secret.txt%00.json", "/leak.txt", "/leakdir/secret.txt",
        "/" + absolute, "//" + absolute, "/%2f" + absolute.lstrip("/"),
        "http://evil/../secret.txt", "/viewer/../../secret.txt", "/viewer/%2e%2e/%2e%2e/secret.txt",
        "/api/../../secret.txt", "/..%c0%afsecret.txt", "/%c0%ae%c0%ae/secret.txt",
    ]
    for path in attempts:
        status, _, body = request(url, path)
        assert status in (400, 403, 404), (path, status)
        assert secret not in body, path
    status, _, body = request(url, "/0000/alias.json")  # a symlink that stays inside is fine
    assert status == 200 and body == (root / "catalog.json").read_bytes()


def test_dot_files_and_directories_are_not_served(guarded):
    url, root, _, secret = guarded
    ledger = (root / "ledger.sqlite").read_bytes()[:100]
    assert ledger.startswith(b"SQLite format 3")
    for path in ("/ledger.sqlite", "/recipe.yaml", "/0000/ledger.json", "/LEDGER.SQLITE"):  # the allow-list
        status, _, body = request(url, path)
        assert status == 404 and ledger not in body, path
    for path in ("/.partial.json", "/.hidden/item.json", "/%2ehidden/item.json", "/.seco.lock", "/0000",
                 "/0000/", "/0000/0000001/"):
        status, _, body = request(url, path)
        assert status == 404 and secret not in body, path
    status, headers, _ = request(url, "/")
    assert status == 302 and headers["location"] == "/viewer/"


def test_read_only(guarded):
    url, root, _, _ = guarded
    before = (root / "catalog.json").read_bytes()
    for method in ("PUT", "DELETE", "PATCH", "POST", "MKCOL", "PROPFIND"):
        status, headers, _ = request(url, "/catalog.json", method, body=b'{"hacked": true}')
        assert status == 405 and "GET" in headers["allow"], method
    for path in ("/api/collections", "/api", "/new.json"):
        assert request(url, path, "POST", body=b"{}")[0] == 405, path
    assert request(url, "/api/search", "PUT", body=b"{}")[0] == 405
    assert (root / "catalog.json").read_bytes() == before
    assert not (root / "new.json").exists()


def test_viewer_route(demo_catalog, monkeypatch):
    built = []

    class Site:
        def __init__(self, root, asset_base, api_base=None):
            built.append((Path(root), asset_base, api_base))

        def get(self, path):
            pages = {"": (b"<html>index</html>", "text/html; charset=utf-8"),
                     "app.js": (b"js", "text/javascript; charset=utf-8")}
            return pages.get(path)

    monkeypatch.setitem(sys.modules, "seco_data.serve.viewer", types.SimpleNamespace(Site=Site))
    server, url = start_server(demo_catalog)
    try:
        assert request(url, "/viewer/") [:3:2] == (200, b"<html>index</html>")
        status, headers, body = request(url, "/viewer/app.js")
        assert status == 200 and body == b"js" and headers["content-type"].startswith("text/javascript")
        assert request(url, "/viewer/nope.html")[0] == 404
        assert request(url, "/viewer")[1]["location"] == "/viewer/"
        assert built == [(demo_catalog.resolve(), "/", "/api/")]  # built once per server, linking its STAC API
    finally:
        server.shutdown()
        server.server_close()


def test_index_reloads_when_items_parquet_changes(demo_catalog, tmp_path):
    root = tmp_path / "cat"
    shutil.copytree(demo_catalog, root)
    server, url = start_server(root)
    try:
        assert get_json(url, "/api/search?limit=1")["numberMatched"] == 5
        t = pq.read_table(root / "items.parquet")
        pq.write_table(t.slice(0, 2), root / "items.parquet")
        assert get_json(url, "/api/search?limit=1")["numberMatched"] == 2
    finally:
        server.shutdown()
        server.server_close()


def test_search_pages_through_100k_items(demo_catalog, tmp_path):
    """Correct pages at the size the issue asks to stay fast; the timings are in bench/bench_scale.py (api)."""
    cols = make_big(demo_catalog, tmp_path / "big", 100_000, seed=1)
    server, url = start_server(tmp_path / "big")
    try:
        get_json(url, "/api")
        bbox = [0.0, 0.0, 40.0, 40.0]
        path = "/api/search?limit=100&bbox=0,0,40,40&datetime=2021-01-01T00:00:00Z/2021-12-31T23:59:59Z"
        ids, pages = [], 0
        while path and pages < 5:
            page = get_json(url, path)
            ids += [f["id"] for f in page["features"]]
            nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
            path, pages = (nxt[0].removeprefix(url) if nxt else None), pages + 1
        expected = truth(cols, bbox, dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc),
                         dt.datetime(2021, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc))
        assert page["numberMatched"] == len(expected) > 500 and ids == expected[:500]
        last = get_json(url, "/api/search?limit=10&token=99990")
        assert [f["id"] for f in last["features"]] == cols["id"][-10:]
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------- library and CLI errors
def test_make_server_errors(demo_catalog, tmp_path):
    with pytest.raises(CatalogError, match="not a seco catalog"):
        make_server(tmp_path)
    (tmp_path / "catalog.json").write_text("{}")
    (tmp_path / "collection.json").write_text("{}")
    with pytest.raises(CatalogError, match="items.parquet") as e:
        make_server(tmp_path)
    assert "rebuild" in e.value.hint
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(UsageError, match="already in use"):
            make_server(demo_catalog, port=busy.getsockname()[1])


def test_is_loopback():
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "127.1.2.3"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.10", "::", "example.org"]))


def test_cli_serve_errors_are_one_line(demo_catalog, tmp_path):
    from seco_cli.data import main

    runner = CliRunner()
    r = runner.invoke(main, ["catalog", "serve", str(tmp_path)])
    assert r.exit_code == CatalogError.exit_code and "Traceback" not in r.output
    assert r.output.startswith("Error: ") and "hint:" in r.output and r.output.count("\n") == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = runner.invoke(main, ["catalog", "serve", str(demo_catalog), "--port", str(port)])
    assert r.exit_code == UsageError.exit_code and "Traceback" not in r.output
    assert f"port {port}" in r.output and "--port" in r.output and r.output.count("\n") == 1


def test_cli_serve_runs_until_ctrl_c(demo_catalog):
    code = "from seco_cli.data import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "catalog", "serve", str(demo_catalog), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "STAC API" in line:
                break
        api = lines[-1].split()[-1]
        assert api.startswith("http://127.0.0.1:") and api.endswith("/api"), lines
        base = api.removesuffix("/api")
        assert any(f"{base}/viewer/" in x for x in lines) and any(f"{base}/catalog.json" in x for x in lines)
        with urllib.request.urlopen(base + "/catalog.json") as r:
            assert json.load(r)["type"] == "Catalog"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopped" in out


# ---------------------------------------------------------------------- conformance, intersects, hardening
def test_stac_api_validator_finds_no_errors(served, demo_catalog, schemas, monkeypatch):
    """stac-api-validator (the field's conformance checker) over core, item-search, collections and
    features, its schemas read from the offline copy (any other schema URL fails the run)."""
    import shapely.geometry
    import stac_validator.utilities as utilities
    from stac_api_validator.validations import QueryConfig, validate_api

    fetch = utilities.fetch_and_parse_file

    def offline(path, headers=None):
        if path.startswith(("http://", "https://")) and not path.startswith(served):
            local = schemas / path.split("://", 1)[1].split("#")[0]
            if not local.is_file():
                raise FileNotFoundError(f"schema not in the offline copy: {path}")
            return json.loads(local.read_text())
        return fetch(path, headers)

    monkeypatch.setattr(utilities, "fetch_and_parse_file", offline)
    utilities._schema_cache.cache_clear()
    item = get_json(served, "/api/search?limit=1")["features"][0]
    point = shapely.geometry.shape(item["geometry"]).centroid
    with warnings.catch_warnings():  # the validator's own use of pystac's deprecated get_all_items
        warnings.simplefilter("ignore", DeprecationWarning)
        _, errors = validate_api(
        root_url=served + "/api", ccs_to_validate=["core", "item-search", "collections", "features"],
            collection=item["collection"], geometry=json.dumps({"type": "Point", "coordinates": [point.x, point.y]}),
            auth_bearer_token=None, auth_query_parameter=None, fields_nested_property=None,
            validate_pagination=True, query_config=QueryConfig(*[None] * 13), transaction_collection=None,
            headers={})
    assert list(errors) == []
    landing = get_json(served, "/api")
    desc = next(link for link in landing["links"] if link["rel"] == "service-desc")
    status, headers, body = request(served, desc["href"].removeprefix(served))
    assert status == 200 and headers["content-type"] == desc["type"] and json.loads(body)["openapi"].startswith("3.")
    from openapi_spec_validator import validate

    validate(json.loads(body))  # a valid OpenAPI 3.0 document (raises otherwise)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_pystac_client_intersects_matches_shapely(big, method):
    import shapely
    import shapely.geometry
    from pystac_client import Client

    url, cols = big
    triangle = {"type": "Polygon", "coordinates": [[[-20, -10], [60, -10], [20, 50], [-20, -10]]]}
    got = [it.id for it in Client.open(url + "/api").search(intersects=triangle, limit=200, method=method).items()]
    shape = shapely.geometry.shape(triangle)
    expected = []
    for i, item_id in enumerate(cols["id"]):
        x0, x1 = cols["xmin"][i], cols["xmax"][i]
        box = shapely.box(x0, cols["ymin"][i], 180.0 if x0 > x1 else x1, cols["ymax"][i])
        if shape.intersects(box):
            expected.append(item_id)
    in_bbox = truth(cols, shape.bounds)
    assert 50 < len(expected) < len(in_bbox)  # the triangle selects fewer than its bounding box
    assert got == expected


def test_post_search_types_are_strict(served):
    for body, parameter in [({"bbox": "0,0,10,10"}, "bbox"), ({"bbox": [0, 0, "10", 10]}, "bbox"),
                            ({"bbox": [0, 0, True, 10]}, "bbox"), ({"datetime": 2020}, "datetime"),
                            ({"intersects": "POINT (1 2)"}, "intersects"),
                            ({"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [0, 0]}},
                             "intersects")]:
        status, _, raw = request(served, "/api/search", "POST", {"Content-Type": "application/json"},
                                 json.dumps(body).encode())
        assert status == 400 and json.loads(raw)["parameter"] == parameter, body


def raw_request(url: str, data: bytes) -> bytes:
    """The status line of the server's answer to the bytes ``data`` sent as they are."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        got = b""
        while b"\r\n" not in got and (chunk := sock.recv(65536)):
            got += chunk
    return got.split(b"\r\n", 1)[0]


def test_malformed_requests_are_4xx_and_the_server_lives_on(served, demo_catalog):
    deep = b"[" * 100_000 + b"]" * 100_000
    for data, codes in [
        (b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}", (b"400",)),
        (b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 4301 + b"\r\n\r\n{}",
         (b"400", b"413")),
        (b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nRange: bytes=" + b"9" * 4301 + b"-\r\n"
         b"Connection: close\r\n\r\n", (b"416",)),
        (b"GET /catalog.json HTTP/1.1\r\nBad header line\r\n\r\n", (b"400",)),
        (b"POST /api/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
         b"Content-Length: " + str(len(deep)).encode() + b"\r\n\r\n" + deep, (b"400",)),
        (b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n{}", (b"413",)),
    ]:
        answer = raw_request(served, data)
        assert answer.split(b" ", 2)[1] in codes, (data[:80], answer[:200])
    # a Range header of 4,301 digits as the end of a range from 0: the whole file, from byte 0
    status, headers, body = request(served, "/catalog.json", headers={"Range": "bytes=0-" + "9" * 4301})
    assert status == 206 and body == (demo_catalog / "catalog.json").read_bytes()
    assert get_json(served, "/api/conformance")["conformsTo"]  # still serving


def test_links_come_from_the_configured_address_not_the_host_header(demo_catalog):
    server, _ = start_server(demo_catalog, base_url="https://stac.example.org/seco/")
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        for path in ("/api", "/api/collections", "/api/search?limit=2", "/api/collections/demo/items?limit=2"):
            status, _, body = request(url, path, headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example",
                                                          "X-Forwarded-Proto": "gopher"})
            assert status == 200 and b"evil" not in body and b"gopher" not in body, path
            doc = json.loads(body)
            hrefs = [link["href"] for link in doc["links"]] + [
                a["href"] for f in doc.get("features", []) for a in f["assets"].values()]
            assert hrefs and all(h.startswith("https://stac.example.org/seco/") for h in hrefs), path
            if "?" in path:  # a page's self link is the URL it was requested at
                assert next(link["href"] for link in doc["links"] if link["rel"] == "self") == \
                    "https://stac.example.org/seco" + path
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(UsageError):
        make_server(demo_catalog, port=0, base_url="ftp://x")


def test_load_400_requests_from_200_concurrent_clients(served, demo_catalog):
    """400 requests from 200 clients connecting at once (http.server refused 93 of them: backlog 5):
    every one answered, with the right bytes. No timing assertion."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    tif = next(demo_catalog.glob("0000/*_10m.tif"))
    expected = {"/catalog.json": (demo_catalog / "catalog.json").read_bytes(),
                "/" + tif.relative_to(demo_catalog).as_posix(): tif.read_bytes()}
    paths = ["/catalog.json", "/api/search?limit=3", "/" + tif.relative_to(demo_catalog).as_posix(),
             "/api/collections"]
    gate = threading.Barrier(200)

    def client(k: int) -> list[int]:
        gate.wait()
        out = []
        for j in range(2):
            path = paths[(k + j) % len(paths)]
            status, _, body = request(served, path)
            assert path not in expected or body == expected[path], path
            out.append(status)
        return out

    with ThreadPoolExecutor(200) as pool:
        statuses = [s for got in pool.map(client, range(200)) for s in got]
    assert len(statuses) == 400 and set(statuses) == {200}


def test_gdal_stacit_opens_search_results(served, demo_catalog):
    """GDAL's STACIT driver (what QGIS and gdal_translate use on a STAC API search) mosaics the search
    results: the pixels of one item's 10 m asset are those of its GeoTIFF."""
    import rasterio

    item = get_json(served, "/api/search?limit=1")["features"][0]
    tif = demo_catalog / item["assets"]["data_10m"]["href"].removeprefix(served + "/")
    search = f"{served}/api/search?ids={item['id']}&collections={item['collection']}"
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), \
            rasterio.open(f'STACIT:"{search}":asset=data_10m') as src, rasterio.open(tif) as ref:
        assert src.crs == ref.crs and src.transform == ref.transform and src.count == ref.count
        assert np.array_equal(src.read(), ref.read())
