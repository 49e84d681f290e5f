"""Raw label values read into the target contract of a task (``task.type``).

What ``y`` holds once read (see :mod:`gapline.config.tasks`), with ``names`` (``Dataset.class_names``):

* multiclass: int64 ``(n,)`` class indices in ``[0, k)``; the k class names, sorted.
* binary: int64 ``(n,)`` in ``{0, 1}``; the 2 class names sorted, so the negative class comes
  first (``"0" < "1"``, ``"False" < "True"``, ``"benign" < "malignant"``).
* multilabel: int64 ``(n, L)`` of 0/1, ``L >= 2``; the L label names.
* regression: float32 ``(n,)`` in the user's units; one name, the target's.

Class names sort by value: numbers numerically (``-1`` before ``1``, ``2`` before ``10``), text
by code point. Integer-valued floats are named like ints (``1.0`` -> ``"1"``) because CSV and
npz round trips often turn int labels into floats; bytes are decoded as UTF-8.

``task.type=auto`` is resolved only where the labels leave no doubt, else it asks:

1. a 2-d 0/1 array with at least 2 columns (an npz ``y`` of shape ``(n, L)``, or CSV
   ``data.label_columns``) -> multilabel, unless every row holds exactly one 1: one-hot
   classes read the same, so auto asks (``task.type=multiclass`` reads them as classes);
2. text or bool labels -> binary with 2 distinct values, otherwise multiclass;
3. numbers with a non-integer value -> regression;
4. integer-valued numbers: 2 distinct -> binary; 1 distinct -> multiclass (then refused as a
   single class); exactly the class indices ``0..k-1`` with k at most 20 -> multiclass;
   anything else (ratings 1..5, counts, sklearn's diabetes target with 214 distinct
   integers) -> one error line asking for ``task.type=multiclass`` or
   ``task.type=regression``: whole numbers are as often quantities as classes.

Sources whose task is fixed (image folders, the bundled sets) check it with
:func:`fixed_task`. Every refusal is one :class:`~gapline.core.errors.DataError` line naming the
field (``task.type``, ``data.label_column``, ``data.label_columns``, an npz array), the bad
value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gapline.config.tasks import TASK_NAMES
from gapline.core.errors import DataError, bad_value

__all__ = ["AUTO_MAX_CLASSES", "Labels", "fixed_task", "read_labels"]

#: auto: integer labels are taken for classes only as the indices 0..k-1 with k at most this.
AUTO_MAX_CLASSES = 20

_TASKS = ("auto", *TASK_NAMES)


@dataclass(frozen=True)
class Labels:
    """Labels read for one task: ``y`` and ``names`` as the module docstring describes."""

    y: np.ndarray
    names: tuple[str, ...]
    task: str


def _check_task(task: object) -> str:
    if task not in _TASKS:
        raise DataError(bad_value("task.type", task, "one of " + ", ".join(_TASKS)))
    return str(task)


def _misfit(task: str, allowed: str, why: str) -> DataError:
    """The requested task does not fit the data: one line naming ``task.type``."""
    return DataError(bad_value("task.type", task, f"{allowed}, because {why}"))


def fixed_task(task: str, source: str, allowed: Sequence[str], what: str) -> str:
    """``task`` resolved for a source whose labels fix the task: ``allowed[0]`` is what auto
    becomes; a task outside ``allowed`` is one line naming ``task.type``, ``source`` and
    ``what`` the source holds."""
    task = _check_task(task)
    if task == "auto":
        return allowed[0]
    if task not in allowed:
        raise _misfit(task, " or ".join(["auto", *allowed]), f"{source} holds {what}")
    return task


def _show(values: Sequence[object], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _py(value: object) -> object:
    """A numpy scalar as the plain Python value users typed (``2``, not ``np.int64(2)``)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _normalize(values: np.ndarray) -> np.ndarray:
    kind = values.dtype.kind
    if kind == "S":
        return np.char.decode(values, "utf-8", errors="replace")
    if kind == "O":
        return values.astype(str)
    return values


