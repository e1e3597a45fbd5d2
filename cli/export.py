"""``seco-data export`` (WebDataset shards, SeCo folder layout) and ``seco-data verify``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from seco_data.storage import join

from .base import SecoCommand, quiet
from .options import (LOCATION, RegistryChoice, cluster_option, json_option, out_option, overwrite_option, refuse_inapplicable,
                      workers_option)
from .progress import Bar

_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
          "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class Size(click.ParamType):
    """A byte size: 1000000, 1e9, 500MB, 1GB, 2GiB."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
        if not m or m.group(2).upper() not in _UNITS:
            self.fail(f"{value!r} is not a size (examples: 500MB, 1GB, 2GiB, 1e9)", param, ctx)
        return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def _seasons(ctx, param, value):
    try:
        return tuple(int(v) for v in _csv(value)) if value else None
    except ValueError:
        raise click.BadParameter("a comma-separated list of season indices, e.g. 0,1,2") from None


def _unfinished_catalog(catalog: Path) -> str | None:
    """A note when the catalog holds fewer locations than it was asked for (its sampling stopped)."""
    from seco_data.catalog.layout import COLLECTION

    try:
        stats = json.loads((Path(catalog) / COLLECTION).read_text("utf-8")).get("seco:stats") or {}
    except (OSError, ValueError):
        return None
    have, want = stats.get("locations"), stats.get("requested")
    if isinstance(have, int) and isinstance(want, int) and have < want:
        return (f"the catalog holds {have} of the {want} locations asked for (its collection did not finish); "
                "export again after it does: only new shards are written")
    return None


def _formats():
    from seco_data.export import FORMATS

    return list(FORMATS)


def _dtypes():
    from seco_data.export.arrays import DTYPES

    return list(DTYPES)


def _layout_compressions():
    from seco_data.export.seco_layout import COMPRESSIONS

    return list(COMPRESSIONS)


def _bits():
    from seco_data.export.seco_layout import BITS

    return [str(b) for b in BITS]


@click.command("export", cls=SecoCommand)
@cluster_option
@click.argument("catalog", type=LOCATION)
@click.option("--format", "fmt", type=RegistryChoice(_formats), default="webdataset", show_default=True,
              help="webdataset: tar shards for streaming; seco: the SeCo folder layout (torchgeo, SeCo code); "
                   "ssl4eo: the SSL4EO-S12 layout (torchgeo SSL4EOS12; every band, uint16 DN).")
@out_option(help="Output folder or object-storage URL, s3://bucket/prefix (also gs://, az://; webdataset and seco "
                 "formats). Rerunning the same command on it resumes.", remote=True)
@click.option("--bands", help="Comma-separated bands to keep, e.g. B02,B03,B04 (default: all).")
@workers_option(help="Parallel writers [default: cores + 1, to keep the cores busy while a shard is fsync'd].")
@overwrite_option("Replace an earlier export in --out made with other settings.")
@click.option("--maxcount", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="[webdataset] Most samples per shard.")
@click.option("--maxsize", type=Size(), default="1GB", show_default=True, help="[webdataset] Most bytes per shard.")
@click.option("--seed", type=int, default=0, show_default=True, help="[webdataset] Seed of the shuffle in each shard.")
@click.option("--seasons", callback=_seasons, help="[webdataset] Season indices to keep, e.g. 0,1,2 (default: all).")
@click.option("--resample-10m", is_flag=True, help="[webdataset] One 10 m array with every band (nearest).")
@click.option("--prefix", default="seco", show_default=True, help="[webdataset] Shard file name prefix.")
@click.option("--codec", type=click.Choice(["npy", "zstd"]), default="npy", show_default=True,
              help="[webdataset] Arrays as .npy (any WebDataset decoder reads them) or zstd (.npy.zst, lossless, "
                   "about 0.6x the bytes; decoded by seco's reader).")
@click.option("--dtype", type=RegistryChoice(_dtypes), default="stored", show_default=True,
              help="[webdataset] stored: the catalog's values (uint16 DN); uint8: SeCo's 8-bit, floor(clip(DN x scale, "
                   "0, 1) x 255), half the bytes and lossless for seco-train's default RGB stretch.")
@click.option("--bits", type=RegistryChoice(_bits), default="8", show_default=True,
              help="[seco] 8-bit as the SeCo release (reflectance x 255) or 16-bit DN.")
@click.option("--compress", type=RegistryChoice(_layout_compressions), default="deflate",
              show_default=True, help="[seco, ssl4eo] GeoTIFF compression (jpeg: seco only, 8-bit, lossy, as the SeCo release).")
