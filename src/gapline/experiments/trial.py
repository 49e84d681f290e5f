"""One trial: split → augment → train → evaluate → one typed result.

The DVC stages write every step to disk so DVC can cache it; sweeps, learning curves and the
study run many small variants where only the numbers matter. Both fit with the same
:func:`gapline.train.orchestration.fit_and_summarize` and score with the same
:func:`gapline.evaluate.splits.evaluate_splits`.
A trial whose data settings match the prepared folder (``data/prepared``, same settings and
same source content) streams from it, as the train stage does: a sweep on a set larger than
memory, or on many machines sharing the project's path (Ray), reads the same files. Any
other trial splits the source in memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapline.config.schema import Config
from gapline.core.errors import GaplineError
from gapline.data.augment import augment_dataset, augment_to
from gapline.data.dataset import Dataset
from gapline.data.layout import META_FILE, PREPARED, SPLITS, read_meta, read_split
from gapline.data.meta import PreparedMeta
from gapline.data.prepare import data_key, source_digest, split_source
from gapline.evaluate.splits import evaluate_splits
from gapline.models import memory, runtime, sizing
from gapline.train import progress
from gapline.train.orchestration import FitData, fit_and_summarize


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
    sizes: dict[str, list[int]] = field(default_factory=dict)  # what an ``auto`` family chose
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
        This is what a job cache holds and what ``tracking.log_child_run`` logs; a ``config``
        in ``identity`` gets the sizes an ``auto`` family chose, as the train stage logs them."""
        if "config" in identity:
            identity["config"] = sizing.with_chosen(identity["config"], self.sizes)
        return {**identity, **self.row(), "history": self.history}


def run_trial(
    cfg: Config,
    ds: Dataset | None = None,
    verbose: int = 0,
    keep_model: bool = False,
    show_progress: bool = False,
    with_test: bool = True,
) -> TrialResult:
    """Train and evaluate ``cfg`` (on ``ds`` when given, so callers can load a source once);
    ``keep_model``: the trained model comes back in ``TrialResult.model`` (a study source).
    ``show_progress``: print the epochs as ``train.verbose`` says (a single run in the
    foreground; jobs that may run side by side never do). ``with_test=False``: the test split
    is neither read nor scored (a search that must choose on validation alone: gapline tune)."""

    runtime.configure_for(cfg.train)  # a fresh Keras session: jobs in one process share nothing
    prepared = matching_prepared(cfg) if ds is None else None
    if prepared is not None:
        meta = read_meta(prepared)
        splits = {name: read_split(name, prepared).pair() for name in SPLITS if with_test or name != "test"}
    else:
        arrays, meta = split_source(cfg, ds)
        splits = {name: (a["x"], a["y"]) for name, a in arrays.items() if with_test or name != "test"}
    with augmented(cfg, splits["train"], meta, streamed=prepared is not None) as (x_fit, y_fit):
        task = meta.task_for(cfg)
        shown = progress.callback(cfg.train, progress.total_epochs(cfg), task.headline) if show_progress else None
        try:
            result, summary = fit_and_summarize(
                cfg,
                task,
                FitData((x_fit, y_fit), splits["train"], splits["val"]),
                verbose=verbose,
                callbacks=[shown] if shown is not None else [],
            )
        finally:
            if shown is not None:
                shown.close()
    scores = evaluate_splits(result.model, splits, task, cfg.task, budget=memory.train_budget(cfg.train))
    fitted = summary.metrics()
    return TrialResult(
        metrics=scores,
        task=summary.task,
        techniques=summary.technique_label,
        train_samples=summary.train_samples,
        fit_samples=summary.fit_samples,
        epochs_run=summary.epochs_run,
        best_epoch=summary.best_epoch,
        onset_epoch=fitted["onset_epoch"],
        params={"params": result.params, "params_untied": result.params_untied},
        train_seconds=result.wall_seconds,
        fingerprint=meta.fingerprint,
        history=result.history,
        sizes=sizing.chosen(cfg.model, tuple(splits["train"][0].shape[1:]), task),
        model=result.model if keep_model else None,
    )


def matching_prepared(cfg: Config, folder: Path | None = None) -> Path | None:
    """``data/prepared`` (relative to the working directory) when it holds exactly the splits
    ``cfg`` would make: the same data settings and task (meta's ``data_key``) and the same
    source content (its ``source_digest``, recomputed: edited raw data is never read stale)."""

    folder = PREPARED if folder is None else folder
    if not (folder / META_FILE).is_file():
        return None
    try:
        meta = read_meta(folder)
        if meta.data_key != data_key(cfg) or meta.source_digest != source_digest(cfg.data):
            return None
    except (GaplineError, OSError, ValueError):
        return None  # unreadable or a source that moved: split the source itself
    return folder


@contextmanager
def augmented(cfg: Config, train: tuple[Any, Any], meta: PreparedMeta, streamed: bool) -> Iterator[tuple[Any, Any]]:
    """The training set to fit: the split itself without copies; with copies, augmented in
    memory, or (``streamed``: a prepared split) to a scratch folder under ``.gapline/`` that
    is removed when the trial ends."""
    x, y = train
    if cfg.augment.copies == 0 or not streamed:
        yield augment_dataset(x, y, cfg.augment, meta.kind, meta.pixel_max, meta.columns)
        return

    Path(".gapline").mkdir(exist_ok=True)
    # ignore_cleanup_errors: on NFS a file still open (the fit's reader) is renamed, not removed
    with tempfile.TemporaryDirectory(dir=".gapline", prefix="trial-augmented-", ignore_cleanup_errors=True) as tmp:
        split = augment_to(Path(tmp) / "train", x, y, cfg.augment, meta.kind, meta.pixel_max, meta.columns)
        yield split.pair()
