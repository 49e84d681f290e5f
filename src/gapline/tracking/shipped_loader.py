"""MLflow's ``loader_module`` of every model gapline logs, copied into the model's ``code/``
folder as ``_gapline_loader.py`` (MLflow puts that folder first on ``sys.path`` before
importing it).

Keras imports only its own modules while loading, so the modules that define the model's
custom layers are imported here first; then ``mlflow.keras`` loads the model as usual. What
``mlflow.pyfunc`` and ``mlflow models serve`` call is :class:`ServedModel`: it checks the input
against the contract in the MLmodel's metadata (:mod:`gapline.tracking.input_contract` writes it), turns
it into the representation the Keras model was trained on, and predicts without Keras's
progress bar (a server would log one per request).
Standard library, numpy and MLflow only: gapline need not be installed where the model is served.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

import numpy as np

# Next to this file in code/: {"imports": [[module, fallback or null], ...]}
MANIFEST = "_gapline_modules.json"
# The input contract's key in the MLmodel's metadata (gapline.tracking.input_contract.METADATA_KEY).
CONTRACT_KEY = "gapline_input"


def _manifest(path: str) -> list[list[str | None]]:
    # The model's own code/ first: a process that loaded another shipped model already holds
    # this module, imported from that model's folder.
    for folder in (os.path.join(path, "code"), os.path.dirname(os.path.abspath(__file__))):
        candidate = os.path.join(folder, MANIFEST)
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as f:
                return list(json.load(f)["imports"])
    raise FileNotFoundError(f"model {path!r} has no {MANIFEST} in its code/ folder: it was logged incompletely")


def _import(module: str, fallback: str | None) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        if not fallback:
            raise ImportError(
                f"this model needs module {module!r} (it defines the model's custom layers), "
                f"which does not import here: {' '.join(str(exc).split())}"
            ) from None
        importlib.import_module(fallback)


def _contract(path: str) -> dict[str, Any] | None:
    """The input contract in the MLmodel's metadata (None: a model logged without one)."""
    from mlflow.models import Model

    for folder in (path, os.path.dirname(os.path.abspath(path))):
        mlmodel = os.path.join(folder, "MLmodel")
        if os.path.isfile(mlmodel):
            return dict((Model.load(mlmodel).metadata or {}).get(CONTRACT_KEY) or {}) or None
    return None


def _refuse(message: str) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _text(value: Any) -> str:
    """A categorical cell as its dictionary's text: the rule gapline.data.table encodes the
    data file with (whole numbers without a fraction, booleans as True/False), repeated here
    because this file runs where gapline is not installed (a test holds the two together)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def table_cells(data: Any, contract: dict[str, Any]) -> np.ndarray:
    """A table's rows (a DataFrame, or what one is made of) as the model's TableEncoding takes
    them: numbers float32 (missing NaN), a category its dictionary index (never seen in
    training: one past the end, the out-of-vocabulary bucket; missing NaN)."""
    import pandas as pd

    expected = f"expected {contract['expected']}"
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    table = contract["table"]
    names = [c["name"] for c in table]
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise _refuse(f"input lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}: {expected}")
    extra = [str(c) for c in frame.columns if c not in names]
    if extra:
        raise _refuse(f"input has the column{'s' if len(extra) > 1 else ''} {', '.join(extra)}, which the model does not know: {expected}")
    out = np.empty((len(frame), len(table)), dtype=np.float32)
    for j, c in enumerate(table):
        series = frame[c["name"]]
        gone = series.isna().to_numpy()
        if c["kind"] == "numeric":
            numbers = pd.to_numeric(series, errors="coerce")
            bad = numbers.isna().to_numpy() & ~gone
            if bad.any():
                raise _refuse(f"column {c['name']!r} holds {series[bad].iloc[0]!r}: expected a number or null there; {expected}")
            out[:, j] = numbers.to_numpy(dtype=np.float64)
            continue
        index = {value: i for i, value in enumerate(c["values"])}
        codes = np.full(len(series), np.nan, dtype=np.float32)
        codes[~gone] = [index.get(_text(v), len(index)) for v in series[~gone]]
        out[:, j] = codes
    return out


def checked(data: Any, contract: dict[str, Any] | None) -> Any:
    """``data`` checked against ``contract`` and put in the Keras model's representation
    (float32, stored scale and shape); an :class:`MlflowException` (HTTP 400) otherwise."""
    if contract is not None and contract.get("table"):
        return table_cells(data, contract)
    x = np.asarray(data)
    if contract is None:
        return x
    expected = f"expected {contract['expected']}"
    want = tuple(int(s) for s in contract["shape"])
    if x.dtype.kind not in "biuf":
        raise _refuse(f"input has dtype {x.dtype.str!r}: {expected}")
    if x.ndim != len(want) + 1 or x.shape[1:] != want:
        raise _refuse(f"input has shape {x.shape}: {expected}")
    xf = x.astype(np.float64)
    if xf.size:
        if not np.isfinite(xf).all():
            raise _refuse(f"input holds {int((~np.isfinite(xf)).sum())} NaN or infinite values: {expected}")
        lo, hi = float(xf.min()), float(xf.max())
        if ("min" in contract and lo < contract["min"]) or ("max" in contract and hi > contract["max"]):
            raise _refuse(f"input values range from {lo:g} to {hi:g}: {expected}")
        if contract.get("whole"):
            fractional = xf[xf != np.floor(xf)]
            if fractional.size:
                raise _refuse(f"input holds {fractional.size} values with a fraction (such as {fractional[0]:g}): {expected}")
    xf = xf * float(contract.get("scale", 1))
    return xf.reshape((-1, *contract["model_shape"])).astype(np.float32)


class ServedModel:
    """What ``mlflow.pyfunc`` calls predict on: the contract's check, then a quiet predict."""

    def __init__(self, model: Any, contract: dict[str, Any] | None) -> None:
        self.model, self.contract = model, contract

    def get_raw_model(self) -> Any:
        """The Keras model, as ``mlflow.keras``'s own wrapper hands it out."""
        return self.model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import keras
        import pandas as pd

        index = data.index if isinstance(data, pd.DataFrame) else None
        table = self.contract is not None and self.contract.get("table")
        x = checked(data if table or index is None else data.to_numpy(), self.contract)
        out = keras.ops.convert_to_numpy(self.model.predict(x, verbose=0))
        return pd.DataFrame(out, index=index) if index is not None else out


def _load_pyfunc(path: str) -> ServedModel:
    """Import the model's layer modules, load it the way ``mlflow.keras`` does, and serve it
    behind its input contract."""
    for module, fallback in _manifest(path):
        _import(str(module), fallback)
    import mlflow.keras

    return ServedModel(mlflow.keras._load_pyfunc(path).get_raw_model(), _contract(path))
