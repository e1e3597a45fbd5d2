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
from ..storage import size_of
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


def verify_catalog(root: str | Path, *, workers: int | None = 2,
                   progress: jobs.ProgressFn | None = None) -> VerifyReport:
    """Check every file of every item of the catalog in ``root`` against its size and checksum."""
    index = CatalogIndex(root)
    report = VerifyReport("catalog", index.root)
    total = index.n_items
    report.samples = total

    def check(path, size: int | None, sha256: str | None) -> list[str]:
        rel = str(path)[len(str(index.root)):].lstrip("/") if str(path).startswith(str(index.root)) else path
        got = size_of(path)
        if got is None:
            return [f"{rel}: missing"]
        out = []
        if size is not None and got != size:
            out.append(f"{rel}: size {got} != file:size {size}")
        if sha256 and sha256_file(path) != sha256:
            out.append(f"{rel}: sha256 differs from file:checksum")
        return out

    def files():
        for path, size, sha in index.files():
            report.bytes += size or 0
            yield path, size, sha

    def tell():
        if progress:
            progress(jobs.Progress(report.checked, None, "file", {"problems": len(report.problems)}))

    with jobs.Pool(jobs.cap_workers(workers, "thread"), kind="thread", local=True) as pool:  # hashing releases the GIL
        for _, problems in jobs.run(pool, check, files(), window=256, ordered=True):
            report.problems.extend(problems)
            report.checked += 1
            if report.checked % 256 == 0:
                tell()
    tell()
    if total == 0:
        raise CatalogError(f"{index.root} has no items", hint="is the collection finished? see `seco-data catalog info`")
    return report
