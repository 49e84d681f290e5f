"""Model families built from config: ``mlp`` (dense) and ``cnn`` (weight sharing)."""

from __future__ import annotations

from typing import Any, Optional

from ..config import ModelConfig, OnlineAugmentConfig, RegularizationConfig
from ..errors import ConfigError, bad_value
from .cnn import build_cnn
from .mlp import build_mlp
from .stem import ModelSpec


def build_model(
    input_shape: tuple[int, ...],
    num_classes: int,
    model: ModelConfig,
    reg: RegularizationConfig,
    online: Optional[OnlineAugmentConfig] = None,
    seed: int = 0,
) -> Any:
    """Build an uncompiled Keras model for inputs of ``input_shape`` (without the batch axis)."""
    spec = ModelSpec(tuple(input_shape), num_classes, model, reg, online or OnlineAugmentConfig(), seed)
    if model.family == "mlp":
        return build_mlp(spec)
    if model.family == "cnn":
        if len(input_shape) != 3:
            raise ConfigError(
                bad_value("model.family", "cnn", f"mlp for tabular inputs of shape {list(input_shape)}")
            )
        return build_cnn(spec)
    raise ConfigError(bad_value("model.family", model.family, "mlp or cnn"))


def effective_params(model: Any) -> dict[str, int]:
    """Unique weights (what is stored and trained) vs weights as if no layer were reused."""
    unique = int(model.count_params())
    applied = 0
    for layer in model.layers:
        uses = max(1, len(getattr(layer, "_inbound_nodes", [])))
        applied += uses * int(layer.count_params())
    return {"params": unique, "params_untied": applied}


__all__ = ["build_model", "effective_params"]
