"""What the tests read back from a sandbox project: its embedded MLflow store, and the
docs/ scripts that render README blocks (they are scripts, not an installed package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def local_client(project: Path) -> Any:
    """An MlflowClient on the project's own store (``<project>/mlflow.db``), registry included."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{project / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def docs_module(name: str) -> ModuleType:
    """``docs/<name>.py`` imported as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "docs" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
