"""Benchmark of SeCo's input pipeline and training step (query + 3 keys: 4 images per sample), issues 5
and 14, measured side by side in one run, for the two places views are made (``data.augment_on``):

- ``workers``: each loader worker makes a sample's four float32 views (the reference's way; today's
  default before issue 14), here from shards with all 12 bands as exported by default;
- ``device``: workers ship the drawn seasons as uint8 plus the random parameters, the views of a whole
  batch are made on the training device (seco_train.batched), here from a training-ready export
  (``--bands B04,B03,B02 --dtype uint8``).

It prints, for 224 px SeCo views:
1. shard bytes per sample of each export;
2. loader samples/s per core (one process, one thread: reading, decoding, the random draws and either
   the views or the packing) and bytes per sample shipped to the device (goal: >= 400 samples/s, 4x);
3. the device's own rate of making views from packed batches (device path);
4. for ResNet-18 and ResNet-50: images/s of the training step on synthetic batches already on the
   device, and fed by each pipeline (loader workers -> pinned memory -> side-stream copy and views ->
   step), with the share of the synthetic rate (goal on one H100, batch 256, bf16: >= 90 %);
5. each pipeline alone (no model).

On CUDA the step runs as ``seco-train run`` does: channels-last, bf16 autocast, fused SGD,
cudnn.benchmark, the next batch prepared on a side stream (seco_train.data.DeviceBatches), the
encoders compiled with ``--compile``. The report goes to stdout and, with ``--out``, to a file.

Usage: python bench/bench_train.py [--device auto|cpu|cuda] [--batch 16] [--size 224] [--steps 3]
       [--workers N] [--backbones resnet18,resnet50] [--locations 60] [--shards-dir DIR] [--compile]
       [--out FILE]
GPU (one H100): python bench/bench_train.py --device cuda --batch 256 --steps 20 --out bench-gpu.txt
(without --shards-dir, a simulator catalog of --locations locations is sampled and exported twice to a
temporary folder; the stream loops over it, so a small catalog suffices.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

PATHS = ("workers", "device")  # data.augment_on; the shards each reads: SHARDS[path]
SHARDS = {"workers": "all-bands", "device": "rgb-uint8"}


class Report:
    """Lines printed as they come and kept for --out."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)


def make_shards(root: Path, locations: int, workers: int) -> dict[str, Path]:
    """A simulator catalog exported as today (12 bands, uint16) and training-ready (RGB, uint8)."""
    from seco_data.export.webdataset import ShardOptions, export_webdataset
    from seco_data.recipe import load_recipe
    from seco_data.sample.run import sample

    if not (root / "cat").exists():
        sample(load_recipe("demo", {"n": locations}), root / "cat", workers=workers)
    out = {}
    for name, opts in {"all-bands": ShardOptions(maxcount=8),
                       "rgb-uint8": ShardOptions(maxcount=8, bands=("B04", "B03", "B02"), dtype="uint8")}.items():
        if not (root / name / "shards.json").exists():
            export_webdataset(root / "cat", root / name, options=opts, workers=workers)
        out[name] = root / name
    return out


def shard_bytes(folder: Path) -> float:
    from seco_train.data import dataset_size

    tars = sorted(folder.glob("*.tar"))
    return sum(t.stat().st_size for t in tars) / dataset_size([str(t) for t in tars])


def make_cfg(shards: Path, args, backbone: str, path: str):
    from seco_train.config import config_from_dict

    return config_from_dict({}, {"data.shards": str(shards), "data.batch_size": args.batch, "data.size": args.size,
                                 "data.workers": args.workers, "data.augment_on": path,
                                 "model.backbone": backbone, "model.queue_size": args.batch * 64,
                                 "compile": args.compile, "tensorboard": False})


def loader_rate(cfg, samples: int) -> tuple[float, float]:
    """Samples/s of one loader process on one core, and bytes per sample it ships."""
    import torch

    from seco_train.batched import batch_bytes
    from seco_train.data import SeasonalViews
    from seco_train.train import view_config

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        it = iter(SeasonalViews(cfg.data.shards, view_config(cfg), seed=0, packed=cfg.data.augment_on == "device"))
        first = next(it)  # opened, warm
        shipped = batch_bytes(first) if isinstance(first, dict) else \
            sum(v.numel() * v.element_size() for v in (first[0], *first[1]))
        t = time.perf_counter()
        for _ in range(samples):
            next(it)
        return samples / (time.perf_counter() - t), shipped
    finally:
        torch.set_num_threads(threads)


def device_views_rate(cfg, device: str, steps: int) -> float:
    """Samples/s of the device making views from packed batches already on the host (copy included)."""
    from seco_train.batched import BatchViews, collate
    from seco_train.data import SeasonalViews
    from seco_train.train import view_config

    vcfg = view_config(cfg)
    it = iter(SeasonalViews(cfg.data.shards, vcfg, seed=0, packed=True))
    batch = collate([next(it) for _ in range(cfg.data.batch_size)])
    if device == "cuda":
        batch = {k: v.pin_memory() for k, v in batch.items()}
    views = BatchViews(vcfg, device, channels_last=True)
    views(batch)  # warm-up
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        views(batch)
    _sync(device)
    return steps * cfg.data.batch_size / (time.perf_counter() - t)


