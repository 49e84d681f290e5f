"""Stratified, deterministic splits and subsets."""

from __future__ import annotations

import numpy as np
import pytest

from gapline.core.errors import DataError
from gapline.data.split import min_samples_per_class, stratified_split, stratified_subset


def _labels() -> np.ndarray:
    rng = np.random.default_rng(123)
    y = np.repeat(np.arange(4), [3, 17, 40, 101])
    return rng.permutation(y)


def test_split_disjoint_covering_sorted() -> None:
    y = _labels()
    train, val, test = stratified_split(y, 0.2, 0.1, seed=0)
    for part in (train, val, test):
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)
    allidx = np.concatenate([train, val, test])
    assert len(allidx) == len(y) and set(allidx.tolist()) == set(range(len(y)))


@pytest.mark.parametrize(("val", "test"), [(0.2, 0.1), (0.15, 0.15), (0.3, 0.3), (0.05, 0.6)])
def test_split_is_stratified(val: float, test: float) -> None:
    y = _labels()
    train, val_idx, test_idx = stratified_split(y, val, test, seed=7)
    counts = np.bincount(y)
    for part, frac in ((val_idx, val), (test_idx, test)):
        got = np.bincount(y[part], minlength=len(counts))
        assert np.all(got >= 1)
        assert np.all(np.abs(got - counts * frac) <= 1.0), (got, counts * frac)
    assert np.all(np.bincount(y[train], minlength=len(counts)) >= 1)


def test_split_deterministic_per_seed() -> None:
    y = _labels()
    a = stratified_split(y, 0.2, 0.2, seed=42)
    b = stratified_split(y.copy(), 0.2, 0.2, seed=42)
    c = stratified_split(y, 0.2, 0.2, seed=43)
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa, pb)
    assert any(not np.array_equal(pa, pc) for pa, pc in zip(a, c))


def test_split_golden_indices_stable_across_runs() -> None:
    # Guards against accidental changes to the algorithm (would silently change data splits).
    y = np.array([0, 1] * 5)
    parts = stratified_split(y, 0.2, 0.2, seed=0)
    assert [p.tolist() for p in parts] == [[0, 1, 2, 5, 6, 7], [4, 9], [3, 8]]


def test_split_string_labels_and_minimum_class() -> None:
    y = np.array(["a", "a", "a", "b", "b", "b", "b"])
    train, val, test = stratified_split(y, 0.1, 0.1, seed=1)
    for part in (train, val, test):
        assert set(y[part].tolist()) == {"a", "b"}
    assert min_samples_per_class() == 3


def test_split_too_few_samples_names_class() -> None:
    y = np.array([0] * 10 + [1, 1])
    with pytest.raises(DataError) as info:
        stratified_split(y, 0.2, 0.2, seed=0, class_names=("cat", "dog"))
    msg = str(info.value)
    assert "'dog'" in msg and "only 2 samples" in msg and "at least 3" in msg and "\n" not in msg
    with pytest.raises(DataError, match="class '1' has only 2"):
        stratified_split(y, 0.2, 0.2, seed=0)


@pytest.mark.parametrize(
    ("val", "test", "field"),
    [
        (0.0, 0.2, "val_fraction=0.0"),
        (0.2, 0.0, "test_fraction=0.0"),
        (-0.1, 0.2, "val_fraction=-0.1"),
        (1.0, 0.2, "val_fraction=1.0"),
        ("0.2", 0.2, "val_fraction='0.2'"),
        (0.5, 0.5, "val_fraction + test_fraction=1.0"),
        (0.7, 0.4, "val_fraction + test_fraction=1.1"),
    ],
)
def test_split_bad_fractions(val: object, test: object, field: str) -> None:
    with pytest.raises(DataError) as info:
        stratified_split(np.array([0, 1] * 10), val, test, seed=0)  # type: ignore[arg-type]
    msg = str(info.value)
    assert msg.startswith(field) and "is not allowed: expected" in msg


def test_split_bad_seed() -> None:
    with pytest.raises(DataError, match="seed=-1 is not allowed"):
        stratified_split(np.array([0, 1] * 10), 0.2, 0.2, seed=-1)


def test_subset_fraction_per_class() -> None:
    y = _labels()
    idx = stratified_subset(y, 0.25, seed=3)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    got = np.bincount(y[idx])
    expected = np.bincount(y) * 0.25
    assert np.all(got >= 1) and np.all(np.abs(got - expected) <= 1.0)
    np.testing.assert_array_equal(idx, stratified_subset(y, 0.25, seed=3))


def test_subset_keeps_one_per_class_and_full() -> None:
    y = np.array([0] * 100 + [1, 1])
    idx = stratified_subset(y, 0.01, seed=0)
    assert sorted(set(y[idx].tolist())) == [0, 1]
    np.testing.assert_array_equal(stratified_subset(y, 1.0, seed=5), np.arange(len(y)))


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_subset_bad_fraction(fraction: float) -> None:
    with pytest.raises(DataError, match=rf"fraction={fraction!r} is not allowed: expected a number in \(0, 1\]"):
        stratified_subset(np.array([0, 1]), fraction, seed=0)
