"""Options shared by commands; choices come from the library, never a second hand-typed list."""

from __future__ import annotations

import click

from seco_data.sources import KNOWN_SOURCES

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
    "ee_project": "source_options.project",
    "stac_url": "source_options.url",
}


def recipe_options(f):
    from seco_data.geotiff import COMPRESSIONS

    opts = [
        click.option("--recipe", default="demo", show_default=True,
                     help="Built-in recipe name (see `seco-data recipe list`) or a YAML file."),
        click.option("--n", type=int, help="Number of locations (each with every season)."),
        click.option("--seed", type=int, help="Seed of every random draw."),
        click.option("--source", help=f"Imagery source: {', '.join(KNOWN_SOURCES)} (checked by the recipe)."),
        click.option("--product", type=click.Choice(["L1C", "L2A"]), help="Processing level."),
        click.option("--bands", help="Comma-separated bands, e.g. B02,B03,B04,B08."),
        click.option("--scene-cloud-max", type=float, help="Scene cloud limit, percent."),
        click.option("--patch-cloud-max", type=float, help="Patch cloud+shadow fraction limit, 0-1."),
        click.option("--coverage-min", type=float, help="Minimum valid-pixel fraction, 0-1."),
        click.option("--window-days", type=float, help="Width of each season window, days."),
        click.option("--sampler", type=click.Choice(["cities", "aoi", "points"]), help="Location sampler."),
        click.option("--locations", "locations_path", type=click.Path(dir_okay=False),
                     help="GeoJSON (aoi) or CSV of lon,lat (points) for the sampler."),
        click.option("--compress", type=click.Choice(COMPRESSIONS), help="GeoTIFF codec (lossless)."),
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
