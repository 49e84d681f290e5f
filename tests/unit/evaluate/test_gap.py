"""The generalization gap: onset detection on hand-made curves and the per-epoch callback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gapline.config.tasks import HIGHER_IS_BETTER, gap
from gapline.evaluate.gap import Onset, overfitting_onset, subset_indices

NAN = float("nan")


def test_sign_convention_positive_when_overfitting() -> None:
    """The gap every stage computes (tasks.gap): train better than the other split is
    positive, for a score (train - other) and for an error (other - train)."""
    assert gap("accuracy", 0.95, 0.80) == pytest.approx(0.15)
    assert gap("loss", 0.10, 0.45) == pytest.approx(0.35)
    assert gap("rmse", 2.0, 3.5) == pytest.approx(1.5) and gap("r2", 0.9, 0.6) == pytest.approx(0.3)
    assert gap("accuracy", 0.7, 0.8) < 0 and gap("loss", 0.5, 0.4) < 0
    for metric, higher in HIGHER_IS_BETTER.items():  # every metric: better on train -> positive
        better, worse = (1.0, 0.5) if higher else (0.5, 1.0)
        assert gap(metric, better, worse) > 0, metric


def test_clear_overfit_onset_is_the_val_loss_minimum() -> None:
    train = [1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1]
    val = [1.1, 0.8, 0.6, 0.55, 0.62, 0.7, 0.8]
    assert overfitting_onset(train, val) == Onset(best_epoch=4, onset_epoch=4)


def test_monotone_improvement_has_no_onset() -> None:
    train = [1.0, 0.7, 0.5, 0.4, 0.3]
    val = [1.1, 0.8, 0.65, 0.6, 0.58]
    result = overfitting_onset(train, val)
    assert result.onset_epoch is None
    assert result.best_epoch == 5


def test_val_rising_while_train_also_rises_is_not_overfitting() -> None:
    train = [1.0, 0.6, 0.7, 0.8]
    val = [1.0, 0.5, 0.7, 0.9]
    assert overfitting_onset(train, val) == Onset(best_epoch=2, onset_epoch=None)


def test_wiggles_within_tolerance_are_not_an_onset() -> None:
    train = [1.0, 0.5, 0.4, 0.3]
    val = [1.0, 0.5, 0.50005, 0.50002]
    assert overfitting_onset(train, val).onset_epoch is None
    assert overfitting_onset(train, val, tolerance=1e-6).onset_epoch == 2


def test_nan_val_loss_never_is_the_best_epoch() -> None:
    train = [1.0, 0.7, 0.5, 0.4, 0.3]
    val = [NAN, 0.9, 0.6, NAN, 0.8]
    assert overfitting_onset(train, val) == Onset(best_epoch=3, onset_epoch=3)


def test_nan_after_the_minimum_counts_as_worse() -> None:
    train = [1.0, 0.6, 0.4, 0.3]
    val = [1.0, 0.5, NAN, NAN]
    assert overfitting_onset(train, val) == Onset(best_epoch=2, onset_epoch=2)


def test_all_nan_val_loss_gives_no_onset() -> None:
    result = overfitting_onset([1.0, 0.5, 0.3], [NAN, NAN, math.inf])
    assert result.onset_epoch is None
    assert result.best_epoch == 1


def test_single_epoch_and_empty_history() -> None:
    assert overfitting_onset([0.5], [0.6]) == Onset(best_epoch=1, onset_epoch=None)
    with pytest.raises(ValueError):
        overfitting_onset([], [])


def test_nan_train_loss_does_not_depend_on_its_position() -> None:
    val = [1.0, 0.5, 0.7, 0.9]
    a = overfitting_onset([1.0, 0.6, 0.3, NAN], val)
    b = overfitting_onset([1.0, 0.6, NAN, 0.3], val)
    assert a == Onset(best_epoch=2, onset_epoch=2)
    assert b == a


def test_subset_indices_fixed_and_seeded() -> None:
    np.testing.assert_array_equal(subset_indices(10, 0, 1), np.arange(10))
    np.testing.assert_array_equal(subset_indices(10, 10, 1), np.arange(10))
    a = subset_indices(100, 30, 5)
    assert len(a) == 30 and len(set(a.tolist())) == 30 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, subset_indices(100, 30, 5))
    assert not np.array_equal(a, subset_indices(100, 30, 6))


def test_gap_callback_matches_hand_computation(make_tiny_config, tiny_image_splits, cpu_runtime) -> None:
    from gapline.config.tasks import one_hot
    from gapline.train.fit import train_model

    cpu_runtime(3)
    cfg = make_tiny_config(
        {"regularization": {"dropout": 0.5}, "train": {"epochs": 2, "gap_eval_samples": 40}}
    )
    x, y = tiny_image_splits["train"]
    xv, yv = tiny_image_splits["val"]
    result = train_model(cfg, x, y, xv, yv, 3)
    h = result.history
    assert result.epochs_run == 2
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "train_eval_loss",
                "train_eval_accuracy", "gap_loss", "gap_accuracy", "learning_rate"):
        assert key in h and len(h[key]) == 2, (key, h.keys())
    assert h["learning_rate"] == pytest.approx([cfg.train.learning_rate] * 2)

    # The callback evaluated a fixed, seeded subset of 40 training samples in inference mode.
    pick = subset_indices(len(x), 40, cfg.train.seed)
    assert len(pick) == 40
    ref = result.model.evaluate(
        x[pick], one_hot(y[pick], 3), batch_size=512, verbose=0, return_dict=True
    )
    assert h["train_eval_loss"][-1] == pytest.approx(ref["loss"], abs=1e-6)
    assert h["train_eval_accuracy"][-1] == pytest.approx(ref["accuracy"], abs=1e-6)
    # Inference mode: dropout off, so predict() gives the same loss as evaluate().
    probs = result.model.predict(x[pick], verbose=0)
    manual_loss = float(np.mean(-np.log(np.clip(probs[np.arange(40), y[pick]], 1e-7, 1.0))))
    assert h["train_eval_loss"][-1] == pytest.approx(manual_loss, abs=1e-5)
    manual_acc = float(np.mean(np.argmax(probs, axis=1) == y[pick]))
    assert h["train_eval_accuracy"][-1] == pytest.approx(manual_acc, abs=1e-6)

    for e in range(2):
        assert h["gap_accuracy"][e] == pytest.approx(h["train_eval_accuracy"][e] - h["val_accuracy"][e], abs=1e-6)
        assert h["gap_loss"][e] == pytest.approx(h["val_loss"][e] - h["train_eval_loss"][e], abs=1e-6)
    # Training-mode loss (dropout 0.5 on) is a different number from the inference-mode one.
    assert h["loss"][-1] != pytest.approx(h["train_eval_loss"][-1], abs=1e-6)


def test_gap_measured_on_gap_x_not_on_the_fit_data(make_tiny_config, tiny_image_splits, cpu_runtime) -> None:
    from gapline.config.tasks import one_hot
    from gapline.train.fit import train_model

    cpu_runtime(4)
    cfg = make_tiny_config({"train": {"epochs": 1}})
    x, y = tiny_image_splits["train"]
    xv, yv = tiny_image_splits["val"]
    xg, yg = tiny_image_splits["test"]
    result = train_model(cfg, x, y, xv, yv, 3, gap_x=xg, gap_y=yg)
    ref = result.model.evaluate(xg, one_hot(yg, 3), verbose=0, return_dict=True)
    assert result.history["train_eval_loss"][-1] == pytest.approx(ref["loss"], abs=1e-6)


def test_evaluate_splits_scores_the_predictions_it_is_given(tiny_image_splits, cpu_runtime) -> None:
    """The evaluate stage predicts the test split once, scores and plots those predictions:
    the model's own give the same scores, and other ones are scored as given (not predicted again)."""
    import keras

    from gapline.config.tasks import multiclass
    from gapline.evaluate.gap import predictions
    from gapline.evaluate.splits import evaluate_splits
    from gapline.models.memory import DEFAULT_BUDGET

    cpu_runtime(0)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", keras.losses.CategoricalCrossentropy())
    task = multiclass(3)
    plain = evaluate_splits(model, tiny_image_splits, task)
    x_test = tiny_image_splits["test"][0]
    own = predictions(model, x_test, DEFAULT_BUDGET)
    assert evaluate_splits(model, tiny_image_splits, task, None, {"test": own}) == plain
    uniform = np.full((len(x_test), 3), 1 / 3, dtype="float32")
    given = evaluate_splits(model, tiny_image_splits, task, None, {"test": uniform})
    assert given["test_loss"] == pytest.approx(np.log(3), rel=1e-5)  # the uniform guess, as given
    assert given["train_loss"] == plain["train_loss"]  # other splits still predicted
