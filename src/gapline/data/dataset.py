"""The one in-memory layout every loader returns (:class:`Dataset`), and the checks that
refuse a dataset which would train silently wrong (:func:`validate_dataset`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gapline.config.tasks import TASK_NAMES
from gapline.core.errors import DataError, bad_value
from gapline.data.table import Column

__all__ = ["Dataset", "validate_dataset"]


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset in the one layout every later stage expects.

    ``x``: images are uint8 pixels ``(n, h, w, c)`` in ``[0, pixel_max]`` (the model's first
    layer scales them to [0, 1]: stored 4× smaller than float32, and served as raw pixels);
    tabular data is float32 ``(n, d)`` with ``pixel_max`` 0. ``x`` may be a read-only
    memory-mapped array (an image folder decoded to disk): nothing here reads it whole.
    ``y`` and ``class_names`` follow ``task`` (:mod:`gapline.data.labels`): multiclass and
    binary int64 class indices ``(n,)`` into ``class_names`` (binary: 2 names, negative first);
    multilabel int64 0/1 ``(n, L)`` with the L label names; regression float32 ``(n,)`` with
    the target's name. ``skipped`` counts corrupt image files that were skipped
    (``on_corrupt="skip"``), so it can be reported in lineage. A table read from CSV or
    Parquet names its ``columns`` (:mod:`gapline.data.table`): its numeric cells may be NaN
    (missing; the model imputes), its categorical cells hold dictionary indices.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    kind: str
    skipped: int = 0
    task: str = "multiclass"
    pixel_max: int = 0
    columns: tuple[Column, ...] = ()  # a table's feature columns (csv, parquet); empty: plain float features
    dropped_missing_target: int = 0  # a table's rows dropped for a missing target

    @property
    def n_classes(self) -> int:
        """Number of classes named (equals the number of distinct labels for our loaders)."""
        return len(self.class_names)


def validate_dataset(ds: Dataset, source: str) -> None:
    """Refuse data that would train silently wrong, per ``ds.task``.

    Every task: finite features, one target per sample. Multiclass and binary: int class
    indices into ``class_names`` and at least 2 classes present (binary: exactly 2 names).
    Multilabel: int 0/1 ``(n, L)`` with ``L >= 2`` names, and every label both present and
    absent somewhere (a label that is always 0 or always 1 has nothing to learn and no AUC:
    drop it from the label columns). Regression: a finite float ``(n,)`` target with at least
    2 distinct values. ``source`` names where the data came from (a path or "digits").
    """
    x, y = ds.x, ds.y
    if len(x) != len(y):
        raise DataError(f"data source {source!r} has {len(x)} samples but {len(y)} labels: expected one label per sample")
    if len(y) == 0:
        raise DataError(f"data source {source!r} contains 0 samples: expected at least one sample per class")
    if ds.kind not in ("image", "tabular"):
        raise DataError(bad_value("Dataset.kind", ds.kind, "'image' or 'tabular'"))
    if ds.task not in TASK_NAMES:
        raise DataError(bad_value("Dataset.task", ds.task, "one of " + ", ".join(TASK_NAMES)))
    xf = np.asarray(x)
    if ds.columns:
        xf = np.nan_to_num(xf, nan=0.0)  # a table's missing cells are data: the model imputes them
    if xf.dtype.kind in "fc":
        finite = np.isfinite(xf)
        if not finite.all():
            n_nan = int(np.isnan(xf).sum())
            n_inf = int(xf.size - finite.sum()) - n_nan
            first_sample = int(np.argwhere(~finite)[0][0])
            raise DataError(
                f"data source {source!r} has {n_nan} NaN and {n_inf} infinite values in x "
                f"(first in sample {first_sample}): expected only finite numbers (fill or drop "
                "missing values)"
            )
    yi = np.asarray(y)
    if ds.task == "regression":
        _validate_regression(yi, ds.class_names, source)
    elif ds.task == "multilabel":
        _validate_multilabel(yi, ds.class_names, source)
    else:
        _validate_classes(yi, ds.class_names, ds.task, source)


def _validate_classes(yi: np.ndarray, names: tuple[str, ...], task: str, source: str) -> None:
    k = len(names)
    if yi.ndim != 1 or yi.dtype.kind not in "iu":
        raise DataError(
            f"labels of data source {source!r} have dtype {yi.dtype.str!r} and shape {yi.shape}: "
            f"expected integer class indices in [0, {k}), one per sample, for task {task}"
        )
    if yi.min() < 0 or yi.max() >= k:
        raise DataError(
            f"labels of data source {source!r} range over [{yi.min()}, {yi.max()}]: expected "
            f"class indices in [0, {k}) for {k} class names"
        )
    present = np.unique(yi)
    if len(present) < 2:
        only = names[int(present[0])]
        raise DataError(
            f"a single-class dataset cannot be classified: found only class {only!r} in "
            f"data source {source!r}; expected at least 2 classes"
        )
    if task == "binary" and k != 2:
        raise DataError(
            f"data source {source!r} has {k} class names for task binary: expected exactly 2 "
            "(negative first)"
        )


def _validate_multilabel(yi: np.ndarray, names: tuple[str, ...], source: str) -> None:
    if yi.ndim != 2 or yi.dtype.kind not in "iu" or yi.shape[1] != len(names) or len(names) < 2:
        raise DataError(
            f"labels of data source {source!r} have dtype {yi.dtype.str!r} and shape {yi.shape}: "
            f"expected int 0/1 label columns (n, {len(names)}) for {len(names)} label names, at "
            "least 2, for task multilabel"
        )
    if not np.isin(yi, (0, 1)).all():
        raise DataError(f"labels of data source {source!r} hold values other than 0 and 1: expected 0/1 labels")
    positives = yi.sum(axis=0)
    for name, pos in zip(names, positives.tolist()):
        if pos == 0 or pos == len(yi):
            value = 1 if pos else 0
            raise DataError(
                f"label {name!r} of data source {source!r} is {value} in every one of its "
                f"{len(yi)} rows: expected each label to be 1 in some rows and 0 in others "
                "(drop it from the label columns)"
            )


def _validate_regression(yi: np.ndarray, names: tuple[str, ...], source: str) -> None:
    name = names[0] if names else "y"
    if yi.ndim != 1 or yi.dtype.kind != "f":
        raise DataError(
            f"target {name!r} of data source {source!r} has dtype {yi.dtype.str!r} and shape "
            f"{yi.shape}: expected float numbers, one per sample, for task regression"
        )
    bad = ~np.isfinite(yi)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"target {name!r} of data source {source!r} has {int(bad.sum())} NaN/infinite values "
            f"(first in sample {first}): expected a finite number for every sample"
        )
    if len(np.unique(yi)) < 2:
        raise DataError(
            f"target {name!r} of data source {source!r} is {float(yi[0])!r} in every sample: "
            "expected at least 2 distinct values to regress on"
        )
