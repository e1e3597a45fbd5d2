"""``catalog info``: what a collected catalog holds: counts, extent, dates, cloud and coverage."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import CatalogError
from .index import IndexFile
from .layout import COLLECTION, INDEX

CLOUD_BINS = [0, 5, 10, 20, 30, 50, 75, 100]  # scene cloud, percent
CLOUD_LABELS = ["0-5%", "5-10%", "10-20%", "20-30%", "30-50%", "50-75%", "75-100%"]
FRACTION_BINS = [0.0, 1e-9, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]  # first bin: exactly 0
FRACTION_LABELS = ["0", "0-1%", "1-2%", "2-5%", "5-10%", "10-20%", "20-50%", "50-100%"]


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
    cols = ["datetime", "eo:cloud_cover", "seco:cloud_fraction", "seco:valid_fraction", "seco:location", "seco:season"]
    parquet = root / INDEX
    if parquet.exists():
        index = IndexFile(parquet)
        index.require(cols)
        t = index.read(cols)
        data = {c: t.column(c).to_numpy(zero_copy_only=False) for c in cols}
    else:
        data = {c: np.array([]) for c in cols}
    n_items = len(data["datetime"])
    dates = [np.datetime64(d, "D") for d in data["datetime"]] if n_items else []
    months = Counter(str(d)[:7] for d in dates)
    seasons = Counter(int(s) for s in data["seco:season"])
    stats = coll.get("seco:stats", {})
    recipe = coll.get("seco:recipe", {})
    interval = coll.get("extent", {}).get("temporal", {}).get("interval", [[None, None]])[0]
    return {
        "root": str(root),
        "collection": coll.get("id"),
        "source": coll.get("seco:source", {}),
        "recipe": recipe.get("name"),
        "requested": stats.get("requested"),
        "locations": int(len(np.unique(data["seco:location"]))) if n_items else 0,
        "items": n_items,
        "items_per_season": {str(k): v for k, v in sorted(seasons.items())},
        "bbox": coll.get("extent", {}).get("spatial", {}).get("bbox", [None])[0],
        "start": interval[0],
        "end": interval[1],
        "dates_by_month": dict(sorted(months.items())),
        "scene_cloud_histogram": _histogram(np.asarray(data["eo:cloud_cover"], float), CLOUD_BINS, CLOUD_LABELS),
        "patch_cloud_histogram": _histogram(np.asarray(data["seco:cloud_fraction"], float), FRACTION_BINS, FRACTION_LABELS),
        "coverage_histogram": _histogram(
            1.0 - np.asarray(data["seco:valid_fraction"], float), FRACTION_BINS, FRACTION_LABELS
        ),
        "candidates": stats.get("candidates"),
        "rejections": stats.get("rejections", {}),
        "skipped_scenes": stats.get("skipped_scenes", {}),
        "filters": recipe.get("filters", {}),
    }
