"""Range, choice and cross-key validation of a :class:`gapline.config.schema.Config`: what the
schema's types cannot say (a rate below 1, one value per block, a key only its model family
reads), each failure one line naming the key, the value and what is allowed."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from gapline.config.schema import (
    ACCELERATORS,
    ACTIVATIONS,
    AUTO_SIZE,
    BACKBONES,
    CLASS_WEIGHTS,
    COLOR_MODES,
    DATA_SOURCES,
    DISTRIBUTIONS,
    DRIFT_POLICIES,
    LOSSES,
    MISSING_TARGET,
    MODEL_FAMILIES,
    MODELS_SCHEME,
    MONITORS,
    OBJECTIVES,
    ON_CORRUPT,
    OPTIMIZERS,
    PRECISIONS,
    RETRAIN_METRICS,
    TABLE_SOURCES,
    TASKS,
    VERBOSITY,
    Config,
    FineTuneConfig,
    ModelConfig,
    RegularizationConfig,
)
from gapline.config.tasks import check
from gapline.core.errors import ConfigError, bad_value


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(bad_value(key, value, "one of " + ", ".join(allowed)))


def config_path(cfg: Any, key: str) -> bool:
    """Whether ``key`` names a field of the config (``regularization.l2``) or a top-level group
    (``augment``, set to one of its options)."""
    node = cfg
    for part in key.split("."):
        if isinstance(node, dict):
            if part not in node:
                return False
            node = node[part]
        elif dataclasses.is_dataclass(node) and part in {f.name for f in dataclasses.fields(node)}:
            node = getattr(node, part)
        else:
            return False
    return True


def _range(
    key: str,
    value: float,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = math.isfinite(value) or (high == math.inf and value == math.inf and not high_open)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        lb = "(" if low_open else "["
        hb = ")" if high_open or high == math.inf else "]"
        hi = "inf" if high == math.inf else f"{high:g}"
        raise ConfigError(bad_value(key, value, f"a number in {lb}{low:g}, {hi}{hb}"))


MIN_BYTES = 1 << 20
_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_BYTES_ALLOWED = "a byte count of at least 1MiB: an integer of bytes (268435456) or a number with KiB, MiB, GiB, KB, MB or GB (256MiB)"


def byte_size(key: str, value: object) -> int:
    """``value`` (``268435456``, ``"256MiB"``, ``"1.5GiB"``) as bytes; a :class:`ConfigError`
    naming ``key`` otherwise."""
    match = _SIZE.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ConfigError(bad_value(key, value, _BYTES_ALLOWED))
    size = int(float(match.group(1)) * _UNITS[unit])
    if size < MIN_BYTES:
        raise ConfigError(bad_value(key, value, _BYTES_ALLOWED))
    return size


def _int_min(key: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(bad_value(key, value, f"an integer >= {low}"))


def _positive_ints(key: str, values: list[int], *, allow_empty: bool) -> None:
    if not values and not allow_empty:
        raise ConfigError(bad_value(key, list(values), "a non-empty list of positive integers"))
    for v in values:
        if v < 1:
            raise ConfigError(bad_value(key, list(values), "a list of positive integers"))


def _sizes(key: str, value: Any, *, allow_empty: bool) -> None:
    """``auto`` (the family sizes itself from its input) or a list of positive integers."""
    if value == AUTO_SIZE:
        return
    nonempty = "" if allow_empty else "non-empty "
    allowed = f"auto (sized from the input) or a {nonempty}list of positive integers"
    if not isinstance(value, list | tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ConfigError(bad_value(key, value, allowed))
    if (not value and not allow_empty) or any(v < 1 for v in value):
        raise ConfigError(bad_value(key, list(value), allowed))


def validate(cfg: Config) -> Config:
    """Check every range and choice, group by group in the order of the config (the first bad
    value is the one reported); return ``cfg`` unchanged so calls can chain."""
    for check_group in GROUP_CHECKS:
        check_group(cfg)
    return cfg


def _data(cfg: Config) -> None:
    """The data source, its split fractions and the keys one source reads."""
    d = cfg.data
    _choice("data.source", d.source, DATA_SOURCES)
    _choice("data.color_mode", d.color_mode, COLOR_MODES)
    _choice("data.on_corrupt", d.on_corrupt, ON_CORRUPT)
    _int_min("data.workers", d.workers, 0)
    if d.source != "digits" and not d.path:
        raise ConfigError(bad_value("data.path", d.path, f"a file or folder for data.source={d.source}"))
    if len(d.image_size) != 2 or any(s < 1 for s in d.image_size):
        raise ConfigError(bad_value("data.image_size", list(d.image_size), "[height, width], both >= 1"))
    _range("data.val_fraction", d.val_fraction, 0.0, 1.0, low_open=True, high_open=True)
    _range("data.test_fraction", d.test_fraction, 0.0, 1.0, low_open=True, high_open=True)
    if d.val_fraction + d.test_fraction >= 1.0:
        raise ConfigError(
            bad_value(
                "data.val_fraction+data.test_fraction",
                round(d.val_fraction + d.test_fraction, 6),
                "a sum below 1 so that some data is left to train on",
            )
        )
    _range("data.train_fraction", d.train_fraction, 0.0, 1.0, low_open=True)
    _validate_classes(list(d.classes))
    if any(not str(c).strip() for c in d.label_columns) or len(set(d.label_columns)) != len(d.label_columns):
        raise ConfigError(bad_value("data.label_columns", list(d.label_columns), "distinct non-empty column names"))
    if d.label_columns and d.source not in TABLE_SOURCES:
        raise ConfigError(bad_value("data.label_columns", list(d.label_columns), f"empty: it is read by data.source=csv or parquet only, not {d.source}"))
    _choice("data.missing_target", d.missing_target, MISSING_TARGET)
    c = d.columns
    for key in ("categorical", "numeric", "drop"):
        names = [str(n) for n in getattr(c, key)]
        if any(not n.strip() for n in names) or len(set(names)) != len(names):
            raise ConfigError(bad_value(f"data.columns.{key}", names, "distinct non-empty column names"))
        if names and d.source not in TABLE_SOURCES:
            raise ConfigError(bad_value(f"data.columns.{key}", names, f"empty: it is read by data.source=csv or parquet only, not {d.source}"))
    _int_min("data.columns.one_hot_max", c.one_hot_max, 1)
    _int_min("data.columns.min_count", c.min_count, 1)


def _task(cfg: Config) -> None:
    """What is predicted and how it is scored."""
    tk = cfg.task
    _choice("task.type", tk.type, TASKS)
    _choice("task.loss", tk.loss, LOSSES)
    _range("task.huber_delta", tk.huber_delta, 0.0, 1e6, low_open=True)
    _range("task.threshold", tk.threshold, 0.0, 1.0, low_open=True, high_open=True)
    _choice("task.class_weight", tk.class_weight, CLASS_WEIGHTS)
    _int_min("task.top_k", tk.top_k, 0)
    _int_min("task.calibration_bins", tk.calibration_bins, 1)


def _augment(cfg: Config) -> None:
    """Offline copies and online augmentation: each range a transform can take."""
    a = cfg.augment
    _int_min("augment.copies", a.copies, 0)
    _range("augment.shift", a.shift, 0.0, 0.5)
    _range("augment.rotation", a.rotation, 0.0, 180.0)
    _range("augment.zoom", a.zoom, 0.0, 0.9)
    _range("augment.noise_std", a.noise_std, 0.0, 1.0)
    o = a.online
    _range("augment.online.shift", o.shift, 0.0, 0.5)
    _range("augment.online.rotation", o.rotation, 0.0, 180.0)
    _range("augment.online.zoom", o.zoom, 0.0, 0.9)
    _range("augment.online.noise_std", o.noise_std, 0.0, 1.0)


def _model(cfg: Config) -> None:
    """The family, its layer sizes and the keys one family reads."""
    m = cfg.model
    _choice("model.family", m.family, MODEL_FAMILIES)
    _choice("model.activation", m.activation, ACTIVATIONS)
    _sizes("model.hidden_units", m.hidden_units, allow_empty=True)
    _sizes("model.conv_filters", m.conv_filters, allow_empty=False)
    if m.family == "backbone" and m.hidden_units == AUTO_SIZE:
        raise ConfigError(
            bad_value("model.hidden_units", m.hidden_units, "a list of the head's dense blocks for model.family=backbone (e.g. [64])")
        )
    _int_min("model.kernel_size", m.kernel_size, 1)
    _int_min("model.dense_units", m.dense_units, 1)
    _validate_model_source(m)


def _regularization(cfg: Config) -> None:
    """Strengths, rates and the keys that must match the model's blocks."""
    m = cfg.model
    r = cfg.regularization
    _range("regularization.l1", r.l1, 0.0, 1.0)
    _range("regularization.l2", r.l2, 0.0, 1.0)
    _range("regularization.activity_l1", r.activity_l1, 0.0, 1.0)
    _range("regularization.activity_l2", r.activity_l2, 0.0, 1.0)
    for i, strength in enumerate(r.layer_strength):
        _range(f"regularization.layer_strength[{i}]", strength, 0.0, 1e6)
    _range("regularization.dropout", r.dropout, 0.0, 1.0, high_open=True)
    for i, rate in enumerate(r.dropout_rates):
        _range(f"regularization.dropout_rates[{i}]", rate, 0.0, 1.0, high_open=True)
    _range("regularization.input_noise", r.input_noise, 0.0, 10.0)
    _range("regularization.hidden_noise", r.hidden_noise, 0.0, 10.0)
    _range("regularization.weight_noise", r.weight_noise, 0.0, 10.0)
    sizes = m.conv_filters if m.family == "cnn" else m.hidden_units
    if m.family != "custom" and sizes != AUTO_SIZE:  # else: checked once sized (models.sizing)
        check_blocks(m, r)
    _range("regularization.label_smoothing", r.label_smoothing, 0.0, 1.0, high_open=True)
    _range("regularization.max_norm", r.max_norm, 0.0, 1e6)
    es = r.early_stopping
    _choice("regularization.early_stopping.monitor", es.monitor, MONITORS)
    _int_min("regularization.early_stopping.patience", es.patience, 0)
    _range("regularization.early_stopping.min_delta", es.min_delta, 0.0, 1e6)
    _int_min("regularization.early_stopping.start_from_epoch", es.start_from_epoch, 0)



