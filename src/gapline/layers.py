"""Custom Keras layers: weight-noise injection that leaves the stored weights untouched.

Backend-agnostic (``keras.ops``/``keras.random`` only) and serializable, so models that use
them save, reload with ``safe_mode=True`` (after ``import gapline.layers``) and run on JAX.
"""

from __future__ import annotations

from typing import Any

import keras
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
