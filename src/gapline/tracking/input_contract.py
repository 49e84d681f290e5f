"""What a served model takes: the input contract of the logged MLflow model.

gapline stores data in its own representation (digits' 0..16 pixels times 15, every source's
images with a channel axis, tabular features as float32), but a user serves a model with the
data as the source gives it. So the logged model takes the source's representation: float64
numbers (what JSON carries, and what scikit-learn and pandas hand out), in the shape and the
value range the source has, and its loader turns them into the stored representation before
Keras sees them. Anything outside the contract is refused with one line, never answered.

The contract is a plain dict (JSON in the MLmodel's metadata), read by the model's shipped
loader (:mod:`gapline.tracking.shipped_loader`) with numpy and MLflow alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gapline.data.meta import PreparedMeta

__all__ = ["METADATA_KEY", "input_contract", "to_served"]

#: Where the contract lives in the logged model's MLmodel ``metadata``.
METADATA_KEY = "gapline_input"
#: scikit-learn's digits pixels run 0..16 (stored times ``pixel_max / 16``: data/bundled.py).
DIGITS_MAX = 16


def _shape(shape: list[int]) -> str:
    return "(n, " + ", ".join(str(s) for s in shape) + ")"


def input_contract(meta: PreparedMeta) -> dict[str, Any]:
    """The contract of a model trained on ``data/prepared`` described by ``meta``.

    Keys: ``shape`` and ``model_shape`` (a row, as served and as the Keras model takes it),
    ``scale`` (served value times scale = stored value), ``min``/``max`` and ``whole`` (the
    allowed values; absent: any finite number), ``values`` (them in words), ``source`` (where
    that representation comes from), ``expected`` (a sentence for errors) and ``description``
    (the MLflow model version's description)."""
    model_shape = [int(s) for s in meta.input_shape]
    if meta.columns:
        return _table_contract(meta.columns, model_shape)
    contract: dict[str, Any] = {"dtype": "float64", "shape": model_shape, "model_shape": model_shape, "scale": 1}
    if meta.kind == "image" and meta.source == "digits":
        contract.update(
            shape=model_shape[:-1], scale=meta.pixel_max // DIGITS_MAX, min=0, max=DIGITS_MAX, whole=True,
            values=f"whole numbers from 0 to {DIGITS_MAX}",
            source="scikit-learn's load_digits().images, as they come",
        )
    elif meta.kind == "image" and meta.pixel_max:
        top = meta.pixel_max
        contract.update(
            min=0, max=top, whole=True, values=f"whole numbers from 0 to {top}",
            source="the images' 8-bit pixels, decoded and sized as data/prepared holds them",
        )
    elif meta.kind == "image":
        contract.update(
            min=0, max=1, whole=False, values="numbers from 0 to 1",
            source="the images scaled to [0, 1], as data/prepared holds them",
        )
    else:
        contract.update(values="finite numbers", source="the feature columns in data/prepared's order")
    contract["expected"] = (
        f"a float64 array of shape {_shape(contract['shape'])} holding {contract['values']} ({contract['source']})"
    )
    contract["description"] = (
        f"Input: {contract['expected']}. Input of another shape, type or range is refused with "
        "HTTP 400 (mlflow models serve) or an MlflowException (mlflow.pyfunc), not answered."
    )
    return contract


def _table_contract(columns: list[dict[str, Any]], model_shape: list[int]) -> dict[str, Any]:
    """A table's contract: its columns by name, each with what its cells hold in the source
    and (categorical) its dictionary, which the loader maps a text cell through."""
    table = [{k: c[k] for k in ("name", "kind", "cells", "values") if k in c} for c in columns]
    names = ", ".join(c["name"] for c in table)
    expected = (
        f"a table with the columns {names} (any order; text, numbers and booleans as the data file holds "
        "them, a missing cell as null; a category never seen in training is read as out of vocabulary)"
    )
    return {
        "dtype": "table", "table": table, "shape": [len(table)], "model_shape": model_shape, "scale": 1,
        "values": "cells as the data file holds them", "source": "the data file's feature columns",
        "expected": expected,
        "description": f"Input: {expected}. A missing column is refused with HTTP 400 (mlflow models serve) or an "
                       "MlflowException (mlflow.pyfunc), not answered.",
    }


def _served_cell(value: str, cells: str) -> Any:
    """A dictionary value as the source held it (the inverse of gapline.data.table's text)."""
    if cells == "boolean":
        return value == "True"
    if cells == "integer":
        return int(value)
    if cells == "number":
        return float(value)
    return value


def to_served(x: np.ndarray, contract: Mapping[str, Any]) -> Any:
    """Stored rows ``x`` (``data/prepared``) in the served representation: what a client sends
    (a table: a pandas DataFrame of the source's cells, a missing one None)."""
    if contract.get("table"):
        import pandas as pd

        rows = np.asarray(x, dtype=np.float64)
        frame = {}
        for j, c in enumerate(contract["table"]):
            cells = rows[:, j]
            if c["kind"] == "numeric":
                frame[c["name"]] = cells
            else:
                frame[c["name"]] = pd.Series(
                    [None if np.isnan(v) else _served_cell(c["values"][int(v)], c["cells"]) for v in cells], dtype=object
                )
        return pd.DataFrame(frame)
    rows = np.asarray(x, dtype=np.float64) / float(contract["scale"])
    return rows.reshape((-1, *contract["shape"]))
