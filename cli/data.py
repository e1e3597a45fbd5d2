"""``seco-data``: collect seasonal Sentinel-2 patches and manage their STAC catalog."""

from __future__ import annotations

import json
from pathlib import Path

import click

from seco_data import __version__
from seco_data.catalog.layout import CATALOG, INDEX
from seco_data.storage import join

from .base import quiet, root_group
from .options import (cluster_option, json_option, load_recipe_from, out_option, overwrite_option, recipe_options, repair_option,
                      workers_option)
from .progress import Bar


@root_group(__version__, "seco-data")
def main():
    """Collect seasonal Sentinel-2 patches into a STAC catalog, and inspect it."""


@main.command()
@cluster_option
@recipe_options
@out_option(required=False, remote=True,
            help="Output folder or object-storage URL, s3://bucket/prefix (default: data/<recipe name>). "
                 "Rerunning on it resumes.")
@workers_option(help="Parallel workers: processes for the simulator, threads for remote sources [default: cores, "
                     "or 8 threads for remote sources].")
@overwrite_option()
@repair_option()
@click.option("--plan", "plan", is_flag=True,
              help="Print what the run would cost (requests per service, processing units, files, bytes, "
                   "wall-clock) from a pilot of a few locations in a temporary folder; nothing is written to --out.")
@click.option("--pilot", type=click.IntRange(min=1), default=8, show_default=True,
              help="[--plan] Locations the pilot collects.")
@click.option("--plan-out", type=click.Path(dir_okay=False, path_type=Path),
              help="[--plan] Also write the plan as JSON to this file.")
@json_option()
@click.pass_context
def sample(ctx, out, workers, overwrite, repair, plan, pilot, plan_out, as_json, **opts):
    """Collect N locations x seasons of patches (resumable: rerun the same command after a stop).

    \b
    seco-data sample --n 1000 --out data/demo
    seco-data sample --recipe catalogs/seco-1m.yaml --source sim --n 5000 --workers 2
    seco-data sample --recipe catalogs/seco-1m.yaml --source earthengine --plan --plan-out plan.json
    seco-data sample --n 1000000 --out s3://bucket/seco-1m --cluster tcp://scheduler:8786
    """
    from seco_data.sample import sample as run_sample

    recipe = load_recipe_from(opts)
    if plan:
        from seco_data.outputs import write_json
        from seco_data.sample.plan import format_plan, plan_run

        with Bar("pilot", quiet=quiet(ctx)) as bar:
            p = plan_run(recipe, pilot=pilot, workers=workers, progress=bar)
        if plan_out:
            write_json(plan_out, p)
        click.echo(json.dumps(p, indent=2) if as_json else format_plan(p))
        return
    for flag, given in (("--pilot", pilot != 8), ("--plan-out", plan_out is not None)):
        if given:
            raise click.UsageError(f"{flag} goes with --plan")
    out = out or Path("data") / recipe.name
    with Bar("sampling", quiet=quiet(ctx), shown=("rejected",)) as bar:
        report = run_sample(recipe, out, workers=workers, progress=bar, overwrite=overwrite, repair=repair)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif not quiet(ctx):
        click.echo(_summary(report))


def _summary(r) -> str:
    lines = [
        f"collected {r.accepted}/{r.requested} locations, {r.patches} patches in {r.seconds:.1f} s"
        + (" (resumed)" if r.resumed else "")
        + (f"; {r.repaired} damaged locations collected again" if r.repaired else ""),
        f"candidates drawn: {r.candidates}; locations rejected: "
        + (", ".join(f"{k} {v}" for k, v in sorted(r.rejections.items())) or "none"),
        "scenes skipped: " + (", ".join(f"{k} {v}" for k, v in sorted(r.skipped_scenes.items())) or "none"),
        *(["source usage: " + ", ".join(f"{k} {v:g}" for k, v in sorted(r.source_stats.items()))]
          if r.source_stats else []),
        f"catalog: {join(r.out, CATALOG)}  (index: {join(r.out, INDEX)})",
        f"next: seco-data catalog info {r.out}",
    ]
    return "\n".join(lines)


@main.group()
def recipe():
    """List and show dataset recipes."""


@recipe.command("list")
def recipe_list():
    """Built-in recipes (catalogs/*.yaml)."""
    from seco_data.recipe import builtin_recipes, load_recipe

    for name in builtin_recipes():
        r = load_recipe(name)
        click.echo(f"{name:12} n={r.n:<8} {r.source:12} {r.product} seasons={r.seasons.count}  {r.description[:60]}")


@recipe.command("show")
@recipe_options
def recipe_show(**opts):
    """Print the resolved recipe (after flags and --set overrides) as YAML."""
    click.echo(load_recipe_from(opts).to_yaml(), nl=False)


from .catalog import catalog  # noqa: E402  (each group in its own module)
from .export import export_cmd, verify_cmd  # noqa: E402
from .imports import import_cmd  # noqa: E402
from .sources import sources  # noqa: E402

main.add_command(catalog)
main.add_command(sources)
main.add_command(export_cmd, "export")
main.add_command(verify_cmd, "verify")
main.add_command(import_cmd, "import")