def check_blocks(m: ModelConfig, r: RegularizationConfig) -> None:
    """The regularization keys that must match the model's blocks: at composition for sizes a
    config lists, and again when an ``auto`` family has chosen them (models.sizing)."""
    blocks = len(m.conv_filters) + 1 if m.family == "cnn" else len(m.hidden_units)
    for key in ("layer_strength", "dropout_rates"):
        values = getattr(r, key)
        # a custom model's blocks are its builder's kit.tail() calls: counted when it builds
        if values and len(values) != blocks and m.family != "custom":
            raise ConfigError(
                bad_value(
                    f"regularization.{key}",
                    list(values),
                    f"an empty list or one value per hidden block ({blocks} for model.family={m.family})",
                )
            )
    if r.tie_weights and m.family != "custom":
        key = "model.conv_filters" if m.family == "cnn" else "model.hidden_units"
        sizes = m.conv_filters if m.family == "cnn" else m.hidden_units
        if len(sizes) < 3 or len(set(sizes)) != 1:
            raise ConfigError(
                bad_value(
                    key,
                    list(sizes),
                    "at least three blocks of equal width (e.g. [128, 128, 128]) so that blocks "
                    "2..n can share one weight tensor, for regularization.tie_weights=true",
                )
            )
    if r.tie_weights and m.family != "custom" and r.layer_strength and len(set(r.layer_strength[1 : len(sizes)])) > 1:
        raise ConfigError(
            bad_value(
                "regularization.layer_strength",
                list(r.layer_strength),
                "equal strengths for the tied blocks 2..n (they share one kernel)",
            )
        )


