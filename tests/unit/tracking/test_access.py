"""A tracking server's refusal found in whatever exception it surfaced as, and worded once."""

from __future__ import annotations

import pytest

from gapline.core.errors import GaplineError
from gapline.tracking.access import AccessDenied, denial

URL = "http://127.0.0.1:5000"


class FakeMlflowError(Exception):
    """What MLflow's REST client raises: an ``error_code`` and the request it made."""

    def __init__(self, message: str, error_code: str = "") -> None:
        super().__init__(message)
        self.error_code = error_code


def _wrapped(inner: BaseException) -> GaplineError:
    """gapline's own error raised ``from None`` over MLflow's, as tracking.store does."""
    try:
        try:
            raise inner
        except FakeMlflowError:
            raise GaplineError("tracking.experiment='gapline' cannot be used in http://...: MlflowException") from None
    except GaplineError as exc:
        return exc


def test_401_names_the_user_the_server_and_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    inner = FakeMlflowError("API request to endpoint /api/2.0/mlflow/experiments/get-by-name failed with "
                            "error code 401 != 200. Response body: 'You are not authenticated.'", "UNAUTHENTICATED")
    found = denial(_wrapped(inner), URL)
    assert isinstance(found, AccessDenied)
    assert str(found) == (
        f"the tracking server {URL} refused user 'alice': wrong or missing credentials (HTTP 401 at "
        "/api/2.0/mlflow/experiments/get-by-name): expected MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
        "of an account there, or MLFLOW_TRACKING_TOKEN"
    )


def test_401_without_credentials_and_with_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    inner = FakeMlflowError("failed with error code 401 != 200")
    assert "refused a request without credentials" in str(denial(inner))
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t" * 20)
    assert "refused a bearer token" in str(denial(inner))


def test_403_from_the_error_code_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    found = denial(FakeMlflowError("Permission denied", "PERMISSION_DENIED"), URL)
    assert str(found).startswith(f"the tracking server {URL} denied user 'bob' permission (HTTP 403): expected ")


def test_other_errors_are_not_refusals() -> None:
    assert denial(FakeMlflowError("failed with error code 500 != 200", "INTERNAL_ERROR")) is None
    assert denial(_wrapped(FakeMlflowError("RESOURCE_DOES_NOT_EXIST", "RESOURCE_DOES_NOT_EXIST"))) is None
    assert denial(ValueError("port 4013 is busy")) is None
