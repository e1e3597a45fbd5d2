"""Rebuilding a catalog's index, sub-catalogs and collection: the one path every command takes.

Items come from the catalog's record: the ledger for a sampled catalog (:func:`ledger_items`), the
item JSON files for an imported one (:func:`file_items`); :func:`rebuild` picks, under the
catalog's lock, and hands them to :func:`seco_data.catalog.writer.write_catalog`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Iterator

from ..bands import DN_SCALE
from ..errors import CatalogError
from ..outputs import lock
from .item import ItemSpec, RasterFile, ThumbnailFile, build_item
from .layout import COLLECTION, LEDGER, THUMBNAIL, location_dir, location_dirs
from .writer import CollectionMeta, write_catalog

log = logging.getLogger(__name__)

SECO_PROVIDER = {"name": "seco", "roles": ["processor"],
                 "description": "Seasonal patches selected, cut and catalogued by seco-data sample."}


# -- sampled catalogs: the ledger --------------------------------------------------------------------


def item_spec(row, collection: str, source: dict, scale: float) -> ItemSpec:
    """The item of one ledger row (:class:`seco_data.sample.ledger.PatchRow`)."""
    grid = row.grid
    left, bottom, right, top = grid.bounds
    rasters, thumb = [], None
    for a in row.assets:
        if a.get("role") == THUMBNAIL:  # ledger entry {role, href, sha256, size}: not a raster
            thumb = ThumbnailFile(a["href"], a["sha256"], a["size"])
            continue
        res = a["resolution"]
        rasters.append(RasterFile(
            href=a["href"], resolution=res, bands=tuple(a["bands"]), sha256=a["sha256"], size=a["size"],
            crs=f"EPSG:{grid.epsg}", shape=grid.shape(res),
            transform=(float(res), 0.0, float(left), 0.0, -float(res), float(top)),
            bbox=(float(left), float(bottom), float(right), float(top)), scale=scale))
    return ItemSpec(
        collection=collection, item_id=row.item_id, location=row.location, season=row.season,
        datetime=row.datetime, ring=grid.footprint_lonlat(), crs=f"EPSG:{grid.epsg}", rasters=tuple(rasters),
        source=source, scene_id=row.scene_id, valid_fraction=row.valid_fraction, point=(row.lon, row.lat),
        thumbnail=thumb, platform=row.platform, scene_cloud=row.scene_cloud, cloud_fraction=row.cloud_fraction,
        window=(row.window_start, row.window_end), origin=row.origin or "")


def ledger_meta(ledger) -> tuple[CollectionMeta, float]:
    """The collection's metadata and the DN scale, from what the ledger recorded."""
    from ..recipe import recipe_from_dict

    recipe = recipe_from_dict(json.loads(ledger.get("recipe") or "{}"))
    source = json.loads(ledger.get("source") or "null") or {
        "describe": {"name": recipe.source, "product": recipe.product, "synthetic": recipe.source == "sim"},
        "providers": [], "license": "other", "scale": DN_SCALE,
    }
    counts = ledger.counts()
    stats = {
        "requested": recipe.n,
        "locations": counts["accepted"],
        "items": counts["patches"],
        "candidates": counts["candidates"],
        "rejections": counts["rejections"],
        "skipped_scenes": counts["skipped_scenes"],
        "source": counts["source"],
    }
    meta = CollectionMeta(name=recipe.name, seasons=recipe.seasons.count, source=source["describe"],
                          recipe=recipe.to_dict(), stats=stats, providers=source["providers"] + [SECO_PROVIDER],
                          license=source["license"])
    return meta, float(source["scale"])


def ledger_items(ledger, meta: CollectionMeta, scale: float) -> Iterator[dict]:
    """Every accepted patch of the ledger as an item, by location then season."""
    for row in ledger.patches():
        yield build_item(item_spec(row, meta.name, meta.source, scale))


def rebuild_from_ledger(root: str | Path, ledger=None) -> tuple[dict, dict]:
    """Rewrite the catalog of a sampled ``root`` from its ledger; return (collection, ledger counts)."""
    from ..sample.ledger import Ledger

    root = Path(root)
    own = ledger is None
    if own:
        ledger = Ledger(root / LEDGER, create=False)
    try:
        meta, scale = ledger_meta(ledger)
        collection = write_catalog(root, ledger_items(ledger, meta, scale), meta)
        return collection, ledger.counts()
    finally:
        if own:
            ledger.close()


# -- imported catalogs: the item files ---------------------------------------------------------------


def location_items(folder: Path) -> list[dict]:
    """The item JSONs of one location folder, by season, as ``items.parquet`` indexes them (unknown
    ``platform`` / ``eo:cloud_cover`` as nulls, so those columns always exist)."""
    items = []
    for p in folder.glob("*.json"):
        try:
            items.append(json.loads(p.read_text("utf-8")))
        except (OSError, ValueError) as e:
            raise CatalogError(f"cannot read {p}: {e}", hint="restore or remove the item, then rerun") from None
    if not all(isinstance(i, dict) and isinstance(i.get("properties"), dict) and "seco:season" in i["properties"]
               for i in items):
        raise CatalogError(f"an item in {folder} is not a seco item (no seco:season)",
                           hint="restore or remove the item, then rerun")
    items.sort(key=lambda i: i["properties"]["seco:season"])
    for item in items:
        item["properties"].setdefault("platform", None)
        item["properties"].setdefault("eo:cloud_cover", None)
    return items


def file_items(root: str | Path, locations: Iterable[int] | None = None, seasons: int | None = None) -> Iterator[dict]:
    """Items from the JSON files of ``root``, by location then season: of the given ``locations``
    (``seasons`` tells their folders), else of every location folder."""
    root = Path(root)
    if locations is None:
        folders: Iterable[Path] = location_dirs(root)
    else:
        folders = (root / location_dir(loc, seasons) for loc in locations)
    for folder in folders:
        yield from location_items(folder)


def collection_meta(root: str | Path) -> CollectionMeta:
    """The metadata recorded in the collection of ``root`` (for rebuilding an imported catalog)."""
    root = Path(root)
    try:
        coll = json.loads((root / COLLECTION).read_text("utf-8"))
        return CollectionMeta(name=coll["id"], seasons=int(coll["seco:recipe"]["seasons"]["count"]),
                              source=coll["seco:source"], recipe=coll["seco:recipe"], stats=coll["seco:stats"],
                              providers=coll["providers"], license=coll["license"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CatalogError(f"cannot read the seco collection of {root}: {e}",
                           hint="point at the --out folder of `seco-data sample` or `seco-data import`") from None


# -- either -----------------------------------------------------------------------------------------


def rebuild(root: str | Path, *, locked: bool = False) -> dict:
    """Rewrite ``items.parquet``, the sub-catalogs and the collection of ``root`` from its record (the
    ledger of a sampled catalog, else the item files), under the catalog's lock unless the caller
    holds it (``locked``); return the collection."""
    root = Path(root)
    if not (root / LEDGER).is_file() and not (root / COLLECTION).is_file():
        raise CatalogError(f"{root} is not a seco catalog (no {LEDGER} or {COLLECTION})",
                           hint="point at the --out folder of `seco-data sample` or `seco-data import`")
    if locked:
        return _rebuild(root)
    with lock(root, what="writing to"):
        return _rebuild(root)


def _rebuild(root: Path) -> dict:
    if (root / LEDGER).is_file():
        return rebuild_from_ledger(root)[0]
    meta = collection_meta(root)
    return write_catalog(root, file_items(root), meta)
