"""One trial in memory: split → augment → train → evaluate → one typed result.

The DVC stages write every step to disk so DVC can cache it; sweeps, learning curves and the
study run many small variants where only the numbers matter. Both call the same pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .augment import augment_dataset
from .config import Config
from .data.dataset import Dataset
from .gap import overfitting_onset


@dataclass(frozen=True)
class TrialResult:
    """What one trial measured; sweeps, the study and the learning curve read it, never retrain."""

    metrics: dict[str, float]  # loss and the task's metrics per split, and the gaps (evaluate_splits)
    task: str  # multiclass, binary, multilabel or regression
    techniques: str
    train_samples: int  # the training split, before augmentation
    fit_samples: int  # what the model was fit on, after augmentation
    epochs_run: int
    best_epoch: int
    onset_epoch: int  # -1: the gap never started to grow
    params: dict[str, int]  # effective_params: params, params_untied
    train_seconds: float
    fingerprint: str
    history: dict[str, list[float]]  # per-epoch curves
    model: Any = None  # the trained Keras model, when the caller asked to keep it

    def row(self) -> dict[str, Any]:
        """Every number but the per-epoch curves, flat: one row of a table or a cached job."""
        return {
            **self.metrics,
            "task": self.task,
            "techniques": self.techniques,
            "train_samples": self.train_samples,
            "fit_samples": self.fit_samples,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "onset_epoch": self.onset_epoch,
            **self.params,
            "train_seconds": self.train_seconds,
            "fingerprint": self.fingerprint,
        }

    def record(self, **identity: Any) -> dict[str, Any]:
        """The trial as one JSON-able job record: who it was (``identity``), its row, its curves.
        This is what a job cache holds and what ``tracking.log_child_run`` logs."""
        return {**identity, **self.row(), "history": self.history}


def run_trial(cfg: Config, ds: Optional[Dataset] = None, verbose: int = 0, keep_model: bool = False) -> TrialResult:
    """Train and evaluate ``cfg`` (on ``ds`` when given, so callers can load a source once);
    ``keep_model``: the trained model comes back in ``TrialResult.model`` (a study source)."""
    from . import runtime
    from .models import effective_params, weight_sharing_applied
    from .regularization import technique_label
    from .data.prepare import split_source
    from .evaluation import evaluate_splits
    from .tasks import for_run
    from .training import train_model

    import keras

    keras.backend.clear_session()  # jobs in one process must not accumulate graphs and names
    runtime.configure_for(cfg.train)
    splits, meta = split_source(cfg, ds)
    x_fit, y_fit = augment_dataset(
        splits["train"]["x"], splits["train"]["y"], cfg.augment, meta["kind"], int(meta.get("pixel_max", 0))
    )
    task = for_run(cfg, meta)
    result = train_model(
        cfg,
        x_fit,
        y_fit,
        splits["val"]["x"],
        splits["val"]["y"],
        task,
        gap_x=splits["train"]["x"],
        gap_y=splits["train"]["y"],
        verbose=verbose,
    )
    scores = evaluate_splits(result.model, {n: (a["x"], a["y"]) for n, a in splits.items()}, task, cfg.task)
    onset = overfitting_onset(result.history["loss"], result.history["val_loss"])
    return TrialResult(
        metrics=scores,
        task=task.name,
        techniques=technique_label(cfg, weight_sharing_applied(cfg.model.family, result.model)),
        train_samples=int(len(splits["train"]["y"])),
        fit_samples=int(len(y_fit)),
        epochs_run=result.epochs_run,
        best_epoch=onset.best_epoch,
        onset_epoch=onset.onset_epoch if onset.onset_epoch is not None else -1,
        params=effective_params(result.model),
        train_seconds=result.wall_seconds,
        fingerprint=meta["fingerprint"],
        history=result.history,
        model=result.model if keep_model else None,
    )
