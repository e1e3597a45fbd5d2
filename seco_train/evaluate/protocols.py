"""The evaluation protocols, generic over the task (``multiclass``: cross-entropy, softmax;
``multilabel``: ``MultiLabelSoftMarginLoss`` as SeCo's BigEarthNet evaluation, sigmoid).

- :func:`linear`: the backbone is frozen (``eval()`` mode, so BatchNorm statistics never update, no
  gradients); features of every split are computed ONCE (cached in memory, optionally on disk keyed by
  the backbone's checksum and the dataset's fingerprint), then a linear layer is trained on them with
  SeCo's recipe: Adam lr 1e-3, 100 epochs, lr x0.1 at 60 % and 80 % of the epochs (60 and 80 of 100),
  batch 32. The backbone's checksum is compared before and after: a change raises
  :class:`FrozenBackboneChanged`. ``backbone_mode="train"`` reproduces the reference EuroSAT script
  instead (``presets``): the weights stay fixed but the backbone runs in train mode while the head
  learns, so BatchNorm normalises with batch statistics and its running statistics move; features
  are then recomputed every epoch and only the parameters are checked unchanged.
- :func:`finetune`: backbone + linear layer trained end to end (BatchNorm in train mode unless
  ``backbone_mode="eval"``, the reference BigEarthNet script's ``backbone.eval()``). Default
  SGD (momentum 0.9, Nesterov, weight decay 5e-4) with a per-step cosine schedule to 0 after a one-epoch
  linear warm-up; ``optimizer="adam"`` and ``schedule="step"`` (x0.1 at ``milestones``) are options.
  Augmentation (``augment``): random horizontal flip, vertical flip and rot90 per sample, from the
  seeded generator. Training drops a last partial batch (never the evaluation).
- :func:`knn`: frozen features as :func:`linear`; cosine similarity to every training feature, the
  ``k`` (20) most similar vote with equal weight; multiclass predicts the majority class, ties going to
  the smallest class index (scikit-learn's ``KNeighborsClassifier`` rule); scores are the vote fractions
  (multilabel: the fraction of neighbours carrying each label).

Every protocol evaluates every item of every evaluation split (no ``drop_last``, no per-batch
averaging) and returns the raw ``(targets, scores)``; ``metrics.summarise`` makes the metrics.
Determinism: all randomness (head initialisation, shuffling, augmentation) comes from ``seed``.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from seco_data.errors import SecoError, UsageError
from seco_data.outputs import atomic_file
from seco_data.jobs import Progress as Event
from seco_data.jobs import ProgressFn

from . import metrics
from .checkpoint import EpochCheckpoint, buffers, load_buffers, rng_state, set_rng_state

log = logging.getLogger(__name__)

#: called with :class:`seco_data.jobs.Progress` events, stage "features:<split>", "epoch" or "train"
Progress = ProgressFn


class FrozenBackboneChanged(SecoError, RuntimeError):
    """A frozen backbone's weights or BatchNorm statistics changed during a frozen protocol."""

    exit_code = 1
    hint = "this is a bug in the protocol: the reported numbers are not those of the given weights"


SCHEDULES = ("step", "cosine", "exponential")
MILESTONES_IN = ("fraction_round", "fraction_floor", "epoch")


