"""Model families built from config: ``mlp`` (dense), ``cnn`` (weight sharing), a user's
``custom`` builder and a keras.applications ``backbone``."""

from __future__ import annotations

from typing import Any

from gapline.config.schema import ModelConfig, OnlineAugmentConfig, RegularizationConfig
from gapline.config.tasks import TaskSpec, as_spec
from gapline.core.errors import ConfigError, bad_value
from gapline.models.backbone import build_backbone
from gapline.models.cnn import build_cnn
from gapline.models.custom import build_custom
from gapline.models.mlp import build_mlp
from gapline.models.sizing import features_shape, sized
from gapline.models.stem import ModelSpec


def build_model(
    input_shape: tuple[int, ...],
    task: TaskSpec | int,
    model: ModelConfig,
    reg: RegularizationConfig,
    online: OnlineAugmentConfig | None = None,
    seed: int = 0,
) -> Any:
    """Build an uncompiled Keras model for inputs of ``input_shape`` (without the batch axis)
    with the head of ``task`` (a number of classes: multiclass)."""
    task_spec = as_spec(task)
    model = sized(model, features_shape(tuple(input_shape), task_spec), reg)  # ``auto`` sizes
    spec = ModelSpec(tuple(input_shape), task_spec, model, reg, online or OnlineAugmentConfig(), seed)
    if model.family == "mlp":
        return build_mlp(spec)
    if model.family in ("cnn", "backbone") and len(input_shape) != 3:
        raise ConfigError(
            bad_value("model.family", model.family, f"mlp or custom for tabular inputs of shape {list(input_shape)}")
        )
    if model.family == "cnn":
        return build_cnn(spec)
    if model.family == "custom":
        return build_custom(spec)
    if model.family == "backbone":
        return build_backbone(spec)
    raise ConfigError(bad_value("model.family", model.family, "mlp, cnn, custom or backbone"))


def weight_sharing_applied(family: str, model: Any) -> bool | None:
    """For the ``techniques`` tag: gapline's families say so in their config (None: ask it);
    a custom or backbone model is read."""
    return None if family in ("mlp", "cnn") else shares_weights(model)


def shares_weights(model: Any) -> bool:
    """Whether one kernel is applied at many positions (a convolution) or many times (tying)."""
    import keras

    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Conv1D | keras.layers.Conv2D | keras.layers.Conv3D | keras.layers.DepthwiseConv2D):
            return True
        if layer.weights and len(getattr(layer, "_inbound_nodes", [])) > 1 and not isinstance(layer, keras.Model):
            return True
    return False


def effective_params(model: Any) -> dict[str, int]:
    """Unique weights (what is stored and trained) vs weights as if no layer were reused."""
    unique = int(model.count_params())
    applied = 0
    for layer in model.layers:
        uses = max(1, len(getattr(layer, "_inbound_nodes", [])))
        applied += uses * int(layer.count_params())
    return {"params": unique, "params_untied": applied}


__all__ = ["build_model", "effective_params", "shares_weights", "weight_sharing_applied"]
