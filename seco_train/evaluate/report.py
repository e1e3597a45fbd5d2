"""Evaluation reports: one JSON per run (written atomically, never silently replaced), the per-item
predictions beside it (``<stem>-predictions.npz``: what paired comparisons and re-bootstraps read), a
confusion matrix PNG for multiclass benchmarks, and a markdown table across runs with the 95 % intervals
and, on request, paired comparisons of reports scored on the same items."""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
from pathlib import Path

import numpy as np

from seco_data.errors import OutputError, UsageError
from seco_data.outputs import atomic_file, sha256_file, write_atomic

from . import bootstrap

log = logging.getLogger(__name__)

REQUIRED = ("benchmark", "protocol", "weights", "splits", "seed", "metrics", "seconds", "software")


def _atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def predictions_path(path: str | os.PathLike) -> Path:
    """Where the per-item predictions of the report at ``path`` live."""
    path = Path(path)
    return path.with_name(f"{path.stem}-predictions.npz")


def _write_predictions(predictions: dict, path: Path) -> dict:
    """``<stem>-predictions.npz``: per split ``<split>.ids`` (item names), ``<split>.targets`` and
    ``<split>.scores`` (change detection: ``<split>.scores`` holds each cell's TP/FP/FN/TN)."""
    arrays = {}
    for split, p in predictions.items():
        arrays[f"{split}.ids"] = np.asarray([str(i) for i in p["ids"]])
        arrays[f"{split}.scores"] = np.asarray(p["scores"])
        if p.get("targets") is not None:
            arrays[f"{split}.targets"] = np.asarray(p["targets"])
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    out = predictions_path(path)
    _atomic(out, buf.getvalue())
    return {"file": out.name, "sha256": sha256_file(out), "splits": sorted(predictions)}


def load_predictions(report_path: str | os.PathLike, split: str) -> dict:
    """``{"ids", "targets", "scores"}`` of ``split`` from the predictions file of the report at ``report_path``."""
    report_path = Path(report_path)
    report = read_report(report_path)
    ref = report.get("predictions") or {}
    path = report_path.with_name(ref["file"]) if ref.get("file") else predictions_path(report_path)
    if not path.is_file():
        raise UsageError(f"{report_path}: its predictions file {path.name} is missing",
                         hint="keep <report>-predictions.npz beside the report, or rerun the evaluation")
    if ref.get("sha256") and sha256_file(path) != ref["sha256"]:
        raise UsageError(f"{path} does not match the sha256 recorded in {report_path}",
                         hint="the predictions belong to another run: rerun the evaluation")
    with np.load(path, allow_pickle=False) as z:
        if f"{split}.scores" not in z:
            raise UsageError(f"{path} holds no {split!r} split")
        return {"ids": z[f"{split}.ids"].tolist(), "scores": z[f"{split}.scores"],
                "targets": z[f"{split}.targets"] if f"{split}.targets" in z else None}


def write_report(report: dict, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``report`` as JSON at ``path`` (atomic), its in-memory ``predictions`` as
    ``<stem>-predictions.npz`` beside it (the JSON keeps the file name and sha256) and, for multiclass
    results, one confusion-matrix PNG per evaluated split (``<stem>-confusion-<split>.png``, recorded under
    ``report["figures"]``)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists", hint="pass --overwrite or choose another --out")
    if isinstance(report.get("predictions"), dict) and report["predictions"] and "file" not in report["predictions"]:
        report = {**report, "predictions": _write_predictions(report["predictions"], path)}
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


def _with_ci(m: dict, metric: str) -> str:
    value = m.get(metric)
    ci = (m.get("ci95") or {}).get(metric)
    if value is None:
        return "-"
    return _pct(value) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci and None not in ci else "")


def headline_split(report: dict) -> str | None:
    """The split a report's headline metric is read from: its ``headline_split``, else test, else the last."""
    splits = report.get("metrics", {})
    main = report.get("headline_split")
    if main in splits:
        return main
    return "test" if "test" in splits else (list(splits)[-1] if splits else None)


def markdown_table(reports: list[tuple[str, dict]]) -> str:
    """A markdown comparison table, one row per ``(name, report)``, sorted by benchmark then the headline
    metric, best first. Values are percentages with their 95 % bootstrap interval in brackets; "other
    split" is the second evaluated split (val when the headline is test, test when it is val)."""
    rows = []
    for name, r in reports:
        metric = r.get("metric", "top1")
        splits = r.get("metrics", {})
        main = headline_split(r)
        value = splits.get(main, {}).get(metric) if main else None
        other = next((s for s in ("val", "test") if s in splits and s != main), None)
        w = r.get("weights", {})
        cfg = r.get("config", {})
        rows.append((r["benchmark"], -(value if value is not None else -1), [
            r["benchmark"], r["protocol"], r.get("preset", "default"), str(w.get("source", "?")), w.get("backbone", "?"),
            f"{metric} ({main})", _with_ci(splits.get(main, {}), metric),
            f"{other}: {_with_ci(splits[other], metric)}" if other else "-",
            f"{r.get('train_frac', 1.0):g}", str(cfg.get("epochs", "-")), str(r["seed"]),
            f"{r['seconds']:.0f}", f"`{name}`"]))
    rows.sort(key=lambda t: (t[0], t[1]))
    head = ["benchmark", "protocol", "preset", "weights", "backbone", "metric", "value % [95 % CI]", "other split %",
            "train frac", "epochs", "seed", "time s", "report"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for _, _, cells in rows]
    return "\n".join(lines) + "\n"


