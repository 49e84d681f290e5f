"""A user's own files, ``.npz``, CSV and Parquet, read into one in-memory :class:`Dataset`
(image folders: :mod:`gapline.data.images`; scikit-learn's bundled sets:
:mod:`gapline.data.bundled`).

Every problem a user can cause (missing file, wrong keys, text in a numeric column, ...)
becomes a one-line :class:`~gapline.core.errors.DataError` naming the file or field, the bad
value and what is allowed, so the CLI never shows a numpy/pandas traceback. pandas is
imported lazily to keep ``import gapline`` fast.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gapline.core.errors import DataError, bad_value, flat_message
from gapline.data.dataset import Dataset
from gapline.data.labels import read_labels
from gapline.data.table import Roles, read_table

__all__ = ["PathLike", "load_csv", "load_npz", "load_table", "require_path"]

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------- helpers


def require_path(path: PathLike, expected: str, *, want_dir: bool = False) -> Path:
    """Return ``path`` as a Path, or raise the house-style 'does not exist' error."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data.path={str(p)!r} does not exist: expected {expected}")
    if want_dir and not p.is_dir():
        raise DataError(f"data.path={str(p)!r} is not a directory: expected {expected}")
    if not want_dir and not p.is_file():
        raise DataError(f"data.path={str(p)!r} is not a file: expected {expected}")
    return p


