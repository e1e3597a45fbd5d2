"""The Earth Engine source against a loopback Earth Engine (tests/servers/earthengine.py)."""

import datetime as dt
import json
import socket
import sys
import threading

import numpy as np
import pytest

import ee
from seco_data.catalog.index import CatalogIndex
from helpers import check_catalog, ledger_rows
from seco_data.sample.run import MAX_CONSECUTIVE_ERRORS, sample
from seco_data.errors import CredentialsError, SourceError, SourceUnavailable
from seco_data.grid import PatchGrid
from seco_data.recipe import load_recipe
from seco_data.sample.select import RetryPolicy
from seco_data.sources import get_source
from seco_data.sources import earthengine_client as client
from seco_data.sources import earthengine_images as images
from seco_data.sources.earthengine import EarthEngineSource
from servers.earthengine import EarthEngineServer

BANDS = ["B02", "B03", "B04", "B08", "B05", "B01"]
GROUPS = {10: ("B02", "B03", "B04", "B08"), 20: ("B05",), 60: ("B01",)}
GRID = PatchGrid.around(2.35, 48.85)  # Paris, EPSG:32631
FAST = RetryPolicy(base_s=0.01)


def script(k):
    """Every 5 days: no data, too cloudy a scene, a cloudy patch, a clean patch, a nearly clean one."""
    return [(1.0, 0.0, 0.0), (50.0, 0.0, 1.0), (4.0, 0.5, 1.0), (8.0, 0.0, 1.0), (3.0, 0.02, 1.0)][k % 5]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Loopback only: ee.Initialize's deprecated-asset list (storage.googleapis.com) is not fetched,
    and any connection elsewhere fails loudly. The process-wide client is reset after each test."""
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", lambda: {})
    connect = socket.socket.connect

    def loopback_only(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"network blocked in tests: {address}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    for var in ("EE_PROJECT", "GOOGLE_CLOUD_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    yield
    client.reset()


@pytest.fixture()
def server():
    with EarthEngineServer(script) as s:
        yield s


def _source(server, **kw):
    return EarthEngineSource(url=server.url, project="test-project", timeout=5.0, **kw)


def _recipe(server, n=3, **options):
    return load_recipe("demo", {
        "source": "earthengine", "n": n, "bands": BANDS, "seasons.anchors": ["2021-03-20", "2021-09-22"],
        "source_options": {"url": server.url, "project": "test-project", "timeout": 5.0, **options},
    })


def _check_pixels(out, server, n, seasons=2):
    """Every GeoTIFF holds exactly the DN the server served for the season's scene and grid."""
    check_catalog(out, n, seasons)
    patches = list(CatalogIndex(out).patches())
    assert len(patches) == n * seasons
    for p in patches:
        for a in p.data:  # not the thumbnail
            res, _, left, _, _, top = a.transform
            data = a.read()
            for i, band in enumerate(a.bands):
                want = server.expected(p.scene_id, band, left, top, int(res), data.shape[1])
                np.testing.assert_array_equal(data[i], want)
    return patches


# -- requests ------------------------------------------------------------------------------------


def test_search_asks_once_for_the_footprint_and_window(server):
    src = _source(server)
    scenes = src.search(GRID, dt.date(2021, 3, 1), dt.date(2021, 3, 20))
    assert len(server.calls("POST", r"value:compute$")) == 1  # all properties in one getInfo
    s = server.searches[-1]
    assert s["collection"] == "COPERNICUS/S2_SR_HARMONIZED" and s["crs"] == f"EPSG:{GRID.epsg}"
    assert s["bounds"] == list(GRID.bounds)
    assert (s["start"].date(), s["end"].date()) == (dt.date(2021, 3, 1), dt.date(2021, 3, 21))  # end exclusive
    assert [x.datetime.date() for x in scenes] == [dt.date(2021, 3, 1) + dt.timedelta(days=5 * i) for i in range(4)]
    assert {x.platform for x in scenes} == {"sentinel-2a", "sentinel-2b"} and all(x.product == "L2A" for x in scenes)
    assert max(x.cloud_cover for x in scenes) == 50.0  # no pre-filter on cloud
    assert scenes[0].extra["asset_id"] == f"COPERNICUS/S2_SR_HARMONIZED/{scenes[0].scene_id}"
    assert src.counters["requests"] == 4  # discovery x2 + algorithms + the search


