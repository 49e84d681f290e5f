"""Model building from config, split evaluation with gaps, and seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest

from gapline.config.schema import ModelConfig, RegularizationConfig
from gapline.core.errors import ConfigError


def _build(family: str, input_shape=(8, 8, 1), reg: RegularizationConfig | None = None, **model_kw):
    from gapline.models.build import build_model

    model = ModelConfig(family=family, hidden_units=[8], conv_filters=[4, 6], dense_units=8, **model_kw)
    return build_model(input_shape, 3, model, reg or RegularizationConfig())


def _hidden_linear_layers(model) -> list:
    import keras

    return [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)) and layer.name != "classifier"
    ]


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_build_model_predicts_probabilities(family: str) -> None:
    model = _build(family)
    assert model.input_shape == (None, 8, 8, 1)
    assert model.output_shape == (None, 3)
    x = np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32)
    p = model.predict(x, verbose=0)
    assert p.shape == (5, 3)
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_cnn_has_convolutions_and_mlp_has_none() -> None:
    import keras

    cnn = _build("cnn")
    mlp = _build("mlp")
    assert [lyr.filters for lyr in cnn.layers if isinstance(lyr, keras.layers.Conv2D)] == [4, 6]
    assert not any(isinstance(lyr, keras.layers.Conv2D) for lyr in mlp.layers)
    assert [lyr.units for lyr in mlp.layers if isinstance(lyr, keras.layers.Dense)] == [8, 3]


def test_mlp_on_tabular_input() -> None:
    model = _build("mlp", input_shape=(5,))
    p = model.predict(np.zeros((2, 5), dtype=np.float32), verbose=0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_cnn_on_tabular_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        _build("cnn", input_shape=(5,))
    msg = str(info.value)
    assert "model.family" in msg and "cnn" in msg and "\n" not in msg


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_batch_norm_removes_bias_of_linear_layers(family: str) -> None:
    import keras

    plain = _hidden_linear_layers(_build(family))
    assert plain and all(layer.use_bias and layer.bias is not None for layer in plain)
    model = _build(family, reg=RegularizationConfig(batch_norm=True))
    linear = _hidden_linear_layers(model)
    assert len(linear) == len(plain)
    for layer in linear:
        assert layer.use_bias is False and layer.bias is None, layer.name
    bns = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.BatchNormalization)]
    assert len(bns) == len(linear)


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_l2_adds_regularization_losses(family: str) -> None:
    x = np.ones((2, 8, 8, 1), dtype=np.float32)
    plain = _build(family)
    plain(x)
    assert len(plain.losses) == 0
    model = _build(family, reg=RegularizationConfig(l2=0.01))
    model(x)
    losses = [float(v) for v in model.losses]
    assert len(losses) >= len(_hidden_linear_layers(model))
    assert all(v > 0 for v in losses)
    # The penalty is l2 * sum(w**2) of the regularized kernels.
    kernels = [lyr.kernel for lyr in model.layers if getattr(lyr, "kernel_regularizer", None) is not None]
    expected = sum(0.01 * float(np.sum(np.square(np.asarray(k)))) for k in kernels)
    assert sum(losses) == pytest.approx(expected, rel=1e-4)


def test_dropout_and_noise_layers_follow_config() -> None:
    import keras

    model = _build("mlp", reg=RegularizationConfig(dropout=0.3, input_noise=0.1, hidden_noise=0.2))
    drops = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Dropout)]
    noises = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.GaussianNoise)]
    assert [d.rate for d in drops] == [pytest.approx(0.3)]
    assert sorted(n.stddev for n in noises) == [pytest.approx(0.1), pytest.approx(0.2)]
    assert not any(isinstance(lyr, (keras.layers.Dropout, keras.layers.GaussianNoise)) for lyr in _build("mlp").layers)


def _identity_classifier():
    """A model with no hidden layer whose prediction is the argmax of a 3-feature input."""
    from gapline.config.checks import from_container
    from gapline.models.build import build_model
    from gapline.train.fit import compile_model

    cfg = from_container({"model": {"hidden_units": []}, "regularization": {"early_stopping": {"enabled": False}}})
    model = build_model((3,), 3, cfg.model, cfg.regularization)
    dense = model.get_layer("classifier")
    dense.set_weights([np.eye(3, dtype=np.float32) * 5.0, np.zeros(3, dtype=np.float32)])
    return compile_model(model, cfg)


def test_evaluate_splits_keys_and_gap_relations() -> None:
    from gapline.evaluate.splits import evaluate_splits

    model = _identity_classifier()
    y = np.array([0, 1, 2, 0, 1, 2], dtype=np.int64)
    eye = np.eye(3, dtype=np.float32)
    splits = {
        "train": (eye[y], y),  # every prediction right
        "val": (eye[(y + 1) % 3], y),  # every prediction wrong
        "test": (np.vstack([eye[y[:3]], eye[(y[3:] + 1) % 3]]), y),  # half right
    }
    out = evaluate_splits(model, splits, 3)
    # multiclass: loss, accuracy, macro F1, calibration error and log-loss (3 classes: no
    # top-5) per split, each with its gap against val and test
    names = ("loss", "accuracy", "macro_f1", "ece", "nll")
    assert set(out) == {f"{s}_{n}" for s in ("train", "val", "test") for n in names} | {
        f"gap_{n}_{s}" for s in ("val", "test") for n in names
    }
    assert out["train_accuracy"] == pytest.approx(1.0)
    assert out["val_accuracy"] == pytest.approx(0.0)
    assert out["test_accuracy"] == pytest.approx(0.5)
    assert out["train_loss"] < out["test_loss"] < out["val_loss"]
    # no smoothing and no penalty here: the log-loss is the loss
    assert [out[f"{s}_nll"] for s in ("train", "val", "test")] == pytest.approx([out[f"{s}_loss"] for s in ("train", "val", "test")], rel=1e-4)
    # Positive gaps when the model does better on train (the overfitting convention).
    assert out["gap_accuracy_val"] == pytest.approx(1.0)
    assert out["gap_accuracy_test"] == pytest.approx(0.5)
    assert out["gap_loss_val"] > out["gap_loss_test"] > 0
    for other in ("val", "test"):
        assert out[f"gap_accuracy_{other}"] == pytest.approx(out["train_accuracy"] - out[f"{other}_accuracy"], abs=1e-9)
        # an error's gap points the other way: the split's error minus train's
        assert out[f"gap_ece_{other}"] == pytest.approx(out[f"{other}_ece"] - out["train_ece"], abs=1e-9)
        assert out[f"gap_loss_{other}"] == pytest.approx(out[f"{other}_loss"] - out["train_loss"], abs=1e-9)
    # Softmax of 5 * one-hot: the true class gets e^5 / (e^5 + 2).
    assert out["train_loss"] == pytest.approx(-np.log(np.exp(5) / (np.exp(5) + 2)), rel=1e-4)


def test_evaluate_splits_without_train_has_no_gap_keys() -> None:
    from gapline.evaluate.splits import evaluate_splits

    model = _identity_classifier()
    y = np.array([0, 1, 2], dtype=np.int64)
    out = evaluate_splits(model, {"val": (np.eye(3, dtype=np.float32), y)}, 3)
    assert set(out) == {"val_loss", "val_accuracy", "val_macro_f1", "val_ece", "val_nll"}


def test_training_is_deterministic_for_a_seed(make_tiny_config, tiny_image_splits, cpu_runtime) -> None:
    from gapline.train.fit import train_model

    cfg = make_tiny_config({"regularization": {"dropout": 0.3}, "train": {"epochs": 2, "seed": 11}})
    x, y = tiny_image_splits["train"]
    xv, yv = tiny_image_splits["val"]
    runs = []
    for _ in range(2):
        cpu_runtime(cfg.train.seed)
        result = train_model(cfg, x, y, xv, yv, 3)
        runs.append((result.history, [np.asarray(w).copy() for w in result.model.get_weights()]))
    (h1, w1), (h2, w2) = runs
    assert h1.keys() == h2.keys()
    for key in h1:
        assert h1[key] == h2[key], key  # exact equality, not approx
    for a, b in zip(w1, w2):
        assert a.tobytes() == b.tobytes()

    cpu_runtime(cfg.train.seed + 1)
    other = train_model(cfg, x, y, xv, yv, 3)
    assert other.history["loss"] != h1["loss"]


def test_train_model_reports_run_facts(make_tiny_config, tiny_image_splits, cpu_runtime) -> None:
    from gapline.train.fit import train_model

    cpu_runtime(0)
    cfg = make_tiny_config({"train": {"epochs": 2}})
    x, y = tiny_image_splits["train"]
    xv, yv = tiny_image_splits["val"]
    result = train_model(cfg, x, y, xv, yv, 3)
    assert result.epochs_run == 2
    assert result.params == result.model.count_params() == (16 * 8 + 8) + (8 * 3 + 3)
    assert result.wall_seconds > 0
    assert result.samples_per_second == pytest.approx(60 * 2 / result.wall_seconds)


def test_early_stopping_from_config_stops_training(make_tiny_config, tiny_image_splits, cpu_runtime) -> None:
    from gapline.train.fit import train_model

    cpu_runtime(0)
    # A learning rate too small to move val_loss by min_delta: stop after 1 + patience epochs.
    cfg = make_tiny_config(
        {
            "train": {"epochs": 30, "learning_rate": 1e-9},
            "regularization": {"early_stopping": {"enabled": True, "patience": 1, "min_delta": 0.1}},
        }
    )
    x, y = tiny_image_splits["train"]
    xv, yv = tiny_image_splits["val"]
    result = train_model(cfg, x, y, xv, yv, 3)
    assert result.epochs_run == 2


@pytest.mark.parametrize(("stopping", "precision"), [(False, "float32"), (True, "float32"), (True, "mixed_float16")])
def test_weight_ema_is_what_is_scored_and_kept(make_tiny_config, tiny_image_splits, cpu_runtime, stopping, precision) -> None:
    """train.ema: each epoch's validation scores are those of the averaged weights, and the
    model after fit holds them: the last epoch's average, or, with restore_best_weights, the
    best epoch's average (not its raw weights, which Keras's EarlyStopping alone would keep).
    Also under mixed precision, where Keras wraps the optimizer in a LossScaleOptimizer."""
    import keras

    from gapline.train.fit import train_model

    cpu_runtime(0)
    keras.mixed_precision.set_global_policy(precision)
    seen: list[dict] = []

    class Record(keras.callbacks.Callback):  # a caller's callback: runs after the raw weights are back
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            opt = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)
            seen.append(
                {
                    "raw": [keras.ops.convert_to_numpy(v) for v in self.model.trainable_variables],
                    "ema": [keras.ops.convert_to_numpy(v) for v in opt._model_variables_moving_average],
                }
            )

    es = {"enabled": True, "patience": 50, "restore_best_weights": True} if stopping else {"enabled": False}
    cfg = make_tiny_config({"train": {"epochs": 4, "ema": 0.9, "learning_rate": 0.05, "precision": precision},
                            "regularization": {"early_stopping": es}})
    x, y = tiny_image_splits["train"]
    xv, yv = tiny_image_splits["val"]
    try:
        result = train_model(cfg, x, y, xv, yv, 3, callbacks=[Record()])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert getattr(result.model.optimizer, "inner_optimizer", result.model.optimizer).use_ema
    assert (type(result.model.optimizer).__name__ == "LossScaleOptimizer") == (precision == "mixed_float16")
    at = int(np.argmin(result.history["val_loss"])) if stopping else len(seen) - 1
    final = [keras.ops.convert_to_numpy(v) for v in result.model.trainable_variables]
    for got, ema, _raw in zip(final, seen[at]["ema"], seen[at]["raw"]):
        np.testing.assert_allclose(got, ema, rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(e, r) for e, r in zip(seen[at]["ema"], seen[at]["raw"]))
    # the logged val_loss of the kept epoch is the averaged model's
    from gapline.config.tasks import as_spec
    from gapline.evaluate.gap import inference_scores

    scores = inference_scores(result.model, xv, yv, as_spec(3), cfg.task)
    assert scores["loss"] == pytest.approx(result.history["val_loss"][at], rel=1e-4)
