"""``seco-train``: pre-training and evaluation commands (model, trainer and evaluations follow)."""

from __future__ import annotations

import click

from seco_train import __version__

from .base import SecoGroup, configure_logging, verbosity_options


@click.group(cls=SecoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seco-train")
@verbosity_options
@click.pass_context
def main(ctx, verbose, quiet):
    """Pre-train encoders with Seasonal Contrast and evaluate them (needs `pip install seco[train]`)."""
    ctx.obj = {"verbosity": verbose - quiet}
    configure_logging(verbose - quiet)
