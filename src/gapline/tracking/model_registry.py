"""The model registry for scheduled retraining (``gapline retrain``, ``gapline promote``) and
evaluation: a client for the configured store, aliases, versions and their tags, and moving
``champion`` (with ``previous-champion`` behind it) as one step that is undone if it fails.

Every call takes an explicit client and opens no run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from gapline.config.schema import TrackingConfig
from gapline.tracking.redaction import error_text, tag_values
from gapline.tracking.store import TrackingError, canonical_uri, check_reachable, import_mlflow, resolve_uri

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"


def _is_missing(exc: BaseException) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def registry(tracking_cfg: TrackingConfig) -> Any:
    """A client for the configured store and its model registry; opens no run."""
    mlflow = import_mlflow()
    uri = resolve_uri(tracking_cfg)
    check_reachable(uri)
    # Resolving ``models:/<name>/<version>`` always goes through the process-wide URI.
    mlflow.set_tracking_uri(uri)
    try:
        # the registry is the tracking store unless $MLFLOW_REGISTRY_URI names another, as
        # for log_model's registration in train
        return mlflow.MlflowClient(tracking_uri=uri, registry_uri=os.environ.get("MLFLOW_REGISTRY_URI") or uri)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot open the MLflow store {canonical_uri(uri)}: {error_text(exc)}") from None


def registry_aliases(client: Any, name: str) -> dict[str, str]:
    """``{alias: version}`` of registered model ``name``; empty when it is not registered yet."""
    mlflow = import_mlflow()
    try:
        model = client.get_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        if _is_missing(exc):
            return {}
        raise TrackingError(f"cannot read registered model {name!r}: {error_text(exc)}") from None
    return {str(alias): str(version) for alias, version in (model.aliases or {}).items()}


def registry_version(client: Any, name: str, version: str) -> Any | None:
    """The ModelVersion ``name``/``version``, or None when the registry does not hold it."""
    mlflow = import_mlflow()
    try:
        return client.get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException as exc:
        if _is_missing(exc) or getattr(exc, "error_code", "") == "INVALID_PARAMETER_VALUE":
            return None
        raise TrackingError(f"cannot read model version {name} v{version}: {error_text(exc)}") from None


def tag_version(client: Any, name: str, version: str, tags: Mapping[str, Any]) -> None:
    """Version tags through an explicit client (redacted and cut like run tags)."""
    mlflow = import_mlflow()
    try:
        for key, value in tag_values(tags).items():
            client.set_model_version_tag(name, str(version), key, value)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot tag model version {name} v{version}: {error_text(exc)}") from None


def move_champion(client: Any, name: str, version: str) -> dict[str, str | None]:
    """Point ``champion`` at ``version`` and ``previous-champion`` at the champion it replaces.

    The last registry write of a promotion. If either alias cannot be set, both are put back
    as they were before raising, so a failed promotion leaves the aliases untouched.
    """
    mlflow = import_mlflow()
    before = registry_aliases(client, name)
    old = before.get(CHAMPION)
    version = str(version)
    if old == version:
        return {"champion": version, "previous_champion": before.get(PREVIOUS_CHAMPION)}
    try:
        if old is not None:
            client.set_registered_model_alias(name, PREVIOUS_CHAMPION, old)
        client.set_registered_model_alias(name, CHAMPION, version)
    except BaseException as exc:
        for alias in (CHAMPION, PREVIOUS_CHAMPION):
            with contextlib.suppress(Exception):
                if before.get(alias) is not None:
                    client.set_registered_model_alias(name, alias, before[alias])
                else:
                    client.delete_registered_model_alias(name, alias)
        if isinstance(exc, mlflow.exceptions.MlflowException):
            raise TrackingError(f"cannot move alias {CHAMPION!r} of {name!r}: {error_text(exc)}") from None
        raise
    return {"champion": version, "previous_champion": old if old is not None else before.get(PREVIOUS_CHAMPION)}
