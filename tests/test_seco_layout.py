"""SeCo folder layout export: read back by torchgeo's SeasonalContrastS2 and by SeCo's reference loader."""

import calendar
import csv
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from seco_data.errors import CatalogError, OutputError, UsageError
from seco_data.catalog.index import CatalogIndex
from seco_data.export.seco_layout import export_seco_layout, meta_dir
from seco_data.export.seco_layout.files import partial_dir

SECO = {"B01": "B1", "B02": "B2", "B03": "B3", "B04": "B4", "B05": "B5", "B06": "B6", "B07": "B7",
        "B08": "B8", "B8A": "B8A", "B09": "B9", "B11": "B11", "B12": "B12"}
NATIVE = {10: 264, 20: 132, 60: 44}
#: SeCo's datasets/seco_dataset.py, in uint8 units
QUANTILES = {"min_q": {"B2": 3.0, "B3": 2.0, "B4": 0.0}, "max_q": {"B2": 88.0, "B3": 103.0, "B4": 129.0}}


def _catalog(root: Path) -> list[list[tuple]]:
    """Per location, per season: (patch, {seco band: (DN, asset)})."""
    out = []
    for loc in CatalogIndex(root).locations():
        scenes = []
        for p in loc.patches:
            bands = {}
            for a in (a for a in p.assets if a.bands):  # the data assets, not the PNG thumbnail
                assert a.scale == 1e-4 and a.dtype == "uint16"
                px = a.read()
                for k, b in enumerate(a.bands):
                    bands[SECO[b]] = (px[k], a)
            scenes.append((p, bands))
        out.append(scenes)
    return out


