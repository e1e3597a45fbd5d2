"""Multi-label average precision over a whole split (BigEarthNet's micro and macro mAP).

Average precision is scikit-learn's ``average_precision_score`` definition, the step-wise area
``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds in decreasing order (tied
scores form one threshold). ``macro`` is the mean of the per-class APs over the classes that have at
least one positive in the split (a class without positives has no defined AP; scikit-learn warns and
scores it 0, which would penalise a model for the split's content); ``micro`` is the AP of all
(sample, class) pairs pooled. Scores are accumulated for the whole split first: never averaged per
batch (SECO.md section 3).
"""

from __future__ import annotations

import numpy as np

from seco_data.errors import UsageError


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """AP of one binary problem; ``nan`` when ``targets`` holds no positive."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    targets = np.asarray(targets).ravel()
    if scores.shape != targets.shape:
        raise UsageError(f"scores and targets differ in size: {scores.shape} vs {targets.shape}")
    if not np.isin(targets, (0, 1)).all():
        raise UsageError("targets must be 0 or 1")
    positives = int(targets.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], targets[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct threshold
    tp = np.cumsum(t)[last]
    precision = tp / (last + 1)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multilabel_average_precision(scores: np.ndarray, targets: np.ndarray) -> dict:
    """``{"micro", "macro", "per_class", "classes_scored"}`` of (N, C) scores and 0/1 targets.

    ``per_class`` holds ``nan`` for classes without a positive; ``macro`` averages the others and
    ``classes_scored`` says how many that was.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise UsageError(f"scores and targets must both be (N, C); got {scores.shape} and {targets.shape}")
    if scores.shape[0] == 0:
        raise UsageError("no samples to score")
    per_class = [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]
    scored = [ap for ap in per_class if not np.isnan(ap)]
    if not scored:
        raise UsageError("no class has a positive sample: mAP is undefined")
    return {
        "micro": average_precision(scores, targets),
        "macro": float(np.mean(scored)),
        "per_class": per_class,
        "classes_scored": len(scored),
    }


class MultilabelAP:
    """Accumulate batches of (scores, targets), then :meth:`compute` over everything seen."""

    def __init__(self):
        self._scores: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []

    def update(self, scores, targets) -> None:
        """Add a batch; torch tensors are detached and moved to the CPU."""
        self._scores.append(_numpy(scores).astype(np.float64))
        self._targets.append(_numpy(targets))

    def compute(self) -> dict:
        if not self._scores:
            raise UsageError("MultilabelAP.compute() before any update()")
        return multilabel_average_precision(np.concatenate(self._scores), np.concatenate(self._targets))


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)
