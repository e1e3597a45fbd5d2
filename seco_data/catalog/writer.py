"""The STAC catalog of a collection run, written incrementally and in linear time.

Layout (self-contained, relative links)::

    OUT/catalog.json                         root Catalog (what pystac-client and STAC Browser open)
    OUT/collection.json                      the Collection: extent, summaries, recipe, stats
    OUT/items.parquet                        stac-geoparquet index of every item
    OUT/<shard:04d>/catalog.json             sub-catalog of at most 10,000 items
    OUT/<shard:04d>/<loc:07d>/<item>.json    one Item per patch (location x season)
    OUT/<shard:04d>/<loc:07d>/<item>_10m.tif one GeoTIFF per resolution group
    OUT/<shard:04d>/<loc:07d>/<item>_thumb.png true-colour quicklook (asset ``thumbnail``)

Items are plain JSON written as each location completes (pystac's ``normalize_hrefs`` + ``save`` is
quadratic in items per parent); sub-catalogs, the collection and the parquet index are rebuilt from
the ledger at the end of a run with one pass over it. Items follow STAC 1.1 with the eo 2.0,
projection 2.0, raster 2.0 and file 2.1 extensions; seco's own fields use the ``seco:`` prefix.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import posixpath
from pathlib import Path
from typing import Iterable, Iterator

from .. import __version__
from ..bands import BANDS
from ..errors import CatalogError
from ..geotiff import write_atomic
from ..sample.ledger import Ledger, PatchRow

STAC_VERSION = "1.1.0"
EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
]
ITEMS_PER_CATALOG = 10_000
GEOTIFF = "image/tiff; application=geotiff"


def locations_per_shard(seasons: int) -> int:
    return max(1, ITEMS_PER_CATALOG // seasons)


def shard_dir(location: int, seasons: int) -> str:
    return f"{location // locations_per_shard(seasons):04d}"


def location_dir(location: int, seasons: int) -> str:
    return f"{shard_dir(location, seasons)}/{location:07d}"


def item_id(name: str, location: int, season: int) -> str:
    return f"{name}-{location:07d}-s{season}"


def asset_name(item: str, resolution: int) -> str:
    return f"{item}_{resolution}m.tif"


#: key, file name suffix and ledger role of the true-colour quicklook (see :mod:`seco_data.catalog.thumbnails`)
THUMBNAIL = "thumbnail"


def thumbnail_name(item: str) -> str:
    return f"{item}_thumb.png"


def thumbnail_asset(href: str, sha256: str, size: int) -> dict:
    """The STAC asset of an item's PNG quicklook (``href`` relative to the item, like its data assets)."""
    return {
        "href": href,
        "type": "image/png",
        "title": "True-colour quicklook (B04, B03, B02)",
        "roles": [THUMBNAIL],
        "file:checksum": "1220" + sha256,
        "file:size": size,
    }