def test_read_many_one_request_per_resolution_group(server):
    src = _source(server)
    scenes = src.search(GRID, dt.date(2021, 3, 1), dt.date(2021, 3, 25))
    masks = src.read_masks(scenes[2], GRID)  # probing one candidate: two bands at 10 m
    probe = server.pixel_requests[-1]
    assert probe["bandIds"] == ["s0_cloud", "s0_valid"]
    assert f"COPERNICUS/S2_CLOUD_PROBABILITY/{scenes[2].scene_id}" in probe["loads"]
    k = server.scene_k(scenes[2].scene_id)
    assert masks.valid_fraction == script(k)[2] and masks.cloud_fraction == pytest.approx(script(k)[1], abs=0.01)

    before = len(server.pixel_requests)
    reads = src.read_many(scenes, GRID, GROUPS)
    asked = server.pixel_requests[before:]
    assert [r["grid"]["dimensions"] for r in asked] == [{"width": n, "height": n} for n in (264, 132, 44)]
    for r, res in zip(asked, (10, 20, 60)):
        assert r["grid"]["crsCode"] == f"EPSG:{GRID.epsg}" and r["fileFormat"] == "NPY"
        assert r["grid"]["affineTransform"] == {"scaleX": res, "shearX": 0, "translateX": GRID.x0,
                                                "shearY": 0, "scaleY": -res, "translateY": GRID.y0}
        assert GRID.x0 % 10 == 0 and GRID.y0 % 10 == 0
    # masks ride with the 10 m group, except for the scene probed above (cached)
    assert asked[0]["bandIds"] == [f"s{i}_{b}" for i in range(5) for b in GROUPS[10]
                                   + (("cloud", "valid") if i != 2 else ())]
    assert asked[1]["bandIds"] == [f"s{i}_B05" for i in range(5)]
    assert asked[2]["bandIds"] == [f"s{i}_B01" for i in range(5)]
    for scene, read in zip(scenes, reads):
        k = server.scene_k(scene.scene_id)
        assert read.masks.valid_fraction == script(k)[2]
        assert read.masks.cloud_fraction == pytest.approx(script(k)[1] if script(k)[2] else 1.0, abs=0.01)
        for res, names in GROUPS.items():
            assert read.pixels[res].dtype == np.uint16 and read.pixels[res].shape == (len(names), *GRID.shape(res))
            for i, b in enumerate(names):
                np.testing.assert_array_equal(read.pixels[res][i], server.expected(
                    scene.scene_id, b, GRID.x0, GRID.y0, res, GRID.shape(res)[0]))
        assert (read.pixels[10][:, ~read.masks.valid] == 0).all()  # nodata 0 where invalid
    # read() is read_many of one scene; its masks are cached now: only the bands are asked
    before = len(server.pixel_requests)
    one = src.read(scenes[3], GRID, {10: ("B04",)})
    assert [r["bandIds"] for r in server.pixel_requests[before:]] == [["s0_B04"]]
    np.testing.assert_array_equal(one.pixels[10], reads[3].pixels[10][2:3])


@pytest.mark.parametrize("cloud, collection", [
    ("s2cloudless", "COPERNICUS/S2_CLOUD_PROBABILITY"),
    ("cloudscoreplus", "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"),
    ("qa60", None),
])
def test_cloud_methods(server, cloud, collection):
    src = _source(server, cloud=cloud, product="L1C")
    found = src.search(GRID, dt.date(2021, 3, 1), dt.date(2021, 4, 30))
    scenes = [s for s in found if script(server.scene_k(s.scene_id))[1]]  # those with some cloud
    assert {server.scene_k(s.scene_id) % 2 for s in scenes} == {0, 1}  # QA60: opaque (bit 10) and cirrus (bit 11)
    for s in scenes:
        m = src.read_masks(s, GRID)
        assert m.cloud_fraction == pytest.approx(script(server.scene_k(s.scene_id))[1], abs=0.01)
        loads = server.pixel_requests[-1]["loads"]
        assert f"COPERNICUS/S2_HARMONIZED/{s.scene_id}" in loads
        assert (collection is None and len(loads) == 1) or f"{collection}/{s.scene_id}" in loads
    assert server.searches[-1]["collection"] == "COPERNICUS/S2_HARMONIZED"
    src.read(scenes[0], GRID, {60: ("B10",)})  # L1C has the cirrus band


