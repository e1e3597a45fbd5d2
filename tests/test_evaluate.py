"""Downstream evaluation: metrics, the EuroSAT reader on the real files, the protocols, reports, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import Dataset

from seco_train.evaluate import metrics, protocols
from seco_train.evaluate.eurosat import CLASSES, DatasetNotFoundError, EuroSAT
from seco_train.evaluate.evaluator import train_subset
from seco_train.evaluate.protocols import DEFAULTS, FrozenBackboneChanged, backbone_checksum
from seco_train.evaluate.report import markdown_table
from seco_train.views import IMAGENET


@pytest.fixture(scope="module")
def eurosat(shared) -> Path:
    return shared / "data" / "eurosat-rgb"


@pytest.fixture(scope="module")
def slice_splits(eurosat, tmp_path_factory) -> dict[str, Path]:
    """Small split files from the real lists: 20 train / 3 val / 6 test images per class."""
    out = tmp_path_factory.mktemp("eurosat-splits")
    files = {}
    for split, n in (("train", 20), ("val", 3), ("test", 6)):
        lines = (eurosat / "splits" / f"{split}.txt").read_text().split()
        picked = [x for c in CLASSES for x in [ln for ln in lines if ln.split("/")[0] == c][:n]]
        files[split] = out / f"{split}.txt"
        files[split].write_text("\n".join(picked) + "\n")
    return files


# -- metrics --------------------------------------------------------------------------------------------

def test_metrics_match_scikit_learn():
    from sklearn import metrics as sk

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    y[y == 4] = 3  # class 4 absent from the targets: its accuracy is undefined (NaN), not 0
    assert metrics.top1(y, p) == pytest.approx(sk.accuracy_score(y, p))
    cm = metrics.confusion_matrix(y, p, 5)
    np.testing.assert_array_equal(cm, sk.confusion_matrix(y, p, labels=range(5)))
    per_class = metrics.per_class_accuracy(y, p, 5)
    np.testing.assert_allclose(per_class[:4], sk.recall_score(y, p, labels=range(4), average=None, zero_division=0))
    assert np.isnan(per_class[4])

    targets = rng.random((200, 6)) < 0.3
    targets[:, 5] = False  # a class without positives: left out of the macro mean, as scikit-learn
    scores = np.round(rng.random((200, 6)), 1)  # many tied scores
    keep = targets.any(axis=0)
    assert metrics.average_precision(targets, scores, "micro") == pytest.approx(
        sk.average_precision_score(targets.ravel(), scores.ravel()))
    assert metrics.average_precision(targets, scores, "macro") == pytest.approx(
        sk.average_precision_score(targets[:, keep], scores[:, keep], average="macro"))

    t, q = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    got = metrics.binary_scores(t, q)
    assert got["precision"] == pytest.approx(sk.precision_score(t, q))
    assert got["recall"] == pytest.approx(sk.recall_score(t, q))
    assert got["f1"] == pytest.approx(sk.f1_score(t, q))


def test_train_subset_is_stratified_without_replacement_and_seeded():
    y = np.repeat(np.arange(4), [100, 50, 30, 10])
    a = train_subset(y, 0.1, seed=3, task="multiclass")
    assert len(np.unique(a)) == len(a)
    assert np.bincount(y[a]).tolist() == [10, 5, 3, 1]
    np.testing.assert_array_equal(a, train_subset(y, 0.1, seed=3, task="multiclass"))
    assert not np.array_equal(a, train_subset(y, 0.1, seed=4, task="multiclass"))


# -- EuroSAT reader on the real files --------------------------------------------------------------------

def test_eurosat_reader_real_files(eurosat, slice_splits):
    full = EuroSAT(eurosat, "test")
    assert len(full) == 5400 and full.classes == sorted(full.classes) and len(full.classes) == 10
    lines = (eurosat / "splits" / "test.txt").read_text().split()
    assert [CLASSES[t] for t in full.targets[:50]] == [ln.split("/")[0] for ln in lines[:50]]

    ds = EuroSAT(eurosat, "train", split_file=slice_splits["train"])
    assert len(ds) == 200 and np.bincount(ds.targets).tolist() == [20] * 10
    x, label = ds[45]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and label == 2  # HerbaceousVegetation
    from PIL import Image

    raw = np.asarray(Image.open(ds.files[45]).convert("RGB")).astype(np.float32) / 255
    mean = np.array([IMAGENET[b][0] for b in ("B04", "B03", "B02")], np.float32)
    std = np.array([IMAGENET[b][1] for b in ("B04", "B03", "B02")], np.float32)
    np.testing.assert_allclose(x.numpy(), ((raw - mean) / std).transpose(2, 0, 1), atol=1e-5)
    assert EuroSAT(eurosat, "train", split_file=slice_splits["train"], size=32)[0][0].shape == (3, 32, 32)

    with pytest.raises(DatasetNotFoundError, match="split file .*nope.txt not found") as err:
        EuroSAT(eurosat, "train", split_file=eurosat / "nope.txt")
    assert "\n" not in err.value.one_line()
    with pytest.raises(DatasetNotFoundError, match="class folders not found") as err:
        EuroSAT(eurosat / "splits", "train")
    assert "EuroSAT.zip" in err.value.one_line()  # the hint names the download


# -- protocols on a synthetic benchmark -------------------------------------------------------------------

class Blobs(Dataset):
    """Two classes of 8x8 images: constant +1 or -1 plus noise (a fingerprint for the feature cache)."""

    classes = ["neg", "pos"]
    in_channels = 3

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.targets = (torch.arange(n) % 2).numpy()
        sign = torch.from_numpy(self.targets * 2.0 - 1).float().view(-1, 1, 1, 1)
        self.x = sign + 0.8 * torch.randn(n, 3, 8, 8, generator=g)
        self.fingerprint = f"blobs-{n}-{seed}"

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.targets[i])


def _pooling_backbone() -> nn.Module:
    # BatchNorm first: in train mode its running statistics would move, so eval mode is checked too
    return nn.Sequential(nn.BatchNorm2d(3), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_linear_keeps_backbone_frozen_computes_features_once_and_separates():
    protocols.clear_feature_cache()
    backbone = _pooling_backbone()
    calls = []
    backbone.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    before = backbone_checksum(backbone)
    train, test = Blobs(120, 0), Blobs(50, 1)
    cfg = DEFAULTS["linear"].__class__(**{**DEFAULTS["linear"].__dict__, "epochs": 10, "lr": 0.05, "eval_batch_size": 32})
    res = protocols.linear(backbone, train, {"test": test}, task="multiclass", num_classes=2, config=cfg)
    assert calls == [32, 32, 32, 24, 32, 18]  # one pass over train, one over test, whatever the epochs
    assert res.feature_batches == 6 and len(res.history) == 10
    assert res.frozen_check == {"before": before, "after": before, "unchanged": True}
    assert backbone_checksum(backbone) == before
    targets, scores = res.predictions["test"]
    assert scores.shape == (50, 2) and metrics.top1(targets, scores.argmax(1)) >= 0.95
    # a second protocol on the same weights and splits reuses the cached features
    protocols.knn(backbone, train, {"test": test}, task="multiclass", num_classes=2, config=cfg)
    assert len(calls) == 6


class _Drifting(nn.Module):
    """A 'backbone' that changes its own buffer on every call (what a BN in train mode would do)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        self.count += 1
        return x.mean(dim=(2, 3))


