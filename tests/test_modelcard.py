"""seco-train export: model card + STAC item (MLM) that validate offline, and a round trip through
load_backbone to identical features on real EuroSAT images; the weights load into torchvision and timm."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner
from torch import nn

from seco_data.export.webdataset import MANIFEST
from seco_train.config import RunConfig
from seco_train.model import SeasonalContrast
from seco_train.modelcard import validate_item
from seco_train.transform import BackboneTransform
from seco_train.weights import load_backbone


def _randomised(net: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                v.copy_(v + (0.1 * torch.randn(v.shape, generator=g)).abs() if "running_var" in k
                        else v + 0.1 * torch.randn(v.shape, generator=g))
    return net


@pytest.fixture(scope="module")
def shards(demo_catalog, tmp_path_factory):
    from seco_data.export.webdataset import ShardOptions, export_webdataset

    out = tmp_path_factory.mktemp("card") / "shards"
    export_webdataset(demo_catalog, out, options=ShardOptions(maxcount=2, bands=("B02", "B03", "B04")))
    return out


@pytest.fixture(scope="module")
def run(shards, shared, tmp_path_factory):
    """A run folder: a training checkpoint (non-trivial query weights and BN statistics, 64 px crops) and a
    real evaluation report (k-NN on a slice of EuroSAT, with its predictions) in eval/."""
    from seco_train.evaluate import EvalConfig, evaluate, write_report
    from seco_train.evaluate.eurosat import CLASSES

    folder = tmp_path_factory.mktemp("card") / "run"
    folder.mkdir()
    torch.manual_seed(0)
    model = SeasonalContrast(mode="seco", queue_size=8, dim=8)
    _randomised(model.encoder_q, 1)
    cfg = RunConfig().to_dict()
    cfg["data"].update(shards=str(shards), size=64)
    torch.save({"model": model.state_dict(), "config": cfg, "step": 40,
                "software": {"name": "seco", "torch": torch.__version__}}, folder / "checkpoint.pt")
    lines = (shared / "data" / "eurosat-rgb" / "splits" / "train.txt").read_text().split()
    splits = []
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        picked = [x for c in CLASSES for x in [ln for ln in lines if ln.split("/")[0] == c][n * 2:n * 3]]
        path = folder / f"{split}.txt"
        path.write_text("\n".join(picked) + "\n")
        splits.append((split, str(path)))
    report = evaluate(EvalConfig("eurosat", weights=str(folder), protocol="knn", k=3, resamples=100,
                                 root=str(shared / "data" / "eurosat-rgb"), split_files=tuple(splits)))
    write_report(report, folder / "eval" / "eurosat-knn.json")
    return folder, model


def test_export_writes_a_card_and_an_item_that_validate(run, shared, tmp_path):
    from seco_cli.train import main

    folder, model = run
    out = tmp_path / "pub" / "seco_r18.pth"
    r = CliRunner().invoke(main, ["export", str(folder), "--out", str(out), "--schemas", str(shared / "stac-schemas")])
    assert r.exit_code == 0, r.output
    assert "(validated)" in r.output and "1 evaluation report(s)" in r.output
    item_file, card_file = out.with_name("seco_r18.item.json"), out.with_name("seco_r18.md")
    item = json.loads(item_file.read_text())
    assert list(validate_item(item, shared / "stac-schemas")) == []
    p = item["properties"]
    assert p["mlm:input"][0]["bands"] == ["B04", "B03", "B02"] and p["mlm:input"][0]["input"]["shape"] == [-1, 3, 64, 64]
    assert p["mlm:output"][0]["result"]["shape"] == [-1, 512]
    assert p["seco:transform"]["stretch"] == "seco" and p["seco:transform"]["size"] == 64
    pre = p["seco:pretraining"]
    shard_manifest = json.loads((Path(pre["shards"]) / MANIFEST).read_text())

    assert pre["fingerprint"] == hashlib.sha256("\n".join(sorted(s["sha256"] for s in shard_manifest["shardlist"]))
                                                .encode()).hexdigest()
    assert pre["samples"] == 5 and pre["recipe"]["name"] == "demo" and pre["steps"] == 40
    assert item["geometry"]["type"] == "Polygon" and p["start_datetime"] < p["end_datetime"]
    assert p["mlm:hyperparameters"]["optim.lr"] == 0.03 and p["mlm:hyperparameters"]["data.size"] == 64
    weights = item["assets"]["weights"]
    assert weights["file:checksum"] == "1220" + hashlib.sha256(out.read_bytes()).hexdigest()
    ev = p["seco:evaluations"][0]
    rep = json.loads((folder / "eval" / "eurosat-knn.json").read_text())
    assert (ev["benchmark"], ev["protocol"], ev["preset"], ev["split"]) == ("eurosat", "knn", "default", "test")
    assert ev["value"] == rep["metrics"]["test"]["top1"] and ev["ci95"] == rep["metrics"]["test"]["ci95"]["top1"]
    assert (out.parent / ev["report"]).is_file() and (out.parent / "seco_r18-eval" / "eurosat-knn-predictions.npz").is_file()
    card = card_file.read_text()
    lo, hi = ev["ci95"]
    assert f"{100 * ev['value']:.2f} [{100 * lo:.2f}, {100 * hi:.2f}]" in card
    assert pre["fingerprint"] in card and "B04, B03, B02" in card and "timm.create_model('resnet18', num_classes=0)" in card

    # validation is not a formality: a broken item is caught
    broken = json.loads(item_file.read_text())
    del broken["properties"]["mlm:input"]
    assert list(validate_item(broken, shared / "stac-schemas"))
    broken = json.loads(item_file.read_text())
    broken["assets"]["weights"].pop("mlm:artifact_type")
    assert list(validate_item(broken, shared / "stac-schemas"))

    r = CliRunner().invoke(main, ["export", str(folder), "--out", str(out)])
    assert r.exit_code == 3 and "already exists" in r.output


def test_round_trip_to_identical_features_on_real_eurosat(run, shared, tmp_path):
    from PIL import Image

    from seco_train.evaluate.eurosat import EuroSAT
    from seco_train.modelcard import export_model

    folder, model = run
    result = export_model(folder, tmp_path / "bb.pth")
    root = shared / "data" / "eurosat-rgb"
    ds = EuroSAT(root, "test", split_file=folder / "test.txt")  # the evaluator's inputs
    x_eval = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        want = model.backbone.eval()(x_eval)
    for source in (result.item, result.weights, folder / "checkpoint.pt"):
        net, transform = load_backbone(source, with_transform=True)
        assert transform == BackboneTransform.seco_rgb(size=64)
        pixels = [np.asarray(Image.open(f).convert("RGB")) for f in ds.files]
        x = torch.stack([transform.rgb8(p) for p in pixels])
        with torch.no_grad():
            assert torch.equal(net.eval()(x), want), source

    # plain torchvision and timm read the same file to the same features
    state = torch.load(result.weights, weights_only=True)
    tv = torchvision.models.resnet18()
    tv.fc = nn.Identity()
    tv.load_state_dict(state)
    timm = pytest.importorskip("timm")
    tm = timm.create_model("resnet18", num_classes=0, pretrained=False)
    tm.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(tv.eval()(x_eval), want)
        torch.testing.assert_close(tm.eval()(x_eval), want, rtol=1e-5, atol=1e-5)


def test_transform_on_real_digital_numbers_matches_the_readers(shared):
    """The DN path of the transform equals the BigEarthNet reader's SeCo stretch (a lookup table built
    independently) and, for a stats-stretch run, (DN * 1e-4 - mean) / std."""
    from seco_train.evaluate.bigearthnet import RGB_BANDS, load_patch, read_band

    t = BackboneTransform.seco_rgb()
    for folder in sorted((shared / "data" / "bigearthnet" / "BigEarthNet-S2-Example").iterdir())[:3]:
        if not folder.is_dir():
            continue
        dn = np.stack([read_band(folder / f"{folder.name}_{b}.tif") for b in RGB_BANDS])
        assert torch.equal(t(dn), load_patch(folder, RGB_BANDS, size=None))
        assert torch.equal(t(dn[None])[0], t(torch.from_numpy(dn.astype(np.int32))))
    stats = BackboneTransform(("B08", "B02"), "stats", (0.3, 0.1), (0.2, 0.05), 96)
    dn = np.array([[[1000, 5000]], [[200, 0]]], dtype=np.uint16)
    np.testing.assert_allclose(stats(dn).numpy(), [[[(0.1 - 0.3) / 0.2, (0.5 - 0.3) / 0.2]], [[(0.02 - 0.1) / 0.05, -2.0]]],
                               rtol=1e-6)
    assert BackboneTransform.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    from seco_data.errors import UsageError

    with pytest.raises(UsageError, match="3 bands"):
        t(np.zeros((4, 8, 8), np.uint16))
    with pytest.raises(UsageError, match="SeCo-stretched RGB"):
        stats.rgb8(np.zeros((8, 8, 3), np.uint8))


def test_stats_run_official_seco_and_foreign_weights(shards, shared, tmp_path):
    from seco_train.modelcard import export_model

    # a 4-band stats-stretch run: value scaling as z-scores of the DN, validated
    stats = {"bands": {b: {"mean": 0.1 + i / 10, "std": 0.05 + i / 100} for i, b in enumerate(("B02", "B03", "B04", "B08"))}}
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    torch.manual_seed(0)
    model = SeasonalContrast(mode="moco", in_channels=4, queue_size=8, dim=8)
    cfg = RunConfig().to_dict()
    cfg["data"].update(shards=str(shards), bands=["B02", "B03", "B04", "B08"], stretch="stats",
                       stats=str(tmp_path / "stats.json"))
    (tmp_path / "run4").mkdir()
    torch.save({"model": model.state_dict(), "config": cfg, "step": 1}, tmp_path / "run4" / "checkpoint.pt")
    res = export_model(tmp_path / "run4", tmp_path / "out4" / "b4.pth", schemas=shared / "stac-schemas")
    item = json.loads(res.item.read_text())
    scaling = item["properties"]["mlm:input"][0]["value_scaling"]
    assert scaling[3] == {"type": "z-score", "mean": pytest.approx(0.4 / 1e-4), "stddev": pytest.approx(0.08 / 1e-4)}
    net, t = load_backbone(res.item, with_transform=True)
    assert net.conv1.in_channels == 4 and t.bands == ("B02", "B03", "B04", "B08") and t.stretch == "stats"
    assert "in_chans=4" in res.card.read_text()

    # the official SeCo release: no config, SeCo's RGB transform
    resnet = _randomised(torchvision.models.resnet18(weights=None), 2)
    encoder_q = nn.Sequential(*list(resnet.children())[:-1], nn.Flatten())
    torch.save({"state_dict": {f"encoder_q.{k}": v for k, v in encoder_q.state_dict().items()}}, tmp_path / "seco.ckpt")
    res = export_model(tmp_path / "seco.ckpt", tmp_path / "seco.pth", schemas=shared / "stac-schemas")
    item = json.loads(res.item.read_text())
    assert item["properties"]["mlm:pretrained_source"] == "SeCo (official release)" and item["geometry"] is None
    assert load_backbone(res.weights, with_transform=True)[1] == BackboneTransform.seco_rgb()

    # weights that do not say how their inputs were prepared: exported, no card, no transform
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "plain.pth")
    res = export_model(tmp_path / "plain.pth", tmp_path / "plain_out.pth")
    assert res.item is None and res.weights.is_file() and not (tmp_path / "plain_out.item.json").exists()
    assert load_backbone(res.weights, with_transform=True)[1] is None
