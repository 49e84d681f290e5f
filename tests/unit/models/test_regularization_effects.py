"""Each regularization technique does what it claims, shown on tiny data in a few epochs.

These tests prove effects rather than the presence of layers: an L1 penalty really zeroes
weights, noise really changes training-mode outputs while inference stays clean, early
stopping really restores the best epoch, tied blocks really share one tensor, and so on.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from conftest import TINY_CONFIG
from gapline.config.checks import from_container
from gapline.config.schema import Config
from gapline.core.errors import ConfigError

# --------------------------------------------------------------------------------------
# Tiny data and configs

# The shared tiny config (tests/conftest.py), trained for one epoch here.
BASE: dict[str, Any] = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 1}}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def config(*extras: dict[str, Any]) -> Config:
    """A validated tiny Config: BASE deep-merged with each of ``extras`` in turn."""
    raw = BASE
    for extra in extras:
        raw = _merge(raw, extra)
    return from_container(raw)


def blobs(n: int, seed: int, d: int = 20, classes: int = 3, informative: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Learnable tabular data: class-dependent means on the first ``informative`` features,
    pure noise on the rest (so a sparse solution exists)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % classes).astype(np.int64)
    x = rng.normal(size=(n, d)).astype(np.float32)
    means = np.random.default_rng(99).normal(scale=2.0, size=(classes, informative))
    x[:, :informative] += means[y].astype(np.float32)
    return x, y


def images(n: int, seed: int, size: int = 8, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Learnable (n, size, size, 1) images in [0, 1]: a bright row whose position is the class,
    plus an off-centre bright square so that every geometric transform visibly moves pixels."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % classes).astype(np.int64)
    x = rng.uniform(0.0, 0.3, size=(n, size, size, 1)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, 1 + 2 * label, :, 0] += 0.6
    x[:, 0:3, 0:2, 0] = 0.9
    return np.clip(x, 0.0, 1.0), y


def build(cfg: Config, input_shape: tuple[int, ...] = (8, 8, 1), num_classes: int = 3) -> Any:
    from gapline.models.build import build_model

    return build_model(input_shape, num_classes, cfg.model, cfg.regularization, cfg.augment.online, cfg.train.seed)


def np_(t: Any) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(t))


def hidden_kernel_layers(model: Any) -> list[Any]:
    import keras

    return [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)) and layer.name != "classifier"
    ]


@pytest.fixture(scope="module")
def runtime_cpu():
    """Seed and pin Keras to deterministic float32 on the CPU (usable by module fixtures);
    the environment variables ``runtime.configure`` sets are put back after the module."""
    from gapline.models import runtime

    def configure(seed: int = 0) -> Any:
        return runtime.configure(seed, True, "cpu", "float32")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS"):
            if name in os.environ:
                mp.setenv(name, os.environ[name])
            else:
                mp.delenv(name, raising=False)
        yield configure


# --------------------------------------------------------------------------------------
# 1-2. Weight penalties: L1 sparsifies, L2 shrinks


@pytest.fixture(scope="module")
def penalty_runs(runtime_cpu) -> dict[str, np.ndarray]:
    """The hidden kernel of the same MLP trained 30 epochs, same seed and data, with no
    penalty, a strong L1 and a strong L2 (through build_model + compile_model)."""
    from gapline.config.tasks import one_hot
    from gapline.train.fit import compile_model

    x, y = blobs(120, seed=0)
    kernels = {}
    for name, reg in {"none": {}, "l1": {"l1": 1e-2}, "l2": {"l2": 1e-2}}.items():
        cfg = config({"model": {"hidden_units": [32]}, "regularization": reg, "train": {"seed": 3}})
        runtime_cpu(3)
        model = compile_model(build(cfg, input_shape=(20,)), cfg)
        model.fit(x, one_hot(y, 3), epochs=30, batch_size=32, verbose=0)
        kernels[name] = np_(model.get_layer("dense_0").kernel)
    return kernels


def test_l1_leaves_more_near_zero_weights_than_no_penalty(penalty_runs) -> None:
    """A strong L1 drives most hidden weights to ~0; without a penalty almost none are."""
    def near_zero(k: np.ndarray) -> float:
        return float(np.mean(np.abs(k) < 1e-2))

    plain, l1 = near_zero(penalty_runs["none"]), near_zero(penalty_runs["l1"])
    assert plain < 0.1, plain
    assert l1 > 0.5, l1
    assert l1 > plain + 0.4


def test_l2_gives_smaller_weight_norm_than_no_penalty(penalty_runs) -> None:
    """A strong L2 keeps the hidden kernel's Frobenius norm well below the unpenalized one."""
    plain = float(np.linalg.norm(penalty_runs["none"]))
    l2 = float(np.linalg.norm(penalty_runs["l2"]))
    assert l2 < 0.6 * plain, (l2, plain)