def _to_float32(x: np.ndarray, source: str) -> np.ndarray:
    """Cast numeric features to float32, refusing strings/objects with a clear message."""
    if x.dtype.kind not in "biuf":
        raise DataError(
            f"x in {source} has dtype {x.dtype.str!r}: expected a numeric (int, uint, float "
            "or bool) array"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(np.float32)


def _image_pixels(x: np.ndarray, source: str) -> tuple[np.ndarray, int]:
    """Images as stored and their ``pixel_max``: uint8 kept as pixels (255), anything else
    float32 in [0, 1] (0) by :func:`_scale_images`."""
    if x.dtype == np.uint8:
        return x, 255
    return _scale_images(x, source), 0


def _scale_images(x: np.ndarray, source: str) -> np.ndarray:
    """Scale non-uint8 images to float32 in [0, 1] (see :func:`load_npz` for the rule)."""
    xf = _to_float32(x, source)
    if x.dtype.kind == "b":
        return xf  # True/False masks are already 1/0
    integer = x.dtype.kind in "iu"
    finite = xf[np.isfinite(xf)]  # NaN/inf are reported later by validate_dataset
    if finite.size == 0:
        return xf
    lo, hi = float(finite.min()), float(finite.max())
    if integer or hi > 1.0:
        if lo < 0 or hi > 255:
            raise DataError(
                f"image values in {source} range from {lo:g} to {hi:g}: expected floats in "
                "[0, 1] or integers/floats in [0, 255]"
            )
        xf = xf / np.float32(255.0)
    elif lo < 0:
        raise DataError(
            f"image values in {source} range from {lo:g} to {hi:g}: expected floats in [0, 1] "
            "or integers/floats in [0, 255]"
        )
    return xf


# --------------------------------------------------------------------------- loaders


def load_npz(path: PathLike, task: str = "auto") -> Dataset:
    """Load arrays ``x`` (features/images) and ``y`` (labels) from an ``.npz`` file.

    Layout by ``x.ndim``: 2 -> tabular ``(n, d)``; 3 -> grayscale images ``(n, h, w)`` (a
    channel axis is added); 4 -> images ``(n, h, w, c)``.

    Images by dtype: uint8 stays uint8 pixels with ``pixel_max`` 255 (the model scales
    them; nothing is copied to float). Every other dtype becomes float32 in [0, 1] with
    ``pixel_max`` 0: floats already in [0, 1] are kept; other integers (int64, uint16, ...),
    and floats with a maximum above 1, are read as 0..255 pixels and divided by 255; bool is
    1/0. Values outside [0, 255] (or negative) are an error. Tabular ``x`` is only cast to
    float32 (``pixel_max`` 0), never scaled.

    ``y`` is read for ``task`` by :func:`gapline.data.labels.read_labels`: one label per sample
    (ints or strings map to class indices in sorted order of their unique values and
    ``class_names`` are those values as strings; numbers are a regression target named "y"),
    or a 2-d 0/1 array ``(n, L)`` for a multilabel task whose columns are named by an optional
    unicode array ``label_names`` (else ``label_0`` .. ``label_{L-1}``). Pickled object arrays
    are refused (unsafe); save string labels as a unicode array.
    """
    expected = "an .npz file with arrays 'x' (features) and 'y' (labels)"
    p = require_path(path, expected)
    source = f"data file {str(p)!r}"
    if not zipfile.is_zipfile(p):
        raise DataError(f"{source} is not an .npz archive (not a zip file): expected {expected}")
    try:
        with np.load(p, allow_pickle=False) as npz:
            found = sorted(npz.files)
            for key in ("x", "y"):
                if key not in found:
                    raise DataError(
                        f"{source} has no array {key!r}: found arrays {found}; expected "
                        "arrays 'x' (features) and 'y' (labels)"
                    )
            x_raw = npz["x"]
            y_raw = npz["y"]
            names_raw = npz["label_names"] if "label_names" in found else None
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        hint = " (save string labels as a unicode array, not dtype=object)" if "allow_pickle" in str(exc) else ""
        raise DataError(
            f"{source} cannot be read as .npz ({flat_message(exc)}): expected {expected}{hint}"
        ) from exc

    if x_raw.ndim == 0 or y_raw.ndim == 0:
        raise DataError(f"{source} holds a scalar 'x' or 'y': expected one row/label per sample")
    if len(x_raw) != len(y_raw):
        raise DataError(
            f"{source} has len(x)={len(x_raw)} but len(y)={len(y_raw)}: expected one label per sample"
        )
    if len(x_raw) == 0:
        raise DataError(f"{source} contains 0 samples: expected at least one sample per class")
    pixel_max = 0
    if x_raw.ndim == 2:
        kind = "tabular"
        x = _to_float32(x_raw, source)
    elif x_raw.ndim in (3, 4):
        kind = "image"
        x, pixel_max = _image_pixels(x_raw, source)
        if x.ndim == 3:
            x = x[..., np.newaxis]
    else:
        raise DataError(
            f"x in {source} has ndim={x_raw.ndim} (shape {x_raw.shape}): expected 2 (tabular "
            "n x d), 3 (grayscale images n x h x w) or 4 (images n x h x w x c)"
        )
    label_names = _label_names(names_raw, y_raw, source)
    labels = read_labels(y_raw, task, source=source, field="array 'y'", names=label_names)
    return Dataset(
        x=np.ascontiguousarray(x),
        y=labels.y,
        class_names=labels.names,
        kind=kind,
        task=labels.task,
        pixel_max=pixel_max,
    )


def _label_names(raw: np.ndarray | None, y: np.ndarray, source: str) -> tuple[str, ...] | None:
    """An npz's optional ``label_names``: 1-d text naming the columns of a 2-d ``y``."""
    if raw is None:
        return None
    if raw.dtype.kind == "S":
        raw = np.char.decode(raw, "utf-8", errors="replace")
    if y.ndim != 2 or y.shape[1] < 2:
        raise DataError(
            f"{source} has an array 'label_names' but y has shape {y.shape}: expected label_names "
            "only with a 2-d multilabel y of shape (n, L), one name per column (remove it)"
        )
    names = raw.tolist() if raw.ndim == 1 and raw.dtype.kind == "U" else []
    if len(names) != y.shape[1] or len(set(names)) != len(names) or not all(names):
        raise DataError(
            f"array 'label_names' of {source} has shape {raw.shape} and dtype {raw.dtype.str!r}: "
            f"expected {y.shape[1]} distinct non-empty names (a 1-d unicode array), one per column of y"
        )
    return tuple(raw.tolist())


def load_table(
    path: PathLike,
    label_column: str,
    task: str = "auto",
    label_columns: Sequence[str] = (),
    *,
    fmt: str = "csv",
    roles: Roles | None = None,
    missing_target: str = "drop",
) -> Dataset:
    """Load a table (CSV with a header row, or Parquet): ``label_column`` holds the target,
    every other column not dropped is a feature; or, when ``label_columns`` names several 0/1
    columns (multilabel), those are the targets and ``label_column`` is not read.

    Feature columns are typed and encoded by :func:`gapline.data.table.read_table` (numbers,
    text categories, booleans, missing cells); the Dataset's ``columns`` describe them. Rows
    without a target are dropped (counted) or refused, per ``missing_target``. Targets are
    read for ``task`` like :func:`load_npz` (a regression target is named after its column).
    """
    targets = [str(c) for c in label_columns]
    kind = "a Parquet file" if fmt == "parquet" else "a CSV file with a header row"
    p = require_path(
        path,
        f"{kind} and label columns {targets}" if targets else f"{kind} and a label column {label_column!r}",
    )
    source = f"data file {str(p)!r}"
    if targets:
        field = f"data.label_columns={targets}"
        if len(targets) < 2:
            raise DataError(
                bad_value(
                    "data.label_columns",
                    targets,
                    "at least 2 columns of 0/1 labels for a multilabel task (name a single target "
                    "with data.label_column)",
                )
            )
    else:
        if not isinstance(label_column, str) or not label_column:
            raise DataError(bad_value("data.label_column", label_column, "a non-empty column name"))
        field = f"data.label_column={label_column!r}"
        targets = [label_column]
    table = read_table(p, fmt, targets, roles or Roles(), missing_target, field)
    frame = table.targets
    label_values = frame[targets].to_numpy() if len(targets) > 1 else frame[targets[0]].to_numpy()
    if label_values.dtype.kind == "O":
        label_values = label_values.astype(str)
    labels = read_labels(
        label_values,
        task,
        source=source,
        field=field,
        names=targets if len(targets) > 1 else None,
        target_name=targets[0],
        first_line=2,
    )
    return Dataset(
        x=np.ascontiguousarray(table.x), y=labels.y, class_names=labels.names, kind="tabular", task=labels.task,
        columns=table.columns, dropped_missing_target=table.dropped_missing_target,
    )


def load_csv(path: PathLike, label_column: str, task: str = "auto", label_columns: Sequence[str] = (), **kwargs: Any) -> Dataset:
    """:func:`load_table` of a CSV file."""
    return load_table(path, label_column, task, label_columns, fmt="csv", **kwargs)
