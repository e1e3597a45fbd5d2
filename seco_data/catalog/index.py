"""``items.parquet``, the catalog's index: the only module that writes or reads it.

Rows are ordered by location then season; each row is an item "as seen from the catalog root" (hrefs
relative to the root plus a ``self`` link, :func:`rebase`), so a row alone locates its item JSON and
its files. :func:`write_index` streams items in chunks; :class:`IndexFile` reads columns, batches or
row groups (the viewer, ``catalog info`` and the STAC API read only the columns they need);
:class:`CatalogIndex` streams the items back grouped by location for every exporter and checker,
so a catalog made by ``seco-data sample`` and one made by ``seco-data import`` are read the same
way. Memory stays bounded at any catalog size.
"""

from __future__ import annotations

import itertools
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..bands import DN_SCALE, default_scale
from ..errors import CatalogError
from ..outputs import atomic_path
from ..storage import is_url, join, open_seekable, read_bytes, resolve, size_of
from .item import thumbnail_asset
from .layout import COLLECTION, GEOJSON, INDEX, THUMBNAIL

REBUILD_HINT = "rebuild it with `seco-data catalog rebuild`"

#: the columns every reader of items needs, per layout
_PATCH_COLUMNS = [
    "id", "datetime", "platform", "eo:cloud_cover", "seco:location", "seco:season", "seco:scene_id",
    "seco:cloud_fraction", "seco:valid_fraction", "seco:point", "assets",
]
_LOCATION_COLUMNS = ["id", "seco:location", "seco:seasons", "seco:point", "assets"]


@dataclass(frozen=True)
class Asset:
    """One GeoTIFF of an item, as far as one season is concerned: the bands of one resolution group
    (``indexes``: where they are in the file, 1-based; a compact file holds every season's bands)."""

    key: str  # e.g. data_10m
    path: str | Path  # absolute (a URL on object storage)
    resolution: int  # metres
    bands: tuple[str, ...]
    dtype: str
    shape: tuple[int, int]
    crs: str  # proj:code, e.g. EPSG:32633
    transform: tuple[float, ...]  # proj:transform (6 numbers)
    sha256: str | None  # of the whole file
    size: int | None  # of the whole file
    scale: float = DN_SCALE  # raster:scale: reflectance = DN * scale (bands.default_scale when files do not say)
    indexes: tuple[int, ...] | None = None  # None: every band of the file, in order

    def read(self) -> np.ndarray:
        """Pixels (bands, H, W) in the file's own dtype."""
        return read_geotiff(self.path, self.indexes)

    def band_indexes(self) -> list[int]:
        """The 1-based indexes of :attr:`bands` in the file."""
        return list(self.indexes) if self.indexes is not None else list(range(1, len(self.bands) + 1))


@dataclass(frozen=True)
class Patch:
    """One location observed in one season: a per-patch item, or a season of a compact item."""

    item_id: str
    location: int
    season: int
    datetime: str  # ISO 8601, UTC
    platform: str
    scene_id: str
    scene_cloud: float  # percent
    cloud_fraction: float
    valid_fraction: float
    point: tuple[float, float]  # lon, lat of the location
    assets: tuple[Asset, ...]  # by increasing resolution (10 m first); the thumbnail has no bands

    @property
    def data(self) -> tuple[Asset, ...]:
        """The GeoTIFF assets (those with bands), 10 m first."""
        return tuple(a for a in self.assets if a.bands)


@dataclass(frozen=True)
class Location:
    location: int
    patches: tuple[Patch, ...]  # by season
    row: int = 0  # its first row in the index
    rows: int = 1  # how many rows of the index it spans (per-patch: one per season)

    @property
    def point(self) -> tuple[float, float]:
        return self.patches[0].point


