"""The one evaluator: benchmark (from the registry) x weights x protocol x preset -> a report dict.

``evaluate(EvalConfig(...))`` resolves the preset (``presets``: this project's protocol or the reference
scripts' recipe), reads the benchmark's splits, optionally draws a seeded subset of the training split
(without replacement, stratified per class for multiclass; the reference preset draws with replacement,
as the reference did), loads the backbone with ``seco_train.weights.load_backbone``, runs the protocol
and computes the metrics over whole splits, each headline metric with a 95 % bootstrap interval
(``bootstrap``). ``report.write_report`` writes the result, and the per-item predictions beside it.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from seco_data.errors import UsageError
from seco_data.outputs import sha256_file

from ..config import CONFIG_FILE, DEVICES
from . import bootstrap, metrics
from .checkpoint import EpochCheckpoint
from .presets import Preset, get_preset
from .protocols import PROTOCOLS, Progress, ProtocolConfig
from .registry import Benchmark, get

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    benchmark: str
    #: a run folder, a weights file (any format load_backbone reads) or "random"
    weights: str
    protocol: str | None = None
    root: str | None = None
    #: None: the run folder's config (model.backbone), else resnet18
    backbone: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    train_frac: float = 1.0
    #: None: the preset's (default 0, reference 42)
    seed: int | None = None
    #: "default" (this project's protocol) | "reference" (the reference scripts' recipe)
    preset: str = "default"
    #: bootstrap resamples of the confidence intervals (0: none)
    resamples: int = bootstrap.RESAMPLES
    #: "auto" | "cpu" | "cuda"
    device: str = "auto"
    #: image size (None: the benchmark's native size)
    size: int | None = None
    num_workers: int = 0
    cache_dir: str | None = None
    #: (split, file) pairs overriding the benchmark's split lists
    split_files: tuple[tuple[str, str], ...] = ()
    #: extra dataset options, e.g. (("bands", "rgb"),)
    dataset_options: tuple[tuple[str, object], ...] = ()
    k: int | None = None
    eval_every_epoch: bool = False
    #: epoch checkpoints of the long protocols (finetune; linear with the backbone in train mode) go to this
    #: file, and a matching one there is resumed (``checkpoint``); None: none
    checkpoint: str | None = None

    def __post_init__(self):
        if not 0 < self.train_frac <= 1:
            raise UsageError(f"train fraction must be in (0, 1], got {self.train_frac}")
        if self.device not in DEVICES:
            raise UsageError(f"device must be auto, cpu or cuda, not {self.device!r}")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available", hint="use --device cpu or auto")
    return device


def resolve_weights(weights: str, backbone: str | None) -> tuple[str, Path | None, Path | None, str]:
    """(source for load_backbone, weights file or None, run folder or None, backbone name)."""
    if weights == "random":
        return "random", None, None, backbone or "resnet18"
    path = Path(weights)
    if path.is_dir():
        from ..train import CHECKPOINT

        ckpt = path / CHECKPOINT
        if not ckpt.is_file():
            raise UsageError(f"run folder {path} has no {CHECKPOINT}",
                             hint="pass a run folder of `seco-train run`, a weights file, or 'random'")
        if backbone is None and (path / CONFIG_FILE).is_file():
            import yaml

            cfg = yaml.safe_load((path / CONFIG_FILE).read_text()) or {}
            backbone = ((cfg.get("model") or {}).get("backbone")) if isinstance(cfg, dict) else None
        return str(ckpt), ckpt, path, backbone or "resnet18"
    if not path.is_file():
        raise UsageError(f"weights {weights!r}: no such file or run folder",
                         hint="pass a run folder, a weights file, or 'random'")
    return str(path), path, None, backbone or "resnet18"


def train_subset(targets: np.ndarray, frac: float, seed: int, task: str, rule: str = "stratified") -> np.ndarray:
    """Sorted indices of a ``frac`` subset drawn WITHOUT replacement from ``seed``; multiclass: per class
    (``round(frac * n_c)``, at least 1, of each class ``c``). ``rule="with_replacement"``: the reference's
    ``default_rng(seed).choice(range(n), int(frac * n))`` instead (duplicates kept, in draw order)."""
    n = len(targets)
    if frac >= 1:
        return np.arange(n)
    if rule == "with_replacement":
        return np.random.default_rng(seed).choice(range(n), int(frac * n))
    rng = np.random.default_rng(seed)
    if task == "multiclass":
        y = np.asarray(targets)
        picked = []
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            take = max(1, int(round(frac * len(members))))
            picked.append(rng.choice(members, size=take, replace=False))
        return np.sort(np.concatenate(picked))
    return np.sort(rng.choice(n, size=max(1, int(round(frac * n))), replace=False))


def protocol_config(cfg: EvalConfig, preset: Preset, device: str) -> ProtocolConfig:
    """The preset's protocol config with the user's overrides and the runtime settings."""
    runtime = {"device": device, "num_workers": cfg.num_workers, "cache_dir": cfg.cache_dir,
               "eval_every_epoch": cfg.eval_every_epoch}
    if cfg.k is not None:
        runtime["k"] = cfg.k
    return preset.resolve(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, **runtime)


#: runtime settings that do not change what an evaluation computes (left out of its fingerprint)
_RUNTIME = ("device", "num_workers", "cache_dir")


def fingerprint(bench: Benchmark, protocol: str, preset: Preset, pcfg: ProtocolConfig, *, weights_sha256: str | None,
                backbone: str, size: int, options: dict, datasets: dict, train_indices: np.ndarray) -> str:
    """sha256 of everything that decides an evaluation's result: what a checkpoint must match to be resumed."""
    import hashlib
    import json

    config = {k: v for k, v in dataclasses.asdict(pcfg).items() if k not in _RUNTIME}
    data = {s: [getattr(ds, "fingerprint", None), len(ds)] for s, ds in datasets.items()}
    key = {"benchmark": bench.name, "protocol": protocol, "preset": preset.name, "config": config,
           "weights": weights_sha256, "backbone": backbone, "size": size, "options": options, "data": data,
           "train": hashlib.sha256(np.asarray(train_indices, dtype=np.int64).tobytes()).hexdigest()}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def software() -> dict:
    import torchvision

    from .. import __version__

    return {"seco": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__, "platform": platform.platform()}


