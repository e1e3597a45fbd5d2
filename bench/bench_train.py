"""Benchmark of a full SeCo training step (query + 3 keys: 4 images per sample), issue 5.

For ResNet-18 and ResNet-50: images/s of the training step
1. on synthetic in-memory batches (already on the device): the model's own rate;
2. fed by the real pipeline (shards -> views -> DataLoader workers -> device): the loader's share
   is the gap between the two; the goal on one H100 (batch 256, 224 px, bf16) is >= 90 % of (1);
3. the pipeline alone (batches/s without a model), to show whether it or the model is the limit.

Usage: python bench/bench_train.py [--shards DIR] [--batch 32] [--size 224] [--steps 6] [--workers N]
(without --shards, a 60-location simulator catalog is sampled and exported to a temporary folder).
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


def synthetic_rate(cfg, device: str, steps: int) -> float:
    import torch

    from seco_train.train import Dist, build_model, train_step

    torch.manual_seed(0)
    model = build_model(cfg, Dist()).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.03, momentum=0.9)
    b, c, s = cfg.data.batch_size, len(cfg.data.bands), cfg.data.size
    q = torch.randn(b, c, s, s, device=device).contiguous(memory_format=torch.channels_last)
    keys = [torch.randn_like(q) for _ in range(3)]
    bf16 = device == "cuda"
    train_step(model, opt, q, keys, device=device, bf16=bf16)  # warm-up
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        train_step(model, opt, q, keys, device=device, bf16=bf16)
    _sync(device)
    return steps * b * 4 / (time.perf_counter() - t)


def pipeline_rate(cfg, device: str, steps: int, with_model: bool) -> float:
    import torch

    from seco_train.data import make_loader
    from seco_train.train import Dist, build_model, train_step, view_config

    loader = make_loader(cfg.data.shards, view_config(cfg), batch_size=cfg.data.batch_size,
                         workers=cfg.data.workers, seed=0)
    it = iter(loader)
    model = opt = None
    if with_model:
        torch.manual_seed(0)
        model = build_model(cfg, Dist()).to(device).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.03, momentum=0.9)
    bf16 = device == "cuda"

    def one():
        q, keys = next(it)
        q = q.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        keys = [k.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last) for k in keys]
        if model is not None:
            train_step(model, opt, q, keys, device=device, bf16=bf16)

    one()
    one()  # warm-up: workers started, first batches in flight
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
    ap.add_argument("--shards", type=Path)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--backbones", default="resnet18,resnet50")
    args = ap.parse_args()

    import torch

    from seco_train.config import config_from_dict

    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = torch.cuda.get_device_name() if device == "cuda" else "none"
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, GPU {gpu}, torch {torch.__version__}, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    tmp = None
    shards = args.shards
    if shards is None:
        from seco_data.sample.run import sample
        from seco_data.recipe import load_recipe
        from seco_data.export.webdataset import ShardOptions, export_webdataset

        tmp = Path(tempfile.mkdtemp(prefix="seco-bench-train-"))
        sample(load_recipe("demo", {"n": 60}), tmp / "cat", workers=os.cpu_count() or 1)
        export_webdataset(tmp / "cat", tmp / "shards", options=ShardOptions(maxcount=4))
        shards = tmp / "shards"
    try:
        print(f"batch {args.batch} x 4 views, {args.size} px RGB, {'bf16' if device == 'cuda' else 'fp32'}, "
              f"{args.workers} loader workers, {args.steps} timed steps; images/s count all 4 views")
        for backbone in args.backbones.split(","):
            cfg = config_from_dict({}, {"data.shards": str(shards), "data.batch_size": args.batch,
                                        "data.size": args.size, "data.workers": args.workers,
                                        "model.backbone": backbone, "model.queue_size": args.batch * 64,
                                        "tensorboard": False})
            syn = synthetic_rate(cfg, device, args.steps)
            full = pipeline_rate(cfg, device, args.steps, with_model=True)
            print(f"{backbone}: synthetic batches {syn:8.1f} images/s | with the pipeline {full:8.1f} images/s "
                  f"({full / syn * 100:.0f} % of synthetic)")
        alone = pipeline_rate(cfg, device, max(args.steps, 4), with_model=False)
        print(f"pipeline alone (no model): {alone:.1f} images/s ({alone / 4:.1f} samples/s) with {args.workers} workers")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
