"""MLflow records of in-memory trials, in one place: a sweep's or the study's parent run with
one child run per trial, and the learning curve's run.

Sweeps and the study open their parent the same way (``tracking.create_parent_run``) and log
every child by explicit run id, so trials in other processes (Hydra's joblib or Ray launcher)
can log under it. Every MLflow call goes through :mod:`gapline.tracking`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gapline import tracking
from gapline.config.schema import Config, TrackingConfig
from gapline.config.tasks import CLASSIFICATION, HEADLINE, task_of
from gapline.core.signals import Terminated, sigterm_as_interrupt
from gapline.experiments.study import StudyResult
from gapline.experiments.tune import DEFAULTS, Trial, TuneResult
from gapline.models.regularization import technique_label

SUMMARY_METRICS = ("test_accuracy", "gap_accuracy_test", "gap_loss_test", "train_seconds")  # multiclass


def summary_metrics(task: str) -> tuple[str, ...]:
    """The study table's numbers logged to its parent run, for ``task``: the headline on test
    and its gap, the loss gap, the ECE gap (classification) and the train time."""

    head = HEADLINE[task]
    ece = ("gap_ece_test",) if task in CLASSIFICATION else ()
    return (f"test_{head}", f"gap_{head}_test", "gap_loss_test", *ece, "train_seconds")


def open_sweep(tracking_cfg: TrackingConfig, overrides: Sequence[str]) -> str:
    """The sweep's parent run, open until :func:`close_sweep`."""
    return tracking.create_parent_run(
        tracking_cfg, "sweep", {"gapline.mode": "sweep", "sweep.overrides": " ".join(overrides)}
    )


def close_sweep(parent_id: str, status: str = "FINISHED") -> str:
    """Summarize the sweep's children into its parent (best objective first), close it and
    return the summary table."""
    return tracking.finish_parent_run(parent_id, status)


def log_trial(parent_id: str | None, tracking_cfg: TrackingConfig, record: Mapping[str, Any]) -> str:
    """One trial's record (``TrialResult.record``) as a child run of ``parent_id``."""
    return tracking.log_child_run(parent_id, tracking_cfg, record)


def log_study(cfg: Config, result: StudyResult) -> str | None:
    """The study's parent run (its table's numbers and files) with a child run per job."""
    if not cfg.tracking.enabled:
        return None
    tags = {
        "gapline.mode": "study",
        "study.arms": ",".join(r["technique"] for r in result.table),
        "task": result.table[0].get("task") if result.table else None,
    }
    parent_id = tracking.create_parent_run(cfg.tracking, "regularization-study", tags)
    with closed_on_failure(parent_id):
        tracking.log_to_parent_run(parent_id, _study_metrics(result), result.files, "study")
        for job in [*result.trials, *result.results]:  # the tuning trials, then the arms
            log_trial(parent_id, cfg.tracking, job)
    tracking.close_parent_run(parent_id)
    return parent_id


@contextmanager
def closed_on_failure(parent_id: str | None) -> Iterator[None]:
    """While the body runs, a `kill` or Ctrl-C closes the open parent run KILLED and an error
    closes it FAILED, each with its reason: a parent run is never left RUNNING. Closing it on
    success is the caller's (a tune logs its summary first)."""
    try:
        with sigterm_as_interrupt():
            yield
    except KeyboardInterrupt as exc:
        if parent_id is not None:
            reason = str(exc) if isinstance(exc, Terminated) else "interrupted (KeyboardInterrupt)"
            tracking.close_parent_run(parent_id, "KILLED", reason)
        raise
    except BaseException as exc:
        if parent_id is not None:
            tracking.close_parent_run(parent_id, "FAILED", tracking.error_text(exc))
        raise


def _study_metrics(result: StudyResult) -> dict[str, float]:
    metrics = {"study.jobs_trained": result.trained, "study.jobs_reused": result.reused, "study.seconds": result.seconds}
    for arm, tuning in result.tuning.items():
        metrics.update({f"{arm}.tuning_trials": tuning.trials, f"{arm}.tuning_seconds": tuning.seconds})
    for row in result.table:
        name = row["technique"].split(" ")[0]
        keys = summary_metrics(task_of(row))
        values = {f"{k}_{s}": row.get(f"{k}_{s}") for k in keys for s in ("mean", "std")}
        # drop NaN and absent (classical rows have no loss gap)
        metrics.update({f"{name}.{k}": v for k, v in values.items() if isinstance(v, (int, float)) and v == v})
    return metrics


def log_learning_curve(cfg: Config, rows: Sequence[Mapping[str, Any]], files: Sequence[Path]) -> None:
    """One run: every row's numbers at step = its training samples, the CSV and the plot."""
    with tracking.run(cfg, run_name="learning-curve") as active:
        if active is None:
            return

        tracking.log_tags({"gapline.mode": "learning_curve", "techniques": technique_label(cfg)})
        for row in rows:
            tracking.log_metrics(
                {f"learning_curve.{k}": v for k, v in row.items() if isinstance(v, (int, float))},
                step=int(row["train_samples"]),
            )
        for path in files:
            tracking.log_artifact(path, "learning_curve")


def open_tune(cfg: Config, name: str, base: Sequence[str]) -> str | None:
    """``gapline tune``'s parent run, open while its trials log under it as they finish."""
    if not cfg.tracking.enabled:
        return None
    tags = {"gapline.mode": "tune", "tune.name": name, "tune.objective": cfg.tune.objective,
            "tune.overrides": " ".join(base)}
    return tracking.create_parent_run(cfg.tracking, f"tune-{name}", tags)


def log_tune_trial(parent_id: str | None, cfg: Config, name: str, trial: Trial) -> None:
    """One trial (or the defaults) as a child run; its objective is on validation."""
    if parent_id is None:
        return
    job = {
        **trial.record,
        "job": DEFAULTS if trial.number == 0 else f"trial {trial.number}",
        "kind": "tune",
        "arm": name,
        "point": list(trial.point),
        "overrides": list(trial.point),
        "objective": trial.objective,
    }
    log_trial(parent_id, cfg.tracking, job)


def close_tune(parent_id: str | None, result: TuneResult, files: Sequence[Path]) -> None:
    """The tune's numbers (validation only) and files into its parent run, which it closes."""
    if parent_id is None:
        return
    best = result.best
    head = result.headline
    metrics = {
        "tune.trials": float(len(result.trials)), "tune.seconds": result.seconds,
        "best_objective": best.objective, "defaults_objective": result.defaults.objective, "gain": result.gain,
        f"best_val_{head}": float(best.record.get(f"val_{head}", float("nan"))),
        f"defaults_val_{head}": float(result.defaults.record.get(f"val_{head}", float("nan"))),
    }
    tags = {"tune.best": " ".join(best.point) or DEFAULTS, "tune.stopped_by": result.stopped_by}
    tracking.log_to_parent_run(parent_id, {k: v for k, v in metrics.items() if v == v}, list(files), "tune", tags)
    tracking.close_parent_run(parent_id)
