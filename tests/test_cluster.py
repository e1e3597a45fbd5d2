"""Beyond one machine: the commands on a real Dask cluster (scheduler and worker processes over TCP on
127.0.0.1), outputs on a loopback S3-compatible server (moto's server mode behind a fault-injecting
proxy), kills of a worker and of the driver, and a quota that holds cluster-wide.

Every run is compared with the same command on one machine: catalog files, ledger rows and shards
must be byte-identical."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import accepted_count, ledger_rows
from servers.base import LoopbackServer, Response
from servers.s3 import SLOW_DOWN, S3Server

distributed = pytest.importorskip("distributed")  # (a dev dependency: skipped only outside `make test`)

N = 12
#: 660 m patches (the pixels are not what is tested): the recipe's overrides, as flags and as a dict
PATCH = {10: 66, 20: 33, 60: 11}
ARGS = ["sample", "--n", str(N), "--workers", "2", "--set", f"patch={PATCH}"]
HERE = Path(__file__).parent
#: bookkeeping that differs between two runs by design (the lock, the run's identity record with its
#: start time, the ledger's SQLite pages; the ledger's rows are compared instead)
BOOKKEEPING = (".seco", "ledger.sqlite", ".seco-export", ".lock")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from seco_cli.data import main; main()", "-q", *args]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not str(p.relative_to(root)).startswith(BOOKKEEPING)}


def _samples(urls) -> list[tuple]:
    from seco_data.export.reader import ShardReader, Split

    out = []
    for s in ShardReader(urls, split=Split()):
        out.append((s["__key__"], s["json"]["location"], *(s[g].tobytes() for g in sorted(s["json"]["arrays"]))))
    return sorted(out)


@pytest.fixture(scope="module")
def cluster():
    """A scheduler and 2 worker processes (one thread each) over TCP on 127.0.0.1, with nannies that
    replace dead workers; this folder is on the workers' PYTHONPATH (tests/cluster_plugins.py)."""
    from distributed import LocalCluster

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), old) if p)
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", protocol="tcp",
                          dashboard_address=":0") as c:
            yield c
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The single-machine run: the catalog and its shards."""
    root = tmp_path_factory.mktemp("single")
    subprocess.run(_cli(*ARGS, "--out", str(root / "cat")), check=True, timeout=600)
    subprocess.run(_cli("export", str(root / "cat"), "--out", str(root / "shards"), "--maxcount", "4", "--workers",
                        "2"), check=True, timeout=600)
    return root


def _same_as_reference(reference: Path, out: Path) -> None:
    assert _files(out) == _files(reference / "cat")
    assert ledger_rows(out) == ledger_rows(reference / "cat")


@pytest.mark.slow
def test_cluster_run_is_the_single_machine_run(tmp_path, cluster, reference):
    """sample -> export -> read on the cluster: the same files and shards, bit for bit."""
    out, shards = tmp_path / "cat", tmp_path / "shards"
    r = subprocess.run(_cli(*ARGS, "--out", str(out), "--cluster", cluster.scheduler_address),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    _same_as_reference(reference, out)
    r = subprocess.run(_cli("export", str(out), "--out", str(shards), "--maxcount", "4",
                            "--cluster", cluster.scheduler_address), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    tars = lambda root: {k: v for k, v in _files(root).items() if k.endswith(".tar")}  # noqa: E731
    assert tars(shards) == tars(reference / "shards")
    manifest = lambda root: json.loads((root / "shards.json").read_text())["shardlist"]  # noqa: E731
    assert manifest(shards) == manifest(reference / "shards")  # (the rest names the catalog's path)
    assert _samples(shards) == _samples(reference / "shards")
    assert len(_samples(shards)) == N


@pytest.mark.slow
def test_killed_worker_is_replaced_and_its_locations_redone(tmp_path, cluster, reference):
    from distributed import Client

    from cluster_plugins import KillOnce
    from seco_data import jobs
    from seco_data.recipe import load_recipe
    from seco_data.sample import sample

    marker = tmp_path / "killed"
    with Client(cluster.scheduler_address) as client:
        before = set(client.run(os.getpid).values())
        client.register_plugin(KillOnce(str(marker), after=3))
        try:
            with jobs.use_cluster(cluster.scheduler_address):
                report = sample(load_recipe("demo", {"n": N, "patch": PATCH}), tmp_path / "cat", workers=2)
        finally:
            client.unregister_worker_plugin(KillOnce.name)
        client.wait_for_workers(2, timeout=60)
        after = set(client.run(os.getpid).values())
    assert marker.exists() and after != before  # a worker was killed mid-task and replaced
    assert report.complete
    _same_as_reference(reference, tmp_path / "cat")


@pytest.mark.slow
def test_killed_driver_resumes_to_the_same_catalog(tmp_path, cluster, reference):
    out = tmp_path / "cat"
    cmd = _cli(*ARGS, "--out", str(out), "--cluster", cluster.scheduler_address)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # a hang guard: the kill point is a count of locations, not a time
    while accepted_count(out) < N // 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed_at = accepted_count(out)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL and 0 < killed_at < N, (proc.returncode, killed_at)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    _same_as_reference(reference, out)


@pytest.fixture(scope="module")
def seco_release(tmp_path_factory):
    """A SeCo-100K download (tests/released_layouts.py), 3 locations: what `import` reads."""
    from released_layouts import make_seco_layout

    return make_seco_layout(tmp_path_factory.mktemp("release"), 3, variant="100k", preview=True, seed=1)


@pytest.mark.slow
def test_cluster_import_and_thumbnails_are_the_single_machine_run(tmp_path, cluster, seco_release):
    """import (without quicklooks) then `catalog thumbnails`, on one machine and on the cluster: the
    same catalog files, bit for bit, and the same ledger rows."""
    from seco_cli.data import main

    runner = CliRunner()
    for out, more in ((tmp_path / "single", ["--workers", "2"]),
                      (tmp_path / "cluster", ["--cluster", cluster.scheduler_address])):
        r = runner.invoke(main, ["-q", "import", "seco", str(seco_release), "--out", str(out), "--no-thumbnails", *more])
        assert r.exit_code == 0, r.output
        assert not list(out.rglob("*.jpg")) and not list(out.rglob("*.png"))
        r = runner.invoke(main, ["-q", "catalog", "thumbnails", str(out), *more])
        assert r.exit_code == 0, r.output
    single, clustered = _files(tmp_path / "single"), _files(tmp_path / "cluster")
    assert clustered == single
    assert sum(k.endswith((".jpg", ".png")) for k in single) == 3  # a quicklook per location, drawn on the workers
    assert ledger_rows(tmp_path / "cluster") == ledger_rows(tmp_path / "single")


# -- object storage -----------------------------------------------------------------------------------

@pytest.fixture()
def s3(monkeypatch, tmp_path):
    with S3Server() as server:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("SECO_STAGING", str(tmp_path / "staging"))
        monkeypatch.setenv("SECO_STORAGE_TIMEOUT_S", "2")
        monkeypatch.setenv("SECO_STORAGE_RETRIES", "4")
        yield server


@pytest.mark.slow
def test_catalog_and_shards_on_object_storage_with_faults(s3, reference):
    """sample and export to s3://, through throttling, 5xx, a timeout and a dropped connection; the
    objects are the single-machine files; the trainer's reader streams the shards back; verify reads it."""
    from seco_data.export.verify import verify
    from seco_data.export.webdataset import ShardOptions, export_webdataset
    from seco_data.recipe import load_recipe
    from seco_data.sample import sample
    from seco_train.data import dataset_size

    faults = [s3.fault("status", path=r"\.tif$", status=503, body=SLOW_DOWN, times=3),
              s3.fault("status", path=r"items\.parquet", status=500, times=2),
              s3.fault("timeout", path=r"\.tif$", seconds=5, times=1),
              s3.fault("drop", path=r"\.tar$", times=1),
              s3.fault("status", path=r"\.tar$", status=503, body=SLOW_DOWN, times=2)]
    report = sample(load_recipe("demo", {"n": N, "patch": PATCH}), "s3://seco-test/cat", workers=2)
    assert report.complete
    export_webdataset("s3://seco-test/cat", "s3://seco-test/shards", options=ShardOptions(maxcount=4), workers=2)
    assert [f.hits for f in faults] == [f.times for f in faults]  # every fault was met, and retried through

    objects = s3.keys()
    catalog = {k[len("cat/"):]: v for k, v in objects.items() if k.startswith("cat/")}
    local = _files(reference / "cat")
    assert {k: v for k, v in catalog.items() if not k.startswith(BOOKKEEPING)} == local
    assert "ledger.sqlite" in catalog  # the ledger's snapshot: a resume elsewhere starts from it
    shards = {k[len("shards/"):]: v for k, v in objects.items()
              if k.startswith("shards/") and k.endswith(".tar")}
    assert shards == {k: v for k, v in _files(reference / "shards").items() if k.endswith(".tar")}
    assert not any(b"test-secret" in v for v in objects.values())  # no credential lands in an output

    assert _samples("s3://seco-test/shards") == _samples(reference / "shards")
    assert dataset_size("s3://seco-test/shards") == N  # from the manifest on the bucket
    assert verify("s3://seco-test/shards").ok and verify("s3://seco-test/cat").ok


