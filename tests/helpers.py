"""Checks shared by the end-to-end tests: what a finished catalog must satisfy."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq


def ledger_rows(out: Path) -> list[tuple]:
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        return db.execute(
            "SELECT location, season, scene_id, datetime, assets FROM patches ORDER BY location, season"
        ).fetchall()
    finally:
        db.close()


def check_catalog(out: Path, n: int, seasons: int) -> list[dict]:
    """Exactly n locations x seasons items, no duplicates, no orphan or partial files, checksums match."""
    out = Path(out)
    items = [json.loads(p.read_text()) for p in sorted(out.glob("[0-9]*/[0-9]*/*.json"))]
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)) == n * seasons, (len(ids), n * seasons)
    locs = {i["properties"]["seco:location"] for i in items}
    assert len(locs) == n
    referenced = set()
    for item in items:
        folder = next(out.glob(f"*/{item['properties']['seco:location']:07d}"))
        for asset in item["assets"].values():
            path = (folder / asset["href"]).resolve()
            data = path.read_bytes()
            assert len(data) == asset["file:size"]
            assert "1220" + hashlib.sha256(data).hexdigest() == asset["file:checksum"], path
            referenced.add(path)
    on_disk = {p.resolve() for p in out.rglob("*") if p.is_file()}
    data_files = {p for p in on_disk if p.suffix in (".tif", ".png")}  # GeoTIFFs and thumbnails
    assert data_files == referenced, sorted(data_files ^ referenced)[:5]  # no orphans
    leftovers = [p for p in on_disk if ".tmp" in p.name]
    assert not leftovers, leftovers  # no partial writes
    # every item is linked from a sub-catalog, and the parquet index holds them all
    linked = set()
    for cat in out.glob("[0-9]*/catalog.json"):
        for link in json.loads(cat.read_text())["links"]:
            if link["rel"] == "item":
                linked.add((cat.parent / link["href"]).resolve())
    assert linked == {p.resolve() for p in out.glob("[0-9]*/[0-9]*/*.json")}
    table = pq.read_table(out / "items.parquet", columns=["id"])
    assert sorted(table.column("id").to_pylist()) == sorted(ids)
    return items


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
