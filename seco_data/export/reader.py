"""Streaming samples back out of shards, without torch.

``ShardReader(urls)`` accepts a shard folder (its ``shards.json``), a manifest, local paths, globs,
brace patterns (``shards/seco-{000000..000099}.tar``) or http(s) URLs, and yields one dict per
sample::

    {"__key__": "0000042", "__url__": ".../seco-000003.tar", "json": {...},
     "10m": ndarray (seasons, bands, 264, 264), "20m": ..., "60m": ...}

Members ``<group>.npy`` decode to read-only views on the bytes read from the tar (no copy),
``<group>.npy.zst`` (``--codec zstd``) are decompressed (:mod:`seco_data.export.arrays`). ``bands=``
reads only what those bands need: the JSON, then the arrays holding them; a local shard's other members
are never read (their headers are, to step over them), a remote shard's are dropped undecoded. Shards are split across
distributed ranks and DataLoader workers so that every worker reads a disjoint subset and together
they read every shard once: rank and world size come from ``torch.distributed`` when it is
initialised, else from ``RANK``/``WORLD_SIZE``; the worker from ``torch.utils.data.get_worker_info()``
when torch is already imported, else from ``WORKER``/``NUM_WORKERS`` (webdataset's conventions).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import ShardError
from ..storage import is_url, join, open_stream, read_bytes, split
from .arrays import decode_member
from .webdataset import MANIFEST

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """Which part of the shard list this process reads: rank of world, worker of workers."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    @property
    def index(self) -> int:
        return self.rank * self.num_workers + self.worker

    @property
    def count(self) -> int:
        return self.world_size * self.num_workers


