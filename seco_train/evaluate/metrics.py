"""Evaluation metrics in NumPy, always over a whole split (never averaged per batch).

Multiclass: :func:`top1`, :func:`per_class_accuracy`, :func:`confusion_matrix`.
Multilabel: :func:`average_precision` (micro / macro mAP, scikit-learn's step-wise definition).
Change detection: :func:`binary_scores` (precision, recall, F1 of the positive class).
:func:`summarise` turns a task's targets and scores into the metrics dict a report records.
"""

from __future__ import annotations

import numpy as np

from seco_data.errors import UsageError


def _labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise UsageError(f"expected a 1-d array of class indices, got shape {y.shape}")
    return y.astype(np.int64)


def top1(y_true, y_pred) -> float:
    """Fraction of samples whose predicted class is the true one (0.0 for an empty split)."""
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape:
        raise UsageError(f"targets and predictions differ in length: {t.shape[0]} vs {p.shape[0]}")
    return float((t == p).mean()) if t.size else 0.0


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """``C[i, j]``: samples of true class ``i`` predicted as ``j`` (int64, ``num_classes`` square)."""
    t, p = _labels(y_true), _labels(y_pred)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise UsageError(f"class indices must lie in [0, {num_classes})")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Recall of every class (diagonal / row sums); NaN for a class absent from ``y_true``."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    rows = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, np.diag(cm) / np.maximum(rows, 1), np.nan)


def _ap(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision of one binary problem: ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds."""
    pos = y.sum()
    if pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # last index of every distinct score
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def average_precision(y_true, scores, average: str = "macro") -> float:
    """mAP of multi-hot targets ``(N, C)`` against scores ``(N, C)``.

    ``macro``: mean of the per-class APs over classes with at least one positive; ``micro``: the AP of
    all (sample, class) pairs pooled. Equal to scikit-learn's ``average_precision_score``.
    """
    y, s = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 2:
        raise UsageError(f"targets and scores must both be (N, C), got {y.shape} and {s.shape}")
    y = (y > 0).astype(np.int64)
    if average == "micro":
        return _ap(y.ravel(), s.ravel())
    if average == "macro":
        aps = [_ap(y[:, c], s[:, c]) for c in range(y.shape[1]) if y[:, c].any()]
        return float(np.mean(aps)) if aps else float("nan")
    raise UsageError(f"average must be 'micro' or 'macro', not {average!r}")


def binary_scores(y_true, y_pred) -> dict[str, float]:
    """Precision, recall and F1 of the positive class (1) of binary labels (0 where undefined)."""
    t, p = np.asarray(y_true).ravel() > 0, np.asarray(y_pred).ravel() > 0
    tp = int(np.sum(t & p))
    fp, fn = int(np.sum(~t & p)), int(np.sum(t & ~p))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def summarise(task: str, targets: np.ndarray, scores: np.ndarray, classes: list[str]) -> dict:
    """The metrics a report records for ``task``: ``targets`` are class indices (multiclass) or
    multi-hot rows (multilabel); ``scores`` are ``(N, C)`` (probabilities, votes or logits)."""
    n = len(classes)
    if task == "multiclass":
        pred = np.asarray(scores).argmax(axis=1) if len(scores) else np.zeros(0, np.int64)
        per_class = per_class_accuracy(targets, pred, n)
        return {
            "n": int(len(targets)),
            "top1": top1(targets, pred),
            "per_class_accuracy": {c: (None if np.isnan(a) else float(a)) for c, a in zip(classes, per_class)},
            "confusion_matrix": confusion_matrix(targets, pred, n).tolist(),
        }
    if task == "multilabel":
        y = np.asarray(targets)
        per_class = [(_ap((y[:, c] > 0).astype(np.int64), np.asarray(scores, np.float64)[:, c])) for c in range(n)]
        return {
            "n": int(len(y)),
            "map_micro": average_precision(y, scores, "micro"),
            "map_macro": average_precision(y, scores, "macro"),
            "per_class_ap": {c: (None if np.isnan(a) else float(a)) for c, a in zip(classes, per_class)},
        }
    raise UsageError(f"no generic metrics for task {task!r}: its benchmark must compute them itself")
