"""A configured source, loaded, validated, split and fingerprinted.

One plan (:func:`plan_splits`: the resolved task, each split's rows, the meta) and two ways
to carry it out: :func:`write_prepared` streams the splits to disk a chunk at a time (the
prepare stage, and retraining's look at the current data), :func:`split_source` takes them
in memory (in-memory trials: sweeps, the study, the learning curve). Both give the same
fingerprints for the same data.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gapline.config.provenance import config_groups, json_digest
from gapline.config.schema import TABLE_SOURCES, Config, DataConfig
from gapline.config.tasks import target_stats
from gapline.core.errors import ConfigError, DataError, bad_value
from gapline.data.bundled import load_breast_cancer, load_diabetes, load_digits
from gapline.data.columns import fit_columns
from gapline.data.dataset import Dataset, validate_dataset
from gapline.data.fingerprint import file_digest, fingerprint, tree_digest
from gapline.data.images import load_image_folder
from gapline.data.meta import ClassFilter, FeatureStats, PreparedMeta, TargetStats
from gapline.data.sources import load_npz, load_table
from gapline.data.split import task_split, task_subset
from gapline.data.store import write_split
from gapline.data.table import Roles

#: Sources bundled with scikit-learn (no path, no download), and their loaders.
BUNDLED = {"digits": load_digits, "breast_cancer": load_breast_cancer, "diabetes": load_diabetes}


def load_source(data: DataConfig, task: str = "auto", scratch: Path | None = None) -> Dataset:
    """The configured source read for ``task`` (``cfg.task.type``; auto resolved from the
    labels, see :mod:`gapline.data.labels`): ``Dataset.task`` is the task it resolved to.

    ``task=binary`` with ``data.classes`` reads the labels as classes (the source may have
    more than 2): :func:`split_source` keeps the 2 named ones and makes the task binary.
    ``scratch``: a folder where an image folder is decoded to a memory-mapped file (in chunks,
    by ``data.workers`` processes, only the classes ``data.classes`` keeps) instead of memory.
    """
    read_as = "multiclass" if task == "binary" and data.classes else task
    if data.source in BUNDLED:
        return BUNDLED[data.source](read_as)
    if data.source == "npz":
        return load_npz(data.path, read_as)
    if data.source in TABLE_SOURCES:
        roles = Roles(
            categorical=tuple(str(c) for c in data.columns.categorical),
            numeric=tuple(str(c) for c in data.columns.numeric),
            drop=tuple(str(c) for c in data.columns.drop),
        )
        return load_table(data.path, data.label_column, read_as, tuple(data.label_columns), fmt=data.source,
                          roles=roles, missing_target=data.missing_target)
    ds = load_image_folder(
        data.path,
        tuple(data.image_size),  # type: ignore[arg-type]
        data.color_mode,
        data.on_corrupt,
        read_as,
        classes=tuple(str(c) for c in data.classes),
        scratch=scratch,
        workers=data.workers,
    )
    check_classes(ds, data.classes, source_name(data))  # before validation: only these were decoded
    return ds


def source_digest(data: DataConfig) -> str:
    """Lineage of the raw input: a file or folder digest, or the bundled dataset's name."""
    if data.source in BUNDLED:
        return f"sklearn.datasets.load_{data.source}"
    path = Path(data.path)
    return tree_digest(path) if path.is_dir() else file_digest(path)


def source_name(data: DataConfig) -> str:
    """How messages name the source: the bundled set's name or the path."""
    return data.source if data.source in BUNDLED else data.path


def check_classes(ds: Dataset, classes: Sequence[str], source: str) -> list[str]:
    """``data.classes`` as strings, every one a class name of ``ds``; an unknown name is one
    line naming the field, the value and the source's class names."""
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
    return wanted


def select_classes(ds: Dataset, classes: Sequence[str], source: str) -> Dataset:
    """Only the samples of ``classes`` (``data.classes``; empty: ``ds`` unchanged), relabelled
    ``0..k-1`` in the source's class order, so ``class_names`` are the kept names.

    Idempotent: selecting again from a selection keeps it as it is. An unknown name is one
    line naming ``data.classes``, the value and the source's class names.
    """
    if not classes:
        return ds
    wanted = check_classes(ds, classes, source)
    kept = [i for i, name in enumerate(ds.class_names) if name in wanted]
    if kept == list(range(len(ds.class_names))):
        return ds
    new_label = np.full(len(ds.class_names), -1, dtype=np.int64)
    new_label[kept] = np.arange(len(kept), dtype=np.int64)
    rows = np.flatnonzero(new_label[ds.y] >= 0)
    # an image folder decodes only the kept classes: every row stays, and x (maybe mapped) is not copied
    return replace(
        ds,
        x=ds.x if len(rows) == len(ds.y) else np.ascontiguousarray(ds.x[rows]),
        y=new_label[ds.y[rows]],
        class_names=tuple(ds.class_names[i] for i in kept),
    )


@dataclass(frozen=True)
class SplitPlan:
    """What to write: the dataset (classes kept, task resolved), each split's rows into it,
    and the meta every later stage reads, its fingerprints still empty (:func:`finish_meta`
    adds them once the splits are taken)."""

    ds: Dataset
    rows: dict[str, np.ndarray]
    meta: PreparedMeta


