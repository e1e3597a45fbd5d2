"""Reading a catalog back: its items, grouped by location, and the pixels of their assets.

Every exporter and checker goes through here, so a catalog made by ``seco-data sample`` and one made
by ``seco-data import`` are read the same way. The index is ``items.parquet`` (rows ordered by
location then season, hrefs relative to the catalog root, see :func:`seco_data.catalog.writer.rebase`),
streamed in batches: memory stays bounded at any catalog size.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import CatalogError

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
    scale: float = 1e-4  # raster:scale: reflectance = DN * scale (default 1e-4 for uint16, 1/255 for uint8)

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
        scale=float(scale) if scale else (1 / 255 if dtype == "uint8" else 1e-4),
    )


class CatalogIndex:
    """The items of the catalog in ``root``, from its ``items.parquet``."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        coll = self.root / "collection.json"
        self.parquet = self.root / "items.parquet"
        if not coll.is_file() or not self.parquet.is_file():
            raise CatalogError(
                f"{self.root} is not a seco catalog (no collection.json or items.parquet)",
                hint="point at the --out folder of `seco-data sample` or `seco-data import`;"
                " `seco-data catalog rebuild` restores a missing index",
            )
        try:
            self.collection = json.loads(coll.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise CatalogError(f"cannot read {coll}: {e}") from None
        import pyarrow.parquet as pq

        try:
            self._file = pq.ParquetFile(self.parquet)
        except Exception as e:  # pyarrow raises several types for broken files
            raise CatalogError(f"cannot read {self.parquet}: {e}",
                               hint="rebuild it with `seco-data catalog rebuild`") from None

    @property
    def name(self) -> str:
        return self.collection.get("id", self.root.name)

    @property
    def n_items(self) -> int:
        return self._file.metadata.num_rows

    @property
    def n_locations(self) -> int:
        """Number of distinct locations (reads one column)."""
        import pyarrow.compute as pc

        return len(pc.unique(self._file.read(columns=["seco:location"]).column(0)))

    def patches(self, batch: int = 4096) -> Iterator[Patch]:
        """Every item, in catalog order (location, then season)."""
        names = set(self._file.schema_arrow.names)
        missing = [c for c in _COLUMNS if c not in names]
        if missing:
            raise CatalogError(f"{self.parquet} lacks the columns {', '.join(missing)}",
                               hint="rebuild it with `seco-data catalog rebuild`")
        try:
            for rb in self._file.iter_batches(batch_size=batch, columns=_COLUMNS):
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
            raise CatalogError(f"cannot read {self.parquet}: {e}",
                               hint="rebuild it with `seco-data catalog rebuild`") from None

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
                                       hint="rebuild it with `seco-data catalog rebuild`")
                seen.add(p.location)
            current.append(p)
        if current:
            yield Location(current[0].location, tuple(sorted(current, key=lambda q: q.season)))
