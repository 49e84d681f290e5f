"""One place that turns the ``regularization`` config into Keras pieces.

Model builders ask here for regularizers, constraints and noise/dropout layers; the trainer
asks for callbacks and the loss. Nothing else in gapline reads ``regularization.*``.
"""

from __future__ import annotations

from typing import Any

from .config import Config, RegularizationConfig


def kernel_regularizer(reg: RegularizationConfig) -> Any:
    import keras

    if reg.l1 > 0 and reg.l2 > 0:
        return keras.regularizers.L1L2(l1=reg.l1, l2=reg.l2)
    if reg.l1 > 0:
        return keras.regularizers.L1(reg.l1)
    if reg.l2 > 0:
        return keras.regularizers.L2(reg.l2)
    return None


def kernel_constraint(reg: RegularizationConfig) -> Any:
    import keras

    return keras.constraints.MaxNorm(reg.max_norm) if reg.max_norm > 0 else None


def input_layers(reg: RegularizationConfig) -> list[Any]:
    """Layers applied to the raw input (training-only noise)."""
    import keras

    return [keras.layers.GaussianNoise(reg.input_noise, name="input_noise")] if reg.input_noise > 0 else []


def block_tail(reg: RegularizationConfig, activation: str, name: str, *, spatial: bool) -> list[Any]:
    """What follows a linear layer: [batch norm] → activation → [noise] → [dropout]."""
    import keras

    layers: list[Any] = []
    if reg.batch_norm:
        layers.append(keras.layers.BatchNormalization(name=f"{name}_bn"))
    layers.append(keras.layers.Activation(activation, name=f"{name}_act"))
    if reg.hidden_noise > 0:
        layers.append(keras.layers.GaussianNoise(reg.hidden_noise, name=f"{name}_noise"))
    if reg.dropout > 0:
        cls = keras.layers.SpatialDropout2D if spatial else keras.layers.Dropout
        layers.append(cls(reg.dropout, name=f"{name}_dropout"))
    return layers


def loss(reg: RegularizationConfig) -> Any:
    """Categorical cross-entropy on one-hot labels so that label smoothing is available."""
    import keras

    return keras.losses.CategoricalCrossentropy(label_smoothing=reg.label_smoothing)


def callbacks(reg: RegularizationConfig) -> list[Any]:
    import keras

    es = reg.early_stopping
    if not es.enabled:
        return []
    mode = "max" if "accuracy" in es.monitor else "min"
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


def techniques(cfg: Config) -> list[str]:
    """The techniques a config uses, in plain words, for tags and diagnoses."""
    r = cfg.regularization
    used = []
    if r.l1 > 0:
        used.append("l1")
    if r.l2 > 0:
        used.append("l2")
    if r.dropout > 0:
        used.append("dropout")
    if r.batch_norm:
        used.append("batch_norm")
    if r.input_noise > 0 or r.hidden_noise > 0:
        used.append("noise")
    if r.label_smoothing > 0:
        used.append("label_smoothing")
    if r.max_norm > 0:
        used.append("max_norm")
    if r.early_stopping.enabled:
        used.append("early_stopping")
    if cfg.augment.copies > 0:
        used.append("augment")
    if cfg.model.family == "cnn":
        used.append("weight_sharing")
    if cfg.data.train_fraction < 1.0:
        used.append(f"train_fraction={cfg.data.train_fraction:g}")
    return used


def technique_label(cfg: Config) -> str:
    used = [t for t in techniques(cfg) if not t.startswith("train_fraction")]
    return "+".join(used) if used else "none"
