"""``seco-data import``: catalog a released SeCo or SSL4EO-S12 download."""

from __future__ import annotations

import json
from pathlib import Path

import click

from seco_data.catalog.layout import CATALOG, INDEX
from seco_data.storage import join

from .base import SecoCommand, quiet
from .options import (RegistryChoice, cluster_option, json_option, out_option, overwrite_option, repair_option,
                      workers_option)
from .progress import Bar


def _kinds():
    from seco_data.importers import KINDS

    return list(KINDS)


def _layouts():
    from seco_data.catalog.layout import LAYOUTS

    return list(LAYOUTS)


def _products():
    from seco_data.importers import PRODUCTS

    return "|".join(PRODUCTS)


@click.command("import", cls=SecoCommand)
@click.argument("kind", type=RegistryChoice(_kinds))
@click.argument("src", type=click.Path(path_type=Path))
@out_option(help="Catalog folder, or object-storage URL s3://bucket/prefix (also gs://, az://; compact layout), "
                 "to write. Rerunning on it resumes, on object storage from any machine.", remote=True)
@click.option("--product", metavar="s2c|s2a",  # checked by the library (which also explains s1)
              help="ssl4eo: s2c (L1C) or s2a (L2A), when SRC is the download's root  [default: SRC's name, else s2c]")
@workers_option(help="Locations converted in parallel (processes) [default: cores].")
@overwrite_option("Replace an earlier import in OUT (of any SRC) instead of resuming it.")
@click.option("--limit", type=click.IntRange(min=1), help="Import only the first N locations (by number).")
@click.option("--layout", type=RegistryChoice(_layouts), default="compact", show_default=True,
              help="Catalog layout: compact (4 files per location) or per-patch (a JSON item and files per season).")
@click.option("--thumbnails/--no-thumbnails", default=True, show_default=True, help="Draw quicklooks.")
@repair_option()
@cluster_option
@json_option()
@click.pass_context
def import_cmd(ctx, kind, src, out, product, workers, overwrite, limit, layout, thumbnails, repair, as_json):
    """Catalog the released SeCo-100K/1M (seco) or SSL4EO-S12 (ssl4eo) folders at SRC into OUT.

    Pixels are kept bit for bit (re-encoded losslessly, one GeoTIFF per resolution); OUT is a STAC
    catalog like `seco-data sample` writes, ready for `seco-data export`.

    \b
    seco-data import seco /data/seasonal_contrast_1m --out data/seco1m
    seco-data import ssl4eo /data/ssl4eo-s12/s2c --out data/ssl4eo --workers 4
    seco-data import seco /data/seasonal_contrast_1m --out s3://bucket/seco1m
    """
    from seco_data.importers import import_dataset

    with Bar("importing", quiet=quiet(ctx), shown=("skipped",)) as bar:
        report = import_dataset(kind, src, out, product=product, workers=workers, overwrite=overwrite,
                                progress=bar, limit=limit, layout=layout, thumbnails=thumbnails, repair=repair)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif not quiet(ctx):
        click.echo(_summary(report))


def _summary(r, shown: int = 10) -> str:
    lines = [
        f"imported {r.locations}/{r.found} locations ({r.items} items) of {r.kind} {r.src} in {r.seconds:.1f} s"
        + (f"; {r.resumed} were already in {r.out}" if r.resumed else "")
        + (f"; {r.removed} no longer selected were removed" if r.removed else ""),
        "skipped locations: " + (", ".join(f"{k} {v}" for k, v in r.skipped.items()) or "none"),
        *(f"  {s.folder}: {s.reason}: {s.detail}" for s in r.skipped_locations[:shown]),
        *([f"  ... and {len(r.skipped_locations) - shown} more (--json lists them all)"]
          if len(r.skipped_locations) > shown else []),
        f"catalog: {join(r.out, CATALOG)}  (index: {join(r.out, INDEX)})",
        f"next: seco-data export {r.out} --format webdataset --out shards/",
    ]
    return "\n".join(lines)