def _train(cfg: Config) -> None:
    """The fit: epochs, optimizer, devices, and the combinations Keras cannot run."""
    t = cfg.train
    _int_min("train.epochs", t.epochs, 1)
    _int_min("train.batch_size", t.batch_size, 1)
    _choice("train.optimizer", t.optimizer, OPTIMIZERS)
    _range("train.learning_rate", t.learning_rate, 0.0, 10.0, low_open=True)
    _range("train.ema", t.ema, 0.0, 1.0, high_open=True)
    _choice("train.accelerator", t.accelerator, ACCELERATORS)
    _choice("train.precision", t.precision, PRECISIONS)
    _int_min("train.gap_eval_samples", t.gap_eval_samples, 0)
    byte_size("train.inference_memory", t.inference_memory)
    _int_min("train.threads", t.threads, 0)
    _int_min("train.steps_per_execution", t.steps_per_execution, 0)
    _choice("train.distribute", t.distribute, DISTRIBUTIONS)
    _int_min("train.cpu_replicas", t.cpu_replicas, 0)
    _choice("train.verbose", t.verbose, VERBOSITY)
    _range("train.progress_every", t.progress_every, 0.0)
    if t.distribute == "mirrored" and t.steps_per_execution > 1:
        # Keras 3.15 + MirroredStrategy: a multi-step compiled call fails with "You must feed
        # a value for placeholder tensor" on the first epoch.
        raise ConfigError(
            bad_value("train.steps_per_execution", t.steps_per_execution, "0 or 1 with train.distribute=mirrored")
        )


