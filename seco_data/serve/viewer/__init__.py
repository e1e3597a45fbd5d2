"""The catalog viewer: a world map of the locations, a page per location, the collection summary.

``Site(root, asset_base="/")`` serves the pages from memory (``seco-data catalog serve`` mounts it at
``/viewer/``); ``build_site(root, out)`` writes them as a static site (``seco-data catalog html``).
"""

from .site import Site, build_site

__all__ = ["Site", "build_site"]
