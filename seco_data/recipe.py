"""Dataset recipes: the complete, reproducible definition of a seasonal dataset.

A recipe is YAML (see ``catalogs/``) loaded into frozen dataclasses. Unknown keys and out-of-range
values raise :class:`RecipeError` naming the dotted key. Command-line flags and ``--set key=value``
override fields; the resolved recipe is stored in the output folder and in the STAC Collection.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .bands import BANDS, PRODUCT_BANDS, canonical, group_by_resolution
from .config import Schema, apply_overrides, build, load_mapping, to_plain
from .config import parse_override as _parse_override
from .errors import RecipeError, redact


@dataclass(frozen=True)
class Seasons:
    """When: one window per anchor date, all shifted back by the same per-location random shift."""

    #: anchor dates (one per season), latest-first or any order; window centres before the shift
    anchors: tuple[dt.date, ...] = (
        dt.date(2021, 3, 20),
        dt.date(2021, 6, 21),
        dt.date(2021, 9, 22),
        dt.date(2020, 12, 21),
    )
    #: full width of each window in days (SeCo 15, SSL4EO-S12 30)
    window_days: float = 30.0
    #: the per-location shift is drawn uniformly from [0, shift_days) whole days, subtracted
    shift_days: int = 365

    @property
    def count(self) -> int:
        return len(self.anchors)


@dataclass(frozen=True)
class Locations:
    """Where: how candidate points are drawn."""

    #: cities (Gaussian around one of the top-N cities), aoi (uniform in a GeoJSON), points (CSV)
    sampler: str = "cities"
    top_cities: int = 10000
    sigma_km: float = 50.0
    #: keep only candidates whose footprint is at least ``min_land_fraction`` land
    land_only: bool = True
    min_land_fraction: float = 0.5
    #: GeoJSON file (sampler: aoi) or CSV with lon,lat columns (sampler: points)
    path: str | None = None


@dataclass(frozen=True)
class Filters:
    """Which image: limits every chosen patch must meet."""

    #: scene-level cloud percentage limit (0-100), e.g. CLOUDY_PIXEL_PERCENTAGE
    scene_cloud_max: float = 10.0
    #: limit on the patch's own cloud + cloud-shadow fraction of valid pixels (0-1)
    patch_cloud_max: float = 0.05
    #: minimum fraction of valid (non-no-data) pixels in the patch (0-1)
    coverage_min: float = 1.0


#: recipe keys that do not change a dataset's content: a rerun may change them
NOT_IDENTITY = ("n", "description")


@dataclass(frozen=True)
class Recipe:
    name: str = "demo"
    description: str = ""
    #: imagery source (sim, earthengine, sentinelhub, stac)
    source: str = "sim"
    #: processing level: L1C (top of atmosphere) or L2A (surface reflectance)
    product: str = "L2A"
    bands: tuple[str, ...] = PRODUCT_BANDS["L2A"]
    #: patch side in pixels per native resolution (metres); all must cover the same extent
    patch: dict[int, int] = field(default_factory=lambda: {10: 264, 20: 132, 60: 44})
    seasons: Seasons = field(default_factory=Seasons)
    locations: Locations = field(default_factory=Locations)
    filters: Filters = field(default_factory=Filters)
    #: number of locations to collect (each with every season)
    n: int = 1000
    seed: int = 0
    #: give up after drawing this many candidates per requested location
    max_draws_per_location: int = 50
    #: GeoTIFF codec (lossless): zstd, deflate, lzw, none
    compress: str = "deflate"  # seco_data.geotiff.DEFAULT_COMPRESSION: every reader opens it
    #: catalog layout: ``compact`` (per location one GeoTIFF per resolution group holding every
    #: season, and one quicklook strip: 4 files; one STAC item per location, ``items.parquet`` the
    #: catalog of record) or ``per-patch`` (per location x season a JSON item, its GeoTIFFs and its
    #: quicklook)
    layout: str = "compact"
    #: draw true-colour quicklooks (JPEG, at most 128 px a side per season)
    thumbnails: bool = True
    #: source-specific options (project ids, endpoints, ...); never secrets
    source_options: dict[str, Any] = field(default_factory=dict)

    # -- derived -----------------------------------------------------------------------------
    @property
    def patch_size_m(self) -> int:
        return next(iter(self.patch.items()))[0] * next(iter(self.patch.values()))

    @property
    def band_groups(self) -> dict[int, tuple[str, ...]]:
        return group_by_resolution(self.bands)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data, as recorded (catalog, ledger, ``recipe show``): passwords in
        source URLs are redacted (the live recipe keeps them)."""
        d = to_plain(self)
        d["source_options"] = {k: redact(v) if isinstance(v, str) else v for k, v in (d.get("source_options") or {}).items()}
        return d

    def fingerprint(self) -> str:
        """Hash of everything that determines the dataset's content (not its size)."""
        d = {k: v for k, v in self.to_dict().items() if k not in NOT_IDENTITY}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# -- loading ---------------------------------------------------------------------------------

