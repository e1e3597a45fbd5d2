"""The catalog viewer: its data, ``catalog html``, and the pages themselves in headless Chromium.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` (``make browser``) and the
``selenium`` package; they fail when those are missing, unless ``SECO_SKIP_BROWSER=1``. Screenshots
of the pages go to ``tests/artifacts/`` (or ``$SECO_ARTIFACTS``) and are kept.
"""

import functools
import http.server
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

from seco_cli.data import main
from seco_data.errors import CatalogError, OutputError, UsageError
from seco_data.serve.viewer import Site, build_site
from seco_data.serve.viewer import basemap
from seco_data.serve.viewer.data import CatalogData

ARTIFACTS = Path(os.environ.get("SECO_ARTIFACTS") or Path(__file__).parent / "artifacts")
WINDOW = (1400, 1000)


# -- catalogs ------------------------------------------------------------------------------------


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".seco.lock"))
    return dst


def _asset_keys(root: Path) -> list[str]:
    return [f.name for f in pq.read_schema(root / "items.parquet").field("assets").type]


@pytest.fixture(scope="module")
def catalog(demo_catalog, tmp_path_factory) -> Path:
    """The demo catalog with its thumbnails (made by seco_data.catalog.thumbnails where the sampler did not)."""
    root = _copy(demo_catalog, tmp_path_factory.mktemp("viewer") / "demo")
    if "thumbnail" not in _asset_keys(root):
        from seco_data.catalog.add_thumbnails import add_thumbnails

        assert add_thumbnails(root).ok
    assert "thumbnail" in _asset_keys(root)
    return root


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
    """150 locations: the demo index repeated 30 times under new location ids (for the paged list)."""
    root = tmp_path_factory.mktemp("viewer-big") / "demo"
    root.mkdir()
    shutil.copy(catalog / "collection.json", root / "collection.json")
    shutil.copy(catalog / "catalog.json", root / "catalog.json")
    t = pq.read_table(catalog / "items.parquet")
    col = t.schema.get_field_index("seco:location")
    parts = [t.set_column(col, "seco:location", pa.compute.add(t.column(col), 1000 * k)) for k in range(30)]
    pq.write_table(pa.concat_tables(parts), root / "items.parquet")
    return root


def _index(root: Path) -> dict:
    cols = ["id", "datetime", "seco:location", "seco:season", "eo:cloud_cover", "seco:scene_id", "links"]
    t = pq.read_table(root / "items.parquet", columns=cols)
    return {
        "location": t.column("seco:location").to_numpy(),
        "season": t.column("seco:season").to_numpy(),
        "cloud": t.column("eo:cloud_cover").to_numpy(),
        "day": t.column("datetime").to_numpy().astype("datetime64[D]"),
        "rows": t.to_pylist(),
    }


def _item_jsons(root: Path, location: int) -> dict[int, dict]:
    """season -> item JSON of one location, read from the files (not from the index)."""
    out = {}
    for path in root.glob(f"*/{location:07d}/*.json"):
        item = json.loads(path.read_text())
        out[item["properties"]["seco:season"]] = item
    return out


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


# -- data, site and command (no browser) -------------------------------------------------------


def test_map_data_is_the_index(catalog):
    d = CatalogData(catalog)
    m = d.map()
    idx = _index(catalog)
    order = np.lexsort((idx["season"], idx["location"]))
    assert m["loc"] == sorted(set(idx["location"].tolist()))
    assert sum(m["n"]) == len(idx["rows"]) == 20
    assert m["season"] == idx["season"][order].tolist()
    assert m["day"] == (idx["day"][order] - np.datetime64("1970-01-01")).astype(int).tolist()
    np.testing.assert_allclose(m["cloud"], idx["cloud"][order], atol=0.005)
    assert all(-180 <= v <= 180 for v in m["lon"]) and all(-90 <= v <= 90 for v in m["lat"])
    # the ledger's rejected candidates are what collection.json counts
    stats = json.loads((catalog / "collection.json").read_text())["seco:stats"]["rejections"]
    rej = m["rejected"]
    assert {r: rej["reason"].count(i) for i, r in enumerate(rej["reasons"])} == stats


def test_chunks_hold_every_item_with_its_links(catalog):
    d = CatalogData(catalog)
    meta = d.meta("/")
    assert meta["counts"]["locations"] == 5 and meta["counts"]["items"] == 20
    assert meta["thumbnails"] == 20
    assert [a["key"] for a in meta["assets"]][0] == "thumbnail"
    seen = 0
    for k in d.chunk_ids():
        for loc in d.chunk(k)["locations"]:
            assert loc["loc"] // meta["chunk"] == k
            files = _item_jsons(catalog, loc["loc"])
            for it in loc["items"]:
                item = files[it["season"]]
                assert it["id"] == item["id"]
                assert it["datetime"] == item["properties"]["datetime"]
                assert it["scene_id"] == item["properties"]["seco:scene_id"]
                assert (catalog / it["href"]).is_file()
                assert set(it["assets"]) == set(item["assets"])
                assert all((catalog / h).is_file() for h in it["assets"].values())
                seen += 1
    assert seen == 20
    assert d.chunk(10**6) is None


