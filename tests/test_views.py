"""Training views (SECO.md section 2), the resampled view stream and band statistics."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F

import seco_train.data as data
from seco_data.errors import UsageError
from seco_data.export.reader import ShardReader, Split, iter_shard
from seco_data.export.webdataset import ShardOptions, export_webdataset
from seco_data.export.webdataset.tar import TarShard
from seco_train.data import SeasonalViews, dataset_size, make_loader
from seco_train.stats import compute_stats
from seco_train.views import (SkipSample, ViewConfig, adjust_hue, gaussian_blur, make_views,
                              to_images)

RGB = ("B04", "B03", "B02")
IDENTITY = {b: {"mean": 0.0, "std": 1.0} for b in ("B04", "B03", "B02", "B08")}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Per-sample ops on small images: OpenMP threads only contend (as in DataLoader workers, 1 thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shards(demo_catalog, tmp_path_factory) -> Path:
    """5 locations x 4 seasons in 3 shards (2, 2, 1 samples)."""
    out = tmp_path_factory.mktemp("views") / "shards"
    export_webdataset(demo_catalog, out, options=ShardOptions(maxcount=2))
    return out


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _sample(key: str, arrays: dict[str, tuple[list[str], np.ndarray, float]]) -> dict:
    meta = {"key": key, "arrays": {g: {"bands": b, "shape": list(a.shape), "dtype": a.dtype.name, "scale": s}
                                   for g, (b, a, s) in arrays.items()}}
    members = {f"{g}.npy": _npy(a) for g, (_, a, _) in arrays.items()}
    return {"__key__": key, "json": json.dumps(meta).encode(), **members}


def _decoded(raw: dict) -> dict:
    return {"__key__": raw["__key__"], "json": json.loads(raw["json"]),
            **{k[:-4]: np.load(io.BytesIO(v)) for k, v in raw.items() if k.endswith(".npy")}}


def _draws(images, cfg, n, seed=0):
    return [make_views(images, cfg, torch.Generator().manual_seed(seed + i)) for i in range(n)]


def _within(freq, p, n, sigmas=4.5):
    return abs(freq - p) <= sigmas * np.sqrt(p * (1 - p) / n)


# -- which seasons, which augmentations ----------------------------------------------------------------

def test_views_take_the_right_seasons_and_only_keys_are_jittered():
    # one band, season s a constant 0.1 * 3**s: brightness (x0.6..1.4, the only jitter that changes a
    # constant single band) keeps the seasons apart, so each view tells its season and whether it was
    # jittered; crops, blur and flips of a constant image leave it unchanged
    values = 0.1 * 3.0 ** np.arange(4)
    images = torch.tensor(values, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 40, 40).contiguous()

    def seasons_and_factors(views):
        out = []
        for v in views:
            assert float(v.max() - v.min()) <= 1e-5 * float(v.max())  # still a constant image
            x = float(v.mean())
            s = int(np.argmin(np.abs(np.log(x / values))))
            assert 0.6 - 1e-5 <= x / values[s] <= 1.4 + 1e-5
            out.append((s, x / values[s]))
        return out

    n = 400
    cfg = ViewConfig(mode="seco", size=16, bands=("B08",), stretch="stats", stats=IDENTITY)
    rows = [seasons_and_factors(v) for v in _draws(images, cfg, n)]
    (q, qf), (k0, k0f), (k1, k1f), (k2, k2f) = np.array(rows).transpose(1, 2, 0)
    assert (q == k2).all()  # k2: the query's season, augmented
    np.testing.assert_allclose(qf, 1, atol=1e-6)  # q and k1: crop only
    np.testing.assert_allclose(k1f, 1, atol=1e-6)
    for other in (k0, k1):  # t0, t1, t2 drawn independently WITH replacement
        assert _within((other == q).mean(), 0.25, n)
    assert _within((k0 == k1).mean(), 0.25, n)
    assert all(_within((q == s).mean(), 0.25, n) for s in range(4))
    jittered = np.abs(np.concatenate([k0f, k2f]) - 1) > 1e-6
    assert _within(jittered.mean(), 0.8, 2 * n)  # ColorJitter p=0.8

    moco = ViewConfig(mode="moco", size=16, bands=("B08",), stretch="stats", stats=IDENTITY)
    rows = np.array([seasons_and_factors(v) for v in _draws(images, moco, 200)])
    assert (rows[:, 0, 0] == rows[:, 1, 0]).all()  # two views of one season
    assert _within((np.abs(rows[:, :, 1] - 1) > 1e-6).mean(), 0.8, 400)  # both augmented
    tp = ViewConfig(mode="moco_tp", size=16, bands=("B08",), stretch="stats", stats=IDENTITY)
    rows = np.array([seasons_and_factors(v) for v in _draws(images, tp, 400)])
    assert _within((rows[:, 0, 0] == rows[:, 1, 0]).mean(), 0.25, 400)
    assert _within((np.abs(rows[:, :, 1] - 1) > 1e-6).mean(), 0.8, 800)


def test_flip_and_grayscale_probabilities():
    # every band rises from left to right, and the bands differ: a flipped view falls, a grey one
    # has three equal bands (no other augmentation makes them equal)
    x = torch.linspace(0, 1, 48)
    img = torch.stack([0.2 + 0.6 * x, 0.1 + 0.3 * x, 0.05 + 0.1 * x])[:, None, :].expand(3, 48, 48)
    images = img[None].contiguous()
    cfg = ViewConfig(mode="seco", size=24, bands=RGB, stretch="stats", stats=IDENTITY)
    n = 300
    flips, greys = np.zeros((n, 4), bool), np.zeros((n, 4), bool)
    for i, views in enumerate(_draws(images, cfg, n)):
        for j, v in enumerate(views):
            s = v.sum(0)
            flips[i, j] = float(s[:, 12:].mean() - s[:, :12].mean()) < 0
            greys[i, j] = float((v - v[0]).abs().max()) < 1e-5
    assert not flips[:, [0, 2]].any() and not greys[:, [0, 2]].any()  # q, k1: crop only
    assert _within(flips[:, [1, 3]].mean(), 0.5, 2 * n)
    assert _within(greys[:, [1, 3]].mean(), 0.2, 2 * n)


def test_colour_operations_equal_torchvision():
    torch.manual_seed(0)
    x = torch.rand(3, 30, 40)
    x[:, :4] = 0.3  # grey pixels
    x[1, 8:10] = x[0, 8:10]  # ties between channels
    for f in (-0.1, -0.02, 0.0, 0.07, 0.5):
        torch.testing.assert_close(adjust_hue(x, f), F.adjust_hue(x, f), atol=3e-6, rtol=0)
    for sigma in (0.1, 0.8, 2.0):
        k = 2 * int(np.ceil(3 * sigma)) + 1
        torch.testing.assert_close(gaussian_blur(x, sigma), F.gaussian_blur(x, [k, k], [sigma, sigma]))


# -- the SeCo stretch ---------------------------------------------------------------------------------

def test_seco_stretch_matches_the_reference_formula(shards):
    sample = next(iter(ShardReader(shards, split=Split())))
    images = to_images(sample, ViewConfig())
    assert images.shape == (4, 3, 264, 264) and images.dtype == torch.float32
    arr = sample["json"]["arrays"]["10m"]
    quantiles = {"B02": (3, 88), "B03": (2, 103), "B04": (0, 129)}
    rng = np.random.default_rng(0)
    for c, band in enumerate(RGB):
        dn = sample["10m"][:, arr["bands"].index(band)]
        s, i, j = rng.integers(4, size=50), rng.integers(264, size=50), rng.integers(264, size=50)
        v8 = np.floor(np.clip(dn[s, i, j] * arr["scale"], 0, 1) * 255)
        lo, hi = quantiles[band]
        want = np.clip((v8 - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8) / 255.0
        np.testing.assert_array_equal(images[s, c, i, j].numpy(), want.astype(np.float32))

    # imported SeCo uint8 (scale 1/255) is already in 8-bit units; ImageNet mean/std come last
    stored = np.array([33, 66, 129], np.uint8)  # floor(33 * (1/255) * 255) would give 32
    pixels = np.broadcast_to(stored[None, :, None, None], (1, 3, 8, 8)).copy()
    arrays = {"10m": (["B02", "B03", "B04"], pixels, 1 / 255)}
    sample = _decoded(_sample("0000001", arrays))
    images = to_images(sample, ViewConfig())
    want = {b: int(np.clip((v - quantiles[b][0]) / (quantiles[b][1] - quantiles[b][0]) * 255, 0, 255)) / 255
            for b, v in zip(["B02", "B03", "B04"], stored)}
    np.testing.assert_array_equal(images[0, :, 0, 0].numpy(), np.float32([want[b] for b in RGB]))
    q = make_views(images, ViewConfig(size=8), torch.Generator().manual_seed(0))[0]
    imagenet = {"B04": (0.485, 0.229), "B03": (0.456, 0.224), "B02": (0.406, 0.225)}
    np.testing.assert_allclose(q[:, 3, 3].numpy(), [(want[b] - imagenet[b][0]) / imagenet[b][1] for b in RGB],
                               atol=1e-5)

    with pytest.raises(SkipSample, match="B08") as e:
        to_images(sample, ViewConfig(bands=("B08",), stretch="stats", stats=IDENTITY))
    assert e.value.reason == "missing_band"
    with pytest.raises(UsageError, match="B04 only"):
        ViewConfig(bands=("B04", "B08"))  # the seco stretch has quantiles for RGB only
    with pytest.raises(UsageError, match="B08"):
        ViewConfig(bands=("B08",), stretch="stats", stats={"B04": {"mean": 0, "std": 1}})


def test_coarse_bands_go_to_the_finest_grid(shards):
    sample = next(iter(ShardReader(shards, split=Split())))
    stats = {b: {"mean": 0.0, "std": 1.0} for b in ("B04", "B11", "B01")}
    images = to_images(sample, ViewConfig(bands=("B04", "B11", "B01"), stretch="stats", stats=stats))
    assert images.shape == (4, 3, 264, 264)
    b11 = sample["20m"][:, sample["json"]["arrays"]["20m"]["bands"].index("B11")] * 1e-4
    want = torch.nn.functional.interpolate(torch.tensor(b11, dtype=torch.float32)[:, None], size=(264, 264),
                                           mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(images[:, 1], want)
    views = make_views(images, ViewConfig(mode="seco", size=32, bands=("B04", "B11", "B01"), stretch="stats",
                                          stats=stats), torch.Generator().manual_seed(1))
    assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 4


def test_views_are_a_function_of_the_generator(shards):
    sample = next(iter(ShardReader(shards, split=Split())))
    for mode in ("seco", "moco", "moco_tp"):
        cfg = ViewConfig(mode=mode, size=32)
        images = to_images(sample, cfg)
        a, b, c = (make_views(images, cfg, torch.Generator().manual_seed(s)) for s in (5, 5, 6))
        assert len(a) == cfg.num_views and all(v.shape == (3, 32, 32) and v.dtype == torch.float32 for v in a)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert not any(torch.equal(x, y) for x, y in zip(a, c))


# -- the stream ---------------------------------------------------------------------------------------

def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b) -> bool:
    return torch.equal(a[0], b[0]) and all(torch.equal(x, y) for x, y in zip(a[1], b[1]))


def test_stream_is_infinite_split_and_resumes_exactly(shards, monkeypatch):
    cfg = ViewConfig(size=16)
    assert dataset_size(shards) == 5 == dataset_size(sorted(str(p) for p in shards.glob("*.tar")))
    opened = []
    real = data.iter_shard
    monkeypatch.setattr(data, "iter_shard", lambda url, **kw: (opened.append(url), real(url, **kw))[1])

    stream = SeasonalViews(shards, cfg, seed=3, rank=0, world_size=2)
    full = _take(iter(stream), 13)  # > 5 samples
    assert len(full) == 13 and full[0][0].shape == (3, 16, 16) and len(full[0][1]) == 3
    first = next(iter_shard(stream.shard_of(0, 0)))  # a pure function of (seed, rank, worker, sample)
    views = make_views(to_images(first, cfg), cfg, stream.generator(0, 0))
    assert _same(full[0], (views[0], views[1:]))
    read_full = len(opened)
    opened.clear()
    tail = _take(iter(SeasonalViews(shards, cfg, seed=3, rank=0, world_size=2, start=9)), 4)
    assert all(_same(x, y) for x, y in zip(full[9:], tail))
    assert len(opened) < read_full  # whole shards before the resume point were skipped unread

    # each (rank, worker) has its own shard draws and its own views
    ranks = [SeasonalViews(shards, cfg, seed=3, rank=r, world_size=2) for r in (0, 1)]
    draws = {(r, w): [ds.shard_of(w, d) for d in range(12)] for r, ds in enumerate(ranks) for w in (0, 1)}
    assert len({tuple(v) for v in draws.values()}) == 4
    assert all(len(set(v)) == 3 for v in draws.values())  # with replacement, every shard comes up
    other = _take(iter(ranks[1]), 3)
    assert not any(torch.equal(x[0], y[0]) for x, y in zip(full, other))
    other_seed = _take(iter(SeasonalViews(shards, cfg, seed=4, rank=0, world_size=2)), 3)
    assert not any(torch.equal(x[0], y[0]) for x, y in zip(full, other_seed))
    with pytest.raises(UsageError):
        SeasonalViews(shards, cfg, rank=2, world_size=2)


def test_loader_resumes_at_a_step(shards):
    cfg = ViewConfig(size=16)
    for workers in (0, 2):
        fresh = make_loader(shards, cfg, batch_size=2, workers=workers, seed=1, rank=1, world_size=2)
        batches = _take(iter(fresh), 7)
        q, keys = batches[0]
        assert q.shape == (2, 3, 16, 16) and [k.shape for k in keys] == [(2, 3, 16, 16)] * 3
        if workers:  # consecutive batches come from the two workers' different streams
            assert not torch.equal(batches[0][0], batches[1][0])
        resumed = _take(iter(make_loader(shards, cfg, batch_size=2, workers=workers, seed=1, rank=1,
                                         world_size=2, start_step=3)), 4)
        assert all(_same(x, y) for x, y in zip(batches[3:], resumed))
        del fresh
    # packed batches (views made on the device): the same resume point, the same packed samples
    packed = [_take(iter(make_loader(shards, cfg, batch_size=2, workers=0, seed=1, rank=1, world_size=2,
                                     start_step=s, augment_on="device")), n) for s, n in ((0, 7), (3, 4))]
    assert packed[0][0]["x0"].dtype == torch.uint8 and packed[0][0]["params"].shape[:2] == (2, 4)
    assert all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
               for x, y in zip(packed[0][3:], packed[1]))


def test_unusable_samples_are_skipped_and_counted(tmp_path):
    rgb = np.full((2, 3, 20, 20), 800, np.uint16)
    with open(tmp_path / "mixed-000000.tar", "wb") as f:
        tar = TarShard(f)
        tar.write(_sample("0000001", {"10m": (["B02", "B03", "B04"], rgb, 1e-4)}))
        tar.write(_sample("0000002", {"10m": (["B02", "B03", "B08"], rgb, 1e-4)}))  # no B04
        tar.write(_sample("0000003", {"10m": (["B02", "B03", "B04"], rgb[:0], 1e-4)}))  # no season
        tar.close()
    ds = SeasonalViews(tmp_path / "mixed-000000.tar", ViewConfig(size=8), rank=0, world_size=1)  # a tar, no manifest
    assert len(_take(iter(ds), 3)) == 3
    assert ds.skipped["missing_band"] >= 2 and ds.skipped["no_season"] >= 2


# -- statistics ---------------------------------------------------------------------------------------

def test_stats_match_numpy(shards):
    stats = compute_stats(shards, bands=["B4", "B11"], max_samples=100)
    assert set(stats) == {"B04", "B11"}
    for band, group in (("B04", "10m"), ("B11", "20m")):
        x = np.concatenate([s[group][:, s["json"]["arrays"][group]["bands"].index(band)].ravel()
                            * s["json"]["arrays"][group]["scale"] for s in ShardReader(shards, split=Split())])
        got = stats[band]
        assert got["pixels"] == x.size and got["samples"] == 5
        np.testing.assert_allclose([got["mean"], got["std"], got["q02"], got["q98"]],
                                   [x.mean(), x.std(), np.quantile(x, 0.02), np.quantile(x, 0.98)], rtol=1e-9)
    two = compute_stats(shards, bands=["B04"], max_samples=2, seed=1)
    assert two["B04"]["samples"] == 2 and two["B04"]["pixels"] == 2 * 4 * 264 * 264
    cfg = ViewConfig(bands=("B04", "B11"), stretch="stats", stats=json.loads(json.dumps(stats)))
    sample = next(iter_shard(sorted(str(p) for p in shards.glob("*.tar"))[0]))
    views = make_views(to_images(sample, cfg), cfg, torch.Generator().manual_seed(0))
    assert all(abs(float(v.mean())) < 3 for v in views)
