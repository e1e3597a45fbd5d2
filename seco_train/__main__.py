"""``python -m seco_train ...``: the seco-train command line (what torchrun launches)."""

from seco_cli.train import main

main(prog_name="seco-train")
