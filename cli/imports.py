"""``seco-data import``: catalog a released SeCo or SSL4EO-S12 download."""

from __future__ import annotations

from pathlib import Path

import click

from seco_data.importers import KINDS, PRODUCTS


@click.command("import")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Catalog folder to write. Rerunning on it resumes.")
@click.option("--product", metavar="|".join(PRODUCTS),  # checked by the library (which also explains s1)
              help="ssl4eo: s2c (L1C) or s2a (L2A), when SRC is the download's root  [default: SRC's name, else s2c]")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Locations converted in parallel (processes).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier import in OUT (of any SRC) instead of resuming it.")
@click.option("--limit", type=click.IntRange(min=1), help="Import only the first N locations (by number).")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@click.pass_context
def import_cmd(ctx, kind, src, out, product, workers, overwrite, limit, as_json):
    """Catalog the released SeCo-100K/1M (seco) or SSL4EO-S12 (ssl4eo) folders at SRC into OUT.

    Pixels are kept bit for bit (re-encoded losslessly, one GeoTIFF per resolution); OUT is a STAC
    catalog like `seco-data sample` writes, ready for `seco-data export`.

    \b
    seco-data import seco /data/seasonal_contrast_1m --out data/seco1m
    seco-data import ssl4eo /data/ssl4eo-s12/s2c --out data/ssl4eo --workers 4
    """
    import json as _json

    from tqdm.contrib.logging import logging_redirect_tqdm

    from seco_data.importers import import_dataset

    quiet = (ctx.obj or {}).get("verbosity", 0) < 0
    bar = _Bar(quiet)
    try:
        with logging_redirect_tqdm():
            report = import_dataset(kind, src, out, product=product, workers=workers, overwrite=overwrite,
                                    progress=bar.update, limit=limit)
    finally:
        bar.close()
    if as_json:
        click.echo(_json.dumps(report.to_dict(), indent=2))
    elif not quiet:
        click.echo(_summary(report))


class _Bar:
    """tqdm bar fed by the library's progress callback, created on the first location."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar = quiet, None

    def update(self, p) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=p.total, initial=p.resumed, unit="loc", disable=self.quiet, dynamic_ncols=True,
                            mininterval=0.5, desc="importing", smoothing=0.1)
        self.bar.update(p.done - self.bar.n)
        if p.skipped:
            self.bar.set_postfix(skipped=p.skipped, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _summary(r, shown: int = 10) -> str:
    lines = [
        f"imported {r.locations}/{r.found} locations ({r.items} items) of {r.kind} {r.src} in {r.seconds:.1f} s"
        + (f"; {r.resumed} were already in {r.out}" if r.resumed else "")
        + (f"; {r.removed} no longer selected were removed" if r.removed else ""),
        "skipped locations: " + (", ".join(f"{k} {v}" for k, v in r.skipped.items()) or "none"),
        *(f"  {s.folder}: {s.reason}: {s.detail}" for s in r.skipped_locations[:shown]),
        *([f"  ... and {len(r.skipped_locations) - shown} more (--json lists them all)"]
          if len(r.skipped_locations) > shown else []),
        f"catalog: {r.out / 'catalog.json'}  (index: {r.out / 'items.parquet'})",
        f"next: seco-data export {r.out} --format webdataset --out shards/",
    ]
    return "\n".join(lines)