def test_requests_split_only_past_the_size_limit(server, monkeypatch):
    layers = [images.Layer(i, tuple(f"B{j}" for j in range(13)), True) for i in range(5)]
    assert len(images.plan(layers, (264, 264))) == 1  # 5 dates x 15 bands x 264 px: one request
    assert [len(c) for c in images.plan(layers, (264, 264), max_bytes=2 * 15 * 264 * 264 * 2)] == [2, 2, 1]
    src = _source(server)
    scenes = src.search(GRID, dt.date(2021, 3, 1), dt.date(2021, 3, 25))
    monkeypatch.setattr(images, "MAX_REQUEST_BYTES", 2 * 6 * 264 * 264 * 2)
    before = len(server.pixel_requests)
    reads = src.read_many(scenes, GRID, {10: GROUPS[10]})
    assert [len(r["bandIds"]) for r in server.pixel_requests[before:]] == [12, 12, 6]
    assert all(r["bytes"] <= images.MAX_REQUEST_BYTES for r in server.pixel_requests[before:])
    want = server.expected(scenes[4].scene_id, "B02", GRID.x0, GRID.y0, 10, 264)
    np.testing.assert_array_equal(reads[4].pixels[10][0], want)


# -- end to end ----------------------------------------------------------------------------------


def test_sample_end_to_end(tmp_path, server, schemas):
    out = tmp_path / "out"
    report = sample(_recipe(server), out, workers=2, retry=FAST)
    assert report.complete and report.patches == 6
    patches = _check_pixels(out, server, 3)
    for p in patches:  # the clean scene (k % 5 == 3) wins every season
        assert server.scene_k(p.scene_id) % 5 == 3
    assert report.skipped_scenes["coverage"] > 0 and report.skipped_scenes["patch_cloud"] > 0
    assert report.source_stats["requests"] > 0 and report.source_stats["bytes"] > 0
    c = json.loads((out / "collection.json").read_text())
    assert c["seco:source"] == {"name": "earthengine", "product": "L2A", "synthetic": False, "cloud": "s2cloudless",
                                "collection": "COPERNICUS/S2_SR_HARMONIZED", "endpoint": "custom",
                                "project": "test-project"}
    assert {p["name"] for p in c["providers"]} >= {"ESA", "Google Earth Engine"}
    # the chosen scenes' masks were cached: reading asked each group once per location, no cloud bands
    reads = [r for r in server.pixel_requests if any(b.endswith("_B02") for b in r["bandIds"])]
    assert len(reads) == 3 and not any(b.endswith("_cloud") for r in reads for b in r["bandIds"])


def test_faults_during_a_run_are_retried_and_counted(tmp_path, server):
    clean = EarthEngineServer(script).start()
    try:
        sample(_recipe(clean), tmp_path / "clean", workers=2, retry=FAST)
        baseline = len(clean.requests)
    finally:
        clean.stop()
    faults = [
        server.fault("status", r"value:compute$", status=429, retry_after="0.01"),
        server.fault("status", r"image:computePixels$", times=2, status=500),
        server.fault("status", r"value:compute$", times=2, status=503),
        server.fault("timeout", r"image:computePixels$", seconds=2.0),
        server.fault("truncate", r"image:computePixels$"),
        server.fault("garbage", r"value:compute$"),
        server.fault("garbage", r"image:computePixels$", body=b"\x93NUMPY not really"),
        server.fault("drop", r"value:compute$"),
    ]
    out = tmp_path / "out"
    report = sample(_recipe(server, timeout=1.0), out, workers=2, retry=FAST)
    _check_pixels(out, server, 3)
    assert ledger_rows(out) == ledger_rows(tmp_path / "clean")  # same result as a run without faults
    hits = sum(f.hits for f in faults)
    assert hits == 10
    assert len(server.requests) == baseline + hits  # each fault cost exactly one more request
    stats = report.source_stats
    assert stats["retries"] == hits
    assert stats["errors_rate_limited"] == 1 and stats["errors_server"] == 4 and stats["errors_timeout"] == 1
    assert stats["errors_garbled"] == 2 and stats["errors_connection"] == 2


