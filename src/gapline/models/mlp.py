"""A dense network: every weight sees one input position, nothing is shared across positions."""

from __future__ import annotations

from typing import Any

from .. import regularization as R
from ..config import ModelConfig, OnlineAugmentConfig, RegularizationConfig


def build_mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    model: ModelConfig,
    reg: RegularizationConfig,
    online: OnlineAugmentConfig,
    seed: int,
) -> Any:
    import keras

    inputs = keras.Input(shape=input_shape, name="inputs")
    x = inputs
    for layer in R.online_augmentation(online, len(input_shape), seed) + R.input_layers(reg, seed):
        x = layer(x)
    if len(input_shape) > 1:
        x = keras.layers.Flatten(name="flatten")(x)
    tied = None
    for i, units in enumerate(model.hidden_units):
        if reg.tie_weights and i >= 1:
            # Blocks 2..n apply one shared layer: one kernel, used n-1 times.
            tied = tied or R.dense(reg, units, "dense_tied", 1, seed + 100)
            linear = tied
        else:
            linear = R.dense(reg, units, f"dense_{i}", i, seed + 100 + i)
        x = linear(x)
        for layer in R.block_tail(reg, model.activation, f"dense_{i}", i, spatial=False, seed=seed + 200 + i):
            x = layer(x)
    outputs = R.dense(reg, num_classes, "classifier", None, seed + 300, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="mlp")
