"""The task plots write valid PNGs from tiny data; the learning and gap curves read today's
history keys and a regression task's."""

from __future__ import annotations

import numpy as np
import pytest

from gapline.evaluate import plots, scoring

PNG = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 1000
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]  # atomic: no leftovers


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_roc_pr_plot(tmp_path, rng):
    y = rng.integers(0, 2, 40)
    p = np.clip(0.4 * y + rng.uniform(0, 0.6, 40), 0, 1).reshape(-1, 1)
    assert_png(plots.roc_pr_plot(y, p, tmp_path / "roc_pr.png"))
    # one class only: AUC and AP undefined, the plot is still written
    assert_png(plots.roc_pr_plot(np.zeros(5, "int64"), np.linspace(0, 1, 5), tmp_path / "one_class.png"))


@pytest.mark.parametrize("task", ("multiclass", "binary", "multilabel"))
def test_reliability_plot(tmp_path, rng, task):
    if task == "multiclass":
        y, p = rng.integers(0, 3, 30), rng.dirichlet(np.ones(3), 30)
    elif task == "binary":
        y, p = rng.integers(0, 2, 30), rng.uniform(size=(30, 1))
    else:
        y, p = rng.integers(0, 2, (30, 4)), rng.uniform(size=(30, 4))
    bins = scoring.reliability(task, y, p, bins=10)
    assert_png(plots.reliability_plot(bins, tmp_path / f"{task}.png", f"Reliability ({task})"))


def test_reliability_plot_with_no_usable_predictions(tmp_path):
    bins = scoring.reliability("binary", np.zeros(0, "int64"), np.zeros((0, 1)), bins=5)
    assert_png(plots.reliability_plot(bins, tmp_path / "empty.png", "Reliability"))


def test_regression_plot(tmp_path, rng):
    y = rng.normal(10, 3, 25)
    assert_png(plots.regression_plot(y, (y + rng.normal(0, 1, 25)).reshape(-1, 1), tmp_path / "reg.png"))
    big = rng.normal(size=50)
    assert_png(plots.regression_plot(big, big * 0.9, tmp_path / "thinned.png", max_points=10))


def test_per_label_plot(tmp_path, rng):
    y = rng.integers(0, 2, (20, 3))
    y[:, 2] = 1  # no negatives: AUC NaN, drawn as n/a
    rows = scoring.per_label(y, rng.uniform(size=(20, 3)), 0.5, ["cat", "dog", "bird"])
    assert np.isnan(rows[2]["auc"])
    assert_png(plots.per_label_plot(rows, tmp_path / "per_label.png"))


def history(keys, epochs=4):
    return {k: list(np.linspace(1.0, 0.5, epochs) + i * 0.01) for i, k in enumerate(keys)}


TODAY = ("loss", "accuracy", "val_loss", "val_accuracy", "train_eval_loss", "train_eval_accuracy",
         "gap_loss", "gap_accuracy")
REGRESSION = ("loss", "rmse", "val_loss", "val_rmse", "val_mae", "train_eval_loss", "train_eval_rmse",
              "train_eval_mae", "gap_loss", "gap_rmse", "gap_mae")


def test_curves_with_todays_keys(tmp_path):
    h = history(TODAY)
    assert_png(plots.learning_curves(h, tmp_path / "lc.png"))
    assert_png(plots.gap_curve(h, tmp_path / "gap.png", 3))
    assert_png(plots.gap_curve(h, tmp_path / "gap_none.png", None))


def test_curves_with_regression_keys(tmp_path):
    h = history(REGRESSION)
    assert_png(plots.learning_curves(h, tmp_path / "lc.png", metric="rmse"))
    assert_png(plots.gap_curve(h, tmp_path / "gap.png", None, metric="rmse"))
    assert_png(plots.gap_curve(h, tmp_path / "gap_mae.png", 2, metric="mae"))


def test_gap_curve_labels_follow_the_metric_direction(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(plots, "save", lambda fig, path: seen.append(
        [t.get_text() for t in fig.axes[0].get_legend().get_texts()]) or path)
    plots.gap_curve(history(REGRESSION), tmp_path / "g.png", None, metric="rmse")
    plots.gap_curve(history((*TODAY, "gap_auc", "gap_ece")), tmp_path / "g.png", 2, metric="auc")
    # RMSE is in the target's units: its own right-hand axis, named in the legend
    assert seen[0] == ["gap_loss (val − train)", "gap_rmse (val − train), right axis"]
    assert seen[1] == ["gap_auc (train − val)", "gap_loss (val − train)", "gap_ece (val − train)",
                       "overfitting onset (epoch 2)"]
    plots.pyplot().close("all")


def test_task_plots_are_deterministic(tmp_path, rng):
    y = rng.integers(0, 2, 30)
    p = rng.uniform(size=30)
    a = plots.roc_pr_plot(y, p, tmp_path / "a.png").read_bytes()
    b = plots.roc_pr_plot(y, p, tmp_path / "b.png").read_bytes()
    assert a == b


def test_learning_curves_draw_the_tasks_metric_on_train_and_validation(tmp_path, monkeypatch):
    """The second panel is the task's metric (RMSE for a regression), both curves drawn with
    the history's own values: a panel silently left empty would still be a valid PNG."""
    seen = []
    monkeypatch.setattr(plots, "save", lambda fig, path: seen.append(
        [(ax.get_ylabel(), [ln.get_label() for ln in ax.lines], [list(ln.get_ydata()) for ln in ax.lines]) for ax in fig.axes]) or path)
    h = history(REGRESSION)
    plots.learning_curves(h, tmp_path / "lc.png", metric="rmse")
    (loss_label, loss_lines, loss_values), (metric_label, metric_lines, metric_values) = seen[0]
    assert (loss_label, metric_label) == ("loss", "rmse")
    assert loss_lines == metric_lines == ["train (inference mode)", "validation"]
    assert metric_values == [list(h["train_eval_rmse"]), list(h["val_rmse"])]
    plots.pyplot().close("all")
