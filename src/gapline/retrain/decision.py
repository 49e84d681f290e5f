"""The decision rule: score the challenger and the champion on the same, current splits, and
promote the challenger only if it clears every check in :func:`decide`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gapline.config.schema import RetrainConfig
from gapline.config.tasks import higher_is_better
from gapline.data.layout import PREPARED, SPLITS, read_meta, read_split
from gapline.data.meta import PreparedMeta
from gapline.evaluate.splits import evaluate_splits

SCORE_TOLERANCE = 1e-9  # accuracies are ratios: 0.85 + 0.05 must compare equal to 0.9


def split_and_name(metric: str) -> tuple[str, str]:
    """``test_rmse`` → ``("test", "rmse")``."""
    split, _, name = metric.partition("_")
    return split, name


def gap_key(metric: str) -> str:
    """The gap that goes with the metric: on the same metric, train against that split
    (positive = overfitting), e.g. ``gap_accuracy_test`` or ``gap_rmse_val``."""
    split, name = split_and_name(metric)
    return f"gap_{name}_{split}"


def judged_gap(metric: str, metrics: Mapping[str, float]) -> float:
    """The gap retraining bounds: absolute for a score (points of accuracy or AUC:
    ``retrain.max_gap``), relative to the train error for an error (0.2: the split's error is
    20 % above train's: ``retrain.max_relative_gap``)."""
    split, name = split_and_name(metric)
    value = float(metrics[gap_key(metric)])
    if higher_is_better(name):
        return value
    train = float(metrics[f"train_{name}"])
    return value / train if train > 0 else (0.0 if value <= 0 else float("inf"))


@dataclass
class Scored:
    """A registered version scored on the current splits (``score`` None: it could not be)."""

    version: str
    score: float | None
    gap: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "score": self.score, "gap": self.gap, "metrics": self.metrics}
        if self.error:
            out["error"] = self.error
        return out


def decide(rc: RetrainConfig, challenger: Scored, champion: Scored | None) -> tuple[bool, str]:
    """Promote the challenger only if every check passes:

    - its gap on ``metric`` (positive = overfitting) is at most ``max_gap`` for a score (in
      points) or ``max_relative_gap`` for an error (a share of the train error);
    - its score reaches the floor ``min_score`` (a score) or stays within ``max_error`` (an
      error);
    - there is no champion, or the champion cannot be scored on the current splits, or it
      beats the champion by ``margin``: ``challenger >= champion + margin`` for a score,
      ``challenger <= champion * (1 - margin)`` for an error (with margin 0 a tie promotes
      the newer model).

    Returns ``(promote, reason)``; the reason names every check that failed.
    """
    metric = rc.metric
    higher = higher_is_better(split_and_name(metric)[1])
    assert challenger.score is not None and challenger.gap is not None
    failed: list[str] = []
    passed: list[str] = []
    if not math.isfinite(challenger.score) or math.isnan(challenger.gap):
        # an AUC on a split with one class, an RMSE of a model that outputs inf: nothing to judge
        # (an infinite relative gap, a train error of 0, fails the gap bound below instead)
        return False, (
            f"challenger v{challenger.version} kept out: its {metric} {challenger.score} (gap {challenger.gap}) "
            "is not a number on the current splits (undefined there, or the model outputs non-finite values)"
        )
    if champion is not None and champion.score is not None and not math.isfinite(champion.score):
        champion = Scored(champion.version, None, None, error=f"its {metric} is {champion.score} on the current splits")
    gap_text = f"{challenger.gap:+.4f}" if higher else f"{challenger.gap:+.1%} of the train error"
    bound, key = (rc.max_gap, "max_gap") if higher else (rc.max_relative_gap, "max_relative_gap")
    if challenger.gap > bound + SCORE_TOLERANCE:
        failed.append(f"its gap {gap_text} exceeds retrain.{key}={bound:g}")
    else:
        passed.append(f"gap {gap_text} <= {bound:g}")
    if higher and challenger.score < rc.min_score - SCORE_TOLERANCE:
        failed.append(f"its {metric} {challenger.score:.4f} is below retrain.min_score={rc.min_score:g}")
    elif higher:
        passed.append(f"{metric} {challenger.score:.4f} >= floor {rc.min_score:g}")
    elif challenger.score > rc.max_error + SCORE_TOLERANCE:
        failed.append(f"its {metric} {challenger.score:.4g} is above retrain.max_error={rc.max_error:g}")
    else:
        passed.append(f"{metric} {challenger.score:.4g} <= ceiling {rc.max_error:g}")
    if champion is None:
        passed.append("no champion yet")
    elif champion.score is None:
        passed.append(f"champion v{champion.version} cannot be scored on the current splits ({champion.error})")
    elif higher:
        needed = champion.score + rc.margin
        if challenger.score < needed - SCORE_TOLERANCE:
            failed.append(
                f"its {metric} {challenger.score:.4f} < champion v{champion.version}'s "
                f"{champion.score:.4f} + margin {rc.margin:g}"
            )
        else:
            passed.append(
                f"{metric} {challenger.score:.4f} >= champion v{champion.version}'s "
                f"{champion.score:.4f} + margin {rc.margin:g}"
            )
    else:
        needed = champion.score * (1.0 - rc.margin)
        if challenger.score > needed + SCORE_TOLERANCE:
            failed.append(
                f"its {metric} {challenger.score:.4g} > champion v{champion.version}'s "
                f"{champion.score:.4g} less margin {rc.margin:.0%} ({needed:.4g})"
            )
        else:
            passed.append(
                f"{metric} {challenger.score:.4g} <= champion v{champion.version}'s "
                f"{champion.score:.4g} less margin {rc.margin:.0%}"
            )
    if failed:
        return False, f"challenger v{challenger.version} kept out: " + "; ".join(failed)
    return True, f"challenger v{challenger.version} promoted: " + "; ".join(passed)


