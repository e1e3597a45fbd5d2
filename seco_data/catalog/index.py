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
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..bands import DN_SCALE, default_scale
from ..errors import CatalogError
from ..outputs import atomic_path
from .item import thumbnail_asset
from .layout import COLLECTION, GEOJSON, INDEX, THUMBNAIL

REBUILD_HINT = "rebuild it with `seco-data catalog rebuild`"

_COLUMNS = [
    "id", "datetime", "platform", "eo:cloud_cover", "seco:location", "seco:season", "seco:scene_id",
    "seco:cloud_fraction", "seco:valid_fraction", "seco:point", "assets",
]


@dataclass(frozen=True)
class Asset:
    """One GeoTIFF of an item: the bands of one resolution group."""

    key: str  # e.g. data_10m
    path: Path  # absolute
    resolution: int  # metres
    bands: tuple[str, ...]
    dtype: str
    shape: tuple[int, int]
    crs: str  # proj:code, e.g. EPSG:32633
    transform: tuple[float, ...]  # proj:transform (6 numbers)
    sha256: str | None
    size: int | None
    scale: float = DN_SCALE  # raster:scale: reflectance = DN * scale (bands.default_scale when files do not say)

    def read(self) -> np.ndarray:
        """Pixels (bands, H, W) in the file's own dtype."""
        return read_geotiff(self.path)


@dataclass(frozen=True)
class Patch:
    """One item: one location observed in one season."""

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
    assets: tuple[Asset, ...]  # by increasing resolution (10 m first)


@dataclass(frozen=True)
class Location:
    location: int
    patches: tuple[Patch, ...]  # by season

    @property
    def point(self) -> tuple[float, float]:
        return self.patches[0].point


def read_geotiff(path: Path) -> np.ndarray:
    import rasterio

    try:
        with rasterio.open(path) as src:
            return src.read()
    except rasterio.errors.RasterioIOError as e:
        raise CatalogError(f"cannot read {path}: {e}", hint="check the catalog with `seco-data verify`") from None


def _checksum(value: str | None) -> str | None:
    """sha256 hex digest from a ``file:checksum`` multihash (``1220`` + hex)."""
    if value and value.startswith("1220") and len(value) == 68:
        return value[4:]
    return None


def _asset(root: Path, key: str, a: dict) -> Asset:
    res = a.get("gsd") or a.get("raster:spatial_resolution")
    # string joins: Path.resolve() costs syscalls per asset, a lot at millions of assets
    path = Path(os.path.normpath(os.path.join(root, a["href"])))
    dtype = a.get("data_type") or "uint16"
    scale = a.get("raster:scale")
    return Asset(
        key=key,
        path=path,
        resolution=int(round(res)) if res else 0,
        bands=tuple(b["name"] for b in a.get("bands") or []),
        dtype=dtype,
        shape=tuple(a.get("proj:shape") or ()),
        crs=a.get("proj:code") or "",
        transform=tuple(a.get("proj:transform") or ()),
        sha256=_checksum(a.get("file:checksum")),
        size=a.get("file:size"),
        scale=float(scale) if scale else default_scale(dtype),
    )


