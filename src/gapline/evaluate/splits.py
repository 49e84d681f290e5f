"""Score a trained model on named splits in inference mode, with the gaps between them.

Apart from training so that the evaluate stage (and retraining's scoring) depends on how a
model is scored, not on how it was built or fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gapline.config.tasks import FINAL_METRICS, TaskSpec, as_spec, gap
from gapline.evaluate.gap import inference_scores
from gapline.models.memory import DEFAULT_BUDGET


def evaluate_splits(
    model: Any,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    task: TaskSpec | int,
    task_cfg: Any = None,
    predicted: Mapping[str, np.ndarray] | None = None,
    budget: int | None = None,
) -> dict[str, float]:
    """``<split>_loss`` and ``<split>_<metric>`` for the task's final metrics
    (:data:`gapline.config.tasks.FINAL_METRICS`), plus ``gap_<metric>_val`` and ``gap_<metric>_test``
    against the train split (positive = overfitting). ``task``: a TaskSpec, or a number of
    classes (multiclass). ``predicted``: the model's outputs on some splits, already made by
    the caller (:func:`gapline.evaluate.gap.predictions`, the evaluate stage's test split, which it also
    plots): scored as given instead of predicting the split again. ``budget``: bytes of
    activations per prediction call (``train.inference_memory``; default its default)."""

    spec = as_spec(task)
    budget = DEFAULT_BUDGET if budget is None else budget
    out: dict[str, float] = {}
    per_split: dict[str, dict[str, float]] = {}
    for name, (x, y) in splits.items():
        pred = (predicted or {}).get(name)
        per_split[name] = inference_scores(model, x, y, spec, task_cfg, FINAL_METRICS[spec.name], budget, pred)
        out.update({f"{name}_{metric}": float(value) for metric, value in per_split[name].items()})
    for other in ("val", "test"):
        if "train" in per_split and other in per_split:
            for metric, value in per_split["train"].items():
                out[f"gap_{metric}_{other}"] = gap(metric, value, per_split[other][metric])
    return out
