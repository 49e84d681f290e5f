"""Every MLflow call gapline makes lives in this package: one seam between the pipeline and
the tracker. The rest of gapline calls it as ``tracking.<name>`` (the names are listed here),
except the stages, which also read and write :class:`.run_record.RunRecord` directly.

What never reaches MLflow: the value of any environment variable whose name contains TOKEN,
PASSWORD, SECRET or KEY (it is replaced by ``***`` in params, tags, the run name and the
logged config), and the password part of a tracking URI.

- :mod:`.store`: which store, is it reachable, the experiment; the one ``import mlflow``.
- :mod:`.access`: a server that refuses the caller's credentials or permission, as one line.
- :mod:`.redaction`: secrets out, values cut to MLflow's limits.
- :mod:`.runs`: the pipeline's run, opened and always closed with the right status.
- :mod:`.run_record`: the files that name the run between stages.
- :mod:`.log`: params, tags, metrics, artifacts and datasets of the open run.
- :mod:`.keras_model`: logging, registering and loading the Keras model.
- :mod:`.model_code`: a custom model's own code, shipped inside the logged model.
- :mod:`.nested`: parent and child runs of sweeps and studies.
- :mod:`.model_registry`: aliases, versions and promotion for retraining.
- :mod:`.model_source`: a registered model (``models:/NAME@ALIAS``) as a warm-start source.
"""

from gapline.tracking.access import AccessDenied, denial
from gapline.tracking.keras_model import load_registered_keras, log_model
from gapline.tracking.log import (
    epoch_logger,
    final_metrics,
    log_artifact,
    log_artifacts,
    log_config,
    log_datasets,
    log_metrics,
    log_params,
    log_tags,
    log_text_file,
)
from gapline.tracking.model_registry import (
    CHAMPION,
    PREVIOUS_CHAMPION,
    move_champion,
    promotion_lock,
    registry,
    registry_aliases,
    registry_version,
    tag_version,
)
from gapline.tracking.model_source import load_model_uri, parse_model_uri
from gapline.tracking.nested import child_runs, close_parent_run, create_parent_run, finish_parent_run, log_child_run, log_to_parent_run
from gapline.tracking.redaction import error_text, param_values, redact, tag_values
from gapline.tracking.run_record import ACTIVE_RUN_FILE, MODEL_MD5_TAG, RUN_FILE, RunRecord
from gapline.tracking.runs import Terminated, close_stale_run, default_run_name, find_record, flush, project_run_experiment, resume_target, run
from gapline.tracking.store import DEFAULT_URI, TrackingError, canonical_uri, resolve_uri, server_uri, setup

__all__ = [
    "AccessDenied",
    "denial",
    "server_uri",
    "ACTIVE_RUN_FILE",
    "CHAMPION",
    "DEFAULT_URI",
    "PREVIOUS_CHAMPION",
    "MODEL_MD5_TAG",
    "RUN_FILE",
    "RunRecord",
    "Terminated",
    "TrackingError",
    "canonical_uri",
    "child_runs",
    "close_stale_run",
    "close_parent_run",
    "create_parent_run",
    "log_to_parent_run",
    "default_run_name",
    "epoch_logger",
    "error_text",
    "final_metrics",
    "find_record",
    "finish_parent_run",
    "flush",
    "load_model_uri",
    "load_registered_keras",
    "log_artifact",
    "log_artifacts",
    "log_child_run",
    "log_config",
    "log_datasets",
    "log_metrics",
    "log_model",
    "log_params",
    "log_tags",
    "log_text_file",
    "move_champion",
    "promotion_lock",
    "param_values",
    "parse_model_uri",
    "project_run_experiment",
    "redact",
    "registry",
    "registry_aliases",
    "registry_version",
    "resolve_uri",
    "resume_target",
    "run",
    "setup",
    "tag_values",
    "tag_version",
]
