"""The catalog's layout: the only place that spells its file names, item ids and folders.

::

    OUT/catalog.json                         root Catalog (what pystac-client and STAC Browser open)
    OUT/collection.json                      the Collection: extent, summaries, recipe, stats
    OUT/items.parquet                        stac-geoparquet index of every item
    OUT/recipe.yaml                          the resolved recipe (sampled catalogs)
    OUT/ledger.sqlite                        the resume ledger (sampled catalogs)
    OUT/<part:04d>/catalog.json              sub-catalog of at most 10,000 items
    OUT/<part:04d>/<loc:07d>/<item>.json     one Item per patch (location x season)
    OUT/<part:04d>/<loc:07d>/<item>_10m.tif  one GeoTIFF per resolution group
    OUT/<part:04d>/<loc:07d>/<item>_thumb.png true-colour quicklook (asset ``thumbnail``)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

CATALOG = "catalog.json"
COLLECTION = "collection.json"
INDEX = "items.parquet"
RECIPE = "recipe.yaml"
LEDGER = "ledger.sqlite"

STAC_VERSION = "1.1.0"
EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
]
GEOTIFF = "image/tiff; application=geotiff"
PNG = "image/png"
JSON = "application/json"
GEOJSON = "application/geo+json"

#: items per sub-catalog (pystac's link handling is quadratic in links per parent)
ITEMS_PER_CATALOG = 10_000
#: key of the true-colour quicklook asset (and the role of its ledger entry)
THUMBNAIL = "thumbnail"


def locations_per_part(seasons: int) -> int:
    return max(1, ITEMS_PER_CATALOG // seasons)


def part_dir(location: int, seasons: int) -> str:
    """The sub-catalog folder of a location (``0000``)."""
    return f"{location // locations_per_part(seasons):04d}"


def location_dir(location: int, seasons: int) -> str:
    """A location's folder relative to the catalog root (``0000/0000042``)."""
    return f"{part_dir(location, seasons)}/{location:07d}"


def item_id(name: str, location: int, season: int) -> str:
    return f"{name}-{location:07d}-s{season}"


def item_file(item: str) -> str:
    return f"{item}.json"


def asset_name(item: str, resolution: int) -> str:
    return f"{item}_{resolution}m.tif"


def data_key(resolution: int) -> str:
    """The asset key of a resolution group's GeoTIFF (``data_10m``)."""
    return f"data_{resolution}m"


def thumbnail_name(item: str) -> str:
    return f"{item}_thumb.png"


def is_part_name(name: str) -> bool:
    return len(name) == 4 and name.isdigit()


def is_location_name(name: str) -> bool:
    return len(name) == 7 and name.isdigit()


def location_dirs(root: str | Path) -> Iterator[Path]:
    """Every ``<part>/<location>`` folder under ``root``, in location order."""
    root = Path(root)
    parts = sorted(e.name for e in os.scandir(root) if is_part_name(e.name) and e.is_dir())
    for part in parts:
        with os.scandir(root / part) as it:
            locs = sorted(e.name for e in it if is_location_name(e.name) and e.is_dir())
        for loc in locs:
            yield root / part / loc
