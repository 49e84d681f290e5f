"""``ModelKit``: the regularization toolkit handed to a user's model builder.

Every piece comes configured from ``regularization.*`` (and ``augment.online``), so a builder
that uses the kit gets every switch without reading the config. The kit also records what
the builder asked for: a switch that needs a piece the builder never used (dropout without
any ``kit.tail``, tying without any ``kit.tied_dense``) is refused instead of ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gapline.core.errors import ConfigError, bad_value
from gapline.models import regularization as R
from gapline.models.stem import ModelSpec, features_shape, input_stem, output_head


@dataclass
class KitUsage:
    """What the builder asked the kit for (the applicability check reads it)."""

    inputs: int = 0
    linear: int = 0
    tails: int = 0
    tied: dict[str, Any] = field(default_factory=dict)
    heads: int = 0


class ModelKit:
    """Handed to ``model.builder`` as its first argument.

    Attributes: ``input_shape`` (a row as the model's layers see it, without the batch axis:
    a table's encoded width), ``num_outputs`` (units of the head:
    classes, labels, or 1 for binary and regression), ``task`` (multiclass, binary,
    multilabel or regression), ``seed`` and ``activation`` (``model.activation``).

    A block is the linear layers since the last :meth:`tail` plus that tail: per-block
    settings (``regularization.dropout_rates``, ``layer_strength``) are indexed by the
    order of the ``tail`` calls.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self._spec = spec
        self.input_shape: tuple[int, ...] = features_shape(spec)
        self.num_outputs: int = spec.task.outputs
        self.task: str = spec.task.name
        self.seed: int = spec.seed
        self.activation: str = spec.model.activation
        self.usage = KitUsage()
        self._count = 0

    def _next(self, prefix: str, name: str | None) -> tuple[str, int]:
        self._count += 1
        return name or f"kit_{prefix}_{self._count}", self._spec.seed + 1000 + self._count

    @property
    def block(self) -> int:
        """Index of the block being built (the number of ``tail`` calls so far)."""
        block = self.usage.tails
        for key in ("dropout_rates", "layer_strength"):
            values = getattr(self._spec.reg, key)
            if values and block >= len(values):
                raise ConfigError(
                    bad_value(
                        f"regularization.{key}", list(values),
                        f"one value per block of the builder: it builds block {block + 1} (a block ends with kit.tail)",
                    )
                )
        return block

    def inputs(self) -> tuple[Any, Any]:
        """``(inputs, x)``: a ``keras.Input`` and it after the input's scaling or a table's
        encoding (gapline.layers.TableEncoding), online augmentation and input noise. Build
        from ``x`` and return ``keras.Model(inputs, outputs)``."""
        self.usage.inputs += 1
        return input_stem(self._spec)

    def dense(self, units: int, name: str | None = None, **kwargs: Any) -> Any:
        """A Dense layer with the configured penalties, max-norm and weight noise. Its bias is
        dropped when batch norm follows (``regularization.batch_norm``)."""
        self.usage.linear += 1
        name, seed = self._next("dense", name)
        return R.dense(self._spec.reg, units, name, self.block, seed, **kwargs)

    def conv(self, filters: int, kernel_size: int = 3, name: str | None = None) -> Any:
        """A Conv2D (``padding="same"``) with the configured penalties, max-norm and weight noise."""
        self.usage.linear += 1
        name, seed = self._next("conv", name)
        return R.conv(self._spec.reg, filters, kernel_size, name, self.block, seed)

    def tied_dense(self, units: int, name: str = "kit_tied") -> Any:
        """A Dense layer that may be shared: with ``regularization.tie_weights=true`` every call
        with the same ``name`` returns the same layer (one kernel); otherwise a fresh one."""
        return self._tied(name, lambda: self.dense(units, name=name if self._spec.reg.tie_weights else None))

    def tied_conv(self, filters: int, kernel_size: int = 3, name: str = "kit_tied_conv") -> Any:
        """:meth:`tied_dense` for Conv2D."""
        return self._tied(name, lambda: self.conv(filters, kernel_size, name=name if self._spec.reg.tie_weights else None))

    def _tied(self, name: str, make: Any) -> Any:
        if not self._spec.reg.tie_weights:
            self.usage.tied.setdefault(name, None)
            return make()
        if self.usage.tied.get(name) is None:
            self.usage.tied[name] = make()
        return self.usage.tied[name]

    def tail(self, x: Any, spatial: bool | None = None) -> Any:
        """End a block: [batch norm] → activation → [hidden noise] → [dropout]; SpatialDropout2D
        on feature maps (``spatial`` defaults to: ``x`` has height and width)."""
        spatial = len(x.shape) == 4 if spatial is None else spatial
        block = self.block
        self.usage.tails += 1
        self._count += 1
        seed = self._spec.seed + 2000 + self._count
        for layer in R.block_tail(self._spec.reg, self.activation, f"kit_block_{block}", block, spatial=spatial, seed=seed):
            x = layer(x)
        return x

    def head(self, x: Any) -> Any:
        """The task's output (float32), penalised like every other kernel: ``num_outputs``
        class probabilities (softmax) for multiclass, sigmoid probabilities for binary and
        multilabel, and for regression a linear unit in the target's units (the head undoes
        the target standardization: a regression builder must end with it)."""
        self.usage.heads += 1
        return output_head(x, self._spec)
