"""Benchmarks for `seco-data export` and the shard reader (issue 4). Ratios measured in one run.

1. Export throughput: `export --format webdataset` of a simulator catalog (N locations, 4 seasons,
   12 bands), in MB of shards per second, next to the raw sequential write speed of the same disk
   measured in the same run (the same number of bytes, in files of the shard size, 4 MiB writes,
   fsync per file, as the export does). Goal: export >= 70 % of raw.
2. Reader throughput, one process (samples/s per core): every sample (all seasons, all bands) from
   our shards with `ShardReader`, next to reading the same locations from the SeCo per-band GeoTIFF
   layout (`export --format seco`, what SeCo, SSL4EO-S12 and torchgeo read: one file per band per
   season) the way their loaders do (rasterio, one open per band file). Both from a warm page cache.
   Goal: >= 5x.

Usage: python bench/bench_export.py [--n 300] [--catalog DIR] [--workers 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def raw_write(root: Path, total: int, file_size: int) -> float:
    """MB/s writing ``total`` bytes sequentially in files of ``file_size`` (fsync each)."""
    root.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(4 << 20)
    t0 = time.perf_counter()
    written, i = 0, 0
    while written < total:
        n = min(file_size, total - written)
        with open(root / f"raw-{i:06d}.bin", "wb") as f:
            left = n
            while left > 0:
                left -= f.write(chunk[: min(left, len(chunk))])
            f.flush()
            os.fsync(f.fileno())
        written += n
        i += 1
    secs = time.perf_counter() - t0
    shutil.rmtree(root)
    return written / 1e6 / secs


def bench_export(catalog: Path, root: Path, workers: int, maxsize: int) -> dict:
    from seco_data.export.webdataset import ShardOptions, export_webdataset

    out = root / "shards"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = export_webdataset(catalog, out, options=ShardOptions(maxsize=maxsize), workers=workers)
    secs = time.perf_counter() - t0
    return {"seconds": secs, "bytes": r.bytes, "shards": r.shards, "samples": r.samples,
            "MBps": r.bytes / 1e6 / secs, "out": out}


def read_shards(out: Path) -> tuple[int, float]:
    from seco_data.export.reader import ShardReader, Split

    t0 = time.perf_counter()
    n = 0
    for sample in ShardReader(out, split=Split()):
        for g in ("10m", "20m", "60m"):
            sample[g][0, 0, 0, 0]  # arrays exist (decoded views on the bytes read)
        n += 1
    return n, time.perf_counter() - t0


def read_seco_layout(root: Path) -> tuple[int, float]:
    """As the SeCo/torchgeo loaders: per location, every scene folder, one rasterio open per band."""
    import numpy as np
    import rasterio

    t0 = time.perf_counter()
    n = 0
    for loc in sorted(p for p in root.iterdir() if p.is_dir()):
        seasons = []
        for scene in sorted(p for p in loc.iterdir() if p.is_dir()):
            bands = []
            for tif in sorted(scene.glob("*.tif")):
                with rasterio.open(tif) as src:
                    bands.append(src.read(1))
            seasons.append(bands)
        np.asarray(seasons[0][0])
        n += 1
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="locations in the generated catalog")
    ap.add_argument("--catalog", type=Path, help="use this catalog instead of generating one")
    ap.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1,
                    help="export workers (default: cores + 1, as the CLI: keeps the cores busy while a shard is fsync'd)")
    ap.add_argument("--maxsize", type=int, default=50_000_000,
                    help="shard size (bytes); small enough that shards outnumber workers, as in a real export")
    ap.add_argument("--rounds", type=int, default=2, help="exports, alternating with raw writes")
    ap.add_argument("--dir", type=Path, help="working folder (default: a temporary one on the same disk as /tmp)")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="seco-bench-export-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, working folder {root}")
    try:
        catalog = args.catalog
        if catalog is None:
            from seco_data.sample.run import sample
            from seco_data.recipe import load_recipe

            catalog = root / "catalog"
            if not (catalog / "items.parquet").exists():
                t = time.perf_counter()
                sample(load_recipe("demo", {"n": args.n}), catalog, workers=args.workers)
                print(f"catalog: {args.n} locations sampled in {time.perf_counter() - t:.1f} s")
        tif_mb = sum(p.stat().st_size for p in catalog.rglob("*.tif")) / 1e6
        print(f"catalog {catalog}: {tif_mb:.0f} MB of GeoTIFF (zstd)")

        print("\n== export --format webdataset vs raw sequential write, same disk, same bytes ==")
        print(f"alternating raw, export, raw, ... ({args.rounds} exports); os.sync() before each phase")
        raws, exports = [], []
        for r in range(args.rounds):
            os.sync()  # each phase starts with no dirty pages left by the one before
            raws.append(raw_write(root / "raw", exports[-1]["bytes"] if exports else 1_000_000_000, args.maxsize))
            os.sync()
            exports.append(bench_export(catalog, root, args.workers, args.maxsize))
        os.sync()
        raws.append(raw_write(root / "raw", exports[-1]["bytes"], args.maxsize))
        e = exports[-1]
        raw = statistics.median(raws)
        rate = statistics.median(x["MBps"] for x in exports)
        print("raw write MB/s:  " + ", ".join(f"{x:.0f}" for x in raws) + f"  (median {raw:.0f})")
        print(f"export MB/s ({args.workers} workers, {e['samples']} samples, {e['shards']} shards, "
              f"{e['bytes'] / 1e6:.0f} MB each): " + ", ".join(f"{x['MBps']:.0f}" for x in exports)
              + f"  (median {rate:.0f}; plan + read GeoTIFFs + tar + sha256 + fsync)")
        print(f"export / raw write: {rate / raw * 100:.0f} % (goal >= 70 %)")

        print("\n== reader, one process: our shards vs the SeCo per-band GeoTIFF layout ==")
        from seco_data.export.seco_layout import export_seco_layout

        seco = root / "seco_layout"
        shutil.rmtree(seco, ignore_errors=True)
        t = time.perf_counter()
        export_seco_layout(catalog, seco, bits=16, workers=os.cpu_count() or 1)
        print(f"SeCo layout (16-bit, deflate, one GeoTIFF per band) written in {time.perf_counter() - t:.1f} s")
        read_shards(e["out"]), read_seco_layout(seco)  # warm the page cache for both
        n1, s1 = read_shards(e["out"])
        n2, s2 = read_seco_layout(seco)
        r1, r2 = n1 / s1, n2 / s2
        print(f"shards (ShardReader):        {n1} samples in {s1:.2f} s = {r1:.0f} samples/s")
        print(f"SeCo layout (rasterio/band): {n2} samples in {s2:.2f} s = {r2:.1f} samples/s")
        print(f"shards / SeCo layout: {r1 / r2:.1f}x (goal >= 5x)")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
