"""A configured source, loaded, validated, split and fingerprinted in memory.

Pure: the prepare stage writes what :func:`split_source` returns; in-memory trials (sweeps,
the study, the learning curve) and retraining call it directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gapline.config import Config, DataConfig
from gapline.errors import ConfigError, bad_value
from gapline.data.fingerprint import file_digest, fingerprint, tree_digest
from gapline.data.sources import Dataset, load_csv, load_digits, load_image_folder, load_npz, validate_dataset
from gapline.data.split import stratified_split, stratified_subset


def load_source(data: DataConfig) -> Dataset:
    if data.source == "digits":
        return load_digits()
    if data.source == "npz":
        return load_npz(data.path)
    if data.source == "csv":
        return load_csv(data.path, data.label_column)
    return load_image_folder(
        data.path, tuple(data.image_size), data.color_mode, data.on_corrupt  # type: ignore[arg-type]
    )


def source_digest(data: DataConfig) -> str:
    """Lineage of the raw input: a file or folder digest, or the bundled dataset's name."""
    if data.source == "digits":
        return "sklearn.datasets.load_digits"
    path = Path(data.path)
    return tree_digest(path) if path.is_dir() else file_digest(path)


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
    return Dataset(
        x=np.ascontiguousarray(ds.x[rows]),
        y=new_label[ds.y[rows]],
        class_names=tuple(ds.class_names[i] for i in kept),
        kind=ds.kind,
        skipped=ds.skipped,
    )


def split_source(cfg: Config, ds: Dataset | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Load (unless given), validate, keep ``data.classes``, split and subset in memory:
    ``({split: {x, y}}, meta)``.

    Pure: the prepare stage writes what this returns; the learning curve and the study call
    it directly (passing an already-loaded ``ds`` to load the source once).
    """
    data = cfg.data
    if ds is None:
        ds = load_source(data)
        validate_dataset(ds, data.source)
    source_names = list(ds.class_names)
    ds = select_classes(ds, data.classes, data.path if data.source != "digits" else data.source)
    train_idx, val_idx, test_idx = stratified_split(
        ds.y, data.val_fraction, data.test_fraction, data.seed, class_names=ds.class_names
    )
    keep = stratified_subset(ds.y[train_idx], data.train_fraction, data.seed)
    indices = {"train": train_idx[keep], "val": val_idx, "test": test_idx}
    splits = {name: {"x": ds.x[idx], "y": ds.y[idx]} for name, idx in indices.items()}
    fingerprints = {name: fingerprint(arrays) for name, arrays in splits.items()}
    meta = {
        "source": data.source,
        "source_digest": source_digest(data),
        "kind": ds.kind,
        "class_names": list(ds.class_names),
        "input_shape": list(ds.x.shape[1:]),
        "counts": {name: int(len(idx)) for name, idx in indices.items()},
        "skipped_corrupt": int(ds.skipped),
        "fingerprints": fingerprints,
        "fingerprint": combined_fingerprint(fingerprints),
    }
    if data.classes:  # lineage: a subset of the source's classes (absent otherwise: meta unchanged)
        meta["class_filter"] = {"classes": list(ds.class_names), "source_class_names": source_names}
    return splits, meta


def combined_fingerprint(parts: dict[str, str]) -> str:
    """One digest for the whole prepared dataset: what MLflow tags and retraining compare."""
    text = "\n".join(f"{k}={v}" for k, v in sorted(parts.items()))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
