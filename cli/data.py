"""``seco-data``: collect seasonal Sentinel-2 patches and manage their STAC catalog."""

from __future__ import annotations

from pathlib import Path

import click

from seco_data import __version__

from .base import SecoGroup, configure_logging, verbosity_options
from .options import recipe_options, recipe_overrides


@click.group(cls=SecoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seco-data")
@verbosity_options
@click.pass_context
def main(ctx, verbose, quiet):
    """Collect seasonal Sentinel-2 patches into a STAC catalog, and inspect it."""
    ctx.obj = {"verbosity": verbose - quiet}
    configure_logging(verbose - quiet)


@main.command()
@recipe_options
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: data/<recipe name>). Rerunning on it resumes.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Parallel workers (processes for the simulator, threads for remote sources).")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@click.pass_context
def sample(ctx, out, workers, as_json, **opts):
    """Collect N locations x seasons of patches (resumable: rerun the same command after a stop).

    \b
    seco-data sample --n 1000 --out data/demo
    seco-data sample --recipe catalogs/seco-1m.yaml --source sim --n 5000 --workers 2
    """
    import json as _json

    from seco_data.sample.run import sample as run_sample
    from seco_data.recipe import load_recipe

    recipe = load_recipe(opts.pop("recipe"), recipe_overrides(opts))
    out = out or Path("data") / recipe.name
    quiet = ctx.obj["verbosity"] < 0
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar = _Progress(recipe.n, quiet)
    try:
        with logging_redirect_tqdm():  # log lines (retries...) print above the bar, not through it
            report = run_sample(recipe, out, workers=workers, progress=bar.update_from)
    finally:
        bar.close()
    if as_json:
        click.echo(_json.dumps(report.to_dict(), indent=2))
    elif not quiet:
        click.echo(_summary(report))


class _Progress:
    """A tqdm bar fed by the library's progress callback (the library itself never draws).

    Created on the first result, so errors raised before any work print on a clean line.
    """

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.bar = total, quiet, None

    def update_from(self, p) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=p.accepted, unit="loc", disable=self.quiet,
                            dynamic_ncols=True, mininterval=0.5, desc="sampling", smoothing=0.1)
        self.bar.update(p.accepted - self.bar.n)
        self.bar.set_postfix(rejected=p.rejected, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _summary(r) -> str:
    lines = [
        f"collected {r.accepted}/{r.requested} locations, {r.patches} patches in {r.seconds:.1f} s"
        + (" (resumed)" if r.resumed else ""),
        f"candidates drawn: {r.candidates}; locations rejected: "
        + (", ".join(f"{k} {v}" for k, v in sorted(r.rejections.items())) or "none"),
        "scenes skipped: " + (", ".join(f"{k} {v}" for k, v in sorted(r.skipped_scenes.items())) or "none"),
        *(["source usage: " + ", ".join(f"{k} {v:g}" for k, v in sorted(r.source_stats.items()))]
          if r.source_stats else []),
        f"catalog: {r.out / 'catalog.json'}  (index: {r.out / 'items.parquet'})",
        f"next: seco-data catalog info {r.out}",
    ]
    return "\n".join(lines)


@main.group(cls=SecoGroup)
def catalog():
    """Inspect, validate, rebuild and browse a collected STAC catalog (viewer, STAC API, thumbnails)."""


@catalog.command("info")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def catalog_info(root, as_json):
    """Counts, extent, dates, cloud and coverage histograms, rejections."""
    import json as _json

    from seco_data.catalog.info import catalog_info as info

    d = info(root)
    if as_json:
        click.echo(_json.dumps(d, indent=2))
        return
    click.echo(_render_info(d))


def _bars(rows: list[tuple[str, int]], width: int = 30) -> list[str]:
    top = max([c for _, c in rows] + [1])
    return [f"  {label:>14} {c:>8}  {'#' * round(width * c / top)}" for label, c in rows]


def _render_info(d: dict) -> str:
    src = d["source"]
    lines = [
        f"catalog     {d['root']}  (collection {d['collection']}, recipe {d['recipe']})",
        f"source      {src.get('name')} {src.get('product')}" + ("  [synthetic pixels]" if src.get("synthetic") else ""),
        f"locations   {d['locations']} of {d['requested']} requested; items {d['items']}; per season "
        + ", ".join(f"s{k}: {v}" for k, v in d["items_per_season"].items()),
        "extent      bbox " + (", ".join(f"{v:.3f}" for v in d["bbox"]) if d["bbox"] else "-"),
        f"dates       {d['start']} .. {d['end']}",
        "acquisitions by month:",
        *_bars(list(d["dates_by_month"].items())),
        "scene cloud (eo:cloud_cover):",
        *_bars([(h["bin"], h["count"]) for h in d["scene_cloud_histogram"]]),
        "patch cloud + shadow fraction:",
        *_bars([(h["bin"], h["count"]) for h in d["patch_cloud_histogram"]]),
        "no-data fraction (1 - coverage):",
        *_bars([(h["bin"], h["count"]) for h in d["coverage_histogram"]]),
        f"candidates  {d['candidates']}; rejected locations: "
        + (", ".join(f"{k} {v}" for k, v in sorted(d["rejections"].items())) or "none"),
        "skipped scenes: " + (", ".join(f"{k} {v}" for k, v in sorted(d["skipped_scenes"].items())) or "none"),
    ]
    return "\n".join(lines)


@catalog.command("validate")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--schemas", type=click.Path(file_okay=False, path_type=Path), envvar="SECO_STAC_SCHEMAS",
              help="Folder of STAC JSON Schemas laid out as their URLs (env SECO_STAC_SCHEMAS).")
