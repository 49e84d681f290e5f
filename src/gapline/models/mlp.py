"""A dense network: every weight sees one input position, nothing is shared."""

from __future__ import annotations

from typing import Any

from .. import regularization as R
from ..config import ModelConfig, RegularizationConfig


def build_mlp(
    input_shape: tuple[int, ...], num_classes: int, model: ModelConfig, reg: RegularizationConfig
) -> Any:
    import keras

    inputs = keras.Input(shape=input_shape, name="inputs")
    x = inputs
    for layer in R.input_layers(reg):
        x = layer(x)
    if len(input_shape) > 1:
        x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(model.hidden_units):
        name = f"dense_{i}"
        x = keras.layers.Dense(
            units,
            use_bias=not reg.batch_norm,
            kernel_regularizer=R.kernel_regularizer(reg),
            kernel_constraint=R.kernel_constraint(reg),
            name=name,
        )(x)
        for layer in R.block_tail(reg, model.activation, name, spatial=False):
            x = layer(x)
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        dtype="float32",
        kernel_regularizer=R.kernel_regularizer(reg),
        kernel_constraint=R.kernel_constraint(reg),
        name="classifier",
    )(x)
    return keras.Model(inputs, outputs, name="mlp")
