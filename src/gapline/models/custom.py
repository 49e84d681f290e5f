"""``model.family=custom``: call the user's builder, then apply what the architecture does not
decide and refuse what cannot apply.

Techniques that need no knowledge of the architecture are applied by gapline to whatever the
builder returns: L1/L2 and max-norm on every kernel-bearing layer the builder left without
its own, input noise and online augmentation in front of the model (unless it starts with
``kit.inputs()``). Techniques that live inside blocks (dropout, batch norm, hidden noise,
activity penalties, weight noise, tying, per-block settings) need the kit's pieces; a config
that asks for one the builder never used is one error line, before any run opens.
"""

from __future__ import annotations

import contextlib
import inspect
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gapline.config.schema import RegularizationConfig
from gapline.config.user_code import builder_source, import_builder
from gapline.core.errors import ConfigError, GaplineError, bad_value, one_line
from gapline.models import regularization as R
from gapline.models.kit import KitUsage, ModelKit
from gapline.models.saving import load_model, save_model
from gapline.models.stem import ModelSpec, input_layers

# Weight attribute → (its regularizer attribute, its constraint attribute) on Keras layers.
KERNELS = {
    "kernel": ("kernel_regularizer", "kernel_constraint"),
    "depthwise_kernel": ("depthwise_regularizer", "depthwise_constraint"),
    "pointwise_kernel": ("pointwise_regularizer", "pointwise_constraint"),
    "embeddings": ("embeddings_regularizer", "embeddings_constraint"),
}


def build_custom(spec: ModelSpec) -> Any:
    """The user's model with the toolkit applied; the builder's own errors as one line."""

    builder = import_builder(spec.model.builder)
    kwargs = dict(spec.model.kwargs)
    check_signature(builder, spec.model.builder, kwargs)
    kit = ModelKit(spec)
    with users_code(spec, "failed"):
        model = builder(kit, **kwargs)
    # what the builder's model takes: the stored row after kit.inputs(), else kit.input_shape
    takes = tuple(spec.input_shape) if kit.usage.inputs else kit.input_shape
    with users_code(spec, f"builds a model that fails on inputs of shape {[None, *takes]} (kit.input_shape)"):
        model = as_keras_model(model, spec, takes)
    # checked before any wrapping: a regression must end with the head that de-standardizes
    ends_with_head = ends_with_layer(model, "target_scale") if getattr(model, "outputs", None) else kit.usage.heads > 0
    refuse_inapplicable(spec.reg, kit.usage, model)
    if kit.usage.inputs == 0:
        with users_code(spec, "builds a model that cannot follow gapline's input noise or online augmentation"):
            model = with_input_stem(model, spec)
    apply_weight_penalties(model, spec.reg)
    with users_code(spec, f"builds a model that fails on inputs of shape {[None, *spec.input_shape]} (kit.input_shape)"):
        check_outputs(model, spec, ends_with_head)
    check_reloads(model, spec)
    return model


@contextlib.contextmanager
def users_code(spec: ModelSpec, what: str) -> Iterator[None]:
    """Whatever the user's builder or layers raise, as one line saying where in their code."""
    try:
        yield
    except GaplineError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        raise ConfigError(f"model.builder={spec.model.builder!r} {what}{where(exc, spec)}: {one_line(exc)[:500]}") from None


def check_reloads(model: Any, spec: ModelSpec) -> None:
    """Save and reload in safe mode now, not after an hour of training: a custom layer that is
    not registered (or has no ``get_config``) would make the trained model unloadable."""

    with tempfile.TemporaryDirectory(prefix="gapline-reload-") as tmp:
        path = Path(tmp) / "model.keras"
        try:
            save_model(model, path)
            load_model(path)
        except Exception as exc:  # noqa: BLE001 - Keras refuses with many types
            raise ConfigError(
                f"model.builder={spec.model.builder!r} builds a model that does not reload with "
                f"safe_mode=True: {one_line(exc)[:400]}; decorate custom layers with "
                "@keras.saving.register_keras_serializable(package=...) and give them get_config()"
            ) from None


