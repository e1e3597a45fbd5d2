"""WebDataset export, the torch-free reader and `seco-data verify`, on a real simulator catalog."""

from __future__ import annotations

import functools
import gc
import hashlib
import http.server
import json
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from helpers import index_items
from seco_cli.data import main
from seco_data.errors import OutputError, ShardError, UsageError
from seco_data.export.reader import ShardReader, Split, current_split, expand_urls, iter_shard, split_shards
from seco_data.export.webdataset import ShardOptions, export_webdataset
from seco_data.export.verify import verify


def _items(catalog: Path) -> dict[int, list[dict]]:
    """Per location, its seasons as read from the stored items themselves (compact: one item per
    location, every season's bands in one file per group, told apart by ``seco:season``)."""
    out: dict[int, list[dict]] = {}
    for item in index_items(catalog):
        props = item["properties"]
        for s in props["seco:seasons"]:
            bands = {}
            for a in item["assets"].values():
                for i, b in enumerate(a.get("bands") or [], start=1):
                    if b["seco:season"] == s["season"]:
                        bands[b["name"]] = (catalog / a["href"], i)
            out.setdefault(props["seco:location"], []).append(
                {"id": f"{item['id']}-s{s['season']}", "season": s["season"], "datetime": s["datetime"],
                 "scene_id": s["scene_id"], "crs": props["proj:code"], "bands": bands})
    return {k: sorted(v, key=lambda i: i["season"]) for k, v in out.items()}


