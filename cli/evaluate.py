"""``seco-train eval`` and ``seco-train report``: downstream evaluation of pre-trained backbones."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from .base import SecoCommand, quiet
from .options import RegistryChoice, json_option, out_option, overwrite_option, workers_option
from .progress import Bar


def _benchmarks():
    from seco_train.evaluate import benchmark_names

    return benchmark_names()


def _protocols():
    from seco_train.evaluate.registry import PROTOCOLS

    return list(PROTOCOLS)


def _backbones():
    from seco_train.config import BACKBONES

    return list(BACKBONES)


def _presets():
    from seco_train.evaluate.presets import PRESETS

    return list(PRESETS)


def _devices():
    from seco_train.config import DEVICES

    return list(DEVICES)


@click.command("eval", cls=SecoCommand)
@click.argument("benchmark", type=RegistryChoice(_benchmarks))
@click.option("--weights", required=True,
              help="A run folder (its checkpoint.pt), a weights file (exported backbone, official SeCo .ckpt, "
                   "torchvision/timm/torchgeo state dict) or 'random'.")
@click.option("--root", type=click.Path(file_okay=False), help="The benchmark's data folder (default: the registry's).")
@click.option("--protocol", type=RegistryChoice(_protocols),
              help="Default: the benchmark's (EuroSAT: linear).")
@click.option("--preset", type=RegistryChoice(_presets), default="default", show_default=True,
              help="default: this project's protocol; reference: the reference scripts' recipe, value by value "
                   "(README: Evaluation presets).")
@click.option("--epochs", type=click.IntRange(min=0), help="Training epochs (default: the protocol's).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Training batch (default: the protocol's).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate (default: the protocol's).")
@click.option("--k", "k", type=click.IntRange(min=1), help="k-NN neighbours (default 20).")
@click.option("--train-frac", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Fraction of the train split (seeded, without replacement, stratified per class).")
@click.option("--seed", type=int, help="Default: the preset's (default 0, reference 42).")
@click.option("--resamples", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples of the 95 % confidence intervals (0: none).")
@click.option("--size", type=click.IntRange(min=8), help="Image size (default: the benchmark's native, EuroSAT 64).")
@click.option("--bands", type=click.Choice(["rgb", "all"]), help="EuroSAT: RGB JPEGs or the 13-band TIFs.")
@click.option("--split-file", "split_file_pairs", multiple=True, metavar="SPLIT=FILE",
              help="Override a split list, e.g. --split-file train=my_train.txt.")
@out_option(required=False, file=True,
            help="Report JSON (default: <run folder>/eval/<benchmark>-<protocol>.json, else eval/...).")
@overwrite_option("Replace an existing report.")
@click.option("--device", type=RegistryChoice(_devices), default="auto", show_default=True)
@click.option("--backbone", type=RegistryChoice(_backbones),
              help="Architecture (default: the run folder's config, else resnet18).")
@workers_option(default=0, minimum=0, help="DataLoader workers (0: in this process).")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Keep frozen features here between runs.")
@click.option("--eval-every-epoch", is_flag=True, help="finetune: evaluate every split after every epoch.")
@click.option("--restart", is_flag=True,
              help="Discard the checkpoint of an interrupted run of this report instead of resuming it.")
@json_option("Print the report's metrics as JSON.")
@click.pass_context
def eval_cmd(ctx, benchmark, weights, root, protocol, preset, epochs, batch_size, lr, k, train_frac, seed, resamples,
             size, bands, split_file_pairs, out, overwrite, device, backbone, workers, cache_dir, eval_every_epoch,
             restart, as_json):
    """Evaluate WEIGHTS on BENCHMARK (eurosat, ...) with a protocol (linear, finetune, knn).

    \b
    seco-train eval eurosat --weights runs/seco-r18 --root /data/EuroSAT --protocol linear
    seco-train eval eurosat --weights runs/seco-r18 --preset reference   # the SeCo script's recipe
    seco-train eval eurosat --weights random --protocol knn
    seco-train eval eurosat --weights seco_r18_backbone.pth --protocol finetune --epochs 30

    Fine-tuning and the reference EuroSAT recipe (the backbone runs on every batch of every epoch) save
    their epochs in <report>.checkpoint.pt: the same command run again after an interruption resumes
    there, with the numbers of an uninterrupted run. The checkpoint is deleted once the report is written.
    """

    from seco_data.errors import OutputError, UsageError
    from seco_train.evaluate import EvalConfig, default_output, evaluate, get, write_report

    pairs = []
    for text in split_file_pairs:
        if "=" not in text:
            raise UsageError(f"--split-file {text!r} is not SPLIT=FILE", hint="e.g. --split-file test=test.txt")
        pairs.append(tuple(text.split("=", 1)))
    cfg = EvalConfig(benchmark=benchmark, weights=weights, protocol=protocol, root=root, backbone=backbone,
                     epochs=epochs, batch_size=batch_size, lr=lr, k=k, train_frac=train_frac, seed=seed,
                     preset=preset, resamples=resamples,
                     device=device, size=size, num_workers=workers, cache_dir=cache_dir,
                     split_files=tuple(pairs), dataset_options=(("bands", bands),) if bands else (),
                     eval_every_epoch=eval_every_epoch)
    bench = get(benchmark)
    chosen = protocol or bench.default_protocol
    from seco_train.evaluate.presets import get_preset

    get_preset(benchmark, chosen, preset)  # refuse an unknown combination before reading any data
    out = out or default_output(cfg, chosen)
    if out.exists() and not overwrite:
        raise OutputError(f"{out} already exists", hint="pass --overwrite or choose another --out")
    checkpoint = out.with_name(out.stem + ".checkpoint.pt")
    if restart:
        checkpoint.unlink(missing_ok=True)
    cfg = dataclasses.replace(cfg, checkpoint=str(checkpoint))
    with Bar(benchmark, quiet=quiet(ctx), leave=False) as bar:
        report = evaluate(cfg, progress=bar)
    write_report(report, out, overwrite=overwrite)
    checkpoint.unlink(missing_ok=True)
    metric = report["metric"]
    if as_json:
        click.echo(json.dumps({s: {k: v for k, v in m.items() if k != "confusion_matrix"}
                               for s, m in report["metrics"].items()}, indent=1))
    elif not quiet(ctx):
        parts = []
        for s, m in report["metrics"].items():
            if metric in m:
                ci = (m.get("ci95") or {}).get(metric)
                parts.append(f"{s} {metric} {100 * m[metric]:.2f} %"
                             + (f" [95 % CI {100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if ci else ""))
        resumed = report.get("resumed_after_epoch")
        click.echo(f"{report['benchmark']} {report['protocol']} ({report['preset']} preset, "
                   f"{report['weights']['source']}): {', '.join(parts)} in {report['seconds']:.1f} s"
                   + (f" (resumed after epoch {resumed})" if resumed else ""))
        for note in report.get("split_notes", []):
            click.echo(f"note: {note}")
        if report.get("frozen_backbone"):
            click.echo(f"frozen backbone unchanged: sha256 {report['frozen_backbone']['after'][:16]}")
    click.echo(f"report: {out}")


@click.command("report", cls=SecoCommand)
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@out_option(required=False, file=True, help="Markdown file (default: print the table).")
@overwrite_option("Replace an existing --out.")
@click.option("--paired", is_flag=True,
              help="Also compare every two reports of the same benchmark scored on the same items (paired "
                   "bootstrap of the difference: interval, p-value, significant or not).")
@json_option("Print the paired comparisons as JSON.")
def report_cmd(reports, out, overwrite, paired, as_json):
    """A markdown table comparing the evaluation REPORTS (JSON files of `seco-train eval`), each headline
    metric with its 95 % bootstrap interval; --paired adds paired comparisons.

    \b
    seco-train report runs/*/eval/*.json --out results.md
    seco-train report eval/seco.json eval/moco.json --paired     # is the difference significant?
    """
    from seco_train.evaluate import write_table

    written, text, results = write_table(list(reports), out, overwrite=overwrite, paired=paired)
    if as_json:
        click.echo(json.dumps(results, indent=1))
    elif written is None:
        click.echo(text, nl=False)
    if written is not None:
        click.echo(f"{len(reports)} report(s) -> {written}")