def _study(cfg: Config) -> None:
    """The regularization study: arms, seeds, the learning curve and the tuning grids."""
    st = cfg.study
    _int_min("study.seeds", st.seeds, 1)
    _int_min("study.jobs", st.jobs, 1)
    for name in st.include:
        if name not in st.arms:
            raise ConfigError(bad_value("study.include", name, "one of the arms: " + ", ".join(st.arms)))
    if st.fractions and st.learning_curve_arm not in st.arms:
        raise ConfigError(
            bad_value("study.learning_curve_arm", st.learning_curve_arm, "one of the arms: " + ", ".join(st.arms))
        )
    for i, f in enumerate(st.fractions):
        _range(f"study.fractions[{i}]", f, 0.0, 1.0, low_open=True)
    for name, grid in st.search.items():
        if name not in st.arms:
            raise ConfigError(bad_value("study.search", name, "an arm to tune, one of: " + ", ".join(st.arms)))
        if not grid:
            raise ConfigError(bad_value(f"study.search.{name}", {}, "at least one key: a list of values"))
        for key, values in grid.items():
            if not config_path(cfg, key):
                raise ConfigError(bad_value(f"study.search.{name}", key, "keys that are config keys (regularization.l2) or groups (augment)"))
            if not values:
                raise ConfigError(bad_value(f"study.search.{name}.{key}", [], "a non-empty list of values"))
    if st.baseline != "baseline" and st.baseline not in st.arms:  # without the default name: no comparison
        raise ConfigError(bad_value("study.baseline", st.baseline, "one of the arms: " + ", ".join(st.arms)))
    _range("study.alpha", st.alpha, 0.0, 0.5, low_open=True)
    _choice("study.objective", st.objective, OBJECTIVES)


