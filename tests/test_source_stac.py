"""The ``stac`` source against a loopback STAC API serving Cloud-Optimized GeoTIFFs."""

import datetime as dt
import json
import re
import sys

import numpy as np
import pytest

import seco_data.sample.run as collect
from seco_data.catalog.index import CatalogIndex
from helpers import check_catalog, ledger_rows
from seco_data.sample.run import sample
from seco_data.errors import CredentialsError, SourceError, SourceUnavailable
from seco_data.grid import PatchGrid, to_lonlat
from seco_data.recipe import load_recipe
from seco_data.sample.select import RetryPolicy
from seco_data.sources import get_source, stac_read
from seco_data.sources.stac import StacSource
from seco_data.sources.stac_catalog import PlanetaryComputerSigner
from seco_data.catalog.validate import validate_catalog
from servers.stac import (
    COLLECTION, EPSG, ORIGIN, SCENES, WGS84_COLLECTION, StacServer, band_pixels, make_scenes, scl_pixels,
    wgs84_value,
)

#: tile coordinates (metres right / down from the tile's corner) of the sampled points
POINTS = [(1500, 1500), (4500, 1500), (1500, 4500), (4500, 4500)]
#: the scene each point gets per season (see SCENES: clouds, shadow and no data are scripted)
EXPECTED = [(1, 3), (1, 2), (0, 3), (0, 2)]
JAN, APR = (dt.date(2020, 12, 26), dt.date(2021, 1, 25)), (dt.date(2021, 3, 31), dt.date(2021, 4, 30))


@pytest.fixture(scope="module")
def stac_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("stac")
    return root, make_scenes(root)


@pytest.fixture()
def server(stac_data, monkeypatch):
    monkeypatch.setitem(stac_read.GDAL_ENV, "GDAL_HTTP_RETRY_DELAY", "0.05")
    with StacServer(*stac_data) as s:
        yield s


def _grid(dx, dy) -> PatchGrid:
    return PatchGrid.around(*to_lonlat(EPSG, ORIGIN[0] + dx, ORIGIN[1] - dy))


def _served(scene_index, band, grid, res=10):
    n = 9000 // res
    r0, c0 = (ORIGIN[1] - grid.y0) // res, (grid.x0 - ORIGIN[0]) // res
    h = grid.size_m // res
    return band_pixels(scene_index, band, (n, n))[r0:r0 + h, c0:c0 + h]


def _ranges_only(server):
    """Every COG GET asked for a byte range, and no (band) file was fetched whole."""
    gets = [r for r in server.data_requests() if r.method == "GET"]
    assert gets and all(re.fullmatch(r"bytes=\d+-\d+", r.headers.get("Range", "")) for r in gets)
    for path in {r.path for r in gets}:
        size = (server.root / path.lstrip("/")).stat().st_size
        if size <= 32768:  # GDAL's first read (16 kB) may hold a tiny file whole
            continue
        got = sum(int(b) - int(a) + 1 for a, b in (re.findall(r"\d+", r.headers["Range"]) for r in gets if r.path == path))
        assert got < size, (path, got, size)


def _recipe(csv, url, n=3, **kw):
    return load_recipe("demo", {
        "source": "stac", "product": "L2A", "n": n, "bands": ["B02", "B03", "B04", "B08", "B05"],
        "seasons.anchors": ["2021-01-10", "2021-04-15"], "seasons.window_days": 30, "seasons.shift_days": 0,
        "locations.sampler": "points", "locations.path": str(csv), "locations.land_only": False,
        "filters.scene_cloud_max": 50, "source_options": {"url": url, "collection": COLLECTION, **kw},
    })


@pytest.fixture()
def points_csv(tmp_path):
    p = tmp_path / "points.csv"
    rows = ["lon,lat,id"] + [f"{lon:.7f},{lat:.7f},p{i}" for i, (lon, lat) in
                             enumerate(to_lonlat(EPSG, ORIGIN[0] + x, ORIGIN[1] - y) for x, y in POINTS)]
    p.write_text("\n".join(rows) + "\n")
    return p


