"""WebDataset export: a catalog packed into tar shards, one sample per location (:mod:`.samples`).

How it runs:
1. **Plan.** One pass over ``items.parquet`` computes each sample's exact size in the tar (NumPy
   headers and JSON are built, never the pixels), locations are shuffled with the seed, and shards are
   cut by ``maxcount``/``maxsize``. The plan is kept in ``OUT/.seco-export/plan.sqlite``.
2. **Write.** Shards are independent, so workers write them in parallel, each into a temporary
   name, fsync'd and renamed. Archives are what webdataset's ``TarWriter`` (the writer behind
   ``ShardWriter``) would write, byte for byte, written without its copies (:mod:`.tar`).
   Headers carry a fixed mtime, owner and mode: the same catalog, options and seed give the same
   bytes.
3. **Manifest.** A shard is recorded (``done.jsonl``, then ``shards.json``) only once renamed, with
   its sample count, size and sha256. Rerunning the command resumes: listed shards are kept.

``shards.json`` is also a wids shard index (``__kind__: wids-shard-index-v1``, ``shardlist`` with
``url``/``nsamples``/``filesize``): ``wids.ShardListDataset("OUT/shards.json")`` reads it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ... import __version__, jobs
from ...bands import BANDS, canonical
from ...catalog.index import CatalogIndex
from ...errors import UsageError
from ...outputs import atomic_path, claim_output, commit, remove_temps, sha256_file, temp_name, write_json
from .samples import encode_sample, plan_sample
from .tar import RECORD, TarShard, archive_size

log = logging.getLogger(__name__)

MANIFEST = "shards.json"
STATE_DIR = ".seco-export"
MANIFEST_EVERY_S = 10.0
#: GDAL settings for reading many small GeoTIFFs: opening costs more than decoding a patch. One
#: environment per shard (rasterio otherwise sets one up per open), no directory listing for sidecar
#: files, and the CRS taken from the GeoKeys without a PROJ database lookup (pixels are all we read).
FAST_OPEN = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GTIFF_SRS_SOURCE": "GEOKEYS"}


@dataclass(frozen=True)
class ShardOptions:
    """What goes into the shards; part of the export's identity (a resume must match it)."""

    maxcount: int = 10_000
    maxsize: int = 1_000_000_000
    seed: int = 0
    bands: tuple[str, ...] | None = None  # canonical names; None: every band of the catalog
    seasons: tuple[int, ...] | None = None  # season indices; None: every season of each location
    resample_10m: bool = False
    prefix: str = "seco"

    def __post_init__(self):
        if self.maxcount < 1 or self.maxsize < 4 * RECORD:
            raise UsageError(f"maxcount must be >= 1 and maxsize >= {4 * RECORD} bytes")
        if "." in self.prefix or "/" in self.prefix or not self.prefix:
            raise UsageError(f"shard prefix {self.prefix!r} must be a plain name without dots or slashes")
        if self.bands is not None:
            try:
                object.__setattr__(self, "bands", tuple(canonical(b) for b in self.bands))
            except KeyError as e:
                raise UsageError(f"unknown band {e.args[0]!r}", hint=f"use names among {', '.join(BANDS)}") from None
        if self.seasons is not None and any(s < 0 for s in self.seasons):
            raise UsageError("season indices start at 0")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bands"] = list(self.bands) if self.bands else None
        d["seasons"] = list(self.seasons) if self.seasons is not None else None
        return d


@dataclass(frozen=True)
class ShardInfo:
    url: str  # file name, relative to the manifest
    nsamples: int
    filesize: int
    sha256: str


@dataclass(frozen=True)
class ExportReport:
    out: Path
    shards: int
    samples: int
    bytes: int
    seconds: float
    reused_shards: int = 0
    skipped: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


# -- planning -----------------------------------------------------------------------------------------

def identity(index: CatalogIndex, opts: ShardOptions) -> dict:
    """What makes two exports the same: the catalog's index (its bytes) and the options."""
    return {"catalog": {"collection": index.name, "items_sha256": sha256_file(index.parquet)},
            "options": opts.to_dict()}


def _plan(index: CatalogIndex, opts: ShardOptions, db_path: Path) -> tuple[list[dict], dict]:
    """Write the plan database; return the shard list and skip counts."""
    with atomic_path(db_path) as tmp:
        return _plan_into(index, opts, tmp)


