"""95 % bootstrap intervals and paired comparisons, checked against a direct bootstrap (resample the items,
recompute the metric with scikit-learn, take the percentiles); reports and `seco-train report --paired`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from seco_train.evaluate import bootstrap


def _direct(n, count, seed, metric):
    """The bootstrap written out: rng.integers(0, n, n) per resample, the metric of those items."""
    rng = np.random.default_rng(seed)
    return np.asarray([metric(rng.integers(0, n, n)) for _ in range(count)])


def test_top1_interval_equals_a_direct_bootstrap():
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 700)
    scores = rng.random((700, 10))
    scores[np.arange(700), y] += rng.random(700) < 0.6  # ~60 % right
    pred = scores.argmax(1)
    values = _direct(700, 300, 5, lambda i: accuracy_score(y[i], pred[i]))
    got = bootstrap.confidence_intervals("multiclass", y, scores, count=300, seed=5)
    np.testing.assert_allclose(got["top1"], np.percentile(values, [2.5, 97.5]), rtol=0, atol=1e-12)
    assert got["top1"][0] < accuracy_score(y, pred) < got["top1"][1]
    # the interval's width is what the binomial standard error says (about 2 x 1.96 x 0.0185 here)
    p = accuracy_score(y, pred)
    assert got["top1"][1] - got["top1"][0] == pytest.approx(2 * 1.96 * np.sqrt(p * (1 - p) / 700), rel=0.15)


def test_map_intervals_equal_a_direct_bootstrap_with_ties_and_absent_classes():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(2)
    y = (rng.random((150, 6)) < 0.25).astype(int)
    y[:, 5] = 0
    y[:3, 5] = 1  # a rare class: absent from many resamples, then left out of the macro mean
    s = np.round(y * 0.3 + rng.random((150, 6)), 1)  # many ties

    def micro(i):
        return average_precision_score(y[i].ravel(), s[i].ravel())

    def macro(i):
        keep = y[i].any(axis=0)
        return average_precision_score(y[i][:, keep], s[i][:, keep], average="macro")

    got = bootstrap.confidence_intervals("multilabel", y, s, count=200, seed=3)
    np.testing.assert_allclose(got["map_micro"], np.percentile(_direct(150, 200, 3, micro), [2.5, 97.5]), atol=1e-12)
    np.testing.assert_allclose(got["map_macro"], np.percentile(_direct(150, 200, 3, macro), [2.5, 97.5]), atol=1e-12)


def test_change_f1_interval_resamples_grid_cells():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(4)
    cells = [(rng.random(96 * 96) < 0.05, rng.random(96 * 96) < 0.5) for _ in range(40)]
    preds = [np.where(u, t, rng.random(t.size) < 0.03) for t, u in cells]
    counts = np.asarray([(int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum()), int((~p & ~t).sum()))
                         for p, (t, _) in zip(preds, cells)])

    def f1(i):
        return f1_score(np.concatenate([cells[k][0] for k in i]), np.concatenate([preds[k] for k in i]))

    got = bootstrap.confidence_intervals("change", None, counts, count=100, seed=0)
    np.testing.assert_allclose(got["f1"], np.percentile(_direct(40, 100, 0, f1), [2.5, 97.5]), atol=1e-12)


def test_paired_comparison_equals_a_direct_paired_bootstrap():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 500)
    good = np.eye(3)[np.where(rng.random(500) < 0.75, y, rng.integers(0, 3, 500))]
    worse = np.eye(3)[np.where(rng.random(500) < 0.70, y, rng.integers(0, 3, 500))]
    r = bootstrap.paired("multiclass", y, good, worse, "top1", count=400, seed=9)
    a, b = good.argmax(1) == y, worse.argmax(1) == y
    diffs = _direct(500, 400, 9, lambda i: a[i].mean() - b[i].mean())
    assert r["difference"] == pytest.approx(a.mean() - b.mean())
    np.testing.assert_allclose(r["ci95"], np.percentile(diffs, [2.5, 97.5]), atol=1e-12)
    assert r["p_value"] == pytest.approx(min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0))))
    assert r["significant"] == (r["ci95"][0] > 0 or r["ci95"][1] < 0)
    same = bootstrap.paired("multiclass", y, good, good, "top1", count=50)
    assert same["difference"] == 0 and same["p_value"] == 1.0 and not same["significant"]


def test_reference_batch_mean_is_the_mean_over_full_batches():
    y = np.array([0, 1, 1, 0, 1, 1, 0])
    scores = np.eye(2)[[0, 1, 0, 0, 1, 0, 1]]  # right, right, wrong, right | right, wrong | (dropped)
    assert bootstrap.batch_mean("multiclass", y, scores, 4) == pytest.approx(0.75)
    assert bootstrap.batch_mean("multiclass", y, scores, 2) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert bootstrap.batch_mean("multiclass", y, scores, 8) is None


def _report(tmp_path, name, y, scores, **extra):
    from seco_train.evaluate import metrics, write_report

    m = metrics.summarise("multiclass", y, scores, [str(c) for c in range(scores.shape[1])])
    m["ci95"] = bootstrap.confidence_intervals("multiclass", y, scores, count=200)
    report = {"benchmark": "eurosat", "task": "multiclass", "metric": "top1", "protocol": "linear",
              "preset": "default", "headline_split": "test", "weights": {"source": name, "backbone": "resnet18"},
              "splits": {}, "seed": 0, "metrics": {"test": m}, "seconds": 1.0, "software": {}, "config": {"epochs": 1},
              "predictions": {"test": {"ids": [f"img{i}" for i in range(len(y))], "targets": y, "scores": scores}},
              **extra}
    return write_report(report, tmp_path / f"{name}.json")


def test_report_cli_shows_intervals_and_pairs_reports(tmp_path):
    from seco_cli.train import main

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 2000)
    strong = np.eye(4)[np.where(rng.random(2000) < 0.9, y, rng.integers(0, 4, 2000))]
    weak = np.eye(4)[np.where(rng.random(2000) < 0.6, y, rng.integers(0, 4, 2000))]
    close = np.eye(4)[np.where(rng.random(2000) < 0.6, y, rng.integers(0, 4, 2000))]
    a, b, c = (_report(tmp_path, n, y, s) for n, s in (("strong", strong), ("weak", weak), ("close", close)))
    assert (tmp_path / "strong-predictions.npz").is_file()
    assert json.loads(a.read_text())["predictions"]["file"] == "strong-predictions.npz"

    r = CliRunner().invoke(main, ["report", str(a), str(b), str(c), "--paired", "--json"])
    assert r.exit_code == 0, r.output
    pairs = {(p["a"].split("/")[-1], p["b"].split("/")[-1]): p for p in json.loads(r.output)}
    assert pairs[("strong.json", "weak.json")]["significant"] and pairs[("strong.json", "weak.json")]["p_value"] < 0.01
    assert pairs[("weak.json", "close.json")]["ci95"][0] < 0 < pairs[("weak.json", "close.json")]["ci95"][1]
    assert not pairs[("weak.json", "close.json")]["significant"]

    out = tmp_path / "table.md"
    r = CliRunner().invoke(main, ["report", str(a), str(b), "--paired", "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    lo, hi = json.loads(a.read_text())["metrics"]["test"]["ci95"]["top1"]
    assert f"[{100 * lo:.2f}, {100 * hi:.2f}]" in text and "| yes |" in text
    # different items: refused for the pair, with the reason, not an error
    other = _report(tmp_path, "other", y[:100], strong[:100])
    r = CliRunner().invoke(main, ["report", str(a), str(other), "--paired"])
    assert r.exit_code == 0 and "not scored on the same test items" in r.output
    # a report whose predictions file is gone cannot be paired
    (tmp_path / "weak-predictions.npz").unlink()
    r = CliRunner().invoke(main, ["report", str(a), str(b), "--paired"])
    assert "predictions file weak-predictions.npz is missing" in r.output