def _eight(dn: np.ndarray) -> np.ndarray:
    """SeCo's rescale_intensity(DN / 10000, (0, 1), uint8), in integer arithmetic."""
    return np.minimum(dn.astype(np.int64) * 255 // 10000, 255).astype(np.uint8)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def expected(demo_catalog):
    return _catalog(demo_catalog)


@pytest.fixture(scope="module")
def seco8(demo_catalog, tmp_path_factory):
    """8-bit export with previews, two worker processes, into a folder named as torchgeo expects."""
    out = tmp_path_factory.mktemp("seco8") / "seasonal_contrast_100k"
    calls = []
    report = export_seco_layout(demo_catalog, out, preview=True, workers=2, progress=calls.append)
    return out, report, calls


def test_round_trip_8bit(seco8, expected, demo_catalog):
    out, report, calls = seco8
    assert [p.done for p in calls] == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}" for i in range(5)]
    rows = list(csv.DictReader((meta_dir(out) / "index.csv").read_text().splitlines()))
    assert len(rows) == 20
    files = nbytes = 0
    for i, scenes in enumerate(expected):
        loc = out / f"{i:06d}"
        assert sorted(p.name for p in loc.iterdir() if p.is_dir()) == sorted(p.scene_id for p, _ in scenes)
        for patch, bands in scenes:
            scene = loc / patch.scene_id
            assert sorted(f.name for f in scene.iterdir()) == sorted([f"{b}.tif" for b in SECO.values()] + ["metadata.json"])
            for name, (dn, asset) in bands.items():
                with rasterio.open(scene / f"{name}.tif") as src:
                    got = src.read()
                    assert src.count == 1 and src.dtypes[0] == "uint8" and src.compression.name == "deflate"
                    assert src.crs == rasterio.CRS.from_user_input(asset.crs)
                    assert tuple(src.transform)[:6] == asset.transform
                    assert src.descriptions == (name,)
                assert got.shape == (1, NATIVE[asset.resolution], NATIVE[asset.resolution])
                np.testing.assert_array_equal(got[0], _eight(dn), err_msg=f"{scene}/{name}")
            t = calendar.timegm(tuple(int(x) for x in patch.datetime[:19].replace("-", " ").replace("T", " ")
                                      .replace(":", " ").split())) * 1000
            assert json.loads((scene / "metadata.json").read_text()) == {
                "system:index": patch.scene_id, "system:time_start": t,
                "CLOUDY_PIXEL_PERCENTAGE": patch.scene_cloud,
                "SPACECRAFT_NAME": "Sentinel-2" + patch.platform[-1].upper(), "datetime": patch.datetime,
                "seco:item_id": patch.item_id, "seco:location": patch.location, "seco:season": patch.season,
                "seco:cloud_fraction": patch.cloud_fraction, "seco:valid_fraction": patch.valid_fraction,
            }
            assert {"index": f"{i:06d}", "location": str(patch.location), "season": str(patch.season),
                    "item_id": patch.item_id, "scene_id": patch.scene_id, "folder": patch.scene_id} in rows
            # SeCo-100K preview: rescale_intensity(rgb8, in_range=(0, 76.5), out_range=(0, 255)), truncated
            with rasterio.open(loc / f"{patch.scene_id}.tif") as src:
                preview = src.read()
            rgb8 = np.stack([_eight(bands[b][0]) for b in ("B4", "B3", "B2")]).astype(np.int64)
            np.testing.assert_array_equal(preview, np.minimum(rgb8 * 10 // 3, 255))
        for f in loc.rglob("*"):
            if f.is_file():
                files, nbytes = files + 1, nbytes + f.stat().st_size
    assert (report.locations, report.scenes, report.files, report.bytes) == (5, 20, files, nbytes) == (5, 20, 280, nbytes)
    assert report.skipped == {} and report.to_dict()["out"] == str(out)
    layout = json.loads((meta_dir(out) / "seco_layout.json").read_text())
    assert layout["settings"] == {"bits": 8, "bands": list(SECO.values()), "compress": "deflate", "preview": True}
    assert layout["catalog"]["path"] == str(demo_catalog.resolve()) and layout["catalog"]["collection"] == "demo"
    assert layout["complete"] and layout["counts"] == {"locations": 5, "scenes": 20, "files": 280, "bytes": nbytes}


def _seasonal_contrast_s2():
    with warnings.catch_warnings():  # its import chain may warn (filterwarnings=error)
        warnings.simplefilter("ignore")
        try:
            from torchgeo.datasets import SeasonalContrastS2
        except ImportError as e:
            pytest.skip(f"torchgeo is not importable: {e}")
    return SeasonalContrastS2


@pytest.mark.parametrize("bits", [8, 16])
def test_torchgeo_reads_the_export(bits, seco8, expected, demo_catalog, tmp_path):
    from PIL import Image

    SeasonalContrastS2 = _seasonal_contrast_s2()
    if bits == 8:
        out = seco8[0]
    else:
        out = tmp_path / "seasonal_contrast_100k"
        export_seco_layout(demo_catalog, out, bits=16, compress="zstd")
    bands = list(SeasonalContrastS2.all_bands)
    ds = SeasonalContrastS2(root=out.parent, version="100k", seasons=4, bands=bands)
    assert len(ds) == 20_000  # fixed by torchgeo, whatever was exported: index only below 5
    for i, scenes in enumerate(expected):
        want = []
        for _, b in scenes:
            stack = []
            for name in bands:
                dn, asset = b[name]
                px = (_eight(dn) if bits == 8 else dn).astype(np.float32)
                if asset.resolution != 10:  # torchgeo upsamples with PIL bilinear
                    px = np.array(Image.fromarray(px).resize((264, 264), resample=Image.Resampling.BILINEAR))
                stack.append(px)
            want.append(np.stack(stack))
        image = ds[i]["image"].numpy()
        assert image.shape == (4 * len(bands), 264, 264) and image.dtype == np.float32
        # torchgeo draws the seasons with random.sample: each chunk is one of our scenes, all distinct
        matched = set()
        for s in range(4):
            chunk = image[s * len(bands):(s + 1) * len(bands)]
            hits = [k for k, w in enumerate(want) if np.array_equal(chunk, w)]
            assert len(hits) == 1, (i, s)
            matched.add(hits[0])
        assert matched == {0, 1, 2, 3}


def test_seco_reference_loader_reads_8bit(seco8, expected):
    """SeCo's loaders (datasets/seco_dataset.py): location folders = dirs of root, scenes = their dirs,
    ``read_image`` stacks <band>.tif for B4 B3 B2 normalised with its uint8 quantiles."""
    out = seco8[0]

    def normalize(img, min_q, max_q):
        img = (img - min_q) / (max_q - min_q)
        return np.clip(img * 255.0, 0, 255).astype(np.uint8)

    def read_image(path, bands):
        channels = []
        for b in bands:
            with rasterio.open(path / f"{b}.tif") as src:
                ch = src.read(1)
            channels.append(normalize(ch, QUANTILES["min_q"][b], QUANTILES["max_q"][b]))
        return np.dstack(channels)

    samples = sorted(p for p in out.glob("*") if p.is_dir())
    assert [p.name for p in samples] == [f"{i:06d}" for i in range(5)]
    # SeasonalContrastBasic: every entry of the root is opened as a folder, their folders are samples
    basic = [Path(s.path) for e in os.scandir(out) for s in os.scandir(e.path) if s.is_dir()]
    assert len(basic) == 20
    for root, scenes in zip(samples, expected):
        paths = sorted(p for p in root.glob("*") if p.is_dir())
        assert len(paths) == 4
        by_id = {p.scene_id: b for p, b in scenes}
        for path in paths:
            img = read_image(path, ["B4", "B3", "B2"])
            assert img.shape == (264, 264, 3) and img.dtype == np.uint8
            want = np.dstack([normalize(_eight(by_id[path.name][b][0]), QUANTILES["min_q"][b], QUANTILES["max_q"][b])
                              for b in ("B4", "B3", "B2")])
            np.testing.assert_array_equal(img, want)
            assert img.std() > 1  # not saturated to a constant


def test_resume_refusals_and_overwrite(demo_catalog, expected, tmp_path):
    out = tmp_path / "out"
    export_seco_layout(demo_catalog, out)
    first = _files(out)
    # a crash: one location never renamed into place, its temporary folder left behind
    shutil.rmtree(out / "000003")
    (partial_dir(out) / "000003.999" / "x").mkdir(parents=True)
    calls = []
    report = export_seco_layout(demo_catalog, out, progress=calls.append)
    assert report.skipped == {"finished": 4} and [p.done for p in calls] == [1, 2, 3, 4, 5] and report.locations == 5
    assert _files(out) == first and not partial_dir(out).exists()

    with pytest.raises(OutputError, match="settings.bits") as e:
        export_seco_layout(demo_catalog, out, bits=16)
    assert "--overwrite" in e.value.hint and "\n" not in e.value.one_line()
    assert _files(out) == first
    report = export_seco_layout(demo_catalog, out, bits=16, overwrite=True)
    assert report.skipped == {} and report.files == 20 * 13
    dn, _ = expected[2][1][1]["B2"]
    with rasterio.open(out / "000002" / expected[2][1][0].scene_id / "B2.tif") as src:
        assert src.dtypes[0] == "uint16" and src.nodata == 0
        np.testing.assert_array_equal(src.read(1), dn)

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="other|not part") as e:
            export_seco_layout(demo_catalog, other, overwrite=overwrite)
        assert e.value.hint
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]

    new = tmp_path / "new"
    for kwargs, err, text in [
        ({"bits": 16, "compress": "jpeg"}, UsageError, "8-bit"),
        ({"bits": 12}, UsageError, "bits"),
        ({"compress": "webp"}, UsageError, "compression"),
        ({"bands": ["B13"]}, UsageError, "unknown band"),
        ({"bands": ["B10"]}, UsageError, "not in the catalog"),
        ({"workers": 0}, UsageError, "workers"),
    ]:
        with pytest.raises(err, match=text) as e:
            export_seco_layout(demo_catalog, new, **kwargs)
        assert "\n" not in e.value.one_line()
    assert not new.exists()
    with pytest.raises(CatalogError, match="not a seco catalog") as e:
        export_seco_layout(tmp_path / "nope", new)
    assert e.value.hint


