"""What a task is: the output layer, the loss, the metrics and which way each one points.

One table per task, read by the model head, training, the gap, evaluation, early stopping,
sweeps, the study and retraining, so that all of them agree on what "better" and "overfitting"
mean. The labels themselves are read and checked in :mod:`gapline.data.labels`; the numbers
are computed in :mod:`gapline.evaluate.scoring`.

Targets as the prepared data holds them (``y``): multiclass and binary int64 class indices
``(n,)``; multilabel int64 0/1 ``(n, labels)``; regression float32 ``(n,)`` in the user's units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gapline.config.metrics import (  # noqa: F401  (the task tables, read through this module)
    CLASSIFICATION,
    EPOCH_METRICS,
    FINAL_METRICS,
    HEADLINE,
    HIGHER_IS_BETTER,
    TASK_NAMES,
    TRAINING_METRIC,
    monitors,
)
from gapline.config.schema import SweepConfig
from gapline.core.errors import ConfigError, bad_value


def higher_is_better(metric: str) -> bool:
    """Direction of a metric name, with or without a split prefix (``val_rmse``)."""
    name = metric.removeprefix("train_eval_")
    name = name.split("_", 1)[1] if name.split("_", 1)[0] in ("train", "val", "test", "gap") else name
    for suffix in ("_val", "_test"):  # gap_rmse_val
        name = name.removesuffix(suffix) if name.removesuffix(suffix) in HIGHER_IS_BETTER else name
    return HIGHER_IS_BETTER.get(name, HIGHER_IS_BETTER.get(_base(name), True))


def _base(name: str) -> str:
    return "top_k_accuracy" if name.startswith("top") and name.endswith("_accuracy") else name


def gap(metric: str, train: float, other: float) -> float:
    """The generalization gap on ``metric``; positive when train looks better than ``other``."""
    return float(train) - float(other) if higher_is_better(metric) else float(other) - float(train)


@dataclass(frozen=True)
class TaskSpec:
    """A resolved task on concrete data: what the head outputs and how targets are encoded.

    ``labels``: the class names (multiclass, binary: negative first), the label names
    (multilabel) or the target's name (regression). Regression targets are standardized with
    ``target_mean``/``target_std`` of the training split inside the model, so its outputs are
    in the user's units while the loss sees a unit-variance target. Tabular features are
    standardized the same way (``feature_mean``/``feature_std``), also inside the model, and
    uint8 pixels are scaled to [0, 1] by ``1 / pixel_max``.
    """

    name: str
    labels: tuple[str, ...]
    target_mean: float = 0.0
    target_std: float = 1.0
    # tabular data (data.standardize): the training split's per-feature mean and std, which
    # the model's first layer standardizes its inputs with; None: inputs go in as they are
    feature_mean: tuple[float, ...] | None = None
    feature_std: tuple[float, ...] | None = None
    # images: the model's first layer divides the uint8 pixels by this (0: inputs are floats)
    pixel_max: int = 0
    # a table (csv, parquet): its columns and what the training split fitted
    # (gapline.data.columns), which the model's first layer encodes raw cells with
    table: tuple[dict[str, Any], ...] = ()

    @property
    def outputs(self) -> int:
        if self.name == "multiclass":
            return len(self.labels)
        if self.name == "multilabel":
            return len(self.labels)
        return 1

    @property
    def headline(self) -> str:
        return HEADLINE[self.name]

    @property
    def classification(self) -> bool:
        return self.name in CLASSIFICATION

    def encode(self, y: np.ndarray) -> np.ndarray:
        """Targets as the loss compares them with the model's output (float32)."""
        y = np.asarray(y)
        if self.name == "multiclass":
            return one_hot(y, len(self.labels))
        if self.name == "multilabel":
            return y.astype("float32")
        return y.astype("float32").reshape(-1, 1)


def one_hot(y: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype="float32")[y]


def multiclass(num_classes: int) -> TaskSpec:
    return TaskSpec("multiclass", tuple(str(i) for i in range(num_classes)))


def as_spec(task: TaskSpec | int) -> TaskSpec:
    """A TaskSpec as is; a number of classes as today's multiclass task."""
    return task if isinstance(task, TaskSpec) else multiclass(int(task))


def target_stats(y: np.ndarray) -> dict[str, float]:
    """Mean and standard deviation of a regression target (std 1 for a constant target)."""
    y = np.asarray(y, dtype="float64")
    std = float(y.std())
    return {"mean": float(y.mean()), "std": std if std > 0 else 1.0}


def loss(spec: TaskSpec, task_cfg: Any, label_smoothing: float = 0.0) -> tuple[Any, float]:
    """``(keras loss, weight)``: the loss is a built-in Keras one (a saved model compiles
    without gapline), its weight rescales a regression loss to the standardized target
    (mse / std², mae / std, huber with delta·std / std²), so penalties and learning rates mean
    the same on any target scale."""
    import keras

    if spec.name == "multiclass":
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing), 1.0
    if spec.name in ("binary", "multilabel"):
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing), 1.0
    kind = "mse" if task_cfg is None or task_cfg.loss in ("auto", "mse") else task_cfg.loss
    std = spec.target_std
    if kind == "mae":
        return keras.losses.MeanAbsoluteError(), 1.0 / std
    if kind == "huber":
        return keras.losses.Huber(delta=float(task_cfg.huber_delta) * std), 1.0 / std**2
    return keras.losses.MeanSquaredError(), 1.0 / std**2


