"""A registered model as a source of weights (``model.init_from``): ``models:/NAME@ALIAS`` or
``models:/NAME/VERSION`` resolved to one version of the configured registry, and that version
loaded by the one safe loader (:func:`.keras_model.load_registered_keras`)."""

from __future__ import annotations

import re
from typing import Any

from gapline.config.schema import TrackingConfig
from gapline.core.errors import ConfigError, bad_value
from gapline.tracking.keras_model import load_registered_keras
from gapline.tracking.model_registry import registry, registry_aliases, registry_version
from gapline.tracking.redaction import error_text
from gapline.tracking.store import TrackingError, import_mlflow

_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))")
EXPECTED = "models:/NAME@ALIAS or models:/NAME/VERSION (a registered model of the tracking store)"


def parse_model_uri(uri: str, key: str = "model.init_from") -> tuple[str, str, str]:
    """``(name, alias, version)`` of a ``models:/`` URI; exactly one of alias and version is set."""
    match = _URI.fullmatch(uri.strip())
    if match is None:
        raise ConfigError(bad_value(key, uri, EXPECTED))
    return match["name"], match["alias"] or "", match["version"] or ""


def resolve_model_uri(client: Any, uri: str, key: str = "model.init_from") -> tuple[str, str]:
    """``(name, version)`` the URI names now (an alias is read from the registry)."""
    mlflow = import_mlflow()
    name, alias, version = parse_model_uri(uri, key)
    if alias:
        try:
            return name, str(client.get_model_version_by_alias(name, alias).version)
        except mlflow.exceptions.MlflowException as exc:
            if getattr(exc, "error_code", "") not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise TrackingError(f"cannot resolve {key}={uri!r}: {error_text(exc)}") from None
        aliases = registry_aliases(client, name)
        held = ", ".join(f"@{a} (v{v})" for a, v in sorted(aliases.items())) or "none"
        raise ConfigError(
            bad_value(key, uri, f"an alias of registered model {name!r} (it has: {held}); {EXPECTED}")
        )
    if registry_version(client, name, version) is None:
        raise ConfigError(bad_value(key, uri, f"a version registered as {name!r} in the tracking store; {EXPECTED}"))
    return name, version


def load_model_uri(uri: str, tracking_cfg: TrackingConfig, key: str = "model.init_from") -> tuple[Any, str, str]:
    """``(keras model, name, version)`` of ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``,
    from the configured store (``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else the
    embedded store; the registry is ``$MLFLOW_REGISTRY_URI`` when set)."""
    parse_model_uri(uri, key)  # a malformed URI fails before the store is opened
    name, version = resolve_model_uri(registry(tracking_cfg), uri, key)
    try:
        model = load_registered_keras(name, version)
    except TrackingError as exc:  # its artifacts are missing, or Keras refuses them
        raise ConfigError(bad_value(key, uri, f"a registered model that loads ({exc})")) from None
    return model, name, version
