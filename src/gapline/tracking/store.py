"""Which MLflow store gapline logs to, and making it ready: the URI (config, then
``$MLFLOW_TRACKING_URI``, then the embedded sqlite store), a one-second reachability check
instead of MLflow's minutes of retries, the ``on_unreachable=local`` fallback, and the
experiment.

Every tracking module imports MLflow through :func:`import_mlflow`, when first needed:
importing gapline costs nothing with tracking off.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gapline.config.schema import TrackingConfig
from gapline.core.errors import GaplineError, warn
from gapline.tracking.access import AccessDenied, denied_message
from gapline.tracking.redaction import REDACTED, error_text, redact

DEFAULT_URI = "sqlite:///mlflow.db"
# Seconds between system-metric samples unless $MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL says
# otherwise. MLflow's own default (10 s) publishes nothing for runs shorter than that.
SYSTEM_METRICS_INTERVAL = 2


class TrackingError(GaplineError):
    """The tracking store cannot be used as configured (one line, like every GaplineError)."""


# Set by setup() when tracking.on_unreachable=local replaced an unreachable server.
_fallback: dict[str, str] = {}


def import_mlflow() -> Any:
    import mlflow
    import mlflow.exceptions  # noqa: F401 - used as mlflow.exceptions.MlflowException

    return mlflow


def project_root() -> Path:
    """Where the embedded store lives: the DVC project root. Queued and ``--temp`` DVC
    experiments run in a throwaway copy but get ``$DVC_ROOT`` pointing at the real project,
    so their runs land in the project's store instead of vanishing with the copy."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd())


def default_uri() -> str:
    return "sqlite:///" + str(project_root() / "mlflow.db") if os.environ.get("DVC_ROOT") else DEFAULT_URI


def resolve_uri(tracking: TrackingConfig) -> str:
    """Config first, then ``$MLFLOW_TRACKING_URI``, then the embedded sqlite store."""
    configured = tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()
    return _fallback.get(configured, configured)


def server_uri() -> str:
    """The store this process talks to now, passwords removed (for messages): MLflow's own
    URI once MLflow is imported, else the environment's."""
    mlflow = sys.modules.get("mlflow")
    uri = mlflow.get_tracking_uri() if mlflow is not None else os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)
    return canonical_uri(str(uri))


def fallback_message() -> str | None:
    """Why this process logs to the embedded store instead of the configured server, if it does."""
    return _fallback.get("message")


@contextlib.contextmanager
def store_init_lock(uri: str) -> Iterator[None]:
    """Serialize first contact with a local sqlite store: two processes creating its schema
    at once make MLflow's alembic migration fail ("expected to match one row")."""
    if not uri.startswith("sqlite:///"):
        yield
        return

    db = Path(canonical_uri(uri)[len("sqlite:///") :])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def canonical_uri(uri: str, cwd: Path | None = None) -> str:
    """The store a URI names, comparable across processes: local paths made absolute,
    passwords removed, no trailing slash (``sqlite:///mlflow.db`` → ``sqlite:////abs/mlflow.db``).
    """
    base = Path.cwd() if cwd is None else cwd
    if uri == "databricks":
        return uri
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        return "sqlite:///" + os.path.normpath(base / path) if not path.startswith("/") else uri
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        path = parts.path if parts.scheme == "file" else uri
        return "file://" + os.path.normpath(base / path)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), parts.query, parts.fragment))


PROBE = "/api/2.0/mlflow/experiments/search"  # answered from the backend store: a database that is down shows


def check_reachable(uri: str) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when no server answers, when
    it answers but cannot use the database behind it, or when it refuses the caller.

    One request to ``/health`` (the server process) and one, with the caller's credentials
    and no retries, that the server answers from its store."""
    if urlsplit(uri).scheme not in ("http", "https"):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=10)
    except requests.RequestException as exc:
        raise TrackingError(
            f"tracking URI {canonical_uri(uri)!r} is not reachable ({type(exc).__name__}): expected a "
            "running `mlflow server` there, or set tracking.enabled=false to train without tracking"
        ) from None
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        probe = http_request(get_default_host_creds(uri), PROBE, "GET", max_retries=0, timeout=30,
                             raise_on_status=False, params={"max_results": 1})
    except Exception as exc:  # noqa: BLE001 - a server that stops answering between the two requests
        raise TrackingError(f"tracking URI {canonical_uri(uri)!r} stopped answering: {error_text(exc)}") from None
    if probe.status_code in (401, 403):
        raise AccessDenied(denied_message(probe.status_code, PROBE, canonical_uri(uri)))
    if probe.status_code >= 500:
        raise TrackingError(
            f"the tracking server {canonical_uri(uri)} answers but cannot use its store (HTTP {probe.status_code} "
            f"at {PROBE}: {_said(probe)}): expected the database behind it to be up (ask its operator), or "
            "tracking.on_unreachable=local to log to the embedded store meanwhile"
        )


def _said(response: Any) -> str:
    """The server's error message, on one line, secrets removed, short."""
    try:
        text = str(response.json().get("message", ""))
    except ValueError:
        text = response.text
    return redact(" ".join(text.split()))[:300] or response.reason or "no message"


def setup(tracking: TrackingConfig) -> str:
    """Point MLflow at the configured store and experiment; returns the experiment id."""
    mlflow = import_mlflow()
    uri = resolve_uri(tracking)
    try:
        check_reachable(uri)
    except TrackingError as exc:
        if tracking.on_unreachable != "local":
            raise
        local = default_uri()
        message = f"{exc}; logging to the embedded store {local} instead (tracking.on_unreachable=local)"
        warn(message)
        _fallback[uri] = local
        _fallback["message"] = message
        uri = local
    mlflow.set_tracking_uri(uri)
    mlflow.config.enable_async_logging(tracking.async_logging)
    if tracking.system_metrics:
        if importlib.util.find_spec("psutil") is None:
            raise TrackingError(
                "tracking.system_metrics=true is not allowed here: psutil is not installed; "
                "expected `pip install psutil` or tracking.system_metrics=false"
            )
        if not os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"):
            mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL)
    try:
        with store_init_lock(uri):
            if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(tracking.experiment) is None:
                # Artifacts next to the store (not under whatever folder this process runs in).
                root = Path(canonical_uri(uri)[len("sqlite:///") :]).parent
                with contextlib.suppress(mlflow.exceptions.MlflowException):  # lost a creation race
                    mlflow.create_experiment(tracking.experiment, artifact_location=(root / "mlruns").as_uri())
        exp = mlflow.set_experiment(tracking.experiment)
        # MLflow 3.17: a process that loses the race to create the experiment gets it back
        # from set_experiment *without* making it active, and its run lands in "Default".
        # Activating it by id is race-free.
        exp = mlflow.set_experiment(experiment_id=exp.experiment_id)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(
            f"tracking.experiment={tracking.experiment!r} cannot be used in {canonical_uri(uri)}: "
            f"{error_text(exc)}"
        ) from None
    return str(exp.experiment_id)
