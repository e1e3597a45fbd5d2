"""Imagery sources, by registry name. Remote clients are imported only when their source is built."""

from __future__ import annotations

import inspect
from importlib import import_module

from ..errors import RecipeError, UsageError
from .base import Masks, SceneRead, SceneRef, Source

#: name -> "module:Class" (lazy, so optional dependencies load only when used)
SOURCES: dict[str, str] = {
    "sim": "seco_data.sources.sim:SimSource",
    "earthengine": "seco_data.sources.earthengine:EarthEngineSource",
    "sentinelhub": "seco_data.sources.sentinelhub:SentinelHubSource",
    "stac": "seco_data.sources.stac:StacSource",
}

#: third-party package -> the extra that installs it
_EXTRAS = {"ee": "earthengine", "googleapiclient": "earthengine", "google": "earthengine",
           "sentinelhub": "sentinelhub", "pystac_client": "stac"}


def register(name: str, target: str) -> None:
    """Add a source (``"package.module:Class"``, a :class:`Source` subclass) under ``name``."""
    if ":" not in target:
        raise UsageError(f"source target {target!r} is not 'module:Class'")
    SOURCES[name] = target


def unregister(name: str) -> None:
    SOURCES.pop(name, None)


def source_class(name: str) -> type[Source]:
    """The class registered as ``name`` (its module is imported only now)."""
    try:
        target = SOURCES[name]
    except KeyError:
        raise UsageError(f"unknown source {name!r}", hint=f"choose one of: {', '.join(sorted(SOURCES))}") from None
    modname, cls = target.split(":")
    try:
        module = import_module(modname)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top in _EXTRAS:
            raise UsageError(f"the {name!r} source needs the {top} package, which is not installed",
                             hint=f"pip install 'seco[{_EXTRAS[top]}]'") from None
        if e.name == modname:
            raise UsageError(f"the {name!r} source is not available in this release of seco",
                             hint="run the same recipe offline on the simulator with --source sim") from None
        raise
    return getattr(module, cls)


def option_names(cls: type[Source]) -> list[str]:
    """The ``source_options`` a source takes (the keyword parameters of its constructor)."""
    params = inspect.signature(cls.__init__).parameters
    return [p for p, v in params.items() if p not in ("self", "product")
            and v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD)]


def get_source(name: str, product: str = "L2A", **options) -> Source:
    """Build the source registered as ``name``; unknown or invalid options are usage errors naming them."""
    cls = source_class(name)
    allowed = option_names(cls)
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise RecipeError(f"recipe key 'source_options.{unknown[0]}' is not an option of the {name} source",
                          hint=f"its options: {', '.join(allowed) or 'none'}")
    try:
        return cls(product=product, **options)
    except (TypeError, ValueError) as e:
        if isinstance(e, UsageError):
            raise
        raise RecipeError(f"invalid source_options for the {name} source: {' '.join(str(e).split())}",
                          hint=f"its options: {', '.join(allowed) or 'none'}") from None


__all__ = ["SOURCES", "get_source", "register", "unregister", "source_class", "option_names", "Source", "SceneRef",
           "SceneRead", "Masks"]
