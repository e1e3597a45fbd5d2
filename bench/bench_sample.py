"""Benchmarks for `seco-data sample` (issue 2). Prints figures and ratios measured in one run.

End to end: `sample --n N` (demo recipe: 4 seasons, 12 bands; compact layout: 3 multi-season GeoTIFFs
and a quicklook per location) on the embedded simulator, with 1 and 2 workers, wall time and patches/s.
(Scale, catalog writing and resume at 10k-1M locations: bench/bench_scale.py.)

Usage: python bench/bench_sample.py [--n 1000]
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


def bench_sample(n: int, workers: int, root: Path) -> dict:
    from seco_data.sample.run import sample
    from seco_data.recipe import load_recipe

    out = root / f"sample-{workers}w"
    shutil.rmtree(out, ignore_errors=True)
    recipe = load_recipe("demo", {"n": n})
    t0 = time.perf_counter()
    report = sample(recipe, out, workers=workers)
    secs = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.rglob("*.tif"))
    return {"workers": workers, "seconds": secs, "patches": report.patches, "candidates": report.candidates,
            "patches_per_s": report.patches / secs, "MB": size / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="seco-bench-"))
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    try:
        print(f"\n== seco-data sample --n {args.n} (sim source, demo recipe: 4 seasons, 12 bands) ==")
        rows = [bench_sample(args.n, w, root) for w in (1, 2)]
        for r in rows:
            print(f"workers={r['workers']}: {r['seconds']:.1f} s, {r['patches']} patches "
                  f"({r['patches_per_s']:.0f} patches/s), {r['candidates']} candidates, {r['MB']:.0f} MB of GeoTIFF")
        print(f"speed-up 2 workers vs 1: {rows[0]['seconds'] / rows[1]['seconds']:.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
