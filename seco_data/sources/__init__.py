"""Imagery sources, by registry name. Remote clients are imported only when their source is built."""

from __future__ import annotations

from importlib import import_module

from ..errors import UsageError
from .base import Masks, SceneRead, SceneRef, Source

#: name -> "module:Class" (lazy, so optional dependencies load only when used)
SOURCES: dict[str, str] = {
    "sim": "seco_data.sources.sim:SimSource",
    "earthengine": "seco_data.sources.earthengine:EarthEngineSource",
    "sentinelhub": "seco_data.sources.sentinelhub:SentinelHubSource",
    "stac": "seco_data.sources.stac:StacSource",
}
#: every source a recipe may name; those missing from SOURCES are not in this release yet
KNOWN_SOURCES = ("sim", "earthengine", "sentinelhub", "stac")


#: third-party package -> the extra that installs it
_EXTRAS = {"ee": "earthengine", "googleapiclient": "earthengine", "google": "earthengine",
           "sentinelhub": "sentinelhub", "pystac_client": "stac"}


def get_source(name: str, product: str = "L2A", **options) -> Source:
    """Build the source registered as ``name`` (its module is imported only now)."""
    try:
        target = SOURCES[name]
    except KeyError:
        raise UsageError(
            f"unknown source {name!r}", hint=f"choose one of: {', '.join(sorted(SOURCES))}"
        ) from None
    modname, cls = target.split(":")
    try:
        module = import_module(modname)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top in _EXTRAS:
            raise UsageError(
                f"the {name!r} source needs the {top} package, which is not installed",
                hint=f"pip install 'seco[{_EXTRAS[top]}]'",
            ) from None
        if e.name == modname:
            raise UsageError(
                f"the {name!r} source is not available in this release of seco",
                hint="run the same recipe offline on the simulator with --source sim",
            ) from None
        raise
    return getattr(module, cls)(product=product, **options)


__all__ = ["SOURCES", "get_source", "Source", "SceneRef", "SceneRead", "Masks"]