def read_geotiff(path: str | Path, indexes=None) -> np.ndarray:
    """Bands of a GeoTIFF (all when ``indexes`` is None), local or on object storage."""
    import rasterio

    try:
        if is_url(str(path)):
            with rasterio.MemoryFile(read_bytes(path)) as mem, mem.open() as src:
                return src.read(list(indexes) if indexes is not None else None)
        with rasterio.open(path) as src:
            return src.read(list(indexes) if indexes is not None else None)
    except (rasterio.errors.RasterioIOError, FileNotFoundError) as e:
        raise CatalogError(f"cannot read {path}: {e}", hint="check the catalog with `seco-data verify`") from None


def _checksum(value: str | None) -> str | None:
    """sha256 hex digest from a ``file:checksum`` multihash (``1220`` + hex)."""
    if value and value.startswith("1220") and len(value) == 68:
        return value[4:]
    return None


def _asset(root: Path, key: str, a: dict, season: int | None = None) -> Asset:
    """The asset ``a`` (an asset dict of the index) as one season sees it (every band when None)."""
    res = a.get("gsd") or a.get("raster:spatial_resolution")
    # string joins: Path.resolve() costs syscalls per asset, a lot at millions of assets
    path = resolve(root, a["href"])
    dtype = a.get("data_type") or "uint16"
    scale = a.get("raster:scale")
    entries = a.get("bands") or []
    indexes = None
    if season is not None and any(b.get("seco:season") is not None for b in entries):
        picked = [(i, b) for i, b in enumerate(entries, start=1) if b.get("seco:season") == season]
        indexes = tuple(i for i, _ in picked)
        entries = [b for _, b in picked]
    return Asset(
        key=key,
        path=path,
        resolution=int(round(res)) if res else 0,
        bands=tuple(b["name"] for b in entries),
        dtype=dtype,
        shape=tuple(a.get("proj:shape") or ()),
        crs=a.get("proj:code") or "",
        transform=tuple(a.get("proj:transform") or ()),
        sha256=_checksum(a.get("file:checksum")),
        size=a.get("file:size"),
        scale=float(scale) if scale else default_scale(dtype),
        indexes=indexes,
    )