def _tune(cfg: Config) -> None:
    """``gapline tune``'s budget, objective and name; its space's keys and syntax are checked
    when it starts (experiments.tune.search_space: parsing needs Hydra)."""
    tu = cfg.tune
    _int_min("tune.trials", tu.trials, 1)
    _range("tune.minutes", tu.minutes, 0.0)
    _choice("tune.objective", tu.objective, OBJECTIVES)
    if tu.name and not re.fullmatch(r"[A-Za-z0-9_]+", tu.name):
        raise ConfigError(bad_value("tune.name", tu.name, "letters, digits and _ (the preset is conf/experiment/tuned_<name>.yaml)"))


def _sweep(cfg: Config) -> None:
    """What a sweep minimizes."""
    _choice("sweep.objective", cfg.sweep.objective, OBJECTIVES)
    _range("sweep.gap_penalty", cfg.sweep.gap_penalty, 0.0, 1e6)


def _retrain(cfg: Config) -> None:
    """The promotion rule, the drift policy and retrain's files."""
    rt = cfg.retrain
    _choice("retrain.metric", rt.metric, RETRAIN_METRICS)
    _range("retrain.margin", rt.margin, 0.0, 1.0)
    _range("retrain.max_gap", rt.max_gap, 0.0, 1.0)
    _range("retrain.max_relative_gap", rt.max_relative_gap, 0.0)
    _range("retrain.min_score", rt.min_score, -1e9, 1.0)
    _range("retrain.max_error", rt.max_error, 0.0)
    _choice("retrain.drift", rt.drift, DRIFT_POLICIES)
    _range("retrain.max_drift", rt.max_drift, 0.0, 1.0)
    for key in ("lock_file", "report"):
        if not getattr(rt, key).strip():
            raise ConfigError(bad_value(f"retrain.{key}", getattr(rt, key), "a non-empty path"))
    if rt.remote != rt.remote.strip() or any(c in rt.remote for c in "/\\:\n\"'"):
        raise ConfigError(bad_value("retrain.remote", rt.remote, "the name of a remote in .dvc/config ('' for the default remote)"))


def _task_fit(cfg: Config) -> None:
    """A metric, monitor or loss the task does not have (task.type known: auto is checked after prepare)."""
    tk = cfg.task
    if tk.type != "auto":  # auto: checked when prepare has read the labels
        check(cfg, tk.type)


def _tracking(cfg: Config) -> None:
    """Where runs and models go."""
    k = cfg.tracking
    _choice("tracking.on_unreachable", k.on_unreachable, ("fail", "local"))
    if k.enabled and not k.experiment:
        raise ConfigError(bad_value("tracking.experiment", k.experiment, "a non-empty experiment name"))
    if k.enabled and not k.registered_model:
        raise ConfigError(
            bad_value("tracking.registered_model", k.registered_model, "a non-empty model name")
        )


# One function per config group, in the config's order; _task_fit needs the whole config.
GROUP_CHECKS = (_data, _task, _augment, _model, _regularization, _train, _study, _tune, _sweep, _retrain, _task_fit, _tracking)


def _validate_classes(classes: list[str]) -> None:
    """``data.classes``: empty, or at least two distinct non-empty names (whether each names a
    class of the source is checked in prepare, where the class names are known)."""
    if not classes:
        return
    if any(not str(c).strip() for c in classes):
        raise ConfigError(bad_value("data.classes", classes, "non-empty class names"))
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise ConfigError(bad_value("data.classes", classes, f"each class named once ({', '.join(repeated)} repeated)"))
    if len(classes) < 2:
        raise ConfigError(
            bad_value("data.classes", classes, "an empty list (every class) or at least 2 class names to classify")
        )


