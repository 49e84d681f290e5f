"""A table as it comes (CSV or Parquet): typed feature columns, empty cells, text categories,
read into the one float32 layout every stage streams.

Each feature column is numeric (a float, missing cells NaN) or categorical (text, booleans,
or integers the user declares categorical). A categorical cell is stored as its index in the
column's *dictionary*, the sorted distinct values of the whole column, missing NaN: an
encoding of the file, lossless, and no statistic of any split. What the model learns from
(which values get a bucket of their own, medians, means) is fitted on the training split
only, later (:func:`gapline.data.columns.fit_columns`).

Every problem is one :class:`~gapline.core.errors.DataError` line naming the column, the bad
value and what is allowed. pandas and pyarrow are imported lazily.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gapline.core.errors import DataError, bad_value, flat_message, warn

NUMERIC = "numeric"
CATEGORICAL = "categorical"
#: A text column with at least this share of distinct values (and IDENTIFIER_MIN_ROWS rows)
#: is an identifier, not a category: one value per row teaches nothing that generalizes.
IDENTIFIER_SHARE = 0.9
IDENTIFIER_MIN_ROWS = 20
#: Cells read as missing (pandas' defaults, which include "", NA, NaN, null, None, N/A).
MISSING_HINT = "empty cells, NA, NaN, null"


@dataclass(frozen=True)
class Column:
    """One feature column as stored: its name, its kind, and (categorical) its dictionary."""

    name: str
    kind: str  # numeric | categorical
    values: tuple[str, ...] = ()  # categorical: the sorted distinct values; a cell stores its index
    # what the source holds, and so what a served request sends: number, integer, boolean, text
    cells: str = "number"

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"name": self.name, "kind": self.kind, "cells": self.cells}
        if self.kind == CATEGORICAL:
            record["values"] = list(self.values)
        return record


@dataclass(frozen=True)
class Roles:
    """What the user said about the columns (``data.columns``); the rest is inferred."""

    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    """Features encoded (float32 ``(n, d)``), their columns, the target frame, and how many
    rows were dropped for a missing target."""

    x: np.ndarray
    columns: tuple[Column, ...]
    targets: Any  # pandas DataFrame of the target columns, rows kept
    dropped_missing_target: int


def normalized(name: str) -> str:
    """A column's name as metric keys and layer names use it: lower case, runs of anything
    but letters and digits as one ``_``."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def read_frame(path: Path, fmt: str) -> Any:
    """The file as a pandas DataFrame (column names as text); Parquet columns of a nested
    or binary type are refused by name."""
    import pandas as pd

    source = f"data file {str(path)!r}"
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{source} cannot be read as Parquet ({flat_message(exc)}): expected a Parquet file") from exc
        for field in schema:
            t = field.type
            if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
                raise DataError(
                    f"column {field.name!r} of {source} has Parquet type {t}: expected numbers, text, "
                    "booleans or dictionary-encoded text (drop it: data.columns.drop)"
                )
        try:
            frame = pq.read_table(path).to_pandas()
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise DataError(f"{source} cannot be read as Parquet ({flat_message(exc)}): expected a Parquet file") from exc
    else:
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError as exc:
            raise DataError(f"{source} is empty: expected a CSV file with a header row") from exc
        except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
            raise DataError(
                f"{source} cannot be parsed as CSV ({flat_message(exc)}): expected a comma-separated "
                "file with a header row"
            ) from exc
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _check_names(frame: Any, source: str) -> None:
    seen: dict[str, str] = {}
    for name in frame.columns:
        key = normalized(name)
        if not key:
            raise DataError(f"column {name!r} of {source} has no letter or digit: expected a name (rename it)")
        if key in seen:
            raise DataError(
                f"columns {seen[key]!r} and {name!r} of {source} are both {key!r} once normalized "
                "(lower case, other characters as _): expected distinct names (rename or drop one)"
            )
        seen[key] = name


def _role_names(roles: Roles, columns: list[str], targets: list[str], source: str) -> None:
    for field, names in (("categorical", roles.categorical), ("numeric", roles.numeric), ("drop", roles.drop)):
        for name in names:
            if name not in columns:
                raise DataError(bad_value(f"data.columns.{field}", list(names), f"columns of {source}: {columns}"))
            if name in targets:
                raise DataError(bad_value(f"data.columns.{field}", list(names), f"feature columns: {name!r} is the target"))
    both = set(roles.categorical) & set(roles.numeric)
    if both:
        raise DataError(
            f"column {sorted(both)[0]!r} is in both data.columns.categorical and data.columns.numeric: "
            "expected each column in one of them"
        )


def _cell_text(value: Any) -> str:
    """A categorical cell as its dictionary's text: integers without a fraction ("3", not
    "3.0": a CSV column of codes with an empty cell is read as floats)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _cells(series: Any) -> str:
    """What a categorical column's cells are in the source: boolean, integer or text."""
    import pandas as pd

    filled = series.dropna()
    if pd.api.types.is_bool_dtype(series) or (len(filled) and all(isinstance(v, (bool, np.bool_)) for v in filled)):
        return "boolean"  # a boolean column with missing cells comes as objects
    if pd.api.types.is_numeric_dtype(series):
        numbers = filled.to_numpy(dtype=np.float64)
        return "integer" if np.all(np.floor(numbers) == numbers) else "number"
    return "text"


