"""``seco-data verify``: prove that a shard set or a catalog is whole.

Shards: every shard the manifest lists exists with its size and sha256, every sample decodes, its
arrays have the shapes and dtypes its JSON announces, and counts match the manifest; shard files
the manifest does not list are reported too. Catalog: every asset of every item (GeoTIFFs and PNG
thumbnails) exists with its ``file:size`` and ``file:checksum``. Problems are collected (not raised one at a time) so a single
run names every file at fault.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import CatalogError, ShardError
from ..hashing import sha256_file
from .index import CatalogIndex
from ..export.reader import iter_shard
from ..export.webdataset.export import MANIFEST


@dataclass
class VerifyReport:
    kind: str  # "shards" or "catalog"
    root: Path
    checked: int = 0  # shards or assets checked
    samples: int = 0  # samples decoded (shards) or items (catalog)
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"kind": self.kind, "root": str(self.root), "checked": self.checked, "samples": self.samples,
                "bytes": self.bytes, "ok": self.ok, "problems": self.problems}


def _check_shard(path: Path, entry: dict) -> tuple[list[str], int]:
    name = entry["url"]
    if not path.is_file():
        return [f"{name}: missing"], 0
    problems = []
    size = path.stat().st_size
    if size != entry.get("filesize"):
        problems.append(f"{name}: size {size} != {entry.get('filesize')} in the manifest")
    if entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        problems.append(f"{name}: sha256 differs from the manifest")
    n = 0
    try:
        for sample in iter_shard(str(path)):
            n += 1
            meta = sample.get("json")
            if not isinstance(meta, dict) or "arrays" not in meta:
                problems.append(f"{name}: sample {sample['__key__']} has no valid json")
                continue
            for g, spec in meta["arrays"].items():
                arr = sample.get(g)
                if arr is None:
                    problems.append(f"{name}: sample {sample['__key__']} lacks {g}.npy")
                elif list(arr.shape) != spec["shape"] or str(arr.dtype) != spec["dtype"]:
                    problems.append(f"{name}: sample {sample['__key__']} {g}.npy is {arr.dtype} {list(arr.shape)},"
                                    f" its json says {spec['dtype']} {spec['shape']}")
    except ShardError as e:
        problems.append(e.one_line().split(" (hint:")[0])
    if n != entry.get("nsamples"):
        problems.append(f"{name}: {n} samples read, the manifest says {entry.get('nsamples')}")
    return problems, n


def verify_shards(root: str | Path, *, workers: int = 2,
                  progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    root = Path(root)
    manifest = root / MANIFEST if root.is_dir() else root
    try:
        m = json.loads(manifest.read_text("utf-8"))
        entries = list(m["shardlist"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ShardError(f"cannot read the shard manifest {manifest}: {e}",
                         hint="point at the --out folder of `seco-data export`") from None
    base = manifest.parent
    report = VerifyReport("shards", base)
    if m.get("complete") is False:
        report.problems.append(f"{manifest.name}: the export is unfinished (rerun `seco-data export` to complete it)")
    listed = {e["url"] for e in entries}
    for extra in sorted(p.name for p in base.glob("*.tar") if p.name not in listed):
        report.problems.append(f"{extra}: a shard file the manifest does not list")
    with ThreadPoolExecutor(max(1, workers)) as pool:  # hashing and tar reading release the GIL
        for i, (problems, n) in enumerate(pool.map(lambda e: _check_shard(base / e["url"], e), entries), 1):
            report.problems.extend(problems)
            report.samples += n
            report.checked += 1
            if progress:
                progress(i, len(entries))
    report.bytes = sum(e.get("filesize", 0) for e in entries)
    if m.get("samples") is not None and report.samples != m["samples"] and not report.problems:
        report.problems.append(f"{manifest.name}: {report.samples} samples in the shards, the manifest says {m['samples']}")
    return report


def verify_catalog(root: str | Path, *, workers: int = 2,
                   progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    index = CatalogIndex(root)
    report = VerifyReport("catalog", index.root)

    def check(asset) -> list[str]:
        rel = asset.path.relative_to(index.root) if asset.path.is_relative_to(index.root) else asset.path
        if not asset.path.is_file():
            return [f"{rel}: missing"]
        out = []
        size = asset.path.stat().st_size
        if asset.size is not None and size != asset.size:
            out.append(f"{rel}: size {size} != file:size {asset.size}")
        if asset.sha256 and sha256_file(asset.path) != asset.sha256:
            out.append(f"{rel}: sha256 differs from file:checksum")
        return out

    with ThreadPoolExecutor(max(1, workers)) as pool:
        batch = []

        def drain():
            for problems in pool.map(check, batch):
                report.problems.extend(problems)
            report.checked += len(batch)
            batch.clear()
            if progress:
                progress(report.samples, index.n_items)

        for patch in index.patches():
            report.samples += 1
            for a in patch.assets:
                report.bytes += a.size or 0
                batch.append(a)
            if len(batch) >= 256:
                drain()
        drain()
    if report.samples == 0:
        raise CatalogError(f"{index.root} has no items", hint="is the collection finished? see `seco-data catalog info`")
    return report


def verify(path: str | Path, **kw) -> VerifyReport:
    """Verify a shard folder / manifest, or a catalog folder, whichever ``path`` is."""
    p = Path(path)
    if (p.is_dir() and (p / MANIFEST).exists()) or (p.is_file() and p.suffix == ".json" and p.name != "collection.json"):
        return verify_shards(p, **kw)
    if p.is_dir() and (p / "collection.json").exists():
        return verify_catalog(p, **kw)
    raise CatalogError(f"{p} is neither a shard folder (shards.json) nor a catalog (collection.json)",
                       hint="pass the --out folder of `seco-data export` or of `seco-data sample`")
