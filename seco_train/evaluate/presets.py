"""Evaluation presets: this project's protocol (``default``) and the reference scripts' recipe (``reference``).

``reference`` is the recipe of ServiceNow/seasonal-contrast (commit :data:`REFERENCE_COMMIT`), value by
value, so that a number measured with it can be put next to the paper's: the optimiser and its
schedule, batch, epochs, head, the backbone's mode while the head learns, augmentation, input
normalisation, split lists and the split that is scored, the seed, the ``--train-frac`` draw. Each
value names the line of the reference it was read from (:attr:`Preset.sources`).

``default`` keeps this project's corrections (SECO.md section 3, README "Evaluation presets"): metrics
over whole splits, a frozen backbone in eval mode, inputs normalised as in pre-training, subsets drawn
without replacement, the official split lists and a test split.

What neither preset changes: metrics are always computed over every item (or pixel) of a split; the
reference's per-batch mean with ``drop_last`` is recorded beside it (``reference_batch_mean``) where
its batches are deterministic (unshuffled validation loaders).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from seco_data.errors import UsageError

from .protocols import DEFAULTS, ProtocolConfig

PRESETS = ("default", "reference")
REFERENCE_REPO = "ServiceNow/seasonal-contrast"
REFERENCE_COMMIT = "8285173"
#: the reference scripts' seed: ``pl.seed_everything(42)`` in every main_*.py, ``seed=42`` in the data modules
REFERENCE_SEED = 42


@dataclass(frozen=True)
class Preset:
    """Everything about an evaluation that is not the weights: see the module docstring."""

    name: str
    benchmark: str
    protocol: str
    #: the protocol's hyper-parameters (``--epochs``, ``--batch-size``, ``--lr``, ``--seed`` override them)
    config: ProtocolConfig
    #: options of the benchmark's dataset (normalisation, split lists, tiles)
    dataset: tuple[tuple[str, object], ...] = ()
    #: options of the benchmark's own runner (OSCD: encoder features and decoder)
    model: tuple[tuple[str, object], ...] = ()
    #: the split whose metric is the headline (the reference scripts score ``val``)
    headline_split: str = "test"
    #: how ``--train-frac`` draws the training subset: "stratified" (without replacement, per class for
    #: multiclass) | "with_replacement" (the reference's ``rng.choice(n, int(frac * n))``)
    subset: str = "stratified"
    #: the batch over which the reference averaged its validation metric (``drop_last``), "batch_size" when
    #: its validation loader used the training batch (BigEarthNet), or None
    metric_batch: int | str | None = None
    #: reference file:line of each value (``reference`` only)
    sources: tuple[str, ...] = ()
    notes: str = ""

    def resolve(self, *, epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
                seed: int | None = None, **runtime) -> ProtocolConfig:
        """The protocol config with the user's overrides and runtime settings (device, workers, ...)."""
        changes = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("seed", seed))
                   if v is not None}
        return dataclasses.replace(self.config, **changes, **runtime)

    def metric_batch_of(self, config: ProtocolConfig) -> int | None:
        """The reference's validation batch for ``config`` (resolved "batch_size")."""
        return config.batch_size if self.metric_batch == "batch_size" else self.metric_batch

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["dataset"], d["model"] = dict(self.dataset), dict(self.model)
        return d


def _default(benchmark: str, protocol: str) -> Preset:
    if benchmark == "oscd":
        # constant lr (no milestones), no weight decay, decoder only
        cfg = ProtocolConfig(epochs=100, batch_size=32, lr=1e-3, optimizer="adam", schedule="step", milestones=())
        return Preset("default", benchmark, protocol, cfg,
                      dataset=(("normalise", "pretraining"), ("tiles", "random")),
                      model=(("level0", "relu"), ("decoder", "unet")))
    dataset = {"eurosat": (("normalise", "imagenet"), ("lists", "splits")),
               "bigearthnet": (("normalise", "pretraining"), ("lists", "official"))}.get(benchmark, ())
    return Preset("default", benchmark, protocol, DEFAULTS[protocol], dataset=dataset)


