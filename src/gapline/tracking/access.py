"""A tracking server that refuses the caller: wrong or missing credentials (HTTP 401), or an
account without the permission (HTTP 403), found in whatever exception it surfaced as.

MLflow's clients send ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (basic auth)
or ``MLFLOW_TRACKING_TOKEN`` (bearer) with every request; gapline passes nothing else and
stores none of them (:mod:`.redaction`). A refusal can surface anywhere a run touches the
server, wrapped in gapline's own errors, so it is recognised in the exception's chain and
reworded once, at the command line, as one line with its own exit code (77).
"""

from __future__ import annotations

import os
import re

from gapline.core.errors import GaplineError

_STATUS = re.compile(r"error code (?P<status>401|403)\b")
_ENDPOINT = re.compile(r"endpoint (?P<endpoint>/\S+)")
CODES = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}


class AccessDenied(GaplineError):
    """The tracking server refused this caller (exit 77, EX_NOPERM); nothing was changed by it."""


def _status(exc: BaseException) -> tuple[int, str] | None:
    code = str(getattr(exc, "error_code", "") or "")
    text = str(exc)
    found = _STATUS.search(text)
    status = CODES.get(code) or (int(found.group("status")) if found else 0)
    if not status:
        for name, value in CODES.items():
            if name in text:
                status = value
    if not status:
        return None
    endpoint = _ENDPOINT.search(text)
    return status, endpoint.group("endpoint").rstrip(".,") if endpoint else ""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def denial(exc: BaseException, server: str = "") -> AccessDenied | None:
    """The refusal behind ``exc`` (or anything it was raised from) as one line, or None.

    ``server``: the tracking URI to name (passwords already removed)."""
    if isinstance(exc, AccessDenied):
        return exc
    for link in _chain(exc):
        found = _status(link)
        if found is not None:
            return AccessDenied(denied_message(*found, server))
    return None


def denied_message(status: int, endpoint: str, server: str) -> str:
    """The one line for HTTP ``status`` (401 or 403) at ``endpoint`` of ``server``."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    where = f"the tracking server {server}" if server else "the tracking server"
    at = f" at {endpoint}" if endpoint else ""
    if status == 401:
        who = f"user {user!r}" if user else (
            "a bearer token" if os.environ.get("MLFLOW_TRACKING_TOKEN") else "a request without credentials")
        return (
            f"{where} refused {who}: wrong or missing credentials (HTTP 401{at}): expected "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD of an account there, or MLFLOW_TRACKING_TOKEN"
        )
    who = f"user {user!r}" if user else "this account"
    return (
        f"{where} denied {who} permission (HTTP 403{at}): expected an account with EDIT permission "
        "on the experiment and the registered model (MANAGE to grant it), given by the server's admin"
    )