# --------------------------------------------------------------------------------------
# 3. Noise and dropout: random in training, deterministic and clean in inference

NOISE_TECHNIQUES = {
    "dropout": {"dropout": 0.5},
    "input_noise": {"input_noise": 0.3},
    "hidden_noise": {"hidden_noise": 0.3},
    "weight_noise": {"weight_noise": 0.3},
}


@pytest.mark.parametrize("family", ["mlp", "cnn"])
@pytest.mark.parametrize("technique", sorted(NOISE_TECHNIQUES))
def test_noise_is_random_in_training_and_clean_in_inference(technique: str, family: str, runtime_cpu) -> None:
    """Training-mode outputs differ call to call; inference is deterministic, equals a clean
    model (technique off) holding the same weights, and training calls never touch the weights."""
    runtime_cpu(0)
    model_cfg = {"family": family, "hidden_units": [16, 16], "conv_filters": [4, 4], "dense_units": 8}
    cfg = config({"model": model_cfg, "regularization": NOISE_TECHNIQUES[technique]})
    clean_cfg = config({"model": model_cfg})
    model, clean = build(cfg), build(clean_cfg)
    clean.set_weights(model.get_weights())
    x, _ = images(8, seed=1)

    before = [w.copy() for w in model.get_weights()]
    train_a = np_(model(x, training=True))
    train_b = np_(model(x, training=True))
    infer_a = np_(model(x, training=False))
    infer_b = np_(model(x, training=False))

    assert not np.allclose(train_a, train_b, atol=1e-6), "training-mode calls should be random"
    assert not np.allclose(train_a, infer_a, atol=1e-6), "training mode should differ from inference"
    np.testing.assert_array_equal(infer_a, infer_b)
    np.testing.assert_allclose(infer_a, np_(clean(x, training=False)), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np_(model.predict(x, verbose=0)), infer_a, rtol=0, atol=1e-6)
    for w_before, w_after in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w_before, w_after)


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_weight_noise_uses_noisy_layers_for_every_linear_layer(family: str) -> None:
    """Weight noise swaps every Dense for NoisyDense and every Conv2D for NoisyConv2D."""
    import keras

    from gapline.layers import NoisyConv2D, NoisyDense

    model_cfg = {"family": family, "hidden_units": [16, 16], "conv_filters": [4, 4]}
    model = build(config({"model": model_cfg, "regularization": {"weight_noise": 0.1}}))
    linear = [lyr for lyr in model.layers if isinstance(lyr, (keras.layers.Dense, keras.layers.Conv2D))]
    assert linear
    for layer in linear:
        expected = NoisyConv2D if isinstance(layer, keras.layers.Conv2D) else NoisyDense
        assert isinstance(layer, expected), layer.name
        assert layer.weight_noise == pytest.approx(0.1)


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_weight_noise_changes_the_training_step(family: str, runtime_cpu) -> None:
    """Gradients see the noisy kernels: one SGD step from identical weights on identical data
    lands on different weights with weight noise than without it."""
    from gapline.config.tasks import one_hot
    from gapline.train.fit import compile_model

    runtime_cpu(0)
    model_cfg = {"family": family, "hidden_units": [16, 16], "conv_filters": [4, 4], "dense_units": 8}
    train = {"optimizer": "sgd", "learning_rate": 0.1}
    noisy_cfg = config({"model": model_cfg, "regularization": {"weight_noise": 0.3}, "train": train})
    clean_cfg = config({"model": model_cfg, "train": train})
    noisy, clean = compile_model(build(noisy_cfg), noisy_cfg), compile_model(build(clean_cfg), clean_cfg)
    clean.set_weights(noisy.get_weights())
    start = [w.copy() for w in noisy.get_weights()]
    x, y = images(16, seed=2)

    noisy_loss = float(np.asarray(noisy.train_on_batch(x, one_hot(y, 3), return_dict=True)["loss"]))
    clean_loss = float(np.asarray(clean.train_on_batch(x, one_hot(y, 3), return_dict=True)["loss"]))

    assert noisy_loss != pytest.approx(clean_loss, abs=1e-6)
    moved_noisy = [a - s for a, s in zip(noisy.get_weights(), start)]
    moved_clean = [a - s for a, s in zip(clean.get_weights(), start)]
    assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(moved_noisy, moved_clean))


