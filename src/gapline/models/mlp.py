"""A dense network: every weight sees one input position, nothing is shared across positions."""

from __future__ import annotations

from typing import Any

from .. import regularization as R
from .stem import ModelSpec, classifier_head, input_stem


def build_mlp(spec: ModelSpec) -> Any:
    import keras

    model, reg, seed = spec.model, spec.reg, spec.seed
    inputs, x = input_stem(spec)
    if len(spec.input_shape) > 1:
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
    outputs = classifier_head(x, spec)
    return keras.Model(inputs, outputs, name="mlp")