def builtin_recipes() -> dict[str, Path]:
    """Recipes shipped in ``catalogs/`` by name (``demo``, ``seco-1m`` ...).

    An installed wheel carries them as ``seco_data/recipes/``; a checkout or an editable install
    has them in the repository's ``catalogs/`` beside ``seco_data/``.
    """
    here = Path(__file__).resolve().parent
    for root in (here / "recipes", here.parent / "catalogs"):
        if root.is_dir():
            return {p.stem: p for p in sorted(root.glob("*.yaml"))}
    return {}


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise RecipeError(f"recipe file {p} does not exist", hint="pass a YAML file or a built-in name")
        return p
    builtins = builtin_recipes()
    if str(name_or_path) in builtins:
        return builtins[str(name_or_path)]
    raise RecipeError(
        f"no recipe named {name_or_path!r}",
        hint=f"built-in recipes: {', '.join(builtins) or 'none found'}; or pass a path to a YAML file",
    )


RECIPE = Schema(RecipeError, "recipe key")


def load_recipe(
    name_or_path: str | Path = "demo", overrides: dict[str, Any] | None = None
) -> Recipe:
    """Load a recipe by built-in name or path, apply dotted ``overrides``, validate."""
    path = resolve_recipe_path(name_or_path)
    return recipe_from_dict(load_mapping(path, RECIPE, "recipe"), overrides)


def recipe_from_dict(raw: dict[str, Any], overrides: dict[str, Any] | None = None) -> Recipe:
    recipe = build(Recipe, apply_overrides(raw, overrides, RECIPE), RECIPE)
    validate(recipe)
    return recipe


def parse_override(text: str) -> tuple[str, Any]:
    """``seasons.window_days=30`` -> (``seasons.window_days``, 30) with YAML value typing."""
    return _parse_override(text, RECIPE)


# -- validation ------------------------------------------------------------------------------


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise RecipeError(f"recipe key {key!r} {message}")