# --------------------------------------------------------------------------------------
# 4. Early stopping


@pytest.mark.parametrize("restore", [True, False], ids=["restore_best_weights", "keep_last_weights"])
def test_early_stopping_stops_early_and_keeps_the_weights_restore_best_weights_asks_for(
    runtime_cpu, restore: bool
) -> None:
    """On a set that overfits quickly (30 samples, half the labels random, a big model) val_loss
    falls for a few epochs then rises: training stops well before ``epochs``. With
    ``restore_best_weights`` the final model scores exactly the minimum val_loss in history
    (the best epoch's weights); without it, exactly the last epoch's (worse) val_loss."""
    from gapline.evaluate.splits import evaluate_splits
    from gapline.train.fit import train_model

    runtime_cpu(0)
    x, y = blobs(30, seed=0)
    xv, yv = blobs(60, seed=1)
    rng = np.random.default_rng(5)
    y = np.where(rng.random(30) < 0.5, rng.integers(0, 3, size=30), y)
    stopping = {"enabled": True, "monitor": "val_loss", "patience": 2, "restore_best_weights": restore}
    cfg = config(
        {
            "model": {"hidden_units": [128, 128]},
            "regularization": {"early_stopping": stopping},
            "train": {"epochs": 40, "batch_size": 8, "learning_rate": 0.003},
        }
    )
    result = train_model(cfg, x, y, xv, yv, 3)
    val_losses = result.history["val_loss"]

    assert result.epochs_run < cfg.train.epochs
    assert len(val_losses) == result.epochs_run
    best = int(np.argmin(val_losses))
    assert best >= 1  # a real improvement happened: the restored weights are not the first epoch's
    assert best == result.epochs_run - 1 - 2  # stopped after `patience` epochs without improvement
    assert val_losses[-1] > val_losses[best] + 1e-4  # which weights are kept matters
    final = evaluate_splits(result.model, {"val": (xv, yv)}, 3)["val_loss"]
    assert final == pytest.approx(val_losses[best] if restore else val_losses[-1], abs=1e-5)


# --------------------------------------------------------------------------------------
# 5. Batch norm statistics


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_batch_norm_moving_statistics_update_in_training_only(family: str, runtime_cpu) -> None:
    """predict/evaluate/inference calls leave moving_mean/variance alone; a training-mode call
    and a fit step move them."""
    from gapline.config.tasks import one_hot
    from gapline.train.fit import compile_model

    runtime_cpu(0)
    model_cfg = {"family": family, "hidden_units": [8], "conv_filters": [4]}
    cfg = config({"model": model_cfg, "regularization": {"batch_norm": True}})
    model = compile_model(build(cfg), cfg)
    bn = [lyr for lyr in model.layers if lyr.name.endswith("_bn")][0]
    x, y = images(16, seed=3)
    x = x * 3.0 + 1.0  # far from the initial statistics (mean 0, variance 1)

    def stats() -> list[np.ndarray]:
        return [np_(bn.moving_mean).copy(), np_(bn.moving_variance).copy()]

    initial = stats()
    model.predict(x, verbose=0)
    model.evaluate(x, one_hot(y, 3), verbose=0)
    model(x, training=False)
    for a, b in zip(initial, stats()):
        np.testing.assert_array_equal(a, b)

    model(x, training=True)
    after_call = stats()
    assert not np.allclose(initial[0], after_call[0])
    assert not np.allclose(initial[1], after_call[1])

    model.train_on_batch(x, one_hot(y, 3))
    assert not np.allclose(after_call[0], stats()[0])


# --------------------------------------------------------------------------------------
# 6. Online augmentation

ONLINE = {
    "shift": ({"shift": 0.25}, "aug_shift"),
    "rotation": ({"rotation": 60.0}, "aug_rotate"),
    "zoom": ({"zoom": 0.4}, "aug_zoom"),
    "noise": ({"noise_std": 0.2}, "aug_noise"),
    "flip": ({"flip_horizontal": True}, "aug_flip"),
}


