"""Checks shared by the end-to-end tests: what a finished catalog must satisfy, in either layout."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq

from seco_data.catalog.index import item_json_href


def ledger_rows(out: Path) -> list[tuple]:
    """Every accepted season with its files (per-patch assets, or the compact location's files)."""
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        return db.execute(
            "SELECT p.location, p.season, p.scene_id, p.datetime, p.assets, c.files FROM patches p"
            " JOIN candidates c ON c.idx = p.location WHERE c.status = 'accepted' ORDER BY p.location, p.season"
        ).fetchall()
    finally:
        db.close()


def accepted_count(out: Path) -> int:
    """Locations the ledger of ``out`` has accepted so far (0 while it cannot be read: a run starting)."""
    try:
        db = sqlite3.connect(f"file:{out / 'ledger.sqlite'}?mode=ro", uri=True)
        try:
            return db.execute("SELECT COUNT(*) FROM candidates WHERE status = 'accepted'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def index_items(out: Path) -> list[dict]:
    """The items of ``items.parquet``, hrefs relative to the catalog root."""
    from seco_data.catalog.index import items_of

    return list(items_of(pq.read_table(Path(out) / "items.parquet")))


def check_catalog(out: Path, n: int, seasons: int) -> list[dict]:
    """Exactly n locations x seasons, no duplicates, no orphan or partial files, checksums match;
    per-patch: every item JSON linked from its sub-catalog and equal to its index row. Returns the
    items of the index (one per location when compact, one per location x season otherwise)."""
    out = Path(out)
    coll = json.loads((out / "collection.json").read_text())
    layout = coll["seco:layout"]
    items = index_items(out)
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)) == (n if layout == "compact" else n * seasons), (len(ids), n, seasons, layout)
    locs = {i["properties"]["seco:location"] for i in items}
    assert len(locs) == n
    if layout == "compact":
        assert all(len(i["properties"]["seco:seasons"]) == seasons for i in items)
        assert [i["properties"]["seco:location"] for i in items] == sorted(locs)
    referenced = set()
    for item in items:
        for asset in item["assets"].values():
            path = (out / asset["href"]).resolve()
            data = path.read_bytes()
            assert len(data) == asset["file:size"]
            assert "1220" + hashlib.sha256(data).hexdigest() == asset["file:checksum"], path
            referenced.add(path)
    on_disk = {p.resolve() for p in out.rglob("*") if p.is_file() and ".seco" not in p.parts}
    data_files = {p for p in on_disk if p.suffix in (".tif", ".png", ".jpg")}  # GeoTIFFs and quicklooks
    assert data_files == referenced, sorted(data_files ^ referenced)[:5]  # no orphans
    leftovers = [p for p in out.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers  # no partial writes
    if layout == "compact":
        assert not list(out.glob("[0-9]*/*.json")) and not list(out.glob("[0-9]*/[0-9]*/"))  # 4 files a location
    else:
        # every item JSON is linked from a sub-catalog and is its index row, seen from its folder
        linked = set()
        for cat in out.glob("[0-9]*/catalog.json"):
            for link in json.loads(cat.read_text())["links"]:
                if link["rel"] == "item":
                    linked.add((cat.parent / link["href"]).resolve())
        files = {p.resolve() for p in out.glob("[0-9]*/[0-9]*/*.json")}
        assert linked == files and len(files) == len(items)
        for item in items:
            self_href = item_json_href(item)
            on_file = json.loads((out / self_href).read_text())
            when = [datetime.fromisoformat(i["properties"]["datetime"]) for i in (on_file, item)]
            assert on_file["id"] == item["id"] and when[0] == when[1]
    table = pq.read_table(out / "items.parquet", columns=["id"])
    assert table.column("id").to_pylist() == ids
    return items


def seasons_of(items: list[dict]) -> list[dict]:
    """Per location x season: datetime, scene, cloud ... whatever the layout (compact: ``seco:seasons``)."""
    out = []
    for item in items:
        p = item["properties"]
        if "seco:seasons" in p:
            for s in p["seco:seasons"]:
                out.append({"location": p["seco:location"], **s})
        else:
            out.append({"location": p["seco:location"], "season": p["seco:season"], "datetime": p["datetime"],
                        "scene_id": p["seco:scene_id"], "platform": p.get("platform"),
                        "eo:cloud_cover": p.get("eo:cloud_cover"), "cloud_fraction": p["seco:cloud_fraction"],
                        "valid_fraction": p["seco:valid_fraction"], "window": p.get("seco:window")})
    return out


def tiny_encoder(in_channels: int = 3, width: int = 16):
    """A small CNN encoder ((B, C, H, W) -> (B, width), with batch norm) for the model and trainer tests
    where the ResNet is not the point."""
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(in_channels, width // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU(),
        nn.Conv2d(width // 2, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    net.width = width
    return net


def built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` run once per test session, shared by every xdist worker (under a file lock in
    the session's temporary root); the folder is read-only to its users (copy it to modify)."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # (pytest-N/ is this session's)
    folder, done = root / f"built-{name}", root / f"built-{name}.done"
    with open(root / f"built-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            if folder.exists():  # a worker that died half-way
                shutil.rmtree(folder)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder
