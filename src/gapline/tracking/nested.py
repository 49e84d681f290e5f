"""Parent/child runs for sweeps and studies: an open parent run, one finished child run per
job, and a summary of the children (best objective first) that closes the parent.

Children are written with explicit run ids (MlflowClient), not the fluent active run, so
jobs in other processes can log safely.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gapline.config.schema import TrackingConfig
from gapline.config.tasks import gap_label, headline_of
from gapline.tracking.log import final_metrics
from gapline.tracking.redaction import error_text, param_values, tag_values
from gapline.tracking.store import TrackingError, fallback_message, import_mlflow, setup

# Besides every ``<split>_<metric>`` and ``gap_<metric>_<split>`` of the job (whatever its
# task's metrics are: accuracy, AUC, RMSE, ...), these numbers of a job are logged.
CHILD_METRIC_KEYS = ("best_epoch", "onset_epoch", "epochs_run", "params", "params_untied", "train_seconds", "objective")
SCORE_PREFIXES = ("train_", "val_", "test_", "gap_")


def child_metric_keys(job: Mapping[str, Any]) -> list[str]:
    """The job's final numbers to log: its scores and gaps on every split, then the rest."""
    scores = [k for k in job if k.startswith(SCORE_PREFIXES) and k not in ("train_samples", "train_seconds")]
    return [*scores, *(k for k in CHILD_METRIC_KEYS if k in job)]


def headline_of_run(tags: Mapping[str, str], metrics: Mapping[str, float]) -> str:
    """A child run's headline metric: from its ``task`` tag, else from the metric names it has."""

    return headline_of({"task": tags.get("task"), **metrics})


def _with_context(tags: Mapping[str, Any]) -> dict[str, str]:
    """``tags`` plus what MLflow's fluent runs get from their context (``mlflow.user``: the
    tracking server's account, else the login; the source): a client-made run otherwise
    shows user "unknown"."""
    from mlflow.tracking.context.registry import resolve_tags

    return dict(resolve_tags(tag_values(tags)))


def _experiment_id(tracking_cfg: TrackingConfig) -> str:
    return setup(tracking_cfg)


def create_parent_run(tracking_cfg: TrackingConfig, name: str, tags: Mapping[str, Any]) -> str:
    """An open parent run (RUNNING until :func:`close_parent_run`) for a sweep or study. Under
    ``mlflow run`` ($MLFLOW_RUN_ID) the project's run is the parent, as it is every stage's run."""
    mlflow = import_mlflow()
    exp_id = _experiment_id(tracking_cfg)
    client = mlflow.MlflowClient()
    message = fallback_message()
    if message:  # the run must say it is not where the config pointed
        tags = {**tags, "tracking.fallback": message[:5000]}
    try:
        project_run = os.environ.get("MLFLOW_RUN_ID")
        if project_run:
            client.update_run(project_run, status="RUNNING", name=name)
            for key, value in tag_values(tags).items():
                client.set_tag(project_run, key, value)
            return project_run
        run = client.create_run(exp_id, run_name=name, tags=_with_context(tags))
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot open the {name} parent run: {error_text(exc)}") from None
    return str(run.info.run_id)


def log_to_parent_run(
    parent_id: str, metrics: Mapping[str, float], files: list[Path], artifact_path: str, tags: Mapping[str, Any] | None = None
) -> None:
    """Metrics (step 0), files and tags of an open parent run, by id: a study's summary and
    table, a tune's best point."""
    mlflow = import_mlflow()
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    log_metric_batches(client, parent_id, [Metric(k, float(v), now, 0) for k, v in metrics.items()])
    for key, value in tag_values(tags or {}).items():
        client.set_tag(parent_id, key, value)
    for path in files:
        client.log_artifact(parent_id, str(path), artifact_path)


def log_metric_batches(client: Any, run_id: str, metrics: list[Any]) -> None:
    for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(run_id, metrics=metrics[i : i + 1000])