@pytest.mark.parametrize("name", sorted(ONLINE))
def test_online_augmentation_transforms_in_training_only(name: str, runtime_cpu) -> None:
    """The preprocessing layer changes images in training mode (fresh per call) and passes
    them through unchanged in inference mode."""
    import keras

    runtime_cpu(0)
    settings, layer_name = ONLINE[name]
    cfg = config({"augment": {"online": {"enabled": True, **settings}}})
    model = build(cfg)
    probe = keras.Model(model.input, model.get_layer(layer_name).output)
    x, _ = images(8, seed=4)

    trained = np_(probe(x, training=True))
    assert trained.shape == x.shape
    assert not np.allclose(trained, x, atol=1e-4)
    np.testing.assert_array_equal(np_(probe(x, training=False)), x)
    np.testing.assert_array_equal(np_(probe.predict(x, verbose=0)), x)


def test_online_augmentation_leaves_inference_of_the_whole_model_unchanged(runtime_cpu) -> None:
    """With every online transform on, inference equals the same network without them."""
    runtime_cpu(0)
    online = {"enabled": True, "shift": 0.2, "rotation": 30.0, "zoom": 0.2, "noise_std": 0.1, "flip_horizontal": True}
    model = build(config({"augment": {"online": online}}))
    clean = build(config())
    clean.set_weights(model.get_weights())
    x, _ = images(8, seed=5)
    np.testing.assert_allclose(np_(model(x, training=False)), np_(clean(x, training=False)), rtol=0, atol=1e-6)
    assert not np.allclose(np_(model(x, training=True)), np_(clean(x, training=True)), atol=1e-6)


def test_online_augmentation_trains_with_labels_untouched(runtime_cpu) -> None:
    """train_model with online augmentation fits learnable data (labels still line up with
    images) and leaves the caller's arrays as they were."""
    from gapline.train.fit import train_model

    runtime_cpu(0)
    online = {"enabled": True, "noise_std": 0.05, "zoom": 0.1}
    cfg = config({"model": {"hidden_units": [32]}, "augment": {"online": online}, "train": {"epochs": 4}})
    x, y = images(60, seed=6)
    xv, yv = images(30, seed=7)
    x_before, y_before = x.copy(), y.copy()
    result = train_model(cfg, x, y, xv, yv, 3)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)
    assert result.epochs_run == 4
    assert result.history["train_eval_accuracy"][-1] > 0.8
    assert result.history["val_accuracy"][-1] > 0.8


@pytest.mark.parametrize(
    "key, value",
    [("shift", 0.1), ("rotation", 10.0), ("zoom", 0.1), ("flip_horizontal", True)],
)
def test_online_geometric_augmentation_on_tabular_input_is_not_applicable(key: str, value: Any) -> None:
    """Geometric transforms make no sense for feature vectors: a one-line ConfigError."""
    cfg = config({"augment": {"online": {"enabled": True, key: value}}})
    with pytest.raises(ConfigError) as info:
        build(cfg, input_shape=(5,))
    msg = str(info.value)
    assert f"augment.online.{key}" in msg and "not applicable" in msg and "\n" not in msg


def test_online_noise_on_tabular_input_is_allowed_and_random_in_training() -> None:
    """Feature noise is the one online augmentation that applies to tabular data."""
    import keras

    model = build(config({"augment": {"online": {"enabled": True, "noise_std": 0.2}}}), input_shape=(5,))
    probe = keras.Model(model.input, model.get_layer("aug_noise").output)
    x = np.ones((4, 5), dtype=np.float32)
    assert not np.allclose(np_(probe(x, training=True)), x)
    np.testing.assert_array_equal(np_(probe(x, training=False)), x)


# --------------------------------------------------------------------------------------
# 7. Offline augmentation (covered in test_augment.py): one sanity check of the effect


def test_offline_augmentation_adds_labelled_variants() -> None:
    """copies=2 triples the training set, originals first, each variant keeping its label."""
    from gapline.config.schema import AugmentConfig
    from gapline.data.augment import augment_dataset

    x, y = images(9, seed=8)
    xa, ya = augment_dataset(x, y, AugmentConfig(copies=2, shift=0.2, seed=1), "image")
    assert len(xa) == 27
    np.testing.assert_array_equal(ya, np.tile(y, 3))
    assert not np.array_equal(xa[9:18], x)


# --------------------------------------------------------------------------------------
# 8. Parameter tying

TIED = {
    "mlp": ({"family": "mlp", "hidden_units": [16, 16, 16]}, "dense_tied", (16, 16), "dense"),
    "cnn": ({"family": "cnn", "conv_filters": [8, 8, 8], "dense_units": 8}, "conv_tied", (3, 3, 8, 8), "conv"),
}