_EUROSAT = "main_eurosat.py"
_BEN = "main_bigearthnet.py"
_FT = "models/ssl_finetuner.py"

#: (benchmark, protocol) -> the reference recipe
REFERENCE: dict[tuple[str, str], Preset] = {
    ("eurosat", "linear"): Preset(
        "reference", "eurosat", "linear",
        ProtocolConfig(epochs=100, batch_size=32, lr=1e-3, optimizer="adam", weight_decay=0.0, schedule="step",
                       milestones=(0.6, 0.8), milestones_in="fraction_floor", gamma=0.1, drop_last=True,
                       backbone_mode="train", seed=REFERENCE_SEED),
        dataset=(("normalise", "unit"), ("lists", "reference")),
        headline_split="val", subset="with_replacement", metric_batch=32,
        sources=(f"{_EUROSAT}:52 optim.Adam(self.classifier.parameters()) (lr default 1e-3, no weight decay)",
                 f"{_EUROSAT}:54 MultiStepLR(milestones=[int(0.6*max_epochs), int(0.8*max_epochs)]) (gamma default 0.1)",
                 f"{_EUROSAT}:59 pl.seed_everything(42)",
                 f"{_EUROSAT}:87 Trainer(max_epochs=100)",
                 f"{_EUROSAT}:26-29 encoder called under no_grad but left in train mode: BatchNorm uses batch "
                 "statistics and updates its running statistics while the head learns",
                 "datasets/eurosat_datamodule.py:19-20 transform=T.ToTensor() (x / 255, no mean/std)",
                 "datasets/eurosat_datamodule.py:25-28 train batch 32, shuffle, drop_last=True",
                 "datasets/eurosat_datamodule.py:19-20,35-38 splits train and val; val is scored (batch 32, not shuffled, drop_last)",
                 "datasets/eurosat_dataset.py:14,22 ROOT/{split}.txt of '<Class>_<n>.jpg' names, class = name before '_'"),
        notes="64 px, no resize; the reference has no test split and no --train-frac for EuroSAT."),
    ("bigearthnet", "linear"): Preset(
        "reference", "bigearthnet", "linear",
        ProtocolConfig(epochs=100, batch_size=1024, lr=1e-3, optimizer="adam", weight_decay=0.0, schedule="step",
                       milestones=(60, 80), milestones_in="epoch", gamma=0.1, drop_last=True, head_dropout=0.2,
                       backbone_mode="eval", seed=REFERENCE_SEED),
        dataset=(("normalise", "reference"), ("lists", "reference")),
        headline_split="val", subset="with_replacement", metric_batch="batch_size",
        sources=("README.md 'Transferring to Downstream Tasks': --batch_size 1024 --freeze_backbone --learning_rate 1e-3",
                 f"{_BEN}:38 --max_epochs default 100",
                 f"{_FT}:18-22 SSLEvaluator(p=0.2, n_hidden=hidden_dim), {_BEN}:75 hidden_dim=None: Flatten, Dropout(0.2), Linear",
                 f"{_FT}:24 MultiLabelSoftMarginLoss",
                 f"{_FT}:32-33 on_train_epoch_start: backbone.eval()",
                 f"{_FT}:61-62 Adam(lr), MultiStepLR(milestones) (gamma default 0.1)",
                 f"{_FT}:72 --milestones default [60, 80]",
                 f"{_BEN}:26 pl.seed_everything(42); datasets/bigearthnet_datamodule.py:12 seed=42",
                 "datasets/bigearthnet_datamodule.py:65-75 Resize((128, 128), BICUBIC), ToTensor (x / 255)",
                 "datasets/bigearthnet_datamodule.py:78-95 train shuffle, drop_last=True; val scored (not shuffled, drop_last=True)",
                 "datasets/bigearthnet_dataset.py:111-115 per band clip((x - (mean - 2 std)) / (4 std) * 255) as uint8",
                 "datasets/bigearthnet_dataset.py:123-125,153 ROOT/{split}.txt lists (remote_sensing_representations)",
                 "utils/data.py:26-28 random_subset: rng.choice(range(n), int(frac * n)) (with replacement)"),
        notes="RGB only (the reference reader stacks the bands at their native sizes)."),
    ("bigearthnet", "finetune"): Preset(
        "reference", "bigearthnet", "finetune",
        ProtocolConfig(epochs=100, batch_size=256, lr=1e-5, optimizer="adam", weight_decay=0.0, schedule="step",
                       milestones=(60, 80), milestones_in="epoch", gamma=0.1, drop_last=True, head_dropout=0.2,
                       backbone_mode="eval", augment=False, seed=REFERENCE_SEED),
        dataset=(("normalise", "reference"), ("lists", "reference")),
        headline_split="val", subset="with_replacement", metric_batch="batch_size",
        sources=(f"{_FT}:69-70 --batch_size default 256, --learning_rate default 1e-5",
                 f"{_FT}:57-61 Adam over backbone + head",
                 f"{_FT}:32-33 on_train_epoch_start: backbone.eval() (BatchNorm frozen while fine-tuning)",
                 f"{_FT}:72 --milestones default [60, 80]",
                 "datasets/bigearthnet_datamodule.py:65-75 no augmentation: Resize + ToTensor only",
                 "the rest as the linear recipe"),
        notes="RGB only."),
    ("oscd", "linear"): Preset(
        "reference", "oscd", "linear",
        ProtocolConfig(epochs=100, batch_size=32, lr=1e-3, optimizer="adam", weight_decay=1e-4,
                       schedule="exponential", gamma=0.95, milestones=(), drop_last=True, backbone_mode="train",
                       seed=REFERENCE_SEED),
        dataset=(("normalise", "reference"), ("tiles", "grid")),
        model=(("level0", "conv"), ("decoder", "reference")),
        headline_split="test", subset="stratified", metric_batch=None,
        sources=("main_oscd.py:72-74 Adam(decoder parameters, lr=1e-3, weight_decay=1e-4), ExponentialLR(0.95)",
                 "main_oscd.py:79 pl.seed_everything(42); main_oscd.py:107 max_epochs=100",
                 "main_oscd.py:101 feature_indices (0, 4, 5, 6, 7): conv1's raw output, layer1..layer4",
                 "main_oscd.py:24-27 BCEWithLogitsLoss; Precision/Recall/F1 at threshold 0.5",
                 "models/segmentation.py:18,181-215 UNet(bilinear=True, concat_mult=1, dropout_rate=0.3): nearest "
                 "upsampling, 3x3 shrink convs, Dropout2d(0.3)",
                 "models/segmentation.py:54-55 the encoder runs on each date separately, in train mode "
                 "(its BatchNorm statistics move although its weights are not optimised)",
                 "datasets/oscd_datamodule.py:13,21-24,65 train transform: RandomFlip (horizontal) + RandomRotation (0/90/180/270)",
                 "datasets/oscd_datamodule.py:78-81 batch 32, shuffle, drop_last=True (validation: shuffled, drop_last, 88-91)",
                 "datasets/oscd_dataset.py:58,69-71 96 px tiles on a fixed grid (PIL crop: zero padding at the edges)",
                 "datasets/oscd_dataset.py:12-22,32-36 per band clip((DN - q2) / (q98 - q2)) * 255 as uint8, "
                 "ToTensor (x / 255)"),
        notes="The reference trains on the 14 labelled cities and scores the 10 official test cities, whose labels "
              "are not public offline: both presets use the fixed leave-cities-out split (oscd.SPLIT_NOTE). The "
              "reference's validation loader is shuffled with drop_last, so its per-batch F1 cannot be reproduced; "
              "F1 is over every pixel of the test cities, predicted tile by tile as the reference feeds them."),
}


def get_preset(benchmark: str, protocol: str, name: str = "default") -> Preset:
    """The preset ``name`` for ``benchmark`` x ``protocol``; raises naming what exists."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}")
    if name == "default":
        return _default(benchmark, protocol)
    try:
        return REFERENCE[(benchmark, protocol)]
    except KeyError:
        have = ", ".join(f"{b} {p}" for b, p in sorted(REFERENCE))
        raise UsageError(f"the reference scripts have no {benchmark} {protocol} recipe",
                         hint=f"--preset reference exists for: {have}") from None
