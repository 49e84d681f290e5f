"""What a task means for the model and its training: the head, the target encoding, the loss
on the standardized target, class weights, the tabular input standardization, and the
per-epoch gaps the callback adds."""

from __future__ import annotations

import numpy as np
import pytest

from gapline.config.tasks import TaskSpec, gap, higher_is_better, loss
from helpers.prepared_meta import make_meta


def _cfg(*overrides: str):
    from omegaconf import OmegaConf

    from gapline.config.checks import from_container

    return from_container(OmegaConf.from_dotlist(["tracking.enabled=false", "regularization.l2=0", *overrides]))


def test_targets_are_encoded_for_the_loss() -> None:
    assert TaskSpec("multiclass", ("a", "b", "c")).encode(np.array([2, 0])).tolist() == [[0, 0, 1], [1, 0, 0]]
    assert TaskSpec("binary", ("no", "yes")).encode(np.array([1, 0])).tolist() == [[1.0], [0.0]]
    assert TaskSpec("multilabel", ("x", "y")).encode(np.array([[1, 0], [1, 1]])).tolist() == [[1, 0], [1, 1]]
    assert TaskSpec("regression", ("t",)).encode(np.array([1.5, 2.0])).shape == (2, 1)
    assert [TaskSpec(t, ("a", "b", "c")).outputs for t in ("multiclass", "binary", "multilabel", "regression")] == [3, 1, 3, 1]


def test_gap_signs_follow_the_metric_direction() -> None:
    assert higher_is_better("val_auc") and higher_is_better("top5_accuracy") and not higher_is_better("test_rmse")
    assert gap("accuracy", 1.0, 0.9) == pytest.approx(0.1)  # train − other
    assert gap("rmse", 10.0, 15.0) == pytest.approx(5.0)  # other − train
    assert gap("ece", 0.01, 0.05) == pytest.approx(0.04) and gap("loss", 0.1, 0.3) == pytest.approx(0.2)


def test_regression_loss_is_weighted_onto_the_standardized_target() -> None:
    cfg = _cfg()
    spec = TaskSpec("regression", ("t",), target_mean=100.0, target_std=20.0)
    fn, weight = loss(spec, cfg.task)
    y, pred = np.array([[100.0], [140.0]], "float32"), np.array([[120.0], [100.0]], "float32")
    z = ((y - 100) / 20, (pred - 100) / 20)
    assert float(fn(y, pred)) * weight == pytest.approx(float(np.mean((z[0] - z[1]) ** 2)), rel=1e-6)
    huber, w = loss(spec, _cfg("task.loss=huber", "task.huber_delta=0.5").task)
    from keras.losses import Huber

    assert float(huber(y, pred)) * w == pytest.approx(float(Huber(delta=0.5)(*z)), rel=1e-5)
    mae, w = loss(spec, _cfg("task.loss=mae").task)
    assert float(mae(y, pred)) * w == pytest.approx(float(np.mean(np.abs(z[0] - z[1]))), rel=1e-6)


def test_heads_per_task_and_regression_predicts_in_the_users_units() -> None:
    import keras

    from gapline.models.build import build_model

    cfg = _cfg()
    for task, activation in (("binary", "sigmoid"), ("multilabel", "sigmoid"), ("multiclass", "softmax")):
        model = build_model((4,), TaskSpec(task, ("a", "b", "c")), cfg.model, cfg.regularization)
        assert model.layers[-1].get_config()["activation"] == activation
    spec = TaskSpec("regression", ("t",), target_mean=1000.0, target_std=50.0, feature_mean=(5.0,) * 4, feature_std=(2.0,) * 4)
    model = build_model((4,), spec, cfg.model, cfg.regularization)
    last = model.layers[-1]
    assert isinstance(last, keras.layers.Rescaling) and (last.scale, last.offset) == (50.0, 1000.0)
    first = model.layers[1]
    assert isinstance(first, keras.layers.Normalization) and first.name == "standardize"
    # the network's own output is standardized: at initialization predictions sit near the mean
    pred = model.predict(np.full((8, 4), 5.0, "float32"), verbose=0)
    assert np.all(np.abs(pred - 1000.0) < 3 * 50.0)


def test_a_far_off_target_trains_like_a_unit_one() -> None:
    """y = 5000 + 300·x0: without the in-model standardization a small MLP would spend its
    epochs walking its output up to 5000; with it, it fits in a few epochs."""
    from gapline.train.fit import train_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype("float32")
    y = (5000 + 300 * x[:, 0]).astype("float32")
    spec = TaskSpec("regression", ("y",), target_mean=float(y[:300].mean()), target_std=float(y[:300].std()))
    cfg = _cfg("train.epochs=15", "model.hidden_units=[32]", "train.learning_rate=0.01", "regularization.dropout=0")
    result = train_model(cfg, x[:300], y[:300], x[300:], y[300:], spec)
    assert result.history["val_rmse"][-1] < 0.25 * float(y.std())  # in the target's units
    assert result.history["gap_rmse"][-1] == pytest.approx(result.history["val_rmse"][-1] - result.history["train_eval_rmse"][-1])
    assert "val_accuracy" not in result.history and "train_eval_mae" in result.history