class _Rows:
    """How a message names a row: ``line <i + first_line>`` in a CSV, ``index <i>`` otherwise."""

    def __init__(self, first_line: int | None) -> None:
        self.first_line = first_line

    def __call__(self, i: int) -> str:
        return f"line {i + self.first_line}" if self.first_line is not None else f"index {i}"


def read_labels(
    values: np.ndarray,
    task: str = "auto",
    *,
    source: str,
    field: str,
    names: Sequence[str] | None = None,
    target_name: str = "y",
    first_line: int | None = None,
) -> Labels:
    """Read raw labels into the contract of ``task`` (``auto`` resolved by the module's rules).

    ``values``: one label per sample ``(n,)``, or ``(n, L)`` label columns named by ``names``
    (``(n, 1)`` counts as ``(n,)``). ``source`` names the file (``data file 'x.csv'``) and
    ``field`` the labels in it (``data.label_column='species'``) for messages;
    ``target_name`` names a regression target; ``first_line``: rows are CSV lines numbered
    from it (else they are named by index).
    """
    task = _check_task(task)
    rows = _Rows(first_line)
    v = np.asarray(values)
    if v.ndim == 2 and v.shape[1] == 1 and (names is None or len(names) <= 1):
        v = v[:, 0]
    if v.ndim == 2:
        return _multilabel(v, task, source, field, names, rows)
    if v.ndim != 1:
        raise DataError(
            f"{field} of {source} has shape {v.shape}: expected one label per sample (n,) or, for "
            "a multilabel task, 0/1 label columns (n, labels)"
        )
    if task == "multilabel":
        raise _misfit(
            task,
            _fitting_tasks(v, task, source=source, field=field),
            f"{field} of {source} is one label per sample; a multilabel task reads several 0/1 "
            "columns (data.label_columns in a CSV, a 2-d y of shape (n, labels) in an npz)",
        )
    v = _normalize(v)
    kind = v.dtype.kind
    if kind not in "biufU":
        raise DataError(f"{field} of {source} has dtype {v.dtype.str!r}: expected numbers or text labels")
    if kind == "f":
        bad = ~np.isfinite(v)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            what = {"regression": "target values", "auto": "values"}.get(task, "labels")
            raise DataError(
                f"{field} of {source} has {int(bad.sum())} NaN/infinite {what} (first at "
                f"{rows(first)}: {_py(v[first])!r}): expected a finite number for every sample"
            )
    if kind in "bU":
        if task == "regression":
            example = _py(v[0])
            raise _misfit(
                task,
                _fitting_tasks(v, task, source=source, field=field),
                f"{field} of {source} holds {'text' if kind == 'U' else 'True/False'} "
                f"(e.g. {example!r}), not numbers to predict",
            )
        if task == "auto":
            task = "binary" if len(np.unique(v)) == 2 else "multiclass"
        return _classes(v, task, source, field)

    integral = kind in "iu" or bool(np.all(v == np.round(v)))
    if task == "regression" or (task == "auto" and not integral):
        return Labels(np.ascontiguousarray(v, dtype=np.float32), (str(target_name),), "regression")
    if not integral:
        first = int(np.flatnonzero(v != np.round(v))[0])
        raise _misfit(
            task,
            "auto or regression",
            f"{field} of {source} holds non-integer numbers (e.g. {_py(v[first])!r} at "
            f"{rows(first)}), not class labels",
        )
    ints = v.astype(np.int64)
    if task == "auto":
        task = _auto_integers(ints, source, field)
    return _classes(ints, task, source, field)


def _fitting_tasks(values: np.ndarray, refused: str, **where: str) -> str:
    """The tasks (other than ``refused``) that one label per sample ``values`` would be read
    as, worded for an "expected …": an error offers only what would then be accepted."""
    fits = []
    for task in ("auto", "multiclass", "binary", "regression"):
        if task == refused:
            continue
        try:
            read_labels(values, task, **where)  # type: ignore[arg-type]
        except DataError:
            continue
        fits.append(task)
    return ", ".join(fits[:-1]) + f" or {fits[-1]}" if len(fits) > 1 else (fits[0] if fits else "other labels")


