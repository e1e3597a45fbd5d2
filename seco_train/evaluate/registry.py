"""The benchmark registry: one entry per downstream task, one evaluator (``evaluator.evaluate``) for all.

A benchmark supplies its dataset, number of classes, metric and default protocol. The generic
protocols (``linear``, ``finetune``, ``knn``) work for ``task="multiclass"`` and ``"multilabel"``;
a benchmark whose task they do not cover (``"change"``: OSCD) supplies ``run``, its own protocol
runner, and the evaluator calls it instead.

The dataset interface (what ``Benchmark.dataset(root, split, **options)`` must return):

- a ``torch.utils.data.Dataset``; item ``i`` is ``(image, target)``: ``image`` a float tensor
  ``C x H x W`` already normalised exactly as in pre-training, ``target`` an int class index
  (multiclass) or a float multi-hot tensor of ``num_classes`` (multilabel);
- ``classes``: the class names in label order (``len == num_classes``);
- ``targets``: every item's target, without reading images (``(N,)`` ints or ``(N, C)`` multi-hot), for
  stratified subsets and k-NN;
- ``in_channels``: bands per image (the backbone's first convolution);
- ``split_files``: the files that define the split (recorded in reports with their sha256);
- ``fingerprint``: a string that changes whenever the items or their preprocessing change (the
  on-disk feature cache key).

``options`` the evaluator passes: ``split_file`` (a path or None) and ``size`` (the protocol's image
size), plus whatever the benchmark accepts (``bands`` for EuroSAT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from seco_data.errors import UsageError

TASKS = ("multiclass", "multilabel", "change")
PROTOCOLS = ("linear", "finetune", "knn")


@dataclass(frozen=True)
class Benchmark:
    name: str
    #: "multiclass" | "multilabel" | "change"
    task: str
    num_classes: int
    #: the headline metric's key in a split's metrics ("top1", "map_micro", "f1")
    metric: str
    default_protocol: str
    #: ``dataset(root, split, **options) -> Dataset`` (interface: module docstring)
    dataset: Callable[..., torch.utils.data.Dataset]
    #: where the data lives when ``--root`` is not given (relative paths: to the working directory)
    default_root: str | None = None
    #: native image size in pixels (the protocols' default size)
    size: int = 64
    #: the splits the evaluator reads: the first trains, the others are evaluated
    splits: tuple[str, ...] = ("train", "val", "test")
    #: protocols this benchmark accepts
    protocols: tuple[str, ...] = PROTOCOLS
    #: custom runner for tasks the generic protocols do not cover (``task="change"``):
    #: ``run(benchmark, backbone, config, *, evals, train, progress, options) -> dict`` of metrics per split
    #: (``options``: the preset's model options; a split's ``tiles`` entry, if any, holds the bootstrap units)
    run: Callable[..., dict] | None = None
    description: str = ""

    def __post_init__(self):
        if self.task not in TASKS:
            raise UsageError(f"benchmark {self.name!r}: task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.num_classes < 1:
            raise UsageError(f"benchmark {self.name!r}: num_classes must be >= 1")
        if self.default_protocol not in self.protocols:
            raise UsageError(f"benchmark {self.name!r}: default protocol {self.default_protocol!r} "
                             f"is not among its protocols {self.protocols}")
        if self.task == "change" and self.run is None:
            raise UsageError(f"benchmark {self.name!r}: task 'change' needs a custom runner (run=...)")


BENCHMARKS: dict[str, Benchmark] = {}


def register(b: Benchmark, *, replace: bool = False) -> Benchmark:
    """Add ``b`` to :data:`BENCHMARKS` (refuses to replace an entry unless ``replace``)."""
    if b.name in BENCHMARKS and not replace and BENCHMARKS[b.name] is not b:
        raise UsageError(f"benchmark {b.name!r} is already registered")
    BENCHMARKS[b.name] = b
    return b


def get(name: str) -> Benchmark:
    """The registered benchmark ``name`` (built-ins are registered on first use)."""
    _builtins()
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise UsageError(f"unknown benchmark {name!r}: expected one of {', '.join(sorted(BENCHMARKS))}") from None


def names() -> list[str]:
    """The names of every registered benchmark (built-ins included)."""
    _builtins()
    return sorted(BENCHMARKS)


def _builtins() -> None:
    """Import the modules that register the built-in benchmarks (each calls :func:`register`)."""
    import importlib

    for module in ("eurosat", "bigearthnet", "oscd"):
        try:
            importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{module}":  # a missing dependency inside an existing module
                raise