def check_signature(builder: Callable[..., Any], name: str, kwargs: dict[str, Any]) -> None:
    """``model.kwargs`` that the builder does not take: one line now, not a TypeError that
    looks like a bug inside it."""
    try:
        inspect.signature(builder).bind(None, **kwargs)
    except TypeError as exc:
        raise ConfigError(
            bad_value("model.kwargs", kwargs, f"arguments {name} accepts after the kit ({exc})")
        ) from None
    except ValueError:  # no signature to inspect (a builtin): let the call decide
        pass


def where(exc: BaseException, spec: ModelSpec) -> str:
    """`` at file:line`` of the last traceback frame in the builder's package (the user's line,
    not the Keras internals it called); the innermost frame when none is."""

    try:
        home = Path(builder_source(spec.model.builder)).resolve()
    except GaplineError:
        home = None
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    if not frames:
        return ""
    own = [f for f in frames if home is not None and Path(f[0]).resolve().is_relative_to(home)]
    filename, line = (own or frames)[-1]
    return f" at {filename}:{line}"


def as_keras_model(model: Any, spec: ModelSpec, takes: tuple[int, ...]) -> Any:
    """The builder's return value as a built keras.Model (a subclassed one is called once, on
    rows of shape ``takes``)."""
    import keras

    name = spec.model.builder
    if not isinstance(model, keras.Model):
        raise ConfigError(bad_value("model.builder", name, f"a function returning a keras.Model, not {type(model).__name__}"))
    if not model.built:  # a subclassed model creates its weights on the first call
        model(np.zeros((1, *takes), dtype="float32"))
    return model


def refuse_inapplicable(reg: RegularizationConfig, usage: KitUsage, model: Any) -> None:
    """One line for the first switch that this builder gives nothing to act on."""
    needs_tail = {
        "dropout": reg.dropout > 0,
        "dropout_rates": any(r > 0 for r in reg.dropout_rates),
        "batch_norm": reg.batch_norm,
        "hidden_noise": reg.hidden_noise > 0,
        "activity_l1": reg.activity_l1 > 0,
        "activity_l2": reg.activity_l2 > 0,
    }
    for key, on in needs_tail.items():
        if on and usage.tails == 0:
            raise ConfigError(_cannot(reg, key, "the builder ends no block with kit.tail(x), where it acts"))
    if reg.weight_noise > 0 and usage.linear == 0:
        raise ConfigError(_cannot(reg, "weight_noise", "the builder makes no layer with kit.dense or kit.conv (noisy kernels are gapline layers)"))
    if reg.tie_weights:
        if not usage.tied:
            raise ConfigError(_cannot(reg, "tie_weights", "the builder asks for no shareable layer (kit.tied_dense or kit.tied_conv)"))
        shared = [layer for layer in usage.tied.values() if layer is not None and len(layer._inbound_nodes) >= 2]
        if not shared:
            raise ConfigError(_cannot(reg, "tie_weights", "the builder applies each kit.tied_* layer only once, so nothing is shared"))
    for key in ("dropout_rates", "layer_strength"):
        values = getattr(reg, key)
        if values and len(values) != usage.tails:
            raise ConfigError(
                bad_value(f"regularization.{key}", list(values), f"one value per block of the builder ({usage.tails}: its kit.tail calls)")
            )
    if (reg.l1 > 0 or reg.l2 > 0 or reg.max_norm > 0) and not list(kernel_weights(model)):
        key = "l1" if reg.l1 > 0 else "l2" if reg.l2 > 0 else "max_norm"
        raise ConfigError(_cannot(reg, key, "the model has no kernel-bearing layer (Dense, Conv, Embedding)"))


def _cannot(reg: RegularizationConfig, key: str, why: str) -> str:
    value = getattr(reg, key)
    return f"regularization.{key}={value!r} cannot apply to this model.builder: {why}; set it to its default or use the kit"


