"""A small convolutional network: one kernel per filter is shared across every position."""

from __future__ import annotations

from typing import Any

from .. import regularization as R
from ..config import ModelConfig, RegularizationConfig


def build_cnn(
    input_shape: tuple[int, ...], num_classes: int, model: ModelConfig, reg: RegularizationConfig
) -> Any:
    import keras

    inputs = keras.Input(shape=input_shape, name="inputs")
    x = inputs
    for layer in R.input_layers(reg):
        x = layer(x)
    for i, filters in enumerate(model.conv_filters):
        name = f"conv_{i}"
        x = keras.layers.Conv2D(
            filters,
            model.kernel_size,
            padding="same",
            use_bias=not reg.batch_norm,
            kernel_regularizer=R.kernel_regularizer(reg),
            kernel_constraint=R.kernel_constraint(reg),
            name=name,
        )(x)
        for layer in R.block_tail(reg, model.activation, name, spatial=True):
            x = layer(x)
        if min(x.shape[1], x.shape[2]) >= 2:
            x = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap_pool")(x)
    x = keras.layers.Dense(
        model.dense_units,
        use_bias=not reg.batch_norm,
        kernel_regularizer=R.kernel_regularizer(reg),
        kernel_constraint=R.kernel_constraint(reg),
        name="dense_head",
    )(x)
    for layer in R.block_tail(reg, model.activation, "dense_head", spatial=False):
        x = layer(x)
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        dtype="float32",
        kernel_regularizer=R.kernel_regularizer(reg),
        kernel_constraint=R.kernel_constraint(reg),
        name="classifier",
    )(x)
    return keras.Model(inputs, outputs, name="cnn")
