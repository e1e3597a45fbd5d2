"""Benchmarks for `seco-data sample` (issue 2). Prints figures and ratios measured in one run.

1. End to end: `sample --n N` (4 seasons, 12 bands, 3 GeoTIFFs per patch) on the embedded simulator,
   with 1 and 2 workers, wall time and patches/s.
2. Catalog writing is linear: item JSON + sub-catalogs + collection + items.parquet from a ledger of
   1k and of 20k items (synthetic ledger rows, no pixels), time per item at both sizes and their
   ratio (goal: within 1.5x).

Usage: python bench/bench_sample.py [--n 1000] [--skip-sample]
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


def synthetic_ledger(out: Path, locations: int, seasons: int = 4):
    """A ledger as a real run leaves it, without pixels: what the catalog writer reads."""
    import json

    from seco_data.catalog.layout import LEDGER
    from seco_data.grid import PatchGrid
    from seco_data.sample.ledger import Ledger
    from seco_data.recipe import load_recipe
    from seco_data.catalog.layout import asset_name, item_id

    recipe = load_recipe("demo", {"n": locations})
    out.mkdir(parents=True)
    ledger = Ledger(out / LEDGER, create=True)
    with ledger:
        ledger.set("fingerprint", recipe.fingerprint())
        ledger.set("recipe", json.dumps(recipe.to_dict()))
        ledger.set("patch_size_m", "2640")
        for i in range(locations):
            lon, lat = -170 + (i * 0.013) % 340, -50 + (i * 0.0071) % 100
            g = PatchGrid.around(lon, lat)
            ledger.add_candidate(i, lon, lat, "bench", g, "pending")
            patches = []
            for s in range(seasons):
                iid = item_id(recipe.name, i, s)
                t = dt.datetime(2021, 1 + 3 * s, 1 + i % 28, 10, 30, tzinfo=dt.timezone.utc)
                patches.append({
                    "season": s, "item_id": iid, "scene_id": f"S2A_MSIL2A_{t:%Y%m%dT%H%M%S}_R008_T31UDQ",
                    "datetime": t.isoformat(), "platform": "sentinel-2a", "scene_cloud": 3.0,
                    "cloud_fraction": 0.01, "valid_fraction": 1.0, "window_start": t.isoformat(),
                    "window_end": t.isoformat(),
                    "assets": [{"resolution": r, "href": asset_name(iid, r), "bands": list(b),
                                "sha256": "0" * 64, "size": 1000} for r, b in recipe.band_groups.items()],
                })
            ledger.accept(i, patches)
    return ledger, recipe


def bench_catalog(items: int, root: Path) -> dict:
    from itertools import groupby

    from seco_data.catalog.item import build_item
    from seco_data.catalog.rebuild import item_spec, rebuild_from_ledger
    from seco_data.catalog.writer import write_location_items

    out = root / f"catalog-{items}"
    shutil.rmtree(out, ignore_errors=True)
    ledger, recipe = synthetic_ledger(out, items // 4)
    source = {"name": "sim", "product": "L2A", "synthetic": True}
    t0 = time.perf_counter()
    for loc, rows in groupby(ledger.patches(), key=lambda r: r.location):  # during a run: as each location ends
        write_location_items(out, loc, 4, [build_item(item_spec(r, recipe.name, source, 1e-4)) for r in rows])
    t1 = time.perf_counter()
    rebuild_from_ledger(out, ledger)
    t2 = time.perf_counter()
    ledger.close()
    return {"items": items, "items_s": t1 - t0, "finalize_s": t2 - t1, "total_s": t2 - t0,
            "us_per_item": (t2 - t0) / items * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--skip-sample", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="seco-bench-"))
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    try:
        if not args.skip_sample:
            print(f"\n== seco-data sample --n {args.n} (sim source, demo recipe: 4 seasons, 12 bands) ==")
            rows = [bench_sample(args.n, w, root) for w in (1, 2)]
            for r in rows:
                print(f"workers={r['workers']}: {r['seconds']:.1f} s, {r['patches']} patches "
                      f"({r['patches_per_s']:.0f} patches/s), {r['candidates']} candidates, {r['MB']:.0f} MB of GeoTIFF")
            print(f"speed-up 2 workers vs 1: {rows[0]['seconds'] / rows[1]['seconds']:.2f}x")
        print("\n== catalog writing (items JSON + sub-catalogs + collection + items.parquet) ==")
        small, large = bench_catalog(1000, root), bench_catalog(20000, root)
        for r in (small, large):
            print(f"{r['items']:>6} items: {r['total_s']:.2f} s (items {r['items_s']:.2f} s, finalize "
                  f"{r['finalize_s']:.2f} s) = {r['us_per_item']:.0f} us/item")
        print(f"time per item, 20k vs 1k: {large['us_per_item'] / small['us_per_item']:.2f}x (goal <= 1.5x)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
