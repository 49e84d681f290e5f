"""The generalization gap as a first-class metric, for every task.

Sign convention (every gap is positive when the model overfits):
  gap_loss    = validation loss − train loss                    (all tasks)
  gap_<score> = train score − validation score                  (accuracy, auc, ...)
  gap_<error> = validation error − train error                  (rmse, mae, ece)
Each task's per-epoch metrics are :data:`gapline.config.tasks.EPOCH_METRICS` (multiclass: accuracy
and calibration error; binary and multilabel: AUC first; regression: rmse and mae).
"Train" is measured in inference mode (dropout and noise off) on a fixed subset of the
training data, so the gap compares like with like instead of a noisy training-mode average.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gapline.config import tasks
from gapline.config.tasks import EPOCH_METRICS, TaskSpec
from gapline.data.store import IndexedRows, RowReader
from gapline.evaluate import scoring
from gapline.models.memory import DEFAULT_BUDGET, inference_rows
from gapline.models.runtime import replicas


def subset_indices(n: int, limit: int, seed: int) -> np.ndarray:
    """A fixed, seeded subset of ``limit`` rows (all rows when ``limit`` is 0 or ≥ n)."""
    if limit <= 0 or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=limit, replace=False))


def gap_subset(x: np.ndarray, y: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray | IndexedRows, np.ndarray]:
    """The training samples the gap is measured on: all of them when ``limit`` is 0 or more
    than there are, else a seeded subset of ``limit`` rows. Neither is copied: a mapped split
    stays on disk and is read a prediction call at a time."""
    pick = subset_indices(len(x), limit, seed)
    if len(pick) == len(x):
        return x, y
    return IndexedRows(x, pick), y[pick]


def predictions(model: Any, x: np.ndarray | IndexedRows, budget: int) -> np.ndarray:
    """The model's outputs in inference mode, as float32 numpy, in calls of as many rows as
    ``budget`` bytes of activations allow (:func:`gapline.models.memory.inference_rows`)."""
    return _predict(model, x, inference_rows(model, budget))


def _predict(model: Any, x: np.ndarray | IndexedRows, rows: int) -> np.ndarray:
    from keras import ops

    # Under MirroredStrategy predict_on_batch hands every replica the whole batch and
    # concatenates their answers (N copies of each row); predict splits the batch instead.
    mirrored = replicas(model) > 1
    parts = []
    # a memory-mapped split (or the gap's subset of one) is read a call at a time
    reader = x if isinstance(x, IndexedRows) else RowReader(x)
    for start in range(0, len(x), rows):
        xb = reader.rows(start, start + rows)
        out = model.predict(xb, batch_size=len(xb), verbose=0) if mirrored else model.predict_on_batch(xb)
        parts.append(np.asarray(ops.convert_to_numpy(out), dtype="float32"))
    return np.concatenate(parts, axis=0)


def inference_scores(
    model: Any,
    x: np.ndarray | IndexedRows,
    y: np.ndarray,
    task: TaskSpec,
    task_cfg: Any = None,
    metrics: Sequence[str] | None = None,
    budget: int = DEFAULT_BUDGET,
    pred: np.ndarray | None = None,
) -> dict[str, float]:
    """``loss`` and the task's ``metrics`` (default: its per-epoch ones) in inference mode.

    One forward pass (``predict_on_batch``: none of ``evaluate``'s per-call set-up, which
    dominates on small data), then numpy. The loss is the compiled loss, weighted as compiled
    (:func:`gapline.config.tasks.loss`), plus the weight penalties (``model.losses``), exactly what
    Keras adds. ``y`` as the prepared data holds it; ``pred``: predictions already made;
    ``budget``: bytes of activations per prediction call (``train.inference_memory``).
    """
    from keras import ops

    rows = inference_rows(model, budget)
    probs = _predict(model, x, rows) if pred is None else pred
    weight = tasks.loss(task, task_cfg)[1]
    total = 0.0
    for start in range(0, len(x), rows):
        stop = start + rows
        target = task.encode(y[start:stop])  # a batch's one-hot rows at a time
        total += float(ops.convert_to_numpy(model.loss(target, probs[start:stop]))) * len(target)
    penalty = sum(float(ops.convert_to_numpy(v)) for v in model.losses)
    out = {"loss": total / len(x) * weight + penalty}
    names = EPOCH_METRICS[task.name] if metrics is None else metrics
    cfg_threshold = getattr(task_cfg, "threshold", 0.5)
    out.update(
        scoring.scores(
            task.name,
            np.asarray(y),
            probs,
            list(names),
            threshold=cfg_threshold,
            bins=getattr(task_cfg, "calibration_bins", 15),
            top_k=getattr(task_cfg, "top_k", 5),
        )
    )
    return out


@dataclass(frozen=True)
class Onset:
    best_epoch: int  # 1-based epoch with the lowest validation loss
    onset_epoch: int | None  # 1-based; None when validation loss never turned upward


def overfitting_onset(
    train_loss: Sequence[float], val_loss: Sequence[float], tolerance: float = 1e-4
) -> Onset:
    """Where validation loss bottoms out while training loss keeps falling.

    The onset is the best epoch when, after it, validation loss rises above its minimum by
    more than ``tolerance`` and training loss still reaches a lower value than it had at the
    best epoch. Non-finite losses (a diverged epoch) never count as a minimum.
    """
    if len(val_loss) == 0:
        raise ValueError("overfitting_onset needs at least one epoch of history")
    vals = [v if math.isfinite(v) else math.inf for v in val_loss]
    best = int(np.argmin(vals))
    later_val = vals[best + 1 :]
    later_train = [t for t in train_loss[best + 1 :] if math.isfinite(t)]
    overfit = (
        bool(later_val)
        and max(later_val) > vals[best] + tolerance
        and bool(later_train)
        and min(later_train) < float(train_loss[best]) - tolerance
    )
    return Onset(best_epoch=best + 1, onset_epoch=best + 1 if overfit else None)
