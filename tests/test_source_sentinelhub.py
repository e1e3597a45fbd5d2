"""The Sentinel Hub source against a loopback Sentinel Hub (tests/servers/sentinelhub.py)."""

import datetime as dt
import json
import logging
import sys
import threading

import numpy as np
import pytest

from seco_data.catalog.index import CatalogIndex
from helpers import check_catalog, ledger_rows
from servers.sentinelhub import SentinelHubServer, dn, masks
from seco_data.sample.run import sample
from seco_data.errors import CredentialsError, SourceError, SourceUnavailable
from seco_data.grid import PatchGrid
from seco_data.recipe import load_recipe
from seco_data.sample.select import RetryPolicy

BANDS = ["B02", "B03", "B04", "B08", "B05", "B01"]
GRID = PatchGrid.around(13.4, 52.5)  # Berlin, UTM 33N


@pytest.fixture()
def server(monkeypatch):
    from sentinelhub import SentinelHubDownloadClient

    from seco_data.sources.sentinelhub_client import clear_sessions

    s = SentinelHubServer()
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http to 127.0.0.1, tests only
    monkeypatch.setenv("SH_CLIENT_ID", s.client_id)
    monkeypatch.setenv("SH_CLIENT_SECRET", s.client_secret)
    SentinelHubDownloadClient.clear_cache()
    clear_sessions()
    with s:
        yield s
    SentinelHubDownloadClient.clear_cache()
    clear_sessions()


def _source(server, **kw):
    from seco_data.sources.sentinelhub import SentinelHubSource

    return SentinelHubSource(base_url=server.url, token_url=server.url + "/oauth/token", **kw)


def _options(server, **kw):
    return {"base_url": server.url, "token_url": server.url + "/oauth/token", **kw}


def _recipe(server, n=4, **options):
    return load_recipe("demo", {
        "source": "sentinelhub", "n": n, "bands": BANDS, "seasons.anchors": ["2021-03-20", "2021-09-22"],
        "source_options": _options(server, **options)})


def _api_calls(server):
    return server.calls("POST", r"^/api/")


