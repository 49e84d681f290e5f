"""Model families built from config: ``mlp`` (dense) and ``cnn`` (weight sharing)."""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig, RegularizationConfig
from ..errors import ConfigError, bad_value
from .cnn import build_cnn
from .mlp import build_mlp


def build_model(
    input_shape: tuple[int, ...], num_classes: int, model: ModelConfig, reg: RegularizationConfig
) -> Any:
    """Build an uncompiled Keras model for inputs of ``input_shape`` (without the batch axis)."""
    if model.family == "mlp":
        return build_mlp(input_shape, num_classes, model, reg)
    if model.family == "cnn":
        if len(input_shape) != 3:
            raise ConfigError(
                bad_value("model.family", "cnn", f"mlp for tabular inputs of shape {input_shape}")
            )
        return build_cnn(input_shape, num_classes, model, reg)
    raise ConfigError(bad_value("model.family", model.family, "mlp or cnn"))


__all__ = ["build_model"]
