"""The search index of the STAC API: the search columns of ``items.parquet`` in memory (numpy),
item rows decoded on demand from their row groups (a few kept in a small cache)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ...catalog.index import IndexFile, items_of
from .params import Query

_NEVER_LO = np.iinfo(np.int64).max  # an item without a time never matches a datetime filter
_NEVER_HI = np.iinfo(np.int64).min


class ItemIndex:
    """Search columns of ``items.parquet`` in memory; item rows decoded on demand."""

    ROW_GROUP_CACHE = 4

    def __init__(self, path: Path, default_collection: str):
        import pyarrow as pa
        import pyarrow.compute as pc

        self._file = IndexFile(path)
        self.stamp = self._file.stamp
        names = set(self._file.names)
        self._file.require(["id"])
        cols = [c for c in ("id", "bbox", "geometry", "datetime", "start_datetime", "end_datetime", "collection")
                if c in names]
        if "bbox" in names:
            cols.remove("geometry")
        t = self._file.read(cols)
        self.n = t.num_rows
        self.ids = t.column("id").combine_chunks()
        if "bbox" in names:
            b = t.column("bbox").combine_chunks()
            if pa.types.is_struct(b.type):
                parts = [b.field(k) for k in ("xmin", "ymin", "xmax", "ymax")]
            else:  # list of 4 (or 6) numbers
                width = 6 if self.n and len(b[0]) == 6 else 4
                parts = [pc.list_element(b, i) for i in ((0, 1, 3, 4) if width == 6 else (0, 1, 2, 3))]
            self.xmin, self.ymin, self.xmax, self.ymax = (
                p.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False) for p in parts)
        else:
            import shapely

            bounds = shapely.bounds(shapely.from_wkb(t.column("geometry").to_numpy(zero_copy_only=False)))
            self.xmin, self.ymin, self.xmax, self.ymax = (bounds[:, i] for i in range(4))

        def micros(name: str, fill: int) -> np.ndarray | None:
            if name not in t.column_names:
                return None
            c = t.column(name).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
            return c.fill_null(fill).to_numpy()

        when_lo, when_hi = micros("datetime", _NEVER_LO), micros("datetime", _NEVER_HI)
        start, end = micros("start_datetime", _NEVER_LO), micros("end_datetime", _NEVER_HI)
        # an item's time is its datetime, or else its start_datetime/end_datetime range
        self.lo = _coalesce(when_lo, start, _NEVER_LO, self.n)
        self.hi = _coalesce(when_hi, end, _NEVER_HI, self.n)
        if "collection" in t.column_names:
            self.collection = t.column("collection").combine_chunks().fill_null(default_collection)
        else:
            self.collection = pa.array([default_collection] * self.n, pa.string())
        sizes = self._file.row_group_sizes()
        self._starts = np.cumsum([0] + sizes)
        self._cache: OrderedDict[int, object] = OrderedDict()
        self._lock = threading.Lock()
        self._order = self._sorted = None  # ids sorted, for find()
        self._geometries = None  # shapely footprints, read on the first ``intersects`` search
        self._has_geometry = "geometry" in names

    def match(self, q: Query) -> np.ndarray:
        """Row numbers (in file order) of the items matching ``q``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        mask = np.ones(self.n, dtype=bool)
        if q.ids is not None:
            mask &= pc.is_in(self.ids, value_set=pa.array(q.ids, pa.string())).to_numpy(zero_copy_only=False)
        if q.collections is not None:
            mask &= pc.is_in(self.collection, value_set=pa.array(q.collections, pa.string())).to_numpy(
                zero_copy_only=False)
        if q.bbox is not None:
            mask &= self._bbox_mask(q.bbox)
        if q.geometry is not None:
            mask &= self._intersects_mask(q.geometry)
        if q.has_datetime:
            if q.start is not None:
                mask &= self.hi >= q.start
            if q.end is not None:
                mask &= self.lo <= q.end
            mask &= self.lo != _NEVER_LO
        return np.flatnonzero(mask)

    def _bbox_mask(self, bbox) -> np.ndarray:
        w, s, e, n = bbox
        with np.errstate(invalid="ignore"):
            lat = (self.ymin <= n) & (self.ymax >= s)
            # longitudes as one or two intervals each (a box crossing the antimeridian has w > e)
            q = [(w, e)] if w <= e else [(w, 180.0), (-180.0, e)]
            plain = self.xmin <= self.xmax
            lon = np.zeros(self.n, dtype=bool)
            for qw, qe in q:
                lon |= plain & (self.xmin <= qe) & (self.xmax >= qw)
                # an item crossing the antimeridian covers [xmin, 180] and [-180, xmax]
                lon |= ~plain & ((self.xmin <= qe) | (self.xmax >= qw))
        return lat & lon

    def _intersects_mask(self, geometry) -> np.ndarray:
        """Items whose footprint intersects ``geometry``: bbox candidates first, then shapely on the
        candidates' geometries (items without a geometry column: their bbox)."""
        import shapely

        w, s, e, n = geometry.bounds
        mask = self._bbox_mask((max(w, -180.0), max(s, -90.0), min(e, 180.0), min(n, 90.0)))
        rows = np.flatnonzero(mask)
        if not len(rows):
            return mask
        shapes = self._footprints()
        if shapes is None:
            shapes = shapely.box(self.xmin[rows], self.ymin[rows], self.xmax[rows], self.ymax[rows])
        else:
            shapes = shapes[rows]
        shapely.prepare(geometry)
        hit = shapely.intersects(geometry, shapes)
        mask[rows[~hit]] = False
        return mask

    def _footprints(self):
        if not self._has_geometry:
            return None
        import shapely

        with self._lock:
            if self._geometries is None:
                wkb = self._file.read(["geometry"]).column("geometry").to_numpy(zero_copy_only=False)
                self._geometries = shapely.from_wkb(wkb)
            return self._geometries

    def find(self, item_id: str) -> int | None:
        """The row of ``item_id`` by binary search over the ids sorted once (on first use): a few
        microseconds at millions of items instead of a scan."""
        import pyarrow.compute as pc

        with self._lock:
            if self._order is None:
                self._order = pc.sort_indices(self.ids).to_numpy()
                self._sorted = self.ids.take(self._order)
        lo, hi = 0, self.n
        while lo < hi:
            mid = (lo + hi) // 2
            if self._sorted[mid].as_py() < item_id:
                lo = mid + 1
            else:
                hi = mid
        if lo < self.n and self._sorted[lo].as_py() == item_id:
            return int(self._order[lo])
        return None

    def rows(self, rows: np.ndarray) -> list[dict]:
        """The item dicts of the given row numbers, in that order (hrefs as stored)."""
        import pyarrow as pa

        if len(rows) == 0:
            return []
        groups = np.searchsorted(self._starts, rows, side="right") - 1
        parts = []
        for g in np.unique(groups):
            local = rows[groups == g] - self._starts[g]
            parts.append(self._row_group(int(g)).take(pa.array(local)))
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        by_id = {}
        for item in items_of(table):
            by_id.setdefault(item["id"], []).append(item)
        order = self.ids.take(pa.array(rows)).to_pylist()
        return [by_id[i].pop(0) for i in order]

    def _row_group(self, g: int):
        with self._lock:
            t = self._cache.get(g)
            if t is None:
                t = self._file.read_row_group(g)
                self._cache[g] = t
                while len(self._cache) > self.ROW_GROUP_CACHE:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(g)
            return t


def _coalesce(a, b, never, n) -> np.ndarray:
    if a is None and b is None:
        return np.full(n, never, dtype=np.int64)
    if a is None:
        return b
    if b is None:
        return a
    return np.where(a == never, b, a)
