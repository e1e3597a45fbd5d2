"""EuroSAT benchmark (issue 6): the full real lists (train 16,200 / val 5,400 / test 5,400 of
``../shared/data/eurosat-rgb/splits``; same sizes as SeCo's/torchgeo's 60/20/20 split but NOT the same
lists), ResNet-18, 64 px. Prints the val/test top-1 after every epoch and the final test top-1.

Goal: >= 95 % test top-1 for ``--protocol finetune --weights random`` (flips + rot90 augmentation).

Usage:
    python bench/bench_eurosat.py --protocol finetune --weights random --epochs 30
    python bench/bench_eurosat.py --protocol linear --weights runs/seco-r18
    python bench/bench_eurosat.py --protocol linear --weights runs/seco-r18 --preset reference   # SeCo's script
    python bench/bench_eurosat.py --time-steps 20     # only time 20 finetune steps, estimate an epoch

Runs through the library (``seco_train.evaluate``), the same code as ``seco-train eval``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def time_steps(root: str, steps: int, batch: int, workers: int, device: str) -> None:
    import torch

    from seco_train.evaluate.eurosat import EuroSAT
    from seco_train.evaluate.protocols import _augment
    from seco_train.model import build_backbone

    train = EuroSAT(root, "train")
    net, dim = build_backbone("resnet18")
    model = torch.nn.Sequential(net, torch.nn.Linear(dim, 10)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(train, batch_size=batch, shuffle=True, generator=gen, num_workers=workers)
    it = iter(loader)
    model.train()
    t_load = t_step = 0.0
    for i in range(steps + 2):
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(_augment(x.to(device), gen)), y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if i >= 2:  # warm-up steps excluded
            t_load += t1 - t0
            t_step += t2 - t1
    per_step = (t_load + t_step) / steps
    epoch_steps = len(train) // batch
    model.eval()
    with torch.no_grad():
        t0 = time.perf_counter()
        xs = torch.stack([train[i][0] for i in range(256)])
        t1 = time.perf_counter()
        model(xs.to(device))
        t2 = time.perf_counter()
    eval_s = (len(train) / 16200 * 10800 / 256) * (t2 - t0)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, device {device}")
    print(f"finetune step (batch {batch}): {1000 * per_step:.0f} ms (data {1000 * t_load / steps:.0f} ms, "
          f"forward+backward+update {1000 * t_step / steps:.0f} ms)")
    print(f"one training epoch ({epoch_steps} steps): ~{per_step * epoch_steps / 60:.1f} min; "
          f"evaluating val+test (10,800 images): ~{eval_s / 60:.1f} min")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", default="finetune", choices=["linear", "finetune", "knn"])
    p.add_argument("--weights", default="random")
    p.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "eurosat-rgb"))
    p.add_argument("--epochs", type=int, default=None, help="default: the protocol's (finetune 30, linear 100)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="default: the preset's (0; reference 42)")
    p.add_argument("--preset", default="default", choices=["default", "reference"])
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default=None, help="report JSON (default: bench/eurosat-<protocol>-<weights>.json)")
    p.add_argument("--time-steps", type=int, default=0, help="only time this many finetune steps and stop")
    a = p.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from seco_train.evaluate import EvalConfig, evaluate, write_report
    from seco_train.evaluate.evaluator import resolve_device

    if a.time_steps:
        time_steps(a.root, a.time_steps, a.batch_size or 64, a.workers, resolve_device(a.device))
        return

    def progress(p):  # seco_data.jobs.Progress
        if p.stage == "epoch":
            parts = " ".join(f"{k} {100 * v:.2f} %" for k, v in p.info.items() if k in ("val", "test"))
            print(f"epoch {p.done}/{p.total}: loss {p.info['loss']:.4f} lr {p.info['lr']:.2e} {parts} "
                  f"({time.time() - t0:.0f} s)", flush=True)

    cfg = EvalConfig("eurosat", weights=a.weights, protocol=a.protocol, root=a.root, epochs=a.epochs,
                     batch_size=a.batch_size, lr=a.lr, seed=a.seed, device=a.device, num_workers=a.workers,
                     eval_every_epoch=True, preset=a.preset)
    t0 = time.time()
    report = evaluate(cfg, progress=progress)
    name = Path(a.weights).stem if a.weights != "random" else "random"
    suffix = "" if a.preset == "default" else f"-{a.preset}"
    out = Path(a.out or ROOT / "bench" / f"eurosat-{a.protocol}-{name}{suffix}.json")
    write_report(report, out, overwrite=True)
    test = report["metrics"]["test"]["top1"]
    print(json.dumps({k: [round(100 * m["top1"], 2), [round(100 * v, 2) for v in m["ci95"]["top1"]]]
                      for k, m in report["metrics"].items()}))
    print(f"final test top-1: {100 * test:.2f} % ({'meets' if test >= 0.95 else 'below'} the 95 % goal) "
          f"in {report['seconds'] / 60:.1f} min; report {out}")
    if math.isnan(test):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