@pytest.mark.parametrize("family", sorted(TIED))
def test_tied_blocks_share_one_kernel_variable(family: str, runtime_cpu) -> None:
    """Blocks 2..n hold ONE kernel: there is a single variable of the tied shape, its layer is
    applied twice, and overwriting it changes the output of both blocks that use it."""
    import keras

    runtime_cpu(0)
    model_cfg, tied_name, tied_shape, prefix = TIED[family]
    model = build(config({"model": model_cfg, "regularization": {"tie_weights": True}}))
    tied = model.get_layer(tied_name)

    hidden = hidden_kernel_layers(model)
    kernels = [lyr.kernel for lyr in hidden]
    assert [tuple(k.shape) for k in kernels].count(tied_shape) == 1
    # Three blocks (plus the CNN's dense head) but one linear layer fewer: blocks 2 and 3 share.
    assert len(hidden) == (2 if family == "mlp" else 3)
    assert len(tied._inbound_nodes) == 2
    assert len({id(v) for v in model.trainable_weights}) == len(model.trainable_weights)

    uses = [model.get_layer(f"{prefix}_{i}_act").output for i in (1, 2)]  # blocks 2 and 3
    probe = keras.Model(model.input, uses)
    x, _ = images(4, seed=9)
    block2, block3 = (np_(t) for t in probe(x, training=False))
    assert block2.std() > 0 and block3.std() > 0

    tied.kernel.assign(np.zeros(tied_shape, dtype=np.float32))
    tied.bias.assign(np.full(tied.bias.shape, 0.5, dtype=np.float32))
    new2, new3 = (np_(t) for t in probe(x, training=False))
    # With a zero kernel and bias 0.5 each use of the layer outputs relu(0.5) = 0.5 everywhere.
    np.testing.assert_allclose(new2, 0.5, atol=1e-6)
    np.testing.assert_allclose(new3, 0.5, atol=1e-6)
    assert not np.allclose(block2, new2) and not np.allclose(block3, new3)


@pytest.mark.parametrize("family", sorted(TIED))
def test_effective_params_counts_the_tied_layer_once(family: str) -> None:
    """Tying stores fewer weights than it applies: params_untied - params is exactly the tied
    layer's size (applied twice, stored once), and it is smaller than the untied model."""
    from gapline.models.build import effective_params

    model_cfg, tied_name, _, _ = TIED[family]
    tied_model = build(config({"model": model_cfg, "regularization": {"tie_weights": True}}))
    untied_model = build(config({"model": model_cfg}))
    counts = effective_params(tied_model)
    assert counts["params"] < counts["params_untied"]
    assert counts["params_untied"] - counts["params"] == tied_model.get_layer(tied_name).count_params()
    assert counts["params"] == tied_model.count_params() < untied_model.count_params()
    assert counts["params_untied"] == untied_model.count_params()
    plain = effective_params(untied_model)
    assert plain["params"] == plain["params_untied"]


@pytest.mark.parametrize(
    "model_cfg, key",
    [
        ({"family": "mlp", "hidden_units": [16, 16]}, "model.hidden_units"),
        ({"family": "mlp", "hidden_units": [16, 16, 8]}, "model.hidden_units"),
        ({"family": "cnn", "conv_filters": [8, 8]}, "model.conv_filters"),
        ({"family": "cnn", "conv_filters": [8, 16, 8]}, "model.conv_filters"),
    ],
)
def test_tying_needs_three_equal_blocks(model_cfg: dict[str, Any], key: str) -> None:
    """Fewer than three blocks or unequal widths: one line naming the width list."""
    with pytest.raises(ConfigError) as info:
        config({"model": model_cfg, "regularization": {"tie_weights": True}})
    msg = str(info.value)
    assert msg.startswith(key + "=") and "tie_weights" in msg and "\n" not in msg


# --------------------------------------------------------------------------------------
# 9. Weight sharing: the CNN is smaller than a comparable MLP


@pytest.mark.parametrize("input_shape", [(8, 8, 1), (32, 32, 3)])
def test_cnn_has_fewer_params_than_an_mlp_of_the_same_widths(input_shape: tuple[int, ...]) -> None:
    """Same depth and widths (16 then 32 units/filters): the conv layer shares one small kernel
    across positions, the dense layer needs a weight per input position."""
    cnn = build(config({"model": {"family": "cnn", "conv_filters": [16], "dense_units": 32}}), input_shape, 10)
    mlp = build(config({"model": {"family": "mlp", "hidden_units": [16, 32]}}), input_shape, 10)
    assert cnn.count_params() < mlp.count_params()
    h, w, c = input_shape
    assert mlp.get_layer("dense_0").count_params() == h * w * c * 16 + 16
    assert cnn.get_layer("conv_0").count_params() == 3 * 3 * c * 16 + 16


