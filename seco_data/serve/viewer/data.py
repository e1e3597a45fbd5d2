"""The viewer's data: compact payloads built from ``items.parquet``, ``collection.json``, ``catalog_info``
and, where the catalog has one, the ledger's rejected candidates.

Item JSONs are never parsed: the index is read column by column with pyarrow (a 100,000-item
index in about half a second, bench/bench_viewer.py). Three kinds of payload:

``meta``
    collection, counts, summary statistics (:func:`seco_data.catalog.info.catalog_info`), asset keys, chunks;
``map``
    one entry per location (id, rounded lon/lat, origin) and, grouped by location in the same order,
    one entry per item (season, day, scene cloud, patch cloud, valid fraction, source) as columnar
    arrays: the map page filters, colours and lists everything from this alone;
``chunk``
    the details of the locations ``CHUNK * k .. CHUNK * (k + 1) - 1`` (ids, dates, scene ids, hrefs of
    the item JSON, GeoTIFFs and thumbnail): the location page loads only its own chunk.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import numpy as np

from ...catalog.index import IndexFile
from ...catalog.info import catalog_info
from ...catalog.layout import COLLECTION, INDEX, LEDGER, THUMBNAIL
from ...errors import CatalogError

log = logging.getLogger(__name__)

CHUNK = 128  # locations per detail file data/loc/<location // CHUNK>.js

_REQUIRED = ["id", "datetime", "seco:location", "seco:season"]
_OPTIONAL = ["platform", "eo:cloud_cover", "seco:cloud_fraction", "seco:valid_fraction", "seco:point", "bbox",
             "seco:scene_id", "seco:origin", "seco:source", "seco:window", "links", "assets"]


def _floats(table, name: str) -> np.ndarray:
    """A numeric column as float64, NaN where missing (or where the column is absent)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    col = pc.cast(table.column(name), pa.float64())
    return pc.fill_null(col, float("nan")).to_numpy()


def _datetimes(table) -> np.ndarray:
    """The ``datetime`` column as datetime64[s] (UTC), from a timestamp or an ISO string column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column("datetime")
    if pa.types.is_timestamp(col.type):
        return pc.cast(col, pa.timestamp("s", tz=col.type.tz)).to_numpy().astype("datetime64[s]")
    text = [str(v).replace("Z", "").replace("+00:00", "") for v in col.to_pylist()]
    return np.array(text, dtype="datetime64[s]")


def _points(table) -> np.ndarray:
    """(n, 2) lon, lat per item: ``seco:point``, else the bbox centre."""
    import pyarrow.compute as pc

    n = table.num_rows
    out = np.full((n, 2), np.nan)
    if "seco:point" in table.column_names:
        col = table.column("seco:point").combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy()
        ok = lengths >= 2
        if ok.any():
            flat = pc.list_flatten(col).to_numpy(zero_copy_only=False)
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            out[ok, 0] = flat[starts[ok]]
            out[ok, 1] = flat[starts[ok] + 1]
    if "bbox" in table.column_names and np.isnan(out[:, 0]).any():
        bb = table.column("bbox").combine_chunks()
        cx = (_struct_numbers(bb, "xmin") + _struct_numbers(bb, "xmax")) / 2
        cy = (_struct_numbers(bb, "ymin") + _struct_numbers(bb, "ymax")) / 2
        miss = np.isnan(out[:, 0])
        out[miss, 0], out[miss, 1] = cx[miss], cy[miss]
    return out


def _struct_numbers(arr, field: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_struct(arr.type) or arr.type.get_field_index(field) < 0:
        return np.full(len(arr), np.nan)
    return pc.fill_null(pc.cast(pc.struct_field(arr, field), pa.float64()), float("nan")).to_numpy()


def _self_hrefs(table) -> list[str | None]:
    """Each item's ``self`` link (its JSON, relative to the catalog root, as ``stac.rebase`` writes it)."""
    import pyarrow.compute as pc

    out: list[str | None] = [None] * table.num_rows
    if "links" not in table.column_names or not table.num_rows:
        return out
    links = table.column("links").combine_chunks()
    flat = pc.list_flatten(links)
    if not len(flat):
        return out
    parents = pc.list_parent_indices(links).to_numpy()
    rel = pc.struct_field(flat, "rel").to_numpy(zero_copy_only=False)
    href = pc.struct_field(flat, "href").to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(rel == "self"):
        out[parents[i]] = href[i]
    return out


def _rounded(values: np.ndarray, digits: int) -> list:
    """JSON-ready numbers rounded to ``digits``; NaN becomes null."""
    r = np.round(values, digits)
    if digits == 0:
        return [None if v != v else int(v) for v in r.tolist()]
    return [None if v != v else v for v in r.tolist()]


