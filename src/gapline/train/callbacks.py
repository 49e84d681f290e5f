"""gapline's subclasses of Keras classes for training: the per-epoch gap and the learning rate
in each epoch's logs (callbacks), and the endless batch sequence JAX fits from (a PyDataset).

Keras classes are defined at import, so importing this module imports Keras: import it inside
the function that trains, as keras itself (ruff's TID253 keeps it off module level; the saved
models' own layers live in :mod:`gapline.layers` for the same reason).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from gapline.config.tasks import TaskSpec, gap
from gapline.data.store import IndexedRows
from gapline.evaluate.gap import inference_scores
from gapline.models.memory import DEFAULT_BUDGET
from gapline.train.resume import epoch_order


class GapCallback(keras.callbacks.Callback):
    """Adds, after every epoch, ``val_loss`` and ``val_<metric>``, ``train_eval_loss`` and
    ``train_eval_<metric>`` (the fixed train subset in inference mode), ``gap_loss`` and
    ``gap_<metric>`` for the task's per-epoch metrics, so History, CSV logs, MLflow and
    EarlyStopping all see them. ``fit`` needs no ``validation_data``: computing the
    validation scores here is several times cheaper per epoch on small data.
    """

    def __init__(
        self,
        x: np.ndarray | IndexedRows,
        y: np.ndarray,
        task: TaskSpec,
        task_cfg: Any = None,
        budget: int = DEFAULT_BUDGET,
        val: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        self.x = x
        self.y = y
        self.task = task
        self.task_cfg = task_cfg
        self.budget = budget
        self.val = val

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None or self.val is None:
            return
        val = inference_scores(self.model, self.val[0], self.val[1], self.task, self.task_cfg, budget=self.budget)
        train = inference_scores(self.model, self.x, self.y, self.task, self.task_cfg, budget=self.budget)
        for name, value in val.items():
            logs[f"val_{name}"] = value
        for name, value in train.items():
            logs[f"train_eval_{name}"] = value
            logs[f"gap_{name}"] = gap(name, value, val[name])


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to each epoch's logs."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def epoch_batch(n: int, batch_size: int, seed: int, epoch: int, batch: int, cache: dict[int, np.ndarray]) -> np.ndarray:
    """Row indices of batch ``batch`` of epoch ``epoch``: the same permutation as the
    TensorFlow pipeline (:func:`gapline.train.resume.epoch_order`), one epoch's order cached."""

    if epoch not in cache:
        cache.clear()
        cache[epoch] = epoch_order(n, seed, epoch)
    return cache[epoch][batch * batch_size : (batch + 1) * batch_size]


class EpochBatches(keras.utils.PyDataset):
    """The whole fit as one endless sequence of batches (global batch i is batch i mod steps
    of epoch start + i div steps): no per-epoch state, so Keras's single iterator and a resumed
    fit see the same batches as the TensorFlow pipeline."""

    def __init__(self, take: Any, n: int, batch_size: int, seed: int, start: int, steps: int) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.take, self.n, self.batch_size, self.seed, self.start, self.steps = take, n, batch_size, seed, start, steps
        self._orders: dict[int, np.ndarray] = {}

    @property
    def num_batches(self) -> None:
        return None  # endless: fit's steps_per_epoch cuts it into epochs

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        epoch, batch = self.start + i // self.steps, i % self.steps
        return self.take(epoch_batch(self.n, self.batch_size, self.seed, epoch, batch, self._orders))
