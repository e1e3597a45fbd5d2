"""Options shared by commands, each defined once; every choice comes from the library's registries."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import click


class RegistryChoice(click.Choice):
    """A choice among a library registry's names, read when the option is parsed (so a registry
    extended at run time, e.g. a source registered by a plugin, is honoured)."""

    def __init__(self, names: Callable[[], Iterable[str]], case_sensitive: bool = True):
        self._names = names
        super().__init__([], case_sensitive)

    @property
    def choices(self):  # type: ignore[override]
        return tuple(self._names())

    @choices.setter
    def choices(self, value):
        pass


def _sources():
    from seco_data.sources import SOURCES

    return sorted(SOURCES)


def _samplers():
    from seco_data.sample.locations import SAMPLERS

    return list(SAMPLERS)


def _products():
    from seco_data.bands import PRODUCT_BANDS

    return list(PRODUCT_BANDS)


def _compressions():
    from seco_data.geotiff import COMPRESSIONS

    return list(COMPRESSIONS)


def _layouts():
    from seco_data.catalog.layout import LAYOUTS

    return list(LAYOUTS)


def workers_option(*, default: int | None = None, minimum: int = 1, help: str | None = None):
    """``--workers N``: parallel workers (None: the command's own default, e.g. the core count)."""
    shown = "the command's default" if default is None else None
    return click.option("--workers", type=click.IntRange(min=minimum), default=default,
                        show_default=shown or True,
                        help=help or "Parallel workers (capped at a few per core, and at the number of tasks).")


def overwrite_option(help: str = "Replace an earlier output made with other settings (only ever seco's own files)."):
    return click.option("--overwrite", is_flag=True, help=help)


def cluster_option(f):
    """``--cluster ADDRESS`` (env ``SECO_CLUSTER``): run the command's tasks on a Dask cluster
    (``tcp://HOST:8786``, or ``local:N`` to start N worker processes here)."""
    import functools

    @click.option("--cluster", envvar="SECO_CLUSTER", default=None, metavar="ADDRESS",
                  help="Run the work on a Dask cluster: tcp://HOST:8786 (a running scheduler, e.g. from "
                       "dask-jobqueue) or local:N (N worker processes here; local:NxT: T threads each). "
                       "The output must be on storage every worker reaches (a shared file system or s3://).")
    @functools.wraps(f)
    def wrapper(*args, cluster=None, **kwargs):
        from seco_data.jobs import use_cluster

        with use_cluster(cluster):
            return f(*args, **kwargs)

    return wrapper


def repair_option():
    """``--repair [quick|full]``: check the files of what is already collected, and collect again
    the locations at fault."""
    return click.option(
        "--repair", type=click.Choice(["quick", "full"]), default=None, is_flag=False, flag_value="quick",
        help="First check the files of the locations already collected (quick: each exists with its recorded "
             "size; full: and its sha256) and collect the damaged ones again.")


def json_option(help: str = "Print the summary as JSON."):
    return click.option("--json", "as_json", is_flag=True, help=help)


class Location(click.ParamType):
    """A local path (a :class:`~pathlib.Path`) or an object-storage URL (``s3://bucket/prefix``, kept
    as a string: a Path would fold its ``//``)."""

    name = "path|url"

    def convert(self, value, param, ctx):
        from seco_data.storage import is_url

        if isinstance(value, Path):
            return value
        return str(value).rstrip("/") if is_url(str(value)) else Path(value)


LOCATION = Location()


def out_option(*, required: bool = True, file: bool = False, help: str, remote: bool = False):
    """``--out``: a path; ``remote=True``: or an object-storage URL (see :class:`Location`)."""
    kind = LOCATION if remote else click.Path(dir_okay=not file, file_okay=file, path_type=Path)
    return click.option("--out", "out", type=kind, required=required, default=None, help=help)


#: flag name -> dotted recipe key
FLAG_KEYS = {
    "n": "n",
    "seed": "seed",
    "source": "source",
    "product": "product",
    "bands": "bands",
    "scene_cloud_max": "filters.scene_cloud_max",
    "patch_cloud_max": "filters.patch_cloud_max",
    "coverage_min": "filters.coverage_min",
    "window_days": "seasons.window_days",
    "sampler": "locations.sampler",
    "locations_path": "locations.path",
    "compress": "compress",
    "layout": "layout",
    "ee_project": "source_options.project",
    "stac_url": "source_options.url",
}


def recipe_options(f):
    opts = [
        click.option("--recipe", default="demo", show_default=True,
                     help="Built-in recipe name (see `seco-data recipe list`) or a YAML file."),
        click.option("--n", type=click.IntRange(min=1), help="Number of locations (each with every season)."),
        click.option("--seed", type=click.IntRange(min=0), help="Seed of every random draw."),
        click.option("--source", type=RegistryChoice(_sources), help="Imagery source."),
        click.option("--product", type=RegistryChoice(_products), help="Processing level."),
        click.option("--bands", help="Comma-separated bands, e.g. B02,B03,B04,B08."),
        click.option("--scene-cloud-max", type=float, help="Scene cloud limit, percent."),
        click.option("--patch-cloud-max", type=float, help="Patch cloud+shadow fraction limit, 0-1."),
        click.option("--coverage-min", type=float, help="Minimum valid-pixel fraction, 0-1."),
        click.option("--window-days", type=float, help="Width of each season window, days."),
        click.option("--sampler", type=RegistryChoice(_samplers), help="Location sampler."),
        click.option("--locations", "locations_path", type=click.Path(dir_okay=False),
                     help="GeoJSON (aoi) or CSV of lon,lat (points) for the sampler."),
        click.option("--compress", type=RegistryChoice(_compressions), help="GeoTIFF codec (lossless)."),
        click.option("--layout", type=RegistryChoice(_layouts),
                     help="Catalog layout: compact (4 files per location) or per-patch (a JSON item and files per season)."),
        click.option("--ee-project", help="Earth Engine: Google Cloud project (source_options.project)."),
        click.option("--stac-url", help="STAC: API URL, or a static catalog.json path or URL (source_options.url)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override any recipe key, e.g. --set seasons.shift_days=0 (repeatable)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def recipe_overrides(opts: dict) -> dict:
    """Recipe overrides from parsed options (popped from ``opts``)."""
    from seco_data.recipe import parse_override

    overrides = {}
    for flag, key in FLAG_KEYS.items():
        value = opts.pop(flag, None)
        if value is not None:
            overrides[key] = value
    for text in opts.pop("sets", ()) or ():
        k, v = parse_override(text)
        overrides[k] = v
    return overrides


def load_recipe_from(opts: dict):
    """The recipe the recipe options describe (popped from ``opts``)."""
    from seco_data.recipe import load_recipe

    return load_recipe(opts.pop("recipe"), recipe_overrides(opts))


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user passed option ``name`` (rather than leaving its default)."""
    src = ctx.get_parameter_source(name)
    return src is not None and src not in (click.core.ParameterSource.DEFAULT,
                                           click.core.ParameterSource.DEFAULT_MAP)


def refuse_inapplicable(ctx: click.Context, applies: dict[str, Iterable[str]], chosen: str, what: str) -> None:
    """Refuse options given that do not apply to ``chosen`` (``applies``: option name -> values it
    applies to), naming them."""
    from seco_data.errors import UsageError

    wrong = [name for name, values in applies.items() if chosen not in values and given(ctx, name)]
    if wrong:
        flags = ", ".join("--" + w.replace("_", "-") for w in wrong)
        raise UsageError(f"{flags} {'does' if len(wrong) == 1 else 'do'} not apply to {what} {chosen}",
                         hint="leave {} out, or choose the {} it belongs to".format(
                             "it" if len(wrong) == 1 else "them", what))
