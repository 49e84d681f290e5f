"""Deterministic stratified train/val/test splits and subsets.

Implemented with numpy's ``default_rng`` (PCG64) rather than scikit-learn so that the exact
indices depend only on the labels and the seed -- identical across runs, processes,
platforms and library upgrades -- and so that every class is guaranteed a place in every
split with a simple, explainable minimum (see :func:`min_samples_per_class`).

Every task splits through the same per-stratum algorithm (:func:`task_split`,
:func:`task_subset`); only the strata differ (:func:`strata`): the class for multiclass and
binary (the labels themselves, so those splits are exactly :func:`stratified_split`'s), the
label combination for multilabel and a target quantile for regression.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np

from gapline.core.errors import DataError, bad_value

__all__ = [
    "MAX_QUANTILE_BINS",
    "min_samples_per_class",
    "multilabel_strata",
    "quantile_strata",
    "strata",
    "stratified_split",
    "stratified_subset",
    "task_split",
    "task_subset",
]

#: regression: at most this many target-quantile strata.
MAX_QUANTILE_BINS = 10


def _round_half_up(value: float) -> int:
    """Round .5 up (Python's round() is banker's rounding, which surprises users)."""
    return int(np.floor(value + 0.5))


def _check_fraction(name: str, value: object, *, allow_one: bool) -> float:
    allowed = "a number in (0, 1]" if allow_one else "a number strictly between 0 and 1"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise DataError(bad_value(name, value, allowed))
    f = float(value)
    if not (0.0 < f < 1.0 or (allow_one and f == 1.0)):
        raise DataError(bad_value(name, value, allowed))
    return f


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(bad_value("seed", seed, "a non-negative integer"))
    return int(seed)


def _check_labels(y: np.ndarray) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"labels have shape {arr.shape}: expected a 1-d array of class labels")
    if arr.size == 0:
        raise DataError("labels are empty: expected at least one sample per class")
    return arr


def _class_name(label: object, class_names: Sequence[str] | None) -> str:
    if class_names is not None and isinstance(label, (int, np.integer)) and 0 <= int(label) < len(class_names):
        return str(class_names[int(label)])
    return str(label.item() if isinstance(label, np.generic) else label)


def min_samples_per_class() -> int:
    """Samples a class needs to appear in train, val and test: one each, so 3.

    The per-class allocation rounds each fraction and then forces at least one sample into
    every split, so 3 is sufficient for any valid fractions (and clearly necessary).
    """
    return 3


def _allocate(n: int, val: float, test: float) -> tuple[int, int]:
    """Per-class (n_val, n_test): nearest to n*fraction, at least 1 each, leaving >= 1 for train."""
    n_val = max(1, _round_half_up(n * val))
    n_test = max(1, _round_half_up(n * test))
    while n - n_val - n_test < 1:
        # Shrink whichever held split is furthest above its expected size.
        if n_val > 1 and (n_val - n * val >= n_test - n * test or n_test == 1):
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def stratified_split(
    y: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    *,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split sample indices into sorted, disjoint, covering (train, val, test) int64 arrays.

    Each class is shuffled with one seeded generator (classes visited in sorted order) and
    gets ``round(n_c * fraction)`` samples in val and test, at least one each and leaving at
    least one for train, so class proportions are within one sample of the expected count
    per class. ``class_names`` (optional) is only used to name a class in error messages.
    """
    arr = _check_labels(y)
    val = _check_fraction("val_fraction", val_fraction, allow_one=False)
    test = _check_fraction("test_fraction", test_fraction, allow_one=False)
    if val + test >= 1.0:
        raise DataError(
            bad_value(
                "val_fraction + test_fraction",
                round(val + test, 10),
                "less than 1 so that samples remain for training",
            )
        )
    rng = np.random.default_rng(_check_seed(seed))
    classes, inverse, counts = np.unique(arr, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    need = min_samples_per_class()
    for label, count in zip(classes, counts):
        if count < need:
            raise DataError(
                f"class {_class_name(label, class_names)!r} has only {int(count)} sample"
                f"{'s' if count != 1 else ''}: expected at least {need} per class so that train, "
                f"val and test each get one (val_fraction={val}, test_fraction={test})"
            )
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(counts)[:-1]
    train_parts: list[np.ndarray] = []
    val_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    for members in np.split(order, bounds):
        shuffled = rng.permutation(members)
        n_val, n_test = _allocate(len(shuffled), val, test)
        val_parts.append(shuffled[:n_val])
        test_parts.append(shuffled[n_val : n_val + n_test])
        train_parts.append(shuffled[n_val + n_test :])
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in (train_parts, val_parts, test_parts))  # type: ignore[return-value]


