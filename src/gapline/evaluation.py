"""Score a trained model on named splits in inference mode, with the gaps between them.

Apart from training so that the evaluate stage (and retraining's scoring) depends on how a
model is scored, not on how it was built or fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .runtime import replicas
from .targets import one_hot

EVAL_BATCH = 512


def evaluate_splits(
    model: Any, splits: dict[str, tuple[np.ndarray, np.ndarray]], num_classes: int
) -> dict[str, float]:
    """Loss and accuracy per split in inference mode, plus the gaps against val and test."""
    from .gap import gap_accuracy, gap_loss, inference_metrics

    out: dict[str, float] = {}
    for name, (x, y) in splits.items():
        if replicas(model) > 1:  # Keras 3.15's evaluate fails on a batch that splits unevenly
            loss, accuracy = inference_metrics(model, x, one_hot(y, num_classes), EVAL_BATCH)
        else:
            res = model.evaluate(x, one_hot(y, num_classes), batch_size=EVAL_BATCH, verbose=0, return_dict=True)
            loss, accuracy = res["loss"], res["accuracy"]
        out[f"{name}_loss"] = float(loss)
        out[f"{name}_accuracy"] = float(accuracy)
    for other in ("val", "test"):
        if "train_loss" in out and f"{other}_loss" in out:
            out[f"gap_accuracy_{other}"] = gap_accuracy(out["train_accuracy"], out[f"{other}_accuracy"])
            out[f"gap_loss_{other}"] = gap_loss(out["train_loss"], out[f"{other}_loss"])
    return out
