"""Memory budgets sized in bytes, not rows: how many rows one prediction call may take, and
what one training batch needs, both estimated from the built model's activations.

A row count that is harmless on 8×8 digits is not on photos: 1,024 images of 96×96 through
a 32-filter convolution are a 1.1 GiB float32 tensor, 6 GiB at 224×224. So every prediction
path (the gap callback, validation, evaluate, retraining's scoring, the study's and the
sweep's trials) asks :func:`inference_rows` for its batch, under one budget in bytes
(``train.inference_memory``).

The estimate walks the model's graph (nested models included): every call of a layer has
input and output tensors whose per-row sizes the built model knows. Inference holds, at its
peak, one layer's inputs and outputs at once; training keeps every layer's output for the
backward pass. Layers that run other layers inside their own ``call`` (a subclassed model)
are counted by their inputs and outputs only, so the estimate is a floor there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gapline.config.checks import byte_size
from gapline.config.schema import TrainConfig

# The most rows one prediction call takes, however small the rows: today's figure for small
# inputs (a larger call is no faster on a CPU, and the 8x8 digits' results stay byte-equal).
MAX_ROWS = 1024
DEFAULT_BUDGET = byte_size("train.inference_memory", TrainConfig.inference_memory)


def train_budget(train: TrainConfig) -> int:
    """``train.inference_memory`` in bytes."""
    return byte_size("train.inference_memory", train.inference_memory)


def format_bytes(size: float) -> str:
    """``1.1 GiB``, ``48 MiB``, ``512 KiB``: a figure for a one-line message."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{int(size)} B"


@dataclass(frozen=True)
class Footprint:
    """Bytes per row of a built model's activations (the input included)."""

    peak: int  # the largest one layer holds at once: its inputs plus its outputs
    total: int  # every layer's output, as training keeps them for the backward pass

    def inference_rows(self, budget: int) -> int:
        """Rows per prediction call: as many as fit ``budget``, at least 1, at most
        :data:`MAX_ROWS`."""
        return max(1, min(MAX_ROWS, budget // max(1, self.peak)))

    def training_bytes(self, batch_size: int) -> int:
        """A training batch's activations: every layer's output kept for the backward pass,
        plus one layer's peak of gradients in flight (weights and optimizer state apart)."""
        return batch_size * (self.total + self.peak)


def _row_bytes(tensor: Any) -> int:
    shape = tuple(tensor.shape)[1:]
    if any(d is None for d in shape):
        return 0  # a dimension only a real batch knows (a sequence length): not estimated
    itemsize = _itemsize(str(getattr(tensor, "dtype", "float32")))
    return int(math.prod(shape)) * itemsize


def _itemsize(dtype: str) -> int:
    digits = re.findall(r"\d+", dtype)
    return max(1, int(digits[-1]) // 8) if digits else (1 if dtype == "bool" else 4)


def _flat(tensors: Any) -> list[Any]:
    if isinstance(tensors, (list, tuple)):
        return [t for item in tensors for t in _flat(item)]
    if isinstance(tensors, dict):
        return [t for item in tensors.values() for t in _flat(item)]
    return [tensors] if hasattr(tensors, "shape") else []


def _calls(model: Any) -> Iterator[tuple[int, int]]:
    """(input bytes, output bytes) per row of every layer call in the graph; a nested model
    is walked instead of counted whole."""
    for layer in getattr(model, "layers", []):
        inner = getattr(layer, "layers", None)
        if inner:
            yield from _calls(layer)
            continue
        for node in getattr(layer, "_inbound_nodes", []):
            inputs = sum(_row_bytes(t) for t in _flat(node.input_tensors))
            outputs = sum(_row_bytes(t) for t in _flat(node.output_tensors))
            yield inputs, outputs


def footprint(model: Any) -> Footprint:
    """The model's activation bytes per row; a model with no graph to walk (subclassed) is
    measured by its input and output alone."""
    calls = list(_calls(model))
    if not calls:
        ins = sum(_row_bytes(t) for t in _flat(getattr(model, "inputs", None) or []))
        outs = sum(_row_bytes(t) for t in _flat(getattr(model, "outputs", None) or []))
        calls = [(ins, outs)]
    return Footprint(
        peak=max(i + o for i, o in calls),
        total=sum(o for _, o in calls),
    )


def inference_rows(model: Any, budget: int) -> int:
    """Rows per prediction call of ``model`` under ``budget`` bytes of activations."""
    return footprint(model).inference_rows(budget)


def training_warning(model: Any, batch_size: int, budget: int) -> str | None:
    """One line when a training batch's activations are estimated above ``budget``; the
    training batch is the user's to choose, so this warns instead of failing."""
    need = footprint(model).training_bytes(batch_size)
    if need <= budget:
        return None
    return (
        f"train.batch_size={batch_size} needs about {format_bytes(need)} of activations per training "
        f"step (estimated from the model), above train.inference_memory={format_bytes(budget)}: "
        "if training runs out of memory, lower train.batch_size"
    )