def _rejected(root: Path) -> dict | None:
    """Positions and reasons of the candidates that the collection run rejected, from its ledger
    (read-only); None for catalogs without a ledger (imports) or with an unreadable one."""
    path = root / LEDGER
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute("SELECT lon, lat, coalesce(reason, 'unknown') FROM candidates"
                              " WHERE status = 'rejected' ORDER BY idx").fetchall()
        finally:
            db.close()
    except sqlite3.Error as e:
        log.warning("cannot read the rejected candidates from %s (%s): the map shows accepted locations only", path, e)
        return None
    reasons = sorted({r[2] for r in rows})
    index = {r: i for i, r in enumerate(reasons)}
    lon = np.array([r[0] for r in rows], float)
    lat = np.array([r[1] for r in rows], float)
    return {"lon": _rounded(lon, 4), "lat": _rounded(lat, 4), "reason": [index[r[2]] for r in rows],
            "reasons": reasons}


class CatalogData:
    """Everything the viewer shows about the catalog in ``root``, read once from its index."""

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
        index = IndexFile(parquet)
        index.require(_REQUIRED)
        t = index.read(_REQUIRED + _OPTIONAL)
        if t.num_rows:
            t = t.sort_by([("seco:location", "ascending"), ("seco:season", "ascending")])
        self.info = catalog_info(self.root)
        self.info.pop("root", None)  # a local path: not for a published site
        self.table = t
        self.n_items = t.num_rows
        self.location = t.column("seco:location").to_numpy().astype(np.int64)
        self.season = t.column("seco:season").to_numpy().astype(np.int64)
        self.datetime = _datetimes(t)
        self.cloud = _floats(t, "eo:cloud_cover")
        self.patch_cloud = _floats(t, "seco:cloud_fraction")
        self.valid = _floats(t, "seco:valid_fraction")
        self.points = _points(t)
        default_source = (self.collection.get("seco:source") or {}).get("name") or "unknown"
        if "seco:source" in t.column_names:
            self.source = [s or default_source for s in t.column("seco:source").to_pylist()]
        else:
            self.source = [default_source] * self.n_items
        # location groups: rows start[i] .. start[i + 1] hold location loc[i]
        first = np.flatnonzero(np.r_[True, self.location[1:] != self.location[:-1]]) if self.n_items else []
        first = np.asarray(first, np.int64)
        self.starts = np.r_[first, self.n_items].astype(np.int64)
        self.locations = self.location[first]
        self.chunk_of_location = self.locations // CHUNK
        self.asset_keys = self._asset_keys()
        self.rejected = _rejected(self.root)
        self._self_hrefs: list | None = None
        self._asset_hrefs: dict | None = None

    # -- payloads ------------------------------------------------------------------------------
    def chunk_ids(self) -> list[int]:
        return sorted(int(k) for k in np.unique(self.chunk_of_location))

    def meta(self, asset_base: str) -> dict:
        """Collection, counts, summary statistics and how to find the other payloads."""
        c = self.collection
        recipe = c.get("seco:recipe") or {}
        seasons = recipe.get("seasons") or {}
        season_ids = sorted({int(s) for s in np.unique(self.season)})
        n_seasons = max(len(seasons.get("anchors") or []), (max(season_ids) + 1) if season_ids else 0)
        chunks = []
        for k in self.chunk_ids():
            locs = self.locations[self.chunk_of_location == k]
            chunks.append({"k": k, "first": int(locs[0]), "last": int(locs[-1]), "locations": int(len(locs))})
        stats = c.get("seco:stats") or {}
        return {
            "collection": c.get("id") or self.root.name,
            "title": c.get("title") or c.get("id") or self.root.name,
            "description": c.get("description") or "",
            "license": c.get("license"),
            "providers": [{"name": p.get("name"), "roles": p.get("roles") or [], "description": p.get("description")}
                          for p in c.get("providers") or []],
            "source": c.get("seco:source") or {},
            "recipe": recipe.get("name"),
            "seasons": {"count": n_seasons, "anchors": seasons.get("anchors") or [],
                        "window_days": seasons.get("window_days"), "shift_days": seasons.get("shift_days")},
            "filters": recipe.get("filters") or {},
            "counts": {"locations": int(len(self.locations)), "items": self.n_items,
                       "requested": stats.get("requested"), "candidates": stats.get("candidates"),
                       "rejected": int(sum((stats.get("rejections") or {}).values())),
                       "rejected_positions": len(self.rejected["lon"]) if self.rejected else None},
            "info": self.info,
            "assets": self.asset_keys,
            "thumbnails": self._has_thumbnails(),
            "asset_base": asset_base,
            "chunk": CHUNK,
            "chunks": chunks,
        }

    def map(self) -> dict:
        """Columnar arrays for the map, the filters and the paged list (see the module docstring)."""
        idx0 = self.starts[:-1]
        origins: list[str] = []
        origin_ids: list[int | None] = []
        if "seco:origin" in self.table.column_names and len(idx0):
            names = self.table.column("seco:origin").take(idx0).to_pylist()
            seen: dict[str, int] = {}
            for name in names:
                if name is None:
                    origin_ids.append(None)
                    continue
                if name not in seen:
                    seen[name] = len(origins)
                    origins.append(name)
                origin_ids.append(seen[name])
        sources = sorted(set(self.source))
        sid = {s: i for i, s in enumerate(sources)}
        days = self.datetime.astype("datetime64[D]").astype(np.int64)
        return {
            "loc": self.locations.tolist(),
            "lon": _rounded(self.points[idx0, 0], 4) if len(idx0) else [],
            "lat": _rounded(self.points[idx0, 1], 4) if len(idx0) else [],
            "origin": origin_ids,
            "origins": origins,
            "n": np.diff(self.starts).tolist(),
            "season": self.season.tolist(),
            "day": days.tolist(),  # days since 1970-01-01 (UTC)
            "cloud": _rounded(self.cloud, 2),  # scene cloud, %
            "pcloud": _rounded(self.patch_cloud * 100.0, 2),  # patch cloud + shadow, %
            "valid": _rounded(self.valid * 100.0, 2),  # valid pixels, %
            "source": [sid[s] for s in self.source],
            "sources": sources,
            "rejected": self.rejected,
        }

    def chunk(self, k: int) -> dict | None:
        """Details of the locations in chunk ``k`` (None when the catalog has none there)."""
        sel = np.flatnonzero(self.chunk_of_location == k)
        if not len(sel):
            return None
        t = self.table
        r0, r1 = int(self.starts[sel[0]]), int(self.starts[sel[-1] + 1])
        part = t.slice(r0, r1 - r0)

        def strings(name: str) -> list:
            return part.column(name).to_pylist() if name in part.column_names else [None] * (r1 - r0)

        ids, platforms, scenes = strings("id"), strings("platform"), strings("seco:scene_id")
        origins, windows = strings("seco:origin"), strings("seco:window")
        when = np.datetime_as_string(self.datetime[r0:r1], unit="s")
        hrefs = self._self()[r0:r1]
        assets = {key: vals[r0:r1] for key, vals in self._assets().items()}
        locations = []
        for li in sel:
            a, b = int(self.starts[li]), int(self.starts[li + 1])
            items = []
            for r in range(a, b):
                j = r - r0
                items.append({
                    "id": ids[j],
                    "season": int(self.season[r]),
                    "datetime": f"{when[j]}Z",
                    "platform": platforms[j],
                    "scene_id": scenes[j],
                    "cloud": _num(self.cloud[r]),
                    "pcloud": _num(self.patch_cloud[r]),
                    "valid": _num(self.valid[r]),
                    "source": self.source[r],
                    "window": windows[j],
                    "href": hrefs[j],
                    "assets": {key: v[j] for key, v in assets.items() if v[j] is not None},
                })
            locations.append({
                "loc": int(self.locations[li]),
                "lon": _num(self.points[a, 0]),
                "lat": _num(self.points[a, 1]),
                "origin": origins[a - r0],
                "items": items,
            })
        return {"chunk": int(k), "locations": locations}

    # -- helpers -------------------------------------------------------------------------------
    def _self(self) -> list:
        if self._self_hrefs is None:
            self._self_hrefs = _self_hrefs(self.table)
        return self._self_hrefs

    def _assets(self) -> dict[str, list]:
        """href of every asset key, per item (None where an item lacks that asset)."""
        import pyarrow.compute as pc

        if self._asset_hrefs is None:
            out = {}
            if "assets" in self.table.column_names:
                col = self.table.column("assets").combine_chunks()
                for key in (a["key"] for a in self.asset_keys):
                    out[key] = pc.struct_field(pc.struct_field(col, key), "href").to_pylist()
            self._asset_hrefs = out
        return self._asset_hrefs

    def _asset_keys(self) -> list[dict]:
        """Asset keys in index order, with the title, media type and roles of their first use."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if "assets" not in self.table.column_names or not self.n_items:
            return []
        col = self.table.column("assets").combine_chunks()
        if not pa.types.is_struct(col.type):
            return []
        out = []
        for f in col.type:
            if not pa.types.is_struct(f.type) or f.type.get_field_index("href") < 0:
                continue
            sub = pc.struct_field(col, f.name)
            present = pc.drop_null(sub)
            first = present[0].as_py() if len(present) else {}
            roles = list(first.get("roles") or [])
            kind = "thumbnail" if f.name == THUMBNAIL or "thumbnail" in roles else (
                "data" if "data" in roles or "tiff" in (first.get("type") or "") else "other")
            out.append({"key": f.name, "title": first.get("title"), "type": first.get("type"), "roles": roles,
                        "kind": kind, "count": len(present), "gsd": first.get("gsd")})
        out.sort(key=lambda a: ({"thumbnail": 0, "data": 1}.get(a["kind"], 2), a["gsd"] or 0, a["key"]))
        return out

    def _has_thumbnails(self) -> int:
        """How many items have a thumbnail asset."""
        return sum(a["count"] for a in self.asset_keys if a["kind"] == "thumbnail")


def _num(v: float) -> float | None:
    return None if v != v else float(v)
