"""The catalog viewer: its data, ``catalog html``, and the pages themselves in headless Chromium, on
both catalog layouts (compact, the default, and per-patch).

The browser tests need Debian's ``chromium`` and ``chromium-driver`` (``make browser``) and the
``selenium`` package; they fail when those are missing, unless ``SECO_SKIP_BROWSER=1``. Screenshots
of the pages go to ``tests/artifacts/`` (or ``$SECO_ARTIFACTS``) and are kept.

What the pages should show is read from ``items.parquet`` with stac-geoparquet (``helpers.index_items``),
never through the viewer's own reading code.
"""

import functools
import http.server
import io
import json
import os
import shutil
import struct
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import index_items

from seco_cli.data import main
from seco_data.catalog.index import item_json_href
from seco_data.catalog.info import catalog_info
from seco_data.errors import CatalogError, OutputError, UsageError
from seco_data.serve.viewer import Site, build_site
from seco_data.serve.viewer import basemap
from seco_data.serve.viewer.data import CHUNK, NONE16, CatalogData
from seco_data.serve.viewer.pack import pack, unpack

ARTIFACTS = Path(os.environ.get("SECO_ARTIFACTS") or Path(__file__).parent / "artifacts")
WINDOW = (1400, 1000)
LAYOUTS = ["compact", "per-patch"]


# -- catalogs ------------------------------------------------------------------------------------


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".seco.lock"))
    return dst


def _asset_keys(root: Path) -> list[str]:
    return [f.name for f in pq.read_schema(root / "items.parquet").field("assets").type]


def _with_thumbnails(src: Path, dst: Path) -> Path:
    """A copy of ``src`` with thumbnails (made by seco_data.catalog.add_thumbnails where the sampler did not)."""
    root = _copy(src, dst)
    if "thumbnail" not in _asset_keys(root):
        from seco_data.catalog.add_thumbnails import add_thumbnails

        assert add_thumbnails(root).ok
    assert "thumbnail" in _asset_keys(root)
    return root


@pytest.fixture(scope="module")
def catalog(demo_catalog, tmp_path_factory) -> Path:
    """The demo catalog (compact layout, 5 locations x 4 seasons) with its quicklook strips."""
    root = _with_thumbnails(demo_catalog, tmp_path_factory.mktemp("viewer") / "demo")
    assert json.loads((root / "collection.json").read_text())["seco:layout"] == "compact"
    return root


@pytest.fixture(scope="module")
def patch_catalog(tmp_path_factory) -> Path:
    """The same demo recipe in the per-patch layout (an item JSON and a quicklook per patch)."""
    from seco_data.recipe import load_recipe
    from seco_data.sample import sample

    out = tmp_path_factory.mktemp("viewer-per-patch") / "demo"
    sample(load_recipe("demo", {"n": 5, "layout": "per-patch"}), out, workers=1)
    root = _with_thumbnails(out, tmp_path_factory.mktemp("viewer-per-patch-thumbs") / "demo")
    assert json.loads((root / "collection.json").read_text())["seco:layout"] == "per-patch"
    return root


@pytest.fixture(scope="module", params=LAYOUTS)
def any_catalog(request) -> Path:
    """Each layout's catalog in turn."""
    return request.getfixturevalue("catalog" if request.param == "compact" else "patch_catalog")


@pytest.fixture(scope="module")
def bare_catalog(catalog, tmp_path_factory) -> Path:
    """The same catalog with no thumbnail asset in its index (as catalogs made before thumbnails)."""
    root = _copy(catalog, tmp_path_factory.mktemp("viewer-bare") / "demo")
    t = pq.read_table(root / "items.parquet")
    assets = t.column("assets").combine_chunks()
    keep = [f for f in assets.type if f.name != "thumbnail"]
    stripped = pa.StructArray.from_arrays([assets.field(f.name) for f in keep], fields=keep,
                                          mask=assets.is_null())
    t = t.set_column(t.schema.get_field_index("assets"), "assets", stripped)
    pq.write_table(t, root / "items.parquet")
    assert "thumbnail" not in _asset_keys(root)
    return root


@pytest.fixture(scope="module")
def big_catalog(catalog, tmp_path_factory) -> Path:
    """150 locations: the demo index repeated 30 times under new location ids, in row groups of 16
    (the copies link to the demo's files)."""
    root = tmp_path_factory.mktemp("viewer-big") / "demo"
    root.mkdir()
    shutil.copytree(catalog / "0000", root / "0000")
    shutil.copy(catalog / "collection.json", root / "collection.json")
    shutil.copy(catalog / "catalog.json", root / "catalog.json")
    t = pq.read_table(catalog / "items.parquet")
    col = t.schema.get_field_index("seco:location")
    parts = [t.set_column(col, "seco:location", pa.compute.add(t.column(col), 1000 * k)) for k in range(30)]
    pq.write_table(pa.concat_tables(parts), root / "items.parquet", row_group_size=16)
    return root


