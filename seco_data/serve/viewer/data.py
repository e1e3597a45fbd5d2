"""The viewer's data, read from ``items.parquet`` (either layout), ``collection.json`` and the ledger.

Memory stays bounded at any catalog size: the index is read one row group at a time, and only the
columns (and, inside ``seco:seasons`` and ``assets``, only the struct fields) that are needed;
:func:`seco_data.catalog.index.season_table` turns each group into one row per patch (location x
season) whatever the layout. What is kept is about 14 bytes per patch and 40 per location (110 MB
for a million locations of five seasons).

The payloads:

``meta``
    collection, counts, summary statistics (those of ``seco-data catalog info``), asset keys;
``map``
    packed typed arrays (:mod:`.pack`): per location its id, lon/lat, place, source and a summary of
    its patches (seasons, max scene and patch cloud, first and last day), and the ledger's rejected
    candidates: the map page draws, colours and lists from this alone;
``patches``
    packed, per patch (grouped by location, in location order): season, day, scene cloud, patch
    cloud: what the filters need, loaded by the page once the map is drawn;
``chunk``
    the details of the locations ``CHUNK * k .. CHUNK * (k + 1) - 1`` (ids, dates, scene ids, links
    to the item JSON, GeoTIFFs and quicklooks), read from the few row groups that hold them. Compact
    layout: the location's item id and files (``assets``), and per season the numbers of its bands in
    each file (``bands``) and its square of the quicklook strip (``strip``: index, count); per-patch:
    each season's item ``id``, JSON (``href``) and files (``assets``).
"""

from __future__ import annotations

import itertools
import json
import logging
import sqlite3
from pathlib import Path

import numpy as np

from ...catalog.index import REBUILD_HINT, SEASON_FIELDS, IndexFile, item_json_href, season_table
from ...catalog.layout import COLLECTION, INDEX, LEDGER, THUMBNAIL
from ...errors import CatalogError, SecoError
from .pack import pack
from ...catalog.summary import NO_DAY, Summary

log = logging.getLogger(__name__)

CHUNK = 128  # locations per detail file data/loc/<location // CHUNK>.js
NONE16 = 0xFFFF  # "unknown" in the quantised u16 columns of the map payload

_MAP_FIELDS = ["season", "datetime", "scene_cloud", "cloud_fraction", "valid_fraction"]
_PLACE_COLUMNS = ["seco:location", "seco:point", "bbox", "seco:origin", "seco:source"]
_DETAIL_COLUMNS = ["id", "seco:origin", "links", "assets"]


# -- reading the index ------------------------------------------------------------------------------


def _parts(path: str) -> list[str]:
    """A parquet leaf path as struct field names, list levels dropped (``a.list.element.b`` -> a, b)."""
    parts, out, i = path.split("."), [], 0
    while i < len(parts):
        if parts[i] == "list" and i + 1 < len(parts) and parts[i + 1] in ("element", "item"):
            i += 2
            continue
        out.append(parts[i])
        i += 1
    return out


class _Rows:
    """What :func:`season_table` reads (``names``, ``read``), over row groups of the index: of the
    nested columns only the leaves that ``keep`` accepts (``keep(["seco:seasons", "datetime"])``)."""

    def __init__(self, index: IndexFile, groups: list[int], keep=None):
        self.index, self.groups, self.keep = index, groups, keep
        self.names = index.names
        schema = index.file.schema
        self._leaves = [schema.column(i).path for i in range(len(schema))]

    def read(self, columns: list[str]):
        paths: list[str] = []
        for c in (c for c in columns if c in self.names):
            leaves = [p for p in self._leaves if p.startswith(c + ".")]
            paths += [p for p in leaves if self.keep(_parts(p))] if leaves and self.keep else [c]
        try:
            return self.index.file.read_row_groups(self.groups, columns=paths)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for broken files
            raise CatalogError(f"cannot read {self.index.path}: {' '.join(str(e).split())}",
                               hint=REBUILD_HINT) from None


class _Table:
    """What :func:`season_table` reads, over rows already in memory."""

    def __init__(self, table):
        self.table, self.names = table, table.column_names

    def read(self, columns: list[str]):
        return self.table.select([c for c in columns if c in self.names])


