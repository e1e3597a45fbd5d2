"""The ledger: a SQLite (WAL) record of every candidate and every patch of a collection run.

It is the single source of truth for resuming. Order of events for one location:
1. the candidate is screened and recorded as ``pending`` (or ``rejected``) and committed;
2. a worker selects scenes and encodes GeoTIFFs (no file is touched);
3. the parent writes the files atomically, then marks the candidate ``accepted`` with its patches
   (or ``rejected`` with a reason) in one transaction.
After a crash, a ``pending`` candidate's folder may hold files from step 3: they are deleted and the
candidate is processed again, so files on disk always match the ledger.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..catalog.layout import THUMBNAIL
from ..errors import LedgerError
from ..grid import PatchGrid

SCHEMA_VERSION = "1"

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
    y0 INTEGER
);
CREATE INDEX IF NOT EXISTS candidates_status ON candidates (status);
CREATE TABLE IF NOT EXISTS patches (
    location INTEGER NOT NULL REFERENCES candidates (idx),
    season INTEGER NOT NULL,
    item_id TEXT NOT NULL UNIQUE,
    scene_id TEXT NOT NULL,
    datetime TEXT NOT NULL,
    platform TEXT NOT NULL,
    scene_cloud REAL NOT NULL,
    cloud_fraction REAL NOT NULL,
    valid_fraction REAL NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    assets TEXT NOT NULL,
    PRIMARY KEY (location, season)
);
CREATE TABLE IF NOT EXISTS skips (reason TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS source_stats (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""


@dataclass(frozen=True)
class PatchRow:
    location: int
    season: int
    item_id: str
    scene_id: str
    datetime: str
    platform: str
    scene_cloud: float
    cloud_fraction: float
    valid_fraction: float
    window_start: str
    window_end: str
    assets: list[dict]  # [{resolution, href, bands, sha256, size}]
    lon: float
    lat: float
    origin: str
    grid: PatchGrid


def thumbnail_entry(href: str, png: bytes) -> dict:
    """The thumbnail's entry in a patch's asset list (``href``: the file name beside the item)."""
    import hashlib

    return {"role": THUMBNAIL, "href": href, "sha256": hashlib.sha256(png).hexdigest(), "size": len(png)}


class Ledger:
    def __init__(self, path: Path, *, create: bool):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise LedgerError(f"no ledger at {self.path}", hint="is this a seco-data sample output folder?")
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            if create:
                self.db.executescript(_SCHEMA)
            version = self.get("schema_version")
            if version is None and create:
                self.set("schema_version", SCHEMA_VERSION)
            elif version != SCHEMA_VERSION:
                raise LedgerError(f"ledger {self.path} has schema {version!r}, this seco writes {SCHEMA_VERSION!r}")
        except sqlite3.DatabaseError as e:
            raise LedgerError(f"the ledger {self.path} is unreadable or corrupt ({e})") from None

    # -- transactions ---------------------------------------------------------------------------
    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

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
    def add_candidate(self, idx, lon, lat, origin, grid: PatchGrid | None, status, reason=None, detail=None):
        g = (grid.epsg, grid.x0, grid.y0) if grid else (None, None, None)
        self.db.execute(
            "INSERT INTO candidates (idx, status, reason, detail, lon, lat, origin, epsg, x0, y0)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (idx, status, reason, detail, lon, lat, origin, *g),
        )

    def reject(self, idx: int, reason: str, detail: str = "") -> None:
        self.db.execute(
            "UPDATE candidates SET status = 'rejected', reason = ?, detail = ? WHERE idx = ?", (reason, detail, idx)
        )

    def accept(self, idx: int, patches: list[dict]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO patches (location, season, item_id, scene_id, datetime, platform, scene_cloud,"
            " cloud_fraction, valid_fraction, window_start, window_end, assets) VALUES (:location, :season,"
            " :item_id, :scene_id, :datetime, :platform, :scene_cloud, :cloud_fraction, :valid_fraction,"
            " :window_start, :window_end, :assets)",
            [{**p, "location": idx, "assets": json.dumps(p["assets"])} for p in patches],
        )
        self.db.execute("UPDATE candidates SET status = 'accepted' WHERE idx = ?", (idx,))

    def set_asset(self, item_id: str, entry: dict, *, key: str = "role") -> bool:
        """Add ``entry`` to a collected patch's asset list, replacing one with the same ``entry[key]``
        (e.g. a thumbnail written after collection); False if the ledger holds no such item."""
        row = self.db.execute("SELECT assets FROM patches WHERE item_id = ?", (item_id,)).fetchone()
        if row is None:
            return False
        old = json.loads(row[0])
        new = [a for a in old if a.get(key) != entry.get(key)] + [entry]
        if new != old:
            self.db.execute("UPDATE patches SET assets = ? WHERE item_id = ?", (json.dumps(new), item_id))
        return True

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
        """Footprints that passed the screen (accepted, pending, or rejected later for imagery)."""
        size = int(self.get("patch_size_m") or 2640)
        for epsg, x0, y0 in self.db.execute(
            "SELECT epsg, x0, y0 FROM candidates WHERE status != 'rejected'"
            " OR reason NOT IN ('outside_coverage', 'not_land', 'overlap') ORDER BY idx"
        ):
            yield PatchGrid(epsg, x0, y0, size)

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
        patches = self.db.execute("SELECT COUNT(*) FROM patches").fetchone()[0]
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

    def patches(self, batch: int = 5000) -> Iterator[PatchRow]:
        """Every patch, ordered by location then season, joined with its location."""
        size = int(self.get("patch_size_m") or 2640)
        cur = self.db.execute(
            "SELECT p.location, p.season, p.item_id, p.scene_id, p.datetime, p.platform, p.scene_cloud,"
            " p.cloud_fraction, p.valid_fraction, p.window_start, p.window_end, p.assets,"
            " c.lon, c.lat, c.origin, c.epsg, c.x0, c.y0"
            " FROM patches p JOIN candidates c ON c.idx = p.location"
            " WHERE c.status = 'accepted' ORDER BY p.location, p.season"
        )
        while rows := cur.fetchmany(batch):
            for r in rows:
                yield PatchRow(
                    *r[:11], json.loads(r[11]), r[12], r[13], r[14] or "", PatchGrid(r[15], r[16], r[17], size)
                )
