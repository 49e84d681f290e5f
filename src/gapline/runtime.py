"""Process-wide Keras settings that must be fixed before the first model is built.

Seeds, op determinism, device choice and precision all live here so that every entry point
(stages, study, retrain, benchmarks) trains under identical rules.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import ConfigError



def prepare_environment(accelerator: str) -> None:
    """Hide GPUs for ``accelerator=cpu``; must run before TensorFlow/JAX are imported."""
    if accelerator == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        os.environ.setdefault("JAX_PLATFORMS", "cpu")


def backend() -> str:
    import keras

    return str(keras.backend.backend())


def devices() -> list[str]:
    """Accelerator names visible to the active backend (empty list: CPU only)."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        out = []
        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            out.append(str(details.get("device_name", gpu.name)))
        return out
    if name == "jax":
        import jax

        return [str(d.device_kind) for d in jax.devices() if d.platform != "cpu"]
    if name == "torch":
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def device_label() -> str:
    gpus = devices()
    return f"GPU: {', '.join(gpus)}" if gpus else "CPU"


def set_threads(threads: int) -> None:
    """Cap the backend's CPU threads (parallel study jobs must not oversubscribe the cores)."""
    if threads <= 0:
        return
    if backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # already initialized in this process (a reused worker): keep its setting


def configure(
    seed: int, deterministic: bool, accelerator: str, precision: str, threads: int = 0
) -> dict[str, Any]:
    """Seed every RNG, make kernels deterministic where asked, and check the device request."""
    prepare_environment(accelerator)
    import keras

    set_threads(threads)

    keras.utils.set_random_seed(seed)
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # retracing notices between in-process jobs are noise
        if deterministic:
            tf.config.experimental.enable_op_determinism()
    gpus = devices()
    if accelerator == "gpu" and not gpus:
        raise ConfigError(
            f"train.accelerator='gpu' is not allowed here: no GPU is visible to the {name} "
            "backend; expected auto or cpu"
        )
    keras.mixed_precision.set_global_policy(precision)
    return {"backend": name, "device": device_label(), "precision": precision}