def _model(cfg, device: str):
    import torch

    from seco_train.train import Dist, build_model, build_optimizer, wrap_model

    torch.manual_seed(0)
    model = build_model(cfg, Dist()).to(device).to(memory_format=torch.channels_last)
    opt = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg, device)
    return wrap_model(model, cfg, Dist(), device), opt


def synthetic_rate(cfg, device: str, steps: int) -> float:
    """Images/s of the training step on batches already on the device."""
    import torch

    from seco_train.train import train_step

    net, opt = _model(cfg, device)
    b, c, s = cfg.data.batch_size, len(cfg.data.bands), cfg.data.size
    q = torch.randn(b, c, s, s, device=device).contiguous(memory_format=torch.channels_last)
    keys = [torch.randn_like(q) for _ in range(3)]
    bf16 = device == "cuda"
    for _ in range(2):  # warm-up (cudnn.benchmark, compile)
        train_step(net, opt, q, keys, device=device, bf16=bf16)
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        train_step(net, opt, q, keys, device=device, bf16=bf16)
    _sync(device)
    return steps * b * 4 / (time.perf_counter() - t)


def pipeline_rate(cfg, device: str, steps: int, with_model: bool) -> float:
    """Images/s of the run's own batches (seco_train.train.view_batches), with the training step or alone."""
    from seco_train.train import Dist, train_step, view_batches

    batches = iter(view_batches(cfg, device, Dist(), cfg.data.workers, 0))
    net = opt = None
    if with_model:
        net, opt = _model(cfg, device)
    bf16 = device == "cuda"

    def one():
        q, keys = next(batches)
        if net is not None:
            train_step(net, opt, q, keys, device=device, bf16=bf16)

    for _ in range(2):  # warm-up: workers started, first batches in flight
        one()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        one()
    _sync(device)
    return steps * cfg.data.batch_size * 4 / (time.perf_counter() - t)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per measurement")
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: seco-train's, from the cores)")
    ap.add_argument("--backbones", default="resnet18,resnet50")
    ap.add_argument("--locations", type=int, default=60)
    ap.add_argument("--loader-samples", type=int, default=200, help="samples timed per loader measurement")
    ap.add_argument("--shards-dir", type=Path, help="keep the catalog and shards here (reused when present)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the encoders (as run's compile: true)")
    ap.add_argument("--out", type=Path, help="also write the report to this file")
    args = ap.parse_args()

    import torch

    from seco_train.data import default_workers

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.workers is None:
        args.workers = default_workers()
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    say = Report()
    gpu = torch.cuda.get_device_name() if device == "cuda" else "none used"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    say(f"machine: {platform.machine()} {cores} cores, device {device}, GPU {gpu}, torch {torch.__version__}, "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    tmp = None
    root = args.shards_dir
    if root is None:
        tmp = root = Path(tempfile.mkdtemp(prefix="seco-bench-train-"))
    try:
        t = time.perf_counter()
        shards = make_shards(root, args.locations, max(1, (cores or 2)))
        say(f"shards: {args.locations} simulator locations, exported in {time.perf_counter() - t:.0f} s")
        for name, folder in shards.items():
            say(f"  {name:9s}: {shard_bytes(folder) / 1e6:5.2f} MB per sample on disk")
        say(f"{args.size} px SeCo views (q + 3 keys), RGB; workers path from the all-bands shards, device path "
            f"from the rgb-uint8 shards")
        say("loader, one process on one core:")
        rates = {}
        for path in PATHS:
            cfg = make_cfg(shards[SHARDS[path]], args, "resnet18", path)
            rate, shipped = loader_rate(cfg, args.loader_samples)
            rates[path] = rate
            say(f"  {path:7s}: {rate:7.1f} samples/s per core, {shipped / 1e6:5.2f} MB per sample shipped to the device")
        say(f"  device path / workers path: {rates['device'] / rates['workers']:.1f}x samples/s per core")
        cfg = make_cfg(shards["rgb-uint8"], args, "resnet18", "device")
        say(f"views made on the device ({device}, batch {args.batch}): "
            f"{device_views_rate(cfg, device, max(args.steps, 3)):.1f} samples/s")
        say(f"training step: batch {args.batch} x 4 views, {'bf16' if device == 'cuda' else 'fp32'}, channels-last, "
            f"{args.workers} loader workers, compile {args.compile}, {args.steps} timed steps; images/s count all 4 views")
        for backbone in args.backbones.split(","):
            syn = synthetic_rate(make_cfg(shards["rgb-uint8"], args, backbone, "device"), device, args.steps)
            line = f"  {backbone}: synthetic {syn:8.1f} images/s"
            for path in PATHS:
                full = pipeline_rate(make_cfg(shards[SHARDS[path]], args, backbone, path), device, args.steps, True)
                line += f" | {path} pipeline {full:8.1f} ({full / syn * 100:3.0f} %)"
            say(line)
        for path in PATHS:
            alone = pipeline_rate(make_cfg(shards[SHARDS[path]], args, "resnet18", path), device,
                                  max(args.steps, 4), with_model=False)
            say(f"pipeline alone, {path} path: {alone:8.1f} images/s ({alone / 4:.1f} samples/s) "
                f"with {args.workers} workers")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.out:
        from seco_data.outputs import write_atomic

        write_atomic(args.out, "\n".join(say.lines) + "\n")


if __name__ == "__main__":
    main()
