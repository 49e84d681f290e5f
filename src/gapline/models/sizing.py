"""A family's size from its input: ``auto`` layer sizes are chosen here, when the input's
shape is known, so one default fits 8x8 digits, 96x96 photographs and a table of 5 columns.
A list in the config always wins; the chosen sizes are what the run logs as its params."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from gapline.config.checks import check_blocks
from gapline.config.schema import AUTO_SIZE, ModelConfig, RegularizationConfig
from gapline.config.tasks import TaskSpec

MLP_DEPTH = 2
MLP_WIDTH = (64, 512)  # narrowest, widest block
MLP_PER_FEATURE = 4  # a block is about 4 units per input feature, rounded up to a power of two
CNN_FIRST = 32  # the first block's filters; each block doubles them...
CNN_WIDEST = 256  # ...up to this
CNN_SMALL = 3  # blocks are stacked until the feature map's shorter side is at most this


def mlp_units(features: int) -> list[int]:
    """Two blocks of ``4 x features`` units, rounded up to a power of two, within 64..512:
    the 64 pixels of the bundled digits get 256 (the MLP it always had), a table of a few
    columns 64, a 28x28 image 512."""
    wanted = MLP_PER_FEATURE * max(1, features)
    width = 1 << (wanted - 1).bit_length()
    return [min(MLP_WIDTH[1], max(MLP_WIDTH[0], width))] * MLP_DEPTH


def cnn_filters(height: int, width: int) -> list[int]:
    """One convolution block (each followed by 2x2 max pooling) per halving of the image until
    its shorter side is at most 3, widening from 32 filters by a factor of two per block up to
    256, as the small-image networks (VGG-style CIFAR and MNIST nets) do: 8x8 gets [32, 64],
    28x28 [32, 64, 128], 96x96 [32, 64, 128, 256, 256]. Global average pooling then sees a
    map of a few cells, not a 7x7 one averaged away."""
    side, filters = min(height, width), list[int]()
    while side > CNN_SMALL or not filters:
        filters.append(min(CNN_WIDEST, CNN_FIRST * 2 ** len(filters)))
        side //= 2
    return filters


def sized(model: ModelConfig, shape: tuple[int, ...], reg: RegularizationConfig | None = None) -> ModelConfig:
    """``model`` with the sizes its family reads chosen where they are ``auto``; ``shape`` is
    a row as the model's layers see it (:func:`features_shape`).
    With ``reg``, the regularization keys that count blocks are checked against the result."""
    out = model
    if model.family == "mlp" and model.hidden_units == AUTO_SIZE:
        out = dataclasses.replace(out, hidden_units=mlp_units(math.prod(shape)))
    if model.family == "cnn" and model.conv_filters == AUTO_SIZE and len(shape) == 3:
        out = dataclasses.replace(out, conv_filters=cnn_filters(shape[0], shape[1]))
    if out is model:
        return model
    if reg is not None:
        check_blocks(out, reg)
    return out


def features_shape(input_shape: tuple[int, ...], task: TaskSpec) -> tuple[int, ...]:
    """A row as the family's own layers see it: the stored row, or a table's encoded width."""
    if task.table:
        from gapline.layers import encoded_width  # Keras at import: lazily, like keras itself

        return (encoded_width(list(task.table)),)
    return tuple(input_shape)


def chosen(model: ModelConfig, input_shape: tuple[int, ...], task: TaskSpec) -> dict[str, list[int]]:
    """What an ``auto`` family chooses for inputs of ``input_shape`` (``{"hidden_units":
    [256, 256]}``); empty when the config lists its sizes."""
    out = sized(model, features_shape(input_shape, task))
    return {
        key: list(getattr(out, key))
        for key in ("hidden_units", "conv_filters")
        if getattr(model, key) == AUTO_SIZE and getattr(out, key) != AUTO_SIZE
    }


def with_chosen(cfg_dict: dict[str, Any], sizes: dict[str, list[int]]) -> dict[str, Any]:
    """The resolved config a run logs as its params, with what ``auto`` chose in place of
    ``auto``: the run says what was built (params.yaml, its artifact, still says ``auto``)."""
    if not sizes:
        return cfg_dict
    return {**cfg_dict, "model": {**cfg_dict.get("model", {}), **sizes}}
