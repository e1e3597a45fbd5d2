"""Damage that does not come from our own crashes, partial inputs, and what the tools say about them
(issue 15): one test per defect, through the CLI where a user meets it, plus a fuzz of recipes and
overrides that must never end in an internal error (exit 70)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seco_cli.data import main as data_main
from seco_cli.train import main as train_main

INTERNAL = 70


def _run(main, args, **kw):
    r = CliRunner().invoke(main, [str(a) for a in args], **kw)
    return r


def _one_line_error(r, code: int, *fragments: str) -> str:
    """The run failed with ``code`` and exactly one ``Error:`` line holding every fragment, no traceback."""
    lines = [line for line in r.output.splitlines() if line.startswith("Error: ")]
    assert r.exit_code == code, (r.exit_code, r.output[-2000:])
    assert len(lines) == 1 and "Traceback" not in r.output, r.output[-2000:]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".tif", ".jpg")}


@pytest.fixture()
def catalog(demo_catalog, tmp_path) -> Path:
    """A copy of the 5-location demo catalog, to damage."""
    out = tmp_path / "demo"
    shutil.copytree(demo_catalog, out)
    return out


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` (a real full disk: every writer meets a true ENOSPC)."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                       text=True)
    if r.returncode:
        pytest.skip(f"a full disk needs a tmpfs, which this user cannot mount: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name]


# -- 1. a damaged catalog is found and repaired ----------------------------------------------------------

def test_damaged_catalog_is_named_refused_by_rebuild_and_repaired(catalog, demo_catalog):
    lost = sorted(catalog.glob("0000/*_10m.tif"))[1]
    lost.unlink()  # a location's file deleted
    flipped = sorted(catalog.glob("0000/*_20m.tif"))[3]
    raw = bytearray(flipped.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # a flipped bit: same size, still decodes
    flipped.write_bytes(bytes(raw))
    r = _run(data_main, ["verify", catalog])
    _one_line_error(r, 10, "2 problems", "--repair full")
    assert f"FAIL {lost.relative_to(catalog)}: missing" in r.output
    _one_line_error(_run(data_main, ["catalog", "rebuild", catalog]), 4, "missing or damaged files", "--repair")
    sample = ["sample", "--recipe", "demo", "--n", "5", "--out", catalog]
    # quick: the missing file is found (a stat per file); the flipped bit needs the checksums
    r = _run(data_main, sample + ["--repair"])
    assert r.exit_code == 0 and "1 damaged locations collected again" in r.output, r.output
    assert _run(data_main, ["verify", catalog]).exit_code == 10
    r = _run(data_main, sample + ["--repair", "full"])
    assert r.exit_code == 0 and "1 damaged locations collected again" in r.output, r.output
    assert _run(data_main, ["verify", catalog]).exit_code == 0
    assert _files(catalog) == _files(demo_catalog)  # collected again exactly as they were


def test_import_repair(tmp_path):
    from released_layouts import make_seco_layout

    src = make_seco_layout(tmp_path / "src", 3, variant=None, preview=False, seed=5)
    out = tmp_path / "cat"
    assert _run(data_main, ["import", "seco", src, "--out", out]).exit_code == 0
    want = _files(out)
    victim = sorted(out.glob("0000/*_60m.tif"))[2]
    victim.write_bytes(b"")
    assert _run(data_main, ["import", "seco", src, "--out", out]).exit_code == 0  # a plain resume keeps it
    assert _run(data_main, ["verify", out]).exit_code == 10
    r = _run(data_main, ["import", "seco", src, "--out", out, "--repair"])
    assert r.exit_code == 0, r.output
    assert _files(out) == want and _run(data_main, ["verify", out]).exit_code == 0


# -- 2. export checks what it reads ----------------------------------------------------------------------

def test_export_refuses_a_geotiff_that_does_not_match_its_checksum(catalog, tmp_path):
    victim = sorted(catalog.glob("0000/*_10m.tif"))[2]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    victim.write_bytes(bytes(raw))
    r = _run(data_main, ["export", catalog, "--out", tmp_path / "shards", "--maxcount", "2"])
    _one_line_error(r, 4, str(victim), "file:checksum", "--repair full")
    m = json.loads((tmp_path / "shards" / "shards.json").read_text())
    assert not m["complete"]  # what was written before is kept and listed as unfinished


# -- 3. training never uses an unfinished export silently ------------------------------------------------

@pytest.fixture()
def shards(demo_catalog, tmp_path) -> Path:
    out = tmp_path / "shards"
    r = _run(data_main, ["export", demo_catalog, "--out", out, "--maxcount", "2", "--bands", "B02,B03,B04"])
    assert r.exit_code == 0, r.output
    return out


def test_training_refuses_an_unfinished_or_manifest_less_export(shards, tmp_path):
    stats = ["stats", shards, "--out", tmp_path / "stats.json", "--max-samples", "2"]
    m = json.loads((shards / "shards.json").read_text())
    (shards / "shards.json").write_text(json.dumps({**m, "complete": False, "shardlist": m["shardlist"][:2]}))
    _one_line_error(_run(train_main, stats), 9, "unfinished export", "2 shards", "of 3 planned")
    _one_line_error(_run(train_main, ["run", shards, "--out", tmp_path / "run"]), 9, "unfinished export")
    (shards / "shards.json").unlink()
    _one_line_error(_run(train_main, stats), 9, "has no shards.json", "3 shards without one")
    # the tars named explicitly are read as they are
    r = _run(train_main, ["stats", f"{shards}/*.tar", "--out", tmp_path / "s2.json", "--max-samples", "2"])
    assert r.exit_code == 0, r.output


# -- 4. a catalog being written is not read, and not rebuilt under its writer -----------------------------

def test_export_and_rebuild_wait_for_the_catalog_writer(catalog, tmp_path):
    from seco_data.outputs import lock

    with lock(catalog, what="writing to"):  # as `seco-data sample` holds it while it runs
        _one_line_error(_run(data_main, ["export", catalog, "--out", tmp_path / "s"]), 3, "writing to", str(catalog))
        _one_line_error(_run(data_main, ["export", catalog, "--format", "seco", "--out", tmp_path / "l" / "x"]), 3,
                        "writing to")
    assert not (tmp_path / "s").exists()
    assert _run(data_main, ["export", catalog, "--out", tmp_path / "s"]).exit_code == 0


# -- 5. a full disk ---------------------------------------------------------------------------------------

def test_a_full_disk_is_exit_3_naming_the_path_and_leaves_no_temporary_files(demo_catalog, shards, tmp_path):
    with small_disk(tmp_path / "small", "1m") as disk:
        r = _run(data_main, ["sample", "--recipe", "demo", "--n", "3", "--out", disk / "cat"])
        _one_line_error(r, 3, "no space left on the device while writing", str(disk / "cat"))
        assert not _temporaries(disk)
        r = _run(data_main, ["export", demo_catalog, "--out", disk / "shards"])
        _one_line_error(r, 3, "no space left on the device while writing", str(disk / "shards"))
        assert not _temporaries(disk)
        shutil.rmtree(disk / "shards")
        r = _run(train_main, ["run", shards, "--out", disk / "run", "--set", "steps=1", "--set", "data.size=32",
                              "--set", "data.batch_size=4", "--set", "data.workers=0", "--set", "model.queue_size=8",
                              "--set", "tensorboard=false", "--set", "precision=fp32"])
        _one_line_error(r, 3, "no space left on the device while writing", str(disk / "run"))
        assert not _temporaries(disk)
    with small_disk(tmp_path / "small2", "40m") as disk:
        shutil.copytree(demo_catalog, disk / "cat")
        (disk / "filler").write_bytes(b"\0" * (disk_free(disk) - 4096))  # now full
        before = _files(disk / "cat")
        r = _run(data_main, ["catalog", "rebuild", disk / "cat"])
        _one_line_error(r, 3, "no space left on the device while writing")
        assert "corrupt" not in r.output and _files(disk / "cat") == before
        assert not _temporaries(disk)


def disk_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


# -- 6. a worker killed by the system -------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _accepted(ledger: Path) -> int:
    with contextlib.suppress(sqlite3.Error):
        db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM candidates WHERE status = 'accepted'").fetchone()[0]
        finally:
            db.close()
    return 0


def test_a_worker_killed_by_the_system_is_said_and_a_rerun_resumes(tmp_path):
    out = tmp_path / "cat"
    cmd = [sys.executable, "-c", "from seco_cli.data import main; main()", "sample", "--recipe", "demo", "--n", "12", "--workers", "2",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _accepted(out / "ledger.sqlite") < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert workers, "no worker process to kill"
        os.kill(workers[0], signal.SIGKILL)  # what the OOM killer does
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert proc.returncode == 1 and len(errors) == 1, err[-2000:]
    assert "worker process was killed" in errors[0] and "rerun the same command" in errors[0]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "collected 12/12" in r.stdout, r.stderr[-2000:]


# -- 7. passwords in URLs --------------------------------------------------------------------------------

def test_passwords_in_urls_are_never_printed_or_stored(monkeypatch):
    monkeypatch.setenv("SH_CLIENT_ID", "id")
    monkeypatch.setenv("SH_CLIENT_SECRET", "secret-value")
    url = "https://user:hunter2@127.0.0.1:1/oauth/token"
    r = _run(data_main, ["recipe", "show", "--source", "sentinelhub", "--set", f"source_options.token_url={url}"])
    assert r.exit_code == 0 and "hunter2" not in r.output and "https://***@127.0.0.1:1/oauth/token" in r.output
    # errors, their hints and the log (-vv: every request) name the endpoint without its password
    r = _run(data_main, ["-vv", "sources", "check", "--source", "sentinelhub", "--set", f"source_options.token_url={url}"])
    assert r.exit_code not in (0, INTERNAL) and "hunter2" not in r.output and "***@127.0.0.1:1" in r.output, r.output
    r = _run(data_main, ["-vv", "sources", "check", "--source", "stac", "--stac-url",
                         "https://user:hunter2@127.0.0.1:1/v1"])
    assert r.exit_code not in (0, INTERNAL) and "hunter2" not in r.output and "***@" in r.output, r.output
    # what is stored: the recipe (recipe.yaml, the collection, the ledger) keeps the URL without it
    from seco_data.recipe import load_recipe

    recipe = load_recipe("demo", {"source": "sentinelhub", "source_options": {"token_url": url}})
    assert recipe.source_options["token_url"] == url  # the live recipe still has it, to log in
    assert "hunter2" not in json.dumps(recipe.to_dict()) and "hunter2" not in recipe.to_yaml()


# -- 8. a grown dataset says so --------------------------------------------------------------------------

def test_growing_a_dataset_updates_its_collection(tmp_path):
    out = tmp_path / "cat"
    for n in (2, 4):
        assert _run(data_main, ["sample", "--recipe", "demo", "--n", n, "--out", out]).exit_code == 0
    coll = json.loads((out / "collection.json").read_text())
    assert coll["seco:recipe"]["n"] == 4 and coll["seco:stats"]["requested"] == 4
    assert "locations   4 of 4 requested" in _run(data_main, ["catalog", "info", out]).output


# -- 9-11. bad input is a one-line usage or format error ---------------------------------------------------

def test_bad_inputs_are_usage_errors_never_internal(tmp_path, demo_catalog, shards, caplog):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    _one_line_error(_run(data_main, ["sample", "--recipe", empty, "--out", tmp_path / "a"]), 2, "is empty")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    _one_line_error(_run(data_main, ["sample", "--recipe", binary, "--out", tmp_path / "b"]), 2, "not a UTF-8 text file")
    _one_line_error(_run(data_main, ["sample", "--set", "seasons.anchors=[2021-13-01]", "--out", tmp_path / "c"]), 2,
                    "seasons.anchors")
    _one_line_error(_run(data_main, ["sample", "--set", "source_options.colour=blue", "--out", tmp_path / "d"]), 2,
                    "source_options.colour")
    assert not any((tmp_path / x).exists() for x in "abcd")  # refused before anything is written
    m = json.loads((shards / "shards.json").read_text())
    (shards / "shards.json").write_text(json.dumps({**m, "shardlist": "seco-000000.tar"}))
    _one_line_error(_run(data_main, ["verify", shards]), 9, "shards.json")
    _one_line_error(_run(data_main, ["export", demo_catalog, "--out", tmp_path / "e", "--seasons", "7"]), 2,
                    "missing_season 5", "(0..3)")
    # --workers far beyond the machine: capped, with a message, and the run finishes
    r = _run(data_main, ["sample", "--recipe", "demo", "--n", "2", "--workers", "10000", "--out", tmp_path / "f"])
    assert r.exit_code == 0 and "capped" in r.output, r.output


# -- 12. a corrupt shard met while training --------------------------------------------------------------

def test_a_corrupt_shard_during_training_is_one_line(shards, tmp_path):
    victim = shards / "seco-000001.tar"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    r = subprocess.run([sys.executable, "-c", "from seco_cli.train import main; main()", "run", str(f"{shards}/*.tar"), "--out",
                        str(tmp_path / "run"), "--set", "steps=20", "--set", "data.size=32", "--set",
                        "data.batch_size=2", "--set", "data.workers=2", "--set", "model.queue_size=8",
                        "--set", "tensorboard=false", "--set", "precision=fp32", "--set", "model.backbone=resnet18"],
                       capture_output=True, text=True, timeout=600)
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    assert r.returncode == 9 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "seco-000001.tar" in errors[0] and "Original Traceback" not in errors[0]


# -- 13. durable writes ----------------------------------------------------------------------------------

def test_atomic_writes_sync_the_file_and_its_folder_before_and_after_the_rename(tmp_path, monkeypatch):
    from seco_data import outputs

    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(a, b):
        calls.append(("replace", str(b)))
        real_replace(a, b)

    monkeypatch.setattr(outputs, "FSYNC", True)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "recipe.yaml"
    outputs.write_atomic(target, "n: 1\n")
    kinds = [c[0] for c in calls]
    assert kinds == ["fsync", "replace", "fsync"], calls
    assert ".tmp" in calls[0][1] and calls[1][1] == str(target) and calls[2][1] == str(tmp_path)


# -- fuzz ------------------------------------------------------------------------------------------------

KEYS = ["n", "seed", "source", "product", "bands", "layout", "thumbnails", "compress", "patch", "seasons.anchors",
        "seasons.window_days", "seasons.shift_days", "locations.sampler", "locations.sigma_km", "locations.top_cities",
        "filters.scene_cloud_max", "filters.patch_cloud_max", "filters.coverage_min", "max_draws_per_location",
        "source_options.url", "nope", "seasons", "filters", "patch.10"]
VALUES = st.one_of(
    st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "[]", "{}", "[2021-13-01]", "[2021-01-01, x]", "null", "true", "-1", "1e400", "[[1]]",
                     "{a: 1}", "sim", "L1C", "B02,B03", "[B02, B99]", "compact", "nan", "'", "\"", "- a"]),
    st.text(max_size=30))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(st.sampled_from(KEYS) | st.text(max_size=12), VALUES), max_size=4))
def test_fuzz_overrides_never_end_in_an_internal_error(pairs):
    args = ["recipe", "show"]
    for k, v in pairs:
        args += ["--set", f"{k}={v}"]
    r = CliRunner().invoke(data_main, args)
    assert r.exit_code in (0, 2), (args, r.exit_code, r.output[-500:])
    if r.exit_code == 2:
        assert "Traceback" not in r.output


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                      st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5).map(
                          lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))))
def test_fuzz_recipe_files_never_end_in_an_internal_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "r.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    r = CliRunner().invoke(data_main, ["recipe", "show", "--recipe", str(path)])
    assert r.exit_code in (0, 2), (text[:200], r.exit_code, r.output[-500:])
