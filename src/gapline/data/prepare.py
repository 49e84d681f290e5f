"""A configured source, loaded, validated, split and fingerprinted in memory.

Pure: the prepare stage writes what :func:`split_source` returns; in-memory trials (sweeps,
the study, the learning curve) and retraining call it directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gapline.config import Config, DataConfig
from gapline.errors import ConfigError, DataError, bad_value
from gapline.data.fingerprint import file_digest, fingerprint, tree_digest
from gapline.data.bundled import load_breast_cancer, load_diabetes, load_digits
from gapline.data.dataset import Dataset, validate_dataset
from gapline.data.images import load_image_folder
from gapline.data.sources import load_csv, load_npz
from gapline.data.split import task_split, task_subset
from gapline.tasks import target_stats

#: Sources bundled with scikit-learn (no path, no download), and their loaders.
BUNDLED = {"digits": load_digits, "breast_cancer": load_breast_cancer, "diabetes": load_diabetes}


def load_source(data: DataConfig, task: str = "auto") -> Dataset:
    """The configured source read for ``task`` (``cfg.task.type``; auto resolved from the
    labels, see :mod:`gapline.data.labels`): ``Dataset.task`` is the task it resolved to.

    ``task=binary`` with ``data.classes`` reads the labels as classes (the source may have
    more than 2): :func:`split_source` keeps the 2 named ones and makes the task binary.
    """
    read_as = "multiclass" if task == "binary" and data.classes else task
    if data.source in BUNDLED:
        return BUNDLED[data.source](read_as)
    if data.source == "npz":
        return load_npz(data.path, read_as)
    if data.source == "csv":
        return load_csv(data.path, data.label_column, read_as, label_columns=tuple(data.label_columns))
    return load_image_folder(
        data.path, tuple(data.image_size), data.color_mode, data.on_corrupt, read_as  # type: ignore[arg-type]
    )


def source_digest(data: DataConfig) -> str:
    """Lineage of the raw input: a file or folder digest, or the bundled dataset's name."""
    if data.source in BUNDLED:
        return f"sklearn.datasets.load_{data.source}"
    path = Path(data.path)
    return tree_digest(path) if path.is_dir() else file_digest(path)


def source_name(data: DataConfig) -> str:
    """How messages name the source: the bundled set's name or the path."""
    return data.source if data.source in BUNDLED else data.path


def select_classes(ds: Dataset, classes: Sequence[str], source: str) -> Dataset:
    """Only the samples of ``classes`` (``data.classes``; empty: ``ds`` unchanged), relabelled
    ``0..k-1`` in the source's class order, so ``class_names`` are the kept names.

    Idempotent: selecting again from a selection keeps it as it is. An unknown name is one
    line naming ``data.classes``, the value and the source's class names.
    """
    if not classes:
        return ds
    wanted = [str(c) for c in classes]
    unknown = [c for c in wanted if c not in ds.class_names]
    if unknown:
        names = list(ds.class_names)
        shown = ", ".join(names[:50]) + (f", ... ({len(names)} classes in all)" if len(names) > 50 else "")
        raise ConfigError(
            bad_value(
                "data.classes",
                wanted,
                f"class names of data source {source!r} ({', '.join(unknown)} "
                f"{'is' if len(unknown) == 1 else 'are'} not among them): {shown}",
            )
        )
    kept = [i for i, name in enumerate(ds.class_names) if name in wanted]
    if kept == list(range(len(ds.class_names))):
        return ds
    new_label = np.full(len(ds.class_names), -1, dtype=np.int64)
    new_label[kept] = np.arange(len(kept), dtype=np.int64)
    rows = np.flatnonzero(new_label[ds.y] >= 0)
    return replace(
        ds,
        x=np.ascontiguousarray(ds.x[rows]),
        y=new_label[ds.y[rows]],
        class_names=tuple(ds.class_names[i] for i in kept),
    )


