"""Downstream evaluation: one evaluator over a registry of benchmarks (SECO.md section 3).

    from seco_train.evaluate import EvalConfig, evaluate, write_report
    report = evaluate(EvalConfig("eurosat", weights="runs/seco-r18", protocol="linear"))  # preset="reference"
    write_report(report, "runs/seco-r18/eval/eurosat-linear.json")

New benchmarks: ``registry.register(Benchmark(...))`` (see ``registry`` for the dataset interface).
"""

from .evaluator import EvalConfig, default_output, evaluate, train_subset
from .protocols import DEFAULTS, FrozenBackboneChanged, ProtocolConfig, ProtocolResult, finetune, knn, linear
from .registry import BENCHMARKS, Benchmark, get, register
from .registry import names as benchmark_names
from .presets import PRESETS, Preset, get_preset
from .report import compare, load_predictions, markdown_table, read_report, write_report, write_table

__all__ = ["BENCHMARKS", "DEFAULTS", "PRESETS", "Benchmark", "EvalConfig", "benchmark_names", "FrozenBackboneChanged",
           "Preset", "ProtocolConfig", "ProtocolResult", "compare", "default_output", "evaluate", "finetune", "get",
           "get_preset", "knn", "linear", "load_predictions", "markdown_table", "read_report", "register",
           "train_subset", "write_report", "write_table"]
