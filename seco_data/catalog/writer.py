"""The catalog's JSON documents: item files, sub-catalogs, the collection and the root catalog, and the
extent and summaries accumulated over items (:class:`Aggregate`, kept per part of the index so that
only what changed is read again). :mod:`.rebuild` decides what to write when."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

from .. import __version__
from .layout import (CATALOG, COLLECTION, GEOJSON, INDEX, JSON, PARQUET, STAC_VERSION, item_file,
                     locations_per_part)


@dataclass(frozen=True)
class CollectionMeta:
    """What the collection says beyond its items: name, seasons, layout, source, recipe, stats,
    providers, licence."""

    name: str
    seasons: int
    source: dict  # {name, product, synthetic, ...}
    recipe: dict
    stats: dict
    providers: list
    license: str
    layout: str = "per-patch"


def item_files(items: Iterable[dict]) -> dict[str, bytes]:
    """File name -> bytes of item JSONs (compact JSON, as every item file is written)."""
    return {item_file(item["id"]): (json.dumps(item, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
            for item in items}


def subcatalog(name: str, part: str, seasons: int, hrefs: list[str]) -> dict:
    """The sub-catalog of a per-patch part folder, linking its items (``hrefs`` relative to it)."""
    per = locations_per_part(seasons)
    links = [
        {"rel": "root", "href": f"../{CATALOG}", "type": JSON},
        {"rel": "parent", "href": f"../{COLLECTION}", "type": JSON},
    ]
    links += [{"rel": "item", "href": h, "type": GEOJSON} for h in hrefs]
    return {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": f"{name}-{part}",
        "title": f"{name} items, part {part}",
        "description": f"Items of locations {int(part) * per} to {(int(part) + 1) * per - 1} of {name}.",
        "links": links,
    }


def root_catalog(name: str) -> dict:
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


def collection(meta: CollectionMeta, agg: "Aggregate", parts: list[str]) -> dict:
    """The collection; ``parts``: the per-patch sub-catalog folders it links to (none when compact)."""
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
        "assets": {
            "items": {"href": f"./{INDEX}", "type": PARQUET, "roles": ["stac-items"],
                      "title": "Every item of the collection (stac-geoparquet)"},
        },
        "links": links,
        "seco:layout": meta.layout,
        "seco:recipe": meta.recipe,
        "seco:seed": meta.recipe.get("seed"),
        "seco:software": {"name": "seco", "version": __version__},
        "seco:source": meta.source,
        "seco:stats": meta.stats,
    }


class Aggregate:
    """Extent and summaries accumulated in one pass over items; parts merge; saved as a dict."""

    KEYS = ("eo:cloud_cover", "seco:cloud_fraction", "seco:valid_fraction")

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
        p = item["properties"]
        t0 = p.get("datetime") or p.get("start_datetime")
        t1 = p.get("datetime") or p.get("end_datetime")
        for s in p.get("seco:seasons") or ():
            if s.get("platform") is not None:
                self.platforms.add(s["platform"])
        self._merge(item["bbox"], t0, t1, {p["platform"]} if p.get("platform") is not None else set(),
                    {p["proj:code"]}, {k: [p[k], p[k]] for k in self.KEYS if p.get(k) is not None})

    def _merge(self, b, t0, t1, platforms, codes, ranges) -> None:
        if b is not None:
            self.bbox = list(b) if self.bbox is None else [
                min(self.bbox[0], b[0]), min(self.bbox[1], b[1]), max(self.bbox[2], b[2]), max(self.bbox[3], b[3])]
        if t0 is not None and (self.start is None or t0 < self.start):
            self.start = t0
        if t1 is not None and (self.end is None or t1 > self.end):
            self.end = t1
        self.platforms |= set(platforms)
        self.codes |= set(codes)
        for k, (lo, hi) in ranges.items():
            r = self.ranges.setdefault(k, [lo, hi])
            r[0], r[1] = min(r[0], lo), max(r[1], hi)

    def merge(self, other: "Aggregate") -> None:
        self.count += other.count
        self._merge(other.bbox, other.start, other.end, other.platforms, other.codes, other.ranges)

    def to_dict(self) -> dict:
        return {"count": self.count, "bbox": self.bbox, "start": self.start, "end": self.end,
                "platforms": sorted(self.platforms), "codes": sorted(self.codes), "ranges": self.ranges}

    @classmethod
    def from_dict(cls, d: dict) -> "Aggregate":
        a = cls()
        a.count = int(d.get("count", 0))
        a._merge(d.get("bbox"), d.get("start"), d.get("end"), d.get("platforms", ()), d.get("codes", ()),
                 {k: list(v) for k, v in (d.get("ranges") or {}).items()})
        return a

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
