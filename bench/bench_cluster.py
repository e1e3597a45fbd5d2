"""Benchmark for running on a Dask cluster (issue 16), and the cost plan's accuracy.

A loopback Sentinel Hub (the test server: OAuth token, Catalog API, Process API answering GeoTIFFs,
``x-processingunits-spent``) runs in another process and adds a fixed latency to every request.

1. Throughput: ``sample`` runs on a local Dask cluster (``--cluster local:W``: W worker processes,
   one thread each, over TCP) for W = 1, 2, 4. Ideal throughput is W / (latency x requests per
   location): what W requests in flight at all times would give. Reported: locations/s, the ratio to
   the ideal, and the scaling against W = 1. (Cluster start-up is not timed: it is paid once per run.)
2. Plan: ``seco-data sample --plan`` (a pilot of a few locations) for n locations, then the real run
   of n locations; the plan's requests, processing units, bytes downloaded, GeoTIFF bytes, files and
   shard bytes against what the run measured (the server counts requests and PU itself).

Usage: python bench/bench_cluster.py [--latency 0.2] [--workers 1 2 4] [--plan-n 40 --pilot 6]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_remote import _serve, _stats  # noqa: E402  (the same loopback Sentinel Hub)


def _recipe(url: str, n: int):
    from seco_data.recipe import load_recipe

    return load_recipe("demo", {"source": "sentinelhub", "n": n, "locations.land_only": False,
                                "source_options": {"base_url": url, "token_url": url + "/oauth/token"}})


def throughput(w: int, n: int, url: str, root: Path, latency: float) -> dict:
    from seco_data import jobs
    from seco_data.sample.run import sample
    from seco_data.sample.select import RetryPolicy

    with jobs.use_cluster(f"local:{w}"):
        before = _stats(url)["requests"]
        t0 = time.perf_counter()
        report = sample(_recipe(url, n), root / f"w{w}", workers=w, retry=RetryPolicy(retries=2, base_s=0.05))
        secs = time.perf_counter() - t0
        requests = _stats(url)["requests"] - before
    shutil.rmtree(root / f"w{w}", ignore_errors=True)
    per_location = requests / report.accepted
    ideal = w / (latency * per_location)
    return {"workers": w, "locations": report.accepted, "seconds": secs, "per_s": report.accepted / secs,
            "requests_per_location": per_location, "ideal_per_s": ideal, "ratio": report.accepted / secs / ideal}


def _walk_bytes(root: Path) -> tuple[int, int, int]:
    """(data files, all data bytes, GeoTIFF bytes) of a catalog, bookkeeping excluded (as the plan counts)."""
    from seco_data.sample.plan import _walk

    files = _walk(root)
    return sum(v[0] for v in files.values()), sum(v[1] for v in files.values()), files.get("tif", [0, 0])[1]


def plan_vs_run(n: int, pilot: int, url: str, root: Path) -> list[tuple[str, float, float]]:
    from seco_data.export.webdataset import export_webdataset
    from seco_data.sample.plan import format_plan, plan_run
    from seco_data.sample.run import sample

    recipe = _recipe(url, n)
    s0 = _stats(url)
    plan = plan_run(recipe, pilot=pilot, workers=4)
    s1 = _stats(url)
    print(format_plan(plan))
    print(f"(the pilot made {s1['requests'] - s0['requests']} requests)")
    report = sample(recipe, root / "run", workers=4)
    s2 = _stats(url)
    files, all_bytes, tif = _walk_bytes(root / "run")
    shards = export_webdataset(root / "run", root / "shards", workers=1)
    return [
        ("requests", plan["service"]["requests"], s2["requests"] - s1["requests"]),
        ("processing units", plan["service"]["processing_units"], s2["pu"] - s1["pu"]),
        ("bytes downloaded", plan["service"]["bytes"], report.source_stats.get("bytes", 0)),
        ("GeoTIFF bytes", plan["bytes"]["geotiff"], tif),
        ("catalog bytes", plan["bytes"]["catalog"], all_bytes),
        ("files", plan["files"]["total"], files),
        ("shard bytes", plan["bytes"]["shards"], shards.bytes),
        ("candidates drawn", plan["candidates"], report.candidates),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--locations-per-worker", type=int, default=4)
    ap.add_argument("--plan-n", type=int, default=40)
    ap.add_argument("--pilot", type=int, default=6)
    args = ap.parse_args()
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http to 127.0.0.1 only
    os.environ.setdefault("SECO_FSYNC", "0")
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_serve, args=(args.latency, child), daemon=True)
    proc.start()
    url, cid, secret = parent.recv()
    os.environ["SH_CLIENT_ID"], os.environ["SH_CLIENT_SECRET"] = cid, secret  # inherited by the cluster's workers
    root = Path(tempfile.mkdtemp(prefix="seco-bench-cluster-"))
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"loopback Sentinel Hub in another process, +{args.latency * 1000:.0f} ms per request; demo recipe "
          "(4 seasons, 12 bands)")
    try:
        rows = []
        for w in args.workers:
            r = throughput(w, w * args.locations_per_worker, url, root, args.latency)
            rows.append(r)
            print(f"cluster local:{w} ({w} worker processes x 1 thread): {r['locations']:>3} locations in "
                  f"{r['seconds']:6.1f} s = {r['per_s']:5.2f}/s; {r['requests_per_location']:.2f} requests/location "
                  f"-> ideal {r['ideal_per_s']:5.2f}/s, ratio {r['ratio']:.2f}")
        base = rows[0]["per_s"]
        print("scaling vs 1 worker: " + ", ".join(f"{r['workers']}w {r['per_s'] / base:.2f}x" for r in rows))
        print(f"\nplan (pilot of {args.pilot}) vs a run of {args.plan_n} locations, 4 threads:")
        worst = 0.0
        for name, est, got in plan_vs_run(args.plan_n, args.pilot, url, root):
            err = (est - got) / got if got else 0.0
            worst = max(worst, abs(err)) if name in ("requests", "GeoTIFF bytes", "shard bytes", "bytes downloaded",
                                                     "processing units") else worst
            print(f"  {name:<18} plan {est:>14,.1f}  measured {got:>14,.1f}  error {err:+.1%}")
        print(f"largest error on requests, PU and bytes: {worst:.1%} (goal: within 20 %)")
    finally:
        parent.send("stop")
        proc.join(5)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
