"""``seco-data catalog``: inspect, validate, rebuild, browse and add thumbnails to a catalog."""

from __future__ import annotations

import json
from pathlib import Path

import click

from seco_data.catalog.layout import CATALOG, COLLECTION, INDEX

from .base import SecoGroup, quiet
from .options import LOCATION, cluster_option, json_option, out_option, overwrite_option, workers_option
from .progress import Bar


@click.group(cls=SecoGroup)
def catalog():
    """Inspect, validate, rebuild and browse a collected STAC catalog (viewer, STAC API, thumbnails)."""


@catalog.command("info")
@click.argument("root", type=click.Path(path_type=Path))
@json_option("Print as JSON.")
def catalog_info(root, as_json):
    """Counts, extent, dates, cloud and coverage histograms, rejections."""
    from seco_data.catalog.info import catalog_info as info

    d = info(root)
    click.echo(json.dumps(d, indent=2) if as_json else _render_info(d))


def _bars(rows: list[tuple[str, int]], width: int = 30) -> list[str]:
    top = max([c for _, c in rows] + [1])
    return [f"  {label:>14} {c:>8}  {'#' * round(width * c / top)}" for label, c in rows]


def _render_info(d: dict) -> str:
    src = d["source"]
    lines = [
        f"catalog     {d['root']}  (collection {d['collection']}, recipe {d['recipe']})",
        f"source      {src.get('name')} {src.get('product')}" + ("  [synthetic pixels]" if src.get("synthetic") else ""),
        f"locations   {d['locations']} of {d['requested']} requested; {d['layout']} layout: items {d['items']}, "
        f"patches {d['patches']}; per season " + ", ".join(f"s{k}: {v}" for k, v in d["items_per_season"].items()),
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
@click.option("--sample", type=click.IntRange(min=1), default=None,
              help="Validate a random sample of N items (and every catalog and collection): for huge catalogs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --sample draw.")
@workers_option(help="Parallel processes [default: cores].")
def catalog_validate(root, schemas, sample, seed, workers):
    """Validate every catalog, collection and item against the STAC schemas, offline.

    \b
    seco-data catalog validate data/demo --schemas stac-schemas/
    seco-data catalog validate data/seco-1m --sample 10000 --workers 8
    """
    from seco_data.catalog.validate import validate_catalog
    from seco_data.errors import CatalogError

    n, problems = validate_catalog(root, schemas, sample=sample, seed=seed, workers=workers)
    for p in problems[:50]:
        click.echo(p, err=True)
    if problems:
        raise CatalogError(f"{len(problems)} schema errors in {n} STAC objects under {root}",
                           hint="the first 50 are listed above")
    what = f" (a sample of {sample} items, seed {seed})" if sample else ""
    click.echo(f"{n} STAC objects valid{what}")


@catalog.command("rebuild")
@click.argument("root", type=click.Path(path_type=Path))
def catalog_rebuild(root):
    """Rewrite the catalog tree and items.parquet of ROOT from its record (the ledger of a sampled
    catalog, the item files of an imported one)."""
    from seco_data.catalog.rebuild import rebuild

    coll = rebuild(root, force=True)
    stats = coll.get("seco:stats", {})
    click.echo(f"catalog rebuilt: {stats.get('locations')} locations, {stats.get('items')} items, "
               f"{stats.get('patches', stats.get('items'))} patches in {root}")


@catalog.command("html")
@click.argument("root", type=click.Path(path_type=Path))
@out_option(help="Folder to write the site to (must not exist, unless --overwrite).")
@overwrite_option("Replace a site written here before.")
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
@click.argument("root", type=LOCATION)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address exposes the catalog to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--base-url", default=None, metavar="URL",
              help="The address clients reach the server at (behind a proxy); every link is built from it "
                   "[default: http://HOST:PORT]. The Host header is never used.")
def catalog_serve(root, host, port, base_url):
    """Serve ROOT read-only over HTTP: the viewer, the static STAC catalog and a STAC API.

    ROOT is a catalog folder or a catalog on object storage (s3://bucket/prefix, also gs://, az://):
    its index and JSON are then kept in a local copy (fetched again when they change), its GeoTIFFs
    and quicklooks streamed from the bucket (byte ranges included). Opens no browser; stop it with Ctrl-C.

    \b
    seco-data catalog serve data/demo
    seco-data catalog serve s3://bucket/seco-1m
    pystac-client / QGIS / STAC Browser: http://127.0.0.1:8765/api or /catalog.json
    """
    from seco_data.serve.server import is_loopback, make_server

    if not is_loopback(host):
        click.echo(f"Warning: listening on {host}: anyone who can reach this machine can read the catalog",
                   err=True)
    server = make_server(root, host, port, base_url=base_url)
    url = server.url
    click.echo(f"serving {root} (read-only); press Ctrl-C to stop")
    click.echo(f"  viewer     {url}/viewer/")
    click.echo(f"  STAC       {url}/{CATALOG}")
    click.echo(f"  STAC API   {url}/api")
    try:
        server.serve_forever()  # returns (or raises KeyboardInterrupt) on Ctrl-C, once requests in flight are answered
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    click.echo("stopped")


@catalog.command("thumbnails")
@cluster_option
@click.argument("root", type=click.Path(path_type=Path))
@overwrite_option("Redraw every thumbnail, not only the missing ones.")
@workers_option(help="Parallel threads [default: cores].")
@json_option()
@click.pass_context
def catalog_thumbnails(ctx, root, overwrite, workers, as_json):
    """Add a true-colour JPEG quicklook (asset `thumbnail`) to every item of ROOT, then refresh its
    index. For catalogs sampled before thumbnails existed, or imported; rerun it to resume.

    \b
    seco-data catalog thumbnails data/demo
    seco-data catalog thumbnails data/seco-100k --overwrite --workers 4
    """
    from seco_data.catalog.add_thumbnails import add_thumbnails
    from seco_data.errors import CatalogError

    with Bar("thumbnails", quiet=quiet(ctx), shown=("failed",)) as bar:
        r = add_thumbnails(root, overwrite=overwrite, workers=workers, progress=bar)
    if as_json:
        click.echo(json.dumps(r.to_dict(), indent=2))
    elif not quiet(ctx):
        failed = ", ".join(f"{k} {v}" for k, v in sorted(r.failed.items())) or "none"
        click.echo(f"thumbnails of {r.items} items in {r.seconds:.1f} s: written {r.written}, "
                   f"already present {r.present}, failed {sum(r.failed.values())} ({failed})")
        click.echo(f"index refreshed: {root / INDEX}, {root / COLLECTION}")
    for line in r.failures[:50]:
        click.echo(f"FAIL {line}", err=True)
    if not r.ok:
        more = " (first 50 listed)" if len(r.failures) > 50 else ""
        raise CatalogError(f"{len(r.failures)} of {r.items} thumbnails failed{more}",
                           hint="fix or re-collect the files named above, then rerun to finish")