def _when(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(t, "strftime") else str(t)


class CatalogIndex:
    """The items of the catalog in ``root``, from its ``items.parquet`` (either layout)."""

    def __init__(self, root: str | Path):
        self.root = str(root).rstrip("/") if is_url(str(root)) else Path(root).resolve()
        coll = join(self.root, COLLECTION)
        self.parquet = join(self.root, INDEX)
        if size_of(coll) is None or size_of(self.parquet) is None:
            raise CatalogError(
                f"{self.root} is not a seco catalog (no {COLLECTION} or {INDEX})",
                hint="point at the --out folder of `seco-data sample` or `seco-data import`;"
                " `seco-data catalog rebuild` restores a missing index",
            )
        try:
            self.collection = json.loads(read_bytes(coll).decode("utf-8"))
        except (OSError, ValueError) as e:
            raise CatalogError(f"cannot read {coll}: {e}") from None
        self.index = IndexFile(self.parquet)
        self.compact = "seco:seasons" in self.index.names

    @property
    def name(self) -> str:
        return self.collection.get("id", str(self.root).rstrip("/").rsplit("/", 1)[-1])

    @property
    def n_items(self) -> int:
        """Rows of the index: locations (compact) or location x seasons (per-patch)."""
        return self.index.num_rows

    @property
    def n_locations(self) -> int:
        """Number of distinct locations (reads one column)."""
        import pyarrow.compute as pc

        if self.compact:
            return self.index.num_rows
        return len(pc.unique(self.index.read(["seco:location"]).column(0)))

    def rows(self, columns: list[str], batch: int = 4096, start: int = 0, stop: int | None = None):
        """The index's rows ``start .. stop - 1`` as dicts of ``columns``, in catalog order."""
        self.index.require(columns)
        for rb in self.index.iter_range(columns, start, stop, batch):
            cols = {c: rb.column(c).to_pylist() for c in columns}
            for i in range(rb.num_rows):
                yield {c: cols[c][i] for c in columns}

    def files(self):
        """Every file of every item: ``(path, size or None, sha256 or None)``, each once."""
        for row in self.rows(["assets"]):
            for key, a in sorted((row["assets"] or {}).items()):
                if a is not None:
                    yield resolve(self.root, a["href"]), a.get("file:size"), _checksum(a.get("file:checksum"))

    def patches(self, batch: int = 4096) -> Iterator[Patch]:
        """Every location x season, in catalog order (location, then season)."""
        for loc in self.locations(batch):
            yield from loc.patches

    def _patch_rows(self, batch: int, start: int, stop: int | None) -> Iterator[Patch]:
        try:
            for r in self.rows(_PATCH_COLUMNS, batch, start, stop):
                built = [_asset(self.root, k, a) for k, a in (r["assets"] or {}).items() if a is not None]
                built.sort(key=lambda a: (a.resolution, a.key))
                yield Patch(
                    item_id=r["id"],
                    location=int(r["seco:location"]),
                    season=int(r["seco:season"]),
                    datetime=_when(r["datetime"]),
                    platform=r["platform"] or "",
                    scene_id=r["seco:scene_id"] or "",
                    scene_cloud=float(r["eo:cloud_cover"] or 0.0),
                    cloud_fraction=float(r["seco:cloud_fraction"] or 0.0),
                    valid_fraction=float(r["seco:valid_fraction"] or 0.0),
                    point=tuple(r["seco:point"] or (0.0, 0.0)),
                    assets=tuple(built),
                )
        except OSError as e:
            raise CatalogError(f"cannot read {self.parquet}: {e}", hint=REBUILD_HINT) from None

    def _compact_locations(self, batch: int, start: int, stop: int | None) -> Iterator[Location]:
        for row, r in enumerate(self.rows(_LOCATION_COLUMNS, batch, start, stop), start=start):
            assets = {k: a for k, a in (r["assets"] or {}).items() if a is not None}
            patches = []
            for s in r["seco:seasons"] or []:
                built = [_asset(self.root, k, a, s["season"]) for k, a in assets.items()]
                built.sort(key=lambda a: (a.resolution, a.key))
                patches.append(Patch(
                    item_id=f"{r['id']}-s{s['season']}", location=int(r["seco:location"]), season=int(s["season"]),
                    datetime=_when(s["datetime"]), platform=s.get("platform") or "", scene_id=s.get("scene_id") or "",
                    scene_cloud=float(s.get("eo:cloud_cover") or 0.0), cloud_fraction=float(s.get("cloud_fraction") or 0.0),
                    valid_fraction=float(s.get("valid_fraction") or 0.0), point=tuple(r["seco:point"] or (0.0, 0.0)),
                    assets=tuple(built)))
            yield Location(int(r["seco:location"]), tuple(sorted(patches, key=lambda q: q.season)), row, 1)

    def locations(self, batch: int = 4096, start: int = 0, stop: int | None = None) -> Iterator[Location]:
        """Items grouped by location (the index is ordered by location), from the rows ``start .. stop - 1``
        (per-patch: ``start`` must be a location's first row, and ``stop`` one past its last)."""
        if self.compact:
            yield from self._compact_locations(batch, start, stop)
            return
        current: list[Patch] = []
        seen: set[int] = set()
        row = first = start

        def done():
            return Location(current[0].location, tuple(sorted(current, key=lambda q: q.season)), first, row - first)

        for p in self._patch_rows(batch, start, stop):
            if current and p.location != current[0].location:
                yield done()
                current = []
            if not current:
                if p.location in seen:
                    raise CatalogError(f"{self.parquet} is not ordered by location (location {p.location} recurs)",
                                       hint=REBUILD_HINT)
                seen.add(p.location)
                first = row
            current.append(p)
            row += 1
        if current:
            yield done()


# -- the file ---------------------------------------------------------------------------------------


class IndexFile:
    """An opened ``items.parquet``: schema, row count, columns, batches and row groups on demand.

    Every read error is a :class:`CatalogError` naming the file, with the hint to rebuild it.
    """

    def __init__(self, path: str | Path):
        import pyarrow.parquet as pq

        self.path = path if is_url(str(path)) else Path(path)
        try:
            if is_url(str(path)):  # object storage: range requests through a seekable reader
                size = size_of(path)
                if size is None:
                    raise FileNotFoundError(path)
                self.stamp = (None, size)
                self.file = pq.ParquetFile(open_seekable(path))
            else:
                st = self.path.stat()
                self.stamp = (st.st_mtime_ns, st.st_size)
                self.file = pq.ParquetFile(self.path)
        except FileNotFoundError:
            raise CatalogError(f"no {INDEX} at {self.path}",
                               hint="restore it with `seco-data catalog rebuild`") from None
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for broken files
            raise CatalogError(f"cannot read {self.path}: {' '.join(str(e).split())}", hint=REBUILD_HINT) from None

    @property
    def names(self) -> list[str]:
        return list(self.file.schema_arrow.names)

    @property
    def num_rows(self) -> int:
        return self.file.metadata.num_rows

    def row_group_sizes(self) -> list[int]:
        md = self.file.metadata
        return [md.row_group(i).num_rows for i in range(md.num_row_groups)]

    def _guard(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CatalogError:
            raise
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for broken files
            raise CatalogError(f"cannot read {self.path}: {' '.join(str(e).split())}", hint=REBUILD_HINT) from None

    def require(self, columns: Iterable[str]) -> None:
        missing = [c for c in columns if c not in self.names]
        if missing:
            raise CatalogError(f"{self.path} lacks the columns {', '.join(missing)}", hint=REBUILD_HINT)

    def read(self, columns: list[str] | None = None):
        """A pyarrow Table of ``columns`` (those present; all when None)."""
        if columns is not None:
            columns = [c for c in columns if c in self.names]
        return self._guard(self.file.read, columns=columns)

    def iter_range(self, columns: list[str] | None, start: int = 0, stop: int | None = None, batch_size: int = 4096):
        """Record batches of the rows ``start .. stop - 1``, reading only the row groups that hold them."""
        stop = self.num_rows if stop is None else min(stop, self.num_rows)
        if start == 0 and stop == self.num_rows:
            yield from self.iter_batches(columns, batch_size)
            return
        bounds = np.cumsum([0, *self.row_group_sizes()])
        groups = [g for g in range(len(bounds) - 1) if bounds[g] < stop and bounds[g + 1] > start]
        if not groups:
            return
        row = int(bounds[groups[0]])
        it = self._guard(self.file.iter_batches, batch_size=batch_size, columns=columns, row_groups=groups)
        while row < stop:
            rb = self._guard(next, it, None)
            if rb is None:
                return
            lo, hi = max(start - row, 0), min(stop - row, rb.num_rows)
            if hi > lo:
                yield rb.slice(lo, hi - lo)
            row += rb.num_rows

    def iter_batches(self, columns: list[str] | None = None, batch_size: int = 4096):
        it = self._guard(self.file.iter_batches, batch_size=batch_size, columns=columns)
        while True:
            batch = self._guard(next, it, None)
            if batch is None:
                return
            yield batch

    def read_row_group(self, g: int):
        return self._guard(self.file.read_row_group, g)

    def read_groups(self, groups: list[int], columns: list[str], fields: dict[str, set] | None = None):
        """The given row groups, of ``columns`` (those present); of a nested column named in ``fields``
        only the struct fields listed there (``{"seco:seasons": {"datetime"}}``)."""
        paths: list[str] = []
        leaves = [self.file.schema.column(i).path for i in range(len(self.file.schema))]
        for c in (c for c in columns if c in self.names):
            keep = (fields or {}).get(c)
            if keep is None:
                paths.append(c)
                continue
            mine = [p for p in leaves if p.startswith(c + ".")]
            picked = [p for p in mine if _leaf_field(p) in keep]
            paths += picked or [c]
        return self._guard(self.file.read_row_groups, groups, columns=paths)


def _leaf_field(path: str) -> str | None:
    """The struct field of a parquet leaf path under a list (``a.list.element.b`` -> ``b``)."""
    parts = [p for p in path.split(".")[1:] if p not in ("list", "element", "item")]
    return parts[0] if parts else None


#: per-season fields :func:`season_table` gives: name -> (per-patch column, compact ``seco:seasons`` field)
SEASON_FIELDS = {
    "season": ("seco:season", "season"),
    "datetime": ("datetime", "datetime"),
    "scene_cloud": ("eo:cloud_cover", "eo:cloud_cover"),
    "cloud_fraction": ("seco:cloud_fraction", "cloud_fraction"),
    "valid_fraction": ("seco:valid_fraction", "valid_fraction"),
    "scene_id": ("seco:scene_id", "scene_id"),
    "platform": ("platform", "platform"),
    "window": ("seco:window", "window"),
}


def season_table(index: "IndexFile", fields: list[str], location_columns: list[str] = ()):
    """One row per location x season, whatever the layout: the ``fields`` of :data:`SEASON_FIELDS`
    (``datetime`` as a UTC timestamp) plus ``location``, ``row`` (the index row it comes from) and
    the given location-level columns (``seco:point``, ``seco:origin``, ``id`` ...). Reads only the
    columns it needs."""
    import pyarrow as pa
    import pyarrow.compute as pc

    compact = "seco:seasons" in index.names
    loc_cols = [c for c in ["seco:location", *location_columns] if c in index.names]
    if compact:
        t = index.read(loc_cols + ["seco:seasons"])
        lists = t.column("seco:seasons").combine_chunks()
        flat = pc.list_flatten(lists)
        parents = pc.list_parent_indices(lists)
        names = {f.name for f in flat.type} if pa.types.is_struct(flat.type) else set()
        out = {"row": parents}
        for f in fields:
            key = SEASON_FIELDS[f][1]
            out[f] = pc.struct_field(flat, key) if key in names else pa.nulls(len(flat))
        for c in loc_cols:
            out[c] = t.column(c).combine_chunks().take(parents)
    else:
        want = [SEASON_FIELDS[f][0] for f in fields]
        t = index.read(loc_cols + [c for c in want if c not in loc_cols])
        out = {"row": pa.array(range(t.num_rows), pa.int64())}
        for f, c in zip(fields, want):
            out[f] = t.column(c).combine_chunks() if c in t.column_names else pa.nulls(t.num_rows)
        for c in loc_cols:
            out[c] = t.column(c).combine_chunks()
    if "datetime" in out:
        d = out["datetime"]
        if pa.types.is_string(d.type) or pa.types.is_large_string(d.type):
            d = pc.strptime(pc.replace_substring(d, "Z", ""), format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True)
            d = pc.assume_timezone(d, "UTC")
        elif pa.types.is_null(d.type):
            d = pa.nulls(len(d), pa.timestamp("s", tz="UTC"))
        out["datetime"] = d
    out["location"] = out.pop("seco:location")
    return pa.table(out)


_TIMES = ("datetime", "start_datetime", "end_datetime", "created", "updated")


class _InMemory:
    """A table as :func:`season_table` reads an index (``names``, ``read``)."""

    def __init__(self, table):
        self.table, self.names = table, table.column_names

    def read(self, columns):
        return self.table.select([c for c in columns if c in self.names])


def iter_season_tables(index: "IndexFile", fields: list[str], location_columns: list[str] = ()):
    """:func:`season_table` one row group at a time, reading of ``seco:seasons`` only the fields
    asked for: memory bounded by a row group at any catalog size."""
    keys = {SEASON_FIELDS[f][1] for f in fields}
    per_patch = [SEASON_FIELDS[f][0] for f in fields]
    columns = ["seco:location", *location_columns, *(["seco:seasons"] if "seco:seasons" in index.names else per_patch)]
    for g in range(len(index.row_group_sizes())):
        t = index.read_groups([g], columns, fields={"seco:seasons": keys})
        yield season_table(_InMemory(t), fields, location_columns)


def items_of(table) -> Iterator[dict]:
    """Item dicts (as stored: hrefs relative to the catalog root) of rows of the index.

    A property some items lack is a column holding nulls for them; it is left out again here
    (``datetime`` excepted: STAC requires it, null when start/end_datetime are given), as is a
    season field some seasons lack, and times are whole seconds again where they were, so an item
    reads back as it was written."""
    from stac_geoparquet.arrow import stac_table_to_items

    for item in stac_table_to_items(table):
        props = item.get("properties")
        if props:
            props = {k: v for k, v in props.items() if v is not None or k == "datetime"}
            for k in _TIMES:
                v = props.get(k)
                if isinstance(v, str) and v.endswith(".000000Z"):  # whole seconds, as written
                    props[k] = v[:-8] + "Z"
            if props.get("seco:seasons"):
                props["seco:seasons"] = [{k: v for k, v in s.items() if v is not None} for s in props["seco:seasons"]]
            item["properties"] = props
        yield item


# -- writing ----------------------------------------------------------------------------------------


#: the link of an index row to its item JSON file (per-patch layout). Not ``self``: a relative self
#: link is the base pystac resolves the row's other hrefs against, and those are relative to the catalog
#: root (the folder of items.parquet, the document holding them): stac-geoparquet + pystac resolved
#: every asset to a doubled path (``0000/0000001/0000/0000001/x.tif``).
ITEM_JSON_LINK = {"rel": "alternate", "type": GEOJSON, "title": "item JSON"}


def item_json_href(item: dict) -> str | None:
    """The root-relative href of an index row's item JSON file (None: compact layout). Indexes written
    before the ``alternate`` link carried it as a relative ``self`` link."""
    for link in item.get("links") or []:
        if link and (link.get("rel") == "self" or (
                link.get("rel") == "alternate" and link.get("title") == ITEM_JSON_LINK["title"])):
            return link.get("href")
    return None


def rebase(item: dict, folder: str, *, self_link: bool = True) -> dict:
    """The item as seen from the catalog root: hrefs relative to ``OUT`` instead of the folder of its
    files ``OUT/<folder>``, plus an ``alternate`` link (:data:`ITEM_JSON_LINK`) to its JSON file where it
    has one, and no ``self`` link. This is the form stored in ``items.parquet``: its relative hrefs
    resolve against the file's own location, as STAC resolves any relative href."""
    def up(href: str) -> str:
        if "://" in href or href.startswith("/"):
            return href
        return posixpath.normpath(posixpath.join(folder, href))

    out = dict(item)
    out["assets"] = {k: {**a, "href": "./" + up(a["href"])} for k, a in item["assets"].items()}
    links = [{**link, "href": "./" + up(link["href"])} for link in item["links"] if link["rel"] != "self"]
    own = [{**ITEM_JSON_LINK, "href": f"./{folder}/{item['id']}.json"}] if self_link else []
    out["links"] = own + links
    return out


def write_index(items: Iterable[dict], path: str | Path, chunk: int = 5000) -> int:
    """Stream items (in their :func:`rebase` form) into a stac-geoparquet file, atomically; return
    how many were written. An empty stream removes the file.

    Items are converted to Arrow a chunk at a time, so memory stays bounded at any catalog size.
    Chunks need not have the same schema: a property or a season field only some items have (a
    scene without metadata, a location whose seasons come from two platforms) is null where absent.
    A chunk lacking a column the file has is filled with nulls; a chunk bringing a new one widens
    the file's schema (the rows written so far are rewritten, a row group at a time: rare). The
    ``thumbnail`` asset, which catalogs made before thumbnails (or whose quicklook failed) lack, is
    always in the schema: each chunk is converted with a probe item that has one, then dropped.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from stac_geoparquet.arrow._to_parquet import DEFAULT_PARQUET_SCHEMA_VERSION, create_parquet_metadata

    path = Path(path)
    count = 0

    def batches():
        nonlocal count
        it = iter(items)
        while group := list(itertools.islice(it, chunk)):
            count += len(group)
            probe = {**group[-1], "assets": {**group[-1]["assets"], THUMBNAIL: _PROBE_THUMBNAIL}}
            batch = _to_arrow(group + [probe])
            yield pa.Table.from_batches([batch.slice(0, len(group))])

    def file_schema(schema: pa.Schema) -> pa.Schema:
        meta = create_parquet_metadata(schema, schema_version=DEFAULT_PARQUET_SCHEMA_VERSION)
        return schema.remove_metadata().with_metadata(meta)

    stream = batches()
    first = next(stream, None)
    if first is None:
        path.unlink(missing_ok=True)
        return 0
    schema = file_schema(first.schema)
    with atomic_path(path) as tmp:
        writer = pq.ParquetWriter(tmp, schema, compression="zstd")
        try:
            for table in itertools.chain([first], stream):
                if not table.schema.equals(schema, check_metadata=False):
                    wider = pa.unify_schemas([schema.remove_metadata(), table.schema.remove_metadata()],
                                             promote_options="permissive")
                    if not wider.equals(schema, check_metadata=False):
                        writer.close()
                        schema = file_schema(wider)
                        writer = _rewrite(tmp, schema)
                    table = _conform(table, schema)
                writer.write_table(table)
        finally:
            writer.close()
    return count


def _to_arrow(items: list[dict]):
    """stac-geoparquet's Arrow record batch of ``items``, as ``parse_stac_items_to_arrow`` makes it,
    without its deep copy of every item (70 % of its time on our items; we own these dicts and only
    swap their geometry for WKB, in shallow copies) and with the geometries encoded in one call."""
    import pyarrow as pa
    import shapely

    try:
        from stac_geoparquet.arrow._batch import StacJsonBatch
    except ImportError:  # another stac-geoparquet layout: its public API
        from stac_geoparquet.arrow import parse_stac_items_to_arrow

        return parse_stac_items_to_arrow(items, chunk_size=len(items), schema="FirstBatch").read_next_batch()
    if all(i["geometry"]["type"] == "Polygon" and len(i["geometry"]["coordinates"]) == 1
           and len(i["geometry"]["coordinates"][0]) == len(items[0]["geometry"]["coordinates"][0]) for i in items):
        rings = np.array([i["geometry"]["coordinates"][0] for i in items], dtype=np.float64)
        wkb = shapely.to_wkb(shapely.polygons(rings), flavor="iso")
    else:
        wkb = [shapely.to_wkb(shapely.geometry.shape(i["geometry"]), flavor="iso") for i in items]
    rows = [{**item, "geometry": g} for item, g in zip(items, wkb)]
    return StacJsonBatch(pa.RecordBatch.from_struct_array(pa.array(rows))).to_arrow_batch(True).inner


def concat_indexes(parts: list[Path], out: Path) -> None:
    """Stream the row groups of index files (parts of a catalog's index, in order) into one, atomically;
    an empty list removes ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not parts:
        out.unlink(missing_ok=True)
        return
    files = [pq.ParquetFile(p) for p in parts]
    schemas = [f.schema_arrow for f in files]
    schema = pa.unify_schemas(schemas, promote_options="permissive").with_metadata(schemas[0].metadata)
    with atomic_path(out) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for f in files:
                for g in range(f.num_row_groups):
                    t = f.read_row_group(g)
                    if not t.schema.equals(schema, check_metadata=False):
                        t = _conform(t, schema)  # parts whose items differ: rare
                    writer.write_table(t)


def _conform(table, schema):
    """``table`` with ``schema`` (a superset of its columns and struct fields): nulls where it has none.
    Through Python: Arrow's cast cannot add fields to structs nested in lists."""
    import pyarrow as pa

    return pa.Table.from_pylist(table.to_pylist(), schema=schema)


def _rewrite(path: Path, schema):
    """A writer of ``schema`` on ``path`` that already holds, conformed, the rows ``path`` held."""
    import pyarrow.parquet as pq

    old = path.with_name(path.name + ".narrow")
    path.replace(old)
    writer = pq.ParquetWriter(path, schema, compression="zstd")
    f = pq.ParquetFile(old)
    for g in range(f.num_row_groups):
        writer.write_table(_conform(f.read_row_group(g), schema))
    f.close()
    old.unlink()
    return writer


_PROBE_THUMBNAIL = thumbnail_asset("./probe_thumb.png", "0" * 64, 0)