def test_outage_ends_the_run_and_a_rerun_resumes(tmp_path, server):
    out = tmp_path / "out"
    server.fault("status", r"value:compute$|image:computePixels$", times=10_000, status=503, retry_after="0")
    with pytest.raises(SourceUnavailable) as e:
        sample(_recipe(server), out, workers=1, retry=FAST)
    assert "\n" not in e.value.one_line() and "503" in e.value.one_line()
    retries = FAST.retries + 1
    assert len(server.calls("POST")) == MAX_CONSECUTIVE_ERRORS * retries  # bounded: no hidden retry layer
    server.clear_faults()
    report = sample(_recipe(server), out, workers=1, retry=FAST)
    assert report.resumed and report.complete
    _check_pixels(out, server, 3)
    # the locations lost to the outage were tried again: the same result as a run without it
    assert "source_error" not in report.rejections
    sample(_recipe(server), tmp_path / "clean", workers=1, retry=FAST)
    assert ledger_rows(out) == ledger_rows(tmp_path / "clean")


def test_concurrency_and_rate_limits(server):
    src = _source(server, max_concurrency=2)
    src.search(GRID, dt.date(2021, 3, 1), dt.date(2021, 3, 5))  # initialise
    server.max_in_flight = 0
    server.gate = 2  # the server answers only once two requests overlap: the cap is reached, never passed
    sources = [get_source("earthengine", "L2A", url=server.url, project="test-project", timeout=5.0,
                          max_concurrency=2) for _ in range(6)]
    window = (GRID, dt.date(2021, 3, 1), dt.date(2021, 3, 5))
    threads = [threading.Thread(target=s.search, args=window) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.max_in_flight == 2 and all(s.counters["requests"] == 1 for s in sources)
    clock = FakeClock()
    bucket = client.TokenBucket(50.0, clock=clock.now, sleep=clock.sleep)
    for _ in range(25):
        bucket.acquire()
    assert clock.t == pytest.approx(20 / 50)  # a burst of 5, then 50 per second


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


# -- credentials ---------------------------------------------------------------------------------


def test_project_is_required(server, monkeypatch):
    with pytest.raises(CredentialsError, match="--ee-project or set EE_PROJECT"):
        EarthEngineSource(url=server.url)
    monkeypatch.setenv("EE_PROJECT", "test-project")
    assert EarthEngineSource(url=server.url).project == "test-project"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
    with pytest.raises(CredentialsError, match="credentials"):  # ADC without a usable key
        EarthEngineSource()


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials(tmp_path, server, status):
    server.fault("status", r"value:compute$", times=100, status=status)
    with pytest.raises(CredentialsError, match=f"HTTP {status}"):
        _source(server).search(GRID, dt.date(2021, 3, 1), dt.date(2021, 3, 5))
    with pytest.raises(CredentialsError):  # a run stops at once: retrying cannot help
        sample(_recipe(server), tmp_path / "out", retry=FAST)
    assert len(server.calls("POST", r"value:compute$")) <= 1 + 2  # no retry: one try per location dispatched


def test_check(server):
    info = _source(server).check()
    assert info == {"project": "test-project", "endpoint": server.url, "collection": "COPERNICUS/S2_SR_HARMONIZED",
                    "max_concurrency": 40}
    assert server.searches[-1]["limit"] == 1
    with pytest.raises(CredentialsError, match="permission to use project"):
        EarthEngineSource(url=server.url, project="not-my-project").check()
    server.stop()
    with pytest.raises(SourceUnavailable):
        EarthEngineSource(url=server.url, project="test-project", timeout=1.0).check()


def _key_file(path, server, private_key=None):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    if private_key is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "test-project", "private_key_id": "0123456789abcdef",
        "private_key": private_key, "client_email": "seco@test-project.iam.gserviceaccount.com",
        "client_id": "1234567890", "token_uri": server.url + "/token",
    }))
    return private_key.splitlines()[3]  # a line of the secret


