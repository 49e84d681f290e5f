"""The pipeline's MLflow run, from open to close.

One pipeline execution is one MLflow run. The train stage opens it and records its id in
``reports/mlflow_run.json``; evaluate resumes the same run. A stage that fails ends the run
FAILED (KILLED on Ctrl-C or SIGTERM) with the error in the ``error`` tag, and everything
logged asynchronously has landed before a run is marked FINISHED: no run is left RUNNING,
and a run a killed process left RUNNING is closed by the next train.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

from gapline.config.schema import Config
from gapline.core.errors import warn
from gapline.core.signals import Terminated, sigterm_as_interrupt
from gapline.tracking.model_registry import registry
from gapline.tracking.redaction import error_text, redact
from gapline.tracking.run_record import MODEL_MD5_TAG, RUN_FILE, RunRecord
from gapline.tracking.store import TrackingError, canonical_uri, check_reachable, fallback_message, import_mlflow, resolve_uri, setup

_pending: list[Any] = []  # async logging operations not yet confirmed


def keep(operation: Any) -> None:
    """Remember an async logging operation: :func:`flush` waits for it and raises if it failed."""
    if operation is not None:
        _pending.append(operation)


def flush() -> None:
    """Wait for what gapline logged asynchronously to land; raise if any of it failed.

    Each operation is waited for, not ``mlflow.flush_async_logging()``: that shuts MLflow's
    logging thread pools down and starts new ones, and the system-metrics thread logging in
    between submitted to a pool already shut down; the next ``log_batch`` then failed with
    "cannot schedule new futures after shutdown" (seen under load, in `Model.log`)."""
    pending, _pending[:] = list(_pending), []
    for operation in pending:
        try:
            operation.wait()
        except Exception as exc:  # noqa: BLE001 - any failure means data did not land
            raise TrackingError(f"MLflow did not accept logged data: {error_text(exc)}") from None


def _close(mlflow: Any, status: str, error: str | None) -> None:
    """End the active run with ``status``; on failure paths never mask the original error."""
    if error is not None:
        with contextlib.suppress(Exception):
            flush()
        with contextlib.suppress(Exception):
            mlflow.set_tag("error", error, synchronous=True)
        with contextlib.suppress(Exception):
            mlflow.end_run(status=status)
        return
    try:
        mlflow.end_run(status=status)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot close the MLflow run: {error_text(exc)}") from None


@contextlib.contextmanager
def run(
    cfg: Config, *, run_id: str | None = None, run_name: str | None = None
) -> Iterator[Any | None]:
    """Open (or resume) the pipeline's MLflow run; always close it with the right status.

    Everything logged asynchronously is flushed, and any logging failure surfaced, before
    the run is marked FINISHED.
    """
    if not cfg.tracking.enabled:
        yield None
        return
    mlflow = import_mlflow()
    setup(cfg.tracking)
    name = run_name or cfg.tracking.run_name or (None if run_id else default_run_name())
    try:
        active = mlflow.start_run(
            run_id=run_id,
            run_name=redact(name) if name else None,
            log_system_metrics=cfg.tracking.system_metrics,
        )
    except mlflow.exceptions.MlflowException as exc:
        what = f"run {run_id}" if run_id else "a run"
        raise TrackingError(
            f"cannot start {what} in {canonical_uri(resolve_uri(cfg.tracking))}: {error_text(exc)}"
        ) from None
    _pending.clear()
    fallback = fallback_message()
    if fallback is not None:  # the run must say it is not where the config pointed
        keep(mlflow.set_tag("tracking.fallback", redact(fallback)[:5000]))
    with sigterm_as_interrupt():
        try:
            yield active
            flush()
        except KeyboardInterrupt as exc:
            reason = str(exc) if isinstance(exc, Terminated) else "interrupted (KeyboardInterrupt)"
            _close(mlflow, "KILLED", reason)
            raise
        except BaseException as exc:
            _close(mlflow, "FAILED", error_text(exc))
            raise
        else:
            _close(mlflow, "FINISHED", None)


def default_run_name(prefix: str = "run") -> str:
    """A unique name. MLflow's own generator draws from Python's ``random``, which
    ``keras.utils.set_random_seed`` has just seeded: every run would get the same name."""

    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def close_stale_run(record: RunRecord) -> str | None:
    """End a run that a killed process left RUNNING (status KILLED, reason in ``error``)."""
    mlflow = import_mlflow()
    run_id = record.run_id
    if not run_id:
        return None
    client = mlflow.MlflowClient(tracking_uri=record.tracking_uri or None)
    try:
        run = client.get_run(run_id)
    except Exception:  # the store moved or the run is gone: nothing left to close
        return None
    if run.info.status != "RUNNING":
        return None
    client.set_tag(run_id, "error", "the process died before the run ended (found RUNNING when train started again)")
    client.set_terminated(run_id, "KILLED")
    return str(run_id)


def find_record(cfg: Config, model_md5: str | None) -> RunRecord | None:
    """The record of the newest finished run in the configured store and experiment whose
    train wrote a model with ``model_md5``, and the version it registered; None if there is
    none (or tracking is off). How a workspace without ``reports/mlflow_run.json`` (a clone
    that pulled its outputs from a DVC remote) finds the run behind its model."""
    if not cfg.tracking.enabled or not model_md5:
        return None
    mlflow = import_mlflow()
    uri = resolve_uri(cfg.tracking)
    client = registry(cfg.tracking)  # the store and its registry, as retrain reads them
    try:
        experiment = client.get_experiment_by_name(cfg.tracking.experiment)
        if experiment is None:
            return None
        runs = client.search_runs(
            [experiment.experiment_id], f"tags.`{MODEL_MD5_TAG}` = '{model_md5}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"], max_results=1,
        )
        if not runs:
            return None
        run_id = runs[0].info.run_id
        name = cfg.tracking.registered_model
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'") if name else []
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot look up the run of this model in {canonical_uri(uri)}: {error_text(exc)}") from None
    return RunRecord(
        run_id=str(run_id), tracking_uri=canonical_uri(uri), experiment_id=str(experiment.experiment_id),
        registered_model=name or None, model_version=str(versions[0].version) if versions else None, model_md5=model_md5,
    )


def resume_target(cfg: Config, record: RunRecord | None, model_md5: str | None = None) -> str | None:
    """The run id evaluate should add to, or None (after a one-line warning) when there is no
    ``reports/mlflow_run.json`` (``record`` None: train ran in another workspace), or the run
    it names trained another model than the one evaluated (``model_md5``: DVC restored a
    model from its cache) or is not in the store tracking now points at."""
    if record is None:
        if cfg.tracking.enabled:
            warn(
                f"{RUN_FILE} does not exist and no finished run in {canonical_uri(resolve_uri(cfg.tracking))} "
                f"(experiment {cfg.tracking.experiment!r}) trained this model: not logging evaluation to MLflow "
                "(rerun train to log there)"
            )
        return None
    run_id = record.run_id
    if not cfg.tracking.enabled or not run_id:
        return None
    if model_md5 and record.model_md5 and record.model_md5 != model_md5:
        warn(
            f"{RUN_FILE} names run {run_id}, which trained another model than the one evaluated "
            "(DVC restored it from its cache); not logging evaluation to MLflow "
            "(`dvc repro --force train` logs a run for it)"
        )
        return None
    current = canonical_uri(resolve_uri(cfg.tracking))
    recorded = record.tracking_uri
    if recorded and canonical_uri(str(recorded)) != current:
        warn(
            f"{RUN_FILE} names run {run_id} in {canonical_uri(str(recorded))}, but tracking now "
            f"points at {current}; not logging evaluation to MLflow (rerun train to log there)"
        )
        return None
    mlflow = import_mlflow()
    check_reachable(resolve_uri(cfg.tracking))
    try:
        mlflow.MlflowClient(tracking_uri=resolve_uri(cfg.tracking)).get_run(run_id)
    except mlflow.exceptions.MlflowException:
        warn(
            f"{RUN_FILE} names run {run_id}, which {current} does not hold; "
            "not logging evaluation to MLflow (rerun train to log there)"
        )
        return None
    return str(run_id)


def project_run_experiment() -> str | None:
    """Under ``mlflow run`` (``$MLFLOW_RUN_ID`` set): the name of the experiment holding that
    run, so gapline can log into it instead of failing on an experiment mismatch; else None."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return None
    mlflow = import_mlflow()
    try:
        client = mlflow.MlflowClient()
        experiment_id = client.get_run(run_id).info.experiment_id
        return str(client.get_experiment(experiment_id).name)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot read the MLflow project run {run_id}: {error_text(exc)}") from None
