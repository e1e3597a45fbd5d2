import json

import pytest
from click.testing import CliRunner

from seco_cli.data import main as data_main
from seco_cli.train import main as train_main


@pytest.fixture()
def runner():
    return CliRunner()


def _ok(result):
    assert result.exit_code == 0, result.output + str(result.exception)
    return result


def _one_line_error(result, code, *fragments):
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def test_version_and_help(runner):
    assert "seco-data, version" in _ok(runner.invoke(data_main, ["--version"])).output
    assert "seco-train, version" in _ok(runner.invoke(train_main, ["--version"])).output
    out = _ok(runner.invoke(data_main, ["--help"])).output
    assert "sample" in out and "catalog" in out and "recipe" in out


@pytest.mark.parametrize("layout, items, objects", [("compact", 4, 6), ("per-patch", 16, 19)])
def test_sample_info_validate_rebuild(runner, tmp_path, scripted, schemas, layout, items, objects):
    out = tmp_path / "demo"
    args = ["sample", "--source", scripted, "--n", "4", "--out", str(out), "--bands", "B02,B03,B04,B08",
            "--set", "seasons.shift_days=30", "--layout", layout]
    r = _ok(runner.invoke(data_main, args))
    assert "collected 4/4 locations, 16 patches" in r.output and "catalog.json" in r.output
    r = _ok(runner.invoke(data_main, args + ["--json"]))  # rerun: resumes, nothing to do
    assert json.loads(r.output[r.output.index("{"):])["resumed"] is True
    info = _ok(runner.invoke(data_main, ["catalog", "info", str(out)])).output
    assert "locations   4 of 4" in info and "scene cloud" in info
    info = json.loads(_ok(runner.invoke(data_main, ["catalog", "info", str(out), "--json"])).output)
    assert (info["layout"], info["items"], info["patches"]) == (layout, items, 16)
    r = _ok(runner.invoke(data_main, ["catalog", "validate", str(out), "--schemas", str(schemas)]))
    assert f"{objects} STAC objects valid" in r.output
    r = _ok(runner.invoke(data_main, ["catalog", "validate", str(out), "--schemas", str(schemas), "--sample", "2"]))
    assert f"{objects - items + 2} STAC objects valid (a sample of 2 items" in r.output
    r = _ok(runner.invoke(data_main, ["catalog", "rebuild", str(out)]))
    assert f"rebuilt: 4 locations, {items} items, 16 patches" in r.output
    # -q prints nothing on success; -v logs
    r = _ok(runner.invoke(data_main, ["-q"] + args))
    assert r.output.strip() == ""


def test_recipe_commands(runner):
    assert "seco-1m" in _ok(runner.invoke(data_main, ["recipe", "list"])).output
    r = _ok(runner.invoke(data_main, ["recipe", "show", "--recipe", "seco-1m", "--source", "sim", "--n", "7"]))
    assert "source: sim" in r.output and "n: 7" in r.output


def test_bad_inputs_are_one_line_errors(runner, tmp_path, scripted):
    r = runner.invoke(data_main, ["sample", "--n", "many"])
    assert r.exit_code == 2 and "Invalid value" in r.output  # click usage error
    r = runner.invoke(data_main, ["sample", "--frobnicate"])
    assert r.exit_code == 2 and "No such option" in r.output
    _one_line_error(runner.invoke(data_main, ["sample", "--set", "seasons.windw_days=3", "--out", str(tmp_path / "x")]),
                    2, "seasons.windw_days", "did you mean")
    _one_line_error(runner.invoke(data_main, ["sample", "--patch-cloud-max", "3", "--out", str(tmp_path / "x")]),
                    2, "filters.patch_cloud_max")
    _one_line_error(runner.invoke(data_main, ["sample", "--recipe", str(tmp_path / "nope.yaml")]), 2, "does not exist")
    # a remote recipe without credentials: which setting to provide, before anything is written
    _one_line_error(runner.invoke(data_main, ["sample", "--recipe", "seco-1m", "--out", str(tmp_path / "y")]),
                    7, "Earth Engine project", "EE_PROJECT")
    assert not (tmp_path / "y").exists()
    (tmp_path / "f").write_text("x")
    _one_line_error(runner.invoke(data_main, ["sample", "--source", scripted, "--n", "2", "--out", str(tmp_path / "f" / "o")]),
                    3, "cannot write")
    _one_line_error(runner.invoke(data_main, ["catalog", "info", str(tmp_path)]), 4, "no collection.json")
    _one_line_error(runner.invoke(data_main, ["catalog", "rebuild", str(tmp_path)]), 4, "ledger")
    _one_line_error(runner.invoke(data_main, ["catalog", "validate", str(tmp_path), "--schemas", str(tmp_path / "none")]),
                    4, "schema folder")


def test_corrupt_ledger_and_invalid_catalog(runner, tmp_path, scripted, schemas):
    out = tmp_path / "o"
    args = ["sample", "--source", scripted, "--n", "2", "--out", str(out), "--bands", "B02"]
    _ok(runner.invoke(data_main, args))
    tifs = {p: p.read_bytes() for p in out.rglob("*.tif")}
    (out / "ledger.sqlite").write_bytes(b"\0garbage" * 1000)
    for p in out.glob("ledger.sqlite-*"):
        p.unlink()
    _one_line_error(runner.invoke(data_main, args), 3, "corrupt")
    assert {p: p.read_bytes() for p in tifs} == tifs
    # a broken item (a row of items.parquet, the compact catalog's record) is reported by validate
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(out / "items.parquet")
    i = t.column_names.index("eo:cloud_cover")
    pq.write_table(t.set_column(i, "eo:cloud_cover", pa.array(["cloudy"] * t.num_rows)), out / "items.parquet")
    r = runner.invoke(data_main, ["catalog", "validate", str(out), "--schemas", str(schemas)])
    assert r.exit_code == 4 and "eo:cloud_cover" in r.output and "2 schema errors in 4 STAC objects" in r.output


