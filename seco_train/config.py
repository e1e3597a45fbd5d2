"""The configuration of a pre-training run: frozen dataclasses, from YAML plus ``--set`` overrides.

Defaults are the SeCo paper's (SECO.md section 2): ResNet-18, RGB, SGD lr 0.03, momentum 0.9, weight
decay 1e-4, batch 256, 200 epochs, lr x0.1 at epochs 120 and 160, queue 16,384, m 0.999, T 0.07.
The resolved config is saved in the run folder and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seco_data.config import Schema, apply_overrides, build, load_mapping
from seco_data.errors import ConfigError

#: pre-training modes: Seasonal Contrast and the paper's two MoCo-v2 baselines
MODES = ("seco", "moco", "moco_tp")
#: torchvision ResNets the model builds (and evaluations load)
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
#: how images are stretched: SeCo's RGB quantile stretch, or per-band statistics
STRETCHES = ("seco", "stats")
DEVICES = ("auto", "cpu", "cuda")
#: where views are made: batched on the training device (from compact uint8 inputs), or per sample in
#: the loader workers (float32 views; the reference's way)
AUGMENT_ON = ("auto", "device", "workers")
#: what one epoch counts: "reference" as the reference scripts (moco: every location x season is a sample,
#: its SeasonalContrastBasic; seco and moco_tp: every location), "location": one sample per location
EPOCH_UNITS = ("reference", "location")
#: the resolved config, saved in every run folder (and inside every checkpoint)
CONFIG_FILE = "config.yaml"
CONFIG = Schema(ConfigError, "config key")


@dataclass(frozen=True)
class DataConfig:
    #: shard folder, manifest, glob or brace pattern (the `seco-train run SHARDS` argument)
    shards: str = ""
    bands: tuple[str, ...] = ("B04", "B03", "B02")
    #: seco: the SeCo uint8 quantile stretch + ImageNet normalisation (RGB); stats: per-band mean/std
    stretch: str = "seco"
    #: JSON written by `seco-train stats` (stretch: stats)
    stats: str | None = None
    size: int = 224
    #: the GLOBAL batch: each of N ranks (GPUs) takes batch_size / N per step, so a multi-GPU run keeps
    #: the paper's 256 unless told otherwise (and the queue, lr and schedule keep their meaning)
    batch_size: int = 256
    #: DataLoader worker processes per rank; unset: this machine's cores shared among its ranks, one left
    #: to each rank's main process (seco_train.data.default_workers). A run keeps the count it started
    #: with in its checkpoint, so a resume on another machine reads the same streams.
    workers: int | None = None
    #: device: workers ship the drawn seasons as uint8 and each view's random parameters, the views are
    #: made batched on the training device (seco_train.batched); workers: each worker makes float32 views;
    #: auto: device on GPUs, workers on CPU (where batched views in the main process cost more than in
    #: the workers). Both draw the same random choices: switching keeps a resume exact within rounding.
    augment_on: str = "auto"


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet18"
    mode: str = "seco"
    dim: int = 128
    queue_size: int = 16384
    momentum: float = 0.999
    temperature: float = 0.07
    #: under DDP: SyncBatchNorm instead of shuffle-BN
    sync_bn: bool = False


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 1e-4
    #: step (x gamma at each milestone) or cosine (to 0 at the end)
    schedule: str = "step"
    milestones: tuple[float, ...] = (120.0, 160.0)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    epochs: float = 200.0


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    #: total optimisation steps; default: epochs x samples_per_epoch / batch_size
    steps: int | None = None
    #: samples in one epoch; default: the shard set's locations (x seasons for moco: ``epoch_unit``)
    samples_per_epoch: int | None = None
    #: "reference": a moco epoch has every location x season (the reference's count, so "200 epochs" is the
    #: same work); "location": one sample per location in every mode (``EPOCH_UNITS``)
    epoch_unit: str = "reference"
    #: bf16 (autocast), fp32, or auto (bf16 on CUDA, fp32 on CPU)
    precision: str = "auto"
    channels_last: bool = True
    #: torch.compile the query and key encoders (not the DDP wrapper, not the heads or queues)
    compile: bool = False
    #: cuda, cpu, or auto (cuda when available)
    device: str = "auto"
    log_every: int = 10
    checkpoint_every: int = 1000
    #: also write TensorBoard event files (metrics.csv is always written)
    tensorboard: bool = True

    def to_dict(self) -> dict:
        return json_ready(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def validate(cfg: RunConfig) -> RunConfig:
    def need(ok: bool, key: str, what: str):
        if not ok:
            raise ConfigError(f"config key {key!r} {what}")

    from seco_data.bands import canonical

    try:
        bands = tuple(canonical(b) for b in cfg.data.bands)
    except KeyError as e:
        raise ConfigError(f"config key 'data.bands': unknown band {e.args[0]!r}") from None
    need(len(bands) > 0, "data.bands", "must name at least one band")
    need(cfg.data.stretch in STRETCHES, "data.stretch", f"must be one of {', '.join(STRETCHES)}")
    need(cfg.data.stretch != "seco" or set(bands) == {"B02", "B03", "B04"}, "data.stretch",
         "seco is the RGB stretch: use stretch: stats (with `seco-train stats`) for other bands")
    need(cfg.data.stretch != "stats" or bool(cfg.data.stats), "data.stats",
         "must be the JSON of `seco-train stats` when stretch is stats")
    need(cfg.data.size >= 16, "data.size", "must be >= 16")
    need(cfg.data.batch_size >= 2, "data.batch_size", "must be >= 2")
    need(cfg.data.workers is None or cfg.data.workers >= 0, "data.workers", "must be >= 0 (or unset: from the cores)")
    need(cfg.data.augment_on in AUGMENT_ON, "data.augment_on", f"must be one of {', '.join(AUGMENT_ON)}")
    need(cfg.model.backbone in BACKBONES, "model.backbone", f"must be one of {', '.join(BACKBONES)}")
    need(cfg.model.mode in MODES, "model.mode", f"must be one of {', '.join(MODES)}")
    need(cfg.model.queue_size >= 1 and cfg.model.queue_size % cfg.data.batch_size == 0, "model.queue_size",
         f"must be a multiple of the global batch ({cfg.data.batch_size})")
    need(0 <= cfg.model.momentum < 1, "model.momentum", "must be in [0, 1)")
    need(cfg.model.temperature > 0, "model.temperature", "must be > 0")
    need(cfg.optim.lr > 0, "optim.lr", "must be > 0")
    need(cfg.optim.schedule in ("step", "cosine"), "optim.schedule", "must be step or cosine")
    need(cfg.optim.epochs > 0, "optim.epochs", "must be > 0")
    need(cfg.steps is None or cfg.steps >= 1, "steps", "must be >= 1")
    need(cfg.epoch_unit in EPOCH_UNITS, "epoch_unit", f"must be one of {', '.join(EPOCH_UNITS)}")
    need(cfg.precision in ("auto", "bf16", "fp32"), "precision", "must be auto, bf16 or fp32")
    need(cfg.device in DEVICES, "device", f"must be one of {', '.join(DEVICES)}")
    need(cfg.log_every >= 1 and cfg.checkpoint_every >= 1, "log_every", "and checkpoint_every must be >= 1")
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, bands=bands))


def config_from_dict(raw: dict, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Build and validate a config from a mapping and dotted overrides (``optim.lr``: 0.06)."""
    return validate(build(RunConfig, apply_overrides(raw or {}, overrides, CONFIG), CONFIG))


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    raw = load_mapping(path, CONFIG, "config") if path else {}
    return config_from_dict(raw, overrides)