def plan_splits(cfg: Config, ds: Dataset) -> SplitPlan:
    """Keep ``data.classes``, resolve the task and choose each split's rows (stratified per
    task, :func:`gapline.data.split.task_split`, then ``data.train_fraction``).

    ``meta.task`` is the resolved task; a regression's ``meta.target`` holds the mean and
    std of the training split's target, which the model standardizes with; tabular data with
    ``data.standardize`` gets ``meta.features``, the training split's per-feature mean and
    std, for the model's input standardization; images get ``meta.pixel_max``, what the
    model's first layer divides the uint8 pixels by. Reads only the labels and, for tabular
    data, the training rows: an image set may be memory-mapped.
    """
    data = cfg.data
    task = cfg.task.type
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
    rows = {"train": train_idx[keep], "val": val_idx, "test": test_idx}
    target: TargetStats | None = None
    if ds.task == "regression":
        stats = target_stats(ds.y[rows["train"]])
        target = TargetStats(mean=stats["mean"], std=stats["std"])
    meta = PreparedMeta(
        source=data.source,
        source_digest=source_digest(data),
        data_key=data_key(cfg),
        kind=ds.kind,
        task=ds.task,
        class_names=list(ds.class_names),
        input_shape=list(ds.x.shape[1:]),
        counts={name: int(len(idx)) for name, idx in rows.items()},
        skipped_corrupt=int(ds.skipped),
        fingerprints={},
        fingerprint="",
        pixel_max=int(ds.pixel_max),
        target=target,
        features=feature_stats(ds.x[rows["train"]]) if ds.kind == "tabular" and data.standardize and not ds.columns else None,
        columns=fit_columns(
            ds.columns, ds.x[rows["train"]], standardize=data.standardize,
            one_hot_max=data.columns.one_hot_max, min_count=data.columns.min_count,
        ) if ds.columns else None,
        dropped_missing_target=int(ds.dropped_missing_target),
        # lineage: a subset of the source's classes (absent otherwise: meta unchanged)
        class_filter=ClassFilter(classes=list(ds.class_names), source_class_names=source_names) if data.classes else None,
    )
    return SplitPlan(ds=ds, rows=rows, meta=meta)


def data_key(cfg: Config) -> str:
    """What decides the prepared splits besides the source's content: the data settings (not
    the output-only ``data.workers``: any number writes the same bytes) and the task asked
    for. In-memory trials reuse a prepared folder whose meta has this key and the source's
    digest."""

    return json_digest({**config_groups(cfg, ("data",)), "task": cfg.task.type})


def finish_meta(meta: PreparedMeta, fingerprints: dict[str, str]) -> PreparedMeta:
    """The plan's meta with each split's fingerprint and the combined one."""
    return replace(meta, fingerprints=fingerprints, fingerprint=combined_fingerprint(fingerprints))


def split_source(cfg: Config, ds: Dataset | None = None) -> tuple[dict[str, dict[str, Any]], PreparedMeta]:
    """Load (unless given) for ``cfg.task.type``, validate, plan (:func:`plan_splits`) and take
    the splits in memory: ``({split: {x, y}}, meta)``, the same meta :func:`write_prepared`
    writes. For in-memory trials (the learning curve and the study pass an already-loaded
    ``ds``, from :func:`load_source` with the same task, to load the source once)."""
    if ds is None:
        ds = load_source(cfg.data, cfg.task.type)
        validate_dataset(ds, cfg.data.source)
    plan = plan_splits(cfg, ds)
    splits = {name: {"x": np.asarray(plan.ds.x[idx]), "y": plan.ds.y[idx]} for name, idx in plan.rows.items()}
    return splits, finish_meta(plan.meta, {name: fingerprint(arrays) for name, arrays in splits.items()})


#: Where :func:`write_prepared` decodes an image folder before splitting it (removed after).
SCRATCH = ".decoded"


def write_prepared(cfg: Config, folder: Path) -> PreparedMeta:
    """Load, validate, plan and write every split into ``folder`` (``<split>/x.npy``,
    ``<split>/y.npy``; the caller writes meta.json), a chunk of rows at a time; returns the
    meta. An image folder is decoded into ``folder/.decoded`` first (memory-mapped, removed
    before returning), so memory holds a chunk of images, never the set."""
    scratch = folder / SCRATCH
    try:
        ds = load_source(cfg.data, cfg.task.type, scratch=scratch)
        validate_dataset(ds, cfg.data.source)
        plan = plan_splits(cfg, ds)
        fingerprints = {}
        for name, idx in plan.rows.items():
            written = write_split(folder / name, plan.ds.x, plan.ds.y, idx)
            fingerprints[name] = fingerprint({"x": written.x, "y": written.y})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return finish_meta(plan.meta, fingerprints)


def feature_stats(x: np.ndarray) -> FeatureStats:
    """Per-feature mean and std of the training split, which a tabular model standardizes its
    inputs with (a constant feature gets std 1: it stays at 0 instead of dividing by 0)."""
    x = np.asarray(x, dtype="float64")
    std = x.std(axis=0)
    std[std == 0] = 1.0
    return FeatureStats(mean=[float(v) for v in x.mean(axis=0)], std=[float(v) for v in std])


def combined_fingerprint(parts: dict[str, str]) -> str:
    """One digest for the whole prepared dataset: what MLflow tags and retraining compare."""
    text = "\n".join(f"{k}={v}" for k, v in sorted(parts.items()))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