def catalog_validate(root, schemas):
    """Validate every catalog, collection and item against the STAC schemas, offline."""
    from seco_data.errors import CatalogError
    from seco_data.catalog.validate import validate_catalog

    n, problems = validate_catalog(root, schemas)
    for p in problems[:50]:
        click.echo(p, err=True)
    if problems:
        raise CatalogError(f"{len(problems)} schema errors in {n} STAC objects under {root}",
                           hint="the first 50 are listed above")
    click.echo(f"{n} STAC objects valid")


@catalog.command("rebuild")
@click.argument("root", type=click.Path(path_type=Path))
def catalog_rebuild(root):
    """Rewrite the catalog tree and items.parquet of ROOT from its ledger."""
    from seco_data.sample.run import LEDGER, finalize
    from seco_data.errors import CatalogError

    if not (root / LEDGER).exists():
        raise CatalogError(f"no {LEDGER} in {root}", hint="point at the --out folder of seco-data sample")
    r = finalize(root)
    click.echo(f"catalog rebuilt: {r.accepted} locations, {r.patches} items in {root}")


@catalog.command("html")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the site to (must not exist, unless --overwrite).")
@click.option("--overwrite", is_flag=True, help="Replace a site written here before.")
def catalog_html(root, out, overwrite):
    """Write the catalog viewer (map, location pages, summary) as a static site.

    \b
    seco-data catalog html data/demo --out site/
    The pages link to the catalog's files by relative paths: keep the catalog where it is.
    """
    from seco_data.serve.viewer import build_site

    site = build_site(root, out, overwrite=overwrite)
    click.echo(f"site written to {site}")
    click.echo(f"open {(site / 'index.html').as_uri()}  (or serve {site} with any static web server)")


@catalog.command("serve")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address exposes the catalog to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
def catalog_serve(root, host, port):
    """Serve ROOT read-only over HTTP: the viewer, the static STAC catalog and a STAC API.

    Opens no browser; stop it with Ctrl-C.

    \b
    seco-data catalog serve data/demo
    pystac-client / QGIS / STAC Browser: http://127.0.0.1:8765/api or /catalog.json
    """
    from seco_data.serve.server import is_loopback, make_server

    if not is_loopback(host):
        click.echo(f"Warning: listening on {host}: anyone who can reach this machine can read the catalog",
                   err=True)
    server = make_server(root, host, port)
    url = server.url
    click.echo(f"serving {root} (read-only); press Ctrl-C to stop")
    click.echo(f"  viewer     {url}/viewer/")
    click.echo(f"  STAC       {url}/catalog.json")
    click.echo(f"  STAC API   {url}/api")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()


@catalog.command("thumbnails")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Redraw every thumbnail, not only the missing ones.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Parallel threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def catalog_thumbnails(ctx, root, overwrite, workers, as_json):
    """Add a true-colour PNG quicklook (asset `thumbnail`) to every item of ROOT, then refresh its
    index. For catalogs sampled before thumbnails existed, or imported; rerun it to resume.

    \b
    seco-data catalog thumbnails data/demo
    seco-data catalog thumbnails data/seco-100k --overwrite --workers 4
    """
    import json as _json

    from tqdm import tqdm

    from seco_data.errors import CatalogError
    from seco_data.catalog.thumbnails import add_thumbnails

    quiet = (ctx.obj or {}).get("verbosity", 0) < 0
    bars = []  # made on the first report, which brings the total (items.parquet's row count, if readable)

    def progress(done, total):
        if not bars:
            bars.append(tqdm(total=total, unit="item", disable=quiet, dynamic_ncols=True, desc="thumbnails",
                             mininterval=0.5, smoothing=0.1))
        bars[0].update(done - bars[0].n)

    try:
        r = add_thumbnails(root, overwrite=overwrite, workers=workers, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    if as_json:
        click.echo(_json.dumps(r.to_dict(), indent=2))
    elif not quiet:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(r.failed.items())) or "none"
        click.echo(f"thumbnails of {r.items} items in {r.seconds:.1f} s: written {r.written}, "
                   f"already present {r.present}, failed {sum(r.failed.values())} ({failed})")
        click.echo(f"index refreshed: {root / 'items.parquet'}, {root / 'collection.json'}")
    for line in r.failures[:50]:
        click.echo(f"FAIL {line}", err=True)
    if not r.ok:
        more = " (first 50 listed)" if len(r.failures) > 50 else ""
        raise CatalogError(f"{len(r.failures)} of {r.items} thumbnails failed{more}",
                           hint="fix or re-collect the files named above, then rerun to finish")


@main.group(cls=SecoGroup)
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
    from seco_data.recipe import load_recipe

    click.echo(load_recipe(opts.pop("recipe"), recipe_overrides(opts)).to_yaml(), nl=False)


from .sources import sources  # noqa: E402  (the group is defined in its own module)

main.add_command(sources)

from .export import export_cmd, verify_cmd  # noqa: E402

main.add_command(export_cmd, "export")
main.add_command(verify_cmd, "verify")

from .imports import import_cmd  # noqa: E402

main.add_command(import_cmd, "import")