def current_split() -> Split:
    """The rank and worker of the calling process (see the module docstring)."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    worker, workers = int(os.environ.get("WORKER", 0)), int(os.environ.get("NUM_WORKERS", 1))
    torch = sys.modules.get("torch")  # never import torch here: only ask it if the caller uses it
    if torch is not None:
        dist = getattr(torch, "distributed", None)
        if dist is not None and dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
        info = torch.utils.data.get_worker_info()
        if info is not None:
            worker, workers = info.id, info.num_workers
    return Split(rank, world, worker, workers)


def split_shards(shards: list[str], split: Split) -> list[str]:
    """Every ``split.count``-th shard starting at ``split.index``: disjoint across splits, complete
    together."""
    if not 0 <= split.rank < split.world_size or not 0 <= split.worker < split.num_workers:
        raise ValueError(f"invalid split {split}")
    return shards[split.index::split.count]


def expand_urls(urls: str | Path | Iterable[str | Path]) -> list[str]:
    """Shard URLs from a folder, manifest, glob, brace pattern, URL, or a list of these (in order).

    A folder or manifest must be a finished export (its ``shards.json`` says ``complete``): an
    unfinished one is refused, naming how far it got; tars named explicitly (paths, globs) are read
    as they are."""
    from braceexpand import braceexpand

    items = [urls] if isinstance(urls, (str, Path)) else list(urls)
    out: list[str] = []
    for item in items:
        s = str(item)
        if is_url(s):
            out.extend(_expand_remote(s, braceexpand))
            continue
        p = Path(s)
        if p.is_dir():
            if not (p / MANIFEST).exists():
                n = len(list(p.glob("*.tar")))
                raise ShardError(
                    f"{p} has no {MANIFEST}" + (f" ({n} shards without one: an export that did not finish)" if n
                                                else " and no shards"),
                    hint=f"rerun the same `seco-data export` to finish it; to read whatever tars are there, pass them "
                         f"explicitly ({p}/*.tar)")
            p = p / MANIFEST
        if p.suffix == ".json" and p.is_file():
            out.extend(_from_manifest(p))
            continue
        for pattern in braceexpand(s):
            if glob.has_magic(pattern):
                found = sorted(glob.glob(pattern))
                if not found:
                    raise ShardError(f"no shard matches {pattern}")
                out.extend(found)
            elif not Path(pattern).exists():
                raise ShardError(f"no shard or shard folder at {pattern}",
                                 hint="point at the --out folder of `seco-data export`, its shards.json, or a glob")
            else:
                out.append(pattern)
    return out


def _expand_remote(s: str, braceexpand) -> list[str]:
    """Shards at a URL: a tar or a brace pattern of tars, else a manifest or the folder holding one."""
    if s.rstrip("/").endswith(".tar") or "{" in s:
        return list(braceexpand(s))
    manifest = s if s.endswith(".json") else str(join(s, MANIFEST))
    return _from_manifest(manifest)


def _from_manifest(path: str | Path) -> list[str]:
    try:
        m = json.loads(read_bytes(path).decode("utf-8"))
        shards = [s["url"] for s in m["shardlist"]]
    except FileNotFoundError:
        raise ShardError(f"no shard manifest at {path}",
                         hint="point at the --out of `seco-data export` (its shards.json), or name the tars") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ShardError(f"cannot read the shard manifest {path}: {e}") from None
    if m.get("complete") is False:
        planned = m.get("planned_shards")
        raise ShardError(
            f"{path} is an unfinished export: {len(shards)} shards ({m.get('samples', '?')} samples) written so far"
            + (f" of {planned} planned" if planned else ""),
            hint=f"rerun the same `seco-data export` to finish it; to read what is there, pass the tars explicitly "
                 f"({split(str(path))[0]}/*.tar)")
    base = split(str(path))[0] if is_url(str(path)) else Path(path).parent
    return [u if "://" in u or u.startswith("/") else str(join(base, u)) for u in shards]


def _open(url: str, timeout: float):
    if url.startswith(("http://", "https://")):
        return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - the user's own shard URLs
    return open_stream(url)  # local, or object storage streamed as it downloads (retried, see seco_data.storage)


def iter_shard(url: str, *, decode: bool = True, timeout: float = 60.0,
               bands: Iterable[str] | None = None) -> Iterator[dict]:
    """Samples of one shard, in order. Errors name the shard and the sample.

    ``bands``: each sample holds its JSON and only the arrays that hold these bands (the first array
    listing a band, as the sample JSON orders them); other members are skipped unread on local shards."""
    wanted = None if bands is None else frozenset(bands)
    if wanted is not None and "://" not in url:
        yield from _iter_local(url, wanted, decode)
        return
    key = None
    sample: dict = {}
    try:
        with _open(url, timeout) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                name = member.name.rsplit("/", 1)[-1]
                k, _, ext = name.partition(".")
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    raise tarfile.ReadError(f"{name} is truncated")
                if k != key:
                    if sample:
                        yield _finish(_select(sample, wanted), url, decode)
                    key, sample = k, {"__key__": k}
                sample[ext] = data
            if sample:
                yield _finish(_select(sample, wanted), url, decode)
    except ShardError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        where = f"after sample {key}" if key else "at its start"
        raise ShardError(f"shard {url} is unreadable {where}: {e}") from None


def needed_groups(meta: dict, bands: frozenset[str]) -> set[str]:
    """The array groups of a sample JSON that hold ``bands`` (for each band, the first listing it)."""
    first: dict[str, str] = {}
    for name, a in (meta.get("arrays") or {}).items():
        for b in a.get("bands", ()):
            first.setdefault(b, name)
    return {first[b] for b in bands if b in first}


def _is_array(ext: str) -> bool:
    return ext.endswith((".npy", ".npy.zst")) or ext == "npy"


def _select(sample: dict, wanted: frozenset[str] | None) -> dict:
    """``sample`` without the array members ``wanted`` does not need (all of it without a JSON)."""
    if wanted is None or "json" not in sample:
        return sample
    groups = needed_groups(json.loads(sample["json"]), wanted)
    return {k: v for k, v in sample.items() if not _is_array(k) or k.split(".", 1)[0] in groups}


# -- reading only what is needed from a local shard ------------------------------------------------------

_BLOCK = 512
_SKIP_TYPES = (tarfile.XGLTYPE,)  # global pax headers: nothing this reader needs


def _headers(fd: int, size: int) -> Iterator[tuple[str, int, int]]:
    """(name, data offset, data size) of every regular member of the tar file ``fd``, reading headers
    only (ustar, GNU long names and pax ``path``/``size`` records understood)."""
    pos = 0
    long_name = None
    pax: dict[str, str] = {}
    while True:
        block = os.pread(fd, _BLOCK, pos)
        if not block or block == bytes(_BLOCK) and pos + _BLOCK >= size:
            return
        if len(block) < _BLOCK:
            raise tarfile.ReadError("truncated header")
        if block == bytes(_BLOCK):
            return  # end of archive
        info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        start = pos + _BLOCK
        length = int(pax.get("size", info.size))
        if start + length > size:
            raise tarfile.ReadError(f"{info.name} is truncated")
        pos = start + -(-length // _BLOCK) * _BLOCK
        if info.type in (tarfile.GNUTYPE_LONGNAME,):
            long_name = os.pread(fd, length, start).rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        if info.type in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE):
            pax = _pax_records(os.pread(fd, length, start))
            continue
        if info.type in _SKIP_TYPES or info.type == tarfile.GNUTYPE_SPARSE:
            if info.type == tarfile.GNUTYPE_SPARSE:
                raise tarfile.ReadError(f"{info.name} is a sparse member")
            continue
        name = pax.get("path") or long_name or info.name
        long_name, pax = None, {}
        if info.isreg():
            yield name, start, length


def _pax_records(data: bytes) -> dict[str, str]:
    """The records of a pax extended header (``"<len> <key>=<value>\\n"`` each)."""
    out, i = {}, 0
    while i < len(data) and data[i:i + 1] != b"\0":
        space = data.index(b" ", i)
        n = int(data[i:space])
        key, _, value = data[space + 1:i + n - 1].partition(b"=")
        out[key.decode()] = value.decode("utf-8", "surrogateescape")
        i += n
    return out


def _iter_local(url: str, wanted: frozenset[str], decode: bool) -> Iterator[dict]:
    """iter_shard(url, bands=...) of a local shard: headers, then per sample its JSON, then the members
    it needs, each read with one pread."""
    key = None
    try:
        fd = os.open(url, os.O_RDONLY)
    except OSError as e:
        raise ShardError(f"shard {url} is unreadable at its start: {e}") from None
    try:
        members: list[tuple[str, int, int]] = []

        def sample_of() -> dict:
            found = {ext: (offset, length) for ext, offset, length in members}
            sample: dict = {"__key__": key}
            keep = None
            if "json" in found:
                sample["json"] = _pread(fd, *found["json"], key)
                keep = needed_groups(json.loads(sample["json"]), wanted)
            for ext, (offset, length) in found.items():
                if ext != "json" and (keep is None or not _is_array(ext) or ext.split(".", 1)[0] in keep):
                    sample[ext] = _pread(fd, offset, length, key)
            return _finish(sample, url, decode)

        for name, offset, length in _headers(fd, os.fstat(fd).st_size):
            k, _, ext = name.rsplit("/", 1)[-1].partition(".")
            if k != key:
                if members:
                    yield sample_of()
                key, members = k, []
            members.append((ext, offset, length))
        if members:
            yield sample_of()
    except ShardError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        where = f"after sample {key}" if key else "at its start"
        raise ShardError(f"shard {url} is unreadable {where}: {e}") from None
    finally:
        os.close(fd)


def _pread(fd: int, offset: int, length: int, key: str) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise tarfile.ReadError(f"a member of sample {key} is truncated")
    return data


def _finish(sample: dict, url: str, decode: bool) -> dict:
    sample["__url__"] = url
    if not decode:
        return sample
    ext = "json"
    try:
        if "json" in sample:
            sample["json"] = json.loads(sample["json"])
        specs = sample.get("json", {}).get("arrays", {}) if isinstance(sample.get("json"), dict) else {}
        for ext in list(sample):
            if _is_array(ext):
                group = ext.split(".", 1)[0]
                sample[group] = decode_member(ext, sample.pop(ext), specs.get(group))
    except ValueError as e:
        raise ShardError(f"sample {sample['__key__']} of shard {url} does not decode ({ext}): {e}") from None
    return sample


class ShardReader:
    """An iterable over the samples of a shard set, split across ranks and workers.

    ``shuffle_shards=True`` permutes the shard order with ``seed`` + ``epoch`` before splitting (the
    same on every rank, so the split stays disjoint); call :meth:`set_epoch` between epochs.
    ``split=None`` reads the split of the calling process at iteration time (DataLoader workers);
    pass ``Split()`` to read everything.
    """

    def __init__(self, urls, *, split: Split | None = None, shuffle_shards: bool = False, seed: int = 0,
                 decode: bool = True, timeout: float = 60.0):
        self.urls = expand_urls(urls)
        if not self.urls:
            raise ShardError(f"no shards in {urls}")
        self.split = split
        self.shuffle_shards = shuffle_shards
        self.seed = seed
        self.epoch = 0
        self.decode = decode
        self.timeout = timeout

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shards(self) -> list[str]:
        """The shards this process reads, in order."""
        urls = list(self.urls)
        if self.shuffle_shards:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(urls))
            urls = [urls[i] for i in order]
        split = self.split or current_split()
        mine = split_shards(urls, split)
        if not mine:
            log.warning("split %s gets no shard out of %d: export more shards than ranks x workers",
                        split, len(urls))
        return mine

    def __iter__(self) -> Iterator[dict]:
        for url in self.shards():
            yield from iter_shard(url, decode=self.decode, timeout=self.timeout)