@pytest.fixture(scope="module")
def many_catalog(catalog, tmp_path_factory) -> Path:
    """40,000 locations (more than the map draws as vector shapes) at random points, and location
    ``LONELY`` alone in the South Pacific: the demo rows tiled, with new ids and points."""
    root = tmp_path_factory.mktemp("viewer-many") / "demo"
    root.mkdir()
    shutil.copy(catalog / "collection.json", root / "collection.json")
    shutil.copy(catalog / "catalog.json", root / "catalog.json")
    t = pq.read_table(catalog / "items.parquet")
    n = 40_000
    t = t.take(pa.array(np.arange(n) % t.num_rows))
    rng = np.random.default_rng(0)
    points = np.stack([rng.uniform(-60, 180, n), rng.uniform(-50, 70, n)], 1)
    points[LONELY - 1] = (-140.0, -40.0)
    t = t.set_column(t.schema.get_field_index("seco:location"), "seco:location", pa.array(np.arange(1, n + 1)))
    t = t.set_column(t.schema.get_field_index("seco:point"), t.schema.field("seco:point"),
                     pa.array(points.tolist(), t.schema.field("seco:point").type))
    pq.write_table(t, root / "items.parquet")
    return root


LONELY = 31_234


def _patches(root: Path) -> list[dict]:
    """Every patch (location x season) as the index says, whatever the layout, by location and season."""
    out = []
    for item in index_items(root):
        p = item["properties"]
        seasons = p.get("seco:seasons") or [{
            "season": p["seco:season"], "datetime": p["datetime"], "scene_id": p["seco:scene_id"],
            "eo:cloud_cover": p.get("eo:cloud_cover"), "cloud_fraction": p.get("seco:cloud_fraction")}]
        for s in seasons:
            out.append({
                "location": p["seco:location"], "season": s["season"], "id": item["id"], "datetime": s["datetime"],
                "day": np.datetime64(s["datetime"][:10], "D"), "scene_id": s["scene_id"],
                "cloud": s["eo:cloud_cover"], "pcloud": s["cloud_fraction"], "point": p["seco:point"],
                "self": item_json_href(item), "assets": {k: a["href"] for k, a in item["assets"].items()},
                "bands": {k: [b.get("seco:season") for b in a.get("bands") or []] for k, a in item["assets"].items()},
                "seasons": len(seasons)})
    return sorted(out, key=lambda r: (r["location"], r["season"]))


def _layout(root: Path) -> str:
    return json.loads((root / "collection.json").read_text())["seco:layout"]


def _columns(rows: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.array([r[k] for r in rows]) for k in ("location", "season", "day", "cloud", "pcloud")}


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(data)).size


# -- data, site and command (no browser) -------------------------------------------------------