def test_search_read_and_masks_against_the_api(server):
    src = get_source("stac", "L2A", url=server.url + "/", collection=COLLECTION)
    g = _grid(1500, 1500)
    scenes = src.search(g, *JAN)
    assert [s.scene_id for s in scenes] == [SCENES[0].id, SCENES[1].id]
    s0 = scenes[0]
    assert s0.cloud_cover == 5.0 and s0.platform == "sentinel-2a" and s0.datetime == dt.datetime(2021, 1, 5, 10, 30, tzinfo=dt.timezone.utc)
    q = server.searches[-1]
    assert q["collections"] == [COLLECTION] and q["datetime"] == "2020-12-26T00:00:00Z/2021-01-25T23:59:59Z"
    from shapely.geometry import Point, shape
    assert shape(q["intersects"]).contains(Point(*g.centre_lonlat))
    # a wider window pages through next links (2 items per page)
    assert len(src.search(g, JAN[0], APR[1])) == 4 and server.searches[-1].get("token") == "2"

    read = src.read(scenes[1], g, {10: ("B02", "B08"), 20: ("B05",)})
    assert read.pixels[10].dtype == np.uint16 and read.pixels[10].shape == (2, 264, 264)
    assert np.array_equal(read.pixels[10][0], _served(1, "B02", g))  # aligned window read: exact
    assert np.array_equal(read.pixels[10][1], _served(1, "B08", g))
    assert np.array_equal(read.pixels[20][0], _served(1, "B05", g, 20))
    assert src.counters["warped_reads"] == 0 and src.counters["requests"] >= 2
    _ranges_only(server)


def test_scl_gives_cloud_shadow_and_no_data_masks(server):
    src = StacSource(url=server.url, collection=COLLECTION)
    g = PatchGrid(EPSG, ORIGIN[0] + 1800, ORIGIN[1] - 1000, 2640)  # straddles cloud, shadow, no data
    by_id = {s.scene_id: s for s in src.search(g, JAN[0], APR[1])}
    for k in (0, 2):
        m = src.read_masks(by_id[SCENES[k].id], g)
        scl = np.repeat(np.repeat(scl_pixels(SCENES[k]), 2, 0), 2, 1)[100:364, 180:444]  # 20 m -> 10 m
        assert np.array_equal(m.cloud, np.isin(scl, (8, 9, 10)))
        assert np.array_equal(m.shadow, scl == 3)
        assert np.array_equal(m.valid, scl != 0)
    m0 = src.read_masks(by_id[SCENES[0].id], g)
    assert 0 < m0.cloud.mean() < 1 and 0 < m0.shadow.mean() < 1 and m0.valid.all()
    m2 = src.read_masks(by_id[SCENES[2].id], g)
    assert 0 < m2.valid_fraction < 1 and not m2.cloud.any()
    # no data is written as 0 in the pixels
    px = src.read(by_id[SCENES[2].id], g, {10: ("B04",)}).pixels[10][0]
    assert (px[~m2.valid] == 0).all() and (px[m2.valid] > 0).all()


def test_reprojected_read_is_close_and_no_cloud_asset_means_cloud_free(server, stac_data):
    src = StacSource(url=server.url, collection=WGS84_COLLECTION)
    assert "cloud-free" in src.describe()["cloud_mask"]
    g = _grid(4500, 4500)
    (scene,) = src.search(g, dt.date(2021, 2, 20), dt.date(2021, 3, 10))
    read = src.read(scene, g, {10: ("B02", "B04")})
    assert not read.masks.cloud.any() and read.masks.valid.all()
    bounds = json.loads((stac_data[0] / "wgs84.json").read_text())["bounds"]
    xs, ys = g.x0 + (np.arange(264) + 0.5) * 10, g.y0 - (np.arange(264) + 0.5) * 10
    lon, lat = to_lonlat(EPSG, *np.meshgrid(xs, ys))
    diff = read.pixels[10].astype(float) - wgs84_value(lon, lat, bounds)[None]
    assert np.abs(diff).mean() < 2 and np.abs(diff).max() < 10
    assert src.counters["warped_reads"] >= 2
    _ranges_only(server)