def test_site_serves_pages_and_data_and_nothing_else(catalog):
    site = Site(catalog, asset_base="/")
    body, ctype = site.get("")
    assert ctype.startswith("text/html") and b"page-map.js" in body
    assert site.get("index.html")[0] == body
    assert site.get("style.css")[1].startswith("text/css")
    meta = site.get("data/meta.js")
    assert meta[1].startswith("text/javascript") and meta[0].startswith(b'secoData("meta",')
    assert json.loads(meta[0][len(b'secoData("meta",'):-3])["asset_base"] == "/"
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


@pytest.fixture(scope="module")
def served(catalog):
    """``seco-data catalog serve``'s server over the catalog; yields the viewer's URL."""
    from seco_data.serve.server import start_server

    server, url = start_server(catalog, port=0)
    yield url + "/viewer/"
    server.shutdown()
    server.server_close()


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
    items = _item_jsons(root, location)
    assert sorted(cards) == sorted(items)
    for s, item in items.items():
        p = item["properties"]
        assert cards[s]["item"] == item["id"]
        assert cards[s]["datetime"] == p["datetime"]
        assert cards[s]["date"] == p["datetime"][:10]  # ISO dates
        assert cards[s]["scene"] == p["seco:scene_id"]
    return cards


def test_map_page_draws_every_location(browser, served, catalog):
    from selenium.webdriver.common.by import By

    _open(browser, served)
    idx = _index(catalog)
    n_loc, n_items = len(set(idx["location"].tolist())), len(idx["rows"])
    st = _status(browser)
    assert st["locations"] == st["drawn"] == n_loc and st["items"] == n_items
    assert st["text"].startswith(f"{n_loc} locations, {n_items} items")
    rejected = sum(json.loads((catalog / "collection.json").read_text())["seco:stats"]["rejections"].values())
    assert f"{rejected} rejected candidate" in st["text"]
    assert browser.find_element(By.ID, "collection").text == "demo"
    assert "5 locations · 20 items · 4 seasons" in browser.find_element(By.ID, "headcounts").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#loc-rows tr")
    assert [int(r.get_attribute("data-loc")) for r in rows] == sorted(set(idx["location"].tolist()))
    _shot(browser, "viewer-map.png")


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

    idx = _index(catalog)
    loc, season, cloud, day = idx["location"], idx["season"], idx["cloud"], idx["day"]
    _open(browser, served)
    before = _status(browser)

    # season 1 only, and a scene cloud limit strictly between two values the index holds
    for s in (0, 2, 3):
        browser.find_element(By.ID, f"f-season-{s}").click()
    values = np.unique(np.round(cloud[season == 1], 2))
    mid = len(values) // 2
    limit = float(np.round((values[mid - 1] + values[mid]) / 2, 3)) if len(values) > 1 else 100.0
    box = browser.find_element(By.ID, "f-cloud")
    box.send_keys(str(limit))
    keep = (season == 1) & (cloud <= limit)
    st = _status(browser)
    assert (st["locations"], st["items"]) == (len(np.unique(loc[keep])), int(keep.sum()))
    assert st["drawn"] == st["locations"] and st["items"] < before["items"]
    assert "shown (of 5 locations, 20 items)" in st["text"]
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


def test_list_entry_opens_the_location_page(browser, served, catalog):
    from selenium.webdriver.common.by import By

    _open(browser, served)
    location = sorted(set(_index(catalog)["location"].tolist()))[1]
    _navigate(browser, browser.find_element(By.CSS_SELECTOR, f'#loc-rows tr[data-loc="{location}"] a.loc-link').click)
    assert browser.current_url.endswith(f"location.html#{location}")
    cards = _check_location_page(browser, catalog, location)
    assert str(location) in browser.find_element(By.ID, "loc-name").text
    # the links reach the item JSON and every GeoTIFF through the server
    card = cards[0]["card"]
    with urllib.request.urlopen(card.find_element(By.CSS_SELECTOR, "a.item-link").get_attribute("href")) as r:
        assert json.loads(r.read())["id"] == cards[0]["item"]
    tiffs = card.find_elements(By.CSS_SELECTOR, 'a.asset-link[data-key^="data_"]')
    assert len(tiffs) == 3
    for a in tiffs:
        with urllib.request.urlopen(a.get_attribute("href")) as r:
            assert r.status == 200 and r.read(4) in (b"II*\x00", b"MM\x00*")
    _shot(browser, "viewer-location.png")
    # the next-location link goes on to the following one, in the same page
    nxt = browser.find_element(By.ID, "loc-next")
    following = int(nxt.get_attribute("data-loc"))
    _navigate(browser, nxt.click)
    _check_location_page(browser, catalog, following)


