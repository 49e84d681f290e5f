"""gapline.evaluate.scoring against scikit-learn (the reference), plus the conventions sklearn lacks:
hand-computed ECE, NaN for undefined values, the top-k omission rule."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as skm

from gapline.config.tasks import EPOCH_METRICS, FINAL_METRICS
from gapline.evaluate import scoring

SEEDS = (0, 1, 2)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def multiclass_data(seed, n=300, k=6):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    return y, softmax(logits)


def binary_data(seed, n=400, ties=True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    if ties:  # many tied scores, across both classes
        p = np.round(p, 1)
    return y, p.reshape(-1, 1)


def multilabel_data(seed, n=300, labels=5):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=(n, labels)) < rng.uniform(0.1, 0.6, labels)).astype("int64")
    p = np.clip(0.35 * y + rng.uniform(0, 0.65, (n, labels)), 0, 1)
    return y, np.round(p, 2)


# --- against scikit-learn --------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_multilabel_nll_is_the_mean_binary_log_loss_and_confident_mistakes_are_clipped(seed):
    y, p = multilabel_data(seed)
    got = scoring.scores("multilabel", y, p, ["nll"])["nll"]
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    assert got == pytest.approx(np.mean([skm.log_loss(y[:, j], clipped[:, j], labels=[0, 1]) for j in range(y.shape[1])]))
    # a probability of exactly 0 for the true class costs -log(1e-7), not infinity
    assert scoring.scores("multiclass", np.array([0]), np.array([[0.0, 1.0]]), ["nll"])["nll"] == pytest.approx(-math.log(1e-7))


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_matches_sklearn(seed):
    y, p = multiclass_data(seed)
    hard = p.argmax(axis=1)
    got = scoring.scores("multiclass", y, p, FINAL_METRICS["multiclass"], top_k=3)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, hard))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, hard, average="macro"))
    assert got["top3_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, p, k=3, labels=range(6)))
    assert got["nll"] == pytest.approx(skm.log_loss(y, p, labels=range(6)))
    assert "top_k_accuracy" not in got and set(got) == {"accuracy", "macro_f1", "top3_accuracy", "ece", "nll"}


def test_multiclass_macro_f1_counts_classes_present_in_y_or_predicted():
    # 5 output columns; class 4 never appears nor is predicted, class 3 only predicted.
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.full((6, 5), 0.01)
    for i, c in enumerate([0, 1, 1, 1, 2, 3]):
        p[i, c] = 0.96
    hard = p.argmax(axis=1)
    got = scoring.scores("multiclass", y, p, ["macro_f1"])["macro_f1"]
    assert got == pytest.approx(skm.f1_score(y, hard, average="macro"))
    assert got == pytest.approx(skm.f1_score(y, hard, average="macro", labels=[0, 1, 2, 3]))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", (0.5, 0.3))
def test_binary_matches_sklearn(seed, threshold):
    y, p = binary_data(seed)
    flat = p.ravel()
    hard = (flat >= threshold).astype(int)
    got = scoring.scores("binary", y, p, FINAL_METRICS["binary"], threshold=threshold)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, flat))
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, flat))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, hard))
    assert got["f1"] == pytest.approx(skm.f1_score(y, hard))
    assert got["precision"] == pytest.approx(skm.precision_score(y, hard))
    assert got["recall"] == pytest.approx(skm.recall_score(y, hard))
    assert got["nll"] == pytest.approx(skm.log_loss(y, np.clip(flat, 1e-7, 1 - 1e-7)))
    # the same on (n,) predictions
    assert scoring.scores("binary", y, flat, ["auc"])["auc"] == got["auc"]


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_without_ties_matches_sklearn(seed):
    y, p = binary_data(seed, ties=False)
    got = scoring.scores("binary", y, p, ["auc", "pr_auc"])
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, p.ravel()))
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, p.ravel()))


@pytest.mark.parametrize("seed", SEEDS)
def test_curves_match_sklearn(seed):
    y, p = binary_data(seed)
    fpr, tpr, thr = scoring.roc_curve(y, p)
    ref = skm.roc_curve(y, p.ravel(), drop_intermediate=False)
    for a, b in zip((fpr, tpr, thr), ref):
        np.testing.assert_allclose(a, b)
    prec, rec, thr = scoring.pr_curve(y, p)
    ref = skm.precision_recall_curve(y, p.ravel())
    for a, b in zip((prec, rec, thr), ref):
        np.testing.assert_allclose(a, b)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", (0.5, 0.4))
def test_multilabel_matches_sklearn(seed, threshold):
    y, p = multilabel_data(seed)
    hard = (p >= threshold).astype(int)
    got = scoring.scores("multilabel", y, p, FINAL_METRICS["multilabel"], threshold=threshold)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, p, average="macro"))
    assert got["subset_accuracy"] == pytest.approx(skm.accuracy_score(y, hard))
    assert got["micro_f1"] == pytest.approx(skm.f1_score(y, hard, average="micro"))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, hard, average="macro"))


def test_multilabel_auc_and_macro_f1_skip_labels_without_both_classes():
    y, p = multilabel_data(0, labels=4)
    y[:, 2] = 0  # never positive in y ...
    p[:, 2] = 0.1  # ... and never predicted: no F1, no AUC
    y[:, 3] = 1  # always positive: no AUC, but an F1
    got = scoring.scores("multilabel", y, p, ["auc", "macro_f1"])
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y[:, :2], p[:, :2], average="macro"))
    hard = (p >= 0.5).astype(int)
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, hard, average="macro", labels=[0, 1, 3]))


def test_per_label_and_per_class_match_sklearn():
    y, p = multilabel_data(1, labels=3)
    rows = scoring.per_label(y, p, 0.5, ["a", "b", "c"])
    hard = (p >= 0.5).astype(int)
    assert [r["label"] for r in rows] == ["a", "b", "c"]
    for j, row in enumerate(rows):
        assert row["auc"] == pytest.approx(skm.roc_auc_score(y[:, j], p[:, j]))
        assert row["f1"] == pytest.approx(skm.f1_score(y[:, j], hard[:, j]))
        assert row["precision"] == pytest.approx(skm.precision_score(y[:, j], hard[:, j]))
        assert row["recall"] == pytest.approx(skm.recall_score(y[:, j], hard[:, j]))
        assert row["support"] == int(y[:, j].sum())
    y, p = multiclass_data(2, k=4)
    rows = scoring.per_class(y, p)
    f1 = skm.f1_score(y, p.argmax(axis=1), average=None)
    assert [r["label"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["f1"] for r in rows] == pytest.approx(list(f1))
    assert rows[1]["auc"] == pytest.approx(skm.roc_auc_score(y == 1, p[:, 1]))


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(50, 10, 200).astype("float32")
    pred = (y + rng.normal(0, 4, 200)).reshape(-1, 1)
    got = scoring.scores("regression", y, pred, FINAL_METRICS["regression"])
    assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, pred.ravel())), rel=1e-6)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred.ravel()), rel=1e-6)
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred.ravel()), rel=1e-6)


# --- ECE and reliability by hand -------------------------------------------------------------


def test_multiclass_ece_by_hand():
    # 4 bins of 0.25. Confidences 0.9, 0.8 (bin 3), 0.6 (bin 2), 0.4 (bin 1).
    p = np.array([
        [0.9, 0.05, 0.05],  # argmax 0, y 0: right
        [0.1, 0.8, 0.1],  # argmax 1, y 2: wrong
        [0.2, 0.2, 0.6],  # argmax 2, y 2: right
        [0.4, 0.3, 0.3],  # argmax 0, y 1: wrong
    ])
    y = np.array([0, 2, 2, 1])
    # bin 3: acc 0.5, conf 0.85 -> 2/4 * 0.35; bin 2: 1 vs 0.6 -> 1/4 * 0.4; bin 1: 0 vs 0.4
    expected = 0.5 * 0.35 + 0.25 * 0.4 + 0.25 * 0.4
    assert scoring.scores("multiclass", y, p, ["ece"], bins=4)["ece"] == pytest.approx(expected)
    rel = scoring.reliability("multiclass", y, p, bins=4)
    assert rel["count"] == [0, 1, 1, 2]
    assert rel["confidence"][0] is None and rel["accuracy"][0] is None
    assert rel["confidence"][1:] == pytest.approx([0.4, 0.6, 0.85])
    assert rel["accuracy"][1:] == pytest.approx([0.0, 1.0, 0.5])
    assert rel["edges"] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert rel["ece"] == pytest.approx(expected)


def test_binary_and_multilabel_ece_use_the_top_label_view():
    # p 0.9 y1 (conf .9 right), p 0.2 y1 (conf .8 wrong), p 0.3 y0 (conf .7 right), p 1.0 y1
    y = np.array([1, 1, 0, 1])
    p = np.array([0.9, 0.2, 0.3, 1.0])
    # 2 bins: [0, .5) empty; [.5, 1]: acc 3/4, conf (.9+.8+.7+1)/4 = .85
    assert scoring.scores("binary", y, p, ["ece"], bins=2)["ece"] == pytest.approx(0.1)
    # 10 bins: bin 9 {.9 right, 1.0 right} -> 0.05 * 2/4; bin 8 {.8 wrong} -> .8/4; bin 7 {.7 right} -> .3/4
    expected = (2 * 0.05 + 0.8 + 0.3) / 4
    assert scoring.scores("binary", y, p, ["ece"], bins=10)["ece"] == pytest.approx(expected)
    # the threshold does not move calibration
    assert scoring.scores("binary", y, p, ["ece"], bins=10, threshold=0.1)["ece"] == pytest.approx(expected)
    # multilabel: every (row, label) pair is one two-class prediction
    got = scoring.scores("multilabel", y.reshape(2, 2), p.reshape(2, 2), ["ece"], bins=10)["ece"]
    assert got == pytest.approx(expected)
    assert scoring.reliability("binary", y, p, bins=10)["count"] == [0] * 7 + [1, 1, 2]


def test_perfectly_calibrated_ece_is_zero():
    y = np.array([1, 1, 1, 0])
    p = np.array([0.75, 0.75, 0.75, 0.75])  # 3 of 4 positive at 0.75
    assert scoring.scores("binary", y, p, ["ece"])["ece"] == pytest.approx(0.0)


# --- NaN, omission, errors -------------------------------------------------------------------


def test_undefined_values_are_nan():
    ones = np.ones(5, dtype="int64")
    p = np.linspace(0.1, 0.9, 5)
    got = scoring.scores("binary", ones, p, FINAL_METRICS["binary"])
    assert math.isnan(got["auc"]) and not math.isnan(got["pr_auc"])  # AP defined: all positive
    zeros = np.zeros(5, dtype="int64")
    got = scoring.scores("binary", zeros, p, FINAL_METRICS["binary"])
    assert math.isnan(got["auc"]) and math.isnan(got["pr_auc"])
    assert got["precision"] == 0.0 and got["recall"] == 0.0 and got["f1"] == 0.0  # sklearn's zero_division
    assert got["accuracy"] == pytest.approx(0.4)  # 0.1, 0.3 right
    # multilabel: no label has both classes
    got = scoring.scores("multilabel", np.ones((4, 2), "int64"), np.full((4, 2), 0.7), ["auc", "subset_accuracy"])
    assert math.isnan(got["auc"]) and got["subset_accuracy"] == 1.0
    # regression: constant target
    got = scoring.scores("regression", np.full(4, 3.0), np.array([3.0, 3.1, 2.9, 3.0]), ["r2", "rmse"])
    assert math.isnan(got["r2"]) and got["rmse"] == pytest.approx(math.sqrt(0.02 / 4))
    # empty split
    got = scoring.scores("multiclass", np.zeros(0, "int64"), np.zeros((0, 3)), ["accuracy", "ece"])
    assert all(math.isnan(v) for v in got.values())
    got = scoring.scores("regression", np.zeros(0), np.zeros((0, 1)), ["rmse", "r2"])
    assert all(math.isnan(v) for v in got.values())
    # a diverged model
    p = np.array([[0.5, np.nan], [0.2, 0.8]])
    got = scoring.scores("multiclass", np.array([0, 1]), p, FINAL_METRICS["multiclass"], top_k=1)
    assert set(got) == {"accuracy", "macro_f1", "top1_accuracy", "ece", "nll"}
    assert all(math.isnan(v) for v in got.values())
    assert scoring.reliability("multiclass", np.array([0, 1]), p, bins=3)["count"] == [0, 0, 0]


def test_top_k_only_when_fewer_than_the_classes():
    y, p = multiclass_data(0, k=5)
    assert "top5_accuracy" not in scoring.scores("multiclass", y, p, ["top_k_accuracy"], top_k=5)
    assert scoring.scores("multiclass", y, p, ["top_k_accuracy"], top_k=0) == {}
    assert scoring.scores("multiclass", y, p, ["top_k_accuracy"], top_k=10) == {}
    got = scoring.scores("multiclass", y, p, ["top_k_accuracy"], top_k=4)
    assert list(got) == ["top4_accuracy"]
    assert got["top4_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, p, k=4))
    top1 = scoring.scores("multiclass", y, p, ["top_k_accuracy", "accuracy"], top_k=1)
    assert top1["top1_accuracy"] == pytest.approx(top1["accuracy"])


def test_every_task_metric_is_computed_and_unknown_ones_refused():
    data = {
        "multiclass": multiclass_data(0, k=8),
        "binary": binary_data(0),
        "multilabel": multilabel_data(0),
        "regression": (np.arange(10.0), np.arange(10.0)[::-1].reshape(-1, 1)),
    }
    for task, (y, p) in data.items():
        for table in (FINAL_METRICS, EPOCH_METRICS):
            got = scoring.scores(task, y, p, table[task])
            names = ["top5_accuracy" if m == "top_k_accuracy" else m for m in table[task]]
            assert list(got) == names
            assert all(isinstance(v, float) and np.isfinite(v) for v in got.values()), (task, got)
    with pytest.raises(ValueError, match="rmse"):
        scoring.scores("binary", *data["binary"], ["rmse"])
    with pytest.raises(ValueError, match="task"):
        scoring.scores("ranking", *data["binary"], ["auc"])
    with pytest.raises(ValueError, match="classification"):
        scoring.reliability("regression", *data["regression"])


def test_no_sklearn_at_import():
    code = "import sys, gapline.evaluate.scoring; assert 'sklearn' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fast_enough_every_epoch():
    import time

    y, p = multiclass_data(0, n=2048, k=10)
    scoring.scores("multiclass", y, p, FINAL_METRICS["multiclass"])
    t0 = time.perf_counter()
    for _ in range(20):
        scoring.scores("multiclass", y, p, FINAL_METRICS["multiclass"])
    assert (time.perf_counter() - t0) / 20 < 0.05  # measured ~0.3 ms; generous for busy CI