def validate(r: Recipe) -> None:
    from .sources import SOURCES

    _check(bool(r.name.strip()), "name", "must not be empty")
    _check(
        r.source in SOURCES,
        "source",
        f"must be one of {', '.join(SOURCES)}, got {r.source!r}",
    )
    _check(r.product in PRODUCT_BANDS, "product", f"must be L1C or L2A, got {r.product!r}")
    _check(len(r.bands) > 0, "bands", "must list at least one band")
    bands = []
    for b in r.bands:
        try:
            bands.append(canonical(b))
        except KeyError:
            raise RecipeError(
                f"recipe key 'bands' names an unknown band {b!r}", hint=f"bands: {', '.join(BANDS)}"
            ) from None
    object.__setattr__(r, "bands", tuple(bands))
    _check(len(set(bands)) == len(bands), "bands", "lists a band twice")
    for b in bands:
        _check(b in PRODUCT_BANDS[r.product], "bands", f"has {b}, which {r.product} does not provide")
    extents = set()
    for res, px in r.patch.items():
        _check(res in (10, 20, 60), f"patch.{res}", "must be a Sentinel-2 resolution: 10, 20 or 60")
        _check(1 <= px <= 10000, f"patch.{res}", f"must be 1-10000 pixels, got {px}")
        extents.add(res * px)
    _check(len(extents) == 1, "patch", f"sizes must cover one extent, got {sorted(extents)} m")
    for res in r.band_groups:
        _check(res in r.patch, "patch", f"has no size for {res} m bands ({', '.join(r.band_groups[res])})")
    _check(r.patch_size_m % 60 == 0, "patch", "extent must be a multiple of 60 m")
    object.__setattr__(r, "patch", dict(sorted(r.patch.items())))

    s = r.seasons
    _check(1 <= s.count <= 24, "seasons.anchors", f"must list 1-24 dates, got {s.count}")
    _check(len(set(s.anchors)) == s.count, "seasons.anchors", "lists a date twice")
    _check(0 < s.window_days <= 183, "seasons.window_days", f"must be in (0, 183], got {s.window_days}")
    _check(0 <= s.shift_days <= 3650, "seasons.shift_days", f"must be in [0, 3650], got {s.shift_days}")
    ordered = sorted(s.anchors)
    gaps = [(b - a).days for a, b in zip(ordered, ordered[1:])]
    _check(
        all(g >= s.window_days for g in gaps),
        "seasons.window_days",
        f"({s.window_days}) is wider than the gap between two anchors ({min(gaps) if gaps else 0} days)",
    )
    _check(
        min(s.anchors) - dt.timedelta(days=s.shift_days + s.window_days) >= dt.date(2015, 6, 23),
        "seasons.anchors",
        "reach before Sentinel-2's first acquisitions (2015-06-23) once shifted; use later dates",
    )

    loc = r.locations
    from .sample.locations import SAMPLERS

    _check(loc.sampler in SAMPLERS, "locations.sampler", f"must be one of {', '.join(SAMPLERS)}")
    _check(1 <= loc.top_cities <= 50000, "locations.top_cities", f"must be 1-50000, got {loc.top_cities}")
    _check(0 <= loc.sigma_km <= 2000, "locations.sigma_km", f"must be in [0, 2000], got {loc.sigma_km}")
    _check(0 <= loc.min_land_fraction <= 1, "locations.min_land_fraction", "must be in [0, 1]")
    if loc.sampler in ("aoi", "points"):
        _check(bool(loc.path), "locations.path", f"is required by the {loc.sampler} sampler")

    f = r.filters
    _check(0 <= f.scene_cloud_max <= 100, "filters.scene_cloud_max", f"must be in [0, 100], got {f.scene_cloud_max}")
    _check(0 <= f.patch_cloud_max <= 1, "filters.patch_cloud_max", f"must be in [0, 1], got {f.patch_cloud_max}")
    _check(0 <= f.coverage_min <= 1, "filters.coverage_min", f"must be in [0, 1], got {f.coverage_min}")

    _check(1 <= r.n <= 100_000_000, "n", f"must be in [1, 100000000], got {r.n}")
    _check(0 <= r.seed < 2**63, "seed", "must be a non-negative integer")
    _check(1 <= r.max_draws_per_location <= 100000, "max_draws_per_location", "must be in [1, 100000]")
    from .geotiff import COMPRESSIONS

    _check(r.compress in COMPRESSIONS, "compress", f"must be one of {', '.join(COMPRESSIONS)}")
    from .catalog.layout import LAYOUTS

    _check(r.layout in LAYOUTS, "layout", f"must be one of {', '.join(LAYOUTS)}, got {r.layout!r}")
    secretish = [k for k in r.source_options if _looks_secret(k)]
    _check(not secretish, f"source_options.{secretish[0] if secretish else ''}",
           "looks like a secret: pass credentials through the environment, never in a recipe")


def _looks_secret(key: str) -> bool:
    """Option names that would carry a secret (``client_secret``, ``api_key``, ``access_token``);
    ``token_url`` or ``credentials`` (a file path) are fine."""
    k = key.lower()
    if k.endswith(("_url", "_file", "_path")):
        return False
    return any(w in k for w in ("secret", "password", "passwd", "apikey", "api_key", "private_key")) or k in (
        "key", "token", "access_token", "refresh_token")
