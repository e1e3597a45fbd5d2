"""Evaluation reports: one JSON per run (written atomically, never silently replaced), a confusion
matrix PNG beside it for multiclass benchmarks, and a markdown table across runs."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from seco_data.errors import OutputError, UsageError
from seco_data.outputs import atomic_file, write_atomic

log = logging.getLogger(__name__)

REQUIRED = ("benchmark", "protocol", "weights", "splits", "seed", "metrics", "seconds", "software")


def _atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def write_report(report: dict, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``report`` as JSON at ``path`` (atomic) and, for multiclass results, one confusion-matrix
    PNG per evaluated split (``<stem>-confusion-<split>.png``, recorded under ``report["figures"]``)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists", hint="pass --overwrite or choose another --out")
    figures = {}
    for split, m in report.get("metrics", {}).items():
        if isinstance(m, dict) and "confusion_matrix" in m:
            png = path.with_name(f"{path.stem}-confusion-{split}.png")
            _confusion_png(np.asarray(m["confusion_matrix"]), list(m.get("per_class_accuracy", {})), png,
                           f"{report['benchmark']} {report['protocol']} ({split}): top-1 {100 * m['top1']:.2f} %")
            figures[split] = png.name
    if figures:
        report = {**report, "figures": figures}
    _atomic(path, (json.dumps(report, indent=1, sort_keys=False) + "\n").encode())
    log.info("evaluation report: %s", path)
    return path


def _confusion_png(cm: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    n = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, np.maximum(rows, 1))
    fig = Figure(figsize=(1.0 + 0.6 * n, 0.8 + 0.55 * n), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    labels = classes if len(classes) == n else [str(i) for i in range(n)]
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f:
        fig.savefig(f, format="png")


def read_report(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"evaluation report {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} is not an evaluation report JSON ({e})") from None
    missing = [k for k in REQUIRED if k not in report] if isinstance(report, dict) else list(REQUIRED)
    if missing:
        raise UsageError(f"{path} is not an evaluation report: missing {', '.join(missing)}")
    return report


def _pct(v) -> str:
    return "-" if v is None else f"{100 * float(v):.2f}"


def markdown_table(reports: list[tuple[str, dict]]) -> str:
    """A markdown comparison table, one row per ``(name, report)``, sorted by benchmark then the
    headline metric on the evaluation split (test, else the last split), best first."""
    rows = []
    for name, r in reports:
        metric = r.get("metric", "top1")
        splits = r.get("metrics", {})
        main = "test" if "test" in splits else (list(splits)[-1] if splits else None)
        value = splits.get(main, {}).get(metric) if main else None
        val = splits.get("val", {}).get(metric) if main != "val" else None
        w = r.get("weights", {})
        cfg = r.get("config", {})
        rows.append((r["benchmark"], -(value if value is not None else -1), [
            r["benchmark"], r["protocol"], str(w.get("source", "?")), w.get("backbone", "?"),
            f"{metric} ({main})", _pct(value), _pct(val),
            f"{r.get('train_frac', 1.0):g}", str(cfg.get("epochs", "-")), str(r["seed"]),
            f"{r['seconds']:.0f}", f"`{name}`"]))
    rows.sort(key=lambda t: (t[0], t[1]))
    head = ["benchmark", "protocol", "weights", "backbone", "metric", "value %", "val %", "train frac",
            "epochs", "seed", "time s", "report"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for _, _, cells in rows]
    return "\n".join(lines) + "\n"


def write_table(paths: list[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Read the report JSONs ``paths`` and write their markdown table at ``out`` (atomic)."""
    if not paths:
        raise UsageError("no evaluation reports given", hint="e.g. seco-train report runs/*/eval/*.json --out results.md")
    reports = [(str(p), read_report(p)) for p in paths]
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputError(f"{out} already exists", hint="pass --overwrite or choose another --out")
    text = "# Evaluation results\n\n" + markdown_table(reports)
    _atomic(out, text.encode())
    return out
