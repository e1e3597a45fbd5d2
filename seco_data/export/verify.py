"""``seco-data verify``: prove that a shard set (or a catalog) is whole.

Shards: every shard the manifest lists exists with its size and sha256, every sample decodes, its
arrays have the shapes and dtypes its JSON announces, and counts match the manifest; shard files
the manifest does not list are reported too. :func:`verify` checks a shard folder or a catalog,
whichever it is given.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import jobs
from ..catalog.layout import COLLECTION
from ..catalog.verify import VerifyReport, verify_catalog
from ..errors import CatalogError, ShardError
from ..outputs import sha256_file
from ..storage import Store, is_url, join, read_bytes, size_of, split, store_for
from .reader import iter_shard
from .webdataset import MANIFEST


def _check_shard(store: Store, entry: dict) -> tuple[list[str], int]:
    name = entry["url"]
    size = store.size(name)
    if size is None:
        return [f"{name}: missing"], 0
    path = str(store.location(name))
    problems = []
    if size != entry.get("filesize"):
        problems.append(f"{name}: size {size} != {entry.get('filesize')} in the manifest")
    if entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        problems.append(f"{name}: sha256 differs from the manifest")
    n = 0
    try:
        for sample in iter_shard(path):
            n += 1
            meta = sample.get("json")
            if not isinstance(meta, dict) or "arrays" not in meta:
                problems.append(f"{name}: sample {sample['__key__']} has no valid json")
                continue
            for g, spec in meta["arrays"].items():
                arr = sample.get(g)
                if arr is None:
                    problems.append(f"{name}: sample {sample['__key__']} lacks its {g} array")
                elif list(arr.shape) != spec["shape"] or str(arr.dtype) != spec["dtype"]:
                    problems.append(f"{name}: sample {sample['__key__']} {g} array is {arr.dtype} {list(arr.shape)},"
                                    f" its json says {spec['dtype']} {spec['shape']}")
    except ShardError as e:
        problems.append(e.one_line().split(" (hint:")[0])
    if n != entry.get("nsamples"):
        problems.append(f"{name}: {n} samples read, the manifest says {entry.get('nsamples')}")
    return problems, n


def verify_shards(root: str | Path, *, workers: int = 2, progress: jobs.ProgressFn | None = None) -> VerifyReport:
    """Check the shard folder (or manifest) ``root``, local or on object storage."""
    manifest = root if str(root).endswith(".json") else join(root, MANIFEST)
    try:
        m = json.loads(read_bytes(manifest).decode("utf-8"))
        entries = m["shardlist"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("url"), str)
                                                    for e in entries):
            raise ValueError("its shardlist is not a list of {url, nsamples, filesize, sha256} entries")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ShardError(f"cannot read the shard manifest {manifest}: {e}",
                         hint="point at the --out folder of `seco-data export`; a damaged manifest is rewritten "
                              "by rerunning the same export") from None
    base, manifest_name = split(str(manifest))
    store = store_for(base)
    report = VerifyReport("shards", base if is_url(base) else Path(base))
    if m.get("complete") is False:
        report.problems.append(f"{manifest_name}: the export is unfinished (rerun `seco-data export` to complete it)")
    listed = {e["url"] for e in entries}
    for extra in sorted(rel for rel, _ in store.list("") if rel.endswith(".tar") and rel not in listed):
        report.problems.append(f"{extra}: a shard file the manifest does not list")
    if progress:
        progress(jobs.Progress(0, len(entries), "shard"))
    with jobs.Pool(jobs.cap_workers(workers, "thread", max(1, len(entries))), kind="thread", local=True) as pool:
        # hashing and tar reading release the GIL
        for _, (problems, n) in jobs.run(pool, _check_shard, ((store, e) for e in entries), ordered=True):
            report.problems.extend(problems)
            report.samples += n
            report.checked += 1
            if progress:
                progress(jobs.Progress(report.checked, len(entries), "shard", {"samples": report.samples,
                                                                             "problems": len(report.problems)}))
    report.bytes = sum(e.get("filesize", 0) for e in entries)
    if m.get("samples") is not None and report.samples != m["samples"] and not report.problems:
        report.problems.append(f"{manifest_name}: {report.samples} samples in the shards, the manifest says {m['samples']}")
    return report


def verify(path: str | Path, **kw) -> VerifyReport:
    """Verify a shard folder / manifest, or a catalog folder, whichever ``path`` is (local or a URL)."""
    if is_url(str(path)):
        if str(path).endswith(".json") and not str(path).endswith(COLLECTION):
            return verify_shards(str(path), **kw)
        if size_of(join(str(path), MANIFEST)) is not None:
            return verify_shards(str(path), **kw)
        if size_of(join(str(path), COLLECTION)) is not None:
            return verify_catalog(str(path), **kw)
        raise CatalogError(f"{path} holds neither shards.json nor collection.json",
                           hint="pass the --out of `seco-data export` or of `seco-data sample`")
    p = Path(path)
    if (p.is_dir() and (p / MANIFEST).exists()) or (p.is_file() and p.suffix == ".json" and p.name != COLLECTION):
        return verify_shards(p / MANIFEST if p.is_dir() else p, **kw)
    if p.is_dir() and (p / COLLECTION).exists():
        return verify_catalog(p, **kw)
    raise CatalogError(f"{p} is neither a shard folder (shards.json) nor a catalog (collection.json)",
                       hint="pass the --out folder of `seco-data export` or of `seco-data sample`")
