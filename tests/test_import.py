"""`seco-data import`: the released SeCo and SSL4EO-S12 layouts (tests/released_layouts.py) as catalogs."""

import datetime as dt
import json
import shutil
import sqlite3

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

import seco_data.importers.run as import_run
from helpers import check_catalog, index_items, ledger_rows
from released_layouts import make_seco_layout, make_ssl4eo_layout
from seco_cli.data import main
from seco_data.errors import OutputError, UsageError
from seco_data.importers import import_dataset
from seco_data.catalog.index import CatalogIndex
from seco_data.catalog.validate import validate_catalog


@pytest.fixture(scope="module")
def seco_src(tmp_path_factory):
    """SeCo-100K as extracted: PARENT/seasonal_contrast_100k/<loc:06d>/..., 3 locations, with previews."""
    parent = tmp_path_factory.mktemp("seco")
    return make_seco_layout(parent, 3, variant="100k", preview=True, seed=1)


@pytest.fixture(scope="module")
def ssl4eo_root(tmp_path_factory):
    """SSL4EO-S12 ROOT with s2c (L1C) and s2a (L2A), 3 locations each."""
    root = tmp_path_factory.mktemp("ssl4eo")
    make_ssl4eo_layout(root, 3, product="s2c", seed=2)
    make_ssl4eo_layout(root, 3, product="s2a", seed=3)
    return root


def _source_band(scene_folder, band):
    name = band if band in ("B10", "B11", "B12", "B8A") else f"B{int(band[1:])}"
    with rasterio.open(scene_folder / f"{name}.tif") as ds:
        return ds.read(1), ds.transform


