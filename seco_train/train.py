"""The pre-training loop: one process per device, launched by torchrun for several.

Run folder::

    OUT/config.yaml          the resolved RunConfig
    OUT/checkpoint.pt        the latest checkpoint (atomic): model with momentum encoder and queues,
                             optimizer, step, RNG states, config
    OUT/metrics.csv          step, epoch, lr, loss, per-subspace loss and top-1, images/s
    OUT/tb/                  the same metrics for TensorBoard
    OUT/loss.png             loss and contrastive accuracy curves, drawn at the end
    OUT/ranks.json           every rank's final step and parameter checksum (they must agree)

The loop counts steps, not passes over the data: the loader streams shards drawn with replacement
(seco_train.data), so every rank always has a batch and DDP never waits at an epoch's end. An epoch
is ``samples_per_epoch / batch_size`` steps; the schedule's milestones are in epochs. The data stream
and the augmentations are functions of (seed, rank, worker, sample number), so resuming at step s
continues exactly where the run stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seco_data.errors import OutputError
from seco_data.jobs import Progress, ProgressFn
from seco_data.outputs import atomic_file, atomic_path, write_atomic, write_json
from seco_data.config import differences

from . import __version__
from .config import CONFIG_FILE, ConfigError, RunConfig, config_from_dict

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
FIELDS = ["step", "epoch", "lr", "loss", "loss_0", "loss_1", "loss_2", "acc_0", "acc_1", "acc_2", "images_per_s"]


@dataclass(frozen=True)
class TrainReport:
    out: Path
    steps: int
    total_steps: int
    seconds: float
    images_per_s: float
    last: dict

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["out"] = str(self.out)
        return d


# -- distributed --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPU); a no-op alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device == "cuda" else "gloo"
    if not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return Dist(rank, world, local)


def resolve_device(cfg: RunConfig) -> str:
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'device' is cuda but no CUDA device is visible",
                          hint="use --set device=cpu, or check the GPU with nvidia-smi")
    return cfg.device


# -- schedule -----------------------------------------------------------------------------------------

def lr_at(step: int, total: int, cfg: RunConfig) -> float:
    """Learning rate at ``step`` of ``total``: linear warm-up, then the step or cosine schedule, with
    epochs mapped onto the run's steps (milestone 120 of 200 epochs = 60 % of the steps)."""
    o = cfg.optim
    frac = step / max(total, 1)
    warm = o.warmup_epochs / o.epochs
    if warm > 0 and frac < warm:
        return o.lr * (step + 1) / max(1, round(warm * total))
    if o.schedule == "cosine":
        return o.lr * 0.5 * (1 + math.cos(math.pi * frac))
    return o.lr * o.gamma ** sum(frac >= m / o.epochs for m in o.milestones)


# -- checkpoints --------------------------------------------------------------------------------------

def save_checkpoint(path: Path, model, optimizer, step: int, cfg: RunConfig, *, loader_workers: int | None = None) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "config": cfg.to_dict(),
        "loader_workers": loader_workers,  # what data.workers resolved to: a resume reads the same streams
        "software": {"name": "seco", "version": __version__, "torch": torch.__version__},
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - a torn or foreign file: say which and what to do
        raise OutputError(f"cannot read checkpoint {path}: {' '.join(str(e).split())[:200]}",
                          hint="restore it from a backup, or start a new run with another --out") from None


def _restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


# -- metrics ------------------------------------------------------------------------------------------

