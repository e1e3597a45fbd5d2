"""Verifying a catalog: every asset of every item (GeoTIFFs and PNG thumbnails) exists with its
``file:size`` and ``file:checksum``. Problems are collected (not raised one at a time) so a single
run names every file at fault. (Shard sets: :mod:`seco_data.export.verify`.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import jobs
from ..errors import CatalogError
from ..outputs import sha256_file
from .index import CatalogIndex


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


def verify_catalog(root: str | Path, *, workers: int = 2, progress: jobs.ProgressFn | None = None) -> VerifyReport:
    """Check every asset of every item of the catalog in ``root`` against its size and checksum."""
    index = CatalogIndex(root)
    report = VerifyReport("catalog", index.root)
    total = index.n_items

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

    def assets():
        for patch in index.patches():
            report.samples += 1
            for a in patch.assets:
                report.bytes += a.size or 0
                yield a

    with jobs.Pool(jobs.cap_workers(workers, "thread"), kind="thread") as pool:  # hashing releases the GIL
        for _, problems in jobs.run(pool, check, assets(), window=256, ordered=True):
            report.problems.extend(problems)
            report.checked += 1
            if progress and report.checked % 256 == 0:
                progress(jobs.Progress(report.samples, total, "item", {"assets": report.checked,
                                                                      "problems": len(report.problems)}))
    if progress:
        progress(jobs.Progress(report.samples, total, "item", {"assets": report.checked,
                                                              "problems": len(report.problems)}))
    if report.samples == 0:
        raise CatalogError(f"{index.root} has no items", hint="is the collection finished? see `seco-data catalog info`")
    return report