def score(
    model: Any, version: str, splits: Mapping[str, Any], task: Any, metric: str, task_cfg: Any = None, budget: int | None = None
) -> Scored:
    """``model`` (registered as ``version``) evaluated on ``splits`` for ``task`` (a TaskSpec,
    or a number of classes), judged by ``metric``; ``budget``: bytes of activations per
    prediction call (``train.inference_memory``)."""
    scores = evaluate_splits(model, dict(splits), task, task_cfg, budget=budget)
    metrics = {k: round(float(v), 6) for k, v in scores.items()}
    return Scored(version=str(version), score=metrics[metric], gap=round(judged_gap(metric, metrics), 6), metrics=metrics)


def takes_pixels(model: Any, meta: PreparedMeta) -> Any:
    """``model`` as one that takes the prepared uint8 pixels. A champion registered before
    images were stored as pixels (no ``pixel_scale`` layer: it was trained on [0, 1] floats)
    gets the same scale put in front of it, so both models are judged on the same inputs."""
    pixel_max = meta.pixel_max
    names = {layer.name for layer in getattr(model, "layers", [])}
    if not pixel_max or "pixel_scale" in names:
        return model
    import keras

    inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="inputs")
    scaled = keras.Model(inputs, model(keras.layers.Rescaling(1.0 / pixel_max, name="pixel_scale")(inputs)))
    scaled.compile(loss=model.loss)  # scoring reads the compiled loss
    return scaled


def reads_table(model: Any, meta: PreparedMeta) -> Any:
    """``model`` as one that takes this data's table cells. A table stores a category as its
    index in the column's dictionary, and another version of the data (a category added or
    gone) numbers them otherwise: a champion trained on another dictionary gets a layer in
    front that reads each cell's category through this data's dictionary and gives the index
    of the champion's own (a category it never saw: out of vocabulary), and its columns in
    its order. A model without a table encoding, or with the same dictionaries, is returned as
    it is. Columns the data lacks are a ValueError (the champion cannot be scored)."""
    if not meta.columns:
        return model
    encoding = next((layer for layer in getattr(model, "layers", []) if layer.name == "table_encoding"), None)
    if encoding is None:
        return model
    trained = encoding.get_config()["columns"]
    data = {c["name"]: (k, c) for k, c in enumerate(meta.columns)}
    missing = [c["name"] for c in trained if c["name"] not in data]
    if missing:
        raise ValueError(f"it was trained on columns the data lacks: {', '.join(missing)}")
    order = [data[c["name"]][0] for c in trained]
    tables: dict[int, np.ndarray] = {}
    for j, c in enumerate(trained):
        now = data[c["name"]][1]
        if c["kind"] == "categorical" and now.get("values") != c.get("values"):
            index = {value: i for i, value in enumerate(c["values"])}
            unseen = float(len(c["values"]))  # one past the champion's dictionary: out of vocabulary
            tables[j] = np.asarray([index.get(v, unseen) for v in now.get("values", [])] + [unseen], dtype="float32")
    if order == list(range(len(meta.columns))) and not tables:
        return model
    import keras
    from keras import ops

    class TableRemap(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            x = ops.take(x, order, axis=1)
            cols = []
            for j in range(len(order)):
                cell = x[:, j]
                if j in tables:
                    codes = ops.cast(ops.clip(ops.where(ops.isnan(cell), 0.0, cell), 0.0, float(len(tables[j]) - 1)), "int32")
                    cell = ops.where(ops.isnan(cell), cell, ops.take(tables[j], codes))
                cols.append(cell)
            return ops.stack(cols, axis=1)

    inputs = keras.Input(shape=(len(meta.columns),), name="inputs")
    remapped = keras.Model(inputs, model(TableRemap(name="table_remap")(inputs)))
    remapped.compile(loss=model.loss)  # scoring reads the compiled loss
    return remapped


def load_splits(root: Path) -> tuple[dict[str, tuple[Any, Any]], PreparedMeta]:
    """The prepared splits both models are scored on, and their meta (fingerprint, classes)."""

    meta = read_meta(root / PREPARED)
    # x memory-mapped: both models are scored a batch at a time (evaluate.splits.evaluate_splits)
    return {name: read_split(name, root / PREPARED).pair() for name in SPLITS}, meta
