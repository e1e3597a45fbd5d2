"""Evaluation presets: the reference recipe checked value by value against a table read from the reference
scripts (ServiceNow/seasonal-contrast @ 8285173), and its pieces checked against independent implementations
of what those scripts do (torch's schedulers, torchvision's transforms, the reference's decoder and loops)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from seco_train.evaluate import presets, protocols
from seco_train.evaluate.evaluator import EvalConfig, evaluate, train_subset
from seco_train.evaluate.protocols import milestone_epochs

# What the reference scripts do, read from their source (file:line at commit 8285173). Each entry is compared
# with what `--preset reference` resolves to; a preset without an entry here fails the test.
REFERENCE_TABLE = {
    ("eurosat", "linear"): {
        "optimizer": "adam",           # main_eurosat.py:52 optim.Adam(self.classifier.parameters())
        "lr": 1e-3,                    # torch.optim.Adam's default lr
        "weight_decay": 0.0,           # Adam's default
        "epochs": 100,                 # main_eurosat.py:87 Trainer(max_epochs=100)
        "milestone_epochs": [60, 80],  # main_eurosat.py:54 [int(0.6*max_epochs), int(0.8*max_epochs)]
        "gamma": 0.1,                  # MultiStepLR's default
        "schedule": "step",
        "batch_size": 32,              # datasets/eurosat_datamodule.py:25
        "drop_last": True,             # datasets/eurosat_datamodule.py:28
        "head_dropout": 0.0,           # main_eurosat.py:22 nn.Linear(in_features, num_classes)
        "backbone_mode": "train",      # main_eurosat.py:26-28 no_grad only: the encoder stays in train mode
        "augment": False,              # datasets/eurosat_datamodule.py:19 T.ToTensor() only
        "seed": 42,                    # main_eurosat.py:59 pl.seed_everything(42)
        "dataset": {"normalise": "unit", "lists": "reference"},  # ToTensor; eurosat_dataset.py:14 ROOT/{split}.txt
        "headline_split": "val",       # eurosat_datamodule.py:20 only val is evaluated
        "metric_batch": 32,            # eurosat_datamodule.py:35-38 val batch 32, not shuffled, drop_last
        "subset": "with_replacement",
    },
    ("bigearthnet", "linear"): {
        "optimizer": "adam", "lr": 1e-3,   # README: --learning_rate 1e-3; ssl_finetuner.py:61 optim.Adam
        "weight_decay": 0.0, "epochs": 100,  # main_bigearthnet.py:38 --max_epochs 100
        "milestone_epochs": [60, 80],      # ssl_finetuner.py:72 --milestones [60, 80]
        "gamma": 0.1, "schedule": "step",
        "batch_size": 1024,                # README: --batch_size 1024 (dp over 4 GPUs)
        "drop_last": True,                 # bigearthnet_datamodule.py:85
        "head_dropout": 0.2,               # ssl_finetuner.py:18-22 + main_bigearthnet.py:75 SSLEvaluator(p=0.2, n_hidden=None)
        "backbone_mode": "eval",           # ssl_finetuner.py:32-33 on_train_epoch_start: backbone.eval()
        "augment": False,                  # bigearthnet_datamodule.py:65-69 Resize + ToTensor
        "seed": 42,                        # main_bigearthnet.py:26
        "dataset": {"normalise": "reference", "lists": "reference"},  # bigearthnet_dataset.py:111-115, :153
        "headline_split": "val", "metric_batch": 1024,  # bigearthnet_datamodule.py:88-95
        "subset": "with_replacement",      # utils/data.py:26-28 rng.choice(range(n), int(frac * n))
    },
    ("bigearthnet", "finetune"): {
        "optimizer": "adam", "lr": 1e-5,   # ssl_finetuner.py:70 --learning_rate default 1e-5
        "weight_decay": 0.0, "epochs": 100, "milestone_epochs": [60, 80], "gamma": 0.1, "schedule": "step",
        "batch_size": 256,                 # ssl_finetuner.py:69 --batch_size default 256
        "drop_last": True, "head_dropout": 0.2, "backbone_mode": "eval", "augment": False, "seed": 42,
        "dataset": {"normalise": "reference", "lists": "reference"},
        "headline_split": "val", "metric_batch": 256, "subset": "with_replacement",
    },
    ("oscd", "linear"): {
        "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4,  # main_oscd.py:73
        "schedule": "exponential", "gamma": 0.95,               # main_oscd.py:74 ExponentialLR(optimizer, 0.95)
        "epochs": 100,                                          # main_oscd.py:107
        "batch_size": 32, "drop_last": True,                    # oscd_datamodule.py:78-81
        "backbone_mode": "train",     # the encoder is never set to eval (segmentation.py:54-55)
        "seed": 42,                   # main_oscd.py:79
        "dataset": {"normalise": "reference", "tiles": "grid"},  # oscd_dataset.py:12-36, :58; oscd_datamodule.py:65
        "model": {"level0": "conv", "decoder": "reference"},     # main_oscd.py:101 index 0 = conv1; segmentation.py:18
        "headline_split": "test",     # oscd_datamodule.py:69-73 the 'val' loader reads split='test'
    },
}


def test_reference_presets_match_the_table_value_by_value():
    assert set(presets.REFERENCE) == set(REFERENCE_TABLE)
    for key, want in REFERENCE_TABLE.items():
        p = presets.get_preset(*key, "reference")
        cfg = p.resolve()
        got = {k: getattr(cfg, k) for k in want if hasattr(cfg, k)}
        got["milestone_epochs"] = milestone_epochs(cfg) if cfg.schedule == "step" else None
        got["dataset"], got["model"] = dict(p.dataset), dict(p.model)
        got.update(headline_split=p.headline_split, metric_batch=p.metric_batch_of(cfg), subset=p.subset)
        for field, value in want.items():
            assert got[field] == value, f"{key} {field}: preset {got[field]!r}, reference {value!r}"
        assert p.sources, key  # every recipe names where its values come from


def test_default_presets_are_the_project_protocols_and_overrides_apply():
    lin = presets.get_preset("eurosat", "linear")
    assert lin.config == protocols.DEFAULTS["linear"] and lin.headline_split == "test" and lin.subset == "stratified"
    assert dict(lin.dataset) == {"normalise": "imagenet", "lists": "splits"}
    cfg = presets.get_preset("bigearthnet", "linear", "reference").resolve(epochs=10, lr=0.5, seed=3, device="cpu")
    assert (cfg.epochs, cfg.lr, cfg.seed, cfg.batch_size, cfg.device) == (10, 0.5, 3, 1024, "cpu")
    assert milestone_epochs(cfg) == [60, 80]  # absolute in the reference, whatever --epochs says
    eu = presets.get_preset("eurosat", "linear", "reference").resolve(epochs=7)
    assert milestone_epochs(eu) == [4, 5]  # int(0.6 * 7), int(0.8 * 7): truncated, not rounded (4, 6)
    from seco_data.errors import UsageError

    with pytest.raises(UsageError, match="no eurosat knn recipe") as err:
        presets.get_preset("eurosat", "knn", "reference")
    assert "bigearthnet finetune" in err.value.one_line()
    with pytest.raises(UsageError, match="unknown preset"):
        presets.get_preset("eurosat", "linear", "paper")


@pytest.mark.parametrize("key,epochs", [(("eurosat", "linear"), 100), (("eurosat", "linear"), 7),
                                        (("bigearthnet", "finetune"), 100), (("oscd", "linear"), 100)])
def test_schedules_equal_torchs_per_epoch_schedulers(key, epochs):
    cfg = presets.get_preset(*key, "reference").resolve(epochs=epochs)
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    if cfg.schedule == "exponential":
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, cfg.gamma)
    elif key[0] == "eurosat":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.6 * epochs), int(0.8 * epochs)])
    else:
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [60, 80])
    steps_per_epoch = 3
    for epoch in range(epochs):
        for s in range(steps_per_epoch):
            ours = cfg.lr * protocols._lr_factor(cfg, epoch * steps_per_epoch + s, steps_per_epoch)
            assert ours == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9), (epoch, s)
        opt.step()  # (no gradient: nothing moves; torch wants a step before the scheduler's)
        sched.step()


def test_reference_subset_is_the_reference_draw_with_replacement():
    y = np.repeat(np.arange(4), 50)
    got = train_subset(y, 0.1, 42, "multiclass", "with_replacement")
    # utils/data.py random_subset: rng = default_rng(seed); rng.choice(range(len(dataset)), int(frac * len(dataset)))
    want = np.random.default_rng(42).choice(range(200), int(0.1 * 200))
    np.testing.assert_array_equal(got, want)
    big = train_subset(np.zeros(1000), 0.5, 42, "multilabel", "with_replacement")
    assert len(big) == 500 and len(np.unique(big)) < 500  # drawn with replacement: duplicates
    strat = train_subset(y, 0.1, 42, "multiclass")
    assert len(np.unique(strat)) == len(strat) == 20


# -- the protocols' reference behaviour ------------------------------------------------------------------------

class Blobs(Dataset):
    classes = ["neg", "pos"]
    in_channels = 3

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.targets = (torch.arange(n) % 2).numpy()
        sign = torch.from_numpy(self.targets * 2.0 - 1).float().view(-1, 1, 1, 1)
        self.x = sign * 0.5 + torch.randn(n, 3, 8, 8, generator=g)
        self.fingerprint = f"blobs-{n}-{seed}"

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.targets[i])


def _bn_backbone(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_reference_linear_is_the_eurosat_scripts_loop():
    """The reference EuroSAT Classifier, written out: encoder in train mode under no_grad, Adam, MultiStepLR
    at int(0.6 E) / int(0.8 E) stepped per epoch, shuffled batches of 32 with drop_last; eval mode after."""
    epochs, seed = 7, 42
    train, test = Blobs(100, 0), Blobs(40, 1)
    cfg = presets.get_preset("eurosat", "linear", "reference").resolve(epochs=epochs, eval_batch_size=16)
    protocols.clear_feature_cache()
    ours_backbone = _bn_backbone()
    before = {k: v.clone() for k, v in ours_backbone.state_dict().items()}
    res = protocols.linear(ours_backbone, train, {"test": test}, task="multiclass", num_classes=2, config=cfg)

    backbone = _bn_backbone()
    for p in backbone.parameters():
        p.requires_grad_(False)
    torch.manual_seed(seed)
    head = nn.Linear(8, 2)
    opt = torch.optim.Adam(head.parameters())
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.6 * epochs), int(0.8 * epochs)])
    loader = DataLoader(train, batch_size=32, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(seed))
    for _ in range(epochs):
        backbone.train()
        for x, y in loader:
            with torch.no_grad():
                f = backbone(x)
            loss = nn.functional.cross_entropy(head(f), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    backbone.eval()
    with torch.no_grad():
        want = head(backbone(test.x)).softmax(1).numpy()
    np.testing.assert_allclose(res.predictions["test"][1], want, rtol=1e-5, atol=1e-6)

    after = ours_backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "running" not in k and "num_batches" not in k)
    assert not torch.equal(before["1.running_mean"], after["1.running_mean"])  # BatchNorm statistics moved
    assert res.frozen_check["scope"] == "parameters" and res.frozen_check["unchanged"]


def test_reference_bigearthnet_heads_and_frozen_batchnorm():
    """Linear: Dropout(0.2) + Linear on frozen features; finetune: Adam over everything with the backbone's
    BatchNorm kept in eval mode (statistics unchanged while its weights train)."""
    from seco_train.evaluate.bigearthnet import NUM_CLASSES

    class Multi(Blobs):
        def __init__(self, n, seed):
            super().__init__(n, seed)
            self.targets = np.stack([self.targets, 1 - self.targets] + [np.zeros(n)] * (NUM_CLASSES - 2), 1)
            self.fingerprint = f"multi-{n}-{seed}"

        def __getitem__(self, i):
            return self.x[i], torch.from_numpy(self.targets[i]).float()

    built = []
    orig = protocols._head

    def spy(dim, num_classes, cfg):
        built.append(orig(dim, num_classes, cfg))
        return built[-1]

    protocols._head, saved = spy, protocols._head
    try:
        for protocol in ("linear", "finetune"):
            cfg = presets.get_preset("bigearthnet", protocol, "reference").resolve(epochs=2, batch_size=8, lr=1e-3)
            backbone = _bn_backbone()
            before = {k: v.clone() for k, v in backbone.state_dict().items()}
            protocols.clear_feature_cache()
            getattr(protocols, protocol)(backbone, Multi(40, 0), {"val": Multi(16, 1)}, task="multilabel",
                                         num_classes=NUM_CLASSES, config=cfg)
            head = built[-1]
            assert isinstance(head, nn.Sequential) and isinstance(head[0], nn.Dropout) and head[0].p == 0.2
            assert isinstance(head[1], nn.Linear)
            after = backbone.state_dict()
            assert torch.equal(before["1.running_mean"], after["1.running_mean"])  # BN kept in eval mode
            assert torch.equal(before["0.weight"], after["0.weight"]) == (protocol == "linear")
    finally:
        protocols._head = saved


# -- the datasets' reference inputs on real files ----------------------------------------------------------------

def test_reference_eurosat_inputs_and_lists(shared, tmp_path):
    from PIL import Image
    from torchvision import transforms as T

    from seco_train.evaluate.eurosat import EuroSAT

    root = shared / "data" / "eurosat-rgb"
    names = [ln.split("/")[1] for ln in (root / "splits" / "val.txt").read_text().split()[::500]]
    split = tmp_path / "val.txt"
    split.write_text("\n".join(names) + "\n")  # the reference's format: bare '<Class>_<n>.jpg'
    ds = EuroSAT(root, "val", split_file=split, normalise="unit")
    assert [ds.classes[t] for t in ds.targets] == [n.split("_")[0] for n in names]
    for i in (0, len(ds) - 1):
        want = T.ToTensor()(Image.open(root / "2750" / names[i].split("_")[0] / names[i]))
        assert torch.equal(ds[i][0], want)
    # the reference preset looks for ROOT/{split}.txt; this copy has none: our lists, and the report says so
    ref = EuroSAT(root, "val", lists="reference", normalise="unit")
    assert len(ref) == 5400 and "not the same images" in ref.split_note


def _reference_bigearthnet_image(folder, size=128):
    """SeCo's Bigearthnet.__getitem__ + val_transform, written out with torchvision."""
    import rasterio
    from PIL import Image
    from torchvision import transforms as T

    from seco_train.evaluate.bigearthnet import BAND_STATS

    channels = []
    for b in ("B04", "B03", "B02"):
        with rasterio.open(folder / f"{folder.name}_{b}.tif") as src:
            ch = src.read(1)
        lo = BAND_STATS["mean"][b] - 2 * BAND_STATS["std"][b]
        hi = BAND_STATS["mean"][b] + 2 * BAND_STATS["std"][b]
        ch = np.clip((ch - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
        channels.append(ch)
    img = Image.fromarray(np.dstack(channels))
    return T.Compose([T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor()])(img)


def test_reference_bigearthnet_inputs_on_real_patches(shared, tmp_path):
    from seco_train.evaluate.bigearthnet import BigEarthNetBenchmark

    src = shared / "data" / "bigearthnet" / "BigEarthNet-S2-Example"
    patches = sorted(p.name for p in src.iterdir() if p.is_dir())
    for name in ("train.txt", "val.txt"):  # the reference's list files (remote_sensing_representations)
        (tmp_path / name).write_text("\n".join(patches) + "\n")
    for name in ("patches_with_seasonal_snow.csv", "patches_with_cloud_and_shadow.csv"):
        (tmp_path / name).write_text("")
    (tmp_path / "data").symlink_to(src)
    ds = BigEarthNetBenchmark(tmp_path / "data", "val", normalise="reference", lists="reference")
    assert ds.split_files[0].name == "val.txt" and ds.item_ids == patches
    for i in range(len(ds)):
        assert torch.allclose(ds[i][0], _reference_bigearthnet_image(src / patches[i]), atol=1e-6)
    from seco_data.errors import UsageError

    with pytest.raises(UsageError, match="RGB only"):
        BigEarthNetBenchmark(tmp_path / "data", "val", bands="all", normalise="reference", lists="reference")


def test_reference_oscd_inputs_tiles_and_decoder(shared):
    """The reference's OSCD reader (quantile stretch to uint8, / 255), its 96 px grid with zero padding, and
    its decoder: our ReferenceDecoder gives the reference UNet's output with the same weights."""
    import torch.nn.functional as F

    from seco_train.evaluate import oscd
    from seco_train.evaluate.changedetection import ReferenceDecoder, SiameseChangeNet
    from seco_train.model import build_backbone

    root = shared / "data" / "oscd"
    city = oscd.load_city(root, "bercy")
    ds = oscd.OSCD(root, "train", cities=["bercy"], normalise="reference", tiles="grid", seed=0)
    q = {"B02": (885.0, 2620.0), "B03": (667.0, 2969.0), "B04": (426.0, 3698.0)}  # oscd_dataset.py:12-22
    for c, b in enumerate(("B04", "B03", "B02")):
        ch = np.clip((city["img1"][c] - q[b][0]) / (q[b][1] - q[b][0]), 0, 1)
        assert torch.equal(ds.images1[0][c], torch.from_numpy((ch * 255).astype(np.uint8)).float() / 255)
    h, w = city["change"].shape  # 395 x 360: 5 x 4 cells, the last row and column padded
    assert len(ds) == 5 * 4
    assert ds._cells[:6] == [(0, 0, 0), (0, 1, 0), (0, 2, 0), (0, 3, 0), (0, 4, 0), (0, 0, 1)]  # x outer, y inner
    x1, x2, m = oscd.grid_tile(ds.images1[0], ds.images2[0], ds.masks[0], 4, 3, 96)
    assert torch.equal(x1[:, : h - 384, : w - 288], ds.images1[0][:, 384:, 288:]) and x1[:, h - 384:].abs().sum() == 0
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        t1, _, tm = ds[19]
        for k in range(4):
            for flip in (False, True):
                cand = torch.rot90(x1.flip(-1) if flip else x1, k, dims=(-2, -1))
                if torch.equal(cand, t1):
                    seen.add((k, flip))
                    assert torch.equal(torch.rot90(m.flip(-1) if flip else m, k, dims=(-2, -1)), tm)
    assert len(seen) >= 3  # flips and rotations both happen

    torch.manual_seed(0)
    encoder, _ = build_backbone("resnet18")
    net = SiameseChangeNet(encoder, level0="conv", decoder="reference", encoder_bn="train")
    assert isinstance(net.decoder, ReferenceDecoder)
    net.eval()
    a, b = torch.randn(2, 3, 96, 96), torch.randn(2, 3, 96, 96)
    # the reference: SegmentationEncoder (children 0 = conv1 kept raw) + UNet.forward, written out
    feats = []
    xa, xb = a, b
    for i, module in enumerate(list(encoder.children())[:8]):
        xa, xb = module(xa), module(xb)
        if i in (0, 4, 5, 6, 7):
            feats.append((xa - xb).abs())
    d = net.decoder
    x = feats[-1]
    for i in range(3, -1, -1):
        x = d.shrink[i](F.interpolate(x, scale_factor=2, mode="nearest"))
        x2 = feats[i] if feats[i].shape[-1] == x.shape[-1] else F.interpolate(feats[i], scale_factor=2, mode="nearest")
        x = F.relu(d.bn[i](d.shrink2[i](torch.cat([x, x2], 1))))
    want = d.out(F.interpolate(x, scale_factor=2, mode="nearest"))
    with torch.no_grad():
        assert torch.allclose(net(a, b), want, atol=1e-5)
    # channel plan of the reference UNet(feature_channels=(64, 64, 128, 256, 512), concat_mult=1)
    assert [c.in_channels for c in d.shrink] == [64, 128, 256, 512] and [c.out_channels for c in d.shrink] == [64, 64, 128, 256]
    assert all(c.bias is None for c in d.shrink2) and d.dropout.p == 0.3
    # encoder BatchNorm in train mode while training (statistics move, weights do not)
    net.train()
    assert encoder.training
    before = encoder.bn1.running_mean.clone()
    net(a, b)
    assert not torch.equal(before, encoder.bn1.running_mean)


def test_reference_preset_through_the_evaluator_on_real_eurosat(shared, tmp_path):
    lines = (shared / "data" / "eurosat-rgb" / "splits" / "train.txt").read_text().split()
    files = {}
    for split, sl in (("train", slice(0, None, 400)), ("val", slice(1, None, 900)), ("test", slice(2, None, 900))):
        files[split] = tmp_path / f"{split}.txt"
        files[split].write_text("\n".join(lines[sl]) + "\n")
    cfg = EvalConfig("eurosat", weights="random", root=str(shared / "data" / "eurosat-rgb"), preset="reference",
                     epochs=2, split_files=tuple((s, str(p)) for s, p in files.items()), resamples=200)
    report = evaluate(cfg)
    assert (report["preset"], report["headline_split"], report["seed"], report["train_subset"]) == \
        ("reference", "val", 42, "with_replacement")
    assert report["config"]["backbone_mode"] == "train" and report["config"]["drop_last"]
    assert report["frozen_backbone"]["scope"] == "parameters"
    assert report["dataset_options"] == {"normalise": "unit", "lists": "reference"}
    assert report["recipe"]["sources"] and json.dumps(report["recipe"])  # the recipe travels with the report
    val = report["metrics"]["val"]
    assert val["reference_batch_mean"]["batch"] == 32 and val["ci95"]["top1"][0] <= val["top1"] <= val["ci95"]["top1"][1]
    assert dataclasses.asdict(presets.get_preset("eurosat", "linear", "reference").config)["seed"] == 42
