"""Every MLflow call gapline makes lives here: one seam between the pipeline and the tracker.

One pipeline execution is one MLflow run. The train stage opens it and records its id in
``reports/mlflow_run.json``; evaluate resumes the same run. A stage that fails ends the run
FAILED (KILLED on Ctrl-C) with the error in the ``error`` tag: no run is left RUNNING.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from .config import Config, TrackingConfig

DEFAULT_URI = "sqlite:///mlflow.db"
RUN_FILE = Path("reports/mlflow_run.json")
MAX_PARAM_LENGTH = 6000  # MLflow's limit for one param value
SECRET_MARKERS = ("TOKEN", "PASSWORD", "SECRET", "KEY")


def resolve_uri(tracking: TrackingConfig) -> str:
    """Config first, then ``$MLFLOW_TRACKING_URI``, then the embedded sqlite store."""
    return tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → dotted keys (``regularization.early_stopping.patience``)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def param_values(cfg_dict: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Params as MLflow strings; over-long values are cut and their keys returned.

    The full config is always logged as ``config/params.yaml`` too, so nothing is lost.
    """
    params: dict[str, str] = {}
    cut: list[str] = []
    for key, value in flatten(cfg_dict).items():
        text = "" if value is None else str(value)
        if len(text) > MAX_PARAM_LENGTH:
            marker = "...[truncated; see config/params.yaml]"
            text = text[: MAX_PARAM_LENGTH - len(marker)] + marker
            cut.append(key)
        params[key] = text
    return params, cut


def git_state(root: Path) -> dict[str, str]:
    """The commit and whether the work tree differs from it (empty outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"git.commit": commit, "git.dirty": str(bool(dirty)).lower()}


def file_md5(path: Path) -> Optional[str]:
    return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else None


def is_secret(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def _mlflow() -> Any:
    import mlflow

    return mlflow


def setup(tracking: TrackingConfig) -> str:
    """Point MLflow at the configured store and experiment; returns the experiment id."""
    mlflow = _mlflow()
    mlflow.set_tracking_uri(resolve_uri(tracking))
    exp = mlflow.set_experiment(tracking.experiment)
    return str(exp.experiment_id)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:5000]


@contextlib.contextmanager
def run(
    cfg: Config, *, run_id: Optional[str] = None, run_name: Optional[str] = None
) -> Iterator[Optional[Any]]:
    """Open (or resume) the pipeline's MLflow run; always close it with the right status."""
    if not cfg.tracking.enabled:
        yield None
        return
    mlflow = _mlflow()
    setup(cfg.tracking)
    active = mlflow.start_run(run_id=run_id, run_name=run_name or cfg.tracking.run_name or None)
    try:
        yield active
    except KeyboardInterrupt:
        mlflow.set_tag("error", "interrupted (KeyboardInterrupt)")
        mlflow.end_run(status="KILLED")
        raise
    except BaseException as exc:
        mlflow.set_tag("error", one_line(exc))
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def log_config(cfg_dict: Mapping[str, Any], yaml_text: str) -> None:
    mlflow = _mlflow()
    params, cut = param_values(cfg_dict)
    mlflow.log_params(params)
    if cut:
        mlflow.set_tag("params.truncated", ",".join(cut))
    mlflow.log_text(yaml_text, "config/params.yaml")


def log_tags(tags: Mapping[str, Any]) -> None:
    _mlflow().set_tags({k: str(v) for k, v in tags.items() if v is not None and not is_secret(k)})


def log_metrics(metrics: Mapping[str, float], step: Optional[int] = None) -> None:
    _mlflow().log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_artifact(path: Path, artifact_path: Optional[str] = None) -> None:
    _mlflow().log_artifact(str(path), artifact_path=artifact_path)


def epoch_logger() -> Any:
    """A Keras callback sending every epoch's logs (loss, gaps, learning rate) to MLflow."""
    import keras

    mlflow = _mlflow()

    class MlflowEpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
            if logs:
                mlflow.log_metrics(
                    {k: float(v) for k, v in logs.items()}, step=epoch + 1, synchronous=False
                )

    return MlflowEpochLogger()


def log_model(model: Any, x_sample: Any, registered_model: Optional[str]) -> Optional[str]:
    """Log the Keras model with a signature; register it and alias it ``challenger``.

    No ``input_example``: mlflow.keras.log_model crashes with one (mlflow issue 16183), and
    the signature carries the shapes a caller needs. Returns the registered version.
    """
    mlflow = _mlflow()
    from mlflow.models import infer_signature

    signature = infer_signature(x_sample, model.predict(x_sample, verbose=0))
    info = mlflow.keras.log_model(
        model, name="model", signature=signature, registered_model_name=registered_model
    )
    version = getattr(info, "registered_model_version", None)
    if registered_model and version is not None:
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(registered_model, "challenger", str(version))
        return str(version)
    return None


def set_version_tags(registered_model: str, version: str, tags: Mapping[str, Any]) -> None:
    client = _mlflow().MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(registered_model, version, key, str(value))


def flush() -> None:
    """Wait for async logging to land before the process exits."""
    mlflow = _mlflow()
    with contextlib.suppress(Exception):
        mlflow.flush_async_logging()