def _auto_integers(ints: np.ndarray, source: str, field: str) -> str:
    uniques = np.unique(ints)
    k = len(uniques)
    if k == 2:
        return "binary"
    if k == 1:
        return "multiclass"
    indices = uniques[0] == 0 and uniques[-1] == k - 1
    if indices and k <= AUTO_MAX_CLASSES:
        return "multiclass"
    why = (
        f"class indices 0..{k - 1}, but more than {AUTO_MAX_CLASSES} of them"
        if indices
        else f"not class indices 0..{k - 1}"
    )
    shown = ", ".join(str(_py(u)) for u in uniques[:3]) + ", ..."
    raise DataError(
        f"task.type='auto' cannot tell the task of {field} of {source}: it holds {k} distinct "
        f"integers ({shown}; {why}); set task.type=multiclass if "
        "they are class labels or task.type=regression if they are numbers to predict"
    )


def _classes(v: np.ndarray, task: str, source: str, field: str) -> Labels:
    uniques, inverse = np.unique(v, return_inverse=True)
    names = tuple(str(_py(u)) for u in uniques.tolist())
    if task == "binary" and len(names) > 2:
        raise DataError(
            f"{field} of {source} holds {len(names)} distinct values ({_show(names)}): expected "
            "exactly 2 for task.type=binary (set task.type=multiclass, or keep two classes with "
            "data.classes)"
        )
    return Labels(inverse.reshape(-1).astype(np.int64), names, task)


def _multilabel(
    v: np.ndarray, task: str, source: str, field: str, names: Sequence[str] | None, rows: _Rows
) -> Labels:
    n_labels = v.shape[1]
    names = tuple(str(c) for c in names) if names is not None else tuple(f"label_{i}" for i in range(n_labels))
    if len(names) != n_labels:
        raise DataError(
            f"{field} of {source} has {n_labels} label columns but {len(names)} label names: "
            "expected one name per column"
        )
    one_hot = v.dtype.kind in "biuf" and bool(np.all((v == 0) | (v == 1))) and bool(np.all(v.sum(axis=1) == 1))
    if task == "multiclass" and one_hot:  # one-hot classes: read as their indices
        return Labels(np.argmax(v, axis=1).astype(np.int64), names, "multiclass")
    if task not in ("auto", "multilabel"):
        raise _misfit(
            task,
            "auto or multilabel",
            f"{field} of {source} holds {n_labels} label columns per sample (shape {v.shape})",
        )
    if task == "auto" and one_hot:
        raise DataError(
            f"task.type='auto' cannot tell the task of {field} of {source}: every row of its "
            f"{n_labels} 0/1 columns holds exactly one 1 (one-hot classes, or labels that happen "
            "to come one per row); set task.type=multiclass if they are one class per sample or "
            "task.type=multilabel if a sample may have several"
        )
    if n_labels < 2:
        raise DataError(
            f"{field} of {source} has 1 label column: expected at least 2 for a multilabel task "
            "(one label per sample is multiclass, binary or regression)"
        )
    v = _normalize(v)
    if v.dtype.kind == "b":
        return Labels(v.astype(np.int64), names, "multilabel")
    if v.dtype.kind in "iuf":
        ok = (v == 0) | (v == 1)
    else:
        ok = np.zeros(v.shape, dtype=bool)
    if not ok.all():
        row, col = (int(i) for i in np.argwhere(~ok)[0])
        raise DataError(
            f"{field} of {source}: label column {names[col]!r} holds {_py(v[row, col])!r} at "
            f"{rows(row)}: expected only 0 or 1 in every label column of a multilabel task"
        )
    return Labels(v.astype(np.int64), names, "multilabel")