def test_sample_end_to_end(server, points_csv, tmp_path, schemas):
    out = tmp_path / "out"
    report = sample(_recipe(points_csv, server.url + "/"), out, retry=RetryPolicy(base_s=0.01))
    assert report.complete and report.accepted == 3 and report.patches == 6
    check_catalog(out, 3, 2)
    n, problems = validate_catalog(out, schemas)
    assert problems == [] and n == 2 + 3  # catalog, collection, an item per location
    rows = ledger_rows(out)
    assert [r[2] for r in rows] == [SCENES[k].id for exp in EXPECTED[:3] for k in exp]
    # the written patch holds the served pixels
    p = next(p for p in CatalogIndex(out).patches() if (p.location, p.season) == (0, 0))
    assert np.array_equal(p.data[0].read()[0], _served(EXPECTED[0][0], "B02", _grid(*POINTS[0])))
    assert report.source_stats.get("requests", 0) > 0
    _ranges_only(server)


def test_faults_are_retried_and_the_run_completes(server, points_csv, tmp_path):
    retry = RetryPolicy(retries=6, base_s=0.01)
    sample(_recipe(points_csv, server.url + "/", timeout=1), tmp_path / "clean", retry=retry)
    clean = len(server.searches)
    server.fault("status", r"^/search", times=1, status=429, retry_after="0")
    server.fault("status", r"^/search", times=2, status=503)
    server.fault("timeout", r"^/search", times=1, seconds=2.5)
    server.fault("garbage", r"^/search", times=1)
    server.fault("truncate", r"^/search", times=1)
    server.fault("status", r"^/data/", times=2, status=500)
    server.fault("truncate", r"^/data/.*B02", times=1)
    server.fault("timeout", r"^/data/.*SCL", times=1, seconds=2.5)
    before = len(server.searches)
    report = sample(_recipe(points_csv, server.url + "/", timeout=1), tmp_path / "faulty", retry=retry)
    assert report.complete and ledger_rows(tmp_path / "faulty") == ledger_rows(tmp_path / "clean")
    assert len(server.searches) - before <= clean + 6  # one more search per injected search fault at most
    check_catalog(tmp_path / "faulty", 3, 2)


def test_retry_after_and_credentials_errors(server):
    src = StacSource(url=server.url, collection=COLLECTION)
    g = _grid(1500, 1500)
    server.fault("status", r"^/search", status=429, retry_after="7")
    with pytest.raises(SourceUnavailable) as e:
        src.search(g, *JAN)
    assert e.value.retry_after == 7
    server.fault("status", r"^/search", status=401)
    with pytest.raises(CredentialsError):
        src.search(g, *JAN)
    scene = src.search(g, *JAN)[0]
    server.fault("status", r"^/data/", status=403, times=10)
    with pytest.raises(CredentialsError, match="403"):
        src.read_masks(scene, g)


def test_outage_ends_the_run_with_a_resumable_ledger(server, points_csv, tmp_path, monkeypatch):
    monkeypatch.setattr(collect, "MAX_CONSECUTIVE_ERRORS", 2)
    out, retry = tmp_path / "out", RetryPolicy(retries=2, base_s=0.01)
    server.fault("status", r"^/search", times=10_000, status=503, retry_after="0")
    with pytest.raises(SourceUnavailable, match="2 locations in a row"):
        sample(_recipe(points_csv, server.url, n=2), out, retry=retry)
    assert len(server.calls(path=r"^/search")) == 2 * 3  # two locations, three attempts each: bounded
    server.clear_faults()
    report = sample(_recipe(points_csv, server.url, n=2), out, retry=retry)
    assert report.resumed and report.accepted == 2 and "source_error" not in report.rejections
    # the locations lost to the outage are tried again: the same result as a run without it
    assert [r[0] for r in ledger_rows(out)] == [0, 0, 1, 1]
    sample(_recipe(points_csv, server.url, n=2), tmp_path / "clean", retry=retry)
    assert ledger_rows(out) == ledger_rows(tmp_path / "clean")
    check_catalog(out, 2, 2)


