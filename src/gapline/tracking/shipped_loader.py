"""MLflow's ``loader_module`` for a logged model that ships its own code, copied into the
model's ``code/`` folder as ``_gapline_loader.py`` (MLflow puts that folder first on
``sys.path`` before importing it).

Keras imports only its own modules while loading, so the modules that define the model's
custom layers are imported here first; then ``mlflow.keras`` loads the model as usual.
Standard library and MLflow only: gapline need not be installed where the model is served.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any, Optional

# Next to this file in code/: {"imports": [[module, fallback or null], ...]}
MANIFEST = "_gapline_modules.json"


def _manifest(path: str) -> list[list[Optional[str]]]:
    # The model's own code/ first: a process that loaded another shipped model already holds
    # this module, imported from that model's folder.
    for folder in (os.path.join(path, "code"), os.path.dirname(os.path.abspath(__file__))):
        candidate = os.path.join(folder, MANIFEST)
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as f:
                return list(json.load(f)["imports"])
    raise FileNotFoundError(f"model {path!r} has no {MANIFEST} in its code/ folder: it was logged incompletely")


def _import(module: str, fallback: Optional[str]) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        if not fallback:
            raise ImportError(
                f"this model needs module {module!r} (it defines the model's custom layers), "
                f"which does not import here: {' '.join(str(exc).split())}"
            ) from None
        importlib.import_module(fallback)


def _load_pyfunc(path: str) -> Any:
    """Import the model's layer modules, then load it the way ``mlflow.keras`` does."""
    for module, fallback in _manifest(path):
        _import(str(module), fallback)
    import mlflow.keras

    return mlflow.keras._load_pyfunc(path)
