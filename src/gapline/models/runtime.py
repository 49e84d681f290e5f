"""Process-wide Keras settings that must be fixed before the first model is built.

Seeds, op determinism, device choice and precision all live here so that every entry point
(stages, study, retrain, benchmarks) trains under identical rules.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import AbstractContextManager
from typing import Any

from gapline.config.schema import TrainConfig
from gapline.core.errors import ConfigError, bad_value


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


def split_cpu(replicas: int) -> None:
    """Show TensorFlow the CPU as ``replicas`` logical devices, so MirroredStrategy has
    something to mirror on a machine without GPUs. Only possible before TensorFlow
    initializes its devices: once per process, and the same count every time."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu) or []
    if len(current) == replicas:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    except RuntimeError:
        raise ConfigError(
            bad_value(
                "train.cpu_replicas",
                replicas,
                f"{len(current) or 1} in this process: TensorFlow's devices are already initialized",
            )
        ) from None


_strategy: Any = None
_process: tuple[int, int] | None = None
PROCESS_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",  # the coordinator (process 0) as host:port
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def join_processes() -> tuple[int, int]:
    """Join the multi-process cluster that ``KERAS_DISTRIBUTION_*`` describes and make every
    model data-parallel over all processes' devices (``train.distribute=multi_worker``).

    JAX only: TensorFlow's MultiWorkerMirroredStrategy does not work with Keras 3's ``fit``
    (keras-team/keras#20585). Must run before the first JAX computation."""
    global _process
    if _process is not None:
        return _process
    if backend() != "jax":
        raise ConfigError(
            bad_value(
                "train.distribute",
                "multi_worker",
                f"none or mirrored with the {backend()} backend (multi_worker needs KERAS_BACKEND=jax: "
                "tf.distribute.MultiWorkerMirroredStrategy does not work with Keras 3 fit)",
            )
        )
    missing = [name for name in PROCESS_VARIABLES if not os.environ.get(name)]
    if missing:
        raise ConfigError(
            f"train.distribute='multi_worker' needs {', '.join(missing)} in the environment; expected the "
            "coordinator's host:port, the number of processes and this process's id (0 = chief)"
        )
    import jax
    import keras

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes talk over TCP
    keras.distribution.initialize()
    # Each process feeds its own shard (train.fit.fit_data), so Keras must not shard again.
    keras.distribution.set_distribution(keras.distribution.DataParallel(auto_shard_dataset=False))
    _process = (int(jax.process_index()), int(jax.process_count()))
    return _process


def replicas(model: Any) -> int:
    """How many copies of the model train in step (1 unless under a tf.distribute strategy)."""
    return int(getattr(getattr(model, "distribute_strategy", None), "num_replicas_in_sync", 1))


def process() -> tuple[int, int]:
    """(this process's index, number of processes): (0, 1) unless multi_worker joined more."""
    return _process or (0, 1)


def distribution_scope(t: TrainConfig) -> AbstractContextManager[Any]:
    """Where models are built and compiled: the process's MirroredStrategy scope for
    ``train.distribute=mirrored`` (one replica per GPU, else per logical CPU). Nothing
    otherwise: multi_worker set a process-wide Keras distribution in :func:`configure`."""
    global _strategy
    if t.distribute != "mirrored":
        return contextlib.nullcontext()
    import tensorflow as tf

    if _strategy is None:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        _strategy = tf.distribute.MirroredStrategy(devices)
    return _strategy.scope()


def configure_for(t: TrainConfig) -> dict[str, Any]:
    """:func:`configure` with everything ``train.*`` asks for."""
    replicas = t.cpu_replicas if t.distribute == "mirrored" else 0
    env = configure(
        t.seed, t.deterministic, t.accelerator, t.precision, t.threads, replicas, t.distribute == "multi_worker"
    )
    if t.distribute == "mirrored" and env["backend"] != "tensorflow":  # before any MLflow run opens
        raise ConfigError(
            bad_value("train.distribute", t.distribute, f"none with the {env['backend']} backend (mirrored is TensorFlow's)")
        )
    return env


def configure(
    seed: int,
    deterministic: bool,
    accelerator: str,
    precision: str,
    threads: int = 0,
    cpu_replicas: int = 0,
    multi_worker: bool = False,
) -> dict[str, Any]:
    """Start Keras afresh, seed every RNG, make kernels deterministic where asked, and check
    the device request.

    Afresh: Keras numbers automatic names per process (``adam``, then ``adam_1``), and a saved
    model holds them, so a second run in one process (a test, a notebook, a study's jobs)
    would save other bytes than a fresh process does."""
    prepare_environment(accelerator)
    import keras

    keras.backend.clear_session()
    set_threads(threads)
    if cpu_replicas > 1 and backend() == "tensorflow":
        split_cpu(cpu_replicas)
    if multi_worker:
        join_processes()

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
