"""Warm start (``model.init_from``): a freshly built model of any family takes the weights of a
previous gapline model, layer by layer, wherever a layer of the same name holds weights of the
same shapes (through nested models too). The rest keeps its fresh initialisation: typically the
classifier head, whose shape follows the number of classes.

The source is a ``.keras`` file or a registered ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION``,
loaded with ``safe_mode=True`` (:func:`gapline.models.saving.load_model`). Every way it can fail (no
such file, no such alias, a file Keras refuses, no layer in common) is one line naming
``model.init_from``, raised while the model is built: before any MLflow run opens.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapline import tracking as tracking_mod
from gapline.config.schema import MODELS_SCHEME, TrackingConfig
from gapline.core.errors import ConfigError, GaplineError, bad_value
from gapline.models.saving import load_model

KEY = "model.init_from"
# how many layer names an error or summary line lists before "... (N in all)"
SHOWN = 12


@dataclass
class InitSource:
    """The loaded source model and what ``init_from`` resolved to (a registered version)."""

    model: Any
    init_from: str
    name: str = ""
    version: str = ""


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f", ... ({len(items)} in all)" if len(items) > SHOWN else "")


def load_init_source(init_from: str, tracking: TrackingConfig | None = None) -> InitSource:
    """Load the model ``init_from`` names: a ``.keras`` file or a ``models:/`` URI."""
    with warnings.catch_warnings():
        # only the layers' weights are read: Keras' note that the saved optimizer state does
        # not fit a fresh optimizer is noise here
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        return _load_init_source(init_from, tracking)


def _load_init_source(init_from: str, tracking: TrackingConfig | None) -> InitSource:
    value = init_from.strip()
    if value.startswith(MODELS_SCHEME):
        # an unknown name, alias or version is a ConfigError; an unreachable store a TrackingError
        model, name, version = tracking_mod.load_model_uri(value, tracking or TrackingConfig(), KEY)
        return InitSource(model, init_from, name, version)
    path = Path(value)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(
            bad_value(
                KEY,
                init_from,
                f"an existing .keras file (the path {what}; e.g. a copy of models/model.keras "
                "from an earlier run) or models:/NAME@ALIAS",
            )
        )
    if path.name.endswith((".weights.h5", ".npz")):
        raise ConfigError(
            bad_value(KEY, init_from, "a whole saved model (.keras), not a weights-only file: weights are copied by layer name")
        )

    try:
        model = load_model(path)
    except GaplineError as exc:
        raise ConfigError(bad_value(KEY, init_from, f"a model file that loads ({exc})")) from None
    return InitSource(model, init_from)


def _shapes(weights: list[Any]) -> str:
    return "[" + ", ".join("x".join(str(d) for d in w.shape) or "scalar" for w in weights) + "]"


def _copy(target: Any, source: Any, prefix: str, copied: list[str], skipped: dict[str, str]) -> int:
    """Copy matching layers of ``source`` into ``target``; returns the number of values copied."""
    import keras

    by_name = {layer.name: layer for layer in source.layers}
    values = 0
    for layer in target.layers:
        if not layer.weights:
            continue  # inputs, activations, pooling, dropout: nothing to copy
        path = prefix + layer.name
        other = by_name.get(layer.name)
        if other is None:
            skipped[path] = "no layer of that name in the source"
            continue
        if isinstance(layer, keras.Model) and isinstance(other, keras.Model):
            values += _copy(layer, other, path + "/", copied, skipped)
            continue
        mine, theirs = layer.get_weights(), other.get_weights()
        if [w.shape for w in mine] != [w.shape for w in theirs]:
            skipped[path] = f"weight shapes {_shapes(mine)} here, {_shapes(theirs)} in the source"
            continue
        layer.set_weights(theirs)
        copied.append(path)
        values += sum(int(w.size) for w in theirs)
    return values


def copy_matching(model: Any, source: InitSource) -> dict[str, Any]:
    """Copy every layer of ``source.model`` whose name and weight shapes match into ``model``.

    Returns the summary (``copied``: layer paths, ``skipped``: {layer path: reason},
    ``values``: weights copied, and what ``init_from`` resolved to); no layer in common is
    a :class:`ConfigError`.
    """
    copied: list[str] = []
    skipped: dict[str, str] = {}
    values = _copy(model, source.model, "", copied, skipped)
    if not copied:
        mine = [layer.name for layer in model.layers if layer.weights]
        theirs = [layer.name for layer in source.model.layers if layer.weights]
        reasons = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:SHOWN])
        raise ConfigError(
            bad_value(
                KEY,
                source.init_from,
                "a model with at least one layer of the same name and weight shapes as this "
                f"one, to copy; none in common (this model: {_names(mine) or 'no weights'}; "
                f"the source: {_names(theirs) or 'no weights'}; {reasons or 'nothing to compare'})",
            )
        )
    return {
        "init_from": source.init_from,
        "registered_model": source.name,
        "version": source.version,
        "copied": copied,
        "skipped": skipped,
        "values": values,
    }


def warm_start(
    model: Any,
    init_from: str,
    tracking: TrackingConfig | None = None,
    source: InitSource | None = None,
) -> dict[str, Any]:
    """Load ``init_from`` (unless ``source`` is given), copy the matching layers into
    ``model``, print one summary line and return the summary."""
    src = source or load_init_source(init_from, tracking)
    summary = copy_matching(model, src)
    print(summary_line(summary))
    return summary


def summary_line(summary: dict[str, Any]) -> str:
    where = summary["init_from"] + (f" (version {summary['version']})" if summary.get("version") else "")
    copied, skipped = summary["copied"], summary["skipped"]
    line = f"warm start from {where}: copied {len(copied)} layers ({_names(copied)}; {summary['values']} weights)"
    if skipped:
        line += f", skipped {len(skipped)}: " + "; ".join(f"{k} ({v})" for k, v in list(skipped.items())[:SHOWN])
    return line


def run_tags(summary: dict[str, Any]) -> dict[str, Any]:
    """What the train stage's MLflow run records about its warm start (empty: none)."""
    if not summary:
        return {}
    tags = {
        "model.init_from": summary["init_from"],
        "model.init_from.layers_copied": len(summary["copied"]),
        "model.init_from.layers_skipped": ",".join(summary["skipped"]) or "none",
    }
    if summary.get("version"):
        tags["model.init_from.version"] = summary["version"]
    return tags


def train_info(summary: dict[str, Any]) -> dict[str, Any]:
    """The warm start as reports/train.json records it (a registered version DVC cannot see)."""
    return {
        "init_from": summary["init_from"],
        "version": summary.get("version") or None,
        "layers_copied": list(summary["copied"]),
        "layers_skipped": dict(summary["skipped"]),
    }