def test_cnn_params_do_not_grow_with_image_size_but_mlp_params_do() -> None:
    """The default two-conv CNN has the same size on 8x8 and 32x32 RGB; an MLP grows ~16x."""
    cnn_cfg = config({"model": {"family": "cnn", "conv_filters": [16, 32], "dense_units": 64}})
    mlp_cfg = config({"model": {"family": "mlp", "hidden_units": [16, 32, 64]}})
    small_cnn, big_cnn = build(cnn_cfg, (8, 8, 3), 10), build(cnn_cfg, (32, 32, 3), 10)
    small_mlp, big_mlp = build(mlp_cfg, (8, 8, 3), 10), build(mlp_cfg, (32, 32, 3), 10)
    assert small_cnn.count_params() == big_cnn.count_params()
    assert big_mlp.count_params() > 5 * small_mlp.count_params()
    assert big_cnn.count_params() < big_mlp.count_params() / 5


# --------------------------------------------------------------------------------------
# 10. Max-norm and label smoothing


@pytest.fixture(scope="module")
def max_norm_models(runtime_cpu) -> dict[str, Any]:
    """An MLP and a CNN trained 5 epochs at a high learning rate with max_norm=0.5."""
    from gapline.config.tasks import one_hot
    from gapline.train.fit import compile_model

    x, y = images(48, seed=10)
    out = {}
    for family in ("mlp", "cnn"):
        cfg = config(
            {
                "model": {"family": family, "hidden_units": [32, 32], "conv_filters": [8, 8], "dense_units": 16},
                "regularization": {"max_norm": 0.5},
                "train": {"learning_rate": 0.05},
            }
        )
        runtime_cpu(0)
        model = compile_model(build(cfg), cfg)
        model.fit(x, one_hot(y, 3), epochs=5, batch_size=16, verbose=0)
        out[family] = model
    return out


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_max_norm_bounds_every_dense_column(family: str, max_norm_models) -> None:
    """After training, each Dense unit's incoming weight vector has norm <= 0.5."""
    import keras

    model = max_norm_models[family]
    dense = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Dense)]
    assert dense
    for layer in dense:
        norms = np.linalg.norm(np_(layer.kernel), axis=0)
        assert norms.max() <= 0.5 + 1e-5, (layer.name, norms.max())
    # Training pushed at least one column against the bound (the constraint was active).
    assert max(np.linalg.norm(np_(lyr.kernel), axis=0).max() for lyr in dense) > 0.45


def test_max_norm_bounds_every_conv_filter(max_norm_models) -> None:
    """Each conv filter's incoming weight vector (rows x cols x in-channels) has norm <= 0.5."""
    import keras

    model = max_norm_models["cnn"]
    convs = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Conv2D)]
    assert convs
    for layer in convs:
        kernel = np_(layer.kernel)
        norms = np.sqrt(np.sum(np.square(kernel), axis=(0, 1, 2)))
        assert norms.max() <= 0.5 + 1e-5, (layer.name, norms.max())


def _confident_classifier(label_smoothing: float) -> Any:
    """A compiled model with no hidden layer that maps one-hot inputs to ~one-hot outputs."""
    from gapline.models.build import build_model
    from gapline.train.fit import compile_model

    cfg = config({"model": {"hidden_units": []}, "regularization": {"label_smoothing": label_smoothing}})
    model = build_model((3,), 3, cfg.model, cfg.regularization)
    model.get_layer("classifier").set_weights([np.eye(3, dtype=np.float32) * 60.0, np.zeros(3, dtype=np.float32)])
    return compile_model(model, cfg)


def test_label_smoothing_penalizes_perfectly_confident_correct_predictions() -> None:
    """Confident and correct costs ~0 without smoothing but clearly > 0 with it, because the
    smoothed target asks for some probability on the other classes."""
    from gapline.config.tasks import one_hot

    y = np.array([0, 1, 2, 1], dtype=np.int64)
    x = np.eye(3, dtype=np.float32)[y]
    sharp = _confident_classifier(0.0)
    smooth = _confident_classifier(0.2)
    assert np.array_equal(np.argmax(sharp.predict(x, verbose=0), axis=1), y)
    plain_loss = sharp.evaluate(x, one_hot(y, 3), verbose=0, return_dict=True)["loss"]
    smooth_loss = smooth.evaluate(x, one_hot(y, 3), verbose=0, return_dict=True)["loss"]
    assert plain_loss < 1e-5
    # The smoothed target puts 0.2 * 2/3 of its mass on classes predicted with p ~ 0.
    assert smooth_loss > 0.1