def stratified_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted int64 indices keeping ``fraction`` of each class (at least one per class).

    Used for learning curves / small-data runs: shrinking the training set without losing a
    class. ``fraction == 1.0`` returns every index unchanged (no shuffling, no rounding).
    """
    arr = _check_labels(y)
    f = _check_fraction("fraction", fraction, allow_one=True)
    rng = np.random.default_rng(_check_seed(seed))
    if f == 1.0:
        return np.arange(len(arr), dtype=np.int64)
    _, inverse, counts = np.unique(arr, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    parts = []
    for members in np.split(order, np.cumsum(counts)[:-1]):
        keep = min(len(members), max(1, _round_half_up(len(members) * f)))
        parts.append(rng.permutation(members)[:keep])
    return np.sort(np.concatenate(parts)).astype(np.int64)


def multilabel_strata(y: np.ndarray, min_rows: int = 3) -> np.ndarray:
    """One int64 stratum per row of a 0/1 ``(n, L)`` array: its label combination.

    Combinations seen fewer than ``min_rows`` times (at least :func:`min_samples_per_class`)
    are pooled into one stratum; if that pool is itself too small it joins the largest
    stratum. A split gives every stratum at least one row in val and in test, so
    ``min_rows`` of about 1 / the smallest fraction keeps the splits' sizes near their
    fractions (:func:`task_split`), and frequent combinations keep their proportions.
    """
    arr = np.asarray(y)
    if arr.ndim != 2 or len(arr) == 0:
        raise DataError(f"multilabel targets have shape {arr.shape}: expected a non-empty (n, labels) array")
    _, inverse, counts = np.unique(arr, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    need = max(min_samples_per_class(), int(min_rows))
    rare = counts < need
    if rare.any():
        pool = len(counts)  # an id of its own, after every combination's
        pooled = rare[inverse]
        if int(counts[rare].sum()) >= need:
            inverse[pooled] = pool
        else:
            inverse[pooled] = int(np.argmax(np.where(rare, -1, counts))) if not rare.all() else pool
    return inverse


def quantile_strata(y: np.ndarray, max_bins: int = MAX_QUANTILE_BINS, min_rows: int = 3) -> np.ndarray:
    """One int64 stratum per sample of a numeric target: its quantile bin.

    Bins are rank-based and of equal size (ties broken by position, so the result is
    deterministic): ``min(max_bins, n // min_rows)`` bins (at least 1), so each holds at
    least ``min_rows`` (at least :func:`min_samples_per_class`) samples once ``n`` allows.
    """
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0:
        raise DataError(f"regression targets have shape {arr.shape}: expected a non-empty 1-d array")
    n = len(arr)
    bins = max(1, min(int(max_bins), n // max(min_samples_per_class(), int(min_rows))))
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(arr, kind="stable")] = np.arange(n, dtype=np.int64)
    return ranks * bins // n


def strata(y: np.ndarray, task: str, smallest_fraction: float = 1.0) -> np.ndarray:
    """What a split of ``task`` stratifies on: the labels (multiclass, binary), the label
    combination (multilabel, :func:`multilabel_strata`) or the target quantile (regression,
    :func:`quantile_strata`). The strata a task builds itself hold at least about
    1 / ``smallest_fraction`` rows, so that rounding each up to one row per split does not
    inflate the small splits."""
    min_rows = max(min_samples_per_class(), math.ceil(1.0 / smallest_fraction - 1e-9))
    if task == "multilabel":
        return multilabel_strata(y, min_rows)
    if task == "regression":
        return quantile_strata(y, min_rows=min_rows)
    if task in ("multiclass", "binary"):
        return np.asarray(y)
    raise DataError(bad_value("task", task, "multiclass, binary, multilabel or regression"))


def task_split(
    y: np.ndarray,
    task: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    *,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`stratified_split` on the strata of ``task`` (:func:`strata`).

    Multiclass and binary give exactly :func:`stratified_split`'s indices for ``y``.
    """
    if task in ("multilabel", "regression"):
        n = len(np.asarray(y))
        need = min_samples_per_class()
        if n < need:
            raise DataError(
                f"the data has only {n} sample{'s' if n != 1 else ''}: expected at least {need} so "
                f"that train, val and test each get one (val_fraction={val_fraction}, "
                f"test_fraction={test_fraction})"
            )
        class_names = None
    smallest = min(float(val_fraction), float(test_fraction))
    return stratified_split(strata(y, task, smallest), val_fraction, test_fraction, seed, class_names=class_names)


def task_subset(y: np.ndarray, task: str, fraction: float, seed: int) -> np.ndarray:
    """:func:`stratified_subset` on the strata of ``task``: ``data.train_fraction`` keeps
    that share of each class, label combination or target quantile of the training split."""
    return stratified_subset(strata(y, task, float(fraction)), fraction, seed)
