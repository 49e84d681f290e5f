"""Train one Keras model from config: the pure function behind the ``train`` stage."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gapline.config import tasks
from gapline.config.schema import Config
from gapline.config.tasks import TaskSpec, as_spec, sample_weights
from gapline.core.errors import ConfigError, GaplineError, bad_value
from gapline.data.store import RowReader
from gapline.evaluate.gap import gap_subset
from gapline.models import memory
from gapline.models import regularization as R
from gapline.models.build import build_model, effective_params
from gapline.models.runtime import distribution_scope, process, replicas
from gapline.train.phases import two_phase_fit
from gapline.train.resume import callback as resume_callback
from gapline.train.resume import epoch_order
from gapline.train.warm_start import load_init_source
from gapline.train.warm_start import warm_start as copy_weights


@dataclass(frozen=True)
class TrainResult:
    """What the fit loop returns: the model and its raw figures. :mod:`gapline.train.summary`
    turns it into the fit's summary (reports/train.json and a trial's row)."""

    model: Any
    history: dict[str, list[float]]
    epochs_run: int
    wall_seconds: float
    samples_per_second: float
    params: int
    params_untied: int  # as if every tied kernel were its own (effective_params)
    resumed_from: int  # the epoch a backup restored (0: a fresh fit)
    replicas: int  # devices the fit ran on


def make_optimizer(name: str, learning_rate: float, ema: float = 0.0) -> Any:
    """``ema`` > 0: the optimizer keeps an exponential moving average of the weights with
    this momentum (Keras's ``use_ema``); :func:`ema_swap` makes validation, the gap, early
    stopping and the fitted model use the averaged weights."""
    import keras

    factories = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": lambda **kw: keras.optimizers.SGD(momentum=0.9, **kw),
        "rmsprop": keras.optimizers.RMSprop,
    }
    extra = {"use_ema": True, "ema_momentum": ema} if ema > 0 else {}
    return factories[name](learning_rate=learning_rate, **extra)


def ema_swap() -> tuple[Any, Any]:
    """Two callbacks around the per-epoch scoring when the optimizer keeps a weight EMA.

    Keras swaps the averaged weights in only at the end of ``fit``
    (``finalize_variable_values``), and EarlyStopping's ``restore_best_weights`` then
    overwrites them with the raw weights of its best epoch. So the first callback (before the
    gap callback) puts the averaged weights into the model at each epoch's end, so that the
    validation and gap scores, EarlyStopping's choice and its saved best weights are those of
    the averaged model; the second (after EarlyStopping, before the resume backup) puts the
    raw weights back, so training and a saved training state go on from them. Without EMA
    both do nothing."""
    import keras

    raw: list[Any] = []

    class SwapIn(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            opt = self.model.optimizer
            opt = getattr(opt, "inner_optimizer", opt)  # mixed precision wraps it in a LossScaleOptimizer
            if not getattr(opt, "use_ema", False):
                return
            variables = self.model.trainable_variables
            raw[:] = [keras.ops.convert_to_numpy(v) for v in variables]
            opt._overwrite_model_variables_with_average_value(variables)  # Keras's own swap

    class SwapBack(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if raw:
                for v, value in zip(self.model.trainable_variables, raw):
                    v.assign(value)
                raw.clear()

    return SwapIn(), SwapBack()


def steps_per_epoch(samples: int, batch_size: int) -> int:
    return max(1, -(-samples // batch_size))


def epoch_steps(samples: int, batch_size: int) -> int:
    """Steps per epoch that each process runs: under multi_worker a process fits its share
    (``samples // processes`` rows, ``batch_size // processes`` at a time, :func:`fit_data`)."""
    processes = process()[1]
    if processes > 1:
        samples, batch_size = samples // processes, max(1, batch_size // processes)
    return steps_per_epoch(samples, batch_size)


def steps_per_execution(steps: int, limit: int) -> int:
    """The largest divisor of ``steps`` (per epoch) up to ``limit``.

    Keras runs every call for the full ``steps_per_execution`` and does not stop at the
    epoch's end: on the one batch stream of a whole fit (:func:`fit_data`) a call that did not
    divide the epoch would run into the next epoch's batches, so epoch e would no longer see
    epoch e's seeded order (and a resumed run would differ from an uninterrupted one)."""
    return max(d for d in range(1, min(steps, max(1, limit)) + 1) if steps % d == 0)


def compile_model(model: Any, cfg: Config, steps: int = 1, task: TaskSpec | int | None = None) -> Any:
    """Compile with the task's loss (built-in Keras losses only, so a saved model compiles
    without gapline; a regression loss is weighted onto the standardized target) and its
    training-mode metric. ``task``: the TaskSpec, or a number of classes (multiclass)."""

    spec = as_spec(task if task is not None else model.output_shape[-1])
    loss, weight = tasks.loss(spec, cfg.task, cfg.regularization.label_smoothing)
    # Mirrored training runs one step per call: Keras 3.15 cannot run a multi-step call
    # under MirroredStrategy (config.checks.validate refuses an explicit value above 1).
    spe = 1 if cfg.train.distribute == "mirrored" else steps_per_execution(steps, cfg.train.steps_per_execution or 64)
    model.compile(
        optimizer=make_optimizer(cfg.train.optimizer, cfg.train.learning_rate, cfg.train.ema),
        loss=loss,
        loss_weights=weight if weight != 1.0 else None,
        metrics=tasks.training_metrics(spec, cfg.task.threshold),
        steps_per_execution=spe,
        jit_compile=cfg.train.jit_compile,
    )
    return model


def fit_data(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    seed: int,
    epochs: int,
    start: int = 0,
    weights: np.ndarray | None = None,
    encode: Any = None,
) -> dict[str, Any]:
    """What ``fit`` should iterate: one stream of batches for the whole fit, gathered from
    the arrays (``x`` may be memory-mapped: only the rows of a batch are read, and none stays
    resident, :class:`gapline.data.store.RowReader`). ``encode``: turns a batch's labels into the loss's
    targets (one-hot rows exist for a batch at a time, never for the whole set).

    Row order in epoch e is a permutation seeded by (seed, e) on every backend, so a run
    resumed at epoch ``start`` sees exactly the batches an uninterrupted run would; one
    epoch's order is in memory at a time. A fixed ``steps_per_epoch`` lets Keras keep a single
    iterator instead of building one per epoch (about 5× faster on small data). TensorFlow
    iterates a ``tf.data`` pipeline that prefetches; other backends (JAX) a
    :class:`keras.utils.PyDataset`, whose host-side gather overlaps the device's asynchronous
    step. ``weights``: per-sample loss weights (balanced classes), gathered with their rows.
    """
    import keras

    from gapline.train.callbacks import EpochBatches

    index, processes = process()
    if processes > 1:
        # multi_worker: each process fits its own equal share (equal, so every process runs
        # the same number of steps; each step's global batch is the shares' batches together).
        # A strided view: a process reads only its own rows of a mapped set.
        if batch_size % processes:
            raise ConfigError(bad_value("train.batch_size", batch_size, f"a multiple of the {processes} processes"))
        usable = len(x) // processes * processes
        x, y, batch_size = x[index:usable:processes], y[index:usable:processes], batch_size // processes
        weights = None if weights is None else weights[index:usable:processes]
    steps = steps_per_epoch(len(x), batch_size)
    encode = encode or (lambda labels: labels)
    readers = [RowReader(x), RowReader(y)] + ([RowReader(weights)] if weights is not None else [])

    def take(idx: np.ndarray) -> tuple[np.ndarray, ...]:
        rows = [reader.take(idx) for reader in readers]
        rows[1] = encode(rows[1])
        return tuple(rows)

    if keras.backend.backend() != "tensorflow":
        return {"x": EpochBatches(take, len(x), batch_size, seed, start, steps), "steps_per_epoch": steps, "shuffle": False}
    import tensorflow as tf

    sample = take(np.zeros(1, dtype=np.int64))  # the dtypes and row shapes a batch has
    n = len(x)

    def order(epoch: Any) -> np.ndarray:
        return epoch_order(n, seed, int(epoch))

    def shaped(*batch: Any) -> tuple[Any, ...]:
        for tensor, rows in zip(batch, sample):
            tensor.set_shape((None, *rows.shape[1:]))
        return batch

    # Batches are gathered from the numpy arrays themselves. Turning the training set into a
    # tensor (tf.constant) needed 2 more copies of it at peak, and a pipeline capturing that
    # tensor one more (measured on 50k 32x32x3 images): 4 copies instead of 1.
    # tf.data's default graph rewrites have nothing to fuse here and cost ~10 % per step on
    # images: off.
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    # resumed after the last epoch: one epoch that fit never reads (an empty stream is refused)
    ds = (
        tf.data.Dataset.range(start, max(epochs, start + 1))
        .flat_map(
            lambda e: tf.data.Dataset.from_tensor_slices(tf.numpy_function(order, [e], tf.int64, stateful=False)).batch(batch_size)
        )
        .map(lambda idx: tf.numpy_function(take, [idx], tuple(tf.as_dtype(r.dtype) for r in sample), stateful=False))
        .map(shaped)
        .prefetch(2)
        .with_options(options)
    )
    return {"x": ds, "steps_per_epoch": steps, "shuffle": False}


def build_compiled(
    cfg: Config,
    input_shape: tuple[int, ...],
    task: TaskSpec | int,
    samples: int,
    warm_start: dict[str, Any] | None = None,
) -> Any:
    """The configured model, built (a user's builder is called here), warm-started from
    ``model.init_from`` when set, and compiled. ``warm_start``: a dict that receives the warm
    start's summary (layers copied and skipped, the registered version it resolved to).
    ``task``: the TaskSpec (a number of classes: multiclass)."""
    spec = as_spec(task)
    source = None
    if cfg.model.init_from:
        # loaded outside the distribution scope: its variables are read once, never trained
        source = load_init_source(cfg.model.init_from, cfg.tracking)
    with distribution_scope(cfg.train):
        model = build_model(input_shape, spec, cfg.model, cfg.regularization, cfg.augment.online, cfg.train.seed)
        if source is not None:
            summary = copy_weights(model, cfg.model.init_from, source=source)
            if warm_start is not None:
                warm_start.update(summary)
        return compile_model(model, cfg, epoch_steps(samples, cfg.train.batch_size), spec)


class TrainingDiverged(GaplineError):
    """The loss became NaN or infinite: nothing trained after that point can be trusted."""


def divergence_guard(learning_rate: float) -> Any:
    """Stops training at the first non-finite loss with one clear line (not a silent NaN model)."""

    import keras

    class FailOnNonFinite(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.model.stop_training = True
                raise TrainingDiverged(
                    f"training diverged in epoch {self.epoch}: loss={float(loss)}; expected a finite "
                    f"loss: lower train.learning_rate (now {learning_rate:g}) or regularize more"
                )

    return FailOnNonFinite()


def train_model(
    cfg: Config,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    task: TaskSpec | int,
    callbacks: Sequence[Any] = (),
    gap_x: np.ndarray | None = None,
    gap_y: np.ndarray | None = None,
    verbose: int = 0,
    backup: Any = None,
    model: Any = None,
) -> TrainResult:
    """Build, compile and fit; the gap is measured on ``gap_x``/``gap_y`` (default: x_train).

    Pass the un-augmented training split as ``gap_x`` so the gap is not flattered or
    penalised by augmented copies. With a :class:`gapline.train.resume.Backup`, training resumes
    after the last epoch it saved and saves after every epoch. ``model``: one from
    :func:`build_compiled` (built before the MLflow run opens, so a config the model cannot
    honour fails first); by default it is built here.

    A backbone with ``model.fine_tune.epochs > 0`` trains in two phases (see
    :func:`gapline.train.phases.two_phase_fit`); every epoch's logs then carry ``phase`` (1 or 2).

    ``task``: the TaskSpec (a number of classes: multiclass); targets are given as the
    prepared data holds them (:mod:`gapline.config.tasks`) and encoded here.
    """
    from gapline.train.callbacks import GapCallback, LearningRateLogger

    spec = as_spec(task)
    steps = epoch_steps(len(x_train), cfg.train.batch_size)
    if model is None:
        model = build_compiled(cfg, tuple(x_train.shape[1:]), spec, len(x_train))
    gx, gy = gap_subset(
        x_train if gap_x is None else gap_x,
        y_train if gap_y is None else gap_y,
        cfg.train.gap_eval_samples,
        cfg.train.seed,
    )
    fit = PhaseFit(
        model,
        x_train,
        y_train,
        [GapCallback(gx, gy, spec, cfg.task, memory.train_budget(cfg.train), val=(x_val, y_val)), LearningRateLogger()],
        list(callbacks),
        backup,
        verbose,
        spec,
        sample_weights(spec, y_train, cfg.task.class_weight) if spec.name in ("binary", "multiclass") else None,
    )
    two_phase = cfg.model.family == "backbone" and cfg.model.fine_tune.epochs > 0
    start = time.perf_counter()
    if two_phase:
        history, first_epoch = two_phase_fit(fit, cfg, steps)
    else:
        first_epoch = backup.initial_epoch(cfg.train.epochs) if backup is not None else 0
        history = fit.run(cfg, first_epoch, cfg.train.epochs)
    wall = time.perf_counter() - start
    if process()[1] > 1:
        model = compile_model(local_copy(model), cfg, steps, spec)

    epochs_run = len(history.get("loss", []))
    counts = effective_params(model)
    return TrainResult(
        model=model,
        history=history,
        epochs_run=epochs_run,
        wall_seconds=wall,
        samples_per_second=len(x_train) * (epochs_run - first_epoch) / wall if wall > 0 else 0.0,
        params=counts["params"],
        params_untied=counts["params_untied"],
        resumed_from=first_epoch,
        replicas=replicas(model),
    )


@dataclass
class PhaseFit:
    """One ``model.fit`` over global epochs ``[first, end)`` with gapline's callbacks; a
    two-phase training calls it once per phase, on the same model and data."""

    model: Any
    x: np.ndarray
    y: np.ndarray  # as the prepared data holds it: each batch is encoded (TaskSpec.encode) in fit_data
    shared: list[Any]  # the gap and learning-rate loggers: the same in every phase
    callbacks: list[Any]  # the caller's (the MLflow epoch logger): after gapline's own
    backup: Any
    verbose: int
    task: TaskSpec
    weights: np.ndarray | None = None  # per-sample loss weights (task.class_weight)

    def recompile(self, cfg: Config, steps: int) -> None:
        """Compile again under ``cfg`` (a trainable change takes effect with a new compile)."""
        compile_model(self.model, cfg, steps, self.task)

    def run(
        self,
        cfg: Config,
        first: int,
        end: int,
        phase: int = 0,
        history: dict[str, list[float]] | None = None,
        restore: bool = True,
    ) -> dict[str, list[float]]:
        """The whole history after this fit: ``history`` (earlier phases), or the state that
        the backup restored, then this fit's epochs. ``phase`` > 0 adds ``phase`` to the logs."""

        stopping = R.callbacks(cfg.regularization)  # a fresh EarlyStopping per phase
        restored: dict[str, list[float]] = {}
        swap_in, swap_back = ema_swap()  # the EMA weights are scored and kept (train.ema)
        cbs = [
            divergence_guard(cfg.train.learning_rate),
            swap_in,
            *self.shared,
            *([_phase_logger(phase)] if phase else []),
            *stopping,
            swap_back,
            *self.callbacks,
        ]
        if self.backup is not None:  # last: it saves what every other callback has written
            cbs.append(resume_callback(self.backup, stopping[0] if stopping else None, restored, history, restore))
        hist = self.model.fit(
            **fit_data(self.x, self.y, cfg.train.batch_size, cfg.train.seed, end, first, self.weights, self.task.encode),
            epochs=end,
            initial_epoch=first,
            callbacks=cbs,
            verbose=self.verbose,
        )
        before = restored or history or {}
        out = {k: list(before.get(k, [])) + [float(v) for v in vals] for k, vals in hist.history.items()}
        for key, values in before.items():
            out.setdefault(key, list(values))
        return out


def _phase_logger(phase: int) -> Any:
    """Adds ``phase`` to each epoch's logs: MLflow and the DVCLive curves show the boundary."""
    import keras

    class Phase(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if logs is not None:
                logs["phase"] = phase

    return Phase()


def local_copy(model: Any) -> Any:
    """The trained model as an ordinary one-process model (multi_worker).

    Under a multi-process distribution every new variable and every computation waits for
    all processes to do the same; what only the chief does after fit (saving creates an
    optimizer to inspect it, MLflow infers a signature by predicting) would wait forever.
    So the multi-process part ends with fit: the distribution is switched off and the
    weights are copied into the same architecture, local to this process."""
    import keras

    weights = model.get_weights()
    keras.distribution.set_distribution(None)
    copy = keras.models.clone_model(model)
    copy.set_weights(weights)
    return copy
