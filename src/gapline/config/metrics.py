"""The task tables: which metrics each task reports, which way each points, what early stopping
may watch. Plain data with no imports, so that the schema derives its allowed values from
them (``MONITORS``, ``RETRAIN_METRICS``) and :mod:`gapline.config.tasks` builds on them.
"""

from __future__ import annotations

TASK_NAMES = ("multiclass", "binary", "multilabel", "regression")
CLASSIFICATION = ("multiclass", "binary", "multilabel")

# Every metric gapline reports, and whether a higher value is better. The gap on a metric is
# ``train - other`` for a score and ``other - train`` for an error: positive = overfitting.
HIGHER_IS_BETTER = {
    "loss": False,
    "accuracy": True,
    "macro_f1": True,
    "top_k_accuracy": True,
    "auc": True,
    "pr_auc": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "subset_accuracy": True,
    "micro_f1": True,
    "ece": False,
    "nll": False,
    "rmse": False,
    "mae": False,
    "r2": True,
}

# The metric a task is judged by first: the headline of its gap, of the diagnosis, of the
# study table and the default of retraining.
HEADLINE = {"multiclass": "accuracy", "binary": "auc", "multilabel": "auc", "regression": "rmse"}

# Measured on the train subset and the validation split after every epoch (cheap: one
# forward pass, then numpy), each with its gap; the loss and its gap always come first.
EPOCH_METRICS = {
    "multiclass": ("accuracy", "ece"),
    "binary": ("auc", "accuracy", "ece"),
    "multilabel": ("auc", "subset_accuracy", "ece"),
    "regression": ("rmse", "mae"),
}

# Reported by evaluate on every split (a gap on each against val and test).
# nll: the log-loss of the labels under the predicted probabilities, with neither label
# smoothing nor weight penalties (which the loss includes): what the study tunes on.
FINAL_METRICS = {
    "multiclass": ("accuracy", "macro_f1", "top_k_accuracy", "ece", "nll"),
    "binary": ("auc", "pr_auc", "accuracy", "f1", "precision", "recall", "ece", "nll"),
    "multilabel": ("auc", "subset_accuracy", "micro_f1", "macro_f1", "ece", "nll"),
    "regression": ("rmse", "mae", "r2"),
}

# What the compiled model reports in training mode for each batch (a "running" metric, so
# early stopping may watch it): accuracy for single-label classification, rmse for regression.
TRAINING_METRIC = {"multiclass": "accuracy", "binary": "accuracy", "multilabel": None, "regression": "rmse"}


def monitors(task: str) -> tuple[str, ...]:
    """What early stopping may watch for this task."""
    names = ["val_loss", "loss", *(f"val_{m}" for m in EPOCH_METRICS[task])]
    training = TRAINING_METRIC[task]
    if training:
        names.append(training)
    return tuple(names)
