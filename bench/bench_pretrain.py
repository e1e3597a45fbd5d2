"""The real pre-training experiment (issue 6): SeCo vs MoCo-v2 vs MoCo-v2+TP vs random init.

Real same-place image pairs, built offline with seco's own pipeline:

1. ``seco-data sources make-local-catalog`` over the 14 labelled OSCD cities (two real Sentinel-2 L1C
   dates per city, 2015-2018) in ``../shared/data/oscd``;
2. ``seco-data sample --source stac`` on a grid of points covering every city: 66 x 66 px patches at
   10 m (B02, B03, B04; crops of 64 px, the size of EuroSAT's images), season 0 = the city's first date, season 1 =
   its second; non-overlapping, fully covered patches only;
3. ``seco-data export --format webdataset``;
4. ``seco-train run`` once per mode (``seco``, ``moco``, ``moco_tp``) with identical budgets (steps,
   batch, queue, schedule, seed);
5. ``seco-train eval eurosat --protocol linear`` for each run and for random init, on the full real
   EuroSAT lists of ``../shared/data/eurosat-rgb``, once per ``--presets`` entry: ``default`` (this
   project's protocol: frozen backbone in eval mode, features once) and ``reference`` (the SeCo script's
   recipe: backbone BatchNorm in train mode while the head learns, x / 255 inputs, drop_last, seed 42,
   val scored), each headline with its 95 % bootstrap interval, then ``seco-train report --paired``.

Every step goes through the CLI, as a user would run it, and every step resumes: rerunning the
script after an interruption continues where it stopped.

Usage:
    python bench/bench_pretrain.py --work /tmp/pretrain --steps 1500
    python bench/bench_pretrain.py --work /tmp/pretrain --steps 1500 --only seco  # one mode
    python bench/bench_pretrain.py --work /tmp/pretrain-s1 --steps 2000 --seed 1 --no-random  # another seed
    python bench/bench_pretrain.py --work /tmp/pretrain --only seco --presets default,reference
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = ("seco", "moco", "moco_tp")
PATCH_PX = 66  # 660 m: a multiple of 60 m, as recipes require; crops are 64 px like EuroSAT
RES_M = 10


def bin_(name: str) -> str:
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else name


def run(cmd: list[str], log: Path, ok: tuple[int, ...] = (0,)) -> float:
    """Run one CLI step, its output appended to ``log``; exit with the log's tail if it fails."""
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if r.returncode not in ok:
        tail = log.read_text().splitlines()[-20:]
        sys.exit(f"step failed (exit {r.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))
    return time.perf_counter() - t0


def city_dates(images: Path, city: str) -> tuple[str, str]:
    """The two acquisition dates of ``dates.txt`` (``date_1: 20160120``), as ISO dates."""
    d = dict(line.split(":") for line in (images / city / "dates.txt").read_text().split("\n") if ":" in line)
    return tuple(f"{v.strip()[:4]}-{v.strip()[4:6]}-{v.strip()[6:8]}" for v in (d["date_1"], d["date_2"]))


def grid_points(images: Path, city: str, out: Path) -> int:
    """A lon/lat grid with one point per patch width, inset half a patch, over one city's scene."""
    import rasterio

    half = PATCH_PX * RES_M / 2
    b02 = next((images / city / "imgs_1").glob("*_B02.tif"))
    with rasterio.open(b02) as ds:
        w, s, e, n = ds.bounds
    m_lat = 111_320.0
    m_lon = m_lat * math.cos(math.radians((s + n) / 2))
    rows = []
    lat = n - half / m_lat
    while lat - half / m_lat >= s:
        lon = w + half / m_lon
        while lon + half / m_lon <= e:
            rows.append((f"{lon:.6f}", f"{lat:.6f}", f"{city}-{len(rows)}"))
            lon += 2 * half / m_lon
        lat -= 2 * half / m_lat
    with out.open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["lon", "lat", "id"])
        wr.writerows(rows)
    return len(rows)