@pytest.mark.parametrize("where", ["disk", "http"])
def test_static_catalog(server, stac_data, where):
    url = str(stac_data[0] / "static" / "catalog.json") if where == "disk" else server.url + "/static/catalog.json"
    src = StacSource(url=url)
    info = src.check()
    assert info["kind"] == "static" and len(info["items_sample"]) == 3
    g = _grid(4500, 1500)
    scenes = src.search(g, *APR)
    assert sorted(s.scene_id for s in scenes) == [SCENES[2].id, SCENES[3].id]
    walked = len(server.calls(path=r"^/static/"))
    assert src.search(g, *JAN) and len(server.calls(path=r"^/static/")) == walked  # indexed once
    scene = next(s for s in scenes if s.scene_id == SCENES[3].id)
    read = src.read(scene, g, {10: ("B03",)})
    assert np.array_equal(read.pixels[10][0], _served(3, "B03", g))
    assert src.read_masks(scene, g).valid.all()


def test_planetary_computer_signing(server):
    server.require_token = True
    g = _grid(1500, 4500)
    plain = StacSource(url=server.url, collection=COLLECTION)
    scene = plain.search(g, *JAN)[0]
    with pytest.raises(CredentialsError):
        plain.read_masks(scene, g)
    signed = StacSource(url=server.url, collection=COLLECTION, signing={
        "type": "planetarycomputer", "token_url": server.url + "/api/sas/v1/token/{collection}"})
    scene = signed.search(g, *JAN)[0]
    read = signed.read(scene, g, {10: ("B02",)})
    assert np.array_equal(read.pixels[10][0], _served(0, "B02", g))
    signed.read(signed.search(g, *APR)[0], g, {10: ("B02",)})
    assert server.token_requests == 1  # cached until it expires
    assert all(r.query.get("sig") for r in server.data_requests()[-3:])
    pc = PlanetaryComputerSigner("https://planetarycomputer.microsoft.com/api/stac/v1", None, 5, plain.counters)
    assert pc.token_url == "https://planetarycomputer.microsoft.com/api/sas/v1/token/{collection}"
    assert pc.sign("https://other.example.com/a.tif", "c") == "https://other.example.com/a.tif"


def test_options_and_errors(tmp_path, monkeypatch, server):
    with pytest.raises(TypeError):
        StacSource(url=server.url, colection="x")
    with pytest.raises(TypeError):
        StacSource(url=server.url, timeout=0)
    with pytest.raises(SourceError, match="no STAC catalog") as e:
        StacSource(url=tmp_path / "nope" / "catalog.json")
    assert "make-local-catalog" in e.value.hint
    (tmp_path / "catalog.json").write_text("{not json")
    with pytest.raises(SourceError, match="not a STAC catalog"):
        StacSource(url=tmp_path).search(_grid(1500, 1500), *JAN)
    assert StacSource("L1C", url="https://earth-search.aws.element84.com/v1").collection == "sentinel-2-l1c"
    assert StacSource(url="https://planetarycomputer.microsoft.com/api/stac/v1").collection == "sentinel-2-l2a"
    src = StacSource(url=server.url, collection=COLLECTION, assets={"B02": "missing"})
    g = _grid(1500, 1500)
    scene = src.search(g, *JAN)[0]
    with pytest.raises(SourceError, match="no asset 'missing'"):
        src.read(scene, g, {10: ("B02",)})
    monkeypatch.setitem(sys.modules, "pystac_client", None)
    with pytest.raises(SourceError) as e:
        StacSource(url=server.url, collection=COLLECTION).search(g, *JAN)
    assert "seco[stac]" in e.value.hint