def _plan_into(index: CatalogIndex, opts: ShardOptions, tmp: Path) -> tuple[list[dict], dict]:
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    db.executescript(
        "CREATE TABLE samples (n INTEGER PRIMARY KEY, size INTEGER, shard INTEGER, pos INTEGER, spec TEXT);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
    )
    skipped: dict[str, int] = {}
    sizes = []
    batch = []
    for loc in index.locations():
        planned = plan_sample(loc, opts, index.name)
        if isinstance(planned, str):
            skipped[planned] = skipped.get(planned, 0) + 1
            continue
        meta, reads, size = planned
        batch.append((len(sizes), size, json.dumps([meta, reads], separators=(",", ":"))))
        sizes.append(size)
        if len(batch) >= 5000:
            db.executemany("INSERT INTO samples (n, size, spec) VALUES (?, ?, ?)", batch)
            batch = []
    db.executemany("INSERT INTO samples (n, size, spec) VALUES (?, ?, ?)", batch)
    order = np.random.default_rng(opts.seed).permutation(len(sizes))
    shards: list[dict] = []
    assign = []
    count = total = 0
    for n in order.tolist():
        size = sizes[n]
        if shards and count < opts.maxcount and archive_size(total + size) <= opts.maxsize:
            count += 1
            total += size
        else:
            shards.append({})
            count, total = 1, size
            if archive_size(size) > opts.maxsize:
                log.warning("sample %d alone is larger than maxsize (%d bytes): its shard will be too", n, size)
        shards[-1] = {"count": count, "size": archive_size(total)}
        assign.append((len(shards) - 1, count - 1, n))
    db.executemany("UPDATE samples SET shard = ?, pos = ? WHERE n = ?", assign)
    db.execute("CREATE INDEX samples_shard ON samples (shard, pos)")
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("shards", json.dumps(shards)), ("skipped", json.dumps(skipped))])
    db.commit()
    db.close()
    return shards, skipped


# -- writing ------------------------------------------------------------------------------------------

def write_shard(plan: str, out: str, shard: int, name: str) -> tuple[ShardInfo, str]:
    """Write shard number ``shard`` of ``plan`` into a temporary file in ``out``; run in a worker.

    Returns the shard's info and the temporary path; :func:`commit_shard` makes it durable and gives
    it its name. (The fsync is left to the parent's threads, so the worker goes on to the next shard
    while the disk catches up.)
    """
    import rasterio

    db = sqlite3.connect(f"file:{plan}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT spec FROM samples WHERE shard = ? ORDER BY pos", (shard,)).fetchall()
    finally:
        db.close()
    tmp = temp_name(Path(out) / name)
    try:
        with rasterio.Env(**FAST_OPEN), open(tmp, "wb") as raw:
            tar = TarShard(raw)
            for (spec,) in rows:
                meta, reads = json.loads(spec)
                tar.write(encode_sample(meta, reads))
            tar.close()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ShardInfo(name, len(rows), tar.size, tar.sha.hexdigest()), str(tmp)


def commit_shard(tmp: str, info: ShardInfo) -> ShardInfo:
    """fsync the written shard, then rename it into place (and fsync the folder)."""
    commit(tmp, os.path.join(os.path.dirname(tmp), info.url))
    return info


# -- the export ---------------------------------------------------------------------------------------

def shard_name(prefix: str, i: int) -> str:
    return f"{prefix}-{i:06d}.tar"


def _read_done(path: Path) -> dict[str, ShardInfo]:
    done = {}
    if path.exists():
        for line in path.read_text("utf-8").splitlines():
            try:
                d = json.loads(line)
                done[d["url"]] = ShardInfo(**d)
            except (ValueError, TypeError, KeyError):
                continue  # a torn last line after a crash: that shard is simply redone
    return done


def _manifest(index: CatalogIndex, opts: ShardOptions, ident: dict, shards: list[ShardInfo],
              planned: int, skipped: dict) -> dict:
    shards = sorted(shards, key=lambda s: s.url)
    return {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": index.name,
        "format": "seco-webdataset",
        "format_version": 1,
        "complete": len(shards) == planned,
        "software": {"name": "seco", "version": __version__},
        "catalog": {"path": str(index.root), **ident["catalog"]},
        "recipe": index.collection.get("seco:recipe"),
        "options": opts.to_dict(),
        "planned_shards": planned,
        "samples": sum(s.nsamples for s in shards),
        "bytes": sum(s.filesize for s in shards),
        "skipped": skipped,
        "shardlist": [asdict(s) for s in shards],
    }