def _encode_categorical(series: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    missing = series.isna().to_numpy()
    texts = np.array([_cell_text(v) for v in series[~missing]], dtype=str)
    values, codes = np.unique(texts, return_inverse=True)
    x = np.full(len(series), np.nan, dtype=np.float32)
    x[~missing] = codes.astype(np.float32)
    return x, tuple(str(v) for v in values.tolist())


def _encode_numeric(series: Any, name: str, source: str, declared: bool) -> np.ndarray:
    import pandas as pd

    if series.dtype == bool:
        return series.to_numpy(dtype=np.float32)
    coerced = pd.to_numeric(series, errors="coerce")
    bad = coerced.isna() & series.notna()
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        why = "it is in data.columns.numeric" if declared else "it was read as numbers"
        raise DataError(
            f"column {name!r} of {source} holds {series.iloc[pos]!r} on row {pos + 1}: expected a number "
            f"or a missing cell ({MISSING_HINT}) because {why} (declare it in data.columns.categorical)"
        )
    values = coerced.to_numpy(dtype=np.float64)
    if np.isinf(values).any():
        pos = int(np.flatnonzero(np.isinf(values))[0])
        raise DataError(f"column {name!r} of {source} holds {values[pos]} on row {pos + 1}: expected a finite number or a missing cell")
    return values.astype(np.float32)


def _kind(series: Any, name: str, roles: Roles) -> str:
    import pandas as pd

    if name in roles.categorical:
        return CATEGORICAL
    if name in roles.numeric:
        return NUMERIC
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return CATEGORICAL
    return NUMERIC


def encode_features(frame: Any, features: Sequence[str], roles: Roles, source: str) -> tuple[np.ndarray, tuple[Column, ...]]:
    """Each feature column typed and encoded; the column-level bad input refused."""
    n = len(frame)
    encoded, columns = [], []
    for name in features:
        series = frame[name]
        present = int(series.notna().sum())
        if present == 0:
            raise DataError(
                f"column {name!r} of {source} is empty in every one of its {n} rows: expected some values "
                f"(drop it: data.columns.drop=[{name}])"
            )
        kind = _kind(series, name, roles)
        if kind == CATEGORICAL:
            x, values = _encode_categorical(series)
            declared = name in roles.categorical
            if not declared and present >= IDENTIFIER_MIN_ROWS and len(values) >= IDENTIFIER_SHARE * present:
                raise DataError(
                    f"column {name!r} of {source} has {len(values)} distinct values in {present} rows, "
                    "like an identifier: expected a category shared by many rows (drop it: "
                    f"data.columns.drop=[{name}], or declare it: data.columns.categorical=[{name}])"
                )
            column = Column(name, CATEGORICAL, values, _cells(series))
            distinct = len(values)
        else:
            x = _encode_numeric(series, name, source, name in roles.numeric)
            column = Column(name, NUMERIC)
            distinct = len(np.unique(x[~np.isnan(x)]))
        if distinct == 1:
            warn(f"column {name!r} of {source} holds a single value in every filled row: it cannot inform the model")
        encoded.append(x)
        columns.append(column)
    return np.stack(encoded, axis=1).astype(np.float32), tuple(columns)


def read_table(
    path: Path, fmt: str, targets: Sequence[str], roles: Roles, missing_target: str, field: str
) -> Table:
    """The file's feature columns encoded and its target columns, rows with a missing target
    dropped (``missing_target`` drop: with a warning) or refused (fail)."""
    source = f"data file {str(path)!r}"
    frame = read_frame(path, fmt)
    columns = list(frame.columns)
    absent = [c for c in targets if c not in columns]
    if absent:
        what = "is not a column" if len(absent) == 1 else f"names {', '.join(map(repr, absent))}, not columns"
        raise DataError(f"{field} {what} of {source}: expected one of {columns}")
    _role_names(roles, columns, list(targets), source)
    frame = frame.drop(columns=list(roles.drop))
    _check_names(frame, source)
    if len(frame) == 0:
        raise DataError(f"{source} has a header but 0 rows: expected at least one sample per class")
    features = [c for c in frame.columns if c not in targets]
    if not features:
        raise DataError(f"{source} has no feature column besides {', '.join(map(repr, targets))}: expected at least one")
    missing = frame[list(targets)].isna().any(axis=1).to_numpy()
    dropped = int(missing.sum())
    if dropped:
        first = int(np.flatnonzero(missing)[0])
        if missing_target == "fail" or dropped == len(frame):
            raise DataError(
                f"{field} of {source}: {dropped} of {len(frame)} rows have no target (first: row {first + 1}): "
                "expected a target in every row (data.missing_target=drop drops such rows)"
                if missing_target == "fail"
                else f"{field} of {source}: every one of its {len(frame)} rows has no target: expected targets"
            )
        warn(f"{field} of {source}: dropped {dropped} of {len(frame)} rows without a target (first: row {first + 1})")
        frame = frame[~missing].reset_index(drop=True)
    x, cols = encode_features(frame, features, roles, source)
    return Table(x=x, columns=cols, targets=frame[list(targets)], dropped_missing_target=dropped)
