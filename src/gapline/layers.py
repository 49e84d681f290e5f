"""gapline's own Keras layers: weight-noise injection that leaves the stored weights
untouched, and a table's encoding (imputation, missing indicators, standardization,
vocabulary buckets, one-hot or embeddings) with what the training split fitted.

Backend-agnostic (``keras.ops``/``keras.random`` only) and serializable, so models that use
them save, reload with ``safe_mode=True`` (after ``import gapline.layers``) and run on JAX.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="gapline")
class NoisyDense(keras.layers.Dense):
    """Dense whose kernel gets fresh Gaussian noise on every training step.

    Inference (``training=False``) uses the clean kernel, so predictions are deterministic.
    """

    def __init__(self, units: int, weight_noise: float = 0.0, seed: int | None = None, **kwargs: Any):
        super().__init__(units, **kwargs)
        self.weight_noise = float(weight_noise)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training or self.weight_noise <= 0:
            return super().call(inputs, training=training)
        noise = keras.random.normal(
            ops.shape(self.kernel), stddev=self.weight_noise, seed=self.seed_generator, dtype=self.kernel.dtype
        )
        x = ops.matmul(inputs, ops.cast(self.kernel + noise, inputs.dtype))
        if self.bias is not None:
            x = ops.add(x, ops.cast(self.bias, x.dtype))
        return self.activation(x) if self.activation is not None else x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weight_noise": self.weight_noise, "seed": self.seed}


@keras.saving.register_keras_serializable(package="gapline")
class NoisyConv2D(keras.layers.Conv2D):
    """Conv2D whose shared kernel gets fresh Gaussian noise on every training step."""

    def __init__(self, filters: int, kernel_size: Any, weight_noise: float = 0.0, seed: int | None = None, **kwargs: Any):
        super().__init__(filters, kernel_size, **kwargs)
        self.weight_noise = float(weight_noise)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training or self.weight_noise <= 0:
            return super().call(inputs)
        noise = keras.random.normal(
            ops.shape(self.kernel), stddev=self.weight_noise, seed=self.seed_generator, dtype=self.kernel.dtype
        )
        x = self.convolution_op(inputs, ops.cast(self.kernel + noise, inputs.dtype))
        if self.use_bias:
            shape = (1,) * (len(x.shape) - 1) + (self.filters,)
            if self.data_format == "channels_first":
                shape = (1, self.filters) + (1,) * (len(x.shape) - 2)
            x = ops.add(x, ops.reshape(ops.cast(self.bias, x.dtype), shape))
        return self.activation(x) if self.activation is not None else x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weight_noise": self.weight_noise, "seed": self.seed}


#: A categorical column's reserved buckets, before its vocabulary's (gapline.data.columns).
MISSING_BUCKET, OOV_BUCKET = 0, 1


def encoded_width(columns: list[dict[str, Any]]) -> int:
    """Features :class:`TableEncoding` makes of a row: a number per numeric column, an
    indicator where training had missing cells, and per categorical column its one-hot
    buckets (vocabulary, missing, out of vocabulary) or its embedding's width."""
    width = 0
    for c in columns:
        if c["kind"] == "numeric":
            width += 2 if c.get("indicator") else 1
        elif c.get("encoding") == "embedding":
            width += int(c["embedding_dim"])
        else:
            width += len(c["vocabulary"]) + 2
    return width


def _dictionary_buckets(column: dict[str, Any]) -> np.ndarray:
    """Bucket of each cell a categorical column can hold: its dictionary index + 1, with 0
    for a missing cell (-1 + 1) and the last entry for a value outside the dictionary."""
    vocabulary = {value: i + 2 for i, value in enumerate(column["vocabulary"])}
    known = [vocabulary.get(value, OOV_BUCKET) for value in column["values"]]
    return np.asarray([MISSING_BUCKET, *known, OOV_BUCKET], dtype="int32")


@keras.saving.register_keras_serializable(package="gapline")
class TableEncoding(keras.layers.Layer):
    """A table's raw cells (one float per column: a number or NaN; a categorical cell's index
    in its column's dictionary, or NaN) to the features the network sees, with what the
    training split fitted (``columns``: gapline.data.columns records):

    - numeric: the missing cells get the training median, a 0/1 indicator follows where
      training had missing cells, then ``(x - mean) / std``;
    - categorical: a bucket per vocabulary value, one for missing and one for everything else
      (rare in training, or never seen), then one-hot, or a trained embedding.

    The columns' dictionaries and vocabularies are in the config: the saved model holds all it
    needs to map text cells to their indices (the served model's loader does it:
    gapline.tracking.shipped_loader). Strings never enter the graph, so this runs on JAX too.
    """

    def __init__(self, columns: list[dict[str, Any]], seed: int | None = None, **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.columns = [dict(c) for c in columns]
        self.seed = seed
        self.numeric = [j for j, c in enumerate(self.columns) if c["kind"] == "numeric"]
        self.indicators = [j for j in self.numeric if self.columns[j].get("indicator")]
        self.categorical = [j for j, c in enumerate(self.columns) if c["kind"] == "categorical"]
        self.embeddings: dict[int, Any] = {}
        for k, j in enumerate(self.categorical):
            c = self.columns[j]
            if c.get("encoding") == "embedding":
                self.embeddings[j] = keras.layers.Embedding(
                    len(c["vocabulary"]) + 2, int(c["embedding_dim"]),
                    embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05, seed=None if seed is None else seed + k),
                    name=f"embedding_{j}", dtype=self.dtype_policy,
                )
        self._embedding_list = [self.embeddings[j] for j in sorted(self.embeddings)]  # tracked for saving

    def build(self, input_shape: Any) -> None:
        for layer in self._embedding_list:
            layer.build((None,))

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0], encoded_width(self.columns))

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, "float32")
        parts = []
        if self.numeric:
            cols = ops.take(x, self.numeric, axis=1)
            nan = ops.isnan(cols)
            stats = {k: np.asarray([self.columns[j][k] for j in self.numeric], dtype="float32") for k in ("median", "mean", "std")}
            filled = ops.where(nan, stats["median"], cols)
            parts.append((filled - stats["mean"]) / stats["std"])
            if self.indicators:
                parts.append(ops.cast(ops.take(nan, [self.numeric.index(j) for j in self.indicators], axis=1), "float32"))
        for j in self.categorical:
            c = self.columns[j]
            table = _dictionary_buckets(c)
            cell = x[:, j]
            code = ops.where(ops.isnan(cell), -1.0, cell)
            code = ops.clip(ops.floor(code), -1.0, float(len(c["values"])))  # beyond the dictionary: out of vocabulary
            bucket = ops.take(table, ops.cast(code, "int32") + 1)
            if j in self.embeddings:
                parts.append(ops.cast(self.embeddings[j](bucket), "float32"))
            else:
                parts.append(ops.one_hot(bucket, len(c["vocabulary"]) + 2, dtype="float32"))
        return ops.concatenate(parts, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "columns": self.columns, "seed": self.seed}

