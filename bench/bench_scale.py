"""Benchmark: does the per-location cost stay flat from 10,000 to 1,000,000 locations? (issue 13)

Part 1, the orchestration at scale. For each size N (default 10k, 100k and 1M locations), every stage
runs in its own subprocess (its time, and its peak RSS from ``ru_maxrss``; workers' peak separately):

- ``sample``: ``seco-data sample`` with the demo recipe on a source whose pixels cost nothing
  (:class:`FreeSource`: one scene per season window; ~30 % of places have no scene, so footprints
  are released as in a real run), 2 workers, tiny patches (12 px at 10 m, 3 bands, one per
  resolution group) and quicklooks on: 4 files per location, as in a real catalog. ``SECO_FSYNC=0``
  (the fsync of 4 files per location costs ~13 ms on this VM's disk: the disk's cost, not seco's;
  ``--fsync`` keeps it);
- ``resume``: the same command again on the finished catalog (goal: under a minute at 1M);
- ``rebuild``: ``catalog rebuild`` forcing every index part to be rebuilt from the ledger (a run
  builds them incrementally: this is the worst case, not what a run does);
- ``export plan``: the WebDataset export's planning pass over the whole index (no pixels read);
- ``info``: ``catalog info``; ``api``: the STAC API's search index, one bbox+datetime search
  (first page) and 1,000 item lookups by id; ``validate``: ``catalog validate --sample 1000``;
- ``viewer``: ``CatalogData`` and the map page in headless Chromium (``bench_viewer.measure_viewer``);
- ``screen``: the footprint screen alone with real-size (2640 m) footprints until N locations are
  accepted, 35 % of candidates failing for imagery: overlap rejections with their footprints released
  (what ``sample`` does) and held (what it did before).

Part 2, files and bytes per location for the seco-1m recipe (5 seasons, 12 bands, 264 px), simulator
pixels: the layout before issue 13 (per-patch: 3 GeoTIFFs, a native PNG quicklook and an item JSON
per season; ``.npy`` shards) against the default now (compact: 3 multi-season GeoTIFFs and one JPEG
strip per location; ``--codec zstd`` shards), both lossless for the pixels; reader samples/s per core.

Usage: python bench/bench_scale.py [--sizes 10000,100000,1000000] [--work DIR] [--fsync] [--no-browser]
       [--skip-files] [--files-n 40] [--continue]

Every stage's figures go to WORK/results.json as soon as it is measured; ``--continue`` (same
``--work``) keeps them and measures only what is missing, so the 1M size (about 2.5 h here) can span
sittings: each stage is still measured whole, in one process, and a ``sample`` that did not finish is
measured again from an empty folder.

Disk: the tiny-patch catalog takes about 18 kB per location on a 4 kB-block file system (4 files and
their blocks; ledger and index included) and about 9.4 kB on a 1 kB-block one, so the 1M size needs
~18 GB free, or ~10 GB on a loop-mounted 1 kB-block image, e.g.
``truncate -s 14G /var/tmp/bscale.img && mkfs.ext4 -q -b 1024 -N 6000000 /var/tmp/bscale.img &&
mount -o loop /var/tmp/bscale.img /mnt/bscale`` then ``--work /mnt/bscale``.
Prints a report; keep it in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from seco_data.sources.base import Masks, SceneRead, SceneRef, Source  # noqa: E402

BANDS = ["B02", "B05", "B01"]  # one band per resolution group
PATCH = {10: 12, 20: 6, 60: 2}  # 120 m patches


class FreeSource(Source):
    """Pixels that cost nothing: one clear scene mid-window; ~30 % of places have none."""

    name = "free"
    synthetic = True
    io_bound = False
    providers = ({"name": "bench", "roles": ["producer"]},)

    def search(self, grid, start, end):
        if (grid.x0 // 10 * 7919 + grid.y0 // 10 * 104729) % 10 < 3:
            return []
        t = dt.datetime.combine(start, dt.time(10, 30), tzinfo=dt.timezone.utc) + (end - start) / 2
        return [SceneRef(f"FREE_{t:%Y%m%d}_{grid.epsg}", t, 1.0, product=self.product, extra={})]

    def _masks(self, shape):
        return Masks(np.zeros(shape, bool), np.zeros(shape, bool), np.ones(shape, bool))

    def read_masks(self, scene, grid):
        return self._masks(grid.shape(10))

    def read(self, scene, grid, bands):
        pixels = {res: np.full((len(names), *grid.shape(res)), 1000 + res, np.uint16) for res, names in bands.items()}
        return SceneRead(scene, pixels, dict(bands), self._masks(grid.shape(10)))


def _register() -> None:
    from seco_data import sources

    sources.register("free", "bench_scale:FreeSource")


def _recipe(n: int):
    from seco_data.recipe import load_recipe

    return load_recipe("demo", {"source": "free", "n": n, "bands": BANDS, "patch": PATCH,
                                "max_draws_per_location": 20})


# -- stages, each in a subprocess ----------------------------------------------------------------------

def stage(name: str, args: dict) -> dict:
    """Run in the child: do the stage, return its figures."""
    _register()
    root = Path(args["out"]) if "out" in args else None
    extra: dict = {}
    t0 = time.perf_counter()
    if name in ("sample", "resume"):
        from seco_data.sample import sample

        r = sample(_recipe(args["n"]), root, workers=2)
        extra = {"accepted": r.accepted, "candidates": r.candidates, "rejections": r.rejections,
                 "resumed": r.resumed}
    elif name == "rebuild":
        from seco_data.catalog.rebuild import rebuild

        rebuild(root, force=True)
    elif name == "export plan":
        from seco_data.catalog.index import CatalogIndex
        from seco_data.export.webdataset.export import Digests, ShardOptions, plan_shards

        index = CatalogIndex(root)
        digests = Digests(index)
        shards = list(plan_shards(index, ShardOptions(), digests))
        digests.close()
        extra = {"shards": len(shards), "samples": sum(e["count"] for e in shards)}
    elif name == "info":
        from seco_data.catalog.info import catalog_info

        extra = {"locations": catalog_info(root)["locations"]}
    elif name == "api":
        from seco_data.catalog.layout import INDEX
        from seco_data.serve.api.index import ItemIndex
        from seco_data.serve.api.params import parse_search

        ix = ItemIndex(root / INDEX, "demo")
        t1 = time.perf_counter()
        q = parse_search({"bbox": [-10, 35, 30, 60], "datetime": "2020-06-01T00:00:00Z/2020-12-31T23:59:59Z",
                          "limit": 100})
        rows = ix.match(q)
        page = ix.rows(rows[:100])
        t2 = time.perf_counter()
        rng = np.random.default_rng(0)
        ids = ix.ids.take(rng.integers(0, ix.n, 1000)).to_pylist()
        t3 = time.perf_counter()
        first = ix.find(ids[0])
        t4 = time.perf_counter()
        found = [ix.find(i) for i in ids[1:]]
        t5 = time.perf_counter()
        assert first is not None and None not in found and len(page) == min(100, len(rows))
        extra = {"load_s": t1 - t0, "search_s": t2 - t1, "matched": int(len(rows)), "first_lookup_s": t4 - t3,
                 "lookup_us": (t5 - t4) / len(found) * 1e6}
    elif name == "validate":
        from seco_data.catalog.validate import validate_catalog

        n, problems = validate_catalog(root, args["schemas"], sample=1000, workers=2)
        assert not problems, problems[:3]
        extra = {"objects": n}
    elif name == "viewer":
        from bench_viewer import measure_viewer

        extra = measure_viewer(root, runs=args.get("runs", 3), browser=args.get("browser", True))
        # the viewer's own peaks (CatalogData in its subprocess, the server): RUSAGE_CHILDREN would
        # count this process's pages at fork too
        extra["rss_override"] = max(extra.get("rss_peak_mb") or 0, extra.get("server_rss_peak_mb") or 0)
    elif name == "screen":
        extra = _screen(args["n"], release=args["release"])
    else:
        raise SystemExit(f"unknown stage {name}")
    seconds = time.perf_counter() - t0
    from bench_viewer import rss_mb  # VmHWM: ru_maxrss would carry the forking parent's peak across exec

    rss = rss_mb()
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if "rss_override" in extra:
        rss, workers = extra.pop("rss_override"), 0.0
    return {"seconds": seconds, "rss_mb": rss, "workers_rss_mb": workers, **extra}


def _count_files(root: Path) -> int:
    """Files under ``root``, streamed (``Path.rglob`` keeps a set of every path it yielded: 1.9 GB at 4M)."""
    return sum(len(files) for _, _, files in os.walk(root))


def _screen(n: int, *, release: bool) -> dict:
    """The screen alone, real footprints; 35 % of passing candidates fail for imagery."""
    from seco_data.recipe import Locations
    from seco_data.sample.locations import CitySampler, Screen

    screen = Screen(Locations(land_only=True), 2640)
    accepted = overlap = drawn = 0
    for c in CitySampler(0, top=10000, sigma_km=50).stream():
        drawn += 1
        v = screen.check(c)
        if v.reason == "overlap":
            overlap += 1
        elif v.reason is None:
            ok = (c.index * 2654435761 % 2**32) / 2**32 >= 0.35
            if ok or release:
                screen.resolve(c.index, ok)
            else:
                screen.accepted.add(c.index)  # held: the footprint keeps blocking
            accepted += ok
            if accepted >= n:
                break
    return {"drawn": drawn, "overlap": overlap, "overlap_rate": overlap / drawn}


def run_stage(name: str, args: dict, env: dict) -> dict:
    cmd = [sys.executable, __file__, "_stage", name, json.dumps(args)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        raise RuntimeError(f"stage {name} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# -- part 2: files and bytes per location ---------------------------------------------------------------

def files_and_bytes(work: Path, n: int) -> dict:
    from seco_data.catalog.index import CatalogIndex
    from seco_data.catalog.thumbnails import thumbnail_png
    from seco_data.export.reader import ShardReader, Split
    from seco_data.export.webdataset import ShardOptions, export_webdataset
    from seco_data.recipe import load_recipe
    from seco_data.sample import sample

    out = {}
    base = {"source": "sim", "n": n}
    for label, layout, codec in (("before", "per-patch", "npy"), ("now", "compact", "zstd")):
        cat = work / f"files-{layout}"
        r = sample(load_recipe("seco-1m", {**base, "layout": layout, "thumbnails": layout == "compact"}), cat,
                   workers=2)
        files = [p for p in cat.rglob("*") if p.is_file() and p.suffix in (".tif", ".jpg", ".json")
                 and p.parent != cat and ".seco" not in p.parts]
        by_kind = {"geotiff": sum(p.stat().st_size for p in files if p.suffix == ".tif"),
                   "quicklook": sum(p.stat().st_size for p in files if p.suffix == ".jpg"),
                   "item json": sum(p.stat().st_size for p in files if p.suffix == ".json" and p.name != "catalog.json")}
        count = len([p for p in files if p.name != "catalog.json"])
        if layout == "per-patch":  # the quicklook before: a native-size PNG per item, drawn now to weigh it
            pngs = [thumbnail_png(a.path, scale=a.scale) for p in CatalogIndex(cat).patches() for a in p.data[:1]]
            by_kind["quicklook"] = sum(len(b) for b in pngs)
            count += len(pngs)
        shards = work / f"shards-{layout}"
        export_webdataset(cat, shards, options=ShardOptions(codec=codec), workers=2)
        by_kind["shards"] = sum(p.stat().st_size for p in shards.glob("*.tar"))
        t0 = time.process_time()
        samples = sum(1 for _ in ShardReader(shards, split=Split()))
        cpu = time.process_time() - t0
        out[label] = {"layout": layout, "codec": codec, "locations": r.accepted,
                      "files_per_location": count / r.accepted,
                      "bytes_per_location": {k: v / r.accepted for k, v in by_kind.items()},
                      "total_per_location": sum(by_kind.values()) / r.accepted,
                      "reader_samples_per_cpu_s": samples / cpu}
        # lossless: every array of every sample equals the other layout's (checked below)
    a = {s["__key__"]: s for s in ShardReader(work / "shards-per-patch", split=Split())}
    for s in ShardReader(work / "shards-compact", split=Split()):
        for g in s["json"]["arrays"]:
            assert np.array_equal(s[g], a[s["__key__"]][g]), (s["__key__"], g)
    out["lossless"] = True
    return out


# -- the report -----------------------------------------------------------------------------------------

STAGES = ["sample", "resume", "rebuild", "export plan", "info", "api", "validate", "viewer"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_stage":
        print(json.dumps(stage(sys.argv[2], json.loads(sys.argv[3])), default=str))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--fsync", action="store_true", help="keep fsync on (slow disks dominate then)")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--skip-files", action="store_true")
    ap.add_argument("--files-n", type=int, default=40)
    ap.add_argument("--keep", action="store_true", help="keep each size's catalog")
    ap.add_argument("--continue", dest="cont", action="store_true",
                    help="keep what WORK/results.json holds and measure only the rest (a size's catalog stays "
                         "until all its stages are measured): a size too long for one sitting is measured over "
                         "several, each stage whole in one")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="seco-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    if not args.fsync:
        env["SECO_FSYNC"] = "0"
    schemas = os.environ.get("SECO_STAC_SCHEMAS") or str(Path(os.environ.get("SECO_SHARED", HERE.parent.parent / "shared"))
                                                         / "stac-schemas")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; fsync {'on' if args.fsync else 'off'}; work {work}")
    saved = work / "results.json"
    results: dict = {}
    if args.cont and saved.exists():  # (JSON keys are strings: the sizes back to ints)
        results = {int(k) if k.isdigit() else k: v for k, v in json.loads(saved.read_text()).items()}

    def save() -> None:
        saved.write_text(json.dumps(results, indent=1, default=str))

    for n in sizes:
        out = work / f"scale-{n}"
        done = results.get(n, {}) if args.cont else {}
        needs_catalog = "files" not in done or any(name not in done for name in STAGES)
        if "sample" not in done or (needs_catalog and not out.exists()):  # a sample not measured whole: again
            shutil.rmtree(out, ignore_errors=True)
            done = {}
        results[n] = done
        earlier = set(done)  # measured in an earlier sitting (--continue)
        for name in STAGES:
            if name not in done:
                a = {"out": str(out), "n": n, "schemas": schemas, "browser": not args.no_browser, "runs": 3}
                results[n][name] = run_stage(name, a, env)
                save()
            r = results[n][name]
            print(f"  {n:>9,} {name:<12} {r['seconds']:9.1f} s  {r['seconds'] / n * 1e6:9.1f} us/location  "
                  f"peak RSS {r['rss_mb']:7.0f} MB (workers {r['workers_rss_mb']:.0f} MB)"
                  + ("  (an earlier sitting)" if name in earlier else ""), flush=True)
        if "files" not in results[n]:
            results[n]["files"] = _count_files(out)
        for release in (True, False):
            key = f"screen ({'released' if release else 'held'})"
            if key not in results[n]:
                results[n][key] = run_stage("screen", {"n": n, "release": release}, env)
                save()
            r = results[n][key]
            print(f"  {n:>9,} screen {'released' if release else 'held':<8} {r['seconds']:7.1f} s  "
                  f"{r['drawn']:,} drawn, overlap {r['overlap_rate']:.1%}"
                  + ("  (an earlier sitting)" if key in earlier else ""), flush=True)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
        save()
    _summary(results, sizes)
    if not args.skip_files:
        if "files_and_bytes" not in results:
            results["files_and_bytes"] = files_and_bytes(work, args.files_n)
            save()
        _files_summary(results["files_and_bytes"])


def _summary(results: dict, sizes: list[int]) -> None:
    lo, hi = sizes[0], sizes[-1]
    print(f"\n== per location: {hi:,} vs {lo:,} (goal: within 1.5x) and peak RSS at {hi:,} (goal: < 2 GB) ==")
    print(f"{'stage':<18}" + "".join(f"{f'{n:,} us/loc':>18}" for n in sizes) + f"{'ratio':>8}{'RSS MB':>9}")
    for name in STAGES + ["screen (released)"]:
        per = [results[n][name]["seconds"] / n * 1e6 for n in sizes]
        rss = max(results[hi][name]["rss_mb"], results[hi][name]["workers_rss_mb"])
        print(f"{name:<18}" + "".join(f"{v:18.1f}" for v in per) + f"{per[-1] / per[0]:8.2f}{rss:9.0f}")
    # the screen's unit of work is a drawn candidate: denser footprints mean more draws per location
    per = [results[n]["screen (released)"]["seconds"] / results[n]["screen (released)"]["drawn"] * 1e6 for n in sizes]
    print(f"{'  us per draw':<18}" + "".join(f"{v:18.1f}" for v in per) + f"{per[-1] / per[0]:8.2f}")
    r = results[hi]["resume"]
    print(f"resume of the finished {hi:,}-location run: {r['seconds']:.1f} s (goal < 60 s)")
    for n in sizes:
        s = results[n]["sample"]
        held, released = results[n]["screen (held)"], results[n]["screen (released)"]
        print(f"{n:>9,}: {s['candidates']:,} candidates, rejections {s['rejections']}; files {results[n]['files']:,}"
              f" ({results[n]['files'] / n:.2f} per location); screen at 2640 m: overlap {released['overlap_rate']:.1%}"
              f" released vs {held['overlap_rate']:.1%} held ({released['drawn']:,} vs {held['drawn']:,} drawn)")
        v = results[n].get("viewer") or {}
        ready = {k: v[k] for k in v if "ready" in k and isinstance(v[k], (int, float))}
        if ready:
            print("           viewer: " + ", ".join(f"{k} {val:.2f} s" for k, val in ready.items()))


def _files_summary(f: dict) -> None:
    b, a = f["before"], f["now"]
    print("\n== seco-1m recipe (5 seasons, 12 bands, 264 px; simulator pixels): per location ==")
    for label, r in (("before", b), ("now", a)):
        parts = ", ".join(f"{k} {v / 1e6:.3f} MB" for k, v in r["bytes_per_location"].items())
        print(f"{label:<7} {r['layout']:<9} shards {r['codec']:<4}: {r['files_per_location']:.1f} files, "
              f"{r['total_per_location'] / 1e6:.2f} MB ({parts}); reader {r['reader_samples_per_cpu_s']:.0f} samples/s/core")
    print(f"bytes now / before: {a['total_per_location'] / b['total_per_location']:.3f} "
          f"(goal <= 0.70); files {a['files_per_location']:.1f} (goal <= 4); lossless: {f['lossless']}")


if __name__ == "__main__":
    main()