@pytest.mark.slow
def test_storage_failures_are_bounded_one_line_errors_and_resume(s3, reference, tmp_path):
    from seco_cli.data import main

    cat = tmp_path / "cat"
    shutil.copytree(reference / "cat", cat)
    fault = s3.fault("status", path=r"/seco-test/out/", status=503, body=SLOW_DOWN, times=10**6)
    runner = CliRunner()
    args = ["export", str(cat), "--out", "s3://seco-test/out", "--maxcount", "4", "--workers", "1"]
    r = runner.invoke(main, args)
    assert r.exit_code not in (0, 1), r.output  # an error exit (not a crash)
    lines = [line for line in r.output.splitlines() if line.strip() and not line.startswith(("exporting", "\r"))]
    assert "Traceback" not in r.output and any("hint:" in line for line in lines), r.output
    assert "test-secret" not in r.output
    tries = Counter(c.path for c in s3.calls(path="/seco-test/out/"))
    # each object: the first try and at most SECO_STORAGE_RETRIES=4 retries, then the error
    assert tries and all(1 < n <= 5 for n in tries.values()), tries
    assert fault.hits == sum(tries.values())
    s3.clear_faults()
    r = runner.invoke(main, args)  # the same command, once the store answers: the same shards
    assert r.exit_code == 0, r.output
    got = {k[len("out/"):]: v for k, v in s3.keys("out/").items() if k.endswith(".tar")}
    assert got == {k: v for k, v in _files(reference / "shards").items() if k.endswith(".tar")}