@click.option("--preview", is_flag=True, help="[seco] Also write SeCo-100K's RGB preview per scene.")
@json_option()
@click.pass_context
def export_cmd(ctx, catalog, fmt, out, bands, workers, overwrite, maxcount, maxsize, seed, seasons, resample_10m,
               prefix, codec, dtype, bits, compress, preview, as_json):
    """Export the catalog in CATALOG to shards or to the SeCo folder layout.

    \b
    seco-data export data/demo --format webdataset --out shards/ --maxsize 1GB
    seco-data export data/seco-1m --out shards/ --codec zstd    (rerun after the catalog grows: new shards only)
    seco-data export data/seco-1m --out shards-rgb/ --bands B04,B03,B02 --dtype uint8   (training-ready: 0.8 MB/location)
    seco-data export data/demo --format seco --out seco_layout/seasonal_contrast_100k
    seco-data export s3://bucket/cat --format seco --out s3://bucket/seasonal_contrast_100k
    seco-data export data/demo --format ssl4eo --out ssl4eo_s12
    """
    from seco_data.export import FORMATS

    per_format = {}
    for name, options in FORMATS.items():
        for o in options:
            per_format.setdefault(o, []).append(name)
    refuse_inapplicable(ctx, per_format, fmt, "--format")
    if fmt == "webdataset":
        from seco_data.export.webdataset import MANIFEST, ShardOptions, export_webdataset

        options = ShardOptions(maxcount=maxcount, maxsize=maxsize, seed=seed, bands=_csv(bands), seasons=seasons,
                               resample_10m=resample_10m, prefix=prefix, codec=codec, dtype=dtype)
        with Bar("exporting", quiet=quiet(ctx), shown=("shards",)) as bar:
            r = export_webdataset(catalog, out, options=options, workers=workers, overwrite=overwrite, progress=bar)
        if as_json:
            click.echo(json.dumps(r.to_dict(), indent=2))
        elif not quiet(ctx):
            skipped = ", ".join(f"{k} {v}" for k, v in sorted(r.skipped.items())) or "none"
            click.echo(f"exported {r.samples} samples into {r.shards} shards, "
                       f"{r.bytes / 1e9:.2f} GB in {r.seconds:.1f} s ({r.bytes / 1e6 / max(r.seconds, 1e-9):.0f} MB/s)"
                       + (f"; {r.reused_shards} shards kept from an earlier run" if r.reused_shards else ""))
            click.echo(f"locations skipped: {skipped}")
            short = _unfinished_catalog(catalog)
            if short:
                click.echo(f"note: {short}")
            click.echo(f"manifest: {join(out, MANIFEST)} (also a wids index)")
            click.echo(f"next: seco-data verify {out}")
        return

    if fmt == "ssl4eo":
        from seco_data.export.ssl4eo_layout import export_ssl4eo_layout

        with Bar("exporting", quiet=quiet(ctx)) as bar:
            r = export_ssl4eo_layout(catalog, out, compress=compress, workers=workers, overwrite=overwrite,
                                     progress=bar)
        if as_json:
            click.echo(json.dumps(r.to_dict(), indent=2))
        elif not quiet(ctx):
            click.echo(f"exported {r.locations} locations, {r.scenes} scenes, {r.files} files "
                       f"({r.bytes / 1e6:.1f} MB) to {out}/{r.split} in {r.seconds:.1f} s")
            click.echo(f"torchgeo: seco_train.torchgeo.SSL4EOS12Export(root='{out}', split='{r.split}') "
                       "(torchgeo's SSL4EOS12 reads it too, with its fixed length of 251,079)")
        return

    from seco_data.export.seco_layout import export_seco_layout

    with Bar("exporting", quiet=quiet(ctx)) as bar:
        r = export_seco_layout(catalog, out, bits=int(bits), bands=_csv(bands), compress=compress, preview=preview,
                               workers=workers, overwrite=overwrite, progress=bar)
    if as_json:
        click.echo(json.dumps(r.to_dict(), indent=2))
    elif not quiet(ctx):
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(r.skipped.items())) or "none"
        click.echo(f"exported {r.locations} locations, {r.scenes} scenes, {r.files} files "
                   f"({r.bytes / 1e6:.1f} MB) to {out} in {r.seconds:.1f} s; skipped: {skipped}")
        if isinstance(out, Path):
            click.echo(f"torchgeo: SeasonalContrastS2(root='{out.parent}', version='100k'|'1m') reads it when the "
                       "folder is named seasonal_contrast_100k or seasonal_contrast_1m")
        else:
            click.echo("torchgeo reads it from a folder: copy it down (e.g. `aws s3 sync`) into one named "
                       "seasonal_contrast_100k or seasonal_contrast_1m")


@click.command("verify", cls=SecoCommand)
@click.argument("path", type=LOCATION)
@workers_option(help="Parallel checkers [default: cores].")
@json_option("Print the report as JSON.")
@click.pass_context
def verify_cmd(ctx, path, workers, as_json):
    """Check a shard folder (counts, checksums, every sample decodes) or a catalog (every asset
    exists and matches its checksum). Exits non-zero on any mismatch, naming the files.

    \b
    seco-data verify shards/
    seco-data verify data/demo
    """
    from seco_data.errors import VerifyError
    from seco_data.export.verify import verify

    with Bar("verifying", quiet=quiet(ctx), shown=("problems",)) as bar:
        r = verify(path, workers=workers, progress=bar)
    if as_json:
        click.echo(json.dumps(r.to_dict(), indent=2))
    what = "shards" if r.kind == "shards" else "assets"
    unit = "samples" if r.kind == "shards" else "items"
    for p in r.problems[:100]:
        click.echo(f"FAIL {p}", err=True)
    if not r.ok:
        more = " (first 100 listed)" if len(r.problems) > 100 else ""
        raise VerifyError(f"{len(r.problems)} problems in {r.checked} {what} of {r.root}{more}",
                          hint=("delete the shards at fault and rerun the same `seco-data export`: it writes them again"
                                if r.kind == "shards" else
                                "rerun the same `seco-data sample` (or `seco-data import`) command with --repair full: "
                                "it collects the damaged locations again"))
    if not as_json and not quiet(ctx):
        click.echo(f"OK: {r.checked} {what}, {r.samples} {unit}, {r.bytes / 1e6:.1f} MB verified in {r.root}")
