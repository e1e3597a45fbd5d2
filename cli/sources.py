"""``seco-data sources``: check a source's set-up; build a local STAC catalog over GeoTIFF scenes."""

from __future__ import annotations

from pathlib import Path

import click

from .base import SecoGroup
from .options import load_recipe_from, out_option, recipe_options


@click.group(cls=SecoGroup)
def sources():
    """Check imagery sources and build local catalogs."""


@sources.command("check")
@recipe_options
@click.option("--lon", type=float, help="Longitude of the dry-run patch (default: the recipe's first candidate).")
@click.option("--lat", type=float, help="Latitude of the dry-run patch.")
def check(lon, lat, **opts):
    """Credentials, reachability and a one-patch dry run (nothing is written).

    \b
    seco-data sources check --source earthengine --ee-project my-proj
    seco-data sources check --source stac --stac-url https://earth-search.aws.element84.com/v1
    """
    from seco_data.sample.check import check_source

    recipe = load_recipe_from(opts)
    steps = check_source(recipe, lon, lat)
    for s in steps:
        mark = "ok  " if s.ok else "FAIL"
        click.echo(f"{mark} {s.name:13} {s.seconds * 1000:7.0f} ms  {s.detail}")
    failed = [s for s in steps if not s.ok]
    if failed:
        raise failed[0].error
    click.echo(f"{recipe.source} is ready")


@sources.command("make-local-catalog")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@out_option(required=False, help="Where to write the catalog (default: ROOT, if writable).")
@click.option("--name", help="Catalog id (default: ROOT's name).")
def make_local_catalog(root, out, name):
    """Build a static STAC catalog over existing scene GeoTIFFs, for --source stac --stac-url CATALOG.

    \b
    seco-data sources make-local-catalog "OSCD/Images" --out oscd-stac
    seco-data sample --source stac --stac-url oscd-stac/catalog.json --product L1C ...
    """
    from seco_data.sources.local_catalog import make_local_catalog as build

    path = build(root, out, name=name)
    click.echo(f"catalog: {path}")
    click.echo(f"next: seco-data sources check --source stac --stac-url {path}")