def _pixels(season: dict, band: str) -> np.ndarray:
    path, i = season["bands"][band]
    with rasterio.open(path) as src:
        assert src.descriptions[i - 1] == f"s{season['season']}:{band}"
        return src.read(i)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def shards(demo_catalog, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "shards"
    export_webdataset(demo_catalog, out, options=ShardOptions(maxcount=2, seed=7), workers=2)
    return out


def test_round_trip_equals_geotiff_pixels(demo_catalog, shards):
    items = _items(demo_catalog)
    manifest = json.loads((shards / "shards.json").read_text())
    assert manifest["complete"] and manifest["samples"] == len(items) == 5
    assert [s["nsamples"] for s in manifest["shardlist"]] == [2, 2, 1]
    for s in manifest["shardlist"]:  # sizes and checksums in the manifest are the files'
        assert (shards / s["url"]).stat().st_size == s["filesize"] and _sha(shards / s["url"]) == s["sha256"]
    seen = []
    for sample in ShardReader(shards, split=Split()):
        meta = sample["json"]
        loc = meta["location"]
        seen.append(loc)
        assert sample["__key__"] == f"{loc:07d}" and "." not in sample["__key__"]
        its = items[loc]
        assert meta["item_ids"] == [i["id"] for i in its]
        assert meta["dates"] == [i["datetime"] for i in its]
        assert meta["scene_ids"] == [i["scene_id"] for i in its]
        assert meta["crs"] == its[0]["crs"]
        for group, spec in meta["arrays"].items():
            arr = sample[group]
            assert arr.dtype == np.uint16 and list(arr.shape) == spec["shape"]
            assert arr.shape[:2] == (len(its), len(spec["bands"]))
            for s, item in enumerate(its):
                for b, band in enumerate(spec["bands"]):
                    np.testing.assert_array_equal(arr[s, b], _pixels(item, band))
        assert set(meta["arrays"]) == {"10m", "20m", "60m"}
        assert all(spec["scale"] == 1e-4 for spec in meta["arrays"].values())  # DN to reflectance
    assert sorted(seen) == sorted(items)
    # shards hold consecutive locations of the catalog (drawn in random order by the samplers)
    per_shard = [sorted(s["json"]["location"] for s in ShardReader(shards / e["url"], split=Split()))
                 for e in manifest["shardlist"]]
    assert [loc for shard in per_shard for loc in shard] == sorted(items)


def test_shards_are_byte_reproducible_and_seeded(demo_catalog, shards, tmp_path):
    again = tmp_path / "again"
    export_webdataset(demo_catalog, again, options=ShardOptions(maxcount=2, seed=7), workers=1)
    names = sorted(p.name for p in shards.glob("*.tar"))
    assert names == sorted(p.name for p in again.glob("*.tar"))
    assert all(_sha(shards / n) == _sha(again / n) for n in names)
    # samples are shuffled within a shard with the seed
    keys = lambda d: [s["__key__"] for s in ShardReader(d, split=Split(), decode=False)]  # noqa: E731
    orders = set()
    for seed in range(4):
        export_webdataset(demo_catalog, tmp_path / f"s{seed}", options=ShardOptions(maxcount=5, seed=seed))
        orders.add(tuple(keys(tmp_path / f"s{seed}")))
    assert len(orders) >= 3 and {tuple(sorted(o)) for o in orders} == {tuple(sorted(keys(shards)))}


def test_maxsize_band_season_selection_and_resampling(demo_catalog, tmp_path):
    items = _items(demo_catalog)
    one = 2 * 3 * 264 * 264 * 2  # bytes of pixels per sample: 2 seasons x 3 bands at 10 m, uint16
    opts = ShardOptions(maxsize=2 * one + 20_000, bands=("B4", "B8A", "B01"), seasons=(2, 0), resample_10m=True)
    r = export_webdataset(demo_catalog, tmp_path / "s", options=opts)
    m = json.loads((tmp_path / "s" / "shards.json").read_text())
    assert r.samples == 5 and all(s["filesize"] <= opts.maxsize for s in m["shardlist"])
    assert [s["nsamples"] for s in m["shardlist"]] == [2, 2, 1]  # the size limit cut the shards
    for sample in ShardReader(tmp_path / "s", split=Split()):
        meta = sample["json"]
        assert set(meta["arrays"]) == {"10m"} and meta["arrays"]["10m"]["bands"] == ["B04", "B8A", "B01"]
        assert meta["seasons"] == [2, 0]
        arr = sample["10m"]
        assert arr.shape == (2, 3, 264, 264)
        its = items[meta["location"]]
        for s, season in enumerate((2, 0)):
            np.testing.assert_array_equal(arr[s, 0], _pixels(its[season], "B04"))
            np.testing.assert_array_equal(arr[s, 1], np.repeat(np.repeat(_pixels(its[season], "B8A"), 2, 0), 2, 1))
            np.testing.assert_array_equal(arr[s, 2], np.repeat(np.repeat(_pixels(its[season], "B01"), 6, 0), 6, 1))
    with pytest.raises(UsageError, match=r"missing_season 5\): nothing exported") as e:
        export_webdataset(demo_catalog, tmp_path / "t", options=ShardOptions(seasons=(0, 9)))
    assert "(0..3)" in e.value.hint


@pytest.mark.parametrize("world,workers,n", [(1, 1, 3), (2, 1, 5), (2, 3, 7), (3, 2, 13), (4, 4, 16)])
def test_node_worker_split_is_disjoint_and_complete(world, workers, n, monkeypatch):
    shards = [f"s-{i:06d}.tar" for i in range(n)]
    parts = []
    for rank in range(world):
        for worker in range(workers):
            monkeypatch.setenv("RANK", str(rank))
            monkeypatch.setenv("WORLD_SIZE", str(world))
            monkeypatch.setenv("WORKER", str(worker))
            monkeypatch.setenv("NUM_WORKERS", str(workers))
            split = current_split()
            assert split == Split(rank, world, worker, workers)
            parts.append(split_shards(shards, split))
    flat = [s for p in parts for s in p]
    assert sorted(flat) == shards and len(flat) == len(set(flat))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_dataloader_workers_and_ranks_read_each_sample_once(shards, monkeypatch):
    torch = pytest.importorskip("torch")

    class Stream(torch.utils.data.IterableDataset):
        def __init__(self, reader):
            self.reader = reader

        def __iter__(self):
            for s in self.reader:
                yield s["__key__"]

    keys = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        reader = ShardReader(shards, shuffle_shards=True, seed=3, decode=False)
        loader = torch.utils.data.DataLoader(Stream(reader), batch_size=None, num_workers=2,
                                             multiprocessing_context="fork")
        keys += list(loader)
    assert sorted(keys) == sorted(s["__key__"] for s in ShardReader(shards, split=Split(), decode=False))
    assert len(keys) == len(set(keys)) == 5


def test_urls_globs_braces_and_http(shards):
    names = sorted(str(p) for p in shards.glob("*.tar"))
    assert expand_urls(shards) == names
    assert expand_urls(str(shards / "*.tar")) == names
    assert expand_urls(str(shards / "seco-{000000..000002}.tar")) == names
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shards))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/seco-{{000000..000002}}.tar"
        remote = list(ShardReader(url, split=Split()))
    finally:
        server.shutdown()
        server.server_close()
    local = list(ShardReader(shards, split=Split()))
    assert [s["__key__"] for s in remote] == [s["__key__"] for s in local]
    np.testing.assert_array_equal(remote[-1]["20m"], local[-1]["20m"])