def test_frozen_check_fails_loudly_when_the_backbone_changes():
    protocols.clear_feature_cache()
    cfg = DEFAULTS["knn"]
    with pytest.raises(FrozenBackboneChanged, match="changed"):
        protocols.knn(_Drifting(), Blobs(10, 0), {"test": Blobs(4, 1)}, task="multiclass", num_classes=2, config=cfg)


class Points(Dataset):
    """Feature vectors as 1x1 'images' of D channels, with labels in 0..C-1."""

    def __init__(self, feats, labels):
        self.x, self.targets = torch.as_tensor(feats).float()[:, :, None, None], np.asarray(labels)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.targets[i])


@pytest.mark.parametrize("k,classes", [(20, 5), (4, 2)])
def test_knn_matches_independent_numpy(k, classes):
    rng = np.random.default_rng(k)
    bank, labels = rng.normal(size=(300, 16)), rng.integers(0, classes, 300)
    query, qlabels = rng.normal(size=(80, 16)), rng.integers(0, classes, 80)
    cfg = DEFAULTS["knn"].__class__(**{**DEFAULTS["knn"].__dict__, "k": k})
    res = protocols.knn(nn.Flatten(), Points(bank, labels), {"test": Points(query, qlabels)},
                        task="multiclass", num_classes=classes, config=cfg)
    _, scores = res.predictions["test"]

    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    sim = unit(query) @ unit(bank).T
    ties = 0
    for i in range(len(query)):
        nearest = np.argsort(-sim[i])[:k]
        votes = np.bincount(labels[nearest], minlength=classes)
        ties += int((votes == votes.max()).sum() > 1)
        expected = int(np.flatnonzero(votes == votes.max())[0])  # tie: the smallest class index
        assert scores[i].argmax() == expected
        np.testing.assert_allclose(scores[i], votes / k, atol=1e-6)
    if k == 4:
        assert ties > 0  # the tie rule was exercised