def test_balanced_class_weight_lifts_the_rare_class() -> None:
    from gapline.config.tasks import sample_weights
    from gapline.train.fit import train_model

    spec = TaskSpec("binary", ("common", "rare"))
    y = np.array([0] * 9 + [1])
    weights = sample_weights(spec, y, "balanced")
    assert weights[0] == pytest.approx(10 / 18) and weights[-1] == pytest.approx(5.0)
    assert sample_weights(spec, y, "none") is None

    rng = np.random.default_rng(1)
    n = 600
    y = (rng.random(n) < 0.08).astype(np.int64)
    x = (rng.normal(size=(n, 4)) + 0.8 * y[:, None]).astype("float32")  # a weak signal
    probs = {}
    for mode in ("none", "balanced"):
        cfg = _cfg("train.epochs=8", "model.hidden_units=[16]", f"task.class_weight={mode}", "train.seed=3")
        result = train_model(cfg, x[:450], y[:450], x[450:], y[450:], spec)
        probs[mode] = float(result.model.predict(x[450:][y[450:] == 1], verbose=0).mean())
    assert probs["balanced"] > probs["none"] + 0.15


def test_the_gap_callback_logs_each_tasks_epoch_metrics() -> None:
    from gapline.train.fit import train_model

    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5)).astype("float32")
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0], axis=1).astype(np.int64)
    spec = TaskSpec("multilabel", ("a", "b"))
    result = train_model(_cfg("train.epochs=2", "model.hidden_units=[8]"), x[:150], y[:150], x[150:], y[150:], spec)
    h = result.history
    for m in ("loss", "auc", "subset_accuracy", "ece"):
        assert len(h[f"val_{m}"]) == len(h[f"train_eval_{m}"]) == len(h[f"gap_{m}"]) == 2, m
    assert h["gap_auc"][-1] == pytest.approx(h["train_eval_auc"][-1] - h["val_auc"][-1])
    assert h["gap_ece"][-1] == pytest.approx(h["val_ece"][-1] - h["train_eval_ece"][-1])


def test_a_saved_training_state_is_not_resumed_for_another_task_or_its_settings() -> None:
    """A killed run's backup must not be restored after task.loss, class weights, the task
    prepare resolved, or the standardization statistics changed (none is in the data
    fingerprint: the same labels read as binary or multiclass have the same arrays)."""
    import dataclasses

    from gapline.stages.train import backup_key

    cfg = _cfg()
    meta = make_meta(fingerprint="f", task="binary", features={"mean": [0.0], "std": [1.0]})
    key = backup_key(cfg, meta)
    assert backup_key(cfg, dataclasses.replace(meta)) == key
    assert backup_key(dataclasses.replace(cfg, task=dataclasses.replace(cfg.task, class_weight="balanced")), meta) != key
    assert backup_key(cfg, dataclasses.replace(meta, task="multiclass")) != key
    assert backup_key(cfg, dataclasses.replace(meta, features={"mean": [1.0], "std": [1.0]})) != key
    assert backup_key(cfg, dataclasses.replace(meta, features=None)) != key  # data.standardize=false


def _users_builder(tmp_path, monkeypatch, body: str) -> str:
    import sys

    (tmp_path / "tasknets.py").write_text("import keras\n\n\ndef build(kit):\n" + body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tasknets", raising=False)  # each case imports its own
    return "tasknets:build"


@pytest.mark.parametrize(
    ("task", "body", "expected"),
    [
        ("binary", "    inputs, x = kit.inputs()\n    return keras.Model(inputs, keras.layers.Dense(1)(x))\n",
         "probabilities in [0, 1] for task binary"),
        ("regression", "    inputs, x = kit.inputs()\n    return keras.Model(inputs, keras.layers.Dense(1)(kit.head(x)))\n",
         "whose output is kit.head(x)"),
        ("regression", "    inputs, x = kit.inputs()\n    return keras.Model(inputs, keras.layers.Dense(1)(x))\n",
         "whose output is kit.head(x)"),
    ],
)
def test_a_builder_output_the_task_cannot_read_is_refused(tmp_path, monkeypatch, task: str, body: str, expected: str) -> None:
    """Logits where the task needs probabilities, or a layer after the regression head (the
    loss weight and the user's units assume the head is last): one line at build time."""
    from gapline.core.errors import ConfigError
    from gapline.models.build import build_model

    builder = _users_builder(tmp_path, monkeypatch, body)
    cfg = _cfg("model.family=custom", f"model.builder={builder}")
    spec = TaskSpec(task, ("a", "b") if task == "binary" else ("t",), target_mean=5.0, target_std=2.0)
    with pytest.raises(ConfigError) as err:
        build_model((6,), spec, cfg.model, cfg.regularization)
    assert expected in str(err.value) and "\n" not in str(err.value)
    ok = "    inputs, x = kit.inputs()\n    return keras.Model(inputs, kit.head(keras.layers.Dense(4)(x)))\n"
    (tmp_path / "tasknets.py").write_text("import keras\n\n\ndef build(kit):\n" + ok)
    import importlib
    import sys

    importlib.reload(sys.modules["tasknets"])
    assert build_model((6,), spec, cfg.model, cfg.regularization).output_shape == (None, 1)
