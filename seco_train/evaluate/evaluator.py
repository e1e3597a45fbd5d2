"""The one evaluator: benchmark (from the registry) x weights x protocol -> a report dict.

``evaluate(EvalConfig(...))`` reads the benchmark's splits, optionally draws a seeded subset of the
training split (without replacement, stratified per class for multiclass), loads the backbone with
``seco_train.weights.load_backbone``, runs the protocol and computes the metrics over whole splits.
``report.write_report`` writes the result.
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
from . import metrics
from .protocols import DEFAULTS, PROTOCOLS, Progress, ProtocolConfig
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
    seed: int = 0
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


def train_subset(targets: np.ndarray, frac: float, seed: int, task: str) -> np.ndarray:
    """Sorted indices of a ``frac`` subset drawn WITHOUT replacement from ``seed``; multiclass: per class
    (``round(frac * n_c)``, at least 1, of each class ``c``)."""
    n = len(targets)
    if frac >= 1:
        return np.arange(n)
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


def protocol_config(cfg: EvalConfig, protocol: str, device: str) -> ProtocolConfig:
    base = DEFAULTS[protocol]
    changes = {"seed": cfg.seed, "device": device, "num_workers": cfg.num_workers, "cache_dir": cfg.cache_dir,
               "eval_every_epoch": cfg.eval_every_epoch}
    for key, value in (("epochs", cfg.epochs), ("batch_size", cfg.batch_size), ("lr", cfg.lr), ("k", cfg.k)):
        if value is not None:
            changes[key] = value
    return dataclasses.replace(base, **changes)


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
    root = cfg.root or bench.default_root
    if root is None:
        raise UsageError(f"benchmark {bench.name!r} has no default data folder", hint="pass --root")
    device = resolve_device(cfg.device)
    size = cfg.size or bench.size
    split_files = dict(cfg.split_files)
    unknown = set(split_files) - set(bench.splits)
    if unknown:
        raise UsageError(f"split files for unknown splits {sorted(unknown)}: {bench.name} has {bench.splits}")
    options = dict(cfg.dataset_options)
    datasets = {s: bench.dataset(root, s, split_file=split_files.get(s), size=size, **options) for s in bench.splits}
    train_name, eval_names = bench.splits[0], bench.splits[1:]
    train = datasets[train_name]
    idx = train_subset(np.asarray(train.targets), cfg.train_frac, cfg.seed, bench.task)
    train_used = train if len(idx) == len(train) else Subset(train, idx.tolist())

    source, weights_file, run_dir, name = resolve_weights(cfg.weights, cfg.backbone)
    from ..weights import load_backbone

    torch.manual_seed(cfg.seed)  # "random" weights: the initialisation follows the seed
    backbone = load_backbone(source, name, train.in_channels)
    pcfg = protocol_config(cfg, protocol, device)
    evals = {s: datasets[s] for s in eval_names}
    if bench.run is not None:
        result_metrics, history, frozen = bench.run(bench, backbone, pcfg, evals=evals, train=train_used,
                                                    progress=progress), [], None
    else:
        result = PROTOCOLS[protocol](backbone, train_used, evals, task=bench.task, num_classes=bench.num_classes,
                                     config=pcfg, progress=progress)
        classes = list(getattr(train, "classes", [str(i) for i in range(bench.num_classes)]))
        result_metrics = {s: metrics.summarise(bench.task, t, sc, classes) for s, (t, sc) in result.predictions.items()}
        history, frozen = result.history, result.frozen_check
        if frozen is not None:
            log.info("frozen backbone unchanged (sha256 %s)", frozen["after"][:16])

    splits = {}
    for s, ds in datasets.items():
        files = [str(p) for p in getattr(ds, "split_files", [])]
        splits[s] = {"files": [{"path": str(Path(f).resolve()), "sha256": sha256_file(f)} for f in files], "n": len(ds)}
    splits[train_name]["n_used"] = len(train_used)
    from .protocols import backbone_checksum

    report = {
        "benchmark": bench.name, "task": bench.task, "metric": bench.metric, "protocol": protocol,
        "weights": {"source": cfg.weights, "file": str(weights_file) if weights_file else None,
                    "sha256": sha256_file(weights_file) if weights_file else None, "backbone": name,
                    "in_channels": train.in_channels, "run": str(run_dir) if run_dir else None},
        "root": str(root), "size": size, "dataset_options": {k: v for k, v in options.items()},
        "splits": splits, "train_frac": cfg.train_frac, "seed": cfg.seed, "device": device,
        "config": dataclasses.asdict(pcfg),
        "metrics": result_metrics, "history": history,
        "frozen_backbone": frozen,
        "backbone_sha256_final": backbone_checksum(backbone) if frozen is None else frozen["after"],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": time.time() - started, "software": software(),
    }
    main = "test" if "test" in result_metrics else (list(result_metrics)[-1] if result_metrics else None)
    if main and bench.metric in result_metrics[main]:
        log.info("%s %s: %s %s = %.4f", bench.name, protocol, main, bench.metric, result_metrics[main][bench.metric])
    return report


def default_output(cfg: EvalConfig, protocol: str) -> Path:
    """``<run folder>/eval/<benchmark>-<protocol>.json`` for a run folder, else ``eval/<...>.json``."""
    stem = f"{cfg.benchmark}-{protocol}"
    path = Path(cfg.weights)
    if cfg.weights != "random" and path.is_dir():
        return path / "eval" / f"{stem}.json"
    return Path("eval") / f"{stem}.json"