def compare(path_a: str | os.PathLike, path_b: str | os.PathLike, *, split: str | None = None,
            metric: str | None = None, resamples: int = bootstrap.RESAMPLES, seed: int = bootstrap.SEED) -> dict:
    """Paired bootstrap comparison of two reports of the same benchmark scored on the same items
    (their predictions files): the difference of ``metric`` (default the headline) on ``split`` (default
    the first report's headline split), its 95 % interval, p-value and whether it is significant."""
    a, b = read_report(path_a), read_report(path_b)
    if a["benchmark"] != b["benchmark"]:
        raise UsageError(f"{path_a} and {path_b} evaluate different benchmarks ({a['benchmark']} vs {b['benchmark']})")
    split = split or headline_split(a)
    metric = metric or a.get("metric", "top1")
    pa, pb = load_predictions(path_a, split), load_predictions(path_b, split)
    if pa["ids"] != pb["ids"]:
        raise UsageError(f"{path_a} and {path_b} were not scored on the same {split} items "
                         f"({len(pa['ids'])} vs {len(pb['ids'])}, or in another order)",
                         hint="compare evaluations made with the same split lists")
    task = a.get("task", "multiclass")
    if task != "change" and not np.array_equal(pa["targets"], pb["targets"]):
        raise UsageError(f"{path_a} and {path_b} have different targets for the same {split} items")
    result = bootstrap.paired(task, pa["targets"], pa["scores"], pb["scores"], metric, count=resamples, seed=seed)
    return {"a": str(path_a), "b": str(path_b), "benchmark": a["benchmark"], "split": split, "n": len(pa["ids"]),
            **result}


def comparison_lines(results: list[dict]) -> str:
    """Markdown for paired comparisons (one row per pair)."""
    head = ["A", "B", "split", "n", "metric", "A %", "B %", "A - B (points) [95 % CI]", "p", "significant"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        lo, hi = r["ci95"]
        lines.append("| " + " | ".join([
            f"`{r['a']}`", f"`{r['b']}`", r["split"], str(r["n"]), r["metric"], _pct(r["value_a"]), _pct(r["value_b"]),
            f"{100 * r['difference']:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]", f"{r['p_value']:.3g}",
            "yes" if r["significant"] else "no"]) + " |")
    return "\n".join(lines) + "\n"


def table_markdown(paths: list[str | os.PathLike], *, paired: bool = False) -> tuple[str, list[dict]]:
    """The report table of ``paths`` and, with ``paired``, the paired comparisons of every two reports of the
    same benchmark scored on the same items (pairs that cannot be paired are skipped with a note)."""
    if not paths:
        raise UsageError("no evaluation reports given", hint="e.g. seco-train report runs/*/eval/*.json --out results.md")
    reports = [(str(p), read_report(p)) for p in paths]
    text = "# Evaluation results\n\nValues in % with 95 % bootstrap intervals in brackets.\n\n" + markdown_table(reports)
    results, skipped = [], []
    if paired:
        for (na, ra), (nb, rb) in itertools.combinations(reports, 2):
            if ra["benchmark"] != rb["benchmark"]:
                continue
            try:
                r = compare(na, nb)
            except UsageError as e:
                skipped.append(f"- `{na}` vs `{nb}`: {e.one_line()}")
                continue
            results.append(r)
        text += "\n## Paired comparisons (paired bootstrap over the same items)\n\n"
        text += comparison_lines(results) if results else "No two reports were scored on the same items.\n"
        if skipped:
            text += "\nNot compared:\n" + "\n".join(skipped) + "\n"
    return text, results


def write_table(paths: list[str | os.PathLike], out: str | os.PathLike | None, *, overwrite: bool = False,
                paired: bool = False) -> tuple[Path | None, str, list[dict]]:
    """Read the report JSONs ``paths`` and write their markdown table (and paired comparisons) at ``out``
    (atomic); ``out=None`` writes nothing. Returns (out, the markdown, the comparisons)."""
    if out is not None and Path(out).exists() and not overwrite:
        raise OutputError(f"{out} already exists", hint="pass --overwrite or choose another --out")
    text, results = table_markdown(paths, paired=paired)
    if out is not None:
        out = Path(out)
        _atomic(out, text.encode())
    return out, text, results