def _seco_layout_objects(s3, prefix: str) -> dict[str, bytes]:
    return {k[len(prefix) + 1:]: v for k, v in s3.keys(prefix + "/").items()}


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory):
    """A 3-location catalog (for what is checked per object)."""
    from seco_data.recipe import load_recipe
    from seco_data.sample import sample

    out = tmp_path_factory.mktemp("small") / "cat"
    sample(load_recipe("demo", {"n": 3}), out, workers=1)
    return out


@pytest.mark.slow
def test_seco_layout_on_object_storage(s3, small_catalog, tmp_path):
    """export --format seco to s3:// through throttling: every object is the local export's file, the
    layout's own files go beside it. A location left partial, and a store that keeps failing on it: a
    one-line error without the secret; then the same command writes that location again (the same
    bytes) and keeps the others. Other settings, foreign prefixes and a bare bucket are refused."""
    from seco_cli.data import main
    from seco_data.errors import OutputError, UsageError
    from seco_data.export.seco_layout import export_seco_layout, meta_dir

    cat, options = small_catalog, {"bands": "B02,B03,B04", "preview": True}
    local = tmp_path / "seasonal_contrast_100k"
    export_seco_layout(cat, local, **options)
    url, prefix = "s3://seco-test/layouts/seasonal_contrast_100k", "layouts/seasonal_contrast_100k"
    fault = s3.fault("status", path=r"\.tif$", status=503, body=SLOW_DOWN, times=3)
    r = export_seco_layout(cat, url, workers=2, **options)
    assert fault.hits == 3 and r.locations == 3 and r.skipped == {}
    want = _files(local)
    assert _seco_layout_objects(s3, prefix) == want  # the layout holds location folders only, as on disk
    meta = _seco_layout_objects(s3, "layouts/.seasonal_contrast_100k.seco")
    assert meta["index.csv"] == (meta_dir(local) / "index.csv").read_bytes()
    assert json.loads(meta["seco_layout.json"]) == json.loads((meta_dir(local) / "seco_layout.json").read_bytes())
    assert json.loads(meta["seco_layout.json"])["complete"] is True

    import boto3  # a location left partial: one of its objects missing

    client = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
    gone = sorted(k for k in want if k.startswith("000001/"))[0]
    client.delete_object(Bucket="seco-test", Key=f"{prefix}/{gone}")
    runner = CliRunner()
    args = ["export", str(cat), "--format", "seco", "--out", url, "--bands", "B02,B03,B04", "--preview",
            "--workers", "1"]
    s3.fault("status", path=r"/000001/.*\.tif$", status=503, body=SLOW_DOWN, times=10**6)
    r = runner.invoke(main, args)
    assert r.exit_code == 6, r.output  # storage unavailable: rerun later
    assert "Traceback" not in r.output and "hint:" in r.output and "test-secret" not in r.output
    s3.clear_faults()
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "exported 3 locations, 12 scenes" in r.output and "skipped: finished 2" in r.output
    assert "aws s3 sync" in r.output
    assert _seco_layout_objects(s3, prefix) == want
    assert not any(b"test-secret" in v for v in s3.keys().values())

    with pytest.raises(OutputError, match="other settings .*settings.bits"):
        export_seco_layout(cat, url, bits=16, **options)
    client.put_object(Bucket="seco-test", Key="foreign/x.txt", Body=b"not ours")
    with pytest.raises(OutputError, match="not empty"):
        export_seco_layout(cat, "s3://seco-test/foreign", **options)
    with pytest.raises(UsageError, match="needs a prefix"):
        export_seco_layout(cat, "s3://seco-test", **options)
    from seco_data.export.ssl4eo_layout import export_ssl4eo_layout

    with pytest.raises(UsageError, match="folder only"):
        export_ssl4eo_layout(cat, "s3://seco-test/ssl4eo")