def test_pack_round_trips_every_type():
    rng = np.random.default_rng(1)
    cols = {
        "u8": rng.integers(0, 256, 1001).astype(np.uint8),
        "u16": rng.integers(0, 65536, 3).astype(np.uint16),
        "i16": rng.integers(-30000, 30000, 17).astype(np.int16),
        "u32": np.cumsum(rng.integers(0, 3, 500)).astype(np.uint32),
        "i32": rng.integers(-2**31, 2**31 - 1, 9).astype(np.int32),
        "f32": rng.normal(size=33).astype(np.float32),
        "f64": np.array([np.nan, -0.0, 1e300]),
        "empty": np.zeros(0, np.uint16),
        "wraps": np.array([65535, 2, 1, 65534], np.uint16),  # decreasing: differences wrap around
    }
    payload = pack(cols, delta=("u32", "wraps"))
    assert json.loads(json.dumps(payload)) == payload  # plain JSON
    assert payload["columns"]["u32"]["delta"] and payload["columns"]["u16"]["shuffle"]
    assert not payload["columns"]["u8"]["shuffle"]
    assert all(c["offset"] % 8 == 0 for c in payload["columns"].values())
    back = unpack(payload)
    for name, a in cols.items():
        assert back[name].dtype == a.dtype.newbyteorder("<") and np.array_equal(back[name], a, equal_nan=True), name
    # repetitive columns (seasons, sources) cost next to nothing
    assert len(pack({"s": np.tile(np.arange(5, dtype=np.uint8), 100_000)})["data"]) < 500_000 / 100
    with pytest.raises(ValueError, match="1-D"):
        pack({"x": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="no packed type"):
        pack({"x": np.zeros(2, np.int64)})
    with pytest.raises(ValueError, match="integers"):
        pack({"x": np.zeros(2, np.float32)}, delta=("x",))


def test_map_data_is_the_index(any_catalog):
    d = CatalogData(any_catalog)
    rows = _patches(any_catalog)
    idx = _columns(rows)
    m = d.map()
    cols, patches = unpack(m), unpack(d.patches())
    locs = sorted(set(idx["location"].tolist()))
    assert cols["loc"].tolist() == locs and m["locations"] == 5 and m["patches"] == len(rows) == 20
    assert cols["n"].tolist() == [int((idx["location"] == x).sum()) for x in locs]
    assert patches["season"].tolist() == idx["season"].tolist()
    days = (idx["day"] - np.datetime64("1970-01-01")).astype(int)
    assert (patches["day"].astype(int) + m["day0"]).tolist() == days.tolist()
    assert patches["cloud"].tolist() == np.rint(idx["cloud"].astype(float) * 100).astype(int).tolist()
    assert patches["pcloud"].tolist() == np.rint(idx["pcloud"].astype(float) * 10_000).astype(int).tolist()
    first = {r["location"]: r for r in reversed(rows)}
    np.testing.assert_allclose(np.stack([cols["lon"], cols["lat"]], 1), [first[x]["point"] for x in locs], atol=1e-4)
    # the per-location summaries are those of its patches
    for i, x in enumerate(locs):
        mine = idx["location"] == x
        assert cols["mask"][i] == sum(1 << int(s) for s in idx["season"][mine])
        assert cols["maxcloud"][i] == patches["cloud"][mine].max()
        assert cols["maxpcloud"][i] == patches["pcloud"][mine].max()
        assert (cols["first"][i], cols["last"][i]) == (patches["day"][mine].min(), patches["day"][mine].max())
    assert m["origins"][cols["origin"][0]] == index_items(any_catalog)[0]["properties"]["seco:origin"]
    assert m["sources"] == ["sim"] and not cols["source"].any()
    # the ledger's rejected candidates are what collection.json counts
    stats = json.loads((any_catalog / "collection.json").read_text())["seco:stats"]["rejections"]
    reasons = m["rejected"]["reasons"]
    assert {r: int((cols["rreason"] == i).sum()) for i, r in enumerate(reasons)} == stats
    assert m["rejected"]["count"] == len(cols["rlon"]) == sum(stats.values())


def test_summary_is_catalog_info(any_catalog):
    info = catalog_info(any_catalog)
    info.pop("root")
    assert CatalogData(any_catalog).info == info
    assert info["patches"] == 20 and info["items"] == (5 if "compact" in info["layout"] else 20)


def test_unknown_values_stay_unknown(catalog, tmp_path):
    """A patch without scene cloud, patch cloud or date: NONE in the map, null in the chunk."""
    root = _copy(catalog, tmp_path / "demo")
    t = pq.read_table(root / "items.parquet")
    seasons = t.column("seco:seasons").to_pylist()
    seasons[0][1].update({"eo:cloud_cover": None, "cloud_fraction": None, "datetime": None})
    i = t.schema.get_field_index("seco:seasons")
    t = t.set_column(i, t.schema.field(i), pa.array(seasons, t.schema.field(i).type))
    pq.write_table(t, root / "items.parquet")
    d = CatalogData(root)
    p = unpack(d.patches())
    assert (p["cloud"][1], p["pcloud"][1], p["day"][1]) == (NONE16, NONE16, NONE16)
    assert p["cloud"][0] != NONE16
    item = d.chunk(0)["locations"][0]["items"][1]
    assert (item["cloud"], item["pcloud"], item["datetime"]) == (None, None, None)


def test_chunks_hold_every_patch_with_its_links(any_catalog):
    d = CatalogData(any_catalog)
    compact = d.compact
    meta = d.meta("/")
    c = meta["counts"]
    assert (c["locations"], c["patches"], c["items"]) == (5, 20, 5 if compact else 20)
    assert meta["layout"] == ("compact" if compact else "per-patch")
    assert meta["thumbnails"] == (5 if compact else 20)
    assert [a["key"] for a in meta["assets"]][0] == "thumbnail"
    expected = {(r["location"], r["season"]): r for r in _patches(any_catalog)}
    seen = 0
    for k in d.chunk_ids():
        chunk = d.chunk(k)
        for loc in chunk["locations"]:
            assert loc["loc"] // CHUNK == k and loc["source"] == "sim"
            for n, it in enumerate(loc["items"]):
                want = expected[(loc["loc"], it["season"])]
                assert (it["datetime"], it["scene_id"]) == (want["datetime"], want["scene_id"])
                assert it["cloud"] == pytest.approx(want["cloud"])
                files = loc["assets"] if compact else it["assets"]
                assert files == want["assets"] and all((any_catalog / h).is_file() for h in files.values())
                assert files["thumbnail"]
                if compact:  # one strip per location, one file per resolution holding every season's bands
                    assert loc["id"] == want["id"] and "href" not in it and "id" not in it
                    assert it["strip"] == {"index": n, "count": want["seasons"]}
                    for key, bands in it["bands"].items():
                        assert bands == [i + 1 for i, s in enumerate(want["bands"][key]) if s == it["season"]]
                    assert it["bands"]["data_10m"]
                else:
                    assert it["id"] == want["id"] and loc["id"] is None and "strip" not in it
                    assert it["href"] == want["self"] and (any_catalog / it["href"]).is_file()
                seen += 1
    assert seen == 20
    assert d.chunk(10**6) is None


def test_chunks_link_to_their_neighbours(big_catalog):
    d = CatalogData(big_catalog)
    ids = d.chunk_ids()
    assert len(ids) > 3
    chunks = [d.chunk(k) for k in ids]
    for before, after in zip(chunks, chunks[1:]):
        assert before["next"] == after["locations"][0]["loc"]
        assert after["prev"] == before["locations"][-1]["loc"]
    assert chunks[0]["prev"] is None and chunks[-1]["next"] is None
    assert sum(len(c["locations"]) for c in chunks) == 150


def test_reads_only_what_it_needs(big_catalog, monkeypatch):
    """Bounded memory: a row group at a time, and never the assets or links of the whole index;
    a chunk reads the row groups that hold it."""
    calls = []

    def spy(name):
        original = getattr(pq.ParquetFile, name)

        def wrapper(self, *args, **kwargs):
            calls.append((name, args, kwargs))
            return original(self, *args, **kwargs)
        return wrapper

    for name in ("read", "read_row_group", "read_row_groups", "iter_batches", "scan_contents"):
        monkeypatch.setattr(pq.ParquetFile, name, spy(name))
    d = CatalogData(big_catalog)
    d.map()
    d.patches()
    d.meta("/")
    assert calls and {c[0] for c in calls} == {"read_row_groups"}
    groups = pq.ParquetFile(big_catalog / "items.parquet").metadata.num_row_groups
    assert groups == 10
    for _, args, kwargs in calls:
        assert len(args[0]) == 1  # one row group
        columns = kwargs["columns"]
        assert "assets" not in columns and "links" not in columns and "geometry" not in columns
        heavy = [c for c in columns if c.startswith("assets.") and not c.endswith((".href", ".title", ".type",
                                                                                   ".roles.list.element", ".gsd"))]
        assert not heavy, heavy
        if any(c.startswith("assets.") for c in columns):
            assert args[0] == [0]  # asset titles and types: from the first group only
    calls.clear()
    locs = pq.read_table(big_catalog / "items.parquet", columns=["seco:location"]).column(0).to_pylist()
    k = locs[35] // CHUNK  # the 8th copy of the demo: rows 35-39, in the 3rd group of 16 rows
    rows = [i for i, x in enumerate(locs) if x // CHUNK == k]
    assert [x["loc"] for x in d.chunk(k)["locations"]] == [locs[i] for i in rows]
    assert [c[1][0] for c in calls] == [sorted({i // 16 for i in rows})] == [[2]]


def test_site_serves_pages_and_data_and_nothing_else(catalog):
    site = Site(catalog, asset_base="/")
    body, ctype = site.get("")
    assert ctype.startswith("text/html") and b"page-map.js" in body
    assert site.get("index.html")[0] == body
    assert site.get("style.css")[1].startswith("text/css")
    meta = site.get("data/meta.js")
    assert meta[1].startswith("text/javascript") and meta[0].startswith(b'secoData("meta",')
    parsed = json.loads(meta[0][len(b'secoData("meta",'):-3])
    assert parsed["asset_base"] == "/" and parsed["api_base"] is None
    assert json.loads(Site(catalog, api_base="/api").get("data/meta.js")[0][16:-3])["api_base"] == "/api/"
    for name in ("map", "patches"):
        body = site.get(f"data/{name}.js")[0]
        assert body.startswith(f'secoData("{name}",'.encode()) and unpack(json.loads(body[len(name) + 12:-3]))
    assert site.get("data/loc/0.js")[0].startswith(b'secoData("loc/0",')
    png, ctype = site.get("data/land.png")
    assert ctype == "image/png" and _png_size(png) == (basemap.WIDTH, basemap.HEIGHT)
    for bad in ["nope.html", "data/loc/999999.js", "data/../collection.json", "../collection.json",
                "data/loc/x.js", "data/", "static/style.css"]:
        assert site.get(bad) is None, bad
    with pytest.raises(CatalogError):
        Site(catalog / "0000")


def test_site_rereads_a_changed_catalog(catalog, tmp_path):
    root = _copy(catalog, tmp_path / "demo")
    site = Site(root)
    assert b'"collection":"demo"' in site.get("data/meta.js")[0]
    coll = json.loads((root / "collection.json").read_text())
    coll["id"] = "renamed"
    (root / "collection.json").write_text(json.dumps(coll))
    assert b'"collection":"renamed"' in site.get("data/meta.js")[0]


def test_a_broken_ledger_leaves_the_rejections_out(catalog, tmp_path, caplog):
    root = _copy(catalog, tmp_path / "demo")
    (root / "ledger.sqlite").write_bytes(b"not a database" * 100)
    d = CatalogData(root)
    assert d.rejected is None and d.map()["rejected"] is None
    assert "cannot read the rejected candidates" in caplog.text


def test_basemap_is_land_and_sea():
    frac = basemap.land_fraction_grid(360, 180)  # one degree per pixel, north row first
    assert frac.shape == (180, 360)
    assert frac[90 - 23, 180 + 10] == 1.0  # Sahara, 22.5 N 10.5 E
    assert frac[90 + 30, 180 - 121] == 0.0  # South Pacific, 30.5 S 120.5 W
    assert 0.25 < frac.mean() < 0.4  # about 29 % of the Earth is land; more on this projection
    # a coastal pixel against the point-wise land mask at the centres of its 120 x 120 cells
    from seco_data.landmask import is_land

    row, col = np.argwhere((frac > 0.3) & (frac < 0.7))[0]
    centres = (np.arange(120) + 0.5) / 120
    lon, lat = np.meshgrid(col - 180 + centres, 90 - row - centres)
    assert frac[row, col] == pytest.approx(is_land(lon, lat).mean(), abs=1e-6)
    png = basemap.encode_png(basemap.render(frac))
    assert _png_size(png) == (360, 180)


def test_build_site_is_atomic_and_never_clobbers(catalog, tmp_path):
    out = build_site(catalog, tmp_path / "site")
    assert (out / "index.html").is_file() and (out / "data" / "map.js").is_file()
    assert (out / "data" / "patches.js").is_file()
    assert sorted(p.name for p in (out / "data" / "loc").iterdir()) == ["0.js"]
    meta = (out / "data" / "meta.js").read_text()
    assert f'"asset_base":"{os.path.relpath(catalog, out)}/"' in meta
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    with pytest.raises(OutputError, match="already exists") as e:
        build_site(catalog, out)
    assert "--overwrite" in e.value.one_line()
    (out / "stale.txt").write_text("x")
    build_site(catalog, out, overwrite=True)
    assert not (out / "stale.txt").exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not a site"):
        build_site(catalog, other, overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(UsageError):
        build_site(catalog, catalog, overwrite=True)
    with pytest.raises(UsageError):
        build_site(catalog, catalog.parent, overwrite=True)
    assert (catalog / "collection.json").is_file()


def test_cli_catalog_html(catalog, tmp_path):
    out = tmp_path / "site"
    r = CliRunner().invoke(main, ["catalog", "html", str(catalog), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "index.html").as_uri() in r.output
    r = CliRunner().invoke(main, ["catalog", "html", str(catalog), "--out", str(out)])
    assert r.exit_code == OutputError.exit_code
    assert r.output.startswith("Error:") and "--overwrite" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["catalog", "html", str(catalog), "--out", str(out), "--overwrite"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["catalog", "html", str(tmp_path / "nothing"), "--out", str(tmp_path / "s2")])
    assert r.exit_code == CatalogError.exit_code and "not a seco catalog" in r.output
    assert not (tmp_path / "s2").exists()


# -- the browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver():
    if os.environ.get("SECO_SKIP_BROWSER") == "1":
        pytest.skip("SECO_SKIP_BROWSER=1: browser tests skipped")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.fail("the viewer's browser tests need headless Chromium and chromedriver: run `make browser`"
                    " (or set SECO_SKIP_BROWSER=1 to skip them)", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the viewer's browser tests need selenium: run `make venv`", pytrace=False)
    opts = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--lang=en-US"]:
        opts.add_argument(arg)
    opts.binary_location = chromium
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: Selenium Manager never runs, so nothing is downloaded
    d = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


@pytest.fixture()
def browser(driver):
    """The shared browser; the test fails on any JavaScript error or failed load in its console."""
    driver.get_log("browser")  # drop what earlier tests left
    driver.set_window_size(*WINDOW)
    yield driver
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"errors in the browser console: {errors}"


def _serve(root: Path):
    from seco_data.serve.server import start_server

    server, url = start_server(root, port=0)
    return server, url + "/viewer/"


def _stop(server) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def served(catalog):
    """``seco-data catalog serve``'s server over the compact catalog; yields the viewer's URL."""
    server, url = _serve(catalog)
    yield url
    _stop(server)


@pytest.fixture(scope="module")
def any_served(any_catalog):
    """The server over each layout's catalog in turn: (catalog, viewer URL)."""
    server, url = _serve(any_catalog)
    yield any_catalog, url
    _stop(server)


@pytest.fixture()
def serve_root():
    """Serve a folder with a plain static web server (what any web host does); yields a starter."""
    servers = []

    def start(folder: Path) -> str:
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _open(d, url: str):
    d.get("about:blank")  # a new page even where only the hash differs
    d.get(url)
    return _ready(d)


def _navigate(d, action):
    """Do what leads to another page (a click), then wait until that page is ready: the flag is cleared
    first, so the wait cannot see the page being left (hash changes load nothing new)."""
    d.execute_script("window.__secoReady = null")
    action()
    return _ready(d)


def _ready(d):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(d, 60).until(lambda d: d.execute_script("return window.__secoReady || window.__secoError || null"))
    assert d.execute_script("return window.__secoError || null") is None
    return d


def _patches_loaded(d):
    """The map page loads data/patches.js (what the filters need) once it is ready."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(d, 60).until(lambda d: d.execute_script("return window.__secoPatches || window.__secoError || null"))
    assert d.execute_script("return window.__secoError || null") is None
    return d


def _status(d) -> dict:
    from selenium.webdriver.common.by import By

    s = d.find_element(By.ID, "status")
    return {"text": s.text, "locations": int(s.get_attribute("data-locations")),
            "items": int(s.get_attribute("data-items")), "drawn": int(s.get_attribute("data-drawn"))}


def _shot(d, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(WINDOW[0], min(max(height + 140, WINDOW[1]), 3000))
    time.sleep(0.2)
    assert d.save_screenshot(str(ARTIFACTS / name))
    d.set_window_size(*WINDOW)


def _cards(d) -> dict[int, dict]:
    from selenium.webdriver.common.by import By

    out = {}
    for c in d.find_elements(By.CSS_SELECTOR, "article.season-card"):
        out[int(c.get_attribute("data-season"))] = {
            "item": c.get_attribute("data-item"),
            "datetime": c.find_element(By.CSS_SELECTOR, "time.date").get_attribute("datetime"),
            "date": c.find_element(By.CSS_SELECTOR, "time.date").text,
            "scene": c.find_element(By.CSS_SELECTOR, ".scene-id").text,
            "card": c,
        }
    return out


def _check_location_page(d, root: Path, location: int) -> dict:
    cards = _cards(d)
    want = {r["season"]: r for r in _patches(root) if r["location"] == location}
    assert want and sorted(cards) == sorted(want)
    for s, p in want.items():
        assert cards[s]["item"] == p["id"]
        assert cards[s]["datetime"] == p["datetime"]
        assert cards[s]["date"] == p["datetime"][:10]  # ISO dates
        assert cards[s]["scene"] == p["scene_id"]
    return cards


def test_map_page_draws_every_location(browser, any_served):
    from selenium.webdriver.common.by import By

    root, url = any_served
    _open(browser, url)
    idx = _columns(_patches(root))
    n_loc, n_patches = len(set(idx["location"].tolist())), len(idx["location"])
    st = _status(browser)
    assert st["locations"] == st["drawn"] == n_loc and st["items"] == n_patches
    assert st["text"].startswith(f"{n_loc} locations, {n_patches} patches")
    rejected = sum(json.loads((root / "collection.json").read_text())["seco:stats"]["rejections"].values())
    assert f"{rejected} rejected candidate" in st["text"]
    assert browser.find_element(By.ID, "collection").text == "demo"
    assert "5 locations · 20 patches · 4 seasons" in browser.find_element(By.ID, "headcounts").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#loc-rows tr")
    assert [int(r.get_attribute("data-loc")) for r in rows] == sorted(set(idx["location"].tolist()))
    _shot(browser, f"viewer-map-{_layout(root)}.png")


def test_colour_by_switches_the_legend(browser, served):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, served)
    legend = browser.find_element(By.ID, "legend")
    assert legend.get_attribute("data-mode") == "status" and "accepted" in legend.text
    assert "rejected: scene cloud" in legend.text
    choose = Select(browser.find_element(By.ID, "colorby"))
    choose.select_by_value("cloud")
    assert legend.get_attribute("data-mode") == "cloud"
    assert "accepted" not in legend.text and "20.0 %" in legend.text  # the recipe's scene cloud limit
    assert "rejected candidate" not in _status(browser)["text"]
    choose.select_by_value("seasons")
    assert "4 of 4 seasons" in legend.text
    choose.select_by_value("source")
    assert "sim" in legend.text
    assert "color=source" in browser.current_url  # the state is kept in the URL
    _open(browser, served + "#color=pcloud")
    assert browser.find_element(By.ID, "legend").get_attribute("data-mode") == "pcloud"


def test_filters_count_what_the_index_says(browser, served, catalog):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    idx = _columns(_patches(catalog))
    loc, season, day = idx["location"], idx["season"], idx["day"]
    cloud = np.round(idx["cloud"].astype(float), 2)  # the map filters scene cloud to 0.01 %
    _patches_loaded(_open(browser, served))
    before = _status(browser)

    # season 1 only, and a scene cloud limit strictly between two values the index holds
    for s in (0, 2, 3):
        browser.find_element(By.ID, f"f-season-{s}").click()
    values = np.unique(cloud[season == 1])
    mid = len(values) // 2
    limit = float(np.round((values[mid - 1] + values[mid]) / 2, 3)) if len(values) > 1 else 100.0
    browser.find_element(By.ID, "f-cloud").send_keys(str(limit))
    keep = (season == 1) & (cloud <= limit)
    st = _status(browser)
    assert (st["locations"], st["items"]) == (len(np.unique(loc[keep])), int(keep.sum()))
    assert st["drawn"] == st["locations"] and st["items"] < before["items"]
    assert "shown (of 5 locations, 20 patches)" in st["text"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#loc-rows tr[data-loc]")) == st["locations"]

    # a date range from the median acquisition day on
    browser.find_element(By.ID, "f-reset").click()
    assert _status(browser)["items"] == before["items"]
    first = np.sort(day)[len(day) // 2]
    browser.find_element(By.ID, "f-from").send_keys(str(first) + Keys.TAB)
    keep = day >= first
    st = _status(browser)
    assert (st["locations"], st["items"]) == (len(np.unique(loc[keep])), int(keep.sum()))
    assert st["items"] < before["items"]
    assert f"from={first}" in browser.current_url

    # a link with filters opens filtered (the page loads the patches first)
    _open(browser, served + f"#seasons=2&from={first}")
    keep = (season == 2) & (day >= first)
    assert (_status(browser)["locations"], _status(browser)["items"]) == (len(np.unique(loc[keep])), int(keep.sum()))


def test_list_entry_opens_the_location_page(browser, any_served):
    from selenium.webdriver.common.by import By

    root, url = any_served
    _open(browser, url)
    location = sorted({r["location"] for r in _patches(root)})[1]
    _navigate(browser, browser.find_element(By.CSS_SELECTOR, f'#loc-rows tr[data-loc="{location}"] a.loc-link').click)
    assert browser.current_url.endswith(f"location.html#{location}")
    cards = _check_location_page(browser, root, location)
    assert str(location) in browser.find_element(By.ID, "loc-name").text
    card = cards[1]["card"]
    links = card.find_elements(By.CSS_SELECTOR, "a.item-link")
    if _layout(root) == "compact":  # no item JSON: the server links the location's item in its STAC API
        assert len(links) == 1 and "/api/collections/" in links[0].get_attribute("href")
        with urllib.request.urlopen(links[0].get_attribute("href")) as r:
            item = json.loads(r.read())
        assert item["properties"]["seco:location"] == location and len(item["properties"]["seco:seasons"]) >= 2
        assert "bands 5–8" in card.find_element(By.CSS_SELECTOR, 'a.asset-link[data-key="data_10m"]').text
    else:  # the link reaches the item JSON through the server
        with urllib.request.urlopen(links[0].get_attribute("href")) as r:
            assert json.loads(r.read())["id"] == cards[1]["item"]
    tiffs = card.find_elements(By.CSS_SELECTOR, 'a.asset-link[data-key^="data_"]')
    assert len(tiffs) == 3
    for a in tiffs:
        with urllib.request.urlopen(a.get_attribute("href")) as r:
            assert r.status == 200 and r.read(4) in (b"II*\x00", b"MM\x00*")
    _shot(browser, f"viewer-location-{_layout(root)}.png")
    # the next-location link goes on to the following one, in the same page
    nxt = browser.find_element(By.ID, "loc-next")
    following = int(nxt.get_attribute("data-loc"))
    assert following > location
    _navigate(browser, nxt.click)
    _check_location_page(browser, root, following)


def test_compact_items_link_to_the_stac_api(browser, catalog, monkeypatch):
    """A compact item has no JSON file: where the site is told of a STAC API, cards link the item there."""
    from selenium.webdriver.common.by import By

    import seco_data.serve.viewer as viewer

    monkeypatch.setattr(viewer, "Site", functools.partial(Site, api_base="/api/"))
    server, url = _serve(catalog)
    try:
        location = min(r["location"] for r in _patches(catalog))
        _open(browser, f"{url}location.html#{location}")
        links = browser.find_elements(By.CSS_SELECTOR, "a.item-link")
        assert len(links) == 4 and links[0].text == "item (STAC API)"
        with urllib.request.urlopen(links[0].get_attribute("href")) as r:
            item = json.loads(r.read())
        assert item["id"] == _cards(browser)[0]["item"] and item["properties"]["seco:location"] == location
    finally:
        _stop(server)


def test_thumbnail_opens_large(browser, any_served):
    """Each card shows its own season: the whole quicklook (per-patch) or its square of the strip."""
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    root, url = any_served
    rows = _patches(root)
    location = min(r["location"] for r in rows)
    want = {r["season"]: r for r in rows if r["location"] == location}
    _open(browser, url + f"location.html#{location}")
    thumbs = browser.find_elements(By.CSS_SELECTOR, "button.thumb img")
    assert len(thumbs) == 4
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('img.thumb-img')].every(i => i.complete && i.naturalWidth > 0)"))
    for s, img in enumerate(thumbs):  # what the card shows looks like its season's square
        jpeg = Image.open(root / want[s]["assets"]["thumbnail"]).convert("RGB")
        squares = [jpeg.crop((132 * q, 0, 132 * (q + 1), 132)).resize((12, 12)) for q in range(jpeg.width // 132)]
        shown = Image.open(io.BytesIO(img.screenshot_as_png)).convert("RGB").resize((12, 12))
        dist = [np.abs(np.asarray(q, float) - np.asarray(shown, float)).mean() for q in squares]
        assert int(np.argmin(dist)) == (s if len(squares) > 1 else 0), dist
    browser.find_elements(By.CSS_SELECTOR, "button.thumb")[2].click()
    box = browser.find_element(By.ID, "lightbox")
    assert box.is_displayed()
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "const i = document.getElementById('lightbox-img'); return i.complete && i.naturalWidth > 0"))
    big = browser.find_element(By.ID, "lightbox-img")
    width = browser.execute_script("return document.getElementById('lightbox-img').naturalWidth")
    assert width == _image_size((root / want[2]["assets"]["thumbnail"]).read_bytes())[0]
    assert width == 132 * (4 if _layout(root) == "compact" else 1)  # a strip of the 4 seasons, or one
    assert big.value_of_css_property("object-position") == thumbs[2].value_of_css_property("object-position")
    assert big.size["width"] > thumbs[2].size["width"]  # shown larger
    assert "s2" in browser.find_element(By.ID, "lightbox-caption").text
    _shot(browser, f"viewer-lightbox-{_layout(root)}.png")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    assert not box.is_displayed()


def test_map_point_opens_its_location(browser, served, catalog):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _open(browser, served)
    canvas = browser.find_element(By.ID, "map")
    points = {loc: browser.execute_script(f"return window.__secoPointOf({loc})")
              for loc in sorted({r["location"] for r in _patches(catalog)})}
    # a point with no other within 12 px, so the click can only mean it
    loc = next(k for k, (x, y) in points.items()
               if all((x - u) ** 2 + (y - v) ** 2 > 144 for j, (u, v) in points.items() if j != k))
    x, y = points[loc]
    w, h = canvas.size["width"], canvas.size["height"]
    ActionChains(browser).move_to_element_with_offset(canvas, round(x - w / 2), round(y - h / 2)).perform()
    assert f"#{loc}" in browser.find_element(By.ID, "tooltip").text
    _navigate(browser, ActionChains(browser).click().perform)
    assert browser.current_url.endswith(f"location.html#{loc}")
    _check_location_page(browser, catalog, loc)


def test_many_points_are_drawn_as_pixels(browser, many_catalog):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    server, url = _serve(many_catalog)
    try:
        _open(browser, url)
        st = _status(browser)
        assert st["locations"] == st["drawn"] == 40_000 and st["items"] == 160_000
        canvas = browser.find_element(By.ID, "map")
        x, y = browser.execute_script(f"return window.__secoPointOf({LONELY})")
        pixel = """const c = document.getElementById('map'), r = window.devicePixelRatio || 1;
            return [...c.getContext('2d').getImageData(Math.floor(%s * r), Math.floor(%s * r), 1, 1).data];"""
        assert browser.execute_script(pixel % (x, y))[:3] == [0x0f, 0x76, 0x6e]  # the accepted colour
        assert browser.execute_script(pixel % (x + 30, y + 30))[:3] != [0x0f, 0x76, 0x6e]  # open sea
        w, h = canvas.size["width"], canvas.size["height"]
        ActionChains(browser).move_to_element_with_offset(canvas, round(x - w / 2), round(y - h / 2)).perform()
        assert f"#{LONELY}" in browser.find_element(By.ID, "tooltip").text
        assert browser.find_element(By.ID, "page").text.startswith("page 1 of 400")
        _shot(browser, "viewer-map-40k.png")
    finally:
        _stop(server)


def test_summary_page_shows_the_rejections(browser, served, catalog):
    from selenium.webdriver.common.by import By

    _open(browser, served + "summary.html")
    coll = json.loads((catalog / "collection.json").read_text())
    stats = coll["seco:stats"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#chart-rejections .bar-row")
    shown = {r.get_attribute("data-key"): int(r.get_attribute("data-count")) for r in rows}
    assert shown == stats["rejections"] and shown
    for r in rows:
        assert str(stats["rejections"][r.get_attribute("data-key")]) in r.text
    skipped = {r.get_attribute("data-key"): int(r.get_attribute("data-count"))
               for r in browser.find_elements(By.CSS_SELECTOR, "#chart-skipped .bar-row")}
    assert skipped == stats["skipped_scenes"]
    tiles = {t.get_attribute("data-key"): t.text for t in browser.find_elements(By.CSS_SELECTOR, ".tile")}
    assert tiles["candidates"].startswith(str(stats["candidates"]))
    assert tiles["rejected"].startswith(str(sum(stats["rejections"].values())))
    assert tiles["patches"].startswith("20") and tiles["items"].startswith("5") and "compact" in tiles["items"]
    months = browser.find_elements(By.CSS_SELECTOR, "#chart-months .col")
    assert sum(int(m.get_attribute("data-count")) for m in months) == 20
    assert browser.find_element(By.ID, "sum-title").text == coll["title"]
    _shot(browser, "viewer-summary.png")


def test_placeholders_without_thumbnails(browser, bare_catalog):
    from selenium.webdriver.common.by import By

    server, url = _serve(bare_catalog)
    try:
        location = min(r["location"] for r in _patches(bare_catalog))
        _open(browser, f"{url}location.html#{location}")
        _check_location_page(browser, bare_catalog, location)
        assert len(browser.find_elements(By.CSS_SELECTOR, ".thumb-missing")) == 4
        assert not browser.find_elements(By.CSS_SELECTOR, "img.thumb-img")
        assert "seco-data catalog thumbnails" in browser.find_element(By.CSS_SELECTOR, ".thumb-missing").text
    finally:
        _stop(server)


def test_paged_list(browser, big_catalog):
    from selenium.webdriver.common.by import By

    server, url = _serve(big_catalog)
    try:
        _open(browser, url)
        locs = sorted({r["location"] for r in _patches(big_catalog)})
        assert len(locs) == 150 and _status(browser)["drawn"] == 150

        def rows():
            return [int(r.get_attribute("data-loc")) for r in browser.find_elements(By.CSS_SELECTOR, "#loc-rows tr")]

        assert rows() == locs[:100]
        assert browser.find_element(By.ID, "page").text.startswith("page 1 of 2")
        browser.find_element(By.ID, "next").click()
        assert rows() == locs[100:]
        assert browser.find_element(By.ID, "next").get_attribute("disabled") is not None
        assert "page=2" in browser.current_url
        # across chunks, the location page's next link goes on to the next chunk's first location
        last = max(x for x in locs if x // CHUNK == locs[0] // CHUNK)
        _open(browser, f"{url}location.html#{last}")
        assert int(browser.find_element(By.ID, "loc-next").get_attribute("data-loc")) == locs[locs.index(last) + 1]
    finally:
        _stop(server)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_static_site_from_a_web_server_and_from_disk(browser, layout, request, tmp_path, serve_root):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    src = request.getfixturevalue("catalog" if layout == "compact" else "patch_catalog")
    root = _copy(src, tmp_path / "catalogs" / "demo")
    r = CliRunner().invoke(main, ["catalog", "html", str(root), "--out", str(tmp_path / "site")])
    assert r.exit_code == 0, r.output
    location = min(r["location"] for r in _patches(root))
    base = serve_root(tmp_path)
    for index in (base + "site/index.html", (tmp_path / "site" / "index.html").as_uri()):
        _open(browser, index)
        st = _status(browser)
        assert (st["locations"], st["items"], st["drawn"]) == (5, 20, 5)
        _patches_loaded(browser)  # data/patches.js loads from disk too
        link = browser.find_element(By.CSS_SELECTOR, f'#loc-rows tr[data-loc="{location}"] a.loc-link')
        _navigate(browser, link.click)
        _check_location_page(browser, root, location)
        WebDriverWait(browser, 20).until(lambda d: d.execute_script(
            "const i = [...document.querySelectorAll('img.thumb-img')];"
            "return i.length === 4 && i.every(i => i.complete && i.naturalWidth > 0)"))
        href = browser.find_element(By.CSS_SELECTOR, 'a.asset-link[data-key="data_10m"]').get_attribute("href")
        assert href.startswith(index.rsplit("/site/", 1)[0] + "/catalogs/demo/")
