"""A dense network: every weight sees one input position, nothing is shared across positions."""

from __future__ import annotations

from typing import Any

from gapline.models.stem import ModelSpec, dense_blocks, input_stem, output_head


def build_mlp(spec: ModelSpec) -> Any:
    import keras

    inputs, x = input_stem(spec)
    if len(spec.input_shape) > 1:
        x = keras.layers.Flatten(name="flatten")(x)
    x = dense_blocks(x, spec)
    outputs = output_head(x, spec)
    return keras.Model(inputs, outputs, name="mlp")
