"""The model registry for scheduled retraining (``gapline retrain``, ``gapline promote``) and
evaluation: a client for the configured store, aliases, versions and their tags, and moving
``champion`` (with ``previous-champion`` behind it) as one step that is undone if it fails.

Every call takes an explicit client and opens no run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

from gapline.config.schema import TrackingConfig
from gapline.tracking.redaction import error_text, tag_values
from gapline.tracking.store import TrackingError, canonical_uri, check_reachable, import_mlflow, resolve_uri

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
# The registered model that exists while one process moves ``champion`` (see promotion_lock).
LOCK_SUFFIX = ".promotion-lock"
LOCK_WAIT = 120.0  # seconds to wait for another promotion (it holds the lock for a second or two)
LOCK_STALE = 600.0  # a lock this old was left by a process that died: it is removed


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


@contextlib.contextmanager
def promotion_lock(client: Any, name: str, wait: float = LOCK_WAIT, stale: float = LOCK_STALE) -> Iterator[None]:
    """Hold the registry's promotion lock of ``name`` across machines, around reading and
    moving ``champion``.

    MLflow has no compare-and-set for aliases, and the retrain lock is a file on one machine.
    The registry's own unique constraint is the mutex: creating the registered model
    ``<name>.promotion-lock`` succeeds for exactly one process at a time, whichever backend
    the server uses; it is deleted when the block ends. A lock older than ``stale`` seconds
    (its holder died) is removed; waiting longer than ``wait`` is one line.
    """
    mlflow = import_mlflow()
    lock = f"{name}{LOCK_SUFFIX}"
    holder = f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + wait
    while True:
        try:
            client.create_registered_model(
                lock, tags={"holder": holder, "since": f"{time.time():.3f}"},
                description=f"held by gapline while it moves {name}@{CHAMPION}; removed when done",
            )
            break
        except mlflow.exceptions.MlflowException as exc:
            if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise TrackingError(f"cannot take the promotion lock {lock!r}: {error_text(exc)}") from None
        try:
            held = client.get_registered_model(lock)
        except mlflow.exceptions.MlflowException:
            continue  # released meanwhile
        since = float((held.tags or {}).get("since", "0") or 0)
        if time.time() - since > stale:
            with contextlib.suppress(mlflow.exceptions.MlflowException):
                client.delete_registered_model(lock)
            continue
        if time.monotonic() > deadline:
            raise TrackingError(
                f"another promotion of {name!r} holds the registry's lock {lock!r} (held by "
                f"{(held.tags or {}).get('holder', '?')} for {time.time() - since:.0f}s): expected it to end within "
                f"{wait:.0f}s; if its process died, delete the registered model {lock!r}"
            )
        time.sleep(0.5)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            client.delete_registered_model(lock)