def split_source(cfg: Config, ds: Dataset | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Load (unless given) for ``cfg.task.type``, validate, keep ``data.classes``, split and
    subset in memory: ``({split: {x, y}}, meta)``.

    Splits are stratified per task (:func:`gapline.data.split.task_split`). ``meta["task"]``
    is the resolved task; a regression's ``meta["target"]`` holds the mean and std of the
    training split's target (after ``data.train_fraction``), which the model standardizes
    with; tabular data with ``data.standardize`` gets ``meta["features"]``, the training
    split's per-feature mean and std, for the model's input standardization. Pure: the prepare stage writes what this returns; the learning curve and the study
    call it directly (passing an already-loaded ``ds``, from :func:`load_source` with the same
    task, to load the source once).
    """
    data = cfg.data
    task = cfg.task.type
    if ds is None:
        ds = load_source(data, task)
        validate_dataset(ds, data.source)
    if data.classes and ds.task not in ("multiclass", "binary"):
        raise ConfigError(
            bad_value(
                "data.classes",
                [str(c) for c in data.classes],
                f"empty for task {ds.task}: it keeps classes of a multiclass or binary task",
            )
        )
    source_names = list(ds.class_names)
    ds = select_classes(ds, data.classes, source_name(data))
    if task == "binary" and ds.task != "binary":
        if len(ds.class_names) != 2:
            raise ConfigError(
                bad_value(
                    "data.classes",
                    [str(c) for c in data.classes],
                    f"exactly 2 classes for task.type=binary (data source {source_name(data)!r} "
                    f"has {len(source_names)})",
                )
            )
        ds = replace(ds, task="binary")
    if task != "auto" and ds.task != task:
        raise DataError(
            f"the dataset given was read for task {ds.task!r} but task.type={task!r}: expected "
            "it loaded with load_source(cfg.data, cfg.task.type)"
        )
    train_idx, val_idx, test_idx = task_split(
        ds.y, ds.task, data.val_fraction, data.test_fraction, data.seed, class_names=ds.class_names
    )
    keep = task_subset(ds.y[train_idx], ds.task, data.train_fraction, data.seed)
    indices = {"train": train_idx[keep], "val": val_idx, "test": test_idx}
    splits = {name: {"x": ds.x[idx], "y": ds.y[idx]} for name, idx in indices.items()}
    fingerprints = {name: fingerprint(arrays) for name, arrays in splits.items()}
    meta = {
        "source": data.source,
        "source_digest": source_digest(data),
        "kind": ds.kind,
        "task": ds.task,
        "class_names": list(ds.class_names),
        "input_shape": list(ds.x.shape[1:]),
        "counts": {name: int(len(idx)) for name, idx in indices.items()},
        "skipped_corrupt": int(ds.skipped),
        "fingerprints": fingerprints,
        "fingerprint": combined_fingerprint(fingerprints),
    }
    if ds.task == "regression":
        meta["target"] = target_stats(splits["train"]["y"])
    if ds.kind == "tabular" and data.standardize:
        meta["features"] = feature_stats(splits["train"]["x"])
    if data.classes:  # lineage: a subset of the source's classes (absent otherwise: meta unchanged)
        meta["class_filter"] = {"classes": list(ds.class_names), "source_class_names": source_names}
    return splits, meta


def feature_stats(x: np.ndarray) -> dict[str, list[float]]:
    """Per-feature mean and std of the training split, which a tabular model standardizes its
    inputs with (a constant feature gets std 1: it stays at 0 instead of dividing by 0)."""
    x = np.asarray(x, dtype="float64")
    std = x.std(axis=0)
    std[std == 0] = 1.0
    return {"mean": [float(v) for v in x.mean(axis=0)], "std": [float(v) for v in std]}


def combined_fingerprint(parts: dict[str, str]) -> str:
    """One digest for the whole prepared dataset: what MLflow tags and retraining compare."""
    text = "\n".join(f"{k}={v}" for k, v in sorted(parts.items()))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
