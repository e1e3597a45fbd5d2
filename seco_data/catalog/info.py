"""``catalog info``: what a collected catalog holds: counts, extent, dates, cloud and coverage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import CatalogError
from .index import IndexFile, season_table
from .layout import COLLECTION, INDEX

CLOUD_BINS = [0, 5, 10, 20, 30, 50, 75, 100]  # scene cloud, percent
CLOUD_LABELS = ["0-5%", "5-10%", "10-20%", "20-30%", "30-50%", "50-75%", "75-100%"]
FRACTION_BINS = [0.0, 1e-9, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]  # first bin: exactly 0
FRACTION_LABELS = ["0", "0-1%", "1-2%", "2-5%", "5-10%", "10-20%", "20-50%", "50-100%"]


def _floats(values) -> np.ndarray:
    """Numbers as float64, None as NaN (not counted by the histograms)."""
    return np.array([np.nan if v is None else v for v in values], float) if values.dtype == object \
        else values.astype(float)


def _histogram(values: np.ndarray, edges: list[float], labels: list[str]) -> list[dict]:
    """Counts per bin; bins are [lo, hi) except the last, which includes its upper edge."""
    counts, _ = np.histogram(values, bins=edges)
    return [{"bin": label, "count": int(c)} for label, c in zip(labels, counts)]


def catalog_info(root: str | Path) -> dict:
    """Summary of the catalog in ``root`` (reads ``collection.json`` and ``items.parquet``)."""
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
    if parquet.exists():
        index = IndexFile(parquet)
        rows = index.num_rows
        t = season_table(index, fields)
        data = {c: t.column(c).to_numpy(zero_copy_only=False) for c in fields + ["location"]}
        days = t.column("datetime").cast(pa.timestamp("s", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
    else:
        rows = 0
        data = {c: np.array([]) for c in fields + ["location"]}
        days = np.array([], np.int64)
    patches = len(data["season"])
    months = np.asarray(days, "datetime64[s]").astype("datetime64[M]")
    by_month = dict(zip(*np.unique(months, return_counts=True))) if patches else {}
    seasons = dict(zip(*np.unique(np.asarray(data["season"], np.int64), return_counts=True))) if patches else {}
    stats = coll.get("seco:stats", {})
    recipe = coll.get("seco:recipe", {})
    interval = coll.get("extent", {}).get("temporal", {}).get("interval", [[None, None]])[0]
    return {
        "root": str(root),
        "collection": coll.get("id"),
        "source": coll.get("seco:source", {}),
        "recipe": recipe.get("name"),
        "requested": stats.get("requested"),
        "layout": coll.get("seco:layout", "per-patch"),
        "locations": int(len(np.unique(data["location"]))) if patches else 0,
        "items": rows,
        "patches": patches,
        "items_per_season": {str(int(k)): int(v) for k, v in sorted(seasons.items())},
        "bbox": coll.get("extent", {}).get("spatial", {}).get("bbox", [None])[0],
        "start": interval[0],
        "end": interval[1],
        "dates_by_month": {str(k): int(v) for k, v in sorted(by_month.items())},
        "scene_cloud_histogram": _histogram(_floats(data["scene_cloud"]), CLOUD_BINS, CLOUD_LABELS),
        "patch_cloud_histogram": _histogram(_floats(data["cloud_fraction"]), FRACTION_BINS, FRACTION_LABELS),
        "coverage_histogram": _histogram(1.0 - _floats(data["valid_fraction"]), FRACTION_BINS, FRACTION_LABELS),
        "candidates": stats.get("candidates"),
        "rejections": stats.get("rejections", {}),
        "skipped_scenes": stats.get("skipped_scenes", {}),
        "filters": recipe.get("filters", {}),
    }