def test_finetune_reduces_the_loss_and_is_seeded():
    def run():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        cfg = DEFAULTS["finetune"].__class__(**{**DEFAULTS["finetune"].__dict__, "epochs": 4, "batch_size": 16,
                                                 "lr": 1e-2, "optimizer": "adam", "warmup_epochs": 0.0})
        return protocols.finetune(net, Blobs(48, 0), {"test": Blobs(16, 1)}, task="multiclass", num_classes=2,
                                  config=cfg)

    a = run()
    losses = [h["loss"] for h in a.history]
    assert losses[-1] < 0.7 * losses[0]
    np.testing.assert_array_equal(a.predictions["test"][1], run().predictions["test"][1])


# -- CLI and reports ----------------------------------------------------------------------------------------

def test_cli_eval_and_report(eurosat, slice_splits, tmp_path):
    from seco_cli.train import main

    runner = CliRunner()
    args = ["eval", "eurosat", "--weights", "random", "--root", str(eurosat), "--device", "cpu"]
    args += [f"--split-file={s}={p}" for s, p in slice_splits.items()]
    knn_json, lin_json = tmp_path / "knn.json", tmp_path / "linear.json"
    r = runner.invoke(main, [*args, "--protocol", "knn", "--out", str(knn_json)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, [*args, "--protocol", "linear", "--epochs", "2", "--train-frac", "0.5",
                             "--out", str(lin_json)])
    assert r.exit_code == 0, r.output
    assert "frozen backbone unchanged" in r.output

    rep = json.loads(lin_json.read_text())
    assert (rep["benchmark"], rep["protocol"], rep["seed"], rep["weights"]["source"]) == ("eurosat", "linear", 0, "random")
    train_file = rep["splits"]["train"]["files"][0]
    assert train_file["sha256"] == hashlib.sha256(slice_splits["train"].read_bytes()).hexdigest()
    assert rep["splits"]["train"]["n_used"] == 100 and rep["splits"]["test"]["n"] == 60
    test = rep["metrics"]["test"]
    cm = np.array(test["confusion_matrix"])
    assert cm.sum() == 60 and test["top1"] == pytest.approx(np.trace(cm) / 60)  # whole split, no drop_last
    assert list(test["per_class_accuracy"]) == list(CLASSES)
    assert rep["frozen_backbone"]["unchanged"] and rep["frozen_backbone"]["before"] == rep["frozen_backbone"]["after"]
    assert {"torch", "torchvision", "numpy", "python", "seco"} <= set(rep["software"])
    assert rep["config"]["epochs"] == 2 and len(rep["history"]) == 2 and rep["seconds"] > 0
    assert (tmp_path / rep["figures"]["test"]).stat().st_size > 1000

    # finetune on the same real slice: the backbone trains (its final checksum differs from the frozen one)
    ft_json = tmp_path / "finetune.json"
    r = runner.invoke(main, [*args, "--protocol", "finetune", "--epochs", "1", "--batch-size", "20",
                             "--out", str(ft_json)])
    assert r.exit_code == 0, r.output
    ft = json.loads(ft_json.read_text())
    cm = np.array(ft["metrics"]["test"]["confusion_matrix"])
    assert ft["protocol"] == "finetune" and ft["frozen_backbone"] is None and cm.sum() == 60
    assert ft["metrics"]["test"]["top1"] == pytest.approx(np.trace(cm) / 60)
    assert ft["backbone_sha256_final"] != rep["frozen_backbone"]["before"]

    r = runner.invoke(main, [*args, "--protocol", "knn", "--out", str(knn_json)])
    assert r.exit_code != 0 and "already exists" in r.output and "Traceback" not in r.output
    r = runner.invoke(main, [*args[:-2], "--split-file", f"test={tmp_path / 'missing.txt'}", "--protocol", "knn",
                             "--out", str(tmp_path / "x.json")])
    assert r.exit_code == 4 and "missing.txt not found" in r.output and "Traceback" not in r.output

    table = tmp_path / "results.md"
    r = runner.invoke(main, ["report", str(knn_json), str(lin_json), "--out", str(table)])
    assert r.exit_code == 0, r.output
    rows = [ln for ln in table.read_text().splitlines() if ln.startswith("| eurosat")]
    knn_test = json.loads(knn_json.read_text())["metrics"]["test"]
    lo, hi = knn_test["ci95"]["top1"]
    assert lo <= knn_test["top1"] <= hi
    cell = f"| knn | default | random | resnet18 | top1 (test) | {100 * knn_test['top1']:.2f} [{100 * lo:.2f}, {100 * hi:.2f}] |"
    assert len(rows) == 2 and any(cell in r for r in rows)
    assert markdown_table([("a", rep)]).count("\n") == 3


def test_eurosat_all_bands_tif_layout_and_band_order(tmp_path):
    """The 13-band release (generated files in its layout): B8A is the files' 13th band and comes back
    9th; values are (DN * 1e-4 - mean) / std per band with the pre-training statistics."""
    import rasterio

    from seco_train.evaluate.eurosat import BANDS_ALL, TIF_BANDS, TIF_DIR

    rng = np.random.default_rng(0)
    names = []
    for c in CLASSES[:2]:
        folder = tmp_path / TIF_DIR / c
        folder.mkdir(parents=True)
        for n in (1, 2):
            dn = (1000 * (np.arange(13) + 1)[:, None, None] + rng.integers(0, 50, (13, 64, 64))).astype(np.uint16)
            with rasterio.open(folder / f"{c}_{n}.tif", "w", driver="GTiff", width=64, height=64, count=13,
                               dtype="uint16", crs="EPSG:32631",
                               transform=rasterio.Affine(10, 0, 500000, 0, -10, 5000000)) as dst:
                dst.write(dn)
            names.append((f"{c}/{c}_{n}.jpg", dn))  # split lists name the .jpg; the .tif is read
    split = tmp_path / "train.txt"
    split.write_text("".join(f"{n}\n" for n, _ in names))
    stats = {"bands": {b: {"mean": 0.1 * i, "std": 0.5 + i} for i, b in enumerate(TIF_BANDS)}}
    ds = EuroSAT(tmp_path, "train", bands="all", split_file=split, stats=stats)
    assert len(ds) == 4 and ds.in_channels == 13 and list(ds.targets) == [0, 0, 1, 1]
    x, y = ds[2]
    dn = names[2][1]
    for c, band in enumerate(BANDS_ALL):
        s = stats["bands"][band]
        want = (dn[TIF_BANDS.index(band)].astype(np.float32) * 1e-4 - s["mean"]) / s["std"]
        np.testing.assert_allclose(x[c].numpy(), want, rtol=1e-5, atol=1e-5)
    b8a = stats["bands"]["B8A"]  # the 13th band's DN (~13,000), not the 9th's (~9,000)
    assert BANDS_ALL[8] == "B8A" and x[8].numpy().mean() == pytest.approx((1.3025 - b8a["mean"]) / b8a["std"], abs=1e-3)
    with pytest.raises(DatasetNotFoundError, match="statistics"):
        EuroSAT(tmp_path, "train", bands="all", split_file=split)