def _map_leaves(parts: list[str]) -> bool:
    """Of ``seco:seasons``, only what the map needs."""
    keys = {SEASON_FIELDS[f][1] for f in _MAP_FIELDS}
    return parts[0] != "seco:seasons" or len(parts) < 2 or parts[1] in keys


def _detail_leaves(parts: list[str]) -> bool:
    """Of ``assets`` only the hrefs (and the season of each band, for the compact layout's files)."""
    if parts[0] != "assets" or len(parts) < 3:
        return True
    return parts[2] == "href" or (parts[2] == "bands" and parts[-1] == "seco:season")


def _numbers(col, dtype=np.float64) -> np.ndarray:
    """A pyarrow numeric column as numpy, NaN where null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_null(col.type):
        return np.full(len(col), np.nan, dtype)
    return pc.fill_null(pc.cast(col, pa.float64()), float("nan")).to_numpy(zero_copy_only=False).astype(dtype)


def _days(col) -> np.ndarray:
    """A timestamp column as int32 days since 1970-01-01 (UTC), NO_DAY where null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_null(col.type):
        return np.full(len(col), NO_DAY, np.int32)
    secs = pc.cast(pc.cast(col, pa.timestamp("s", tz="UTC"), safe=False), pa.int64())
    never = np.iinfo(np.int64).min
    s = pc.fill_null(secs, never).to_numpy(zero_copy_only=False)
    return np.where(s == never, NO_DAY, np.floor_divide(s, 86400)).astype(np.int32)


def _quantised(values: np.ndarray, scale: float) -> np.ndarray:
    """round(values * scale) as u16, NONE16 where NaN."""
    q = np.clip(np.rint(np.nan_to_num(values, nan=0.0) * scale), 0, NONE16 - 1)
    return np.where(np.isnan(values), NONE16, q).astype(np.uint16)


