"""The parts every family shares: the input with the toolkit's input-side layers, and the
task's output head. One definition, so a technique applied at the input or the head cannot
differ between families."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gapline.config.schema import ModelConfig, OnlineAugmentConfig, RegularizationConfig
from gapline.config.tasks import TaskSpec
from gapline.models import regularization as R
from gapline.models import sizing


@dataclass(frozen=True)
class ModelSpec:
    """Everything a family's builder reads: what the data looks like and what the config asks."""

    input_shape: tuple[int, ...]
    task: TaskSpec
    model: ModelConfig
    reg: RegularizationConfig
    online: OnlineAugmentConfig
    seed: int


def input_layers(spec: ModelSpec) -> list[Any]:
    """What every model puts first: the pixel scale (uint8 pixels / pixel_max, so training,
    evaluation and a served model all take the raw pixels), tabular standardization (the
    training split's statistics, fixed) or a table's encoding (missing cells, categories:
    gapline.layers.TableEncoding), then online augmentation and input noise."""
    import keras

    layers = []
    task = spec.task
    if task.pixel_max:
        layers.append(keras.layers.Rescaling(1.0 / task.pixel_max, name="pixel_scale"))
    if task.feature_mean is not None and task.feature_std is not None:
        variance = [s * s for s in task.feature_std]
        layers.append(keras.layers.Normalization(mean=list(task.feature_mean), variance=variance, name="standardize"))
    if task.table:
        from gapline.layers import TableEncoding  # Keras at import: lazily, like keras itself

        layers.append(TableEncoding(list(task.table), seed=spec.seed + 400, name="table_encoding"))
    return layers + R.online_augmentation(spec.online, len(spec.input_shape), spec.seed) + R.input_layers(spec.reg, spec.seed)


def features_shape(spec: ModelSpec) -> tuple[int, ...]:
    """The shape of a row as a model's own layers see it: the stored row's, or for a table
    the width of its encoding (gapline.layers.encoded_width), which a custom builder gets as
    ``kit.input_shape``."""
    return sizing.features_shape(spec.input_shape, spec.task)


def input_stem(spec: ModelSpec) -> tuple[Any, Any]:
    """``(inputs, x)``: the model input, and it after :func:`input_layers`."""
    import keras

    inputs = keras.Input(shape=spec.input_shape, name="inputs")
    x = inputs
    for layer in input_layers(spec):
        x = layer(x)
    return inputs, x


def output_head(x: Any, spec: ModelSpec) -> Any:
    """The task's output, always in float32 (mixed precision keeps it stable): class
    probabilities (softmax) for multiclass, one sigmoid per label for binary and multilabel,
    and for regression a linear unit followed by the target's de-standardization (a fixed
    ``Rescaling``: std * z + mean of the training split), so the saved model predicts in the
    user's units while the network itself fits a unit-variance target."""
    import keras

    task = spec.task
    if task.name == "regression":
        z = R.dense(spec.reg, 1, "regressor", None, spec.seed + 300, dtype="float32")(x)
        return keras.layers.Rescaling(task.target_std, offset=task.target_mean, name="target_scale", dtype="float32")(z)
    activation = "softmax" if task.name == "multiclass" else "sigmoid"
    return R.dense(spec.reg, task.outputs, "classifier", None, spec.seed + 300, activation=activation, dtype="float32")(x)


def dense_blocks(x: Any, spec: ModelSpec) -> Any:
    """``model.hidden_units`` dense blocks (linear layer, then the block tail); with
    ``tie_weights`` blocks 2..n apply one shared layer: one kernel, used n-1 times."""
    model, reg, seed = spec.model, spec.reg, spec.seed
    tied = None
    for i, units in enumerate(model.hidden_units):
        if reg.tie_weights and i >= 1:
            tied = tied or R.dense(reg, units, "dense_tied", 1, seed + 100)
            linear = tied
        else:
            linear = R.dense(reg, units, f"dense_{i}", i, seed + 100 + i)
        x = linear(x)
        for layer in R.block_tail(reg, model.activation, f"dense_{i}", i, spatial=False, seed=seed + 200 + i):
            x = layer(x)
    return x