class Metrics:
    """metrics.csv (always) and TensorBoard (optional), rank 0 only; truncated to ``start`` on resume."""

    def __init__(self, out: Path, start: int, tensorboard: bool):
        self.path = out / METRICS
        rows = []
        if start and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start]
        with atomic_file(self.path, "w", encoding="utf-8") as f:  # the rows kept, then appended to
            w = csv.DictWriter(f, FIELDS, extrasaction="ignore", lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        self.f = open(self.path, "a", newline="", encoding="utf-8")
        self.w = csv.DictWriter(self.f, FIELDS, extrasaction="ignore", lineterminator="\n")
        self.tb = None
        if tensorboard:
            with warnings.catch_warnings():  # tensorboard's own imports warn about deprecated modules
                warnings.simplefilter("ignore")
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"), purge_step=start or None)

    def write(self, row: dict) -> None:
        self.w.writerow(row)
        self.f.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and v != "":
                    self.tb.add_scalar(k, float(v), row["step"])

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()


def plot_metrics(out: Path) -> Path | None:
    """loss.png: loss and per-subspace contrastive top-1 against steps."""
    path = out / METRICS
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(r["step"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for k in ("loss", "loss_0", "loss_1", "loss_2"):
        vals = [float(r[k]) if r.get(k) else np.nan for r in rows]
        if not all(np.isnan(vals)):
            a.plot(steps, vals, label=k, lw=2 if k == "loss" else 1)
    for k in ("acc_0", "acc_1", "acc_2"):
        vals = [float(r[k]) if r.get(k) else np.nan for r in rows]
        if not all(np.isnan(vals)):
            b.plot(steps, vals, label=k)
    a.set(xlabel="step", ylabel="InfoNCE loss", title="loss")
    b.set(xlabel="step", ylabel="top-1", title="contrastive accuracy per subspace", ylim=(0, 1))
    a.legend()
    b.legend()
    fig.tight_layout()
    with atomic_path(out / "loss.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out / "loss.png"


# -- the loop -----------------------------------------------------------------------------------------

def build_model(cfg: RunConfig, dist_info: Dist):
    from .model import SeasonalContrast

    return SeasonalContrast(
        backbone=cfg.model.backbone, in_channels=len(cfg.data.bands), mode=cfg.model.mode, dim=cfg.model.dim,
        queue_size=cfg.model.queue_size, momentum=cfg.model.momentum, temperature=cfg.model.temperature,
        shuffle_bn=dist_info.world_size > 1 and not cfg.model.sync_bn,
    )


def view_config(cfg: RunConfig):
    from .views import ViewConfig

    stats = None
    if cfg.data.stretch == "stats":
        try:
            stats = json.loads(Path(cfg.data.stats).read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read the band statistics {cfg.data.stats}: {e}",
                              hint="compute them with `seco-train stats SHARDS --out stats.json`") from None
        stats = stats.get("bands", stats)
    return ViewConfig(mode=cfg.model.mode, size=cfg.data.size, bands=cfg.data.bands, stretch=cfg.data.stretch,
                      stats=stats)


def seasons_per_location(urls) -> int:
    """Seasons of each location in a shard set: the export's ``--seasons`` or the recipe's anchors (shard
    manifests), else the dates of the first sample."""
    from seco_data.export.reader import expand_urls, iter_shard
    from seco_data.export.webdataset import MANIFEST

    expanded = expand_urls(urls)
    for folder in dict.fromkeys(Path(u).parent for u in expanded if "://" not in u):
        if (folder / MANIFEST).is_file():
            m = json.loads((folder / MANIFEST).read_text("utf-8"))
            chosen = (m.get("options") or {}).get("seasons")
            anchors = (((m.get("recipe") or {}).get("seasons")) or {}).get("anchors")
            if chosen or anchors:
                return len(chosen or anchors)
    for sample in iter_shard(expanded[0]):
        return max(1, len(sample["json"].get("dates") or [None]))
    return 1


def total_steps(cfg: RunConfig) -> tuple[int, int]:
    """(total steps, samples per epoch). A moco epoch counts every location x season when ``epoch_unit`` is
    "reference" (the reference's SeasonalContrastBasic lists each date folder as a sample)."""
    from .data import dataset_size

    per_epoch = cfg.samples_per_epoch
    if not per_epoch:
        per_epoch = dataset_size(cfg.data.shards)
        if cfg.model.mode == "moco" and cfg.epoch_unit == "reference":
            per_epoch *= seasons_per_location(cfg.data.shards)
    if cfg.steps:
        return cfg.steps, per_epoch
    return max(1, round(cfg.optim.epochs * per_epoch / cfg.data.batch_size)), per_epoch


def loader_workers(cfg: RunConfig, state: dict | None) -> int:
    """``data.workers``, or when unset the count the run started with (its checkpoint), else one from
    this machine's cores (:func:`seco_train.data.default_workers`)."""
    from .data import default_workers

    if cfg.data.workers is not None:
        return cfg.data.workers
    if state is not None and state.get("loader_workers") is not None:
        return int(state["loader_workers"])
    return default_workers(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def build_optimizer(params, cfg: RunConfig, device: str) -> torch.optim.Optimizer:
    """SGD as the paper; one fused kernel per step on CUDA (the same update, the same state dict)."""
    return torch.optim.SGD(params, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                           weight_decay=cfg.optim.weight_decay, **({"fused": True} if device == "cuda" else {}))


def wrap_model(model, cfg: RunConfig, d: Dist, device: str):
    """The module the loop calls: the encoders compiled when ``cfg.compile`` (each alone: the shuffle-BN
    gathers, queues and heads stay eager, so there are no graph breaks to pay for), and DDP around the
    model on several ranks (gradients as views of the all-reduce buckets; a static graph: every step
    uses every query parameter)."""
    if cfg.compile:
        model.encoder_q.compile()
        model.encoder_k.compile()
    if d.world_size == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[d.local_rank] if device == "cuda" else None,
        broadcast_buffers=False,  # queues are kept identical by the all-gather, BN stats are per rank
        gradient_as_bucket_view=True, static_graph=True,
    )


def augment_on(cfg: RunConfig, device: str) -> str:
    """Where the views are made: ``data.augment_on``, ``auto`` resolved (the device on CUDA, else workers)."""
    if cfg.data.augment_on != "auto":
        return cfg.data.augment_on
    return "device" if device == "cuda" else "workers"


def view_batches(cfg: RunConfig, device: str, d: Dist, workers: int, start: int):
    """The run's batches as (q, [k...]) on ``device``: the loader (seco_train.data.make_loader) and the
    transform of its batches (the batched views on the device, or a copy of the workers' views),
    prefetched one batch ahead on a side stream on CUDA."""
    from .batched import BatchViews
    from .data import DeviceBatches, ToDevice, make_loader

    vcfg = view_config(cfg)
    loader = make_loader(cfg.data.shards, vcfg, batch_size=cfg.data.batch_size // d.world_size, workers=workers,
                         seed=cfg.seed, rank=d.rank, world_size=d.world_size, start_step=start,
                         augment_on=augment_on(cfg, device), pin_memory=device == "cuda")
    if augment_on(cfg, device) == "device":
        transform = BatchViews(vcfg, device, channels_last=cfg.channels_last)
    else:
        transform = ToDevice(device, channels_last=cfg.channels_last)
    return DeviceBatches(loader, transform, device)


def train_step(net, optimizer, q, keys, *, device: str, bf16: bool):
    """One optimisation step (forward with autocast, backward, SGD step); returns (loss, metrics)."""
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
        loss, m = net(q, keys)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), m


def train(cfg: RunConfig, out: str | Path, *, resume: bool = False,
          progress: ProgressFn | None = None, make_model=None) -> TrainReport:
    """Pre-train with ``cfg`` into ``out`` (see the module docstring); ``resume`` continues a run.

    ``make_model(cfg)`` builds the :class:`~seco_train.model.SeasonalContrast` to train instead of the
    one ``cfg.model`` describes (e.g. with an encoder of your own); it is called after seeding, so a
    resume rebuilds the same model."""
    t0 = time.monotonic()
    out = Path(out)
    device = resolve_device(cfg)
    d = setup_distributed(device)
    if cfg.data.batch_size % d.world_size:
        raise ConfigError(f"config key 'data.batch_size' ({cfg.data.batch_size}) must divide among "
                          f"{d.world_size} ranks")
    ckpt_path = out / CHECKPOINT
    state = None
    if ckpt_path.exists():
        if not resume:
            raise OutputError(f"{out} already holds a run (checkpoint.pt)",
                              hint="pass --resume to continue it, or choose a new --out")
        state = load_checkpoint(ckpt_path)
        saved = dict(state["config"])
        if "augment_on" not in (saved.get("data") or {}):  # a run from before augment_on: the same random
            saved = {**saved, "data": {**saved["data"], "augment_on": cfg.data.augment_on}}  # draws either way
        if "epoch_unit" not in saved:  # a run from before epoch_unit: a moco epoch was one sample per location
            saved["epoch_unit"] = "location" if (saved.get("model") or {}).get("mode") == "moco" else cfg.epoch_unit
        diff = differences(saved, cfg.to_dict())
        if diff:
            raise ConfigError(f"the run in {out} was started with other settings ({', '.join(diff)})",
                              hint="resume with the same config, or start a new run with another --out")
    elif resume and d.main:
        log.info("no checkpoint in %s: starting from step 0", out)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / CONFIG_FILE, cfg.to_yaml())

    torch.manual_seed(cfg.seed)  # the same initial weights and queues on every rank
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick each convolution's fastest algorithm once
    model = build_model(cfg, d) if make_model is None else make_model(cfg)
    if d.world_size > 1 and cfg.model.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg, device)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        _restore_rng(state["rng"])
    net = wrap_model(model, cfg, d, device)
    total, per_epoch = total_steps(cfg)
    steps_per_epoch = max(1, per_epoch // cfg.data.batch_size)
    workers = loader_workers(cfg, state)
    if d.main:
        log.info("loader: %d workers per rank, views made on the %s", workers,
                 "training device" if augment_on(cfg, device) == "device" else "workers")
    batches = view_batches(cfg, device, d, workers, start)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device == "cuda")
    metrics = Metrics(out, start, cfg.tensorboard) if d.main else None
    model.train()
    step = start
    last: dict = {}
    window_t, window_n = time.monotonic(), 0
    images_per_s = 0.0
    views = 4 if cfg.model.mode == "seco" else 2
    try:
        it = iter(batches)
        while step < total:
            q, keys = next(it)
            lr = lr_at(step, total, cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            loss, m = train_step(net, optimizer, q, keys, device=device, bf16=bf16)
            step += 1
            window_n += q.shape[0] * views * d.world_size
            if step % cfg.log_every == 0 or step == total:
                now = time.monotonic()
                images_per_s = window_n / max(now - window_t, 1e-9)
                window_t, window_n = now, 0
                last = {k: float(v) for k, v in m.items()}  # the only host sync: at log steps
                if not math.isfinite(last["loss"]):
                    raise FloatingPointError(f"the loss is {last['loss']} at step {step}: lower optim.lr or use fp32")
                row = {"step": step, "epoch": round(step / steps_per_epoch, 4), "lr": lr, **last,
                       "images_per_s": round(images_per_s, 1)}
                if metrics:
                    metrics.write(row)
                if progress and d.main:
                    progress(Progress(step, total, "step", info={**last, "images_per_s": images_per_s}))
            if d.main and (step % cfg.checkpoint_every == 0 or step == total):
                save_checkpoint(ckpt_path, model, optimizer, step, cfg, loader_workers=workers)
    finally:
        if metrics:
            metrics.close()
    _check_ranks(model, step, d, out)
    if d.main:
        plot_metrics(out)
    return TrainReport(out, step - start, total, time.monotonic() - t0, images_per_s, last)


def _checksum(model) -> float:
    with torch.no_grad():
        return float(sum(p.double().sum() for p in model.parameters()))


def _check_ranks(model, step: int, d: Dist, out: Path) -> None:
    """All ranks must end at the same step with the same weights: gathered to rank 0, written to ranks.json."""
    mine = {"rank": d.rank, "step": step, "checksum": _checksum(model)}
    ranks = [mine]
    if d.world_size > 1:
        import torch.distributed as dist

        ranks = [None] * d.world_size
        dist.all_gather_object(ranks, mine)
    if d.main:
        same = len({(r["step"], round(r["checksum"], 6)) for r in ranks}) == 1
        write_json(out / "ranks.json", {"in_step": same, "ranks": ranks})
        if not same:
            log.error("ranks ended out of step: %s", ranks)


def config_of(run: str | Path) -> RunConfig:
    """The config a run folder (or checkpoint file) was trained with."""
    p = Path(run)
    path = p / CHECKPOINT if p.is_dir() else p
    return config_from_dict(load_checkpoint(path)["config"])