class CatalogIndex:
    """The items of the catalog in ``root``, from its ``items.parquet``."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        coll = self.root / COLLECTION
        self.parquet = self.root / INDEX
        if not coll.is_file() or not self.parquet.is_file():
            raise CatalogError(
                f"{self.root} is not a seco catalog (no {COLLECTION} or {INDEX})",
                hint="point at the --out folder of `seco-data sample` or `seco-data import`;"
                " `seco-data catalog rebuild` restores a missing index",
            )
        try:
            self.collection = json.loads(coll.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise CatalogError(f"cannot read {coll}: {e}") from None
        self.index = IndexFile(self.parquet)

    @property
    def name(self) -> str:
        return self.collection.get("id", self.root.name)

    @property
    def n_items(self) -> int:
        return self.index.num_rows

    @property
    def n_locations(self) -> int:
        """Number of distinct locations (reads one column)."""
        import pyarrow.compute as pc

        return len(pc.unique(self.index.read(["seco:location"]).column(0)))

    def patches(self, batch: int = 4096) -> Iterator[Patch]:
        """Every item, in catalog order (location, then season)."""
        self.index.require(_COLUMNS)
        try:
            for rb in self.index.iter_batches(_COLUMNS, batch):
                cols = {c: rb.column(c).to_pylist() for c in _COLUMNS}
                for i in range(rb.num_rows):
                    assets = cols["assets"][i] or {}
                    built = [_asset(self.root, k, a) for k, a in assets.items() if a is not None]
                    built.sort(key=lambda a: (a.resolution, a.key))
                    t = cols["datetime"][i]
                    yield Patch(
                        item_id=cols["id"][i],
                        location=int(cols["seco:location"][i]),
                        season=int(cols["seco:season"][i]),
                        datetime=t.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(t, "strftime") else str(t),
                        platform=cols["platform"][i] or "",
                        scene_id=cols["seco:scene_id"][i] or "",
                        scene_cloud=float(cols["eo:cloud_cover"][i] or 0.0),
                        cloud_fraction=float(cols["seco:cloud_fraction"][i] or 0.0),
                        valid_fraction=float(cols["seco:valid_fraction"][i] or 0.0),
                        point=tuple(cols["seco:point"][i] or (0.0, 0.0)),
                        assets=tuple(built),
                    )
        except OSError as e:
            raise CatalogError(f"cannot read {self.parquet}: {e}", hint=REBUILD_HINT) from None

    def locations(self) -> Iterator[Location]:
        """Items grouped by location (the index is ordered by location)."""
        current: list[Patch] = []
        seen: set[int] = set()
        for p in self.patches():
            if current and p.location != current[0].location:
                yield Location(current[0].location, tuple(sorted(current, key=lambda q: q.season)))
                current = []
            if not current:
                if p.location in seen:
                    raise CatalogError(f"{self.parquet} is not ordered by location (location {p.location} recurs)",
                                       hint=REBUILD_HINT)
                seen.add(p.location)
            current.append(p)
        if current:
            yield Location(current[0].location, tuple(sorted(current, key=lambda q: q.season)))


# -- the file ---------------------------------------------------------------------------------------


class IndexFile:
    """An opened ``items.parquet``: schema, row count, columns, batches and row groups on demand.

    Every read error is a :class:`CatalogError` naming the file, with the hint to rebuild it.
    """

    def __init__(self, path: str | Path):
        import pyarrow.parquet as pq

        self.path = Path(path)
        try:
            st = self.path.stat()
            self.stamp = (st.st_mtime_ns, st.st_size)
            self.file = pq.ParquetFile(self.path)
        except FileNotFoundError:
            raise CatalogError(f"no {self.path.name} in {self.path.parent}",
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

    def iter_batches(self, columns: list[str] | None = None, batch_size: int = 4096):
        it = self._guard(self.file.iter_batches, batch_size=batch_size, columns=columns)
        while True:
            batch = self._guard(next, it, None)
            if batch is None:
                return
            yield batch

    def read_row_group(self, g: int):
        return self._guard(self.file.read_row_group, g)


def items_of(table) -> Iterator[dict]:
    """Item dicts (as stored: hrefs relative to the catalog root) of rows of the index."""
    from stac_geoparquet.arrow import stac_table_to_items

    yield from stac_table_to_items(table)


# -- writing ----------------------------------------------------------------------------------------


def rebase(item: dict, folder: str) -> dict:
    """The item as seen from the catalog root: hrefs relative to ``OUT`` instead of the item's own
    folder ``OUT/<folder>``, plus a ``self`` link. This is the form stored in ``items.parquet``."""
    def up(href: str) -> str:
        if "://" in href or href.startswith("/"):
            return href
        return posixpath.normpath(posixpath.join(folder, href))

    out = dict(item)
    out["assets"] = {k: {**a, "href": "./" + up(a["href"])} for k, a in item["assets"].items()}
    links = [{**link, "href": "./" + up(link["href"])} for link in item["links"] if link["rel"] != "self"]
    out["links"] = [{"rel": "self", "href": f"./{folder}/{item['id']}.json", "type": GEOJSON}] + links
    return out


def write_index(items: Iterable[dict], path: str | Path, chunk: int = 5000) -> int:
    """Stream items (in their :func:`rebase` form) into a stac-geoparquet file, atomically; return
    how many were written. An empty stream removes the file.

    Our items are homogeneous, so the Arrow schema inferred from the first chunk holds for all of
    them and the rest streams through in chunks: memory stays bounded at any catalog size. The one
    exception is the ``thumbnail`` asset, which items of catalogs made before thumbnails (or whose
    thumbnail failed) lack: each chunk is converted together with a probe item that has one, and
    the probe is dropped, so every chunk has the same schema; items without a thumbnail hold a null
    there, which stac-geoparquet reads back as no asset and :class:`CatalogIndex` skips.
    """
    import pyarrow as pa
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    path = Path(path)
    count = 0

    def batches():
        nonlocal count
        it = iter(items)
        while group := list(itertools.islice(it, chunk)):
            count += len(group)
            probe = {**group[-1], "assets": {**group[-1]["assets"], THUMBNAIL: _PROBE_THUMBNAIL}}
            # one batch of group + probe ("FirstBatch": "FullFile" logs with a format bug at DEBUG level)
            batch = parse_stac_items_to_arrow(group + [probe], chunk_size=len(group) + 1,
                                              schema="FirstBatch").read_next_batch()
            yield batch.slice(0, len(group))

    stream = batches()
    first = next(stream, None)
    if first is None:
        path.unlink(missing_ok=True)
        return 0
    with atomic_path(path) as tmp:
        to_parquet(pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], stream)), tmp,
                   compression="zstd")
    return count


_PROBE_THUMBNAIL = thumbnail_asset("./probe_thumb.png", "0" * 64, 0)
