"""The ledger: the SQLite (WAL) record a catalog is built from: every candidate location, the files
of every accepted one, and every season of it. ``seco-data sample`` and ``seco-data import`` write
it; the index, the items and the collection are rebuilt from it (:mod:`seco_data.catalog.rebuild`).

It is the single source of truth for resuming. Order of events for one sampled location:
1. the candidate is screened and recorded as ``pending`` (or ``rejected``) and committed, in
   batches, before any of them is handed to a worker;
2. a worker selects scenes, reads and encodes them, and writes the location's files atomically;
3. this process marks the candidate ``accepted`` with its seasons and files (or ``rejected`` with a
   reason) in one transaction per batch of results.
After a crash, a ``pending`` candidate's files may exist: they are deleted and the candidate is
processed again, so files on disk always match the ledger.

Every accept or change stamps the location with a new ``version`` (a counter), so the index is
rebuilt only where something changed (:func:`Ledger.part_digests`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .. import outputs
from ..errors import LedgerError, disk_full, is_disk_full
from ..grid import PatchGrid
from .layout import THUMBNAIL

SCHEMA_VERSION = "2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    idx INTEGER PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
    reason TEXT,
    detail TEXT,
    lon REAL NOT NULL,
    lat REAL NOT NULL,
    origin TEXT,
    epsg INTEGER,
    x0 INTEGER,
    y0 INTEGER,
    files TEXT,
    version INTEGER
);
CREATE INDEX IF NOT EXISTS candidates_status ON candidates (status);
CREATE TABLE IF NOT EXISTS patches (
    location INTEGER NOT NULL REFERENCES candidates (idx),
    season INTEGER NOT NULL,
    item_id TEXT NOT NULL UNIQUE,
    scene_id TEXT NOT NULL,
    datetime TEXT NOT NULL,
    platform TEXT,
    scene_cloud REAL,
    cloud_fraction REAL,
    valid_fraction REAL NOT NULL,
    window_start TEXT,
    window_end TEXT,
    assets TEXT NOT NULL,
    extra TEXT,
    PRIMARY KEY (location, season)
);
CREATE TABLE IF NOT EXISTS skips (reason TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS source_stats (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""

_PATCH_COLUMNS = ("season", "item_id", "scene_id", "datetime", "platform", "scene_cloud", "cloud_fraction",
                  "valid_fraction", "window_start", "window_end", "assets", "extra")


@dataclass(frozen=True)
class PatchRow:
    """One season of an accepted location. ``assets``: the per-patch layout's files of this season
    (``[{resolution, href, bands, sha256, size}, {role: thumbnail, href, sha256, size}]``), empty in
    the compact layout; ``extra``: further item properties (imports say where they came from)."""

    location: int
    season: int
    item_id: str
    scene_id: str
    datetime: str
    platform: str | None
    scene_cloud: float | None
    cloud_fraction: float | None
    valid_fraction: float
    window_start: str | None
    window_end: str | None
    assets: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LocationRow:
    """An accepted location: where it is, its files (compact layout) and its seasons (by season).

    ``files``: ``[{key: data_10m, href, sha256, size, ...}, {key: thumbnail, href, sha256, size}]``,
    hrefs relative to the part folder; entries may carry raster metadata (``crs``, ``transform``,
    ``shape``, ``dtype``, ``nodata``, ``scale``, ``bands``) where the grid does not give it (imports).
    """

    location: int
    lon: float
    lat: float
    origin: str
    grid: PatchGrid | None
    files: list
    patches: tuple[PatchRow, ...]
    version: int = 0


def thumbnail_entry(href: str, data: bytes) -> dict:
    """The quicklook's record entry (``href``: the file name beside the item or in the part folder)."""
    return {"role": THUMBNAIL, "key": THUMBNAIL, "href": href, "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data)}


class Ledger:
    def __init__(self, path: Path, *, create: bool = False, readonly: bool = False):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise LedgerError(f"no ledger at {self.path}", hint="is this a seco-data sample or import output folder?")
        try:
            if readonly:
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                          timeout=30)
            else:
                self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
                self.db.execute("PRAGMA journal_mode=WAL")
                # NORMAL: a WAL survives a killed process; OFF (SECO_FSYNC=0): not a power loss
                self.db.execute(f"PRAGMA synchronous={'NORMAL' if outputs.FSYNC else 'OFF'}")
                self.db.execute("PRAGMA foreign_keys=ON")
            if create:
                self.db.executescript(_SCHEMA)
            version = self.get("schema_version")
            if version is None and create:
                self.set("schema_version", SCHEMA_VERSION)
            elif version != SCHEMA_VERSION:
                raise LedgerError(f"ledger {self.path} has schema {version!r}, this seco writes {SCHEMA_VERSION!r}",
                                  hint="it was made by another release of seco: collect into a new --out")
            self.clock = int(self.get("clock") or 0)
        except sqlite3.DatabaseError as e:
            if is_disk_full(e):
                raise disk_full(self.path, e) from None
            raise LedgerError(f"the ledger {self.path} is unreadable or corrupt ({e})") from None

    # -- transactions ---------------------------------------------------------------------------
    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.set("clock", str(self.clock))
                self.db.execute("COMMIT")
            except sqlite3.Error as e:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                if is_disk_full(e):
                    raise disk_full(self.path, e) from None
                raise
        else:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            self.clock = int(self.get("clock") or 0)
            if isinstance(exc, sqlite3.Error) and is_disk_full(exc):
                raise disk_full(self.path, exc) from None

    def close(self) -> None:
        self.db.close()

    def check(self) -> None:
        """Full integrity check (cost linear in the ledger size)."""
        try:
            bad = self.db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise LedgerError(f"the ledger {self.path} is corrupt ({e})") from None
        if bad != "ok":
            raise LedgerError(f"the ledger {self.path} is corrupt ({bad})")

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    # -- meta -----------------------------------------------------------------------------------
    def get(self, key: str) -> str | None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:  # no meta table: not a ledger
            return None
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- candidates -----------------------------------------------------------------------------
    def add_candidates(self, rows) -> None:
        """Record screened candidates: ``(idx, lon, lat, origin, grid or None, status, reason)`` each."""
        self.db.executemany(
            "INSERT INTO candidates (idx, status, reason, lon, lat, origin, epsg, x0, y0) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(idx, status, reason, lon, lat, origin, *((g.epsg, g.x0, g.y0) if g else (None, None, None)))
             for idx, lon, lat, origin, g, status, reason in rows])

    def add_candidate(self, idx, lon, lat, origin, grid: PatchGrid | None, status, reason=None) -> None:
        self.add_candidates([(idx, lon, lat, origin, grid, status, reason)])

    def reject(self, idx: int, reason: str, detail: str = "") -> None:
        self.db.execute(
            "UPDATE candidates SET status = 'rejected', reason = ?, detail = ? WHERE idx = ?", (reason, detail, idx)
        )

    def accept(self, idx: int, patches: list[dict], files: list | None = None) -> None:
        """Mark ``idx`` accepted with its seasons (dicts of :class:`PatchRow` fields but ``location``)
        and, in the compact layout, its files."""
        self.db.execute("DELETE FROM patches WHERE location = ?", (idx,))
        self.db.executemany(
            f"INSERT INTO patches (location, {', '.join(_PATCH_COLUMNS)}) VALUES (?, {', '.join('?' * len(_PATCH_COLUMNS))})",
            [(idx, *(json.dumps(p.get(c) or ([] if c == "assets" else {})) if c in ("assets", "extra") else p.get(c)
                     for c in _PATCH_COLUMNS)) for p in patches])
        self.db.execute("UPDATE candidates SET status = 'accepted', files = ?, version = ? WHERE idx = ?",
                        (json.dumps(files or []), self._tick(), idx))

    def set_asset(self, item_id: str, entry: dict, *, key: str = "role") -> bool:
        """Add ``entry`` to a per-patch season's asset list, replacing one with the same ``entry[key]``
        (a thumbnail drawn later); False if the ledger holds no such item."""
        row = self.db.execute("SELECT location, assets FROM patches WHERE item_id = ?", (item_id,)).fetchone()
        if row is None:
            return False
        old = json.loads(row[1])
        new = [a for a in old if a.get(key) != entry.get(key)] + [entry]
        if new != old:
            self.db.execute("UPDATE patches SET assets = ? WHERE item_id = ?", (json.dumps(new), item_id))
            self.db.execute("UPDATE candidates SET version = ? WHERE idx = ?", (self._tick(), row[0]))
        return True

    def set_file(self, location: int, entry: dict) -> bool:
        """Add ``entry`` to a compact location's files, replacing the one with the same ``key``;
        False if the ledger holds no such accepted location."""
        row = self.db.execute("SELECT files FROM candidates WHERE idx = ? AND status = 'accepted'",
                              (location,)).fetchone()
        if row is None:
            return False
        old = json.loads(row[0] or "[]")
        new = [f for f in old if f.get("key") != entry.get("key")] + [entry]
        if new != old:
            self.db.execute("UPDATE candidates SET files = ?, version = ? WHERE idx = ?",
                            (json.dumps(new), self._tick(), location))
        return True

    def reopen(self, locations) -> int:
        """Put accepted locations back to pending (their files are damaged: to be collected again);
        return how many. Their seasons and files are forgotten until they are accepted again."""
        n = 0
        for idx in locations:
            cur = self.db.execute("UPDATE candidates SET status = 'pending', files = NULL, version = ?"
                                  " WHERE idx = ? AND status = 'accepted'", (self._tick(), idx))
            if cur.rowcount:
                self.db.execute("DELETE FROM patches WHERE location = ?", (idx,))
                n += 1
        return n

    def requeue(self, reason: str) -> int:
        """Put candidates rejected for ``reason`` back to pending (a transient cause, e.g. an outage)."""
        cur = self.db.execute(
            "UPDATE candidates SET status = 'pending', reason = NULL, detail = NULL"
            " WHERE status = 'rejected' AND reason = ?", (reason,)
        )
        return cur.rowcount

    def add_skips(self, skipped: Counter) -> None:
        self.db.executemany(
            "INSERT INTO skips (reason, count) VALUES (?, ?)"
            " ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
            list(skipped.items()),
        )

    def add_source_stats(self, stats: Counter) -> None:
        self.db.executemany(
            "INSERT INTO source_stats (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            [(k, float(v)) for k, v in stats.items()],
        )

    def next_index(self) -> int:
        row = self.db.execute("SELECT MAX(idx) FROM candidates").fetchone()
        return 0 if row[0] is None else row[0] + 1

    def footprints(self) -> Iterator[PatchGrid]:
        """Footprints that hold their ground: accepted locations and those still pending."""
        size = int(self.get("patch_size_m") or 2640)
        for epsg, x0, y0 in self.db.execute(
            "SELECT epsg, x0, y0 FROM candidates WHERE status != 'rejected' AND epsg IS NOT NULL ORDER BY idx"
        ):
            yield PatchGrid(epsg, x0, y0, size)

    def accepted_grids(self) -> Iterator[tuple[int, PatchGrid]]:
        """(index, footprint) of every accepted location, in index order."""
        size = int(self.get("patch_size_m") or 2640)
        for idx, epsg, x0, y0 in self.db.execute(
                "SELECT idx, epsg, x0, y0 FROM candidates WHERE status = 'accepted' AND epsg IS NOT NULL ORDER BY idx"):
            yield idx, PatchGrid(epsg, x0, y0, size)

    def pending(self) -> list[tuple[int, float, float, str, PatchGrid]]:
        size = int(self.get("patch_size_m") or 2640)
        return [
            (idx, lon, lat, origin, PatchGrid(epsg, x0, y0, size))
            for idx, lon, lat, origin, epsg, x0, y0 in self.db.execute(
                "SELECT idx, lon, lat, origin, epsg, x0, y0 FROM candidates WHERE status = 'pending' ORDER BY idx"
            )
        ]

    # -- counts ---------------------------------------------------------------------------------
    def counts(self) -> dict:
        status = dict(self.db.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status").fetchall())
        reasons = dict(
            self.db.execute(
                "SELECT reason, COUNT(*) FROM candidates WHERE status = 'rejected' GROUP BY reason ORDER BY reason"
            ).fetchall()
        )
        skips = dict(self.db.execute("SELECT reason, count FROM skips ORDER BY reason").fetchall())
        patches = self.db.execute(
            "SELECT COUNT(*) FROM patches p JOIN candidates c ON c.idx = p.location WHERE c.status = 'accepted'"
        ).fetchone()[0]
        source = {k: (int(v) if float(v).is_integer() else v)
                  for k, v in self.db.execute("SELECT key, value FROM source_stats ORDER BY key")}
        return {
            "candidates": sum(status.values()),
            "accepted": status.get("accepted", 0),
            "pending": status.get("pending", 0),
            "rejected": status.get("rejected", 0),
            "patches": patches,
            "rejections": reasons,
            "skipped_scenes": skips,
            "source": source,
        }

    def part_digests(self, per_part: int) -> dict[int, tuple[int, int]]:
        """Per part of ``per_part`` locations: (accepted locations, their newest version). The index of
        a part is current when its digest is the one it was built from."""
        return {int(p): (int(n), int(v or 0)) for p, n, v in self.db.execute(
            "SELECT idx / ?, COUNT(*), MAX(version) FROM candidates WHERE status = 'accepted' GROUP BY idx / ?",
            (per_part, per_part))}

    def range_digest(self, first: int, last: int) -> tuple[int, int]:
        """(accepted locations, their newest version) among locations ``first .. last``: it changes
        whenever one of them is accepted, changed or removed."""
        n, v = self.db.execute("SELECT COUNT(*), MAX(version) FROM candidates WHERE status = 'accepted'"
                               " AND idx BETWEEN ? AND ?", (first, last)).fetchone()
        return int(n), int(v or 0)

    def locations(self, start: int = 0, stop: int | None = None, batch: int = 2000) -> Iterator[LocationRow]:
        """Every accepted location with ``start <= idx < stop``, ordered, with its seasons."""
        size = int(self.get("patch_size_m") or 2640)
        stop = 2**62 if stop is None else stop
        cur = self.db.execute(
            "SELECT idx, lon, lat, origin, epsg, x0, y0, files, version FROM candidates"
            " WHERE status = 'accepted' AND idx >= ? AND idx < ? ORDER BY idx", (start, stop))
        pcur = self.db.cursor()
        while rows := cur.fetchmany(batch):
            lo, hi = rows[0][0], rows[-1][0]
            seasons: dict[int, list[PatchRow]] = {}
            for r in pcur.execute(
                f"SELECT location, {', '.join(_PATCH_COLUMNS)} FROM patches WHERE location >= ? AND location <= ?"
                " ORDER BY location, season", (lo, hi)):
                values = dict(zip(("location",) + _PATCH_COLUMNS, r))
                values["assets"] = json.loads(values["assets"] or "[]")
                values["extra"] = json.loads(values["extra"] or "{}")
                seasons.setdefault(r[0], []).append(PatchRow(**values))
            for idx, lon, lat, origin, epsg, x0, y0, files, version in rows:
                grid = PatchGrid(epsg, x0, y0, size) if epsg is not None else None
                yield LocationRow(idx, lon, lat, origin or "", grid, json.loads(files or "[]"),
                                  tuple(seasons.get(idx, ())), version or 0)

    def rejected_points(self) -> Iterator[tuple[float, float, str]]:
        """(lon, lat, reason) of every rejected candidate, in index order."""
        yield from self.db.execute(
            "SELECT lon, lat, coalesce(reason, 'unknown') FROM candidates WHERE status = 'rejected' ORDER BY idx")