def test_band_subset_with_jpeg_as_seco(demo_catalog, expected, tmp_path):
    out = tmp_path / "jpeg"
    report = export_seco_layout(demo_catalog, out, bands=["B4", "B03", "B2", "B8A"], compress="jpeg")
    assert report.files == 20 * 5
    assert json.loads((meta_dir(out) / "seco_layout.json").read_text())["settings"]["bands"] == ["B2", "B3", "B4", "B8A"]
    patch, bands = expected[0][0]
    scene = out / "000000" / patch.scene_id
    assert sorted(p.name for p in scene.iterdir()) == ["B2.tif", "B3.tif", "B4.tif", "B8A.tif", "metadata.json"]
    for name in ("B2", "B8A"):
        with rasterio.open(scene / f"{name}.tif") as src:
            assert src.compression.name == "jpeg" and src.dtypes[0] == "uint8"
            got = src.read(1).astype(int)
        diff = np.abs(got - _eight(bands[name][0]).astype(int))
        assert got.shape == bands[name][0].shape and diff.mean() < 4, diff.mean()  # lossy, as SeCo's release


def test_cli_export_seco(demo_catalog, tmp_path):
    from click.testing import CliRunner

    from seco_cli.data import main

    out = tmp_path / "seasonal_contrast_100k"
    r = CliRunner().invoke(main, ["export", str(demo_catalog), "--format", "seco", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}" for i in range(5)]
    r = CliRunner().invoke(main, ["export", str(demo_catalog), "--format", "seco", "--out", str(out), "--bits", "16"])
    assert r.exit_code != 0 and "overwrite" in r.output and "Traceback" not in r.output