def _ours(name: str) -> bool:
    """Entries of a shard folder that a previous export wrote (what --overwrite may remove)."""
    return name.endswith(".tar") or name in (MANIFEST, STATE_DIR) or name.startswith(".")


def export_webdataset(
    catalog: str | Path,
    out: str | Path,
    *,
    options: ShardOptions = ShardOptions(),
    workers: int | None = 1,
    overwrite: bool = False,
    progress: jobs.ProgressFn | None = None,
) -> ExportReport:
    """Pack the catalog in ``catalog`` into WebDataset shards in ``out`` (resumable, parallel)."""
    t0 = time.monotonic()
    jobs.check_workers(workers)
    index = CatalogIndex(catalog)
    out = Path(out)
    ident = identity(index, options)
    with claim_output(out, kind="webdataset", identity=ident, overwrite=overwrite, ours=_ours):
        state = out / STATE_DIR
        state.mkdir(exist_ok=True)
        plan_path = state / "plan.sqlite"
        if plan_path.exists():
            db = sqlite3.connect(plan_path)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            db.close()
            planned, skipped = json.loads(meta["shards"]), json.loads(meta["skipped"])
        else:
            planned, skipped = _plan(index, options, plan_path)
        return _write(index, out, options, ident, planned, skipped, workers, progress, t0)


def _write(index, out, options, ident, planned, skipped, workers, progress, t0) -> ExportReport:
    manifest_path = out / MANIFEST
    plan_path = out / STATE_DIR / "plan.sqlite"
    names = [shard_name(options.prefix, i) for i in range(len(planned))]
    remove_temps(out)  # shards being written when a run was killed
    done_path = out / STATE_DIR / "done.jsonl"
    done = {
        k: v for k, v in _read_done(done_path).items()
        if k in names and (out / k).is_file() and (out / k).stat().st_size == v.filesize
    }
    reused = len(done)
    todo = [i for i, n in enumerate(names) if n not in done]
    total_samples = sum(s["count"] for s in planned)
    samples_done = sum(s.nsamples for s in done.values())

    def tell():
        if progress:
            progress(jobs.Progress(samples_done, total_samples, "sample", {"shards": len(done), "kept": reused}))

    tell()
    last_manifest = time.monotonic()
    with open(done_path, "a", encoding="utf-8") as log_f:
        def record(info: ShardInfo) -> None:
            nonlocal samples_done, last_manifest
            done[info.url] = info
            log_f.write(json.dumps(asdict(info)) + "\n")
            log_f.flush()
            os.fsync(log_f.fileno())
            samples_done += info.nsamples
            tell()
            if time.monotonic() - last_manifest > MANIFEST_EVERY_S:
                write_json(manifest_path, _manifest(index, options, ident, list(done.values()), len(names), skipped))
                last_manifest = time.monotonic()

        try:
            # by default one writer more than cores, to keep the cores busy while a shard is fsync'd
            n = jobs.cap_workers(workers or (os.cpu_count() or 1) + 1, "process", max(1, len(todo)))
            # fsync and rename on threads here, so the writers go on to the next shard meanwhile
            with jobs.Pool(n, kind="process") as writers, jobs.Pool(2, kind="thread") as committer:
                commits: set = set()
                tasks = ((str(plan_path), str(out), i, names[i]) for i in todo)
                for _, (info, tmp) in jobs.run(writers, write_shard, tasks):
                    commits.add(committer.submit(commit_shard, tmp, info))
                    for fut in [f for f in commits if f.done()]:
                        commits.discard(fut)
                        record(jobs.result(fut))
                for fut in list(commits):
                    commits.discard(fut)
                    record(jobs.result(fut))
        finally:
            # the pools have stopped: shards written but not committed when this stopped are redone next time
            remove_temps(out)
            write_json(manifest_path, _manifest(index, options, ident, list(done.values()), len(names), skipped))
    total = sum(s.filesize for s in done.values())
    return ExportReport(out, len(done), samples_done, total, time.monotonic() - t0, reused, skipped)