def test_thumbnail_opens_large(browser, served, catalog):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    location = int(_index(catalog)["location"].min())
    _open(browser, served + f"location.html#{location}")
    thumbs = browser.find_elements(By.CSS_SELECTOR, "button.thumb img")
    assert len(thumbs) == 4
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('img.thumb-img')].every(i => i.complete && i.naturalWidth > 0)"))
    browser.find_elements(By.CSS_SELECTOR, "button.thumb")[2].click()
    box = browser.find_element(By.ID, "lightbox")
    assert box.is_displayed()
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "const i = document.getElementById('lightbox-img'); return i.complete && i.naturalWidth > 0"))
    width = browser.execute_script("return document.getElementById('lightbox-img').naturalWidth")
    item = _item_jsons(catalog, location)[2]
    png = (catalog / "0000" / f"{location:07d}" / Path(item["assets"]["thumbnail"]["href"]).name).read_bytes()
    assert width == _png_size(png)[0]
    assert browser.find_element(By.ID, "lightbox-img").size["width"] > thumbs[2].size["width"]  # shown larger
    assert "s2" in browser.find_element(By.ID, "lightbox-caption").text
    _shot(browser, "viewer-lightbox.png")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    assert not box.is_displayed()


def test_map_point_opens_its_location(browser, served, catalog):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _open(browser, served)
    canvas = browser.find_element(By.ID, "map")
    points = {loc: browser.execute_script(f"return window.__secoPointOf({loc})")
              for loc in sorted(set(_index(catalog)["location"].tolist()))}
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
    months = browser.find_elements(By.CSS_SELECTOR, "#chart-months .col")
    assert sum(int(m.get_attribute("data-count")) for m in months) == 20
    assert browser.find_element(By.ID, "sum-title").text == coll["title"]
    _shot(browser, "viewer-summary.png")


def test_placeholders_without_thumbnails(browser, bare_catalog):
    from selenium.webdriver.common.by import By

    from seco_data.serve.server import start_server

    server, url = start_server(bare_catalog, port=0)
    try:
        location = int(_index(bare_catalog)["location"].min())
        _open(browser, f"{url}/viewer/location.html#{location}")
        _check_location_page(browser, bare_catalog, location)
        assert len(browser.find_elements(By.CSS_SELECTOR, ".thumb-missing")) == 4
        assert not browser.find_elements(By.CSS_SELECTOR, "img.thumb-img")
        assert "seco-data catalog thumbnails" in browser.find_element(By.CSS_SELECTOR, ".thumb-missing").text
    finally:
        server.shutdown()
        server.server_close()


def test_paged_list(browser, big_catalog):
    from selenium.webdriver.common.by import By

    from seco_data.serve.server import start_server

    server, url = start_server(big_catalog, port=0)
    try:
        _open(browser, url + "/viewer/")
        locs = sorted(set(_index(big_catalog)["location"].tolist()))
        assert len(locs) == 150 and _status(browser)["drawn"] == 150
        def rows():
            return [int(r.get_attribute("data-loc")) for r in browser.find_elements(By.CSS_SELECTOR, "#loc-rows tr")]

        assert rows() == locs[:100]
        assert browser.find_element(By.ID, "page").text.startswith("page 1 of 2")
        browser.find_element(By.ID, "next").click()
        assert rows() == locs[100:]
        assert browser.find_element(By.ID, "next").get_attribute("disabled") is not None
        assert "page=2" in browser.current_url
    finally:
        server.shutdown()
        server.server_close()


def test_static_site_from_a_web_server_and_from_disk(browser, catalog, tmp_path, serve_root):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root = _copy(catalog, tmp_path / "catalogs" / "demo")
    r = CliRunner().invoke(main, ["catalog", "html", str(root), "--out", str(tmp_path / "site")])
    assert r.exit_code == 0, r.output
    n_loc, n_items = 5, 20
    location = int(_index(root)["location"].min())
    base = serve_root(tmp_path)
    for index in (base + "site/index.html", (tmp_path / "site" / "index.html").as_uri()):
        _open(browser, index)
        st = _status(browser)
        assert (st["locations"], st["items"], st["drawn"]) == (n_loc, n_items, n_loc)
        link = browser.find_element(By.CSS_SELECTOR, f'#loc-rows tr[data-loc="{location}"] a.loc-link')
        _navigate(browser, link.click)
        _check_location_page(browser, root, location)
        WebDriverWait(browser, 20).until(lambda d: d.execute_script(
            "const i = [...document.querySelectorAll('img.thumb-img')];"
            "return i.length === 4 && i.every(i => i.complete && i.naturalWidth > 0)"))
        href = browser.find_element(By.CSS_SELECTOR, "a.item-link").get_attribute("href")
        assert href.startswith(index.rsplit("/site/", 1)[0] + "/catalogs/demo/")