def log_child_run(parent_id: str | None, tracking_cfg: TrackingConfig, job: Mapping[str, Any]) -> str:
    """One finished job as a child run: flattened config, tags, per-epoch curves, final metrics."""
    mlflow = import_mlflow()
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient()
    exp_id = _experiment_id(tracking_cfg)
    tags = {
        "gapline.mode": job.get("kind", "job"),
        "task": job.get("task") or None,
        "techniques": job.get("techniques", ""),
        "data.fingerprint": job.get("fingerprint", ""),
        "job.arm": job.get("arm", ""),
        "job.seed": job.get("seed", ""),
        "job.overrides": " ".join(job.get("overrides", [])),
        "job.point": " ".join(job.get("point") or []) or None,  # a tuned arm's grid point
        "job.run": job.get("run") or None,  # the study's cache key: jobs that share it are one training run
        "gapline.ray_node": job.get("ray_node") or None,  # tag_values drops None
    }
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    run = client.create_run(exp_id, run_name=str(job.get("job", "job")), tags=_with_context(tags))
    run_id = run.info.run_id
    try:
        params, cut = param_values(job.get("config", {}))
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=items[i : i + 100])
        now = int(time.time() * 1000)
        finals = final_metrics(
            {k: job[k] for k in child_metric_keys(job)
             if isinstance(job.get(k), (int, float)) and not isinstance(job.get(k), bool) and job.get(k) == job.get(k)},
            curves=(job.get("history") or {}).keys(),
        )
        metrics = [Metric(k, v, now, 0) for k, v in finals.items()]
        for key, values in (job.get("history") or {}).items():
            metrics.extend(Metric(key, float(v), now, step + 1) for step, v in enumerate(values))
        log_metric_batches(client, run_id, metrics)
        client.set_terminated(run_id, "FINISHED")
    except BaseException as exc:
        client.set_tag(run_id, "error", error_text(exc))
        client.set_terminated(run_id, "FAILED")
        raise
    return str(run_id)


def child_runs(parent_id: str) -> list[Any]:
    mlflow = import_mlflow()
    client = mlflow.MlflowClient()
    parent = client.get_run(parent_id)
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        max_results=10000,
    )


def finish_parent_run(parent_id: str, status: str = "FINISHED") -> str:
    """Summarize the children (best objective first) into the parent and close it. The table
    and ``best_test_<metric>`` follow the children's task: its headline (accuracy, AUC, RMSE)
    on test and the gaps on it (positive = overfitting)."""

    mlflow = import_mlflow()
    client = mlflow.MlflowClient()
    children = child_runs(parent_id)
    heads = [headline_of_run(c.data.tags, c.data.metrics) for c in children]
    head = max(sorted(set(heads)), key=heads.count) if heads else "accuracy"
    nan = float("nan")
    rows = []
    for child in children:
        m = child.data.metrics
        rows.append(
            (
                m.get("objective", nan),
                child.info.run_name,
                m.get(f"test_{head}", m.get(f"final_test_{head}", nan)),
                m.get(f"gap_{head}_val", nan),
                m.get(f"gap_{head}_test", nan),
                child.info.run_id,
            )
        )
    rows.sort(key=lambda r: (r[0] != r[0], r[0]))
    val_gap = gap_label(head).replace("test", "val")
    lines = [
        f"| job | objective | test {head} | gap on {head} ({val_gap}) | gap on {head} ({gap_label(head)}) | run |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r[1]} | {r[0]:.4f} | {r[2]:.4f} | {r[3]:+.4f} | {r[4]:+.4f} | {r[5]} |" for r in rows]
    table = "\n".join(lines) + "\n"
    client.log_text(parent_id, table, "sweep/summary.md")
    if rows:
        best = rows[0]
        client.set_tag(parent_id, "sweep.best_run", best[5])
        client.set_tag(parent_id, "sweep.best_job", best[1])
        task = next((c.data.tags.get("task") for c in children if c.info.run_id == best[5]), None)
        if task:
            client.set_tag(parent_id, "task", task)
        client.log_metric(parent_id, "best_objective", float(best[0]))
        client.log_metric(parent_id, f"best_test_{head}", float(best[2]))
    client.log_metric(parent_id, "jobs", float(len(rows)))
    close_parent_run(parent_id, status)
    return table


def close_parent_run(parent_id: str, status: str = "FINISHED", error: str | None = None) -> None:
    """End a parent run with ``status``; with ``error`` (a failure path) record it in the
    ``error`` tag and never let a store error mask the original one."""
    mlflow = import_mlflow()
    client = mlflow.MlflowClient()
    if error is None:
        try:
            client.set_terminated(parent_id, status)
        except mlflow.exceptions.MlflowException as exc:
            raise TrackingError(f"cannot close parent run {parent_id}: {error_text(exc)}") from None
        return
    with contextlib.suppress(Exception):
        client.set_tag(parent_id, "error", error)
    with contextlib.suppress(Exception):
        client.set_terminated(parent_id, status)