def test_service_account_key_never_leaks(tmp_path, server, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    server.require_auth = True
    secret = _key_file(tmp_path / "key.json", server)
    out = tmp_path / "out"
    sample(_recipe(server, n=1, credentials=str(tmp_path / "key.json")), out, retry=FAST)
    assert server.tokens and server.calls("POST", r"value:compute$")[0].headers["authorization"].startswith("Bearer ")
    src = EarthEngineSource(project="test-project", credentials=tmp_path / "key.json", url=server.url)
    text = caplog.text + json.dumps(src.describe()) + json.dumps(src.check())
    files = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file() and p.suffix != ".tif")
    for s in [secret, *server.tokens]:
        assert s not in text and s.encode() not in files
    # the token endpoint refuses the key: a credentials error that does not quote it
    server.fault("status", r"/token$", times=10, status=400,
                 body=b'{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}')
    client.reset()
    with pytest.raises(CredentialsError) as e:
        EarthEngineSource(project="test-project", credentials=tmp_path / "key.json", url=server.url).check()
    assert "access token" in str(e.value) and secret not in e.value.one_line()
    # a key that cannot be parsed
    _key_file(tmp_path / "bad.json", server, "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\nMORE\nEND\n")
    with pytest.raises(CredentialsError) as e:
        EarthEngineSource(project="test-project", credentials=tmp_path / "bad.json", url=server.url)
    assert "TOPSECRET" not in e.value.one_line() and "TOPSECRET" not in caplog.text


# -- options -------------------------------------------------------------------------------------


def test_options_and_description(tmp_path, server, monkeypatch):
    with pytest.raises(TypeError):
        EarthEngineSource(project="p", url=server.url, bogus=1)
    with pytest.raises(ValueError, match="cloud method"):
        _source(server, cloud="sky")
    with pytest.raises(ValueError, match="max_concurrency"):
        _source(server, max_concurrency=0)
    src = get_source("earthengine", "L1C", url=server.url, project="test-project")
    assert src.describe() == {"name": "earthengine", "product": "L1C", "synthetic": False, "cloud": "s2cloudless",
                              "collection": "COPERNICUS/S2_HARMONIZED", "endpoint": "custom", "project": "test-project"}
    assert src.io_bound and src.license == "other"
    _key_file(tmp_path / "key.json", server)  # a key: nothing is looked up, nothing is contacted yet
    hv = EarthEngineSource(project="test-project", credentials=tmp_path / "key.json", high_volume=True)
    assert hv.endpoint == ee.data.HIGH_VOLUME_API_BASE_URL and hv.describe()["endpoint"] == "high-volume"
    assert EarthEngineSource(project="p", credentials=tmp_path / "key.json").endpoint == client.STANDARD_URL
    with pytest.raises(ValueError, match="not a Sentinel-2 L1C band"):
        src.read(src.search(GRID, dt.date(2021, 3, 1), dt.date(2021, 3, 5))[0], GRID, {10: ("B99",)})
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "ee", None)
        with pytest.raises(SourceError, match="earthengine-api") as e:
            _source(server)
    assert "pip install 'seco[earthengine]'" in e.value.one_line()


def test_sources_check_cli(server):
    """`seco-data sources check` end to end: a dry run on the served grid; a refused project fails."""
    from click.testing import CliRunner

    from seco_cli.data import main

    opts = ["--source", "earthengine", "--ee-project", "test-project", "--set", f"source_options.url={server.url}",
            "--bands", ",".join(BANDS), "--set", "seasons.anchors=[2021-03-20, 2021-09-22]",
            "--lon", "2.35", "--lat", "48.85"]
    r = CliRunner().invoke(main, ["sources", "check", *opts])
    assert r.exit_code == 0, r.output
    assert "ok   credentials" in r.output and "ok   pixels" in r.output and "10 m: 4x264x264 uint16" in r.output
    r = CliRunner().invoke(main, ["sources", "check", *opts[:2], "--ee-project", "not-my-project", *opts[4:]])
    assert r.exit_code == 7 and "FAIL credentials" in r.output and "Traceback" not in r.output
