"""A catalog's statistics (``seco-data catalog info``, the viewer's summary page), added up while
the index is read one row group at a time, so memory does not grow with the catalog.
"""

from __future__ import annotations

from collections import Counter

import numpy as np


CLOUD_BINS = [0, 5, 10, 20, 30, 50, 75, 100]  # scene cloud, percent
CLOUD_LABELS = ["0-5%", "5-10%", "10-20%", "20-30%", "30-50%", "50-75%", "75-100%"]
FRACTION_BINS = [0.0, 1e-9, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]  # first bin: exactly 0
FRACTION_LABELS = ["0", "0-1%", "1-2%", "2-5%", "5-10%", "10-20%", "20-50%", "50-100%"]
NO_DAY = np.iinfo(np.int32).min


def _counts(values: np.ndarray) -> dict[int, int]:
    """How often each integer occurs (a bincount from the smallest)."""
    if not len(values):
        return {}
    lo = int(values.min())
    n = np.bincount(values - lo)
    return {lo + int(k): int(n[k]) for k in np.flatnonzero(n)}


class Summary:
    """Counts per season and month and the cloud and coverage histograms of the patches added."""

    def __init__(self):
        self.patches = 0
        self.seasons: Counter = Counter()
        self.months: Counter = Counter()
        self.scene_cloud = np.zeros(len(CLOUD_LABELS), np.int64)
        self.patch_cloud = np.zeros(len(FRACTION_LABELS), np.int64)
        self.coverage = np.zeros(len(FRACTION_LABELS), np.int64)

    def add(self, season: np.ndarray, day: np.ndarray, cloud: np.ndarray, pcloud: np.ndarray,
            valid: np.ndarray) -> None:
        """Patches given as arrays: season number, day (days since 1970-01-01, NO_DAY when unknown),
        scene cloud (percent), patch cloud and valid fractions (NaN when unknown)."""
        self.patches += len(season)
        self.seasons.update(_counts(season[season == season].astype(np.int64)))
        self.months.update(_counts(day[day != NO_DAY].astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)))
        self.scene_cloud += np.histogram(cloud, bins=CLOUD_BINS)[0]
        self.patch_cloud += np.histogram(pcloud, bins=FRACTION_BINS)[0]
        self.coverage += np.histogram(1.0 - valid, bins=FRACTION_BINS)[0]

    def info(self, collection: dict, *, items: int, locations: int) -> dict:
        """``catalog_info``'s dict (less ``root``: a local path is not for a published site)."""
        coll = collection
        stats = coll.get("seco:stats", {})
        recipe = coll.get("seco:recipe", {})
        interval = coll.get("extent", {}).get("temporal", {}).get("interval", [[None, None]])[0]

        def bins(counts, labels):
            return [{"bin": label, "count": int(c)} for label, c in zip(labels, counts)]

        return {
            "collection": coll.get("id"),
            "source": coll.get("seco:source", {}),
            "recipe": recipe.get("name"),
            "requested": stats.get("requested"),
            "layout": coll.get("seco:layout", "per-patch"),
            "locations": locations,
            "items": items,
            "patches": self.patches,
            "items_per_season": {str(k): v for k, v in sorted(self.seasons.items())},
            "bbox": coll.get("extent", {}).get("spatial", {}).get("bbox", [None])[0],
            "start": interval[0],
            "end": interval[1],
            "dates_by_month": {str(np.datetime64(int(k), "M")): v for k, v in sorted(self.months.items())},
            "scene_cloud_histogram": bins(self.scene_cloud, CLOUD_LABELS),
            "patch_cloud_histogram": bins(self.patch_cloud, FRACTION_LABELS),
            "coverage_histogram": bins(self.coverage, FRACTION_LABELS),
            "candidates": stats.get("candidates"),
            "rejections": stats.get("rejections", {}),
            "skipped_scenes": stats.get("skipped_scenes", {}),
            "filters": recipe.get("filters", {}),
        }
