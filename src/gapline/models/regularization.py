"""One place that turns the ``regularization`` (and online ``augment``) config into Keras pieces.

Model builders ask here for linear layers (with penalties, constraints, weight noise and
tying already applied), the layers that follow them, and the input pipeline; the trainer
asks for callbacks (the loss is the task's: :mod:`gapline.config.tasks`). Nothing else in gapline reads ``regularization.*``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gapline.config.schema import Config, OnlineAugmentConfig, RegularizationConfig
from gapline.config.tasks import higher_is_better
from gapline.core.errors import ConfigError, bad_value
from gapline.data.augment import refuse_geometric


def strength(reg: RegularizationConfig, block: int | None) -> float:
    """Per-block multiplier of the weight penalties (1 for the classifier and by default)."""
    if block is None or not reg.layer_strength:
        return 1.0
    return float(reg.layer_strength[block])


def kernel_regularizer(reg: RegularizationConfig, block: int | None = None) -> Any:
    import keras

    s = strength(reg, block)
    l1, l2 = reg.l1 * s, reg.l2 * s
    if l1 > 0 and l2 > 0:
        return keras.regularizers.L1L2(l1=l1, l2=l2)
    if l1 > 0:
        return keras.regularizers.L1(l1)
    if l2 > 0:
        return keras.regularizers.L2(l2)
    return None


def bias_regularizer(reg: RegularizationConfig, block: int | None = None) -> Any:
    return kernel_regularizer(reg, block) if reg.bias_penalty else None


def activity_regularizer(reg: RegularizationConfig) -> Any:
    import keras

    if reg.activity_l1 > 0 or reg.activity_l2 > 0:
        return keras.regularizers.L1L2(l1=reg.activity_l1, l2=reg.activity_l2)
    return None


def kernel_constraint(reg: RegularizationConfig, axis: Any = 0) -> Any:
    """Max-norm on each unit's whole incoming weight vector: ``axis=0`` for a Dense kernel,
    ``[0, 1, 2]`` for a Conv2D kernel (rows, cols, in, out)."""
    import keras

    return keras.constraints.MaxNorm(reg.max_norm, axis=axis) if reg.max_norm > 0 else None


def dropout_rate(reg: RegularizationConfig, block: int) -> float:
    return float(reg.dropout_rates[block]) if reg.dropout_rates else float(reg.dropout)


def dense(reg: RegularizationConfig, units: int, name: str, block: int | None, seed: int, **kw: Any) -> Any:
    """A Dense layer with this config's penalties, constraint and (training-only) weight noise.

    Plain Keras layers unless weight noise is asked for, so most saved models load anywhere
    without gapline installed.
    """
    import keras

    from gapline.layers import NoisyDense  # Keras at import: lazily, like keras itself

    noisy: dict[str, Any] = {"weight_noise": reg.weight_noise, "seed": seed} if reg.weight_noise > 0 else {}
    cls = NoisyDense if noisy else keras.layers.Dense
    return cls(
        units,
        **noisy,
        use_bias=not (reg.batch_norm and block is not None),
        kernel_regularizer=kernel_regularizer(reg, block),
        bias_regularizer=bias_regularizer(reg, block),
        kernel_constraint=kernel_constraint(reg),
        name=name,
        **kw,
    )


def conv(reg: RegularizationConfig, filters: int, kernel_size: int, name: str, block: int, seed: int) -> Any:
    """A Conv2D (one kernel shared across positions) with this config's penalties and noise."""
    import keras

    from gapline.layers import NoisyConv2D  # Keras at import: lazily, like keras itself

    noisy: dict[str, Any] = {"weight_noise": reg.weight_noise, "seed": seed} if reg.weight_noise > 0 else {}
    cls = NoisyConv2D if noisy else keras.layers.Conv2D
    return cls(
        filters,
        kernel_size,
        padding="same",
        **noisy,
        use_bias=not reg.batch_norm,
        kernel_regularizer=kernel_regularizer(reg, block),
        bias_regularizer=bias_regularizer(reg, block),
        kernel_constraint=kernel_constraint(reg, axis=[0, 1, 2]),
        name=name,
    )


def block_tail(
    reg: RegularizationConfig, activation: str, name: str, block: int, *, spatial: bool, seed: int
) -> list[Any]:
    """What follows a linear layer: [batch norm] → activation → [noise] → [dropout]."""
    import keras

    layers: list[Any] = []
    if reg.batch_norm:
        layers.append(keras.layers.BatchNormalization(name=f"{name}_bn"))
    layers.append(
        keras.layers.Activation(activation, name=f"{name}_act")
        if activity_regularizer(reg) is None
        else keras.layers.Activation(activation, name=f"{name}_act", activity_regularizer=activity_regularizer(reg))
    )
    if reg.hidden_noise > 0:
        layers.append(keras.layers.GaussianNoise(reg.hidden_noise, seed=seed, name=f"{name}_noise"))
    rate = dropout_rate(reg, block)
    if rate > 0:
        cls = keras.layers.SpatialDropout2D if spatial else keras.layers.Dropout
        layers.append(cls(rate, seed=seed, name=f"{name}_dropout"))
    return layers


