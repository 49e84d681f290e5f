"""The study in MLflow: one parent run holding the table, the chart and the learning curve,
with one nested child run per job (its params, per-epoch curves and final metrics)."""

from __future__ import annotations

from typing import Any, Optional

from . import tracking
from .config import Config
from .study import StudyResult

SUMMARY_METRICS = ("test_accuracy", "gap_accuracy_test", "gap_loss_test", "train_seconds")


def log_study(cfg: Config, result: StudyResult) -> Optional[str]:
    if not cfg.tracking.enabled:
        return None
    with tracking.run(cfg, run_name="regularization-study") as parent:
        parent_id = parent.info.run_id
        tracking.log_tags({"gapline.mode": "study", "study.arms": ",".join(r["technique"] for r in result.table)})
        tracking.log_metrics({"study.jobs_trained": result.trained, "study.jobs_reused": result.reused, "study.seconds": result.seconds})
        for row in result.table:
            name = row["technique"].split(" ")[0]
            tracking.log_metrics(
                {f"{name}.{k}_{s}": row[f"{k}_{s}"] for k in SUMMARY_METRICS for s in ("mean", "std")
                 if row[f"{k}_{s}"] == row[f"{k}_{s}"]}  # drop NaN (classical rows have no loss gap)
            )
        for path in result.files:
            tracking.log_artifact(path, "study")
        for job in result.results:
            tracking.log_child_run(parent_id, cfg.tracking, job)
    return parent_id


def child_tags(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "study.arm": job["arm"],
        "study.kind": job["kind"],
        "study.seed": job["seed"],
        "techniques": job.get("techniques", ""),
        "data.fingerprint": job.get("fingerprint", ""),
    }