# --------------------------------------------------------------------------------------
# 11. Per-block strength and dropout rates


@pytest.mark.parametrize("penalty", ["l1", "l2"])
@pytest.mark.parametrize(
    "family, model_cfg, strengths, names",
    [
        ("mlp", {"hidden_units": [8, 8]}, [0.5, 3.0], ["dense_0", "dense_1"]),
        ("cnn", {"conv_filters": [4, 4], "dense_units": 8}, [0.25, 2.0, 5.0], ["conv_0", "conv_1", "dense_head"]),
    ],
)
def test_layer_strength_scales_the_penalty_per_block(family, model_cfg, strengths, names, penalty) -> None:
    """Block i's regularization loss is strength_i * penalty * sum(|w_i|^p); the classifier
    keeps strength 1."""
    rate = 0.01
    cfg = config(
        {"model": {"family": family, **model_cfg}, "regularization": {penalty: rate, "layer_strength": strengths}}
    )
    model = build(cfg)
    model(np.zeros((1, 8, 8, 1), dtype=np.float32))

    def expected(layer: Any, s: float) -> float:
        k = np_(layer.kernel)
        total = np.sum(np.abs(k)) if penalty == "l1" else np.sum(np.square(k))
        return s * rate * float(total)

    for name, s in zip(names, strengths):
        layer = model.get_layer(name)
        losses = [float(np_(v)) for v in layer.losses]
        assert len(losses) == 1, name
        assert losses[0] == pytest.approx(expected(layer, s), rel=1e-5), name
    classifier = model.get_layer("classifier")
    assert float(np_(classifier.losses[0])) == pytest.approx(expected(classifier, 1.0), rel=1e-5)
    total = sum(float(np_(v)) for v in model.losses)
    want = sum(expected(model.get_layer(n), s) for n, s in zip(names, strengths)) + expected(classifier, 1.0)
    assert total == pytest.approx(want, rel=1e-5)


def test_dropout_rates_put_each_rate_on_its_block() -> None:
    """MLP: each block's Dropout has its own rate (0 means no layer), overriding ``dropout``."""
    import keras

    reg = {"dropout": 0.25, "dropout_rates": [0.1, 0.0, 0.4]}
    cfg = config({"model": {"hidden_units": [8, 8, 8]}, "regularization": reg})
    model = build(cfg)
    drops = {lyr.name: lyr for lyr in model.layers if isinstance(lyr, keras.layers.Dropout)}
    assert set(drops) == {"dense_0_dropout", "dense_2_dropout"}
    assert drops["dense_0_dropout"].rate == pytest.approx(0.1)
    assert drops["dense_2_dropout"].rate == pytest.approx(0.4)
    # The Dropout follows its own block (its input is that block's activation).
    assert drops["dense_2_dropout"].input is model.get_layer("dense_2_act").output


def test_dropout_rates_on_cnn_blocks_and_head() -> None:
    """CNN: conv blocks get SpatialDropout2D at their rate, the dense head a plain Dropout."""
    import keras

    model_cfg = {"family": "cnn", "conv_filters": [4, 4], "dense_units": 8}
    cfg = config({"model": model_cfg, "regularization": {"dropout_rates": [0.2, 0.3, 0.5]}})
    model = build(cfg)
    assert isinstance(model.get_layer("conv_0_dropout"), keras.layers.SpatialDropout2D)
    assert isinstance(model.get_layer("conv_1_dropout"), keras.layers.SpatialDropout2D)
    head = model.get_layer("dense_head_dropout")
    assert isinstance(head, keras.layers.Dropout) and not isinstance(head, keras.layers.SpatialDropout2D)
    rates = [model.get_layer(n).rate for n in ("conv_0_dropout", "conv_1_dropout", "dense_head_dropout")]
    assert rates == [pytest.approx(0.2), pytest.approx(0.3), pytest.approx(0.5)]