RECIPE = """\
# Real bi-temporal pairs: one labelled OSCD city through the local STAC source (bench_pretrain.py).
name: oscd-{city}
description: The two real Sentinel-2 L1C dates of the OSCD city {city}, {px} px RGB patches at 10 m.
source: stac
product: L1C
bands: [B02, B03, B04]
patch: {{10: {px}}}
seasons:
  anchors: [{d1}, {d2}]   # the city's two dates (dates.txt)
  window_days: 10
  shift_days: 0
locations:
  sampler: points
  path: {points}
  land_only: false
filters:
  scene_cloud_max: 100
  patch_cloud_max: 1.0
  coverage_min: 1.0
n: {n}
seed: 0
compress: zstd
source_options:
  url: {stac}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/seco-pretrain"))
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("SECO_SHARED", ROOT.parent / "shared")))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--queue", type=int, default=256,
                    help="keys in the queue; well below the ~950 locations, or stale keys of the query's own "
                         "location become false negatives")
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--size", type=int, default=64, help="training crop size (px)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0, help="pre-training seed (views, init, data order)")
    ap.add_argument("--only", choices=MODES, action="append", help="modes to run (default: all)")
    ap.add_argument("--no-random", action="store_true", help="skip the random-init probe")
    ap.add_argument("--presets", default="default",
                    help="comma-separated evaluation presets (default, reference); reference is slow on a CPU: "
                         "the backbone runs on every training batch of every epoch")
    ap.add_argument("--eval-workers", type=int, default=0, help="DataLoader workers of the evaluations")
    a = ap.parse_args()
    presets = [p.strip() for p in a.presets.split(",") if p.strip()]

    images = a.shared / "data" / "oscd" / "Onera Satellite Change Detection dataset - Images"
    eurosat = a.shared / "data" / "eurosat-rgb"
    for p in (images, eurosat):
        if not p.is_dir():
            sys.exit(f"missing real data: {p} (pass --shared)")
    a.work.mkdir(parents=True, exist_ok=True)
    log = a.work / "log.txt"
    data, train = bin_("seco-data"), bin_("seco-train")
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, GPU {gpu}, torch {torch.__version__}, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, work {a.work}", flush=True)

    times: dict[str, float] = {}
    stac = a.work / "oscd-stac"
    if not (stac / "catalog.json").exists():
        times["stac"] = run([data, "sources", "make-local-catalog", str(images), "--out", str(stac)], log)
    # one catalog per city: the cities' dates are years apart, and a season window is at most 183 days
    cities = sorted(p.name for p in images.iterdir() if (p / "dates.txt").exists())
    n_points = n_samples = 0
    times["sample"] = times["export"] = 0.0
    for city in cities:
        points = a.work / "points" / f"{city}.csv"
        points.parent.mkdir(exist_ok=True)
        n = grid_points(images, city, points)
        n_points += n
        d1, d2 = city_dates(images, city)
        recipe = a.work / "recipes" / f"oscd-{city}.yaml"
        recipe.parent.mkdir(exist_ok=True)
        recipe.write_text(RECIPE.format(city=city, px=PATCH_PX, points=points, n=n, d1=d1, d2=d2,
                                        stac=stac / "catalog.json"))
        cat, shards = a.work / "catalogs" / city, a.work / "shards" / city
        # exit 8: the grid ran out of points before n passed the filters (edge patches not fully covered)
        times["sample"] += run([data, "sample", "--recipe", str(recipe), "--out", str(cat), "--workers", "2"], log,
                               ok=(0, 8))
        times["export"] += run([data, "export", str(cat), "--format", "webdataset", "--out", str(shards),
                                "--prefix", city, "--maxcount", "100"], log)
        n_samples += json.loads((shards / "shards.json").read_text())["samples"]
    shards = str(a.work / "shards" / "*" / "*.tar")
    print(f"data: {n_points} grid points over {len(cities)} OSCD cities -> {n_samples} locations x 2 real dates "
          f"({PATCH_PX} px RGB at 10 m); catalogs {a.work / 'catalogs'}, shards {shards}", flush=True)

    modes = a.only or list(MODES)
    epochs = a.steps * a.batch / max(1, n_samples)
    print(f"pre-training: ResNet-18, {a.steps} steps x batch {a.batch} ({epochs:.0f} epochs), {a.size} px crops, "
          f"queue {a.queue}, SGD lr {a.lr} step schedule (x0.1 at 60 % and 80 %), T 0.07, seed {a.seed}", flush=True)
    reports: list[tuple[str, str, Path]] = []
    for mode in modes:
        out = a.work / "runs" / mode
        sets = [f"model.mode={mode}", f"steps={a.steps}", f"data.size={a.size}", f"data.batch_size={a.batch}",
                f"model.queue_size={a.queue}", f"optim.lr={a.lr}", f"data.workers={a.workers}", "log_every=50",
                "checkpoint_every=250", f"device={a.device}", f"seed={a.seed}"]
        cmd = [train, "run", shards, "--out", str(out), "--resume"]
        for s in sets:
            cmd += ["--set", s]
        times[f"train {mode}"] = run(cmd, log)
        print(f"  {mode}: trained in {times[f'train {mode}'] / 60:.1f} min ({out})", flush=True)
    weights = [("random", "random")] if not a.no_random else []
    weights += [(m, str(a.work / "runs" / m)) for m in modes]
    for preset in presets:
        for name, w in weights:
            rep = a.work / "eval" / f"eurosat-linear-{preset}-{name}.json"
            if not rep.exists():
                times[f"eval {preset} {name}"] = run(
                    [train, "eval", "eurosat", "--weights", w, "--protocol", "linear", "--preset", preset,
                     "--root", str(eurosat), "--out", str(rep), "--device", a.device,
                     "--workers", str(a.eval_workers)], log)
                print(f"  eval {preset} {name}: {times[f'eval {preset} {name}'] / 60:.1f} min", flush=True)
            reports.append((preset, name, rep))

    print("\nEuroSAT linear probe (frozen ResNet-18), full real lists (train 16,200 / val 5,400 / test 5,400; same "
          "sizes as SeCo's split, not the same lists); % with 95 % bootstrap intervals (1,000 resamples of images):")
    print(f"{'weights':<10} {'preset':<10} {'test top-1 % [95 % CI]':>26} {'val top-1 % [95 % CI]':>26} "
          f"{'val, reference per-batch mean':>30}")
    for preset, name, rep in reports:
        r = json.loads(rep.read_text())

        def cell(split):
            m = r["metrics"][split]
            lo, hi = m["ci95"]["top1"]
            return f"{100 * m['top1']:.2f} [{100 * lo:.2f}, {100 * hi:.2f}]"
        batch_mean = r["metrics"]["val"].get("reference_batch_mean")
        bm = f"{100 * batch_mean['value']:.2f}" if batch_mean else "-"
        print(f"{name:<10} {preset:<10} {cell('test'):>26} {cell('val'):>26} {bm:>30}   (headline: "
              f"{r['headline_split']})")
    for preset in presets:
        paths = [str(rep) for p, _, rep in reports if p == preset]
        if len(paths) > 1:
            out = subprocess.run([train, "report", *paths, "--paired"], capture_output=True, text=True, cwd=ROOT)
            section = out.stdout.split("## Paired comparisons", 1)
            print(f"\npaired comparisons, preset {preset}:" + (section[1] if len(section) > 1 else out.stdout + out.stderr))
    print("times: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items()))


if __name__ == "__main__":
    main()