def test_internal_errors_are_one_line(runner, tmp_path, scripted, monkeypatch):
    import seco_data.sample

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(seco_data.sample, "sample", boom)
    line = _one_line_error(runner.invoke(data_main, ["sample", "--source", scripted, "--out", str(tmp_path / "z")]),
                           70, "internal error", "disk on fire", "-vv")
    assert "safe to resume" in line


def test_sources_check(runner, scripted):
    r = _ok(runner.invoke(data_main, ["sources", "check"]))  # the default: the simulator
    assert "ok   pixels" in r.output and "sim is ready" in r.output
    r = _ok(runner.invoke(data_main, ["sources", "check", "--source", scripted, "--lon", "2.35", "--lat", "48.85",
                                      "--bands", "B02,B05"]))
    assert "10 m: 1x264x264 uint16, 20 m: 1x132x132 uint16" in r.output
    r = runner.invoke(data_main, ["sources", "check", "--source", scripted, "--set", "source_options.fail_first=99"])
    assert r.exit_code == 6 and "FAIL search" in r.output and "Traceback" not in r.output


def test_shared_options_verbosity_anywhere_and_a_closed_pipe(runner, tmp_path, scripted):
    import os
    import subprocess
    import sys

    # -v / -q after the subcommand as well as before it
    r = _ok(runner.invoke(data_main, ["recipe", "list", "-q"]))
    assert "seco-1m" in r.output
    out = tmp_path / "o"
    r = _ok(runner.invoke(data_main, ["sample", "--source", scripted, "--n", "2", "--out", str(out), "--bands", "B02",
                                      "-q"]))
    assert r.output.strip() == ""
    # `seco-data -v recipe list | head -1`: the reader went away before we wrote; no message, status 141
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([sys.executable, "-c", "from seco_cli.data import main; main()", "-v", "recipe", "list"],
                          stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert proc.returncode == 141 and proc.stderr.strip() == "", (proc.returncode, proc.stderr)


def test_source_options_are_checked_by_name(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("SH_CLIENT_ID", "id")
    monkeypatch.setenv("SH_CLIENT_SECRET", "secret")
    _one_line_error(runner.invoke(data_main, ["sample", "--set", "source_options.bogus=1", "--out", str(tmp_path / "a")]),
                    2, "source_options.bogus", "its options")
    _one_line_error(runner.invoke(data_main, ["sample", "--source", "sentinelhub", "--set", "source_options.timeout=0",
                                              "--out", str(tmp_path / "b")]), 2, "timeout")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_refusing_another_output_exits_3_for_every_command(runner, tmp_path, scripted, demo_catalog):
    cat = tmp_path / "cat"
    _ok(runner.invoke(data_main, ["sample", "--source", scripted, "--n", "2", "--out", str(cat), "--bands", "B02"]))
    _one_line_error(runner.invoke(data_main, ["sample", "--source", scripted, "--n", "2", "--out", str(cat),
                                              "--bands", "B02,B03"]), 3, "other settings", "bands")
    shards = tmp_path / "shards"
    _ok(runner.invoke(data_main, ["export", str(demo_catalog), "--out", str(shards), "--maxcount", "2"]))
    _one_line_error(runner.invoke(data_main, ["export", str(demo_catalog), "--out", str(shards), "--maxcount", "3"]),
                    3, "other settings", "maxcount", "--overwrite")
    _ok(runner.invoke(data_main, ["export", str(demo_catalog), "--out", str(shards), "--maxcount", "3",
                                  "--overwrite"]))


def test_options_that_do_not_apply_to_the_format_are_refused(runner, tmp_path, demo_catalog):
    _one_line_error(runner.invoke(data_main, ["export", str(demo_catalog), "--format", "seco", "--out",
                                              str(tmp_path / "a"), "--maxcount", "5", "--prefix", "x"]),
                    2, "--maxcount, --prefix", "--format seco")
    _one_line_error(runner.invoke(data_main, ["export", str(demo_catalog), "--out", str(tmp_path / "b"), "--bits",
                                              "16"]), 2, "--bits", "--format webdataset")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_rebuild_restores_the_per_patch_json_tree(runner, tmp_path, scripted):
    out = tmp_path / "o"
    _ok(runner.invoke(data_main, ["sample", "--source", scripted, "--n", "2", "--out", str(out), "--bands", "B02",
                                  "--layout", "per-patch"]))
    jsons = {p: p.read_bytes() for p in out.rglob("0*/**/*.json")}
    assert len(jsons) == 1 + 8  # a sub-catalog per part folder, an item JSON per patch
    for p in jsons:
        p.unlink()
    assert "rebuilt: 2 locations, 8 items, 8 patches" in _ok(runner.invoke(data_main, ["catalog", "rebuild", str(out)])).output
    assert {p: p.read_bytes() for p in jsons} == jsons
