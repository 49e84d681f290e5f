"""scikit-learn's bundled datasets (nothing is downloaded): digits (images, multiclass), breast
cancer (tabular, binary) and diabetes (tabular, regression). Each task is fixed by its data."""

from __future__ import annotations

import numpy as np

from gapline.data.dataset import Dataset
from gapline.data.labels import fixed_task

__all__ = ["DIGITS_SCALE", "load_breast_cancer", "load_diabetes", "load_digits"]

#: Digits' 0..16 pixels are stored times this (0..240, ``pixel_max`` 240).
DIGITS_SCALE = 15


def load_digits(task: str = "auto") -> Dataset:
    """scikit-learn's bundled 8x8 digits (no download), as ``(1797, 8, 8, 1)`` uint8 images.

    Source pixels are 0..16; they are stored times 15, as 0..240 with ``pixel_max`` 240: every
    level stays distinct (the model's ``x * float32(1/240)`` is k/16 to within 1 ulp), and
    offline augmentation has 240 levels to round to instead of 16.
    Multiclass only.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    task = fixed_task(task, "data.source='digits'", ("multiclass",), "10 classes of digit images")
    bunch = _sk_load_digits()
    x = (np.asarray(bunch.images, dtype=np.int64) * DIGITS_SCALE).astype(np.uint8)[..., np.newaxis]
    y = np.asarray(bunch.target, dtype=np.int64)
    names = tuple(str(n) for n in bunch.target_names)
    return Dataset(x=x, y=y, class_names=names, kind="image", task=task, pixel_max=16 * DIGITS_SCALE)


def load_breast_cancer(task: str = "auto") -> Dataset:
    """scikit-learn's bundled Wisconsin breast cancer set (no download): 569 tabular rows of
    30 float32 features; binary, ``class_names = ("benign", "malignant")`` so that malignant is
    the positive class (scikit-learn codes it 0). ``task`` may also be multiclass (2 classes).
    """
    from sklearn.datasets import load_breast_cancer as _sk_load

    task = fixed_task(
        task, "data.source='breast_cancer'", ("binary", "multiclass"), "2 classes (benign, malignant)"
    )
    bunch = _sk_load()
    x = np.ascontiguousarray(bunch.data, dtype=np.float32)
    malignant = np.asarray(bunch.target_names).tolist().index("malignant")
    y = (np.asarray(bunch.target) == malignant).astype(np.int64)
    return Dataset(x=x, y=y, class_names=("benign", "malignant"), kind="tabular", task=task)


def load_diabetes(task: str = "auto") -> Dataset:
    """scikit-learn's bundled diabetes set (no download), unscaled: 442 tabular rows of 10
    float32 features (age, sex, bmi, bp, s1..s6); regression of ``disease_progression`` one
    year after baseline (float32, 25..346)."""
    from sklearn.datasets import load_diabetes as _sk_load

    task = fixed_task(task, "data.source='diabetes'", ("regression",), "a numeric target (disease progression)")
    bunch = _sk_load(scaled=False)
    x = np.ascontiguousarray(bunch.data, dtype=np.float32)
    y = np.ascontiguousarray(bunch.target, dtype=np.float32)
    return Dataset(x=x, y=y, class_names=("disease_progression",), kind="tabular", task=task)