@dataclass(frozen=True)
class ProtocolConfig:
    epochs: int
    batch_size: int
    lr: float
    #: "adam" | "sgd"
    optimizer: str = "adam"
    #: "step" (x ``gamma`` at ``milestones``) | "cosine" (per step, after ``warmup_epochs``) |
    #: "exponential" (x ``gamma`` after every epoch)
    schedule: str = "step"
    #: step schedule: where the lr is multiplied by ``gamma``, read as ``milestones_in`` says
    milestones: tuple[float, ...] = (0.6, 0.8)
    #: "fraction_round": fractions of ``epochs``, rounded (0.6 of 100 -> 60); "fraction_floor": fractions,
    #: truncated as the reference's ``int(0.6 * max_epochs)``; "epoch": absolute epoch numbers
    milestones_in: str = "fraction_round"
    #: step / exponential schedule factor
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    #: finetune: random flips and rot90
    augment: bool = False
    #: drop the last partial training batch of every epoch (None: linear keeps it, finetune drops it
    #: when there is more than one batch)
    drop_last: bool | None = None
    #: dropout before the linear head (the reference BigEarthNet head: Dropout(0.2) + Linear)
    head_dropout: float = 0.0
    #: the backbone's mode while the head (and, for finetune, the backbone) learns: "eval" (BatchNorm
    #: uses and keeps its running statistics) or "train" (batch statistics, running statistics updated);
    #: None: linear/knn "eval", finetune "train"
    backbone_mode: str | None = None
    #: knn: neighbours
    k: int = 20
    seed: int = 0
    #: batch of the frozen feature pass and of evaluation
    eval_batch_size: int = 256
    num_workers: int = 0
    device: str = "cpu"
    #: on-disk feature cache folder (None: memory only)
    cache_dir: str | None = None
    #: finetune: evaluate every split after every epoch (the history then holds the headline metric)
    eval_every_epoch: bool = False

    def __post_init__(self):
        if self.optimizer not in ("adam", "sgd"):
            raise UsageError(f"optimizer must be 'adam' or 'sgd', not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.milestones_in not in MILESTONES_IN:
            raise UsageError(f"milestones_in must be one of {', '.join(MILESTONES_IN)}, not {self.milestones_in!r}")
        if self.backbone_mode not in (None, "eval", "train"):
            raise UsageError(f"backbone_mode must be 'eval' or 'train', not {self.backbone_mode!r}")
        if not 0 <= self.head_dropout < 1 or not 0 < self.gamma <= 1:
            raise UsageError("head_dropout must be in [0, 1) and gamma in (0, 1]")
        if self.epochs < 0 or self.batch_size < 1 or self.eval_batch_size < 1 or self.k < 1:
            raise UsageError("epochs must be >= 0; batch sizes and k >= 1")
        if self.lr <= 0:
            raise UsageError(f"lr must be > 0, got {self.lr}")


DEFAULTS: dict[str, ProtocolConfig] = {
    "linear": ProtocolConfig(epochs=100, batch_size=32, lr=1e-3, optimizer="adam", schedule="step"),
    "finetune": ProtocolConfig(epochs=30, batch_size=64, lr=0.05, optimizer="sgd", schedule="cosine",
                               warmup_epochs=1.0, weight_decay=5e-4, augment=True),
    "knn": ProtocolConfig(epochs=0, batch_size=256, lr=1.0, k=20),
}


@dataclass
class ProtocolResult:
    #: split -> (targets, scores (N, C))
    predictions: dict[str, tuple[np.ndarray, np.ndarray]]
    #: one dict per epoch: epoch, loss (mean over the epoch's samples), lr, [<split>: headline metric]
    history: list[dict] = field(default_factory=list)
    #: frozen protocols: {"before": sha256, "after": sha256, "unchanged": True}
    frozen_check: dict | None = None
    #: frozen protocols: backbone forward passes over the data (one per batch per split)
    feature_batches: int = 0


# -- helpers ----------------------------------------------------------------------------------------------

def backbone_checksum(backbone: nn.Module) -> str:
    """sha256 over every parameter and buffer (BatchNorm statistics included), in key order."""
    h = hashlib.sha256()
    for key, value in sorted(backbone.state_dict().items()):
        h.update(key.encode())
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _task_loss(task: str) -> nn.Module:
    if task == "multiclass":
        return nn.CrossEntropyLoss()
    if task == "multilabel":
        return nn.MultiLabelSoftMarginLoss()
    raise UsageError(f"the generic protocols handle multiclass and multilabel tasks, not {task!r}")


def _scores(task: str, logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(dim=1) if task == "multiclass" else logits.sigmoid()


def _targets(task: str, y) -> torch.Tensor:
    return torch.as_tensor(y).long() if task == "multiclass" else torch.as_tensor(y).float()


def headline(task: str, targets: np.ndarray, scores: np.ndarray) -> float:
    """Top-1 (multiclass) or micro mAP (multilabel) of one split."""
    if task == "multiclass":
        return metrics.top1(targets, scores.argmax(axis=1))
    return metrics.average_precision(targets, scores, "micro")


def _loader(ds: Dataset, batch_size: int, cfg: ProtocolConfig, *, shuffle: bool = False,
            generator: torch.Generator | None = None, drop_last: bool = False) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last,
                      num_workers=cfg.num_workers, persistent_workers=False)


_MEMORY: collections.OrderedDict[str, tuple[torch.Tensor, np.ndarray]] = collections.OrderedDict()
_MEMORY_ITEMS = 6


@torch.no_grad()
def extract_features(backbone: nn.Module, dataset: Dataset, cfg: ProtocolConfig, *, checksum: str | None = None,
                     name: str = "", progress: Progress | None = None) -> tuple[torch.Tensor, np.ndarray, int]:
    """Frozen features ``(N, D)`` float32 on the CPU, the targets, and the number of backbone batches run.

    Cached in memory (and under ``cfg.cache_dir``) by (backbone checksum, ``dataset.fingerprint``) when
    the dataset has a fingerprint; a cache hit runs no batch.
    """
    backbone.eval()
    fp = getattr(dataset, "fingerprint", None)
    key = hashlib.sha256(f"{checksum or backbone_checksum(backbone)}|{fp}".encode()).hexdigest()[:32] if fp else None
    if key is not None and key in _MEMORY:
        _MEMORY.move_to_end(key)
        feats, y = _MEMORY[key]
        return feats, y, 0
    disk = Path(cfg.cache_dir) / f"features-{key}.pt" if key is not None and cfg.cache_dir else None
    if disk is not None and disk.is_file():
        saved = torch.load(disk, map_location="cpu", weights_only=True)
        feats, y = saved["features"], saved["targets"].numpy()
        log.info("features of %s from the cache %s", name or "split", disk)
    else:
        parts, ys, batches = [], [], 0
        loader = _loader(dataset, cfg.eval_batch_size, cfg)
        total = len(loader)
        for i, (x, t) in enumerate(loader):
            parts.append(backbone(x.to(cfg.device)).float().flatten(1).cpu())
            ys.append(torch.as_tensor(t))
            batches += 1
            if progress:
                progress(Event(i + 1, total, "batch", stage=f"features:{name}"))
        feats, y = torch.cat(parts), torch.cat(ys).numpy()
        if disk is not None:
            disk.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(disk) as f:
                torch.save({"features": feats, "targets": torch.from_numpy(y)}, f)
        if key is not None:
            _MEMORY[key] = (feats, y)
            while len(_MEMORY) > _MEMORY_ITEMS:
                _MEMORY.popitem(last=False)
        return feats, y, batches
    if key is not None:
        _MEMORY[key] = (feats, y)
    return feats, y, 0


def clear_feature_cache() -> None:
    """Forget the in-memory features (the on-disk cache is kept)."""
    _MEMORY.clear()


def _optimizer(params, cfg: ProtocolConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                           weight_decay=cfg.weight_decay)


def milestone_epochs(cfg: ProtocolConfig) -> list[int]:
    """The epochs (0-based, counted from the start) from which the step schedule's next factor applies."""
    if cfg.milestones_in == "epoch":
        return [int(m) for m in cfg.milestones]
    if cfg.milestones_in == "fraction_floor":
        return [int(m * cfg.epochs) for m in cfg.milestones]
    return [round(m * cfg.epochs) for m in cfg.milestones]


def _lr_factor(cfg: ProtocolConfig, step: int, steps_per_epoch: int) -> float:
    """The lr multiplier at optimisation step ``step`` (0-based). The step and exponential schedules
    change the lr between epochs, as a per-epoch ``MultiStepLR`` / ``ExponentialLR`` does."""
    epoch = step / max(steps_per_epoch, 1)
    if cfg.schedule == "step":
        return cfg.gamma ** sum(math.floor(epoch) >= m for m in milestone_epochs(cfg))
    if cfg.schedule == "exponential":
        return cfg.gamma ** math.floor(epoch)
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        return (step + 1) / warm
    total = max(cfg.epochs * steps_per_epoch - warm, 1)
    return 0.5 * (1 + math.cos(math.pi * min((step - warm) / total, 1.0)))


def _frozen(backbone: nn.Module, cfg: ProtocolConfig) -> str:
    backbone.to(cfg.device).eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    return backbone_checksum(backbone)


def _check_frozen(backbone: nn.Module, before: str) -> dict:
    after = backbone_checksum(backbone)
    if after != before:
        raise FrozenBackboneChanged(f"the frozen backbone changed during evaluation (sha256 {before[:12]} -> "
                                    f"{after[:12]})")
    return {"before": before, "after": after, "unchanged": True}


# -- protocols -------------------------------------------------------------------------------------------

def _head(dim: int, num_classes: int, cfg: ProtocolConfig) -> nn.Module:
    """The classifier: ``Linear``, or ``Dropout(p) + Linear`` (pl_bolts' ``SSLEvaluator`` with no hidden
    layer, the reference BigEarthNet head) when ``head_dropout > 0``."""
    linear_layer = nn.Linear(dim, num_classes)
    return nn.Sequential(nn.Dropout(cfg.head_dropout), linear_layer) if cfg.head_dropout > 0 else linear_layer


def _drop_last(cfg: ProtocolConfig, n: int, default: bool) -> bool:
    """Whether the last partial training batch is dropped (never when there is only one batch)."""
    drop = default if cfg.drop_last is None else cfg.drop_last
    return drop and n > cfg.batch_size


def parameter_checksum(backbone: nn.Module) -> str:
    """sha256 over the parameters only (not BatchNorm's running statistics), in name order."""
    h = hashlib.sha256()
    for key, value in sorted(backbone.named_parameters()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def linear(backbone: nn.Module, train: Dataset, evals: dict[str, Dataset], *, task: str, num_classes: int,
           config: ProtocolConfig = DEFAULTS["linear"], progress: Progress | None = None,
           checkpoint: EpochCheckpoint | None = None) -> ProtocolResult:
    """Frozen features once, then a linear layer (module docstring); predictions for every ``evals`` split.
    ``checkpoint``: the backbone-in-train-mode recipe saves its epochs there and resumes from them (the
    frozen-features recipe is minutes long and does not)."""
    cfg = config
    if (cfg.backbone_mode or "eval") == "train":
        return _linear_bn_train(backbone, train, evals, task=task, num_classes=num_classes, cfg=cfg, progress=progress,
                                checkpoint=checkpoint)
    loss_fn = _task_loss(task)
    before = _frozen(backbone, cfg)
    feats, y, batches = extract_features(backbone, train, cfg, checksum=before, name="train", progress=progress)
    evaluated = {}
    for split, ds in evals.items():
        f, t, b = extract_features(backbone, ds, cfg, checksum=before, name=split, progress=progress)
        evaluated[split] = (f, t)
        batches += b

    torch.manual_seed(cfg.seed)
    head = _head(feats.shape[1], num_classes, cfg).to(cfg.device)
    opt = _optimizer(head.parameters(), cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_all, y_all = feats.to(cfg.device), _targets(task, y).to(cfg.device)
    n = len(x_all)
    drop = _drop_last(cfg, n, default=False)
    stop = n - n % cfg.batch_size if drop else n
    steps_per_epoch = n // cfg.batch_size if drop else math.ceil(n / cfg.batch_size)
    history, step = [], 0
    for epoch in range(cfg.epochs):
        head.train()
        order = torch.randperm(n, generator=gen).to(cfg.device)
        total_loss, seen = 0.0, 0
        for s in range(0, stop, cfg.batch_size):
            lr = cfg.lr * _lr_factor(cfg, step, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = order[s:s + cfg.batch_size]
            loss = loss_fn(head(x_all[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
            step += 1
        row = {"epoch": epoch + 1, "loss": total_loss / max(seen, 1), "lr": lr}
        head.eval()
        with torch.no_grad():
            for split, (f, t) in evaluated.items():
                row[split] = headline(task, t, _scores(task, head(f.to(cfg.device))).cpu().numpy())
        history.append(row)
        if progress:
            progress(Event(epoch + 1, cfg.epochs, "epoch", stage="epoch", info=row))
    head.eval()
    with torch.no_grad():
        predictions = {split: (t, _scores(task, head(f.to(cfg.device))).cpu().numpy())
                       for split, (f, t) in evaluated.items()}
    return ProtocolResult(predictions, history, _check_frozen(backbone, before), batches)


def _linear_bn_train(backbone: nn.Module, train: Dataset, evals: dict[str, Dataset], *, task: str,
                     num_classes: int, cfg: ProtocolConfig, progress: Progress | None,
                     checkpoint: EpochCheckpoint | None = None) -> ProtocolResult:
    """The reference EuroSAT recipe: fixed weights, but the backbone in train mode while the head learns
    (batch statistics; BatchNorm's running statistics move), so features are recomputed every batch;
    evaluation in eval mode with the statistics the training left. Only the parameters are checked."""
    loss_fn = _task_loss(task)
    backbone.to(cfg.device)
    for p in backbone.parameters():
        p.requires_grad_(False)
    before = parameter_checksum(backbone)
    torch.manual_seed(cfg.seed)
    backbone.eval()
    with torch.no_grad():
        dim = backbone(train[0][0][None].to(cfg.device)).flatten(1).shape[1]
    head = _head(dim, num_classes, cfg).to(cfg.device)
    opt = _optimizer(head.parameters(), cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = _loader(train, cfg.batch_size, cfg, shuffle=True, generator=gen,
                     drop_last=_drop_last(cfg, len(train), default=False))
    steps_per_epoch = len(loader)
    history, step, batches, start = [], 0, 0, 0
    state = checkpoint.load() if checkpoint else None
    if state:
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        load_buffers(backbone, state["buffers"])
        gen.set_state(state["generator"])
        set_rng_state(state["rng"], cfg.device)
        history, step, batches, start = state["history"], state["step"], state["batches"], state["epoch"]

    def snapshot() -> dict:
        return {"head": head.state_dict(), "optimizer": opt.state_dict(), "buffers": buffers(backbone),
                "generator": gen.get_state(), "rng": rng_state(cfg.device), "history": history, "step": step,
                "batches": batches}

    for epoch in range(start, cfg.epochs):
        backbone.train()
        head.train()
        total_loss, seen = 0.0, 0
        for i, (x, t) in enumerate(loader):
            lr = cfg.lr * _lr_factor(cfg, step, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.no_grad():
                f = backbone(x.to(cfg.device)).float().flatten(1)
            loss = loss_fn(head(f), _targets(task, t).to(cfg.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += float(loss.detach()) * len(x)
            seen += len(x)
            step += 1
            batches += 1
            if progress:
                progress(Event(i + 1, steps_per_epoch, "step", stage="train",
                               info={"epoch": epoch + 1, "loss": float(loss.detach())}))
        row = {"epoch": epoch + 1, "loss": total_loss / max(seen, 1), "lr": lr}
        if cfg.eval_every_epoch:
            backbone.eval()
            for split, ds in evals.items():
                f, t, _ = extract_features(backbone, ds, cfg, name=split)
                with torch.no_grad():
                    row[split] = headline(task, t, _scores(task, head.eval()(f.to(cfg.device))).cpu().numpy())
        history.append(row)
        log.info("linear (backbone in train mode) epoch %d: %s", epoch + 1, row)
        if checkpoint:
            checkpoint.save(epoch + 1, snapshot, last=epoch + 1 == cfg.epochs)
        if progress:
            progress(Event(epoch + 1, cfg.epochs, "epoch", stage="epoch", info=row))
    backbone.eval()
    head.eval()
    predictions = {}
    for split, ds in evals.items():
        f, t, b = extract_features(backbone, ds, cfg, name=split, progress=progress)
        batches += b
        with torch.no_grad():
            predictions[split] = (t, _scores(task, head(f.to(cfg.device))).cpu().numpy())
    after = parameter_checksum(backbone)
    if after != before:
        raise FrozenBackboneChanged(f"the frozen backbone's weights changed during evaluation (sha256 {before[:12]} -> "
                                    f"{after[:12]})")
    frozen = {"before": before, "after": after, "unchanged": True, "scope": "parameters",
              "batchnorm": "train mode while the head learned: running statistics updated (reference recipe)"}
    return ProtocolResult(predictions, history, frozen, batches)


def knn(backbone: nn.Module, train: Dataset, evals: dict[str, Dataset], *, task: str, num_classes: int,
        config: ProtocolConfig = DEFAULTS["knn"], progress: Progress | None = None,
        checkpoint: EpochCheckpoint | None = None) -> ProtocolResult:
    """Cosine k-NN on frozen features (module docstring); predictions for every ``evals`` split."""
    cfg = config
    _task_loss(task)  # validates the task
    before = _frozen(backbone, cfg)
    feats, y, batches = extract_features(backbone, train, cfg, checksum=before, name="train", progress=progress)
    bank = nn.functional.normalize(feats.float(), dim=1)
    k = min(cfg.k, len(bank))
    if k < cfg.k:
        log.warning("k-NN: only %d training items, using k=%d instead of %d", len(bank), k, cfg.k)
    if task == "multiclass":
        votes_of = torch.nn.functional.one_hot(torch.as_tensor(y).long(), num_classes).float()
    else:
        votes_of = torch.as_tensor(y).float()
    predictions = {}
    for split, ds in evals.items():
        f, t, b = extract_features(backbone, ds, cfg, checksum=before, name=split, progress=progress)
        batches += b
        q = nn.functional.normalize(f.float(), dim=1)
        scores = []
        for s in range(0, len(q), 1024):
            sim = q[s:s + 1024] @ bank.T
            idx = sim.topk(k, dim=1).indices
            scores.append(votes_of[idx].sum(dim=1) / k)
        predictions[split] = (t, torch.cat(scores).numpy() if scores else np.zeros((0, num_classes)))
    return ProtocolResult(predictions, [], _check_frozen(backbone, before), batches)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per sample: horizontal flip, vertical flip (p=0.5 each), rot90 by k ~ U{0..3} (square images)."""
    n = x.shape[0]
    r = torch.rand(n, 2, generator=gen) < 0.5
    k = torch.randint(0, 4, (n,), generator=gen)
    x = torch.where(r[:, 0].view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
    x = torch.where(r[:, 1].view(-1, 1, 1, 1).to(x.device), x.flip(-2), x)
    if x.shape[-1] == x.shape[-2]:
        out = x.clone()
        for j in range(1, 4):
            sel = (k == j).nonzero().flatten().to(x.device)
            if len(sel):
                out[sel] = torch.rot90(x[sel], j, dims=(-2, -1))
        x = out
    return x


@torch.no_grad()
def _predict(model: nn.Module, ds: Dataset, task: str, cfg: ProtocolConfig) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    ys, ss = [], []
    for x, t in _loader(ds, cfg.eval_batch_size, cfg):
        ss.append(_scores(task, model(x.to(cfg.device)).float()).cpu())
        ys.append(torch.as_tensor(t))
    return torch.cat(ys).numpy(), torch.cat(ss).numpy()


def finetune(backbone: nn.Module, train: Dataset, evals: dict[str, Dataset], *, task: str, num_classes: int,
             config: ProtocolConfig = DEFAULTS["finetune"], progress: Progress | None = None,
             checkpoint: EpochCheckpoint | None = None) -> ProtocolResult:
    """Backbone + linear layer trained end to end (module docstring); predictions for every ``evals`` split.
    ``checkpoint``: epochs are saved there, and a matching saved state is resumed."""
    cfg = config
    loss_fn = _task_loss(task)
    torch.manual_seed(cfg.seed)
    backbone.to(cfg.device)
    backbone.eval()
    with torch.no_grad():
        x0, _ = train[0]
        dim = backbone(x0[None].to(cfg.device)).flatten(1).shape[1]
    for p in backbone.parameters():
        p.requires_grad_(True)
    model = nn.Sequential(backbone, nn.Flatten(1), _head(dim, num_classes, cfg)).to(cfg.device)
    opt = _optimizer(model.parameters(), cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
    drop = _drop_last(cfg, len(train), default=True)
    loader = _loader(train, cfg.batch_size, cfg, shuffle=True, generator=gen, drop_last=drop)
    steps_per_epoch = len(loader)
    history, step, start = [], 0, 0
    state = checkpoint.load() if checkpoint else None
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        aug_gen.set_state(state["augment_generator"])
        set_rng_state(state["rng"], cfg.device)
        history, step, start = state["history"], state["step"], state["epoch"]

    def snapshot() -> dict:
        return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "optimizer": opt.state_dict(),
                "generator": gen.get_state(), "augment_generator": aug_gen.get_state(), "rng": rng_state(cfg.device),
                "history": history, "step": step}

    for epoch in range(start, cfg.epochs):
        model.train()
        if (cfg.backbone_mode or "train") == "eval":
            backbone.eval()  # the reference's on_train_epoch_start: BatchNorm keeps its statistics
        total_loss, seen = 0.0, 0
        for i, (x, t) in enumerate(loader):
            lr = cfg.lr * _lr_factor(cfg, step, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            x = x.to(cfg.device)
            if cfg.augment:
                x = _augment(x, aug_gen)
            loss = loss_fn(model(x), _targets(task, t).to(cfg.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += float(loss.detach()) * len(x)
            seen += len(x)
            step += 1
            if progress:
                progress(Event(i + 1, steps_per_epoch, "step", stage="train",
                               info={"epoch": epoch + 1, "loss": float(loss.detach())}))
        row = {"epoch": epoch + 1, "loss": total_loss / max(seen, 1), "lr": lr}
        if cfg.eval_every_epoch:
            for split, ds in evals.items():
                row[split] = headline(task, *_predict(model, ds, task, cfg))
        history.append(row)
        log.info("finetune epoch %d: %s", epoch + 1, row)
        if checkpoint:
            checkpoint.save(epoch + 1, snapshot, last=epoch + 1 == cfg.epochs)
        if progress:
            progress(Event(epoch + 1, cfg.epochs, "epoch", stage="epoch", info=row))
    predictions = {split: _predict(model, ds, task, cfg) for split, ds in evals.items()}
    return ProtocolResult(predictions, history, None, 0)


PROTOCOLS: dict[str, Callable[..., ProtocolResult]] = {"linear": linear, "finetune": finetune, "knn": knn}