def _check_pixels(out, server):
    """Every GeoTIFF holds exactly what the server served for its season's scene and grid."""
    import rasterio

    for p in CatalogIndex(out).patches():
        k = round(server.k_of(dt.datetime.fromisoformat(p.datetime)))
        assert p.scene_id.startswith(server.scene_id(k)[:26])
        for a in p.data:  # GeoTIFFs, not the thumbnail
            arr = a.read()
            with rasterio.open(a.path) as ds:
                x0, y0 = int(ds.transform.c), int(ds.transform.f)
                assert ds.transform.a == a.resolution and arr.dtype == np.uint16
            assert arr.shape == (len(a.bands), 2640 // a.resolution, 2640 // a.resolution)
            for i, band in enumerate(a.bands):
                assert np.array_equal(arr[i], dn(x0, y0, a.resolution, arr.shape[1:], band, k)), (p.location, band)


# -- search, read, read_masks ----------------------------------------------------------------------

def test_search_pages_and_reads_on_the_patch_grid(server):
    src = _source(server)
    scenes = src.search(GRID, dt.date(2021, 3, 1), dt.date(2021, 4, 15))
    # pagination: page size 2, every page re-posted with the same query and the `next` token
    assert len(server.searches) >= 5
    first, *rest = server.searches
    assert "next" not in first and [s["next"] for s in rest] == list(range(2, 2 * len(server.searches), 2))
    assert all({k: v for k, v in s.items() if k != "next"} == first for s in rest)
    assert first["collections"] == ["sentinel-2-l2a"] and "filter" not in first
    assert first["datetime"] == "2021-03-01T00:00:00Z/2021-04-15T23:59:59Z"
    assert first["bbox"] == pytest.approx(GRID.bbox_lonlat(), abs=1e-6)
    # one scene per acquisition (the cloudier tile of a datatake is dropped), platform from the id
    feats = server.features(dt.datetime(2021, 3, 1, tzinfo=dt.timezone.utc),
                            dt.datetime(2021, 4, 15, 23, 59, 59, tzinfo=dt.timezone.utc))
    assert len(feats) > len(scenes) == len({s.datetime for s in scenes}) == 10
    for s in scenes:
        k = round(server.k_of(s.datetime))
        assert s.scene_id == server.scene_id(k) and s.cloud_cover == server.script(k)[0]
        assert s.platform == f"sentinel-2{'ab'[k % 2]}" and s.product == "L2A"
        assert s.extra["acquired"] == s.datetime.isoformat()

    scene = next(s for s in scenes if s.cloud_cover == 9.0)  # a quarter of the patch is no-data
    k = round(server.k_of(scene.datetime))
    groups = {10: ("B02", "B03", "B04", "B08"), 20: ("B05",), 60: ("B01",)}
    before = len(server.processes)
    got = src.read(scene, GRID, groups)
    asked = server.processes[before:]
    assert [(p["width"], p["height"]) for p in asked] == [(264, 264), (132, 132), (44, 44)]
    for p, (res, names) in zip(asked, groups.items()):
        assert p["bbox"] == list(GRID.bounds) and p["epsg"] == GRID.epsg == 32633
        assert p["type"] == "sentinel-2-l2a" and p["mosaicking"] == "leastCC" and p["units"] == "DN"
        assert p["from"] == (scene.datetime - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert p["to"] == (scene.datetime + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        if res == 10:  # the masks come with the finest group only
            assert p["inputs"] == [*names, "CLM", "dataMask"] and p["values"]["bands"] == list(names)
            assert p["outputs"] == {"bands": (len(names), "UINT16"), "masks": (2, "UINT8")}
            assert p["accept"] == "application/x-tar" and p["scene"] == k
        else:
            assert p["inputs"] == list(names) and p["outputs"] == {"bands": (len(names), "UINT16")}
            assert p["accept"] == "image/tiff" and p["scene"] == k
        clm, data = masks(GRID.shape(res), *server.script(k)[1:])
        pix = got.pixels[res]
        assert pix.dtype == np.uint16 and pix.shape == (len(names), *GRID.shape(res))
        for i, b in enumerate(names):
            assert np.array_equal(pix[i], np.where(data == 1, dn(GRID.x0, GRID.y0, res, GRID.shape(res), b, k), 0))
    assert got.masks.valid_fraction == 0.75 and got.masks.cloud_fraction == 0.0

    m = src.read_masks(next(s for s in scenes if s.cloud_cover == 6.0), GRID)
    p = server.processes[-1]
    assert p["responses"] == [("masks", "image/tiff")] and p["accept"] == "image/tiff"
    assert p["inputs"] == ["CLM", "dataMask"] and (p["width"], p["height"]) == (264, 264)
    assert m.valid_fraction == 1.0 and m.cloud_fraction == 0.5 and not m.shadow.any()
    # usage: every request counted, the processing units the server billed summed
    assert src.counters["requests"] == len(_api_calls(server))
    assert src.counters["processing_units"] == pytest.approx(server.pu_spent)
    assert src.counters["retries"] == 0


def test_l1c_cloud_filter_and_bad_requests(server):
    src = _source(server, product="L1C", scene_cloud_max=10)
    scenes = src.search(GRID, dt.date(2021, 3, 1), dt.date(2021, 3, 31))
    assert server.searches[0]["collections"] == ["sentinel-2-l1c"]
    assert server.searches[0]["filter"] == "eo:cloud_cover <= 10" and all(s.cloud_cover <= 10 for s in scenes)
    src.read(scenes[0], GRID, {60: ("B10",)})
    assert server.processes[-1]["type"] == "sentinel-2-l1c" and server.processes[-1]["inputs"][0] == "B10"
    with pytest.raises(ValueError, match="B10"):
        _source(server).read(scenes[0], GRID, {60: ("B10",)})
    # 400: not retried, the server's message in the error
    server.fault("status", r"/process", status=400, body=json.dumps({"error": {
        "status": 400, "reason": "Bad Request", "message": "Invalid evalscript: unknown band B99",
        "code": "RENDERER_EXCEPTION"}}).encode())
    n = len(_api_calls(server))
    with pytest.raises(SourceError, match="unknown band B99") as e:
        src.read_masks(scenes[0], GRID)
    assert not isinstance(e.value, SourceUnavailable) and len(_api_calls(server)) == n + 1


# -- failures of single requests ------------------------------------------------------------------

def test_transient_failures_fail_at_once_and_the_collector_retries_them(server):
    src = _source(server, timeout=0.5)
    scene = src.search(GRID, dt.date(2021, 3, 1), dt.date(2021, 3, 10))[0]
    # 429: Retry-After is in milliseconds; handed to the collector at once, never looped on here
    server.fault("status", r"/process", status=429, retry_after="1500")
    n = len(_api_calls(server))
    with pytest.raises(SourceUnavailable) as e:
        src.read_masks(scene, GRID)
    assert e.value.retry_after == 1.5 and len(_api_calls(server)) == n + 1
    assert src.counters["rate_limited"] == 1
    # 5xx, timeouts, drops and truncated bodies: one request, then SourceUnavailable (counted by
    # kind); the collector's policy, the one retry layer, tries again
    policy = RetryPolicy(retries=2, base_s=0.0)
    faults = [("status", {"status": 503}), ("status", {"status": 500}), ("timeout", {"seconds": 1.5}),
              ("drop", {}), ("truncate", {})]
    for kind, kw in faults:
        server.fault(kind, r"/process", **kw)
        n = len(_api_calls(server))
        with pytest.raises(SourceUnavailable):
            src.read_masks(scene, GRID)
        assert len(_api_calls(server)) == n + 1, kind
        server.fault(kind, r"/process", **kw)
        assert policy.call(src.read_masks, scene, GRID, counters=src.counters).valid_fraction > 0
        assert len(_api_calls(server)) == n + 3, kind
    assert src.counters["retries"] == 5 and src.counters["timeouts"] == 2
    assert src.counters["server_errors"] == 4 and src.counters["connection_errors"] == 4
    server.fault("status", r"/process", status=502, times=5)
    n = len(_api_calls(server))
    with pytest.raises(SourceUnavailable, match="502"):
        policy.call(src.read_masks, scene, GRID)
    assert len(_api_calls(server)) == n + 3  # 1 + policy.retries attempts, no more
    server.clear_faults()
    # garbled 200 answers: transient, left to the collector's retry policy
    for path in (r"/process", r"/catalog"):
        server.fault("garbage", path)
        with pytest.raises(SourceUnavailable, match="unreadable"):
            src.read_masks(scene, GRID) if path == r"/process" else src.search(GRID, dt.date(2021, 3, 1),
                                                                               dt.date(2021, 3, 2))


def test_expired_token_is_renewed_once_and_threads_share_one_token(server):
    sources = [_source(server) for _ in range(4)]
    errors = []

    def work(s):
        try:
            s.search(GRID, dt.date(2021, 3, 1), dt.date(2021, 3, 20))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(server.calls("POST", "/oauth/token")) == 1
    server.revoke_tokens()  # the service forgets the token before it expires
    assert sources[0].search(GRID, dt.date(2021, 3, 1), dt.date(2021, 3, 5))
    assert len(server.calls("POST", "/oauth/token")) == 2
    server.fault("status", r"/catalog", status=403, body=b'{"error": {"message": "Forbidden"}}')
    with pytest.raises(CredentialsError, match="SH_CLIENT_ID and SH_CLIENT_SECRET"):
        sources[1].search(GRID, dt.date(2021, 3, 1), dt.date(2021, 3, 5))


# -- whole runs ------------------------------------------------------------------------------------

def test_sample_builds_a_complete_catalog_of_what_was_served(tmp_path, server):
    out = tmp_path / "out"
    report = sample(_recipe(server), out, workers=3, retry=RetryPolicy(base_s=0.01))
    assert report.complete and report.accepted == 4 and report.patches == 8
    items = check_catalog(out, 4, 2)
    _check_pixels(out, server)
    assert {i["properties"]["platform"] for i in items} <= {"sentinel-2a", "sentinel-2b"}
    # selection was exercised: cloudy patches and partial or empty coverage were skipped
    assert {"patch_cloud", "coverage"} <= set(report.skipped_scenes)
    stats = report.source_stats
    assert stats["processing_units"] == pytest.approx(server.pu_spent)
    assert stats["requests"] == len(_api_calls(server)) and "retries" not in stats
    coll = json.loads((out / "collection.json").read_text())
    assert coll["seco:stats"]["source"]["processing_units"] == pytest.approx(server.pu_spent)
    assert coll["seco:source"]["base_url"] == server.url and coll["seco:source"]["synthetic"] is False
    assert {"producer", "licensor"} <= {r for p in coll["providers"] for r in p["roles"]}


def test_faults_during_a_run_change_nothing_but_the_counters(tmp_path, server):
    opts = {"timeout": 0.5}
    policy = RetryPolicy(retries=6, base_s=0.01)
    sample(_recipe(server, n=3, **opts), tmp_path / "clean", workers=2, retry=policy)
    clean_calls = len(_api_calls(server))
    faults = [
        server.fault("status", r"/process", times=2, status=429, retry_after="20"),
        server.fault("status", r"/process", times=3, status=500),
        server.fault("status", r"/catalog", times=2, status=503),
        server.fault("timeout", r"/process", seconds=1.5),
        server.fault("truncate", r"/process"),
        server.fault("garbage", r"/process"),
        server.fault("garbage", r"/catalog"),
    ]
    before = len(_api_calls(server))
    report = sample(_recipe(server, n=3, **opts), tmp_path / "faulty", workers=2, retry=policy)
    assert report.complete and all(f.hits == f.times for f in faults)
    check_catalog(tmp_path / "faulty", 3, 2)
    _check_pixels(tmp_path / "faulty", server)
    assert ledger_rows(tmp_path / "faulty") == ledger_rows(tmp_path / "clean")
    stats = report.source_stats
    calls = len(_api_calls(server)) - before
    assert stats["requests"] == calls <= clean_calls + 2 * sum(f.times for f in faults) + 10  # bounded
    assert stats["rate_limited"] == 2 and stats["server_errors"] == 5 and stats["timeouts"] == 1
    assert stats["connection_errors"] == 1 and stats["retries"] >= 6


def test_an_outage_stops_the_run_and_a_rerun_resumes(tmp_path, server):
    out = tmp_path / "out"
    server.fault("status", r"/process", times=10_000, status=503)
    recipe = _recipe(server, n=3)
    with pytest.raises(SourceUnavailable, match="in a row"):
        sample(recipe, out, workers=2, retry=RetryPolicy(retries=1, base_s=0.01))
    assert len(server.calls("POST", r"/process")) <= 2 * (10 + 4)  # each call tried twice, then given up
    server.clear_faults()
    report = sample(recipe, out, workers=2, retry=RetryPolicy(base_s=0.01))
    assert report.complete and report.resumed and "source_error" not in report.rejections
    check_catalog(out, 3, 2)
    _check_pixels(out, server)
    # the locations lost to the outage were tried again: the same result as a run without it
    sample(recipe, tmp_path / "clean", workers=2, retry=RetryPolicy(base_s=0.01))
    assert ledger_rows(out) == ledger_rows(tmp_path / "clean")


# -- credentials, presets, check -------------------------------------------------------------------

def test_missing_or_wrong_credentials(tmp_path, server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    secret = server.client_secret
    monkeypatch.delenv("SH_CLIENT_SECRET")
    monkeypatch.delenv("SH_CLIENT_ID")
    with pytest.raises(CredentialsError, match="SH_CLIENT_ID and SH_CLIENT_SECRET not set"):
        _source(server)
    monkeypatch.setenv("SH_CLIENT_ID", server.client_id)
    with pytest.raises(CredentialsError, match="SH_CLIENT_SECRET not set") as e:
        _source(server)
    assert "SH_CLIENT_ID " not in str(e.value)
    # a secret the service does not know: 401 from the token endpoint
    wrong = secret + "-but-wrong"
    monkeypatch.setenv("SH_CLIENT_SECRET", wrong)
    src = _source(server)
    with pytest.raises(CredentialsError, match="rejected the client id/secret: set SH_CLIENT_ID") as e:
        src.search(GRID, dt.date(2021, 3, 1), dt.date(2021, 3, 5))
    with pytest.raises(CredentialsError):
        src.check()
    out = tmp_path / "out"
    with pytest.raises(CredentialsError) as e2:
        sample(_recipe(server, n=2), out, workers=2, retry=RetryPolicy(base_s=0.01))
    assert server.calls("POST", "/oauth/token") and not _api_calls(server)
    for text in (str(e.value), e.value.one_line(), str(e2.value), caplog.text):
        assert wrong not in text and secret not in text
    for p in out.rglob("*"):
        if p.is_file():
            assert wrong.encode() not in p.read_bytes(), p
    # the good secret works, and check() says who without the secret
    monkeypatch.setenv("SH_CLIENT_SECRET", secret)
    facts = _source(server).check()
    assert facts == {"endpoint": "custom", "base_url": server.url, "client_id": server.client_id[:4] + "...",
                     "collection": "sentinel-2-l2a"}
    assert server.searches[-1]["limit"] == 1
    assert secret not in caplog.text


def test_presets_options_and_missing_package(server, monkeypatch):
    from seco_data.sources import get_source
    from seco_data.sources.sentinelhub import SentinelHubSource

    sh = get_source("sentinelhub", "L2A")
    assert (sh.endpoint, sh.base_url) == ("sentinelhub", "https://services.sentinel-hub.com")
    assert sh.token_url == "https://services.sentinel-hub.com/auth/realms/main/protocol/openid-connect/token"
    assert sh.collection.service_url == sh.base_url and "Sinergise" in sh.providers[1]["name"]
    cdse = SentinelHubSource(endpoint="cdse")
    assert (cdse.base_url, cdse.endpoint) == ("https://sh.dataspace.copernicus.eu", "cdse")
    assert cdse.token_url == ("https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/"
                              "openid-connect/token")
    assert cdse.collection.service_url == "https://sh.dataspace.copernicus.eu"
    assert "Copernicus Data Space" in cdse.providers[1]["name"]
    assert cdse.describe() == {"name": "sentinelhub", "product": "L2A", "synthetic": False, "endpoint": "cdse",
                               "base_url": "https://sh.dataspace.copernicus.eu"}
    assert _source(server).collection is _source(server).collection  # defined once per URL
    with pytest.raises(TypeError):
        SentinelHubSource(client_secret="x")
    with pytest.raises(ValueError, match="endpoint"):
        SentinelHubSource(endpoint="moon")
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT")
    with pytest.raises(SourceError, match="plain http"):
        _source(server)
    monkeypatch.setitem(sys.modules, "sentinelhub", None)
    with pytest.raises(SourceError) as e:
        SentinelHubSource()
    assert "pip install 'seco[sentinelhub]'" in e.value.one_line()


def test_sources_check_cli(server, monkeypatch):
    """`seco-data sources check` end to end: a dry run on the served grid; a wrong secret fails."""
    from click.testing import CliRunner

    from seco_cli.data import main

    opts = ["sources", "check", "--source", "sentinelhub", "--set", f"source_options.base_url={server.url}",
            "--set", f"source_options.token_url={server.url}/oauth/token", "--bands", ",".join(BANDS),
            "--lon", "13.4", "--lat", "52.5"]
    r = CliRunner().invoke(main, opts)
    assert r.exit_code == 0, r.output
    assert "ok   credentials" in r.output and "ok   pixels" in r.output and "20 m: 1x132x132 uint16" in r.output
    monkeypatch.setenv("SH_CLIENT_SECRET", server.client_secret + "-wrong")
    from seco_data.sources.sentinelhub_client import clear_sessions

    clear_sessions()
    r = CliRunner().invoke(main, opts)
    assert r.exit_code == 7 and "FAIL credentials" in r.output and server.client_secret not in r.output