def training_metrics(spec: TaskSpec, threshold: float = 0.5) -> list[Any]:
    import keras

    name = TRAINING_METRIC[spec.name]
    if name is None:
        return []
    if spec.name == "multiclass":
        return [keras.metrics.CategoricalAccuracy(name=name)]
    if spec.name == "binary":
        return [keras.metrics.BinaryAccuracy(name=name, threshold=threshold)]
    return [keras.metrics.RootMeanSquaredError(name=name)]


def retrain_metrics(task: str) -> tuple[str, ...]:
    return ("auto", *(f"{split}_{m}" for split in ("test", "val") for m in FINAL_METRICS[task] if m in ("accuracy", "auc", "rmse", "mae", "r2")))


def retrain_metric(metric: str, task: str) -> str:
    """``retrain.metric`` with auto resolved: the task's headline on the test split."""
    return f"test_{HEADLINE[task]}" if metric == "auto" else metric


def sample_weights(spec: TaskSpec, y: np.ndarray, class_weight: str) -> np.ndarray | None:
    """``balanced`` class weights as per-sample weights (n / (classes * count)), so rare
    classes count as much as common ones in the loss; None for ``none``."""
    if class_weight == "none":
        return None
    y = np.asarray(y)
    counts = np.bincount(y, minlength=len(spec.labels)).astype("float64")
    weights = len(y) / (len(spec.labels) * np.maximum(counts, 1.0))
    return weights[y].astype("float32")


def check(cfg: Any, task: str) -> None:
    """The keys whose allowed values depend on the task, once the task is known (from
    ``task.type``, or from the labels when it is auto): one line naming key, value, task."""

    def refuse(key: str, value: Any, allowed: str) -> None:
        raise ConfigError(bad_value(key, value, f"{allowed} for task {task}"))

    t = cfg.task
    if task == "regression":
        if t.loss not in ("auto", "mse", "mae", "huber"):
            refuse("task.loss", t.loss, "auto, mse, mae or huber")
        if cfg.regularization.label_smoothing:
            refuse("regularization.label_smoothing", cfg.regularization.label_smoothing, "0 (no labels to smooth)")
    elif t.loss not in ("auto", "crossentropy"):
        refuse("task.loss", t.loss, "auto or crossentropy")
    if t.class_weight != "none" and task not in ("binary", "multiclass"):
        refuse("task.class_weight", t.class_weight, "none")
    monitor = cfg.regularization.early_stopping.monitor
    if monitor not in monitors(task):
        refuse("regularization.early_stopping.monitor", monitor, "one of " + ", ".join(monitors(task)))
    if cfg.retrain.metric not in retrain_metrics(task):
        refuse("retrain.metric", cfg.retrain.metric, "one of " + ", ".join(retrain_metrics(task)))


# How metrics are named and read back, for tables, plots and printed lines.
UNIT_SCORES = ("accuracy", "auc", "pr_auc", "macro_f1", "micro_f1", "f1", "precision", "recall", "subset_accuracy", "ece")
LABELS = {"accuracy": "accuracy", "auc": "AUC", "rmse": "RMSE", "mae": "MAE", "r2": "R²", "ece": "ECE"}


def task_of(row: Mapping[str, Any]) -> str:
    """The task of a trial's row, job record or summary/CSV row: its ``task`` when it has one,
    else read from the metric names it holds (rows written before tasks existed: multiclass)."""
    task = row.get("task")
    if task in HEADLINE:
        return str(task)
    keys = " ".join(str(k) for k in row)
    if "test_rmse" in keys:
        return "regression"
    if "test_subset_accuracy" in keys:
        return "multilabel"
    if "test_auc" in keys:
        return "binary"
    return "multiclass"


def headline_of(row: Mapping[str, Any]) -> str:
    """The headline metric of the row's task (accuracy, auc or rmse)."""
    return HEADLINE[task_of(row)]


def label(metric: str) -> str:
    return LABELS.get(metric, metric.replace("_", " "))


def gap_label(metric: str) -> str:
    """Which way the gap on ``metric`` is taken (positive = overfitting)."""
    return "train−test" if higher_is_better(metric) else "test−train"


def objective(metrics: Mapping[str, float], sweep: SweepConfig, task: str = "multiclass") -> float:
    """The number a sweeper minimizes (lower is better for every task): val_error is
    1 − the task's headline score on validation (accuracy, AUC), or its error (RMSE); val_nll
    the validation log-loss without label smoothing or weight penalties (a regression's: its
    RMSE, the Gaussian log-likelihood's ranking), which val_loss includes."""
    if sweep.objective == "val_nll":
        return float(metrics["val_rmse" if task == "regression" else "val_nll"])
    if sweep.objective == "val_error":
        head = HEADLINE[task]
        value = float(metrics[f"val_{head}"])
        return 1.0 - value if higher_is_better(head) else value
    value = float(metrics["val_loss"])
    if sweep.objective == "val_loss_plus_gap":
        value += sweep.gap_penalty * max(0.0, float(metrics["gap_loss_val"]))
    return value
