"""Writing the catalog tree, in linear time and bounded memory.

Item JSONs are written as each location completes (:func:`write_location_items`; pystac's
``normalize_hrefs`` + ``save`` is quadratic in items per parent). :func:`write_catalog` then writes,
in one pass over the items (ordered by location, then season): ``items.parquet``, one sub-catalog
per part as soon as the part is complete, the collection (extent and summaries accumulated on the
way) and the root catalog. Every file is written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .. import __version__
from ..outputs import write_json, write_many
from .index import INDEX, rebase, write_index
from .layout import (CATALOG, COLLECTION, GEOJSON, JSON, STAC_VERSION, item_file, location_dir, locations_per_part,
                     part_dir)


@dataclass(frozen=True)
class CollectionMeta:
    """What the collection says beyond its items: name, seasons, source, recipe, stats, providers, licence."""

    name: str
    seasons: int
    source: dict  # {name, product, synthetic, ...}
    recipe: dict
    stats: dict
    providers: list
    license: str


def item_files(items: Iterable[dict]) -> dict[str, bytes]:
    """File name -> bytes of item JSONs (compact, as every item file is written)."""
    return {item_file(item["id"]): (json.dumps(item, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
            for item in items}


def write_location_items(root: Path, location: int, seasons: int, items: Iterable[dict]) -> None:
    """Write the item JSONs of one location into its folder (created if needed), atomically."""
    folder = Path(root) / location_dir(location, seasons)
    folder.mkdir(parents=True, exist_ok=True)
    write_many(folder, item_files(items))


def write_catalog(root: str | Path, items: Iterable[dict], meta: CollectionMeta) -> dict:
    """Write ``items.parquet``, the sub-catalogs, the collection and the root catalog of ``root`` from
    ``items`` (item dicts as in their JSON files, ordered by location then season); return the collection."""
    root = Path(root)
    parts = _Parts(root, meta)
    agg = _Aggregate()

    def indexed() -> Iterator[dict]:
        for item in items:
            agg.add(item)
            location = item["properties"]["seco:location"]
            parts.add(location, item["id"])
            yield rebase(item, location_dir(location, meta.seasons))

    write_index(indexed(), root / INDEX)
    parts.close()
    collection = _collection(meta, agg, parts.written)
    write_json(root / COLLECTION, collection, indent=None)
    write_json(root / CATALOG, _root_catalog(meta.name), indent=None)
    return collection


class _Parts:
    """Sub-catalogs, each written as soon as the items of its part have all been seen."""

    def __init__(self, root: Path, meta: CollectionMeta):
        self.root, self.meta = root, meta
        self.current: str | None = None
        self.hrefs: list[str] = []
        self.written: list[str] = []

    def add(self, location: int, item: str) -> None:
        part = part_dir(location, self.meta.seasons)
        if part != self.current:
            self.close()
            self.current = part
        self.hrefs.append(f"./{location:07d}/{item_file(item)}")

    def close(self) -> None:
        if self.current is None:
            return
        part, per = self.current, locations_per_part(self.meta.seasons)
        links = [
            {"rel": "root", "href": f"../{CATALOG}", "type": JSON},
            {"rel": "parent", "href": f"../{COLLECTION}", "type": JSON},
        ]
        links += [{"rel": "item", "href": h, "type": GEOJSON} for h in self.hrefs]
        (self.root / part).mkdir(parents=True, exist_ok=True)
        write_json(self.root / part / CATALOG, {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": f"{self.meta.name}-{part}",
            "title": f"{self.meta.name} items, part {part}",
            "description": f"Items of locations {int(part) * per} to {(int(part) + 1) * per - 1} of {self.meta.name}.",
            "links": links,
        }, indent=None)
        self.written.append(part)
        self.current, self.hrefs = None, []


def _root_catalog(name: str) -> dict:
    return {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": f"{name}-catalog",
        "title": f"{name} (seco)",
        "description": f"Root of the {name} seasonal Sentinel-2 dataset collected with seco.",
        "links": [
            {"rel": "root", "href": f"./{CATALOG}", "type": JSON},
            {"rel": "child", "href": f"./{COLLECTION}", "type": JSON, "title": name},
        ],
    }


def _collection(meta: CollectionMeta, agg: "_Aggregate", parts: list[str]) -> dict:
    links = [
        {"rel": "root", "href": f"./{CATALOG}", "type": JSON},
        {"rel": "parent", "href": f"./{CATALOG}", "type": JSON},
    ]
    links += [{"rel": "child", "href": f"./{s}/{CATALOG}", "type": JSON} for s in parts]
    if meta.license == "other":
        links.append({
            "rel": "license",
            "href": "https://sentinels.copernicus.eu/documents/247904/690755/Sentinel_Data_Legal_Notice",
            "title": "Legal notice on the use of Copernicus Sentinel Data and Service Information",
        })
    synthetic = bool(meta.source.get("synthetic"))
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": meta.name,
        "title": f"{meta.name}: seasonal Sentinel-2 {meta.source.get('product')} patches"
        + (" (synthetic)" if synthetic else ""),
        "description": meta.recipe.get("description") or f"Seasonal Sentinel-2 patches collected with seco ({meta.name}).",
        "keywords": ["sentinel-2", "seasonal contrast", "self-supervised learning"] + (["synthetic"] if synthetic else []),
        "license": meta.license,
        "providers": meta.providers,
        "extent": {
            "spatial": {"bbox": [agg.bbox or [-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[agg.start, agg.end]]},
        },
        "summaries": agg.summaries(),
        "links": links,
        "seco:recipe": meta.recipe,
        "seco:seed": meta.recipe.get("seed"),
        "seco:software": {"name": "seco", "version": __version__},
        "seco:source": meta.source,
        "seco:stats": meta.stats,
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


__all__ = ["CollectionMeta", "write_catalog", "write_location_items", "__version__"]
