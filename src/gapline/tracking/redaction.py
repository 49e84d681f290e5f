"""What never reaches MLflow, and what fits: secret environment values and URL passwords
replaced by ``***``; params and tags as MLflow strings, cut to MLflow's length limits.

Secrets are the values of environment variables whose names contain TOKEN, PASSWORD, SECRET
or KEY. Pure functions of their input and the environment: no MLflow here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from gapline.core.errors import one_line

MAX_PARAM_LENGTH = 6000  # MLflow's limit for one param value
MAX_TAG_LENGTH = 8000  # ... and for one tag value
MAX_ERROR_LENGTH = 5000  # an exception recorded in an ``error`` tag or a report
SECRET_MARKERS = ("TOKEN", "PASSWORD", "SECRET", "KEY")
MIN_SECRET_LENGTH = 8  # shorter values ("1", "true") would redact ordinary params
REDACTED = "***"

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/:@\s]+:)[^@/\s]+@")


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


def is_secret(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the environment's secret-named variables, longest first."""
    env = environment() if environ is None else environ
    found = {v for k, v in env.items() if is_secret(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(found, key=len, reverse=True)


def environment() -> dict[str, str]:
    """A snapshot of ``os.environ`` that another thread may be changing meanwhile.

    Iterating ``os.environ.items()`` looks each key up again, so a variable removed in between
    raises KeyError: MLflow's telemetry thread unsets ``_MLFLOW_TELEMETRY_SESSION_ID`` while
    a Ray worker logs its first child run. Listing the keys is one atomic copy."""
    out = {}
    for key in list(os.environ):
        value = os.environ.get(key)
        if value is not None:
            out[key] = value
    return out


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with secret environment values and URL passwords replaced by ``***``."""
    for value in secret_values(environ):
        text = text.replace(value, REDACTED)
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{REDACTED}@", text)


def error_text(exc: BaseException) -> str:
    """:func:`gapline.core.errors.one_line` with secrets redacted, cut to fit a tag: how an
    exception is recorded in a run's ``error`` tag, a registry error or a report."""
    return redact(one_line(exc))[:MAX_ERROR_LENGTH]


def _cut(text: str, limit: int, where: str) -> str:
    marker = f"...[truncated; see {where}]"
    return text[: limit - len(marker)] + marker


def param_values(cfg_dict: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Params as MLflow strings, secrets redacted; over-long values are cut and their keys
    returned. The full config is always logged as ``config/params.yaml`` too, so nothing is lost.
    """
    params: dict[str, str] = {}
    cut: list[str] = []
    for key, value in flatten(cfg_dict).items():
        text = redact("" if value is None else str(value))
        if len(text) > MAX_PARAM_LENGTH:
            text = _cut(text, MAX_PARAM_LENGTH, "config/params.yaml")
            cut.append(key)
        params[key] = text
    return params, cut


def tag_values(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tags as MLflow strings: None dropped, secret-named keys dropped, values redacted and cut."""
    out = {}
    for key, value in tags.items():
        if value is None or is_secret(key):
            continue
        text = redact(str(value))
        out[key] = _cut(text, MAX_TAG_LENGTH, "the run's artifacts") if len(text) > MAX_TAG_LENGTH else text
    return out
