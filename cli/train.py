"""``seco-train``: pre-train with Seasonal Contrast, export the backbone, compute band statistics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from seco_train import __version__

from .base import quiet, root_group
from .options import json_option, out_option, overwrite_option
from .progress import Bar


@root_group(__version__, "seco-train")
def main():
    """Pre-train encoders with Seasonal Contrast and evaluate them (needs `pip install seco[train]`)."""


def _overrides(pairs: tuple[str, ...]) -> dict:
    from seco_data.config import parse_override
    from seco_train.config import CONFIG

    return dict(parse_override(text, CONFIG) for text in pairs)


@main.command()
@click.argument("shards")
@out_option(help="Run folder: config, checkpoint, metrics, loss curve.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML run config (defaults: the SeCo paper's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any config key, e.g. --set optim.lr=0.06 --set model.backbone=resnet50.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--gpus", type=click.IntRange(min=1), default=None,
              help="Launch this many processes on this machine with torchrun (one per GPU).")
@json_option()
@click.pass_context
def run(ctx, shards, out, config_path, sets, resume, gpus, as_json):
    """Pre-train on the shards SHARDS (a folder, shards.json, a glob or a brace pattern).

    \b
    seco-train run shards/ --out runs/seco-r18
    seco-train run 'shards/seco-{000000..000999}.tar' --config run.yaml --set optim.lr=0.06
    seco-train run shards/ --out runs/r50 --gpus 8       # or: torchrun --nproc_per_node 8 -m seco_train run ...
    seco-train run shards/ --out runs/seco-r18 --resume  # after a crash or preemption
    """
    if gpus and gpus > 1 and "WORLD_SIZE" not in os.environ:
        args, skip = [], False
        for a in sys.argv[1:]:  # the same command line, less --gpus N / --gpus=N
            if skip or a.startswith("--gpus="):
                skip = False
                continue
            if a == "--gpus":
                skip = True
                continue
            args.append(a)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
               "-m", "seco_train", *args]
        ctx.exit(subprocess.call(cmd))
    from seco_train.config import load_config
    from seco_train.train import train

    overrides = {"data.shards": shards, **_overrides(sets)}
    cfg = load_config(config_path, overrides)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    shown = ("loss", "acc_0", "acc_1", "acc_2", "images_per_s")
    with Bar("training", quiet=quiet(ctx) or not main_rank, shown=shown) as bar:
        report = train(cfg, out, resume=resume, progress=bar)
    if not main_rank:
        return
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif not quiet(ctx):
        last = ", ".join(f"{k} {v:.3f}" for k, v in report.last.items())
        click.echo(f"trained {report.steps} steps (to step {report.total_steps}) in {report.seconds:.1f} s, "
                   f"{report.images_per_s:.0f} images/s; last: {last}")
        click.echo(f"run: {out}  (checkpoint.pt, metrics.csv, loss.png, tb/)")
        click.echo(f"next: seco-train export {out} --out {out.name}_backbone.pth")


@main.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@out_option(file=True, help="Where to write the backbone's state dict (torchvision ResNet layout, no fc).")
@overwrite_option("Replace an existing --out file and its model card.")
@click.option("--schemas", type=click.Path(file_okay=False, path_type=Path), envvar="SECO_STAC_SCHEMAS",
              help="Core STAC schema folder (env SECO_STAC_SCHEMAS): validate the model card's STAC item offline.")
@json_option("Print what was written as JSON.")
def export_cmd(run, out, overwrite, schemas, as_json):
    """Write the query backbone of RUN (a run folder or checkpoint) as torchvision-compatible weights, with
    beside it a model card (OUT stem + .md) and a STAC item with the ML Model extension (.item.json): the
    bands and their order, stretch and normalisation, input size, the pre-training data's fingerprint and
    recipe, and RUN's evaluation reports (copied into OUT stem + -eval/).

    \b
    seco-train export runs/seco-r18 --out seco_r18_backbone.pth
    seco-train export runs/seco-r18 --out seco_r18_backbone.pth --schemas ../shared/stac-schemas
    """
    from seco_train.modelcard import export_model

    result = export_model(run, out, overwrite=overwrite, schemas=schemas)
    if as_json:
        click.echo(json.dumps({"weights": str(result.weights), "item": str(result.item) if result.item else None,
                               "card": str(result.card) if result.card else None,
                               "reports": [str(p) for p in result.reports]}, indent=1))
        return
    click.echo(f"backbone weights: {out}  (torchvision.models.resnet*(); model.fc = Identity(); load_state_dict)")
    if result.item is not None:
        checked = " (validated)" if schemas else ""
        click.echo(f"model card: {result.card}; STAC item{checked}: {result.item}; {len(result.reports)} evaluation "
                   f"report(s)")
        click.echo(f"load: seco_train.weights.load_backbone('{result.item}', with_transform=True)")
    else:
        click.echo("no model card: the checkpoint does not say how its inputs were prepared")


@main.command()
@click.argument("shards")
@out_option(file=True, help="Statistics JSON.")
@click.option("--bands", help="Comma-separated bands (default: every band of the shards).")
@click.option("--max-samples", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Locations read (a seeded sample).")
@click.option("--seed", type=int, default=0, show_default=True)
@overwrite_option("Replace an existing --out file.")
def stats(shards, out, bands, max_samples, seed, overwrite):
    """Per-band mean, std and 2 %/98 % quantiles (reflectance) of SHARDS, for `--set data.stretch=stats`.

    \b
    seco-train stats shards/ --out stats.json
    seco-train run shards/ --out runs/s2-all --set data.stretch=stats --set data.stats=stats.json \\
        --set data.bands=B02,B03,B04,B05,B06,B07,B08,B8A,B11,B12
    """
    from seco_data.errors import OutputError
    from seco_data.outputs import write_json
    from seco_train.stats import compute_stats

    if out.exists() and not overwrite:
        raise OutputError(f"{out} already exists", hint="pass --overwrite to replace it, or choose another --out")
    wanted = tuple(b.strip() for b in bands.split(",")) if bands else None
    result = compute_stats(shards, bands=wanted, max_samples=max_samples, seed=seed)
    write_json(out, result)
    per_band = result.get("bands", result)
    for band, s in per_band.items():
        click.echo(f"{band}: mean {s['mean']:.4f} std {s['std']:.4f}")
    click.echo(f"statistics: {out}")


from .evaluate import eval_cmd, report_cmd  # noqa: E402

main.add_command(eval_cmd, "eval")
main.add_command(report_cmd, "report")