def test_wids_reads_the_manifest(shards, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        wids = pytest.importorskip("wids")
    ds = wids.ShardListDataset(str(shards / "shards.json"), cache_dir=str(tmp_path / "cache"), transformations=[])
    assert len(ds) == 5
    first = next(iter_shard(str(shards / "seco-000000.tar"), decode=False))
    assert ds[0]["__key__"] == first["__key__"]
    assert ds[0][".10m.npy"].read() == first["10m.npy"]


def test_resume_after_interrupt_equals_fresh_export(demo_catalog, shards, tmp_path):
    out = tmp_path / "resumed"
    calls = []

    def stop_after_first_shard(p):
        calls.append(p.counts["shards"])
        if p.counts["shards"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_webdataset(demo_catalog, out, options=ShardOptions(maxcount=2, seed=7), progress=stop_after_first_shard)
    m = json.loads((out / "shards.json").read_text())
    assert not m["complete"] and len(m["shardlist"]) == 1  # only the finished shard is listed
    # a shard renamed by the fsync thread after the interrupt is complete but unlisted: it is redone
    assert m["shardlist"][0]["url"] in [p.name for p in out.glob("*.tar")]
    assert not list(out.glob(".*.tmp*"))
    r = export_webdataset(demo_catalog, out, options=ShardOptions(maxcount=2, seed=7))
    assert r.reused_shards == 1 and r.samples == 5
    assert json.loads((out / "shards.json").read_text())["shardlist"] == \
        json.loads((shards / "shards.json").read_text())["shardlist"]
    with pytest.raises(OutputError, match="other settings") as e:
        export_webdataset(demo_catalog, out, options=ShardOptions(maxcount=3))
    assert "--overwrite" in e.value.hint
    r = export_webdataset(demo_catalog, out, options=ShardOptions(maxcount=3), overwrite=True)
    assert r.shards == 2 and len(list(out.glob("*.tar"))) == 2


def test_corrupt_and_truncated_shards_are_named(shards, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(shards, bad)
    assert verify(bad).ok
    victim = bad / "seco-000001.tar"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # truncated in the middle of its second sample
    first_key = next(iter_shard(str(shards / "seco-000001.tar"), decode=False))["__key__"]
    with pytest.raises(ShardError, match=rf"seco-000001\.tar .*after sample {first_key}"):
        list(ShardReader(bad, split=Split()))
    flipped = bad / "seco-000002.tar"
    raw = bytearray(flipped.read_bytes())
    raw[1024 + 200] ^= 0xFF  # inside the first member's data
    flipped.write_bytes(bytes(raw))
    report = verify(bad)
    text = "\n".join(report.problems)
    assert "seco-000001.tar" in text and "seco-000002.tar: sha256 differs" in text
    assert "seco-000000.tar" not in text
    res = CliRunner().invoke(main, ["verify", str(bad)])
    assert res.exit_code == 10 and "FAIL seco-000001.tar" in res.output
    assert "Traceback" not in res.output


def test_catalog_verify_names_bad_assets(demo_catalog, tmp_path):
    cat = tmp_path / "cat"
    shutil.copytree(demo_catalog, cat)
    assert verify(cat).ok
    tifs = sorted(cat.glob("0000/*_20m.tif"))
    tifs[0].unlink()
    raw = bytearray(tifs[1].read_bytes())
    raw[-10] ^= 0xFF
    tifs[1].write_bytes(bytes(raw))
    report = verify(cat)
    assert len(report.problems) == 2
    assert f"{tifs[0].relative_to(cat)}: missing" in report.problems[0] + report.problems[1]
    assert any(str(tifs[1].relative_to(cat)) in p and "sha256" in p for p in report.problems)


def test_cli_export_and_verify(demo_catalog, tmp_path):
    out = tmp_path / "cli"
    runner = CliRunner()
    res = runner.invoke(main, ["export", str(demo_catalog), "--out", str(out), "--maxcount", "3", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output[res.output.index("{"):])["samples"] == 5
    res = runner.invoke(main, ["verify", str(out)])
    assert res.exit_code == 0 and "OK: 2 shards, 5 samples" in res.output
    res = runner.invoke(main, ["export", str(demo_catalog), "--out", str(out), "--maxsize", "lots"])
    assert res.exit_code == 2 and "not a size" in res.output
    res = runner.invoke(main, ["export", str(tmp_path / "nowhere"), "--out", str(out)])
    assert res.exit_code == 4 and "not a seco catalog" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["export", str(demo_catalog), "--out", str(out), "--bands", "B99"])
    assert res.exit_code == 2 and "unknown band" in res.output


# webdataset leaves its last shard file open (closed by the garbage collector, with a ResourceWarning)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_webdataset_reads_the_shards(shards):
    webdataset = pytest.importorskip("webdataset")
    urls = str(shards / "seco-{000000..000002}.tar")
    ours = {s["__key__"]: s for s in ShardReader(shards, split=Split())}
    theirs = list(webdataset.WebDataset(urls, shardshuffle=False, nodesplitter=None).decode())
    assert sorted(s["__key__"] for s in theirs) == sorted(ours)
    for s in theirs:
        np.testing.assert_array_equal(s["10m.npy"], ours[s["__key__"]]["10m"])
        assert s["json"]["location"] == ours[s["__key__"]]["json"]["location"]
    del theirs
    gc.collect()  # here, so the warning is this test's


def test_shards_are_what_webdataset_tarwriter_writes(shards):
    """Our writer skips TarWriter's copies; the bytes must be the same as TarWriter's."""
    webdataset = pytest.importorskip("webdataset")
    import io

    for path in sorted(shards.glob("*.tar")):
        buf = io.BytesIO()
        writer = webdataset.TarWriter(buf, user="seco", group="seco", mode=0o444, mtime=0, encoder=False)
        for sample in iter_shard(str(path), decode=False):
            writer.write({k: v for k, v in sample.items() if k != "__url__"})
        writer.close()
        assert buf.getvalue() == path.read_bytes()


def test_zstd_codec_is_lossless_smaller_and_verified(demo_catalog, shards, tmp_path):
    from seco_data.export.arrays import decode_npy, zstd_content_size

    out = tmp_path / "zstd"
    r = export_webdataset(demo_catalog, out, options=ShardOptions(maxcount=2, seed=7, codec="zstd"))
    raw = json.loads((shards / "shards.json").read_text())
    assert r.samples == 5 and r.bytes < 0.8 * raw["bytes"]
    plain = {s["__key__"]: s for s in ShardReader(shards, split=Split())}
    for s in iter_shard(str(out / "seco-000000.tar"), decode=False):
        assert sorted(k for k in s if k.endswith(".zst")) == ["10m.npy.zst", "20m.npy.zst", "60m.npy.zst"]
        assert zstd_content_size(s["10m.npy.zst"]) > s["10m.npy.zst"].__len__()
    for s in ShardReader(out, split=Split()):
        want = plain[s["__key__"]]
        for g, spec in s["json"]["arrays"].items():
            assert spec["encoding"] == "zstd" and s[g].dtype == want[g].dtype
            np.testing.assert_array_equal(s[g], want[g])  # bit for bit
    assert verify(out).ok
    # the documented recipe for readers without seco: zstd frame -> .npy of byte planes -> array
    import pyarrow as pa

    member = next(iter_shard(str(out / "seco-000000.tar"), decode=False))
    frame = member["20m.npy.zst"]
    planes = decode_npy(pa.Codec("zstd").decompress(frame, decompressed_size=zstd_content_size(frame), asbytes=True))
    spec = json.loads(member["json"])["arrays"]["20m"]
    arr = planes.T.copy().view(spec["dtype"]).reshape(spec["shape"])
    np.testing.assert_array_equal(arr, plain[member["__key__"]]["20m"])


def test_a_grown_catalog_gets_new_shards_and_layouts_give_the_same_shards(demo_catalog, per_patch_catalog,
                                                                          tmp_path):
    from seco_data.recipe import load_recipe
    from seco_data.sample import sample

    def shardlist(out):
        return json.loads((out / "shards.json").read_text())["shardlist"]

    cat = tmp_path / "cat"
    sample(load_recipe("demo", {"n": 2}), cat)
    opts = ShardOptions(maxcount=1, seed=7)
    export_webdataset(cat, tmp_path / "compact", options=opts)
    export_webdataset(per_patch_catalog, tmp_path / "per-patch", options=opts)
    assert shardlist(tmp_path / "compact") == shardlist(tmp_path / "per-patch")  # byte for byte
    out = tmp_path / "grown"
    r = export_webdataset(cat, out, options=opts)
    assert (r.shards, r.samples) == (2, 2)
    kept = (out / "seco-000000.tar").stat().st_mtime_ns
    sample(load_recipe("demo", {"n": 5}), cat)  # the catalog grows by 3 locations
    r = export_webdataset(cat, out, options=opts)
    assert (r.reused_shards, r.shards, r.samples) == (1, 5, 5)
    assert (out / "seco-000000.tar").stat().st_mtime_ns == kept  # not rewritten
    export_webdataset(demo_catalog, tmp_path / "at-once", options=opts)
    assert shardlist(out) == shardlist(tmp_path / "at-once")  # the same shards as exporting it whole
    assert verify(out).ok


def test_training_ready_export_uint8_rgb(demo_catalog, shards, tmp_path):
    """--bands B04,B03,B02 --dtype uint8: SeCo's 8-bit of the same pixels at half the bytes per value,
    whose pre-training views are bit-identical to those of the full uint16 shards."""
    torch = pytest.importorskip("torch")
    from seco_data.bands import to_uint8
    from seco_train.views import ViewConfig, make_views, to_images

    out = tmp_path / "rgb8"
    res = CliRunner().invoke(main, ["export", str(demo_catalog), "--out", str(out), "--maxcount", "2", "--seed", "7",
                                    "--bands", "B04,B03,B02", "--dtype", "uint8", "--json"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "shards.json").read_text())
    assert manifest["options"]["dtype"] == "uint8" and "dtype" not in json.loads((shards / "shards.json").read_text())["options"]
    full = {s["__key__"]: s for s in ShardReader(shards, split=Split())}
    samples = list(ShardReader(out, split=Split()))
    assert len(samples) == 5
    per_value = (samples[0]["10m"].nbytes / samples[0]["10m"].size, full[samples[0]["__key__"]]["10m"].itemsize)
    assert per_value == (1, 2)
    for s in samples:
        spec = s["json"]["arrays"]["10m"]
        assert list(s["json"]["arrays"]) == ["10m"] and spec["bands"] == ["B04", "B03", "B02"]
        assert (spec["dtype"], spec["scale"], spec["source_dtype"], spec["source_scale"]) == \
            ("uint8", 1 / 255, "uint16", 1e-4)
        want = full[s["__key__"]]
        rows = [want["json"]["arrays"]["10m"]["bands"].index(b) for b in spec["bands"]]
        np.testing.assert_array_equal(s["10m"], to_uint8(want["10m"][:, rows], 1e-4))
        cfg = ViewConfig(size=32)
        a, b = to_images(s, cfg), to_images(want, cfg)
        assert torch.equal(a, b)
        for seed in range(3):
            va, vb = (make_views(x, cfg, torch.Generator().manual_seed(seed)) for x in (a, b))
            assert all(torch.equal(x, y) for x, y in zip(va, vb))
    assert verify(out).ok
    res = CliRunner().invoke(main, ["export", str(demo_catalog), "--format", "seco", "--out", str(tmp_path / "l"),
                                    "--dtype", "uint8"])
    assert res.exit_code != 0 and "--dtype" in res.output


def test_reader_reads_only_the_members_the_bands_need(shards, monkeypatch):
    import os

    path = str(sorted(shards.glob("*.tar"))[0])
    full = list(iter_shard(path))
    read = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, offset: (read.append(n), real(fd, n, offset))[1])
    rgb = list(iter_shard(path, bands=("B04", "B02")))
    assert [s["__key__"] for s in rgb] == [s["__key__"] for s in full]
    for a, b in zip(rgb, full):
        assert sorted(a) == ["10m", "__key__", "__url__", "json"] and a["json"] == b["json"]
        np.testing.assert_array_equal(a["10m"], b["10m"])
    assert sum(read) < 1.05 * sum(s["10m"].nbytes for s in full)  # headers, JSON and the 10 m arrays only
    both = list(iter_shard(path, bands=("B11", "B04", "B99")))  # an absent band is no error here
    assert all(sorted(s) == ["10m", "20m", "__key__", "__url__", "json"] for s in both)
    raw = list(iter_shard(path, bands=("B01",), decode=False))
    assert all(sorted(s) == ["60m.npy", "__key__", "__url__", "json"] for s in raw)
    truncated = shards.parent / "truncated.tar"
    truncated.write_bytes(Path(path).read_bytes()[:-60_000])
    with pytest.raises(ShardError, match="truncated"):
        list(iter_shard(str(truncated), bands=("B04",)))