def test_seco_layout_resume_lists_only_what_is_left(s3, small_catalog, tmp_path, monkeypatch):
    """An interrupted export to s3:// publishes the first location not finished (``done.json``); the
    rerun skips the locations before it unlisted (its one listing starts after them), writes the
    rest, and the layout equals the local export's."""
    from seco_data.errors import SecoError
    from seco_data.export import seco_layout
    from seco_data.export.seco_layout import export as layout_export

    monkeypatch.setattr(layout_export, "CHECKPOINT_S", 0.0)  # publish the frontier after every location
    local = tmp_path / "local"
    seco_layout.export_seco_layout(small_catalog, local, bands="B02,B03,B04")
    url, prefix = "s3://seco-test/cut/layout", "cut/layout"
    s3.fault("status", path=r"/000002/.*\.tif$", status=503, body=SLOW_DOWN, times=10**6)
    with pytest.raises(SecoError):
        seco_layout.export_seco_layout(small_catalog, url, bands="B02,B03,B04", workers=1)
    assert json.loads(s3.keys("cut/.layout.seco/done.json")["cut/.layout.seco/done.json"])["below"] == 2
    s3.clear_faults()
    s3.requests.clear()
    r = seco_layout.export_seco_layout(small_catalog, url, bands="B02,B03,B04", workers=1)
    assert (r.locations, r.skipped) == (3, {"finished": 2})
    lists = [c.query for c in s3.calls("GET", r"^/seco-test/?$") if c.query.get("prefix", [""])[0].startswith(prefix)]
    # the probe for an empty prefix (its first page), then the one listing, from location 2 on
    assert [q.get("start-after") for q in lists] == [None, [f"{prefix}/000002"]], lists
    assert _seco_layout_objects(s3, prefix) == _files(local)
    done = json.loads(s3.keys("cut/.layout.seco/done.json")["cut/.layout.seco/done.json"])
    assert done["below"] == 3 and done["counts"] == [r.scenes, r.files, r.bytes]


def test_storage_errors_are_told_by_their_status_not_by_digits_in_timings(s3):
    """A store that keeps answering 503 is "unavailable, rerun" (exit 6) even when obstore's message
    carries a timing with "401" in its digits; 403 / 401 are "refused" (exit 3), 404 a missing file."""
    from seco_data.errors import OutputError, SourceUnavailable
    from seco_data.storage import store_for

    store = store_for("s3://seco-test/classified")

    def failing(message):
        def call():
            raise RuntimeError(message)
        return call

    cases = [("Error performing PUT http://127.0.0.1/x in 455.004013ms, after 4 retries - Server returned non-2xx "
              "status code: 503 Service Unavailable", SourceUnavailable),
             ("Server returned non-2xx status code: 403 Forbidden: <Code>AccessDenied</Code>", OutputError),
             ("Server returned non-2xx status code: 401 Unauthorized", OutputError),
             ("Server returned non-2xx status code: 404 Not Found", FileNotFoundError)]
    for message, kind in cases:
        with pytest.raises(kind):
            store._call("writing x", failing(message))


