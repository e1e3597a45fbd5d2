"""WebDataset export: a catalog packed into tar shards, one sample per location (:mod:`.samples`).

How it runs:
1. **Plan.** One pass over ``items.parquet`` computes each sample's size in the tar (NumPy headers
   and JSON are built, never the pixels) and cuts shards by ``maxcount``/``maxsize`` over
   consecutive locations of the catalog (which the samplers draw in random order, so a shard is a
   random draw of places); inside a shard, samples are shuffled with the seed. Each shard's entry
   (its rows of the index, size, skips, and the digests of the index parts it was planned from) is
   appended to ``OUT/.seco-export/plan.jsonl`` as soon as the shard is cut, and the shard goes to a
   worker straight away: planning overlaps writing, and the plan costs a line per shard.
2. **Write.** Shards are independent, so workers write them in parallel, each reading only its own
   rows of the index, into a temporary name, fsync'd and renamed. Archives are what webdataset's
   ``TarWriter`` (the writer behind ``ShardWriter``) would write, byte for byte, written without its
   copies (:mod:`.tar`). Headers carry a fixed mtime, owner and mode: the same catalog, options and
   seed give the same bytes.
3. **Manifest.** A shard is recorded (``done.jsonl``, then ``shards.json``) only once renamed, with
   its sample count, size and sha256. Rerunning the command resumes: listed shards are kept.

Incremental: a rerun on a catalog that changed keeps every shard whose locations are unchanged
(:class:`Digests`: the ledger's count and newest version of its range of locations, when the index
is current with the ledger) and plans again from the first that changed: a grown catalog
(``seco-data sample --n`` larger) gets its new shards, plus the last one, which ended with the old
catalog, redone. Without a ledger the index is trusted with, the checksum of the whole
``items.parquet`` stands for every range.

``shards.json`` is also a wids shard index (``__kind__: wids-shard-index-v1``, ``shardlist`` with
``url``/``nsamples``/``filesize``): ``wids.ShardListDataset("OUT/shards.json")`` reads it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ... import __version__, jobs
from ...bands import BANDS, canonical
from ...catalog.index import CatalogIndex
from ...catalog.layout import INDEX, LEDGER
from ...catalog.ledger import Ledger
from ...catalog.rebuild import index_digests
from ...errors import CatalogError, UsageError, disk_full, is_disk_full
from ...outputs import STATE, claim_output, commit, fsync, lock, remove_temps, sha256_file, temp_name, write_atomic, write_json
from ...remote import RemoteOutput, writable
from ...storage import is_url, store_for
from ..arrays import DTYPES, ENCODINGS
from .samples import encode_sample, plan_sample
from .tar import RECORD, TarShard, archive_size

log = logging.getLogger(__name__)

MANIFEST = "shards.json"
STATE_DIR = ".seco-export"
DONE = "done.jsonl"
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
    codec: str = "npy"  # how arrays are stored: npy, or zstd (lossless, ~0.6x the bytes), seco_data.export.arrays
    dtype: str = "stored"  # stored: the catalog's values; uint8: SeCo's 8-bit, seco_data.export.arrays.DTYPES

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
        if self.codec not in ENCODINGS:
            raise UsageError(f"unknown array codec {self.codec!r}", hint=f"use one of {', '.join(ENCODINGS)}")
        if self.dtype not in DTYPES:
            raise UsageError(f"unknown array dtype {self.dtype!r}", hint=f"use one of {', '.join(DTYPES)}")

    @classmethod
    def from_dict(cls, d: dict) -> "ShardOptions":
        d = dict(d)
        for k in ("bands", "seasons"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bands"] = list(self.bands) if self.bands else None
        d["seasons"] = list(self.seasons) if self.seasons is not None else None
        if self.dtype == "stored":  # exports from before the option keep their identity (and resume)
            del d["dtype"]
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

PLAN = "plan.jsonl"


class Digests:
    """What a shard was planned from: per range of locations, the ledger's (count, newest version)
    of its accepted locations, when the index is current with the ledger (else the checksum of the
    whole ``items.parquet`` stands for every range)."""

    def __init__(self, index: CatalogIndex):
        self.ledger = None
        found = None if is_url(str(index.root)) else index_digests(index.root)
        if found is not None and (index.root / LEDGER).is_file():
            ledger = Ledger(index.root / LEDGER, readonly=True)
            per_part, written = found
            if {p: list(d) for p, d in ledger.part_digests(per_part).items()} == written:
                self.ledger = ledger
            else:
                ledger.close()
        self.whole = None if self.ledger else sha256_file(index.parquet)

    def of(self, first: int, last: int) -> dict:
        """The digest of locations ``first .. last``."""
        if self.ledger is None:
            return {INDEX: self.whole}
        return {"ledger": list(self.ledger.range_digest(first, last))}

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()


def plan_shards(index: CatalogIndex, opts: ShardOptions, digests: Digests, start: int = 0, shard: int = 0):
    """Shard entries over the index's rows from ``start`` (a location's first row), numbered from
    ``shard``: consecutive locations until ``maxcount`` samples or ``maxsize`` bytes. The last entry
    ends with the catalog (``open``: a grown catalog extends it); an entry without samples (every
    location skipped) gets no shard."""
    count = size = 0
    row0 = start
    first = last = None
    skipped: dict[str, int] = {}

    def entry(row1: int, open_: bool) -> dict:
        return {"shard": shard if count else None, "rows": [row0, row1], "locations": [first, last],
                "count": count, "size": archive_size(size) if count else 0, "skipped": dict(sorted(skipped.items())),
                "open": open_, "digests": digests.of(first, last) if first is not None else {}}

    for loc in index.locations(start=start):
        planned = plan_sample(loc, opts, index.name)
        sample_size = 0 if isinstance(planned, str) else planned[2]
        if count and (count >= opts.maxcount or archive_size(size + sample_size) > opts.maxsize):
            yield entry(loc.row, False)
            shard += 1
            count = size = 0
            row0, first, skipped = loc.row, None, {}
        first = loc.location if first is None else first
        last = loc.location
        if isinstance(planned, str):
            skipped[planned] = skipped.get(planned, 0) + 1
            continue
        if archive_size(sample_size) > opts.maxsize:
            log.warning("sample %d alone is larger than maxsize (%d bytes): its shard will be too",
                        loc.location, sample_size)
        count += 1
        size += sample_size
    if count or skipped:
        yield entry(index.n_items, True)


def _read_plan(path: Path) -> list[dict]:
    entries = []
    if path.exists():
        for line in path.read_text("utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                break  # a torn last line after a crash: planned again
    return entries


def _valid_prefix(entries: list[dict], index: CatalogIndex, digests: Digests) -> list[dict]:
    """The planned entries still true of the catalog: unchanged parts, and the last one only if the
    catalog still ends where it did."""
    kept = []
    row = 0
    for e in entries:
        first, last = e["locations"]
        if e["rows"][0] != row or first is None or digests.of(first, last) != e["digests"]:
            break
        if e["open"] and e["rows"][1] != index.n_items:
            break
        kept.append(e)
        row = e["rows"][1]
    return kept


# -- writing ------------------------------------------------------------------------------------------

def write_shard(root: str, options: dict, entry: dict, out: str, name: str) -> tuple[ShardInfo, str]:
    """Write the shard of plan ``entry`` into a temporary file in ``out``; run in a worker.

    Returns the shard's info and the temporary path; :func:`commit_shard` makes it durable and gives
    it its name. (The fsync is left to the parent's threads, so the worker goes on to the next shard
    while the disk catches up.)
    """
    import rasterio

    opts = ShardOptions.from_dict(options)
    index = CatalogIndex(root)
    samples = []
    for loc in index.locations(start=entry["rows"][0], stop=entry["rows"][1]):
        planned = plan_sample(loc, opts, index.name)
        if not isinstance(planned, str):
            samples.append(planned)
    if len(samples) != entry["count"]:
        raise CatalogError(f"{index.parquet} changed while it was exported (shard {name}: {len(samples)} samples, "
                           f"{entry['count']} planned)", hint="rerun the export once the catalog is finished")
    order = np.random.default_rng([opts.seed, entry["shard"]]).permutation(len(samples))
    remote = is_url(out)  # object storage: written to a local temporary file, then uploaded whole
    tmp = Path(tempfile.mkstemp(prefix=f".{name}.", dir=os.environ.get("SECO_STAGING"))[1]) if remote \
        else temp_name(Path(out) / name)
    try:
        with rasterio.Env(**FAST_OPEN), open(tmp, "wb") as raw:
            tar = TarShard(raw)
            for k in order.tolist():
                meta, reads, _ = samples[k]
                tar.write(encode_sample(meta, reads))
            tar.close()
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(tmp if remote else Path(out) / name, e) from None
        raise
    info = ShardInfo(name, len(samples), tar.size, tar.sha.hexdigest())
    if remote:
        try:
            store_for(out).upload(tmp, name)  # one object, complete or absent (multipart, completed last)
        finally:
            tmp.unlink(missing_ok=True)
        return info, None
    return info, str(tmp)


def commit_shard(tmp: str | None, info: ShardInfo) -> ShardInfo:
    """fsync the written shard, then rename it into place (and fsync the folder); an uploaded one
    (``tmp`` None) is in place already."""
    if tmp is not None:
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


def identity(index: CatalogIndex, opts: ShardOptions) -> dict:
    """What makes two exports the same output: the collection and the options (what the catalog holds
    is followed shard by shard, :class:`Digests`)."""
    return {"catalog": {"collection": index.name}, "options": opts.to_dict()}


def _manifest(index: CatalogIndex, opts: ShardOptions, shards: list[ShardInfo], plan: list[dict],
              planned_all: bool) -> dict:
    shards = sorted(shards, key=lambda s: s.url)
    planned = sum(1 for e in plan if e["count"])
    return {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": index.name,
        "format": "seco-webdataset",
        "format_version": 2,
        "complete": planned_all and len(shards) == planned,
        "software": {"name": "seco", "version": __version__},
        "catalog": {"path": str(index.root), "collection": index.name},
        "recipe": index.collection.get("seco:recipe"),
        "options": opts.to_dict(),
        "planned_shards": planned,
        "samples": sum(s.nsamples for s in shards),
        "bytes": sum(s.filesize for s in shards),
        "skipped": _skipped(plan),
        "shardlist": [asdict(s) for s in shards],
    }


def _skipped(plan: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in plan:
        for k, v in e["skipped"].items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


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
    """Pack the catalog in ``catalog`` into WebDataset shards in ``out`` (resumable, incremental, parallel).

    Either may be on object storage (a URL, :mod:`seco_data.storage`): shards are then written to a
    local temporary file by the worker and uploaded whole, and the plan and records are kept in a
    local staging folder, published with the manifest (``.seco-export/``), so that the same command
    resumes on this machine or another."""
    t0 = time.monotonic()
    jobs.check_workers(workers)
    remote = _remote_output(out, overwrite)
    local = remote.staging if remote else Path(out)  # the identity, lock, plan and records
    # the catalog stays as it is while it is read: no `sample` or `rebuild` writes it meanwhile (a
    # catalog on object storage has no lock: export it once its `sample` has finished)
    catalog_lock = nullcontext() if is_url(str(catalog)) else lock(Path(catalog), shared=True, wait_s=0.0,
                                                                    what="writing to")
    with catalog_lock:
        index = CatalogIndex(catalog)
        if remote:
            remote.fetch([STATE, f"{STATE_DIR}/{PLAN}", f"{STATE_DIR}/{DONE}"])
        with claim_output(local, kind="webdataset", identity=identity(index, options), overwrite=overwrite,
                          ours=_ours):
            (local / STATE_DIR).mkdir(exist_ok=True)
            (local / STATE_DIR / "plan.sqlite").unlink(missing_ok=True)  # the plan of format 1
            return _export(index, local, remote, options, workers, progress, t0)


def _remote_output(out, overwrite: bool) -> RemoteOutput | None:
    if not is_url(str(out)):
        return None
    writable(out, overwrite, "the shards")
    return RemoteOutput(str(out))


def _export(index: CatalogIndex, out: Path, remote, options: ShardOptions, workers, progress, t0) -> ExportReport:
    digests = Digests(index)
    try:
        return _export_with(index, out, remote, options, workers, progress, t0, digests)
    finally:
        digests.close()


def _export_with(index, out, remote, options, workers, progress, t0, digests) -> ExportReport:
    state = out / STATE_DIR
    plan_path, done_path, manifest_path = state / PLAN, state / DONE, out / MANIFEST
    store = remote.store if remote else store_for(out)  # where the shards are
    target = remote.url if remote else str(out)
    old = _read_plan(plan_path)
    plan = _valid_prefix(old, index, digests)
    names = {shard_name(options.prefix, e["shard"]) for e in plan if e["count"]}
    recorded = _read_done(done_path)
    present = dict(store.list(f"{options.prefix}-"))  # one listing, not a request per shard
    done = {k: v for k, v in recorded.items() if k in names and present.get(k) == v.filesize}
    if len(plan) < len(old) or len(done) < len(recorded):
        # the catalog changed from some shard on (or shards went missing): those shards and records go
        store.delete([shard_name(options.prefix, e["shard"]) for e in old[len(plan):]
                      if e["shard"] is not None and shard_name(options.prefix, e["shard"]) not in names
                      and shard_name(options.prefix, e["shard"]) in present])
        write_atomic(plan_path, "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in plan))
        write_atomic(done_path, "".join(json.dumps(asdict(v)) + "\n" for v in done.values()))
    remove_temps(out)  # shards being written when a run was killed

    def publish():
        write_json(manifest_path, _manifest(index, options, list(done.values()), plan, finished["planning"]))
        if remote:  # the records first, the manifest last: a reader sees a manifest whose shards exist
            remote.publish([STATE, f"{STATE_DIR}/{PLAN}", f"{STATE_DIR}/{DONE}"])
            remote.publish([MANIFEST])
    reused = len(done)
    total = index.n_locations
    counted = {"samples": sum(s.nsamples for s in done.values()),
               "skipped": sum(sum(e["skipped"].values()) for e in plan)}

    def tell():
        if progress:
            progress(jobs.Progress(counted["samples"] + counted["skipped"], total, "sample",
                                   {"shards": len(done), "kept": reused}))

    finished = {"planning": bool(plan) and plan[-1]["open"]}

    def task(e: dict) -> tuple:
        return (str(index.root), options.to_dict(), e, target, shard_name(options.prefix, e["shard"]))

    def tasks():
        """The shards to write: those planned before and not done, then new ones as they are planned."""
        for e in plan:
            if e["count"] and shard_name(options.prefix, e["shard"]) not in done:
                yield task(e)
        if finished["planning"]:
            return
        start = plan[-1]["rows"][1] if plan else 0
        first = max([e["shard"] for e in plan if e["shard"] is not None], default=-1) + 1
        with open(plan_path, "a", encoding="utf-8") as f:
            for e in plan_shards(index, options, digests, start, first):
                f.write(json.dumps(e, separators=(",", ":")) + "\n")
                f.flush()
                plan.append(e)
                counted["skipped"] += sum(e["skipped"].values())
                if e["count"]:
                    yield task(e)
            fsync(f.fileno())
        finished["planning"] = True

    tell()
    last_manifest = time.monotonic()
    with open(done_path, "a", encoding="utf-8") as log_f:
        def record(info: ShardInfo) -> None:
            nonlocal last_manifest
            done[info.url] = info
            log_f.write(json.dumps(asdict(info)) + "\n")
            log_f.flush()
            fsync(log_f.fileno())
            counted["samples"] += info.nsamples
            tell()
            if time.monotonic() - last_manifest > MANIFEST_EVERY_S:
                publish()
                last_manifest = time.monotonic()

        try:
            # by default one writer more than cores, to keep the cores busy while a shard is fsync'd
            n = jobs.cap_workers(workers or (os.cpu_count() or 1) + 1, "process")
            # fsync and rename on threads here, so the writers go on to the next shard meanwhile
            with jobs.Pool(n, kind="process") as writers, jobs.Pool(2, kind="thread", local=True) as committer:
                commits: set = set()
                for _, (info, tmp) in jobs.run(writers, write_shard, tasks()):
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
            publish()
    skipped = _skipped(plan)
    if finished["planning"] and not counted["samples"] and skipped:
        seasons = (index.collection.get("seco:recipe") or {}).get("seasons") or {}
        count = seasons.get("count") or len(seasons.get("anchors") or [])
        raise UsageError(
            f"no location of {index.root} has what the options ask for ("
            + ", ".join(f"{k} {v}" for k, v in skipped.items()) + "): nothing exported",
            hint="--seasons takes season indices the catalog has" + (f" (0..{count - 1})" if count else "")
                 + ", --bands bands it holds (`seco-data catalog info` lists both)")
    return ExportReport(remote.url if remote else out, len(done), counted["samples"], sum(s.filesize for s in done.values()),
                        time.monotonic() - t0, reused, skipped)