def _points(t) -> np.ndarray:
    """(n, 2) lon, lat per row: ``seco:point``, else the bbox centre, else NaN."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = np.full((t.num_rows, 2), np.nan)
    if "seco:point" in t.column_names and t.num_rows:
        col = t.column("seco:point").combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
        ok = lengths >= 2
        if ok.any():
            flat = _numbers(pc.list_flatten(col))
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            out[ok, 0], out[ok, 1] = flat[starts[ok]], flat[starts[ok] + 1]
    if "bbox" in t.column_names and np.isnan(out[:, 0]).any():
        bb = t.column("bbox").combine_chunks()
        names = ("xmin", "ymin", "xmax", "ymax")
        if pa.types.is_struct(bb.type) and all(bb.type.get_field_index(f) >= 0 for f in names):
            f = {k: _numbers(pc.struct_field(bb, k)) for k in names}
            miss = np.isnan(out[:, 0])
            out[miss, 0] = ((f["xmin"] + f["xmax"]) / 2)[miss]
            out[miss, 1] = ((f["ymin"] + f["ymax"]) / 2)[miss]
    return out


class _Codes:
    """Strings, batch after batch, as integer codes into ``names`` (in order of first appearance; -1
    for null): :meth:`add` each batch, then :meth:`codes` once, vectorised (no Python per string)."""

    def __init__(self, first: str | None = None):
        self.names: list[str] = [] if first is None else [first]
        self._dicts, self._indices = [], []

    def add(self, col) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        d = pc.dictionary_encode(col.cast(pa.string()))
        self._dicts.append(d.dictionary)
        self._indices.append(pc.fill_null(d.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64))

    def codes(self) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        words = pa.concat_arrays([pa.array(self.names, pa.string())] + self._dicts)
        d = pc.dictionary_encode(words)
        self.names = d.dictionary.to_pylist()
        codes = d.indices.to_numpy(zero_copy_only=False).astype(np.int32)
        out, base = [], len(words) - sum(len(x) for x in self._dicts)  # after the names given first
        for local, words_g in zip(self._indices, self._dicts):
            mapped = codes[base + np.maximum(local, 0)] if len(words_g) else np.zeros(len(local), np.int32)
            out.append(np.where(local < 0, -1, mapped))
            base += len(words_g)
        self._dicts, self._indices = [], []
        return _cat(out, np.int32)


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _iso(t) -> str | None:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(t, "strftime") else t


def _num(v) -> float | None:
    return None if v is None or v != v else float(v)


def _unsigned(values: np.ndarray, none: bool = False) -> np.ndarray:
    """The smallest of u8, u16, u32 that holds ``values`` (>= 0; with ``none``, -1 becomes the type's max)."""
    top = int(values.max()) + 1 if len(values) else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top + none <= np.iinfo(dtype).max:
            return np.where(values < 0, np.iinfo(dtype).max, values).astype(dtype) if none else values.astype(dtype)
    raise ValueError(f"{top} does not fit in 32 bits")


def _files(assets: dict | None) -> dict[str, tuple[str, list]]:
    """An index row's assets as {key: (href, the season of each band)} (no season: per-patch)."""
    return {key: (a["href"], [b.get("seco:season") if b else None for b in a.get("bands") or []])
            for key, a in (assets or {}).items() if a and a.get("href")}


def _grid(values: np.ndarray, lo: float, span: float) -> np.ndarray:
    """Degrees as u16 steps of span / 65535 from lo."""
    return np.rint((np.clip(np.nan_to_num(values, nan=lo), lo, lo + span) - lo) * (65535 / span)).astype(np.uint16)


# -- the catalog's data ---------------------------------------------------------------------------


class CatalogData:
    """What the viewer shows about the catalog in ``root``, read once from its index (module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        coll_path, parquet = self.root / COLLECTION, self.root / INDEX
        if not coll_path.is_file() or not parquet.is_file():
            raise CatalogError(f"{self.root} is not a seco catalog (no {COLLECTION} or {INDEX})",
                               hint="point at the --out folder of `seco-data sample` or `seco-data import`;"
                               " `seco-data catalog rebuild` restores a missing index")
        try:
            self.collection = json.loads(coll_path.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise CatalogError(f"cannot read {coll_path}: {e}") from None
        self.index = IndexFile(parquet)
        self.compact = "seco:seasons" in self.index.names
        self.index.require(["id", "seco:location"] + (["seco:seasons"] if self.compact else ["seco:season"]))
        if self.index.num_rows >= 2**31:
            raise CatalogError(f"{parquet} has {self.index.num_rows:,} rows: the viewer handles up to 2**31")
        self.n_items = self.index.num_rows  # STAC items: locations (compact) or patches (per-patch)
        self._group_start = np.cumsum([0] + self.index.row_group_sizes()).astype(np.int64)
        self._cached: tuple = ((), None)  # (row groups, their detail columns): chunks come in order
        self._read_index()
        self.asset_keys = self._asset_keys()
        self.rejected = self._rejected()

    def _read_index(self) -> None:
        """Per patch: season, day, quantised cloud, index row; per location: id, lon/lat, place and
        source; the summary statistics. One row group at a time."""
        import pyarrow as pa

        patch = {k: [] for k in ("location", "season", "day", "cloud", "pcloud", "row")}
        place = {k: [] for k in ("location", "lon", "lat")}
        self.summary = Summary()
        origins = _Codes()
        sources = _Codes((self.collection.get("seco:source") or {}).get("name") or "unknown")  # code 0
        columns = ["seco:seasons"] + [SEASON_FIELDS[f][0] for f in _MAP_FIELDS] + _PLACE_COLUMNS
        for g in range(len(self._group_start) - 1):
            p = _Rows(self.index, [g], _map_leaves).read(columns)  # one read per group
            t = season_table(_Table(p), _MAP_FIELDS)
            season, day = _numbers(t.column("season")), _days(t.column("datetime"))
            cloud, pcloud = _numbers(t.column("scene_cloud")), _numbers(t.column("cloud_fraction"))
            self.summary.add(season, day, cloud, pcloud, _numbers(t.column("valid_fraction")))
            patch["location"].append(t.column("location").to_numpy().astype(np.int64))
            patch["season"].append(np.nan_to_num(season, nan=0).astype(np.int16))
            patch["day"].append(day)
            patch["cloud"].append(_quantised(cloud, 100))  # hundredths of a percent
            patch["pcloud"].append(_quantised(pcloud, 10_000))  # a fraction, in hundredths of a percent
            patch["row"].append((t.column("row").to_numpy() + self._group_start[g]).astype(np.int32))

            loc = p.column("seco:location").to_numpy().astype(np.int64)
            first = np.r_[True, loc[1:] != loc[:-1]] if len(loc) else np.zeros(0, bool)  # per-patch: rows per season
            if not first.all():
                p, loc = p.filter(first), loc[first]
            xy = _points(p)
            place["location"].append(loc)
            place["lon"].append(xy[:, 0])
            place["lat"].append(xy[:, 1])
            for name, codes in (("seco:origin", origins), ("seco:source", sources)):
                codes.add(p.column(name) if name in p.column_names else pa.nulls(p.num_rows, pa.string()))
        self._arrange(patch, place, origins, sources)
        pa.default_memory_pool().release_unused()  # a server keeps running: give the read buffers back

    def _arrange(self, patch: dict, place: dict, origins: _Codes, sources: _Codes) -> None:
        """The groups' arrays as one, patches by location and season, locations by id."""
        location, season = _cat(patch.pop("location"), np.int64), _cat(patch.pop("season"), np.int16)
        ordered = bool(np.all((location[1:] > location[:-1])
                              | ((location[1:] == location[:-1]) & (season[1:] > season[:-1]))))
        order = None if ordered else np.lexsort((season, location))

        def arranged(a: np.ndarray) -> np.ndarray:
            return a if order is None else a[order]

        location, self.season = arranged(location), arranged(season)
        self.day, self.row = arranged(_cat(patch.pop("day"), np.int32)), arranged(_cat(patch.pop("row"), np.int32))
        self.cloud, self.pcloud = (arranged(_cat(patch.pop(k), np.uint16)) for k in ("cloud", "pcloud"))
        self.n_patches = len(location)
        first = np.flatnonzero(np.r_[True, location[1:] != location[:-1]]) if len(location) else np.zeros(0, int)
        self.starts = np.r_[first, len(location)].astype(np.int64)  # patches starts[i]..starts[i+1] are location i's
        self.locations = location[first]

        known, at = np.unique(_cat(place["location"], np.int64), return_index=True)  # a location's first row
        pick = at[np.searchsorted(known, self.locations)] if len(known) else np.zeros(0, int)
        self.lon, self.lat = _cat(place["lon"], np.float64)[pick], _cat(place["lat"], np.float64)[pick]
        self.origin = origins.codes()[pick]
        self.source = np.maximum(sources.codes()[pick], 0)  # none: the collection's source (code 0)
        self.origins, self.sources = origins.names, sources.names
        anchors = ((self.collection.get("seco:recipe") or {}).get("seasons") or {}).get("anchors") or []
        self.n_seasons = max(len(anchors), int(self.season.max()) + 1 if len(self.season) else 0)
        self.info = self.summary.info(self.collection, items=self.n_items, locations=len(self.locations))

    def _rejected(self) -> dict | None:
        """Positions and reason codes of the candidates the collection run rejected, from its ledger
        (read-only); None for catalogs without a ledger, or with one that cannot be read."""
        import pyarrow as pa

        from ...catalog.ledger import Ledger

        path = self.root / LEDGER
        if not path.is_file():
            return None
        reasons = _Codes()
        lon, lat = [], []
        try:
            ledger = Ledger(path, readonly=True)
            try:
                rows = ledger.rejected_points()
                while batch := list(itertools.islice(rows, 100_000)):
                    x, y, r = zip(*batch)
                    lon.append(np.array(x, np.float64))
                    lat.append(np.array(y, np.float64))
                    reasons.add(pa.array(r, pa.string()))
            finally:
                ledger.close()
        except (SecoError, sqlite3.Error, OSError) as e:
            log.warning("cannot read the rejected candidates from %s (%s): the map shows accepted locations only",
                        path, e)
            return None
        reason = reasons.codes()
        return {"lon": _cat(lon, np.float64), "lat": _cat(lat, np.float64), "reason": reason, "reasons": reasons.names}

    def _asset_keys(self) -> list[dict]:
        """Asset keys with the title, media type, roles and gsd of their first use, and how many
        items have each (from the row groups' null counts where the file has them)."""
        import pyarrow as pa

        if "assets" not in self.index.names or not self.n_items:
            return []
        atype = self.index.file.schema_arrow.field("assets").type
        if not pa.types.is_struct(atype):
            return []
        keys = [f.name for f in atype if pa.types.is_struct(f.type) and f.type.get_field_index("href") >= 0]
        md = self.index.file.metadata
        href_column = {md.schema.column(j).path.split(".")[1]: j for j in range(md.num_columns)
                       if _parts(md.schema.column(j).path)[::2] == ["assets", "href"]}
        counts = dict.fromkeys(keys, 0)
        for g in range(md.num_row_groups):
            group = md.row_group(g)
            for key in keys:
                st = group.column(href_column[key]).statistics if key in href_column else None
                if st is not None and st.has_null_count:
                    counts[key] += group.num_rows - st.null_count
                else:
                    t = _Rows(self.index, [g], lambda parts, k=key: parts[1:] in ([], [k, "href"])).read(["assets"])
                    counts[key] += int(t.column(0).combine_chunks().field(key).field("href").is_valid().sum())
        wanted = {"href", "title", "type", "roles", "gsd"}
        first = _Rows(self.index, [0], lambda parts: len(parts) < 3 or parts[2] in wanted).read(["assets"])
        col = first.column("assets").slice(0, 256).combine_chunks()
        out = []
        for key in keys:
            a = next((v for v in col.field(key).to_pylist() if v and v.get("href")), {})
            roles = list(a.get("roles") or [])
            kind = "thumbnail" if key == THUMBNAIL or "thumbnail" in roles else (
                "data" if "data" in roles or "tiff" in (a.get("type") or "") else "other")
            out.append({"key": key, "title": a.get("title"), "type": a.get("type"), "roles": roles, "kind": kind,
                        "count": int(counts[key]), "gsd": a.get("gsd")})
        out.sort(key=lambda a: ({"thumbnail": 0, "data": 1}.get(a["kind"], 2), a["gsd"] or 0, a["key"]))
        return out

    # -- payloads ------------------------------------------------------------------------------
    def chunk_ids(self) -> list[int]:
        return np.unique(self.locations // CHUNK).tolist()

    def meta(self, asset_base: str, api_base: str | None = None) -> dict:
        """Collection, counts, summary statistics and asset keys."""
        c = self.collection
        recipe = c.get("seco:recipe") or {}
        seasons = recipe.get("seasons") or {}
        stats = c.get("seco:stats") or {}
        thumbs = next((a["count"] for a in self.asset_keys if a["kind"] == "thumbnail"), 0)
        return {
            "collection": c.get("id") or self.root.name,
            "title": c.get("title") or c.get("id") or self.root.name,
            "description": c.get("description") or "",
            "license": c.get("license"),
            "providers": [{"name": p.get("name"), "roles": p.get("roles") or [], "description": p.get("description")}
                          for p in c.get("providers") or []],
            "source": c.get("seco:source") or {},
            "recipe": recipe.get("name"),
            "layout": "compact" if self.compact else "per-patch",
            "seasons": {"count": self.n_seasons, "anchors": seasons.get("anchors") or [],
                        "window_days": seasons.get("window_days"), "shift_days": seasons.get("shift_days")},
            "filters": recipe.get("filters") or {},
            "counts": {"locations": int(len(self.locations)), "items": self.n_items, "patches": self.n_patches,
                       "requested": stats.get("requested"), "candidates": stats.get("candidates"),
                       "rejected": int(sum((stats.get("rejections") or {}).values())),
                       "rejected_positions": len(self.rejected["lon"]) if self.rejected else None},
            "info": self.info,
            "assets": self.asset_keys,
            "thumbnails": thumbs,
            "asset_base": asset_base,
            "api_base": api_base,
            "chunk": CHUNK,
        }

    def _days(self) -> tuple[np.ndarray, int, int]:
        """Patch days as stored in the payloads, ``day0`` and "unknown": u16 days since ``day0`` where
        the range fits (NONE16 unknown), else i32 days since 1970 (NO_DAY unknown)."""
        known = self.day[self.day != NO_DAY]
        day0 = int(known.min()) if len(known) else 0
        if not len(known) or int(known.max()) - day0 < NONE16:
            return np.where(self.day == NO_DAY, NONE16, self.day - day0).astype(np.uint16), day0, NONE16
        return self.day, 0, NO_DAY

    def map(self) -> dict:
        """Packed typed arrays for the map and the paged list, a few numbers per location (module
        docstring); the patches themselves are in :meth:`patches`, which the page loads for filters.

        Per location: ``loc`` (id), ``lon``, ``lat`` (float32), ``origin`` (index into ``origins``,
        the type's max for none), ``source`` (index into ``sources``), ``n`` (patches), and, over its
        patches: ``mask`` (bit s: season s present), ``maxcloud`` and ``maxpcloud`` (scene cloud and
        patch cloud + shadow, hundredths of a percent, NONE16 unknown), ``first`` and ``last`` (days,
        as in :meth:`patches`). Rejected candidates: ``rlon``, ``rlat`` (u16: 0 is -180 / -90
        degrees, 65535 is 180 / 90) and ``rreason`` (index into ``rejected.reasons``)."""
        day, day0, none = self._days()
        at = self.starts[:-1]
        nl = len(self.locations)

        def over(values: np.ndarray, ufunc, unknown, fill) -> np.ndarray:
            v = np.where(values == unknown, fill, values.astype(np.int64))
            out = ufunc.reduceat(v, at) if nl else np.zeros(0, np.int64)
            return np.where(out == fill, unknown, out).astype(values.dtype)

        columns = {
            "loc": self.locations.astype(np.uint32 if self.locations.max(initial=0) < 2**32 else np.float64),
            "lon": self.lon.astype(np.float32),
            "lat": self.lat.astype(np.float32),
            "origin": _unsigned(self.origin, none=True),
            "source": _unsigned(self.source),
            "n": _unsigned(np.diff(self.starts)),
            "mask": _unsigned(np.bitwise_or.reduceat(np.left_shift(1, self.season.astype(np.int64)), at) if nl
                              else np.zeros(0, np.int64)),
            "maxcloud": over(self.cloud, np.maximum, NONE16, -1),
            "maxpcloud": over(self.pcloud, np.maximum, NONE16, -1),
            "first": over(day, np.minimum, none, 2**40),
            "last": over(day, np.maximum, none, -(2**40)),
        }
        rej = self.rejected
        if rej is not None:  # drawn as dots: 1/65535 of the world is close enough (~600 m)
            columns.update({"rlon": _grid(rej["lon"], -180, 360), "rlat": _grid(rej["lat"], -90, 180),
                            "rreason": _unsigned(rej["reason"])})
        return {
            "locations": nl,
            "patches": self.n_patches,
            "day0": day0,
            "origins": self.origins,
            "sources": self.sources,
            "rejected": None if rej is None else {"count": int(len(rej["lon"])), "reasons": rej["reasons"]},
            **pack(columns, delta=("loc",) if columns["loc"].dtype == np.uint32 else ()),  # ids grow: small steps
        }

    def patches(self) -> dict:
        """Packed per patch, in the order of :meth:`map`'s locations (``n`` each), by season: ``season``,
        ``day`` (days since ``day0`` as u16, NONE16 unknown; or since 1970 as i32 where the range is
        too wide, INT32_MIN unknown), ``cloud`` (scene cloud) and ``pcloud`` (patch cloud + shadow),
        both in hundredths of a percent, NONE16 unknown."""
        day, day0, _ = self._days()
        columns = {"season": _unsigned(self.season.astype(np.int64)), "day": day, "cloud": self.cloud,
                   "pcloud": self.pcloud}
        # the days of a location's seasons are close to each other's: as differences they pack small
        return {"patches": self.n_patches, "day0": day0, **pack(columns, delta=("day",))}

    def chunk(self, k: int) -> dict | None:
        """Details of the locations in chunk ``k`` (None when the catalog has none there)."""
        import pyarrow as pa

        p0, p1 = (int(i) for i in np.searchsorted(self.locations, [k * CHUNK, (k + 1) * CHUNK]))
        if p0 == p1:
            return None
        rows = np.unique(self.row[self.starts[p0]:self.starts[p1]])
        groups = np.unique(np.searchsorted(self._group_start, rows, side="right") - 1)
        key = tuple(int(g) for g in groups)
        if self._cached[0] != key:
            self._cached = (key, None)  # the old table goes first
            columns = ["seco:location", "seco:seasons"] + [SEASON_FIELDS[f][0] for f in SEASON_FIELDS] + _DETAIL_COLUMNS
            self._cached = (key, _Rows(self.index, list(key), _detail_leaves).read(columns))
        sizes = self._group_start[groups + 1] - self._group_start[groups]
        base = np.r_[0, np.cumsum(sizes)[:-1]]
        g_of = np.searchsorted(self._group_start, rows, side="right") - 1
        local = rows - self._group_start[g_of] + base[np.searchsorted(groups, g_of)]
        table = self._cached[1].take(pa.array(local))  # the chunk's index rows
        t = season_table(_Table(table), list(SEASON_FIELDS), location_columns=["id", "seco:origin", "links"])
        t = t.sort_by([("location", "ascending"), ("season", "ascending")])
        cols = {name: t.column(name).to_pylist() for name in t.column_names}
        files = [_files(a) for a in (table.column("assets").to_pylist() if "assets" in table.column_names
                                     else [None] * table.num_rows)]  # per index row: {key: (href, band seasons)}
        locations: list[dict] = []
        for j in range(t.num_rows):
            loc, row = int(cols["location"][j]), cols["row"][j]
            if not locations or locations[-1]["loc"] != loc:
                at = p0 + int(np.searchsorted(self.locations[p0:p1], loc))
                locations.append({
                    "loc": loc, "id": cols["id"][j] if self.compact else None,
                    "lon": _num(self.lon[at]), "lat": _num(self.lat[at]),
                    "origin": cols["seco:origin"][j] if "seco:origin" in cols else None,
                    "source": self.sources[self.source[at]],
                    "assets": {key: href for key, (href, _) in files[row].items()} if self.compact else {},
                    "items": [],
                })
            locations[-1]["items"].append(self._patch(cols, files[row], j))
        for loc in locations:
            if self.compact:  # the location's quicklook strip: its seasons side by side, by season
                for n, it in enumerate(loc["items"]):
                    it["strip"] = {"index": n, "count": len(loc["items"])}
        return {"chunk": int(k), "layout": "compact" if self.compact else "per-patch",
                "prev": int(self.locations[p0 - 1]) if p0 > 0 else None,
                "next": int(self.locations[p1]) if p1 < len(self.locations) else None,
                "locations": locations}

    def _patch(self, cols: dict, files: dict, j: int) -> dict:
        """One season of a location, for the location page (``files``: its index row's, :func:`_files`)."""
        def get(name):
            return cols[name][j] if name in cols else None

        item = {
            "season": int(get("season")),
            "datetime": _iso(get("datetime")),
            "platform": get("platform"),
            "scene_id": get("scene_id"),
            "cloud": _num(get("scene_cloud")),
            "pcloud": _num(get("cloud_fraction")),
            "valid": _num(get("valid_fraction")),
            "window": get("window"),
        }
        if self.compact:  # every season's bands in one file per resolution: which are this season's
            item["bands"] = {key: [i + 1 for i, s in enumerate(seasons) if s == item["season"]]
                             for key, (_, seasons) in files.items() if seasons}
        else:  # an item of its own, with its JSON file and files
            item["id"] = get("id")
            item["href"] = item_json_href({"links": get("links")})
            item["assets"] = {key: href for key, (href, _) in files.items()}
        return item
