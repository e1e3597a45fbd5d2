"""Imagery sources, by registry name. Remote clients are imported only when their source is built."""

from __future__ import annotations

from importlib import import_module

from ..errors import UsageError
from .base import Masks, SceneRead, SceneRef, Source

#: name -> "module:Class" (lazy, so optional dependencies load only when used)
SOURCES: dict[str, str] = {
    "sim": "seco_data.sources.sim:SimSource",
}
#: every source a recipe may name; those missing from SOURCES are not in this release yet
KNOWN_SOURCES = ("sim", "earthengine", "sentinelhub", "stac")


def get_source(name: str, product: str = "L2A", **options) -> Source:
    """Build the source registered as ``name``."""
    if name in KNOWN_SOURCES and name not in SOURCES:
        raise UsageError(
            f"the {name!r} source is not available in this release of seco",
            hint="run the same recipe offline on the simulator with --source sim",
        )
    try:
        target = SOURCES[name]
    except KeyError:
        raise UsageError(
            f"unknown source {name!r}", hint=f"choose one of: {', '.join(sorted(SOURCES))}"
        ) from None
    module, cls = target.split(":")
    return getattr(import_module(module), cls)(product=product, **options)


__all__ = ["SOURCES", "get_source", "Source", "SceneRef", "SceneRead", "Masks"]
