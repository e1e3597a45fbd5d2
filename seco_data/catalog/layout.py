"""The catalog's layout: the only place that spells its file names, item ids and folders.

Two layouts (recipe key ``layout``)::

    compact (default): 4 files per location, no folder of its own; one STAC item per location
    OUT/<part:04d>/<name>-<loc:07d>_10m.tif     every season's 10 m bands (season-major: s0 B02 B03 ..., s1 ...)
    OUT/<part:04d>/<name>-<loc:07d>_20m.tif     every season's 20 m bands
    OUT/<part:04d>/<name>-<loc:07d>_60m.tif     every season's 60 m bands
    OUT/<part:04d>/<name>-<loc:07d>_thumb.jpg   true-colour quicklooks of the seasons, side by side

    per-patch: one STAC item (a JSON file) per location x season, its GeoTIFFs and quicklook
    OUT/<part:04d>/catalog.json                 sub-catalog of at most 10,000 items
    OUT/<part:04d>/<loc:07d>/<item>.json        Item
    OUT/<part:04d>/<loc:07d>/<item>_10m.tif     one GeoTIFF per resolution group
    OUT/<part:04d>/<loc:07d>/<item>_thumb.jpg   quicklook (asset ``thumbnail``)

and, for both::

    OUT/catalog.json      root Catalog (what pystac-client and STAC Browser open)
    OUT/collection.json   the Collection: extent, summaries, recipe, stats; asset ``items``: items.parquet
    OUT/items.parquet     stac-geoparquet index of every item (the compact layout's catalog of record)
    OUT/recipe.yaml       the resolved recipe (sampled catalogs)
    OUT/ledger.sqlite     the record every catalog is rebuilt from (what was collected or imported)
    OUT/.seco/            state: index parts (finished parts of items.parquet), the output's identity
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
STATE = ".seco"

LAYOUTS = ("compact", "per-patch")

STAC_VERSION = "1.1.0"
EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
]
GEOTIFF = "image/tiff; application=geotiff"
PNG = "image/png"
JPEG = "image/jpeg"
JSON = "application/json"
GEOJSON = "application/geo+json"
PARQUET = "application/vnd.apache.parquet"

#: items per sub-catalog (pystac's link handling is quadratic in links per parent); a part folder
#: holds the files of this many items' worth of locations in both layouts
ITEMS_PER_CATALOG = 10_000
#: key of the true-colour quicklook asset (and the role of its record entry)
THUMBNAIL = "thumbnail"


def locations_per_part(seasons: int) -> int:
    return max(1, ITEMS_PER_CATALOG // seasons)


def part_of(location: int, seasons: int) -> int:
    return location // locations_per_part(seasons)


def part_dir(location: int, seasons: int) -> str:
    """The part folder of a location (``0000``)."""
    return f"{part_of(location, seasons):04d}"


def location_dir(location: int, seasons: int) -> str:
    """A per-patch location's folder relative to the catalog root (``0000/0000042``)."""
    return f"{part_dir(location, seasons)}/{location:07d}"


def files_dir(location: int, seasons: int, layout: str) -> str:
    """Where a location's files live, relative to the catalog root (and its items' hrefs are relative to)."""
    return part_dir(location, seasons) if layout == "compact" else location_dir(location, seasons)


def item_id(name: str, location: int, season: int) -> str:
    """The id of a location x season: a per-patch item, or a season of a compact location item."""
    return f"{name}-{location:07d}-s{season}"


def location_id(name: str, location: int) -> str:
    """The id of a compact layout's location item."""
    return f"{name}-{location:07d}"


def item_file(item: str) -> str:
    return f"{item}.json"


def asset_name(item: str, resolution: int) -> str:
    """The GeoTIFF of a resolution group of an item (either layout: ``item`` is its id)."""
    return f"{item}_{resolution}m.tif"


def data_key(resolution: int) -> str:
    """The asset key of a resolution group's GeoTIFF (``data_10m``)."""
    return f"data_{resolution}m"


def resolution_of(key: str) -> int | None:
    """10 for ``data_10m``; None for other keys."""
    if key.startswith("data_") and key.endswith("m") and key[5:-1].isdigit():
        return int(key[5:-1])
    return None


def thumbnail_name(item: str) -> str:
    return f"{item}_thumb.jpg"


def is_part_name(name: str) -> bool:
    return len(name) == 4 and name.isdigit()


def is_location_name(name: str) -> bool:
    return len(name) == 7 and name.isdigit()


def location_dirs(root: str | Path) -> Iterator[Path]:
    """Every per-patch ``<part>/<location>`` folder under ``root``, in location order."""
    root = Path(root)
    parts = sorted(e.name for e in os.scandir(root) if is_part_name(e.name) and e.is_dir())
    for part in parts:
        with os.scandir(root / part) as it:
            locs = sorted(e.name for e in it if is_location_name(e.name) and e.is_dir())
        for loc in locs:
            yield root / part / loc


def remove_location(root: str | Path, name: str, location: int, seasons: int, layout: str) -> None:
    # (root: a folder, or an object-storage URL)
    """Delete every file of a location, the temporary files of killed writers included (a compact
    location's files share their part folder with others': only its own go)."""
    import shutil

    from ..storage import is_url, store_for

    if is_url(str(root)):
        store = store_for(root)
        folder = files_dir(location, seasons, layout)
        prefix = location_id(name, location) + "_" if layout == "compact" else f"{location:07d}/"
        store.delete([rel for rel, _ in store.list(f"{folder}/{prefix}")])
        return
    root = Path(root)
    if layout != "compact":
        shutil.rmtree(root / location_dir(location, seasons), ignore_errors=True)
        return
    folder = root / part_dir(location, seasons)
    prefix = location_id(name, location) + "_"
    if folder.is_dir():
        for p in [*folder.glob(prefix + "*"), *folder.glob("." + prefix + "*")]:
            p.unlink(missing_ok=True)


def location_of_file(name: str) -> int | None:
    """The location number in a compact file name (``demo-0000042_10m.tif`` -> 42), else None."""
    stem = name.split("_", 1)[0]
    digits = stem.rsplit("-", 1)[-1]
    return int(digits) if len(digits) == 7 and digits.isdigit() else None
