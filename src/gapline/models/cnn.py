"""A small convolutional network: one kernel per filter is shared across every position."""

from __future__ import annotations

from typing import Any

from gapline.models import regularization as R
from gapline.models.stem import ModelSpec, input_stem, output_head


def build_cnn(spec: ModelSpec) -> Any:
    import keras

    model, reg, seed = spec.model, spec.reg, spec.seed
    inputs, x = input_stem(spec)
    tied = None
    for i, filters in enumerate(model.conv_filters):
        if reg.tie_weights and i >= 1:
            tied = tied or R.conv(reg, filters, model.kernel_size, "conv_tied", 1, seed + 100)
            linear = tied
        else:
            linear = R.conv(reg, filters, model.kernel_size, f"conv_{i}", i, seed + 100 + i)
        x = linear(x)
        for layer in R.block_tail(reg, model.activation, f"conv_{i}", i, spatial=True, seed=seed + 200 + i):
            x = layer(x)
        if min(x.shape[1], x.shape[2]) >= 2:
            x = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    head = len(model.conv_filters)
    x = R.dense(reg, model.dense_units, "dense_head", head, seed + 150)(x)
    for layer in R.block_tail(reg, model.activation, "dense_head", head, spatial=False, seed=seed + 250):
        x = layer(x)
    outputs = output_head(x, spec)
    return keras.Model(inputs, outputs, name="cnn")