@pytest.mark.slow
def test_import_to_object_storage_resumes_from_its_snapshot(s3, seco_release, tmp_path):
    """import --out s3:// of 2 locations, the staging folder lost (another machine), then all 3: the
    run resumes from the snapshot on the bucket (2 kept, 1 imported) and the catalog is the local
    import's, file for file (the ledger's rows too)."""
    from seco_cli.data import main

    runner = CliRunner()
    local = tmp_path / "local"
    r = runner.invoke(main, ["-q", "import", "seco", str(seco_release), "--out", str(local), "--workers", "1"])
    assert r.exit_code == 0, r.output
    args = ["import", "seco", str(seco_release), "--out", "s3://seco-test/imported", "--workers", "2", "--json"]
    r = runner.invoke(main, [*args, "--limit", "2"])
    assert r.exit_code == 0, r.output
    shutil.rmtree(tmp_path / "staging")  # what this machine kept: the next run starts from the bucket alone
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    assert (report["resumed"], report["imported"], report["out"]) == (2, 1, "s3://seco-test/imported")
    objects = {k[len("imported/"):]: v for k, v in s3.keys("imported/").items()}
    assert {k: v for k, v in objects.items() if not k.startswith(BOOKKEEPING)} == _files(local)
    (tmp_path / "snapshot").mkdir()
    (tmp_path / "snapshot" / "ledger.sqlite").write_bytes(objects["ledger.sqlite"])
    assert ledger_rows(tmp_path / "snapshot") == ledger_rows(local)
    assert not any(b"test-secret" in v for v in objects.values())


def _get(url: str, headers: dict | None = None, data: bytes | None = None):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers=headers or {}, data=data,
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.mark.slow
def test_serve_a_catalog_on_object_storage(s3, reference):
    """`catalog serve s3://...` answers as it does for the local copy (base URLs aside): the catalog's
    JSON, the STAC API (landing page, an item, searches), the viewer's data, a GeoTIFF's byte ranges
    (one ranged request each), quicklooks, conditional requests, and the same 404s; a change on the
    store is picked up; a store that fails is a 502 for that file, never a crash."""
    import boto3

    from seco_data.serve.server import start_server

    client = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
    cat = reference / "cat"
    for p in sorted(cat.rglob("*")):  # the catalog as `sample --out s3://` leaves it
        rel = p.relative_to(cat).as_posix()
        if p.is_file() and not rel.startswith((".seco", ".lock")):
            client.put_object(Bucket="seco-test", Key=f"served/{rel}", Body=p.read_bytes())
    here, here_url = start_server(cat)
    there, there_url = start_server("s3://seco-test/served")
    try:
        tif = sorted(cat.rglob("*_10m.tif"))[1].relative_to(cat).as_posix()
        thumb = sorted(p for p in cat.rglob("*") if p.suffix in (".jpg", ".png"))[0].relative_to(cat).as_posix()
        cid = json.loads((cat / "collection.json").read_text())["id"]
        first = json.loads(_get(here_url + "/api/search?limit=1")[2])["features"][0]["id"]
        requests = [("/catalog.json", {}), ("/collection.json", {}), ("/items.parquet", {}), ("/api", {}),
                    (f"/api/collections/{cid}/items/{first}", {}), ("/api/search?limit=5&bbox=-180,-90,180,90", {}),
                    ("/viewer/data/meta.js", {}), ("/viewer/data/map.js", {}),
                    (f"/{tif}", {"Range": "bytes=0-16383"}), (f"/{tif}", {"Range": "bytes=-100"}),
                    (f"/{tif}", {"Range": "bytes=99999999-"}), (f"/{tif}", {}), (f"/{thumb}", {}),
                    ("/ledger.sqlite", {}), ("/recipe.yaml", {}), ("/0000/missing.tif", {}), ("/.seco.json", {})]
        for path, headers in requests:
            a, b = _get(here_url + path, headers), _get(there_url + path, headers)
            assert (a[0], a[2].replace(here_url.encode(), b"BASE")) == (b[0], b[2].replace(there_url.encode(), b"BASE")), path
            assert a[1].get("Content-Range") == b[1].get("Content-Range"), path
            assert a[1].get("Content-Type") == b[1].get("Content-Type"), path
        assert _get(there_url + f"/{tif}", {"Range": "bytes=0-16383"})[0] == 206
        search = json.dumps({"limit": 3, "ids": [first]}).encode()
        a = _get(here_url + "/api/search", {"Content-Type": "application/json"}, search)
        b = _get(there_url + "/api/search", {"Content-Type": "application/json"}, search)
        assert a[0] == b[0] == 200 and a[2].replace(here_url.encode(), b"") == b[2].replace(there_url.encode(), b"")
        calls = len(s3.calls(path=f"/seco-test/served/{tif}"))
        status, headers, _ = _get(there_url + f"/{tif}", {"Range": "bytes=100-199"})
        assert status == 206 and len(s3.calls(path=f"/seco-test/served/{tif}")) - calls <= 2  # (a HEAD, once per 10 s)
        assert _get(there_url + f"/{tif}", {"If-None-Match": headers["ETag"]})[0] == 304

        coll = json.loads((cat / "collection.json").read_text())
        client.put_object(Bucket="seco-test", Key="served/collection.json",
                          Body=json.dumps({**coll, "title": "changed on the store"}).encode())
        assert there.app.remote.refresh(force=True) == 1
        assert json.loads(_get(there_url + "/collection.json")[2])["title"] == "changed on the store"

        s3.fault("status", path=r"\.jpg$|\.png$", status=503, body=SLOW_DOWN, times=10**6)
        other = sorted(p for p in cat.rglob("*") if p.suffix in (".jpg", ".png"))[-1].relative_to(cat).as_posix()
        status, _, body = _get(there_url + f"/{other}")
        assert status == 502 and b"test-secret" not in body
        assert _get(there_url + "/catalog.json")[0] == 200  # the rest is still served
    finally:
        for server in (here, there):
            server.shutdown()
            server.server_close()
    from seco_cli.data import main

    r = CliRunner().invoke(main, ["catalog", "serve", "s3://seco-test/nothing-here", "--port", "0"])
    assert r.exit_code == 4 and "not a seco catalog" in r.output and "Traceback" not in r.output, r.output