def dump_json(path: Path, obj: dict) -> None:
    write_atomic(path, (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode())


def _iso(t: str | dt.datetime) -> str:
    if isinstance(t, str):
        t = dt.datetime.fromisoformat(t)
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_item(row: PatchRow, *, collection: str, source: dict, scale: float) -> dict:
    """The STAC Item of one patch, as a dict (deterministic: same row, same JSON)."""
    ring = row.grid.footprint_lonlat()
    lons = [p[0] for p in ring]
    lats = [p[1] for p in ring]
    left, bottom, right, top = row.grid.bounds
    assets = {}
    for a in row.assets:
        if a.get("role") == THUMBNAIL:  # ledger entry {role, href, sha256, size}: not a raster
            assets[THUMBNAIL] = thumbnail_asset("./" + a["href"], a["sha256"], a["size"])
            continue
        res = a["resolution"]
        h, w = row.grid.shape(res)
        assets[f"data_{res}m"] = {
            "href": "./" + a["href"],
            "type": GEOTIFF,
            "title": f"{res} m bands: {' '.join(a['bands'])}",
            "roles": ["data"],
            "gsd": float(res),
            "data_type": "uint16",
            "nodata": 0,
            "proj:code": f"EPSG:{row.grid.epsg}",
            "proj:shape": [h, w],
            "proj:transform": [float(res), 0.0, float(left), 0.0, -float(res), float(top)],
            "proj:bbox": [float(left), float(bottom), float(right), float(top)],
            "raster:scale": scale,
            "raster:offset": 0.0,
            "raster:spatial_resolution": float(res),
            "file:checksum": "1220" + a["sha256"],
            "file:size": a["size"],
            "bands": [
                {
                    "name": b,
                    "description": BANDS[b].description,
                    "eo:common_name": BANDS[b].common_name,
                    "eo:center_wavelength": BANDS[b].center_wavelength,
                    "eo:full_width_half_max": BANDS[b].full_width_half_max,
                }
                for b in a["bands"]
            ],
        }
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": EXTENSIONS,
        "id": row.item_id,
        "geometry": {"type": "Polygon", "coordinates": [[[round(x, 7), round(y, 7)] for x, y in ring]]},
        "bbox": [round(min(lons), 7), round(min(lats), 7), round(max(lons), 7), round(max(lats), 7)],
        "properties": {
            "datetime": _iso(row.datetime),
            "platform": row.platform,
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": round(row.scene_cloud, 3),
            "proj:code": f"EPSG:{row.grid.epsg}",
            "seco:location": row.location,
            "seco:season": row.season,
            "seco:scene_id": row.scene_id,
            "seco:cloud_fraction": round(row.cloud_fraction, 6),
            "seco:valid_fraction": round(row.valid_fraction, 6),
            "seco:window": [_iso(row.window_start), _iso(row.window_end)],
            "seco:point": [round(row.lon, 7), round(row.lat, 7)],
            "seco:origin": row.origin,
            "seco:source": source["name"],
            "seco:product": source["product"],
            "seco:synthetic": bool(source["synthetic"]),
        },
        "links": [
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
            {"rel": "collection", "href": "../../collection.json", "type": "application/json"},
        ],
        "assets": assets,
        "collection": collection,
    }


