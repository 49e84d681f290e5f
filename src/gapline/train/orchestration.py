"""The one fit the train stage and every trial run.

:func:`fit_and_summarize` is the sequence both share: fit (the gap measured on the training
split itself), find the best epoch and the onset of overfitting, name the techniques that
were really applied. The train stage adds its files and its MLflow run around it; a trial
(sweep job, study arm, learning-curve point) adds scoring in memory
(:func:`gapline.evaluate.splits.evaluate_splits`, which the evaluate stage calls too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gapline.config.schema import Config
from gapline.config.tasks import TaskSpec
from gapline.evaluate.gap import overfitting_onset
from gapline.models.build import weight_sharing_applied
from gapline.models.regularization import techniques
from gapline.train import warm_start
from gapline.train.fit import TrainResult, train_model
from gapline.train.summary import FitSummary


@dataclass(frozen=True)
class FitData:
    """What a fit reads, as ``(x, y)`` pairs (arrays or memory-mapped splits)."""

    fit: tuple[Any, Any]  # what the model is fit on: the training split and its augmented copies
    train: tuple[Any, Any]  # the training split itself: the gap is scored on it
    val: tuple[Any, Any]



def fit_and_summarize(
    cfg: Config,
    task: TaskSpec,
    data: FitData,
    *,
    model: Any = None,
    callbacks: Sequence[Any] = (),
    backup: Any = None,
    verbose: int = 0,
    warm: dict[str, Any] | None = None,
) -> tuple[TrainResult, FitSummary]:
    """Fit ``cfg``'s model (``model``: one already built by ``build_compiled``) and summarize
    the fit. ``warm``: what ``build_compiled`` recorded of a warm start."""
    result = train_model(
        cfg, *data.fit, *data.val, task,
        callbacks=callbacks, gap_x=data.train[0], gap_y=data.train[1], verbose=verbose, backup=backup, model=model,
    )
    onset = overfitting_onset(result.history["loss"], result.history["val_loss"])
    summary = FitSummary(
        task=task.name,
        epochs_run=result.epochs_run,
        best_epoch=onset.best_epoch,
        onset_epoch=onset.onset_epoch,
        params=result.params,
        train_samples=int(len(data.train[1])),
        fit_samples=int(len(data.fit[1])),
        techniques=techniques(cfg, weight_sharing_applied(cfg.model.family, result.model)),
        warm_start=warm_start.train_info(warm) if warm else None,
    )
    return result, summary
