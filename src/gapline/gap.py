"""The generalization gap as a first-class metric.

Sign convention (both positive when the model overfits):
  gap_accuracy = train accuracy − validation accuracy
  gap_loss     = validation loss − train loss
"Train" is measured in inference mode (dropout and noise off) on a fixed subset of the
training data, so the gap compares like with like instead of a noisy training-mode average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from .runtime import replicas

try:  # the callback needs Keras; the pure functions below do not
    import keras

    _CallbackBase: Any = keras.callbacks.Callback
except ImportError:  # pragma: no cover - keras is a hard dependency
    _CallbackBase = object


def gap_accuracy(train_accuracy: float, other_accuracy: float) -> float:
    return float(train_accuracy) - float(other_accuracy)


def gap_loss(train_loss: float, other_loss: float) -> float:
    return float(other_loss) - float(train_loss)


def subset_indices(n: int, limit: int, seed: int) -> np.ndarray:
    """A fixed, seeded subset of ``limit`` rows (all rows when ``limit`` is 0 or ≥ n)."""
    if limit <= 0 or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=limit, replace=False))


def gap_subset(x: np.ndarray, y: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training samples the gap is measured on: all of them (no copy) when ``limit`` is 0
    or more than there are, else a seeded subset."""
    pick = subset_indices(len(x), limit, seed)
    if len(pick) == len(x):
        return x, y
    return x[pick], y[pick]


# Samples per inference call: one call for small data; for images, a batch whose activations
# stay small (4096 32x32 images through a 32-filter conv is 512 MiB, and 35 % slower).
INFERENCE_BATCH = 1024


def inference_metrics(
    model: Any, x: np.ndarray, y: np.ndarray, batch_size: int = INFERENCE_BATCH
) -> tuple[float, float]:
    """Loss and accuracy in inference mode, as ``model.evaluate`` reports them, but cheaply.

    ``predict_on_batch`` runs the compiled forward pass with none of ``evaluate``'s
    per-call data-adapter setup, which dominates on small data. The loss is the compiled
    loss plus the weight penalties (``model.losses``), exactly what Keras adds.
    """
    from keras import ops

    # Under MirroredStrategy predict_on_batch hands every replica the whole batch and
    # concatenates their answers (N copies of each row); predict splits the batch instead.
    mirrored = replicas(model) > 1
    total, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        probs = model.predict(xb, batch_size=len(xb), verbose=0) if mirrored else model.predict_on_batch(xb)
        total += float(ops.convert_to_numpy(model.loss(yb, probs))) * len(xb)
        correct += int(np.sum(np.argmax(probs, axis=-1) == np.argmax(yb, axis=-1)))
    penalty = sum(float(ops.convert_to_numpy(v)) for v in model.losses)
    return total / len(x) + penalty, correct / len(x)


class GapCallback(_CallbackBase):
    """Adds ``train_eval_loss``, ``train_eval_accuracy``, ``gap_loss`` and ``gap_accuracy`` to
    each epoch's logs, so History, CSV logs, MLflow and EarlyStopping all see them.

    Given ``val``, it also computes ``val_loss``/``val_accuracy`` itself (then ``fit`` needs no
    ``validation_data``), which is several times cheaper per epoch on small data.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int = INFERENCE_BATCH,
        val: Optional[tuple[np.ndarray, np.ndarray]] = None,
    ) -> None:
        super().__init__()
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.val = val

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        if logs is None:
            return
        if self.val is not None:
            vl, va = inference_metrics(self.model, self.val[0], self.val[1], self.batch_size)
            logs["val_loss"], logs["val_accuracy"] = vl, va
        if "val_loss" not in logs:
            return
        tl, ta = inference_metrics(self.model, self.x, self.y, self.batch_size)
        logs["train_eval_loss"] = tl
        logs["train_eval_accuracy"] = ta
        logs["gap_loss"] = gap_loss(tl, float(logs["val_loss"]))
        logs["gap_accuracy"] = gap_accuracy(ta, float(logs["val_accuracy"]))


@dataclass(frozen=True)
class Onset:
    best_epoch: int  # 1-based epoch with the lowest validation loss
    onset_epoch: Optional[int]  # 1-based; None when validation loss never turned upward


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
