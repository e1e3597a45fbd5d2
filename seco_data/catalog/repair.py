"""Finding the accepted locations whose files are missing or damaged, so that ``sample --repair``
and ``import --repair`` collect them again, and ``catalog rebuild`` never indexes an item without
its files.

The ledger records every file of an accepted location with its size and sha256. ``quick`` checks
that each exists with its size (a ``stat`` per file); ``full`` also hashes it (reads everything, in
parallel threads). Item JSON files (per-patch) are not checked: ``catalog rebuild`` rewrites them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .. import jobs
from ..storage import Store, store_for
from .layout import files_dir
from .ledger import Ledger, LocationRow

log = logging.getLogger(__name__)

MODES = ("quick", "full")


@dataclass(frozen=True)
class Damage:
    location: int
    path: str | Path
    problem: str  # missing, size, sha256

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def expected_files(row: LocationRow, seasons: int, layout: str) -> Iterator[tuple[str, int, str]]:
    """``(path relative to the catalog, size, sha256)`` of every file the ledger records for an
    accepted location."""
    folder = files_dir(row.location, seasons, layout)
    entries = list(row.files) if layout == "compact" else [a for p in row.patches for a in p.assets]
    for e in entries:
        if e.get("href"):
            yield f"{folder}/{e['href']}", e.get("size"), e.get("sha256")


def _check(store: Store, location: int, rel: str, size, sha: str | None, full: bool) -> Damage | None:
    got = store.size(rel)
    where = store.location(rel)
    if got is None:
        return Damage(location, where, "missing")
    if size is not None and got != size:
        return Damage(location, where, f"size {got} != {size} recorded")
    if full and sha and hashlib.sha256(store.get(rel)).hexdigest() != sha:
        return Damage(location, where, "sha256 differs from the one recorded")
    return None


def damaged_locations(root: str | Path, ledger: Ledger, cm: dict, *, mode: str = "quick",
                      workers: int | None = None, progress: jobs.ProgressFn | None = None) -> list[Damage]:
    """Every file at fault among the accepted locations of ``ledger`` (``cm``: the catalog
    description, for its layout and seasons), in location order; ``root``: a folder or a URL."""
    store = store_for(root)
    full = mode == "full"
    tasks = ((store, row.location, rel, size, sha, full) for row in ledger.locations()
             for rel, size, sha in expected_files(row, cm["seasons"], cm["layout"]))
    found: list[Damage] = []
    checked = 0
    n = jobs.cap_workers(workers or (8 if full else 4), "thread")
    with jobs.Pool(n, kind="thread", local=True) as pool:  # stat and hashing release the GIL
        for _, damage in jobs.run(pool, _check, tasks, window=256, ordered=True):
            checked += 1
            if damage is not None:
                found.append(damage)
            if progress and checked % 1024 == 0:
                progress(jobs.Progress(checked, None, "file", {"damaged": len(found)}))
    return found


def reopen_damaged(root: str | Path, ledger: Ledger, mode: str, workers: int | None = None) -> int:
    """Put the accepted locations whose files are missing or damaged back to pending (the command
    resuming then collects them again); return how many."""
    from .rebuild import catalog_meta

    damage = damaged_locations(root, ledger, catalog_meta(ledger), mode=mode, workers=workers)
    locations = sorted({d.location for d in damage})
    for d in damage[:20]:
        log.warning("repair: %s", d)
    if locations:
        log.warning("repair: %d damaged files in %d locations: collecting them again", len(damage), len(locations))
        with ledger:
            ledger.reopen(locations)
    return len(locations)


__all__ = ["MODES", "Damage", "damaged_locations", "expected_files", "reopen_damaged"]
