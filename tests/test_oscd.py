"""OSCD reader on the real cities, the Siamese change-detection model, and metrics against scikit-learn."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from seco_train.evaluate import oscd
from seco_train.evaluate.changedetection import (ChangeMetrics, SiameseChangeNet, save_overlay,
                                                 train_change_detection)
from seco_train.model import build_backbone

SMALL = "bercy"  # the smallest labelled city (395 x 360 px)


@pytest.fixture(scope="module")
def root(shared) -> Path:
    return shared / "data" / "oscd"


@pytest.fixture(scope="module")
def bercy_eval(root):
    return oscd.OSCD(root, "test", cities=[SMALL])


def test_split_is_fixed_and_disjoint():
    assert len(oscd.LABELLED_CITIES) == 14
    assert set(oscd.TRAIN_CITIES) | set(oscd.TEST_CITIES) == set(oscd.LABELLED_CITIES)
    assert not set(oscd.TRAIN_CITIES) & set(oscd.TEST_CITIES)
    assert len(oscd.TEST_CITIES) == 4
    assert all(c in oscd.SPLIT_NOTE for c in oscd.LABELLED_CITIES)


def test_reads_both_dates_and_labels_of_a_city(root, bercy_eval):
    city = oscd.load_city(root, SMALL)
    assert city["img1"].shape == city["img2"].shape == (3, 395, 360) and city["img1"].dtype == np.uint16
    assert city["cropped_from"] is None
    # the two distributed codings of the same change map agree: -cm.tif (1/2) and cm.png (0/255)
    folder = root / oscd.LABELS_DIR / SMALL / "cm"
    tif, png = oscd.read_change_map(folder / f"{SMALL}-cm.tif"), oscd.read_change_map(folder / "cm.png")
    assert np.array_equal(tif, png) and tif.sum() == 1046
    assert np.array_equal(city["change"], tif)
    # evaluation items are the whole city, RGB normalised like pre-training
    x1, x2, mask = bercy_eval[0]
    assert len(bercy_eval) == 1 and x1.shape == x2.shape == (3, 395, 360) and mask.shape == (395, 360)
    assert mask.sum() == 1046
    assert torch.equal(x1[0], oscd.seco_rgb_lut("B04")[torch.from_numpy(city["img1"][0].astype(np.int64))])
    assert bercy_eval.display[0].shape == (395, 360, 3)


def test_size_mismatch_cities_are_cropped(root):
    city = oscd.load_city(root, "hongkong")
    assert city["cropped_from"] == ((695, 540), (693, 538))
    assert city["img1"].shape == city["img2"].shape == (3, 693, 538) and city["change"].shape == (693, 538)
    full = oscd.read_change_map(oscd.change_map_path(root, "hongkong"))
    assert np.array_equal(city["change"], full[:693, :538])


def test_change_map_codings(tmp_path):
    rng = np.random.default_rng(0)
    change = rng.random((20, 30)) < 0.3
    for name, (no, yes) in {"01": (0, 1), "0255": (0, 255), "12": (1, 2)}.items():
        Image.fromarray(np.where(change, yes, no).astype(np.uint8)).save(tmp_path / f"{name}.png")
        assert np.array_equal(oscd.read_change_map(tmp_path / f"{name}.png"), change), name
    rgba = np.repeat(np.where(change, 255, 0).astype(np.uint8)[..., None], 4, axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(oscd.read_change_map(tmp_path / "rgba.png"), change)
    bad = {"mixed": [0, 1, 2], "ones": [1, 1, 1], "grey": [0, 128, 255]}
    for name, values in bad.items():
        Image.fromarray(np.array([values], dtype=np.uint8)).save(tmp_path / f"{name}.png")
        with pytest.raises(oscd.DatasetFormatError, match="coding"):
            oscd.read_change_map(tmp_path / f"{name}.png")


def test_training_tiles_are_seeded_crops(root):
    ds = oscd.OSCD(root, "train", cities=[SMALL], seed=1)
    assert len(ds) == 5 * 4  # a 96 px grid over 395 x 360
    x1, x2, m = ds[7]
    assert x1.shape == x2.shape == (3, 96, 96) and m.shape == (96, 96)
    assert torch.equal(ds[7][0], x1)
    ds.set_epoch(1)
    assert not torch.equal(ds[7][0], x1)
    # a tile is a (possibly flipped) window of the full image at the same place in both dates and the mask
    full1, full2, mask = ds.images1[0], ds.images2[0], ds.masks[0]
    found = []
    for flip in ([], [-1], [-2], [-1, -2]):
        t1, t2, tm = (x.flip(flip) for x in (x1, x2, m)) if flip else (x1, x2, m)
        corner = (full1[:, :-95, :-95] == t1[:, :1, :1]).all(0)  # candidate top-left corners
        for i, j in corner.nonzero().tolist():
            if torch.equal(full1[:, i:i + 96, j:j + 96], t1):
                found.append((i, j))
                assert torch.equal(full2[:, i:i + 96, j:j + 96], t2) and torch.equal(mask[i:i + 96, j:j + 96], tm)
    assert found, "the tile is not a window of the city image"


def _model(name="resnet18"):
    torch.manual_seed(0)
    encoder, _ = build_backbone(name, 3)
    return SiameseChangeNet(encoder)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_model_forward_on_a_tile(name):
    model = _model(name)
    x1, x2 = torch.randn(2, 3, 96, 96), torch.randn(2, 3, 96, 96)
    out = model(x1, x2)
    assert out.shape == (2, 1, 96, 96)
    assert torch.equal(model(x1, x1), model(x1, x1))  # a pair of identical dates has zero differences
    assert model(torch.randn(1, 3, 100, 70), torch.randn(1, 3, 100, 70)).shape == (1, 1, 100, 70)


def test_frozen_encoder_training_reduces_loss_and_scores_all_pixels(root, bercy_eval, tmp_path):
    model = _model()
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    train = oscd.OSCD(root, "train", cities=[SMALL], seed=0)
    subset = Subset(train, range(8))
    batch = [torch.stack(t) for t in zip(*(subset[i] for i in range(8)))]

    def loss_on_batch():
        model.train()
        with torch.no_grad():
            logits = model(batch[0], batch[1])[:, 0]
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, batch[2]).item()

    start = loss_on_batch()
    steps = []
    result = train_change_detection(model, subset, bercy_eval, epochs=1, batch_size=4, seed=0, device="cpu",
                                    progress=steps.append, overlay_dir=tmp_path / "overlays")
    assert [(s.stage, s.done, s.info["epoch"]) for s in steps] == [("train", 1, 1), ("train", 2, 1)]
    assert loss_on_batch() < start

    # the encoder is frozen: no gradients, no change of weights or BN statistics, BN in eval mode
    model.train()
    assert all(p.grad is None and not p.requires_grad for p in model.encoder.parameters())
    assert not any(m.training for m in model.encoder.modules())
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
    assert any(p.grad is not None for p in model.decoder.parameters())

    # test metrics over every pixel of the test city; overlay written
    assert result["tp"] + result["fp"] + result["fn"] + result["tn"] == 395 * 360
    assert result["tp"] + result["fn"] == 1046
    assert set(result["per_city"]) == {SMALL} and result["split_note"].startswith("OSCD")
    png = np.asarray(Image.open(tmp_path / "overlays" / f"{SMALL}.png"))
    assert png.shape == (395, 360, 3)


def test_change_metrics_match_sklearn():
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(0)
    metrics, preds, targets = ChangeMetrics(), [], []
    for shape in ((37, 41), (64, 64), (10, 90)):  # images of different sizes, pooled over pixels
        t = rng.random(shape) < 0.1
        p = np.where(rng.random(shape) < 0.7, t, rng.random(shape) < 0.2)
        metrics.update(torch.from_numpy(p), torch.from_numpy(t))
        preds.append(p.ravel())
        targets.append(t.ravel())
    got = metrics.compute()
    precision, recall, f1, _ = precision_recall_fscore_support(np.concatenate(targets), np.concatenate(preds),
                                                               average="binary", zero_division=0)
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((precision, recall, f1), abs=1e-12)
    empty = ChangeMetrics()
    empty.update(np.zeros((4, 4), bool), np.zeros((4, 4), bool))
    assert (empty.compute()["f1"], empty.compute()["tn"]) == (0.0, 16)


def test_overlay_colours(tmp_path):
    rgb = np.full((4, 5, 3), 100, np.uint8)
    pred = np.zeros((4, 5), bool)
    target = np.zeros((4, 5), bool)
    pred[0, 0] = target[0, 0] = True  # hit
    pred[1, 1] = True  # false alarm
    target[2, 2] = True  # missed
    out = np.asarray(Image.open(save_overlay(tmp_path / "o.png", rgb, pred, target)))
    assert tuple(out[0, 0]) == tuple(out[1, 1]) == (255, 0, 0)
    assert tuple(out[2, 2]) == (0, 255, 255) and tuple(out[3, 3]) == (100, 100, 100)


def test_the_evaluator_runs_oscd_from_the_registry(shared, tmp_path):
    """Registry entry -> evaluator (custom runner: frozen encoder + decoder) -> pixel F1 in the report."""
    from seco_train.evaluate.evaluator import EvalConfig, evaluate
    from seco_train.evaluate.registry import get

    bench = get("oscd")
    assert (bench.task, bench.metric, bench.splits) == ("change", "f1", ("train", "test"))
    (tmp_path / "train.txt").write_text("bercy\n")
    (tmp_path / "test.txt").write_text("bercy\n")
    cfg = EvalConfig(benchmark="oscd", weights="random", root=str(shared / "data" / "oscd"), epochs=1, batch_size=8,
                     split_files=(("train", str(tmp_path / "train.txt")), ("test", str(tmp_path / "test.txt"))))
    report = evaluate(cfg)
    m = report["metrics"]["test"]
    assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == 395 * 360  # every pixel of the test city
    precision = m["tp"] / (m["tp"] + m["fp"]) if m["tp"] + m["fp"] else 0.0
    recall = m["tp"] / (m["tp"] + m["fn"]) if m["tp"] + m["fn"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    assert m["f1"] == pytest.approx(f1) and m["precision"] == pytest.approx(precision)
    assert "bercy" in m["split_note"] or "bercy" in json.dumps(m["per_city"])


def test_the_reference_preset_runs_oscd_on_tiles_with_intervals(shared, tmp_path):
    """--preset reference: conv1 level 0, the reference decoder, encoder BN in train mode, Adam with weight
    decay and ExponentialLR, grid tiles; F1 over every pixel with a bootstrap over 96 px cells."""
    from seco_train.evaluate import write_report
    from seco_train.evaluate.evaluator import EvalConfig, evaluate
    from seco_train.evaluate.report import load_predictions

    (tmp_path / "train.txt").write_text("bercy\n")
    (tmp_path / "test.txt").write_text("bercy\n")
    cfg = EvalConfig(benchmark="oscd", weights="random", root=str(shared / "data" / "oscd"), epochs=2, batch_size=8,
                     preset="reference", resamples=200,
                     split_files=(("train", str(tmp_path / "train.txt")), ("test", str(tmp_path / "test.txt"))))
    report = evaluate(cfg)
    c = report["config"]
    assert (c["weight_decay"], c["schedule"], c["gamma"], c["backbone_mode"], c["seed"]) == \
        (1e-4, "exponential", 0.95, "train", 42)
    assert report["recipe"]["model"] == {"level0": "conv", "decoder": "reference"}
    m = report["metrics"]["test"]
    assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == 395 * 360
    lo, hi = m["ci95"]["f1"]
    assert lo <= m["f1"] <= hi and report["bootstrap"]["unit"].startswith("96 px")
    path = write_report(report, tmp_path / "oscd.json")
    cells = load_predictions(path, "test")
    assert len(cells["ids"]) == 5 * 4 and cells["scores"].sum(axis=0).tolist() == [m["tp"], m["fp"], m["fn"], m["tn"]]