# -- quotas -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_quota_holds_cluster_wide():
    """2 worker processes x 8 threads, a limit of 4 concurrent requests: the service never sees more
    than 4 at once (and does see 4: the limit, not the load, is what bounds it)."""
    from distributed import Client, LocalCluster

    service = LoopbackServer()
    service.latency = 0.2
    service.route("GET", "/v1/ping")(lambda req, m: Response.json({}))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), old) if p)
    try:
        with service, LocalCluster(n_workers=2, threads_per_worker=8, processes=True, host="127.0.0.1",
                                   protocol="tcp", dashboard_address=":0") as c, Client(c) as client:
            from cluster_plugins import request_through_quota

            futures = [client.submit(request_through_quota, service.url, "test-quota", 4, pure=False)
                       for _ in range(64)]
            statuses = client.gather(futures)
            per_worker = client.run(lambda: 1)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    assert statuses == [200] * 64 and len(per_worker) == 2
    assert len(service.calls(path="/v1/ping")) == 64
    assert service.peak == 4


# -- the cost plan ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_plan_estimates_the_run_and_writes_nothing(tmp_path, reference):
    """`sample --plan` from a 4-location pilot: files, GeoTIFF and shard bytes of the 12-location run
    within 20 %; nothing written to --out; the JSON file written where asked."""
    out, plan_file = tmp_path / "never", tmp_path / "plan.json"
    r = subprocess.run(_cli(*ARGS, "--out", str(out), "--plan", "--pilot", "4", "--plan-out", str(plan_file)),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert not out.exists()
    plan = json.loads(plan_file.read_text())
    assert "plan for 12 locations" in r.stdout and plan["n"] == N and plan["pilot"]["locations"] == 4
    tifs = [p for p in (reference / "cat").rglob("*.tif")]
    shards = sum(p.stat().st_size for p in (reference / "shards").glob("*.tar"))
    for est, got in ((plan["files"]["geotiff"], len(tifs)), (plan["bytes"]["geotiff"], sum(p.stat().st_size for p in tifs)),
                     (plan["bytes"]["shards"], shards)):
        assert abs(est - got) <= 0.2 * got, (est, got)
    assert plan["service"] == {"name": "sim", "requests": 0, "bytes": 0, "retries": 0}