def _validate_model_source(m: ModelConfig) -> None:
    """The family-specific keys: each one read only by its family, so a stray one is an error."""
    if m.family == "custom":
        if not m.builder.strip():
            raise ConfigError(
                bad_value("model.builder", m.builder, "package.module:function for model.family=custom")
            )
        builder_parts(m.builder)
    else:
        for key in ("builder", "kwargs"):
            if getattr(m, key):
                raise ConfigError(
                    bad_value(f"model.{key}", getattr(m, key), f"empty: it is read by model.family=custom only, not {m.family}")
                )
    if m.family == "backbone":
        _choice("model.backbone", m.backbone, BACKBONES)
        _int_min("model.input_size", m.input_size, 32)
    else:
        plain, fine = ModelConfig(), FineTuneConfig()
        defaults = {
            "backbone": (m.backbone, plain.backbone),
            "input_size": (m.input_size, plain.input_size),
            "weights": (m.weights, plain.weights),
            "freeze": (m.freeze, plain.freeze),
            "fine_tune.epochs": (m.fine_tune.epochs, fine.epochs),
            "fine_tune.unfreeze": (m.fine_tune.unfreeze, fine.unfreeze),
            "fine_tune.learning_rate_scale": (m.fine_tune.learning_rate_scale, fine.learning_rate_scale),
        }
        for key, (value, default) in defaults.items():
            if value != default:
                raise ConfigError(
                    bad_value(f"model.{key}", value, f"{default}: it is read by model.family=backbone only, not {m.family}")
                )
    if not m.weights.strip():
        raise ConfigError(bad_value("model.weights", m.weights, "none or the path of a local weights file"))
    if m.freeze not in ("all", "none") and not m.freeze.strip():
        raise ConfigError(bad_value("model.freeze", m.freeze, "all, none, a layer name or a layer index"))
    ft = m.fine_tune
    _int_min("model.fine_tune.epochs", ft.epochs, 0)
    if ft.unfreeze != "all" and not (ft.unfreeze.isdigit() and int(ft.unfreeze) >= 1):
        raise ConfigError(bad_value("model.fine_tune.unfreeze", ft.unfreeze, "all or a number of top layers >= 1"))
    _range("model.fine_tune.learning_rate_scale", ft.learning_rate_scale, 0.0, 1.0, low_open=True)
    if m.init_from and m.init_from.startswith(MODELS_SCHEME) and len(m.init_from) <= len(MODELS_SCHEME):
        raise ConfigError(bad_value("model.init_from", m.init_from, "a .keras file or models:/NAME@ALIAS"))


def builder_parts(builder: str) -> tuple[str, str]:
    """``(module, function)`` of ``package.module:function`` or ``package.module.function``."""

    text = builder.strip()
    module, sep, func = text.partition(":")
    if not sep:
        module, _, func = text.rpartition(".")
    ident = r"[A-Za-z_][A-Za-z0-9_]*"
    if not (re.fullmatch(rf"{ident}(\.{ident})*", module or "") and re.fullmatch(ident, func or "")):
        raise ConfigError(
            bad_value("model.builder", builder, "an import path package.module:function (or package.module.function)")
        )
    return module, func


def from_container(raw: Any) -> Config:
    """Turn a plain dict or DictConfig into a validated :class:`Config`.

    Type errors and unknown keys are caught by OmegaConf's structured merge and rephrased as
    one line; ranges by :func:`validate`.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), raw)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(omegaconf_error_line(exc)) from None
    assert isinstance(obj, Config)
    return validate(obj)


def omegaconf_error_line(exc: BaseException) -> str:
    """One line from OmegaConf's multi-line messages: key, value, what is allowed."""

    key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
    msg = str(exc).splitlines()[0].strip() if str(exc) else type(exc).__name__
    owner = getattr(exc, "object_type", None)
    if "not in" in msg and owner is not None and dataclasses.is_dataclass(owner):
        allowed = ", ".join(f.name for f in dataclasses.fields(owner))
        msg = f"unknown key: expected one of {allowed}"
    if key:
        return f"{key}: {msg}"
    return msg
