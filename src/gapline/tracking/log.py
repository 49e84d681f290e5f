"""What goes into the open run: the config as params, tags, metrics (per epoch through a Keras
callback), artifacts and the data splits as dataset inputs.

Values pass through :mod:`.redaction` first. With ``tracking.async_logging`` (the default)
params, tags and metrics are queued and sent by MLflow's logging thread, so training never
waits on the store; :func:`.runs.flush` makes sure they landed.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gapline.core.signals import raise_if_terminated
from gapline.data.meta import PreparedMeta
from gapline.tracking.redaction import param_values, redact, tag_values
from gapline.tracking.runs import keep
from gapline.tracking.store import import_mlflow

MAX_DIGEST_LENGTH = 36  # MLflow's limit for a dataset digest
DATASET_CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
# How a store reports that a concurrent writer inserted the same unique row first
# (SQLite, PostgreSQL, MySQL), as raised locally or relayed by a server's REST answer.
CONFLICT = re.compile(r"UNIQUE constraint failed|IntegrityError|duplicate key value|Duplicate entry")
CONFLICT_ATTEMPTS = 4


def log_config(cfg_dict: Mapping[str, Any], yaml_text: str) -> None:
    mlflow = import_mlflow()
    params, cut = param_values(cfg_dict)
    keep(mlflow.log_params(params))
    if cut:
        keep(mlflow.set_tag("params.truncated", ",".join(cut)))
    mlflow.log_text(redact(yaml_text), "config/params.yaml")


def log_params(params: Mapping[str, Any]) -> None:
    """Params of the active run (strings, secrets redacted)."""
    keep(import_mlflow().log_params({k: redact("" if v is None else str(v)) for k, v in params.items()}))


def log_tags(tags: Mapping[str, Any]) -> None:
    keep(import_mlflow().set_tags(tag_values(tags)))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    keep(import_mlflow().log_metrics({k: float(v) for k, v in metrics.items()}, step=step))


def final_metrics(metrics: Mapping[str, float], curves: Any = ()) -> dict[str, float]:
    """Final metrics as MLflow metrics. A name that is also a per-epoch curve (``val_loss``,
    ``val_accuracy``) becomes ``final_<name>``: logged under its own name it would be one
    more point on the curve, and hide behind the last epoch as the run's value."""
    taken = set(curves)
    return {(f"final_{k}" if k in taken else k): float(v) for k, v in metrics.items()}


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    import_mlflow().log_artifact(str(path), artifact_path=artifact_path)


def log_artifacts(folder: Path, artifact_path: str | None = None) -> None:
    import_mlflow().log_artifacts(str(folder), artifact_path=artifact_path)


def log_text_file(path: Path, artifact_path: str) -> None:
    """A text file as an artifact, with secrets redacted (dvc.lock holds params, for one)."""
    import_mlflow().log_text(redact(path.read_text(encoding="utf-8")), f"{artifact_path}/{path.name}")


def dataset_digest(fingerprint: str) -> str:
    """A data fingerprint (``sha256:<64 hex>``) cut to the 36 characters MLflow stores."""
    return fingerprint.split(":", 1)[-1][:32]


def log_datasets(
    meta: PreparedMeta, splits: Mapping[str, tuple[Any, Any]], prepared: Path = Path("data/prepared")
) -> None:
    """Each split as a run input: ``<source>-<split>``, digest from meta.json's fingerprint
    (cut to MLflow's 36 characters; the whole one is the input's ``fingerprint`` tag), context
    training/validation/test, the prepared split's folder as its source."""
    mlflow = import_mlflow()
    datasets, contexts, tags = [], [], []
    for split, (x, y) in splits.items():
        with warnings.catch_warnings():
            # A relative path matches two equivalent local source types; MLflow warns and picks one.
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
            datasets.append(
                mlflow.data.from_numpy(
                    x,
                    targets=y,
                    source=str(prepared / split),
                    name=f"{meta.source}-{split}",
                    digest=dataset_digest(meta.fingerprints[split]),
                )
            )
        contexts.append(DATASET_CONTEXTS.get(split, split))
        tags.append({"fingerprint": meta.fingerprints[split], "samples": str(len(y))})
    retry_on_conflict(lambda: mlflow.log_inputs(datasets=datasets, contexts=contexts, tags_list=tags))


def retry_on_conflict(operation: Any, attempts: int = CONFLICT_ATTEMPTS) -> Any:
    """``operation()``, tried again when it lost a get-or-create race in the store.

    MLflow's SQL store looks a dataset up by (experiment, name, digest) and inserts it when
    absent, without a lock: two trainings on the same data that log their inputs in the same
    instant both find nothing, and the second insert fails on the unique constraint. The
    failed transaction is rolled back whole, and the next attempt finds the winner's row and
    links to it, so trying again is safe and gives both runs the same dataset entry.
    """
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except Exception as exc:  # MlflowException, RestException, SQLAlchemy's IntegrityError
            if attempt == attempts or not CONFLICT.search(str(exc)):
                raise
            time.sleep(0.05 * attempt)


def epoch_logger() -> Any:
    """A Keras callback sending every epoch's logs (loss, gaps, learning rate) to MLflow.

    With ``tracking.async_logging`` (the default) each epoch is queued and sent in batches by
    MLflow's logging thread, so training never waits on the store.
    """
    import keras

    mlflow = import_mlflow()

    class MlflowEpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if logs:
                keep(mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch + 1))
            raise_if_terminated()  # a SIGTERM whose exception Python dropped still ends the run

    return MlflowEpochLogger()