def kernel_weights(model: Any) -> Any:
    """``(layer, weight attribute)`` for every kernel-like weight of every layer, nested too."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for attr in KERNELS:
            weight = getattr(layer, attr, None)
            if weight is not None and hasattr(weight, "regularizer") and getattr(weight, "trainable", True):
                yield layer, attr


def apply_weight_penalties(model: Any, reg: RegularizationConfig) -> None:
    """L1/L2 (and the bias penalty) and max-norm on every kernel the builder left without its
    own: on the variable (what training reads) and on the layer (what its config saves)."""
    penalty = R.kernel_regularizer(reg)
    for layer, attr in kernel_weights(model):
        weight = getattr(layer, attr)
        reg_attr, con_attr = KERNELS[attr]
        if penalty is not None and weight.regularizer is None:
            weight.regularizer = penalty
            if hasattr(layer, reg_attr):
                setattr(layer, reg_attr, penalty)
        if reg.max_norm > 0 and getattr(weight, "constraint", None) is None:
            axis = list(range(len(weight.shape) - 1)) if attr != "embeddings" else 1
            constraint = R.kernel_constraint(reg, axis=axis)
            weight.constraint = constraint
            if hasattr(layer, con_attr):
                setattr(layer, con_attr, constraint)
        bias = getattr(layer, "bias", None)
        if reg.bias_penalty and penalty is not None and bias is not None and bias.regularizer is None:
            bias.regularizer = penalty
            if hasattr(layer, "bias_regularizer"):
                layer.bias_regularizer = penalty


def with_input_stem(model: Any, spec: ModelSpec) -> Any:
    """The builder's model behind gapline's input stem (tabular standardization, online augmentation, input noise),
    when the config asks for either and the builder did not start from ``kit.inputs()``."""
    import keras

    stem = input_layers(spec)
    if not stem:
        return model
    inputs = keras.Input(shape=spec.input_shape, name="inputs")
    x = inputs
    for layer in stem:
        x = layer(x)
    return keras.Model(inputs, model(x), name=f"{model.name}_with_input_stem")


def ends_with_layer(model: Any, name: str) -> bool:
    """Whether a functional model's single output comes straight out of layer ``name``."""
    outputs = getattr(model, "outputs", None) or []
    history = getattr(outputs[0], "_keras_history", None) if len(outputs) == 1 else None
    return history is not None and getattr(history.operation, "name", "") == name


def check_outputs(model: Any, spec: ModelSpec, used_head: bool) -> None:
    """One output of the task's shape and kind: class probabilities (multiclass: rows
    summing to 1; binary, multilabel: each in [0, 1]) or, for regression, the kit's head as
    the last layer (only it undoes the target standardization): what the loss and every
    metric assume. Probed with seeded random inputs: zeros through zero biases give 0, which
    would pass for a probability even from a layer without a sigmoid."""

    task = spec.task
    expected = [None, task.outputs]
    builder = spec.model.builder
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) > 1:
        raise ConfigError(bad_value("model.builder", builder, f"a model with one output, not {len(outputs)}"))
    rows = np.random.default_rng(0).normal(size=(8, *spec.input_shape)).astype("float32")
    probe = model(rows, training=False)
    if isinstance(probe, (list, tuple, dict)):  # a subclassed model has no .outputs to count
        raise ConfigError(bad_value("model.builder", builder, "a model with one output, not several"))
    probe = np.asarray(probe)
    if probe.shape != (len(rows), task.outputs):
        raise ConfigError(
            bad_value(
                "model.builder", builder,
                f"a model whose output has shape {expected} (kit.num_outputs for task {task.name}), not {[None, *probe.shape[1:]]}",
            )
        )
    if task.name == "regression":
        if not used_head:
            raise ConfigError(
                bad_value(
                    "model.builder", builder,
                    "a regression model whose output is kit.head(x), with no layer after it (the head predicts in the target's units)",
                )
            )
        return
    if task.name != "multiclass":
        if not (np.all(probe >= -1e-6) and np.all(probe <= 1 + 1e-6)):
            raise ConfigError(
                bad_value(
                    "model.builder", builder,
                    f"probabilities in [0, 1] for task {task.name} (end with kit.head(x) or a sigmoid), "
                    f"not values up to {float(probe.max()):.3g}",
                )
            )
        return
    sums = probe.sum(axis=1)
    if not (np.all(probe >= -1e-6) and np.allclose(sums, 1.0, atol=1e-3)):
        raise ConfigError(
            bad_value(
                "model.builder",
                builder,
                f"class probabilities as output (end with kit.head(x) or a softmax), not rows summing to {float(sums[0]):.3g}",
            )
        )