class CatalogWriter:
    """Writes items as locations complete and the catalog tree at the end."""

    def __init__(self, root: Path, *, name: str, seasons: int, source: dict, scale: float):
        self.root = Path(root)
        self.name = name
        self.seasons = seasons
        self.source = source
        self.scale = scale

    def write_items(self, rows: Iterable[PatchRow]) -> None:
        made = set()
        for row in rows:
            d = self.root / location_dir(row.location, self.seasons)
            if d not in made:
                d.mkdir(parents=True, exist_ok=True)
                made.add(d)
            dump_json(d / f"{row.item_id}.json", self.item(row))

    def item(self, row: PatchRow) -> dict:
        return build_item(row, collection=self.name, source=self.source, scale=self.scale)

    def finalize(self, ledger: Ledger, *, recipe: dict, stats: dict, providers: list[dict], license: str) -> dict:
        """Write sub-catalogs, the collection, the root catalog and ``items.parquet``; return the collection."""
        items = (self.item(row) for row in ledger.patches())
        return self.finalize_items(items, recipe=recipe, stats=stats, providers=providers, license=license)

    def finalize_items(self, items: Iterable[dict], *, recipe: dict, stats: dict, providers: list[dict],
                       license: str) -> dict:
        """As :meth:`finalize`, from item dicts (whose JSON files are already written), ordered by
        ``seco:location`` then ``seco:season``."""
        shards: dict[str, list[str]] = {}
        agg = _Aggregate()
        items_iter = self._iter_items(items, shards, agg)
        write_parquet(items_iter, self.root / "items.parquet")
        for shard, hrefs in sorted(shards.items()):
            dump_json(self.root / shard / "catalog.json", self._subcatalog(shard, hrefs))
        collection = self._collection(agg, sorted(shards), recipe, stats, providers, license)
        dump_json(self.root / "collection.json", collection)
        dump_json(self.root / "catalog.json", self._root_catalog())
        return collection

    def _iter_items(self, items: Iterable[dict], shards: dict, agg: "_Aggregate") -> Iterator[dict]:
        for item in items:
            agg.add(item)
            location = item["properties"]["seco:location"]
            shard = shard_dir(location, self.seasons)
            shards.setdefault(shard, []).append(f"./{location:07d}/{item['id']}.json")
            yield rebase(item, location_dir(location, self.seasons))

    def _subcatalog(self, shard: str, hrefs: list[str]) -> dict:
        links = [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
        ]
        links += [{"rel": "item", "href": h, "type": "application/geo+json"} for h in hrefs]
        return {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": f"{self.name}-{shard}",
            "title": f"{self.name} items, part {shard}",
            "description": f"Items of locations {int(shard) * locations_per_shard(self.seasons)} to "
            f"{(int(shard) + 1) * locations_per_shard(self.seasons) - 1} of {self.name}.",
            "links": links,
        }

    def _root_catalog(self) -> dict:
        return {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": f"{self.name}-catalog",
            "title": f"{self.name} (seco)",
            "description": f"Root of the {self.name} seasonal Sentinel-2 dataset collected with seco.",
            "links": [
                {"rel": "root", "href": "./catalog.json", "type": "application/json"},
                {"rel": "child", "href": "./collection.json", "type": "application/json", "title": self.name},
            ],
        }

    def _collection(self, agg, shards, recipe, stats, providers, license) -> dict:
        links = [
            {"rel": "root", "href": "./catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "./catalog.json", "type": "application/json"},
        ]
        links += [{"rel": "child", "href": f"./{s}/catalog.json", "type": "application/json"} for s in shards]
        if license == "other":
            links.append({
                "rel": "license",
                "href": "https://sentinels.copernicus.eu/documents/247904/690755/Sentinel_Data_Legal_Notice",
                "title": "Legal notice on the use of Copernicus Sentinel Data and Service Information",
            })
        synthetic = bool(self.source["synthetic"])
        return {
            "type": "Collection",
            "stac_version": STAC_VERSION,
            "stac_extensions": [],
            "id": self.name,
            "title": f"{self.name}: seasonal Sentinel-2 {self.source['product']} patches"
            + (" (synthetic)" if synthetic else ""),
            "description": recipe.get("description") or f"Seasonal Sentinel-2 patches collected with seco ({self.name}).",
            "keywords": ["sentinel-2", "seasonal contrast", "self-supervised learning"]
            + (["synthetic"] if synthetic else []),
            "license": license,
            "providers": providers,
            "extent": {
                "spatial": {"bbox": [agg.bbox or [-180.0, -90.0, 180.0, 90.0]]},
                "temporal": {"interval": [[agg.start, agg.end]]},
            },
            "summaries": agg.summaries(),
            "links": links,
            "seco:recipe": recipe,
            "seco:seed": recipe.get("seed"),
            "seco:software": {"name": "seco", "version": __version__},
            "seco:source": self.source,
            "seco:stats": stats,
        }


class _Aggregate:
    """Extent and summaries accumulated in one pass over the items."""

    def __init__(self):
        self.count = 0
        self.bbox: list[float] | None = None
        self.start: str | None = None
        self.end: str | None = None
        self.platforms: set[str] = set()
        self.codes: set[str] = set()
        self.ranges: dict[str, list[float]] = {}

    def add(self, item: dict) -> None:
        self.count += 1
        b = item["bbox"]
        self.bbox = b[:] if self.bbox is None else [
            min(self.bbox[0], b[0]), min(self.bbox[1], b[1]), max(self.bbox[2], b[2]), max(self.bbox[3], b[3])
        ]
        p = item["properties"]
        t = p["datetime"]
        self.start = t if self.start is None or t < self.start else self.start
        self.end = t if self.end is None or t > self.end else self.end
        if p.get("platform") is not None:  # unknown values (None or absent, e.g. imported items) are skipped
            self.platforms.add(p["platform"])
        self.codes.add(p["proj:code"])
        for k in ("eo:cloud_cover", "seco:cloud_fraction", "seco:valid_fraction"):
            v = p.get(k)
            if v is None:
                continue
            r = self.ranges.setdefault(k, [v, v])
            r[0], r[1] = min(r[0], v), max(r[1], v)

    def summaries(self) -> dict:
        s = {
            **({"platform": sorted(self.platforms)} if self.platforms else {}),
            "constellation": ["sentinel-2"],
            "instruments": ["msi"],
            "proj:code": sorted(self.codes),
        }
        for k, (lo, hi) in sorted(self.ranges.items()):
            s[k] = {"minimum": lo, "maximum": hi}
        return s


def location_items(folder: Path) -> list[dict]:
    """The item JSONs of one location folder, by season, as ``items.parquet`` indexes them (unknown
    ``platform`` / ``eo:cloud_cover`` as nulls, so those columns always exist). For catalogs indexed
    from their files (imports, ``catalog thumbnails``) rather than from a ledger."""
    items = []
    for p in folder.glob("*.json"):
        try:
            items.append(json.loads(p.read_text("utf-8")))
        except (OSError, ValueError) as e:
            raise CatalogError(f"cannot read {p}: {e}", hint="restore or remove the item, then rerun") from None
    if not all(isinstance(i.get("properties"), dict) and "seco:season" in i["properties"] for i in items):
        raise CatalogError(f"an item in {folder} is not a seco item (no seco:season)",
                           hint="restore or remove the item, then rerun")
    items.sort(key=lambda i: i["properties"]["seco:season"])
    for item in items:
        item["properties"].setdefault("platform", None)
        item["properties"].setdefault("eo:cloud_cover", None)
    return items


def rebase(item: dict, folder: str) -> dict:
    """The item as seen from the catalog root: hrefs relative to ``OUT`` instead of the item's own
    folder ``OUT/<folder>``, plus a ``self`` link. This is the form stored in ``items.parquet``, so a
    row alone locates its item JSON and its files."""
    def up(href: str) -> str:
        if "://" in href or href.startswith("/"):
            return href
        return posixpath.normpath(posixpath.join(folder, href))

    out = dict(item)
    out["assets"] = {k: {**a, "href": "./" + up(a["href"])} for k, a in item["assets"].items()}
    links = [{**link, "href": "./" + up(link["href"])} for link in item["links"] if link["rel"] != "self"]
    out["links"] = [{"rel": "self", "href": f"./{folder}/{item['id']}.json", "type": "application/geo+json"}] + links
    return out


def write_parquet(items: Iterator[dict], path: Path, chunk: int = 5000) -> int:
    """Stream items into a stac-geoparquet file (atomically); return how many were written.

    Our items are homogeneous, so the Arrow schema inferred from the first chunk holds for all of
    them and the rest streams through in chunks: memory stays bounded at any catalog size. The one
    exception is the ``thumbnail`` asset, which items of catalogs made before thumbnails (or whose
    thumbnail failed) lack: each chunk is converted together with a probe item that has one, and
    the probe is dropped, so every chunk has the same schema; items without a thumbnail hold a null
    there, which stac-geoparquet reads back as no asset and :class:`seco_data.catalog.index.CatalogIndex`
    skips.
    """
    import itertools

    import pyarrow as pa
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

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

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        stream = batches()
        first = next(stream, None)
        if first is not None:
            to_parquet(pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], stream)), tmp,
                       compression="zstd")
            os.replace(tmp, path)
        elif path.exists():
            path.unlink()
    finally:
        if tmp.exists():
            tmp.unlink()
    return count


_PROBE_THUMBNAIL = thumbnail_asset("./probe_thumb.png", "0" * 64, 0)