@pytest.mark.parametrize("key", ["layer_strength", "dropout_rates"])
@pytest.mark.parametrize(
    "model_cfg, values, blocks",
    [
        ({"family": "mlp", "hidden_units": [8, 8]}, [0.1, 0.2, 0.3], 2),
        ({"family": "cnn", "conv_filters": [4, 4]}, [0.1, 0.2], 3),
    ],
)
def test_per_block_lists_of_the_wrong_length_are_one_line_errors(key, model_cfg, values, blocks) -> None:
    """One value per hidden block (the CNN's dense head counts) or nothing."""
    with pytest.raises(ConfigError) as info:
        config({"model": model_cfg, "regularization": {key: values}})
    msg = str(info.value)
    assert msg.startswith(f"regularization.{key}=") and f"({blocks} for" in msg and "\n" not in msg


# --------------------------------------------------------------------------------------
# 12. Every technique, alone and together, builds and trains


def _grid() -> dict[str, dict[str, Any]]:
    tied_model = {"hidden_units": [8, 8, 8], "conv_filters": [4, 4, 4]}
    online = {"enabled": True, "shift": 0.1, "rotation": 10.0, "zoom": 0.1, "noise_std": 0.05, "flip_horizontal": True}
    everything = {
        "l1": 1e-4, "l2": 1e-4, "dropout": 0.2, "batch_norm": True, "input_noise": 0.05, "hidden_noise": 0.05,
        "weight_noise": 0.02, "tie_weights": True, "max_norm": 2.0, "label_smoothing": 0.1,
        "early_stopping": {"enabled": True, "patience": 0},
    }
    return {
        "none": {},
        "l1_l2": {"regularization": {"l1": 1e-3, "l2": 1e-3}},
        "dropout": {"regularization": {"dropout": 0.3}},
        "batch_norm": {"regularization": {"batch_norm": True}},
        "noise": {"regularization": {"input_noise": 0.1, "hidden_noise": 0.1, "weight_noise": 0.05}},
        "tied": {"model": tied_model, "regularization": {"tie_weights": True}},
        "online_augment": {"augment": {"online": online}},
        "max_norm_label_smoothing": {"regularization": {"max_norm": 1.0, "label_smoothing": 0.1}},
        "early_stopping": {
            "regularization": {"early_stopping": {"enabled": True, "patience": 0}},
            "train": {"epochs": 2},
        },
        "all": {
            "model": tied_model,
            "regularization": everything,
            "augment": {"online": online},
            "train": {"epochs": 2},
        },
    }


GRID = _grid()


@pytest.fixture(scope="module")
def grid_data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"train": images(32, seed=11), "val": images(12, seed=12)}


@pytest.mark.parametrize("technique", list(GRID))
@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_every_technique_builds_and_trains(family: str, technique: str, grid_data, runtime_cpu) -> None:
    """Each technique (and all of them together) builds, trains and predicts probabilities."""
    from gapline.models.regularization import technique_label
    from gapline.train.fit import train_model

    runtime_cpu(0)
    small = {"family": family, "hidden_units": [8, 8], "conv_filters": [4, 4], "dense_units": 8}
    cfg = config({"model": small}, GRID[technique])
    (x, y), (xv, yv) = grid_data["train"], grid_data["val"]
    result = train_model(cfg, x, y, xv, yv, 3)
    assert 1 <= result.epochs_run <= cfg.train.epochs
    for key in ("loss", "val_loss", "gap_loss", "train_eval_loss"):
        assert np.isfinite(result.history[key]).all(), key
    p = result.model.predict(xv, verbose=0)
    assert p.shape == (len(xv), 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert (technique_label(cfg) == "none") == (technique == "none" and family == "mlp")


# --------------------------------------------------------------------------------------
# 13. Learning curve


def test_learning_curve_one_row_per_fraction(tmp_path) -> None:
    """More data per row: one row per fraction, ascending, with train_samples growing."""
    from gapline.experiments.learning_curve import COLUMNS, learning_curve

    x, y = images(90, seed=13)
    path = tmp_path / "tiny.npz"
    np.savez(path, x=x[..., 0], y=y)
    cfg = config(
        {
            "data": {"source": "npz", "path": str(path), "val_fraction": 0.2, "test_fraction": 0.2, "seed": 1},
            "train": {"epochs": 2},
        }
    )
    rows = learning_curve(cfg, [0.3, 1.0])
    assert [row["train_fraction"] for row in rows] == [0.3, 1.0]
    for row in rows:
        assert set(row) == set(COLUMNS)
        assert row["epochs_run"] == 2
    small, full = rows[0]["train_samples"], rows[1]["train_samples"]
    assert 0 < small < full
    assert abs(small - 0.3 * full) <= 3  # rounding per class, 3 classes
    assert full == 90 - 18 - 18