def online_augmentation(online: OnlineAugmentConfig, input_rank: int, seed: int) -> list[Any]:
    """Keras preprocessing layers; they transform only when ``training=True``."""
    import keras

    if not online.enabled:
        return []
    image = input_rank == 3
    if not image:
        refuse_geometric(online, "augment.online")
    layers: list[Any] = []
    if image and online.flip_horizontal:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, name="aug_flip"))
    if image and online.rotation:
        layers.append(
            keras.layers.RandomRotation(online.rotation / 360.0, fill_mode="constant", seed=seed + 1, name="aug_rotate")
        )
    if image and online.zoom:
        layers.append(keras.layers.RandomZoom(online.zoom, fill_mode="constant", seed=seed + 2, name="aug_zoom"))
    if image and online.shift:
        layers.append(
            keras.layers.RandomTranslation(online.shift, online.shift, fill_mode="constant", seed=seed + 3, name="aug_shift")
        )
    if online.noise_std:
        layers.append(keras.layers.GaussianNoise(online.noise_std, seed=seed + 4, name="aug_noise"))
    if not layers:
        raise ConfigError(
            bad_value("augment.online.enabled", True, "at least one of shift, rotation, zoom, flip_horizontal, noise_std set")
        )
    return layers


def input_layers(reg: RegularizationConfig, seed: int) -> list[Any]:
    """Training-only noise on the raw input."""
    import keras

    return [keras.layers.GaussianNoise(reg.input_noise, seed=seed, name="input_noise")] if reg.input_noise > 0 else []


def callbacks(reg: RegularizationConfig) -> list[Any]:
    import keras

    es = reg.early_stopping
    if not es.enabled:
        return []

    mode = "max" if higher_is_better(es.monitor) else "min"
    return [
        keras.callbacks.EarlyStopping(
            monitor=es.monitor,
            mode=mode,
            patience=es.patience,
            min_delta=es.min_delta,
            restore_best_weights=es.restore_best_weights,
            start_from_epoch=es.start_from_epoch,
        )
    ]


# What each technique name means, in the order tags and diagnoses list them: a predicate on the
# config (weight sharing: on the built model too, see techniques()).
TECHNIQUES: tuple[tuple[str, Callable[[Config], bool]], ...] = (
    ("l1", lambda c: c.regularization.l1 > 0),
    ("l2", lambda c: c.regularization.l2 > 0),
    ("activity_penalty", lambda c: c.regularization.activity_l1 > 0 or c.regularization.activity_l2 > 0),
    ("dropout", lambda c: c.regularization.dropout > 0 or any(rate > 0 for rate in c.regularization.dropout_rates)),
    ("batch_norm", lambda c: c.regularization.batch_norm),
    ("noise", lambda c: any(v > 0 for v in (c.regularization.input_noise, c.regularization.hidden_noise, c.regularization.weight_noise))),
    ("tying", lambda c: c.regularization.tie_weights),
    ("label_smoothing", lambda c: c.regularization.label_smoothing > 0),
    ("max_norm", lambda c: c.regularization.max_norm > 0),
    ("early_stopping", lambda c: c.regularization.early_stopping.enabled),
    ("augment", lambda c: c.augment.copies > 0),
    ("online_augment", lambda c: c.augment.online.enabled),
    ("weight_sharing", lambda c: c.model.family == "cnn"),
    ("transfer", lambda c: bool(c.model.init_from) or c.model.weights != "none"),
)


def techniques(cfg: Config, shares_weights: bool | None = None) -> list[str]:
    """The techniques a config uses, in plain words, for tags and diagnoses.

    ``shares_weights``: whether the built model applies kernels at many positions or many
    times; known from the config for gapline's families, from the model for the others."""
    used = [
        name
        for name, applies in TECHNIQUES
        if (shares_weights if name == "weight_sharing" and shares_weights is not None else applies(cfg))
    ]
    if cfg.data.train_fraction < 1.0:
        used.append(f"train_fraction={cfg.data.train_fraction:g}")
    return used


def technique_label(cfg: Config, shares_weights: bool | None = None) -> str:
    return label(techniques(cfg, shares_weights))


def label(used: list[str]) -> str:
    """The techniques as one tag value: ``l2+dropout`` (the training fraction is a param)."""
    kept = [t for t in used if not t.startswith("train_fraction")]
    return "+".join(kept) if kept else "none"