def _expected_valid(arrays):
    """Independent valid fraction: every band non-zero, coarse bands expanded with np.kron."""
    mask = np.ones((264, 264), bool)
    for a in arrays:
        mask &= np.kron(a != 0, np.ones((264 // a.shape[0],) * 2, dtype=int)).astype(bool)
    return mask.mean()


def _check_against_source(out, layout_root, digits, dtype, n_bands):
    """Every band of every item equals its source file; dates, cloud, platform come from metadata.json."""
    patches = list(CatalogIndex(out).patches())
    for p in patches:
        scene = layout_root / f"{p.location:0{digits}d}" / p.scene_id
        meta = json.loads((scene / "metadata.json").read_text()) if (scene / "metadata.json").exists() else None
        bands, arrays = [], []
        for a in p.data:
            got = a.read()
            assert got.dtype == dtype and a.dtype == dtype and a.crs == "EPSG:4326"
            for i, b in enumerate(a.bands):
                want, transform = _source_band(scene, b)
                assert np.array_equal(got[i], want), (p.item_id, b)
                assert a.transform == tuple(transform)[:6]
            bands += a.bands
            arrays += list(got)
        assert len(bands) == n_bands and [a.resolution for a in p.data] == [10, 20, 60]
        assert p.valid_fraction == pytest.approx(_expected_valid(arrays), abs=1e-6)
        if meta:
            t = dt.datetime.fromtimestamp(meta["system:time_start"] / 1000, dt.timezone.utc)
            assert p.datetime == t.strftime("%Y-%m-%dT%H:%M:%SZ")
            assert p.scene_cloud == round(meta["CLOUDY_PIXEL_PERCENTAGE"], 3)
            assert p.platform == meta["SPACECRAFT_NAME"].lower()
    for loc in {p.location for p in patches}:  # seasons in date order
        dates = [p.datetime for p in patches if p.location == loc]
        assert dates == sorted(dates)
    return patches


def test_seco_import_is_pixel_exact_and_valid_stac(seco_src, tmp_path, schemas):
    out = tmp_path / "seco"
    report = import_dataset("seco", seco_src.parent, out, workers=2)  # SRC = the folder holding the extracted one
    assert (report.src, report.name, report.product) == (seco_src, "seco-100k", "L2A")
    assert (report.found, report.imported, report.items, report.skipped) == (3, 3, 15, {})
    check_catalog(out, 3, 5)  # checksums, sizes, no orphans or temp files; the previews were not imported
    assert validate_catalog(out, schemas)[1] == []
    patches = _check_against_source(out, seco_src, 6, "uint8", 12)
    assert patches[4].valid_fraction < 0.95  # the generator's no-data corner (last scene of location 0)
    item = index_items(out)[0]  # compact: one item per location, its seasons' bands in one file per group
    assert item["id"] == "seco-100k-0000000" and len(item["properties"]["seco:seasons"]) == 5
    a = item["assets"]["data_20m"]
    assert a["raster:scale"] == 1 / 255 and a["data_type"] == "uint8" and "nodata" not in a
    assert [(b["seco:season"], b["name"]) for b in a["bands"][:7]] == [
        (0, "B05"), (0, "B06"), (0, "B07"), (0, "B8A"), (0, "B11"), (0, "B12"), (1, "B05")]
    props = item["properties"]
    assert props["seco:source"] == "seco-100k" and props["seco:imported_from"] == "seco"
    assert "seco:cloud_fraction" not in props and props["proj:code"] == "EPSG:4326"  # unknown: left out
    with rasterio.open(out / a["href"]) as ds:  # lossless, tiled, described
        assert ds.compression.value.upper() == "DEFLATE" and ds.profile["tiled"] and ds.descriptions[3] == "s0:B8A"
    coll = json.loads((out / "collection.json").read_text())
    assert coll["license"] == "other" and any(link["rel"] == "license" for link in coll["links"])
    assert str(seco_src) in coll["description"] and "Mañas" in coll["providers"][1]["name"]
    assert "seco:cloud_fraction" not in coll["summaries"] and coll["summaries"]["eo:cloud_cover"]["maximum"] <= 10


@pytest.mark.parametrize("product", ["s2c", "s2a"])
def test_ssl4eo_import_both_products(ssl4eo_root, tmp_path, schemas, product):
    out = tmp_path / product
    # s2c: SRC is the product folder itself; s2a: SRC is ROOT with --product
    src, arg = (ssl4eo_root / "s2c", None) if product == "s2c" else (ssl4eo_root, "s2a")
    report = import_dataset("ssl4eo", src, out, product=arg)
    level, n_bands = {"s2c": ("L1C", 13), "s2a": ("L2A", 12)}[product]
    assert (report.product, report.locations, report.items) == (level, 3, 12)
    check_catalog(out, 3, 4)
    assert validate_catalog(out, schemas)[1] == []
    patches = _check_against_source(out, ssl4eo_root / product, 7, "uint16", n_bands)
    assert patches[3].valid_fraction == 1 - 1 / 16  # exact zeros in every band (uncompressed source)
    assert ("B10" in patches[0].data[2].bands) == (product == "s2c")
    assert all(a.scale == 1e-4 for p in patches for a in p.data)
    coll = json.loads((out / "collection.json").read_text())
    assert coll["license"] == "CC-BY-4.0" and coll["id"] == f"ssl4eo-s12-{level.lower()}"


def test_missing_metadata_and_broken_locations_are_skipped_and_counted(tmp_path, schemas):
    src = make_seco_layout(tmp_path / "src", 6, variant=None, preview=False, seed=4)  # SRC = the dataset folder
    scenes = {loc: sorted(p for p in (src / f"{loc:06d}").iterdir()) for loc in range(6)}
    (scenes[0][2] / "metadata.json").unlink()
    (scenes[1][1] / "B8A.tif").unlink()
    shutil.copy(scenes[2][0] / "B1.tif", scenes[2][3] / "B2.tif")  # 44 px where 264 px are expected
    (scenes[3][4] / "B5.tif").write_bytes(b"II*\x00 truncated")
    shutil.rmtree(scenes[5][1])
    out = tmp_path / "out"
    report = import_dataset("seco", src, out)
    assert report.skipped == {"missing_band": 1, "unreadable_band": 1, "wrong_scene_count": 1, "wrong_size": 1}
    assert [(s.folder, s.reason) for s in report.skipped_locations] == [
        ("000001", "missing_band"), ("000002", "wrong_size"), ("000003", "unreadable_band"),
        ("000005", "wrong_scene_count")]
    assert "B8A.tif" in report.skipped_locations[0].detail
    assert report.locations == 2 and report.name == "seco"
    check_catalog(out, 2, 5)
    assert validate_catalog(out, schemas)[1] == []
    item = index_items(out)[0]
    season = item["properties"]["seco:seasons"][2]
    sid = scenes[0][2].name  # no metadata.json: time from the scene id, scene cloud and platform unknown
    assert season["scene_id"] == sid
    assert season["datetime"] == dt.datetime.strptime(sid[:15], "%Y%m%dT%H%M%S").strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "eo:cloud_cover" not in season and "platform" not in season
    assert "eo:cloud_cover" not in item["properties"] and "platform" not in item["properties"]  # unknown for one season
    p = [p for p in CatalogIndex(out).patches() if p.item_id == "seco-0000000-s2"][0]
    assert p.scene_cloud == 0.0 and p.platform == ""  # nulls in items.parquet
    coll = json.loads((out / "collection.json").read_text())
    assert coll["seco:stats"]["rejections"] == report.skipped


def _snapshot(out):
    """Every file of the catalog (not its bookkeeping: the ledger and the index state), and the ledger's rows."""
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
             if p.is_file() and p.name not in (".seco.lock", "ledger.sqlite") and ".seco" not in p.parent.parts}
    return files, ledger_rows(out)


def test_interrupted_import_resumes_to_the_same_catalog(ssl4eo_root, tmp_path, monkeypatch):
    src = ssl4eo_root / "s2c"
    fresh = tmp_path / "fresh"
    import_dataset("ssl4eo", src, fresh)
    want = _snapshot(fresh)

    out = tmp_path / "out"
    convert = import_run.convert_location

    def interrupted(layout, location, *args):
        if location == 2:
            raise KeyboardInterrupt
        return convert(layout, location, *args)

    monkeypatch.setattr(import_run, "convert_location", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_dataset("ssl4eo", src, out)
    monkeypatch.undo()
    lost = sorted((out / "0000").glob("ssl4eo-s12-l1c-0000001_*"))
    assert len(lost) == 4 and not (out / "items.parquet").exists()
    for p in lost[:2]:
        p.unlink()  # lost, and a half-written file of the location left behind
    (out / "0000" / ".ssl4eo-s12-l1c-0000001_10m.tif.tmp123").write_bytes(b"partial")
    db = sqlite3.connect(out / "ledger.sqlite")
    with db:  # as if killed while location 1 was in flight
        db.execute("UPDATE candidates SET status = 'pending' WHERE idx = 1")
    db.close()
    report = import_dataset("ssl4eo", src, out)
    assert (report.resumed, report.imported) == (1, 2)
    assert _snapshot(out) == want  # byte for byte: GeoTIFFs, items, sub-catalogs, collection, parquet

    # a smaller --limit drops the extra locations; another SRC is refused unless --overwrite
    report = import_dataset("ssl4eo", src, out, limit=1)
    assert (report.resumed, report.removed, report.items) == (1, 2, 4)
    check_catalog(out, 1, 4)
    with pytest.raises(OutputError, match="name, product, src differ"):
        import_dataset("ssl4eo", ssl4eo_root / "s2a", out)
    report = import_dataset("ssl4eo", ssl4eo_root / "s2a", out, overwrite=True)
    assert (report.product, report.imported, report.resumed) == ("L2A", 3, 0)
    check_catalog(out, 3, 4)


def test_src_and_out_are_checked(seco_src, ssl4eo_root, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        import_dataset("seco", tmp_path / "nope", tmp_path / "o1")
    with pytest.raises(UsageError, match="SSL4EO-S12") as e:
        import_dataset("seco", ssl4eo_root, tmp_path / "o1")
    assert "import ssl4eo" in e.value.hint
    with pytest.raises(UsageError, match="uint8 files"):  # SeCo location folders passed as SSL4EO
        import_dataset("ssl4eo", seco_src, tmp_path / "o1")
    with pytest.raises(UsageError, match="out of scope"):
        import_dataset("ssl4eo", ssl4eo_root, tmp_path / "o1", product="s1")
    with pytest.raises(UsageError, match="not a SeCo download: expected"):
        import_dataset("seco", tmp_path, tmp_path / "o1")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        import_dataset("seco", seco_src, busy, overwrite=True)
    assert (busy / "notes.txt").read_text() == "mine"


def test_cli_import(seco_src, ssl4eo_root, tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["import", "seco", str(seco_src), "--out", str(tmp_path / "a"), "--limit", "2", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output[r.output.index("{"):])
    assert (d["locations"], d["items"], d["name"], d["skipped"]) == (2, 10, "seco-100k", {})
    r = runner.invoke(main, ["import", "ssl4eo", str(ssl4eo_root), "--product", "s2a", "--out", str(tmp_path / "b"),
                             "--workers", "2"])
    assert r.exit_code == 0, r.output
    assert "imported 3/3 locations (12 items)" in r.output
    assert f"next: seco-data export {tmp_path / 'b'} --format webdataset --out shards/" in r.output
    assert len(next(CatalogIndex(tmp_path / "b").patches()).data) == 3
    r = runner.invoke(main, ["catalog", "info", str(tmp_path / "b")])  # nulls (seco:cloud_fraction) are fine
    assert r.exit_code == 0 and "locations   3 of 3" in r.output, r.output
    for args, code, fragment in [
        (["seco", str(tmp_path / "nope")], 2, "does not exist"),
        (["ssl4eo", str(seco_src)], 2, "import seco"),
        (["seco", str(ssl4eo_root / "s2c")], 2, "import ssl4eo"),
        (["ssl4eo", str(ssl4eo_root / "s2c"), "--product", "s2a"], 2, "does not match"),
        (["ssl4eo", str(ssl4eo_root), "--product", "s1"], 2, "out of scope"),
    ]:
        r = runner.invoke(main, ["import", *args, "--out", str(tmp_path / "c")])
        errors = [line for line in r.output.splitlines() if line.startswith("Error: ")]
        assert r.exit_code == code and len(errors) == 1 and fragment in errors[0], r.output
        assert "Traceback" not in r.output


def test_imported_seco_exports_to_shards_with_its_pixels(seco_src, tmp_path):
    """Released SeCo -> catalog -> shards: uint8 arrays equal to the band files, reflectance scale 1/255."""
    from seco_data.export.reader import ShardReader, Split
    from seco_data.export.webdataset import ShardOptions, export_webdataset

    import_dataset("seco", seco_src, tmp_path / "cat")
    export_webdataset(tmp_path / "cat", tmp_path / "shards", options=ShardOptions(bands=("B4", "B11")))
    samples = list(ShardReader(tmp_path / "shards", split=Split()))
    assert sorted(s["json"]["location"] for s in samples) == [0, 1, 2]
    for s in samples:
        meta = s["json"]
        assert s["10m"].dtype == np.uint8 and s["10m"].shape == (5, 1, 264, 264) and s["20m"].shape == (5, 1, 132, 132)
        assert meta["arrays"]["10m"]["scale"] == pytest.approx(1 / 255)
        folders = sorted((seco_src / f"{meta['location']:06d}").iterdir())
        folders = [f for f in folders if f.is_dir()]
        by_scene = {f.name: f for f in folders}
        for k, scene in enumerate(meta["scene_ids"]):
            np.testing.assert_array_equal(s["10m"][k, 0], _source_band(by_scene[scene], "B04")[0])
            np.testing.assert_array_equal(s["20m"][k, 0], _source_band(by_scene[scene], "B11")[0])
