"""One whole experiment in memory: split → augment → train → evaluate → one row of results.

The DVC stages write every step to disk so DVC can cache it; learning curves and studies run
many small variants where only the numbers matter. Both call the same pure functions.
"""

from __future__ import annotations

from typing import Any, Optional

from .augment import augment_dataset
from .config import Config
from .data.sources import Dataset
from .gap import overfitting_onset


def run_experiment(cfg: Config, ds: Optional[Dataset] = None, verbose: int = 0) -> dict[str, Any]:
    """Train and evaluate ``cfg``; returns final metrics plus onset, params and timing."""
    from . import runtime
    from .models import effective_params
    from .regularization import technique_label
    from .data.prepare import split_source
    from .evaluation import evaluate_splits
    from .training import train_model

    import keras

    keras.backend.clear_session()  # jobs in one process must not accumulate graphs and names
    runtime.configure_for(cfg.train)
    splits, meta = split_source(cfg, ds)
    x_fit, y_fit = augment_dataset(splits["train"]["x"], splits["train"]["y"], cfg.augment, meta["kind"])
    k = len(meta["class_names"])
    result = train_model(
        cfg,
        x_fit,
        y_fit,
        splits["val"]["x"],
        splits["val"]["y"],
        k,
        gap_x=splits["train"]["x"],
        gap_y=splits["train"]["y"],
        verbose=verbose,
    )
    scores = evaluate_splits(result.model, {n: (a["x"], a["y"]) for n, a in splits.items()}, k)
    onset = overfitting_onset(result.history["loss"], result.history["val_loss"])
    return {
        **scores,
        "techniques": technique_label(cfg),
        "train_samples": int(len(splits["train"]["y"])),
        "fit_samples": int(len(y_fit)),
        "epochs_run": result.epochs_run,
        "best_epoch": onset.best_epoch,
        "onset_epoch": onset.onset_epoch if onset.onset_epoch is not None else -1,
        **effective_params(result.model),
        "train_seconds": result.wall_seconds,
        "fingerprint": meta["fingerprint"],
        "history": result.history,
    }
