"""The prepared data's typed meta: what the prepare stage writes to ``data/prepared/meta.json``
and every later stage, trial and retrain reads (one writer, one reader).

The file is a DVC output hashed in ``dvc.lock``: :meth:`PreparedMeta.as_json` gives the keys
it has always had, optional ones absent when unset, so the bytes (and the model downstream)
do not change. The task the data resolved to is read here too (:meth:`PreparedMeta.task_spec`),
not in ``config.tasks``, which sits below ``data`` and cannot know this type.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, TypedDict

from gapline.config.schema import Config
from gapline.config.tasks import TaskSpec, check
from gapline.core.errors import DataError
from gapline.core.files import read_json, write_json


class TargetStats(TypedDict):
    """A regression target's mean and std on the training split (the model standardizes it)."""

    mean: float
    std: float


class FeatureStats(TypedDict):
    """Per-feature mean and std of the training split (``data.standardize``, tabular)."""

    mean: list[float]
    std: list[float]


class ClassFilter(TypedDict):
    """``data.classes`` lineage: the classes kept and the source's own class names."""

    classes: list[str]
    source_class_names: list[str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreparedMeta:
    """``meta.json`` as a record; the field order is the order the file has always listed."""

    source: str  # data.source: a bundled set's name, npz, csv or images
    source_digest: str  # the raw input's digest (or the bundled loader's name)
    data_key: str = ""  # data settings and task asked for; absent in older data: no trial matches it
    kind: str  # image | tabular
    task: str = "multiclass"  # the resolved task; data prepared before tasks existed was multiclass
    class_names: list[str]  # class names, label names (multilabel) or the target's name
    input_shape: list[int]  # one row as stored
    counts: dict[str, int]  # rows per split
    skipped_corrupt: int  # images skipped by data.on_corrupt=skip
    fingerprints: dict[str, str]  # per split
    fingerprint: str  # of all splits: what MLflow tags and retraining compare
    pixel_max: int = 0  # uint8 images: what the model divides the pixels by; 0: not pixels
    target: TargetStats | None = None  # regression
    features: FeatureStats | None = None  # tabular with data.standardize
    class_filter: ClassFilter | None = None  # data.classes set
    columns: list[dict[str, Any]] | None = None  # a table's columns and what training fitted (gapline.data.columns)
    dropped_missing_target: int = 0  # a table's rows dropped for a missing target (data.missing_target=drop)

    def as_json(self) -> dict[str, Any]:
        """Every field, but ``pixel_max`` only when set and the optional stats only when present
        (the file prepare has always written)."""
        record = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        if not self.pixel_max:
            del record["pixel_max"]
        for key in ("target", "features", "class_filter", "columns"):
            if record[key] is None:
                del record[key]
        if not self.dropped_missing_target:
            del record["dropped_missing_target"]
        return record

    def write(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.as_json())

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> PreparedMeta:
        """The meta in ``path``; the keys added after the first layout (``data_key``, ``task``,
        the optional ones) read as their defaults when absent, unknown keys are ignored."""
        data = read_json(path)
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        if not isinstance(data, dict):
            raise DataError(
                f"prepared meta {str(path)!r} holds a JSON {type(data).__name__}: expected an object "
                "with the keys the prepare stage writes (rerun `dvc repro prepare`)"
            )
        missing = [name for name in required if name not in data]
        if missing:
            raise DataError(
                f"prepared meta {str(path)!r} lacks {', '.join(missing)}: expected the prepare "
                "stage's meta.json (rerun `dvc repro prepare`)"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def task_spec(self) -> TaskSpec:
        """The task the prepare stage resolved, with what the model standardizes its inputs
        and target with."""
        return TaskSpec(
            name=self.task,
            labels=tuple(str(c) for c in self.class_names),
            target_mean=float(self.target["mean"]) if self.target else 0.0,
            target_std=float(self.target["std"]) if self.target else 1.0,
            feature_mean=tuple(float(v) for v in self.features["mean"]) if self.features else None,
            feature_std=tuple(float(v) for v in self.features["std"]) if self.features else None,
            pixel_max=int(self.pixel_max),
            table=tuple(self.columns or ()),
        )

    def task_for(self, cfg: Config) -> TaskSpec:
        """:meth:`task_spec` with the config keys that depend on the task checked (an
        early-stopping monitor or a loss the task does not have is one line, before any run)."""
        spec = self.task_spec()
        check(cfg, spec.name)
        return spec
