"""``seco-data import``: the released SeCo-100K/1M and SSL4EO-S12 downloads as seco catalogs.

The output is the layout of :mod:`seco_data.catalog.writer` (one lossless GeoTIFF per resolution group, items,
``items.parquet``), with the source's dtype, pixels (bit-identical) and lon/lat georeferencing, so
that exporters read it through :class:`seco_data.catalog.index.CatalogIndex` like a sampled catalog.

- :mod:`.layouts`: recognising SRC, listing its locations and scenes (dates, cloud from metadata.json)
- :mod:`.convert`: one location: read and check every band, re-encode, write items, rename into place
- :mod:`.run`: :func:`import_dataset`: OUT guard and resume, parallel workers, report, catalog
"""

from .layouts import KINDS, PRODUCTS, Layout, find_layout, list_locations
from .run import ImportReport, SkippedLocation, import_dataset

__all__ = ["KINDS", "PRODUCTS", "ImportReport", "Layout", "SkippedLocation", "find_layout",
           "import_dataset", "list_locations"]
