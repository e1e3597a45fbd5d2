"""``catalog info``: what a collected catalog holds: counts, extent, dates, cloud and coverage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CatalogError
from .index import IndexFile, iter_season_tables
from .summary import NO_DAY, Summary
from .layout import COLLECTION, INDEX

def catalog_info(root: str | Path) -> dict:
    """Summary of the catalog in ``root`` (``collection.json``, and ``items.parquet`` read a row group
    at a time, only the season fields the figures need)."""
    root = Path(root)
    coll_path = root / COLLECTION
    if not coll_path.is_file():
        raise CatalogError(f"no collection.json in {root}", hint="point at the --out folder of seco-data sample")
    try:
        coll = json.loads(coll_path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise CatalogError(f"cannot read {coll_path}: {e}") from None
    parquet = root / INDEX
    fields = ["season", "datetime", "scene_cloud", "cloud_fraction", "valid_fraction"]
    summary = Summary()
    rows = locations = 0
    if parquet.exists():
        index = IndexFile(parquet)
        rows = index.num_rows
        last = None
        for t in iter_season_tables(index, fields):
            day = t.column("datetime").cast(pa.timestamp("s", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
            day = np.where(np.isnan(day.astype(float)), NO_DAY, day // 86400).astype(np.int64)
            summary.add(_numbers(t.column("season")), day, _numbers(t.column("scene_cloud")),
                        _numbers(t.column("cloud_fraction")), _numbers(t.column("valid_fraction")))
            loc = t.column("location").to_numpy(zero_copy_only=False)
            if len(loc):  # the index is ordered by location: count where it changes, across groups too
                locations += int((loc[1:] != loc[:-1]).sum()) + int(loc[0] != last)
                last = loc[-1]
    return {"root": str(root), **summary.info(coll, items=rows, locations=locations)}


def _numbers(col) -> np.ndarray:
    """A numeric column as float64, NaN where null."""
    return pc.fill_null(pc.cast(col, pa.float64()), float("nan")).to_numpy(zero_copy_only=False)