def evaluate(cfg: EvalConfig, progress: Progress | None = None) -> dict:
    """Run one evaluation; returns the report dict (see ``report.write_report``)."""
    started = time.time()
    bench: Benchmark = get(cfg.benchmark)
    protocol = cfg.protocol or bench.default_protocol
    if protocol not in bench.protocols or protocol not in PROTOCOLS:
        raise UsageError(f"benchmark {bench.name!r} has no protocol {protocol!r}: expected one of "
                         f"{', '.join(bench.protocols)}")
    preset = get_preset(bench.name, protocol, cfg.preset)
    root = cfg.root or bench.default_root
    if root is None:
        raise UsageError(f"benchmark {bench.name!r} has no default data folder", hint="pass --root")
    device = resolve_device(cfg.device)
    size = cfg.size or bench.size
    split_files = dict(cfg.split_files)
    unknown = set(split_files) - set(bench.splits)
    if unknown:
        raise UsageError(f"split files for unknown splits {sorted(unknown)}: {bench.name} has {bench.splits}")
    options = {**dict(preset.dataset), **dict(cfg.dataset_options)}
    datasets = {s: bench.dataset(root, s, split_file=split_files.get(s), size=size, **options) for s in bench.splits}
    train_name, eval_names = bench.splits[0], bench.splits[1:]
    train = datasets[train_name]
    pcfg = protocol_config(cfg, preset, device)
    idx = train_subset(np.asarray(train.targets), cfg.train_frac, pcfg.seed, bench.task, preset.subset)
    train_used = train if cfg.train_frac >= 1 else Subset(train, idx.tolist())

    source, weights_file, run_dir, name = resolve_weights(cfg.weights, cfg.backbone)
    weights_sha256 = sha256_file(weights_file) if weights_file else None
    from ..weights import load_backbone

    torch.manual_seed(pcfg.seed)  # "random" weights: the initialisation follows the seed
    backbone = load_backbone(source, name, train.in_channels)
    evals = {s: datasets[s] for s in eval_names}
    checkpoint = None
    if cfg.checkpoint and bench.run is None:
        checkpoint = EpochCheckpoint(cfg.checkpoint, fingerprint(
            bench, protocol, preset, pcfg, weights_sha256=weights_sha256,
            backbone=name, size=size, options=options, datasets=datasets, train_indices=idx))
    predictions: dict[str, dict] = {}
    if bench.run is not None:
        result_metrics = bench.run(bench, backbone, pcfg, evals=evals, train=train_used, progress=progress,
                                   options=dict(preset.model))
        history, frozen = [], None
        for s, m in result_metrics.items():
            tiles = m.pop("tiles", None)
            if tiles is not None:
                predictions[s] = {"ids": tiles["ids"], "targets": None, "scores": tiles["counts"]}
    else:
        result = PROTOCOLS[protocol](backbone, train_used, evals, task=bench.task, num_classes=bench.num_classes,
                                     config=pcfg, progress=progress, checkpoint=checkpoint)
        classes = list(getattr(train, "classes", [str(i) for i in range(bench.num_classes)]))
        result_metrics = {s: metrics.summarise(bench.task, t, sc, classes) for s, (t, sc) in result.predictions.items()}
        for s, (t, sc) in result.predictions.items():
            ids = getattr(evals[s], "item_ids", None)
            predictions[s] = {"ids": list(ids) if ids is not None else [str(i) for i in range(len(t))],
                              "targets": np.asarray(t), "scores": np.asarray(sc, dtype=np.float32)}
            batch = preset.metric_batch_of(pcfg)
            if batch:
                result_metrics[s]["reference_batch_mean"] = {
                    "batch": batch, "drop_last": True, "value": bootstrap.batch_mean(bench.task, t, sc, batch)}
        history, frozen = result.history, result.frozen_check
        if frozen is not None:
            log.info("frozen backbone unchanged (sha256 %s)", frozen["after"][:16])
    if cfg.resamples:
        for s, p in predictions.items():
            if len(p["scores"]):
                result_metrics[s]["ci95"] = bootstrap.confidence_intervals(
                    bench.task, p["targets"], p["scores"], count=cfg.resamples)

    splits, notes = {}, []
    for s, ds in datasets.items():
        files = [str(p) for p in getattr(ds, "split_files", [])]
        splits[s] = {"files": [{"path": str(Path(f).resolve()), "sha256": sha256_file(f)} for f in files], "n": len(ds)}
        note = getattr(ds, "split_note", None)
        if note and note not in notes:
            notes.append(note)
    splits[train_name]["n_used"] = len(train_used)
    from .protocols import backbone_checksum

    headline_split = preset.headline_split if preset.headline_split in result_metrics else (
        "test" if "test" in result_metrics else (list(result_metrics)[-1] if result_metrics else None))
    report = {
        "benchmark": bench.name, "task": bench.task, "metric": bench.metric, "protocol": protocol,
        "preset": preset.name, "headline_split": headline_split,
        "weights": {"source": cfg.weights, "file": str(weights_file) if weights_file else None,
                    "sha256": weights_sha256, "backbone": name,
                    "in_channels": train.in_channels, "run": str(run_dir) if run_dir else None},
        "root": str(root), "size": size, "dataset_options": {k: v for k, v in options.items()},
        "splits": splits, "split_notes": notes, "train_frac": cfg.train_frac,
        "train_subset": preset.subset, "seed": pcfg.seed, "device": device,
        "config": dataclasses.asdict(pcfg), "recipe": preset.to_dict(),
        "metrics": result_metrics, "history": history,
        "bootstrap": {"resamples": cfg.resamples, "seed": bootstrap.SEED, "level": bootstrap.LEVEL,
                      "method": "percentile", "unit": bootstrap.UNITS.get(bench.task)},
        "frozen_backbone": frozen,
        "backbone_sha256_final": backbone_checksum(backbone) if frozen is None else frozen["after"],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": time.time() - started + (checkpoint.elapsed_before if checkpoint else 0.0),
        "resumed_after_epoch": checkpoint.resumed_from if checkpoint else None, "software": software(),
        "predictions": predictions,
    }
    if headline_split and bench.metric in result_metrics[headline_split]:
        log.info("%s %s (%s): %s %s = %.4f", bench.name, protocol, preset.name, headline_split, bench.metric,
                 result_metrics[headline_split][bench.metric])
    return report


def default_output(cfg: EvalConfig, protocol: str) -> Path:
    """``<run folder>/eval/<benchmark>-<protocol>[-reference].json`` for a run folder, else ``eval/<...>.json``."""
    stem = f"{cfg.benchmark}-{protocol}" + ("" if cfg.preset == "default" else f"-{cfg.preset}")
    path = Path(cfg.weights)
    if cfg.weights != "random" and path.is_dir():
        return path / "eval" / f"{stem}.json"
    return Path("eval") / f"{stem}.json"
