"""WebDataset export: a catalog packed into tar shards, one sample per location.

A sample holds every selected season of one location::

    <key>.json       location, centre, CRS, transforms, dates, scene ids, cloud/valid fractions, item ids
    <key>.10m.npy    uint16 (seasons, bands, 264, 264)  - one array per resolution group
    <key>.20m.npy    uint16 (seasons, bands, 132, 132)
    <key>.60m.npy    uint16 (seasons, bands, 44, 44)

(``--resample-10m`` gives a single ``10m.npy`` with every band repeated to the 10 m grid.) The key is
the location number, ``%07d``: no dots, as WebDataset splits a member name at its first dot.

How it runs:
1. **Plan.** One pass over ``items.parquet`` computes each sample's exact size in the tar (NumPy
   headers and JSON are built, never the pixels), locations are shuffled with the seed, and shards are
   cut by ``maxcount``/``maxsize``. The plan is kept in ``OUT/.seco-export/plan.sqlite``.
2. **Write.** Shards are independent, so workers write them in parallel, each into a temporary
   name, fsync'd and renamed. Archives are what webdataset's ``TarWriter`` (the writer behind
   ``ShardWriter``) would write, byte for byte, written without its copies (:class:`TarShard`).
   Headers carry a fixed mtime, owner and mode: the same catalog, options and seed give the same
   bytes.
3. **Manifest.** A shard is recorded (``done.jsonl``, then ``shards.json``) only once renamed, with
   its sample count, size and sha256. Rerunning the command resumes: listed shards are kept.

``shards.json`` is also a wids shard index (``__kind__: wids-shard-index-v1``, ``shardlist`` with
``url``/``nsamples``/``filesize``): ``wids.ShardListDataset("OUT/shards.json")`` reads it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import sqlite3
import tarfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ... import __version__
from ...bands import BANDS, canonical
from ...errors import OutputError, UsageError
from ...catalog.index import CatalogIndex, Location

log = logging.getLogger(__name__)

MANIFEST = "shards.json"
STATE_DIR = ".seco-export"
BLOCK = 512
RECORD = 20 * BLOCK  # tarfile pads the archive to whole records
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


# -- sample layout ----------------------------------------------------------------------------------

def npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    """The exact header ``np.save`` writes for an array of ``shape`` and ``dtype`` (C order)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def member_size(n: int) -> int:
    """Bytes a member of ``n`` bytes takes in a ustar archive: header block + data padded to blocks."""
    return BLOCK + -(-n // BLOCK) * BLOCK


def archive_size(sample_bytes: int) -> int:
    """Bytes of a tar file holding members of ``sample_bytes`` in all (end blocks, record padding)."""
    return -(-(sample_bytes + 2 * BLOCK) // RECORD) * RECORD


def _plan_sample(loc: Location, opts: ShardOptions, catalog: str) -> tuple[dict, list, int] | str:
    """(sample JSON, read list, tar bytes) for one location, or the reason it is skipped."""
    patches = loc.patches
    if opts.seasons is not None:
        by_season = {p.season: p for p in patches}
        if any(s not in by_season for s in opts.seasons):
            return "missing_season"
        patches = tuple(by_season[s] for s in opts.seasons)
    # band -> (resolution, asset index) from the first patch; every season must match it
    first = patches[0]
    available = {b: a.resolution for a in first.assets for b in a.bands}
    wanted = list(opts.bands) if opts.bands else [b for a in first.assets for b in a.bands]
    if any(b not in available for b in wanted):
        return "missing_band"
    if opts.resample_10m:
        groups = {"10m": (10, wanted)}
    else:
        by_res: dict[int, list[str]] = {}
        for b in wanted:
            by_res.setdefault(available[b], []).append(b)
        groups = {f"{r}m": (r, by_res[r]) for r in sorted(by_res)}
    reads = []  # per season: [(path, band numbers in the file, group, rows in the group array, upsampling)]
    shapes: dict[str, tuple[int, int]] = {}
    transforms: dict[str, list] = {}
    scales: dict[str, float] = {}
    dtype = None
    for p in patches:
        season_reads = []
        index = {b: (a, i) for a in p.assets for i, b in enumerate(a.bands, start=1)}
        for gname, (res, bands) in groups.items():
            per_file: dict[Path, tuple[list[int], list[int], int]] = {}
            for row, b in enumerate(bands):
                if b not in index:
                    return "missing_band"
                a, i = index[b]
                if len(a.shape) != 2:
                    return "inconsistent_shapes"
                factor = max(1, a.resolution // res) if opts.resample_10m else 1
                shape = (a.shape[0] * factor, a.shape[1] * factor)
                if shapes.setdefault(gname, shape) != shape:
                    return "inconsistent_shapes"
                dtype = dtype or a.dtype
                if a.dtype != dtype:
                    return "inconsistent_dtype"
                scales.setdefault(gname, a.scale)
                if gname not in transforms:
                    t = list(a.transform)
                    if factor != 1 and len(t) == 6:
                        t = [t[0] / factor, t[1], t[2], t[3], t[4] / factor, t[5]]
                    transforms[gname] = t
                idx, rows, _ = per_file.setdefault(a.path, ([], [], factor))
                idx.append(i)
                rows.append(row)
            for path, (idx, rows, factor) in per_file.items():
                season_reads.append([str(path), idx, gname, rows, factor])
        reads.append(season_reads)
    arrays = {}
    size = 0
    for gname, (res, bands) in groups.items():
        shape = (len(patches), len(bands), *shapes[gname])
        arrays[gname] = {"bands": bands, "resolution": res, "shape": list(shape), "dtype": dtype,
                         "transform": transforms[gname], "scale": scales[gname]}
        size += member_size(len(npy_header(shape, dtype)) + int(np.prod(shape)) * np.dtype(dtype).itemsize)
    meta = {
        "key": f"{loc.location:07d}",
        "location": loc.location,
        "catalog": catalog,
        "centre": [round(loc.point[0], 7), round(loc.point[1], 7)],
        "crs": next((a.crs for a in first.assets if a.bands), ""),  # a data asset's, not the thumbnail's
        "arrays": arrays,
        "seasons": [p.season for p in patches],
        "dates": [p.datetime for p in patches],
        "scene_ids": [p.scene_id for p in patches],
        "platforms": [p.platform for p in patches],
        "scene_cloud": [p.scene_cloud for p in patches],
        "cloud_fraction": [p.cloud_fraction for p in patches],
        "valid_fraction": [p.valid_fraction for p in patches],
        "item_ids": [p.item_id for p in patches],
        "resampled": "nearest" if opts.resample_10m else None,
    }
    size += member_size(len(_json_bytes(meta)))
    return meta, reads, size


def _json_bytes(meta: dict) -> bytes:
    return json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()


def encode_sample(meta: dict, reads: list) -> dict[str, bytes]:
    """Read the pixels of one planned sample and encode its members (key -> bytes)."""
    import rasterio

    members = {}
    arrays = {}
    for g, a in meta["arrays"].items():
        # the member's bytes are allocated once; GDAL decodes straight into them
        head = npy_header(tuple(a["shape"]), a["dtype"])
        buf = bytearray(len(head) + int(np.prod(a["shape"])) * np.dtype(a["dtype"]).itemsize)
        buf[:len(head)] = head
        members[f"{g}.npy"] = buf
        arrays[g] = np.frombuffer(buf, dtype=a["dtype"], offset=len(head)).reshape(a["shape"])
    for s, season_reads in enumerate(reads):
        for path, idx, gname, rows, factor in season_reads:
            dest = arrays[gname][s]
            with rasterio.open(path) as src:
                if factor == 1 and rows == list(range(rows[0], rows[0] + len(rows))):
                    src.read(idx, out=dest[rows[0]:rows[0] + len(rows)])
                    continue
                data = src.read(idx)
            if factor > 1:
                data = data.repeat(factor, axis=1).repeat(factor, axis=2)
            dest[rows] = data
    return {"__key__": meta["key"], "json": _json_bytes(meta), **members}


# -- planning -----------------------------------------------------------------------------------------

def _fingerprint(index: CatalogIndex, opts: ShardOptions) -> str:
    h = hashlib.sha256()
    with open(index.parquet, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(json.dumps(opts.to_dict(), sort_keys=True).encode())
    return h.hexdigest()


def _plan(index: CatalogIndex, opts: ShardOptions, db_path: Path) -> tuple[list[dict], dict]:
    """Write the plan database; return the shard list and skip counts."""
    tmp = db_path.with_name(db_path.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    db = sqlite3.connect(tmp)
    db.executescript(
        "CREATE TABLE samples (n INTEGER PRIMARY KEY, size INTEGER, shard INTEGER, pos INTEGER, spec TEXT);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
    )
    skipped: dict[str, int] = {}
    sizes = []
    batch = []
    for loc in index.locations():
        planned = _plan_sample(loc, opts, index.name)
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
    os.replace(tmp, db_path)
    return shards, skipped


# -- writing ------------------------------------------------------------------------------------------

TAR_OWNER = {"uname": "seco", "gname": "seco", "uid": 0, "gid": 0, "mode": 0o444, "mtime": 0}


class TarShard:
    """A ustar archive written straight from the members' buffers, hashed as it goes.

    Byte for byte what webdataset's ``TarWriter`` writes for the same samples with a fixed owner,
    mode and mtime (members in sorted key order, headers from :class:`tarfile.TarInfo`; tested), but
    without its copies: ``TarWriter`` streams each member through ``tarfile``'s stream buffer, about
    six copies of every byte, which cost a quarter of the export's time (bench/bench_export.py).
    """

    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def _write(self, b) -> None:
        self.sha.update(b)
        self.f.write(b)
        self.size += len(b)

    def write(self, sample: dict) -> None:
        key = sample["__key__"]
        for ext in sorted(k for k in sample if not k.startswith("__")):
            data = sample[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            for k, v in TAR_OWNER.items():
                setattr(info, k, v)
            self._write(info.tobuf(format=tarfile.USTAR_FORMAT))
            self._write(memoryview(data))
            if info.size % BLOCK:
                self._write(bytes(BLOCK - info.size % BLOCK))

    def close(self) -> None:
        """End-of-archive blocks and padding to a whole record, as ``tarfile`` does."""
        end = self.size + 2 * BLOCK
        self._write(bytes(2 * BLOCK + (-end % RECORD)))


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
    tmp = Path(out) / f".{name}.tmp{os.getpid()}"
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
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    folder = os.path.dirname(tmp)
    os.replace(tmp, os.path.join(folder, info.url))
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
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


def _manifest(index: CatalogIndex, opts: ShardOptions, fingerprint: str, shards: list[ShardInfo],
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
        "catalog": {"path": str(index.root), "collection": index.name, "fingerprint": fingerprint},
        "recipe": index.collection.get("seco:recipe"),
        "options": opts.to_dict(),
        "samples": sum(s.nsamples for s in shards),
        "bytes": sum(s.filesize for s in shards),
        "skipped": skipped,
        "shardlist": [asdict(s) for s in shards],
    }


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", "utf-8")
    os.replace(tmp, path)


def export_webdataset(
    catalog: str | Path,
    out: str | Path,
    *,
    options: ShardOptions = ShardOptions(),
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Pack the catalog in ``catalog`` into WebDataset shards in ``out`` (resumable, parallel).

    ``progress(samples_done, shards_done)`` is called as shards complete.
    """
    t0 = time.monotonic()
    index = CatalogIndex(catalog)
    out = Path(out)
    state = out / STATE_DIR
    fingerprint = _fingerprint(index, options)
    manifest_path = out / MANIFEST
    if out.exists() and any(out.iterdir()):
        old = None
        if manifest_path.exists() or (state / "fingerprint").exists():
            old = (state / "fingerprint").read_text().strip() if (state / "fingerprint").exists() else None
            if old is None:
                try:
                    old = json.loads(manifest_path.read_text("utf-8"))["catalog"]["fingerprint"]
                except (OSError, ValueError, KeyError, TypeError):
                    old = None
        if old != fingerprint:
            if not overwrite:
                what = "shards of another catalog or other options" if old else "other files"
                raise OutputError(f"{out} already holds {what}",
                                  hint="pass --overwrite to replace them, or choose another --out")
            _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    state.mkdir(exist_ok=True)
    (state / "fingerprint").write_text(fingerprint + "\n")
    plan_path = state / "plan.sqlite"
    if plan_path.exists():
        db = sqlite3.connect(plan_path)
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        db.close()
        planned, skipped = json.loads(meta["shards"]), json.loads(meta["skipped"])
    else:
        planned, skipped = _plan(index, options, plan_path)
    names = [shard_name(options.prefix, i) for i in range(len(planned))]
    for stale in out.glob(f".{options.prefix}-*.tar.tmp*"):  # left by a killed run
        stale.unlink()
    done_path = state / "done.jsonl"
    done = {
        k: v for k, v in _read_done(done_path).items()
        if k in names and (out / k).is_file() and (out / k).stat().st_size == v.filesize
    }
    reused = len(done)
    todo = [i for i, n in enumerate(names) if n not in done]
    samples_done = sum(s.nsamples for s in done.values())
    if progress:
        progress(samples_done, len(done))
    last_manifest = time.monotonic()
    with open(done_path, "a", encoding="utf-8") as log_f:
        def record(info: ShardInfo) -> None:
            nonlocal samples_done, last_manifest
            done[info.url] = info
            log_f.write(json.dumps(asdict(info)) + "\n")
            log_f.flush()
            os.fsync(log_f.fileno())
            samples_done += info.nsamples
            if progress:
                progress(samples_done, len(done))
            if time.monotonic() - last_manifest > MANIFEST_EVERY_S:
                _write_json(manifest_path, _manifest(index, options, fingerprint, list(done.values()),
                                                     len(names), skipped))
                last_manifest = time.monotonic()

        committer = ThreadPoolExecutor(2, thread_name_prefix="seco-fsync")
        commits: set = set()
        try:
            if workers <= 1 or len(todo) <= 1:
                for i in todo:
                    info, tmp = write_shard(str(plan_path), str(out), i, names[i])
                    commits.add(committer.submit(commit_shard, tmp, info))
                    for fut in [f for f in commits if f.done()]:
                        commits.discard(fut)
                        record(fut.result())
            else:
                import multiprocessing as mp

                ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
                with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                    writes: set = set()
                    queue = list(todo)
                    try:
                        while queue or writes:
                            while queue and len(writes) < 2 * workers:
                                i = queue.pop(0)
                                writes.add(pool.submit(write_shard, str(plan_path), str(out), i, names[i]))
                            finished, _ = wait(writes | commits, return_when=FIRST_COMPLETED)
                            for fut in finished:
                                if fut in writes:
                                    writes.discard(fut)
                                    info, tmp = fut.result()
                                    commits.add(committer.submit(commit_shard, tmp, info))
                                else:
                                    commits.discard(fut)
                                    record(fut.result())
                    except BaseException:
                        for fut in writes:
                            fut.cancel()
                        raise
            for fut in list(commits):
                commits.discard(fut)
                record(fut.result())
        finally:
            committer.shutdown(wait=True)  # a shard being fsync'd is finished, not recorded: redone next time
            _write_json(manifest_path, _manifest(index, options, fingerprint, list(done.values()), len(names),
                                                 skipped))
    total = sum(s.filesize for s in done.values())
    return ExportReport(out, len(done), samples_done, total, time.monotonic() - t0, reused, skipped)


def _clear(out: Path) -> None:
    """Remove a previous export (shards, manifest, state) from ``out``; refuse anything else."""
    for p in out.iterdir():
        if p.name == STATE_DIR:
            shutil.rmtree(p)
        elif p.is_file() and (p.suffix == ".tar" or p.name == MANIFEST or p.name.startswith(".")):
            p.unlink()
        else:
            raise OutputError(f"{out} holds {p.name}, which is not part of a shard export",
                              hint="choose an empty or new --out")
