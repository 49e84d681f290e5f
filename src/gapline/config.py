"""The validated config schema: every knob gapline reads, its type, its default and its range.

Hydra checks types and unknown keys while composing (the dataclasses below are registered in
its ConfigStore as ``gapline_schema``); :func:`validate` checks ranges and choices, which
OmegaConf cannot express. Both report one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, bad_value

SCHEMA_NAME = "gapline_schema"

DATA_SOURCES = ("digits", "npz", "csv", "image_folder")
COLOR_MODES = ("grayscale", "rgb")
ON_CORRUPT = ("skip", "fail")
MODEL_FAMILIES = ("mlp", "cnn", "custom", "backbone")
# keras.applications constructors gapline builds as backbones (input at least 32x32).
BACKBONES = ("MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "ResNet50", "MobileNetV2", "DenseNet121")
ACTIVATIONS = ("relu", "gelu", "elu", "tanh", "sigmoid", "selu", "swish")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
ACCELERATORS = ("auto", "cpu", "gpu")
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DISTRIBUTIONS = ("none", "mirrored", "multi_worker")
OBJECTIVES = ("val_loss", "val_loss_plus_gap", "val_error")
RETRAIN_METRICS = ("test_accuracy", "val_accuracy")


@dataclass
class DataConfig:
    """Where the data comes from and how it is split."""

    source: str = "digits"
    path: str = "data/raw"
    label_column: str = "label"
    image_size: list[int] = field(default_factory=lambda: [32, 32])
    color_mode: str = "grayscale"
    on_corrupt: str = "fail"
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    train_fraction: float = 1.0
    seed: int = 42
    # Keep only the samples of these classes (names as in meta.json's class_names; digits are
    # "0".."9"), before the split; empty: every class. At least 2, each named once.
    classes: list[str] = field(default_factory=list)


@dataclass
class TransformConfig:
    """The label-preserving transforms, the same keys offline and online."""

    shift: float = 0.0
    rotation: float = 0.0
    zoom: float = 0.0
    flip_horizontal: bool = False
    noise_std: float = 0.0


@dataclass
class OnlineAugmentConfig(TransformConfig):
    """Keras preprocessing layers inside the model: a fresh random variant every epoch,
    active in training only (inference sees the image unchanged)."""

    enabled: bool = False


@dataclass
class AugmentConfig(TransformConfig):
    """Offline (the augment stage: ``copies`` extra samples per image, seeded) and online."""

    copies: int = 0
    seed: int = 0
    online: OnlineAugmentConfig = field(default_factory=OnlineAugmentConfig)


@dataclass
class FineTuneConfig:
    """Phase 2 of a backbone fit: unfreeze the backbone (batch norm stays in inference mode)
    and train on at a lower learning rate; ``epochs=0`` keeps the single frozen phase."""

    epochs: int = 0
    # all, or the number of the backbone's top layers to unfreeze
    unfreeze: str = "all"
    learning_rate_scale: float = 0.1


@dataclass
class ModelDepsConfig:
    """The files behind this model config, as train dependencies in dvc.yaml. Composed from
    builder, weights and init_from (conf/config.yaml), never set by hand; a key that names
    none stands in as src/gapline/model_io.py (already a dependency of train and evaluate)."""

    # the builder's top-level package folder, or its lone module file
    builder: str = "src/gapline/model_io.py"
    weights: str = "src/gapline/model_io.py"
    init_from: str = "src/gapline/model_io.py"


@dataclass
class ModelConfig:
    """Which network: gapline's ``mlp`` (dense) and ``cnn`` (weight sharing), a user's own
    ``custom`` builder, or a keras.applications ``backbone`` with a head."""

    family: str = "mlp"
    hidden_units: list[int] = field(default_factory=lambda: [256, 256])
    activation: str = "relu"
    conv_filters: list[int] = field(default_factory=lambda: [16, 32])
    kernel_size: int = 3
    dense_units: int = 64
    # custom: ``package.module:function`` (or ``package.module.function``), called with a
    # gapline.models.kit.ModelKit and ``kwargs``; it returns an uncompiled keras.Model.
    builder: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    # backbone: a keras.applications network, its input resized to input_size x input_size
    backbone: str = "MobileNetV3Small"
    input_size: int = 32
    # none (random init) or a local weights file (.weights.h5 / .h5); nothing is downloaded
    weights: str = "none"
    # all | none | a layer name or index: the backbone layers up to it (included) are frozen
    freeze: str = "all"
    fine_tune: FineTuneConfig = field(default_factory=FineTuneConfig)
    # Warm start (any family): copy the weights of a previous model, layer by layer where name
    # and shape match: a .keras file or models:/NAME@ALIAS (or models:/NAME/VERSION).
    init_from: str = ""
    deps: ModelDepsConfig = field(default_factory=ModelDepsConfig)


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    monitor: str = "val_loss"
    patience: int = 10
    min_delta: float = 0.0
    restore_best_weights: bool = True
    start_from_epoch: int = 0


@dataclass
class RegularizationConfig:
    """Every technique against overfitting that the model builder and trainer apply."""

    # Weight penalties on kernels; ``layer_strength`` scales them per hidden block (empty: 1).
    l1: float = 0.0
    l2: float = 0.0
    bias_penalty: bool = False
    activity_l1: float = 0.0
    activity_l2: float = 0.0
    layer_strength: list[float] = field(default_factory=list)
    # Dropout after each hidden block (SpatialDropout2D in conv blocks); ``dropout_rates``
    # gives one rate per block and overrides ``dropout`` when set.
    dropout: float = 0.0
    dropout_rates: list[float] = field(default_factory=list)
    batch_norm: bool = False
    # Gaussian noise, training only: on inputs, on hidden activations, and on the weights
    # themselves (the stored weights stay clean and are what inference uses).
    input_noise: float = 0.0
    hidden_noise: float = 0.0
    weight_noise: float = 0.0
    # Parameter tying: hidden blocks of equal shape reuse one layer (one weight tensor).
    tie_weights: bool = False
    label_smoothing: float = 0.0
    max_norm: float = 0.0
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 0.001
    seed: int = 42
    deterministic: bool = True
    accelerator: str = "auto"
    precision: str = "float32"
    # Train-set samples evaluated in inference mode each epoch for the gap (0 = all).
    gap_eval_samples: int = 2048
    # CPU threads for the backend's kernels (0 = its default: all cores).
    threads: int = 0
    # Training steps per compiled call (0 = auto: a whole epoch, at most 64 steps).
    steps_per_execution: int = 0
    # XLA compilation of the train step; off by default (slower to start on small CPU runs).
    jit_compile: bool = False
    # Save the training state after every epoch so a killed `train` stage resumes where it was.
    resume: bool = True
    # Data parallelism: none; mirrored (one machine: tf.distribute.MirroredStrategy, one
    # replica per GPU, each batch split between them, gradients all-reduced); multi_worker
    # (several processes or machines: keras.distribution.DataParallel on the JAX backend,
    # one `gapline train` per process, topology from KERAS_DISTRIBUTION_* variables).
    distribute: str = "none"
    # With distribute=mirrored and no GPU: split the CPU into this many logical devices, so
    # the data-parallel path runs (and is tested) without GPUs. 0 = one replica per GPU.
    cpu_replicas: int = 0


@dataclass
class TrackingConfig:
    """MLflow: ``uri`` empty means ``$MLFLOW_TRACKING_URI`` or the embedded sqlite store."""

    enabled: bool = True
    uri: str = ""
    experiment: str = "gapline"
    registered_model: str = "gapline"
    run_name: str = ""
    # CPU/memory (and GPU when present) sampled by MLflow during the run.
    system_metrics: bool = True
    # Per-epoch metrics are queued and sent in batches so logging never stalls training.
    async_logging: bool = True
    # A tracking server that does not answer: stop before training (fail), or log to the
    # embedded store instead (local) with a warning recorded in the run.
    on_unreachable: str = "fail"


@dataclass
class StudyConfig:
    """The regularization study: every arm (a name and its Hydra overrides) × ``seeds``."""

    seeds: int = 3
    jobs: int = 2
    arms: dict[str, list[str]] = field(default_factory=dict)
    # Models trained once, before the arms, for arms to start from (transfer): name -> its
    # overrides; saved as <out_dir>/sources/<name>.keras, which an arm's
    # ``model.init_from=study:<name>`` stands for.
    sources: dict[str, list[str]] = field(default_factory=dict)
    # Arms to run, in this order (empty: all of ``arms``).
    include: list[str] = field(default_factory=list)
    # Learning curve: the arm retrained at these data.train_fraction values (empty: none).
    learning_curve_arm: str = "baseline"
    fractions: list[float] = field(default_factory=list)
    classical: bool = True
    out_dir: str = "reports/study"


@dataclass
class SweepConfig:
    """What a Hydra sweep job returns to the sweeper (Optuna minimizes it)."""

    # val_loss | val_loss_plus_gap (val_loss + gap_penalty * max(0, gap_loss_val)) | val_error
    objective: str = "val_loss"
    gap_penalty: float = 1.0


@dataclass
class RetrainConfig:
    """``gapline retrain``: when a newly trained challenger replaces the ``champion``.

    Promotion needs ``challenger >= champion + margin`` on ``metric`` (higher is better),
    ``challenger >= min_score`` and a gap (train accuracy minus the metric's split accuracy)
    of at most ``max_gap``; every score is measured on the current splits.
    """

    metric: str = "test_accuracy"
    margin: float = 0.0
    max_gap: float = 0.05
    # Absolute quality floor: the first champion must reach it, and no later one may fall below it.
    min_score: float = 0.9
    # Held (flock) while a retrain or promote runs; relative to the project root.
    lock_file: str = ".gapline/retrain.lock"
    # The decision, both scores and the reason, as JSON; relative to the project root.
    report: str = "reports/retrain.json"


@dataclass
class MetaConfig:
    """Provenance of params.yaml: the digest of conf/ it was composed from."""

    conf_digest: str = ""


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)


def register_schema() -> None:
    """Make ``gapline_schema`` available to Hydra (our compose and DVC's alike)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)


# --------------------------------------------------------------------------------------
# Range and choice validation


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(bad_value(key, value, "one of " + ", ".join(allowed)))


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


def _int_min(key: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(bad_value(key, value, f"an integer >= {low}"))


def _positive_ints(key: str, values: list[int], *, allow_empty: bool) -> None:
    if not values and not allow_empty:
        raise ConfigError(bad_value(key, list(values), "a non-empty list of positive integers"))
    for v in values:
        if v < 1:
            raise ConfigError(bad_value(key, list(values), "a list of positive integers"))


def validate(cfg: Config) -> Config:
    """Check every range and choice; return ``cfg`` unchanged so calls can chain."""
    d = cfg.data
    _choice("data.source", d.source, DATA_SOURCES)
    _choice("data.color_mode", d.color_mode, COLOR_MODES)
    _choice("data.on_corrupt", d.on_corrupt, ON_CORRUPT)
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

    m = cfg.model
    _choice("model.family", m.family, MODEL_FAMILIES)
    _choice("model.activation", m.activation, ACTIVATIONS)
    _positive_ints("model.hidden_units", m.hidden_units, allow_empty=True)
    _positive_ints("model.conv_filters", m.conv_filters, allow_empty=False)
    _int_min("model.kernel_size", m.kernel_size, 1)
    _int_min("model.dense_units", m.dense_units, 1)
    _validate_model_source(m)


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
    _range("regularization.input_noise", r.input_noise, 0.0, 10.0)
    _range("regularization.hidden_noise", r.hidden_noise, 0.0, 10.0)
    _range("regularization.weight_noise", r.weight_noise, 0.0, 10.0)
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
    _range("regularization.label_smoothing", r.label_smoothing, 0.0, 1.0, high_open=True)
    _range("regularization.max_norm", r.max_norm, 0.0, 1e6)
    es = r.early_stopping
    _choice("regularization.early_stopping.monitor", es.monitor, MONITORS)
    _int_min("regularization.early_stopping.patience", es.patience, 0)
    _range("regularization.early_stopping.min_delta", es.min_delta, 0.0, 1e6)
    _int_min("regularization.early_stopping.start_from_epoch", es.start_from_epoch, 0)

    t = cfg.train
    _int_min("train.epochs", t.epochs, 1)
    _int_min("train.batch_size", t.batch_size, 1)
    _choice("train.optimizer", t.optimizer, OPTIMIZERS)
    _range("train.learning_rate", t.learning_rate, 0.0, 10.0, low_open=True)
    _choice("train.accelerator", t.accelerator, ACCELERATORS)
    _choice("train.precision", t.precision, PRECISIONS)
    _int_min("train.gap_eval_samples", t.gap_eval_samples, 0)
    _int_min("train.threads", t.threads, 0)
    _int_min("train.steps_per_execution", t.steps_per_execution, 0)
    _choice("train.distribute", t.distribute, DISTRIBUTIONS)
    _int_min("train.cpu_replicas", t.cpu_replicas, 0)
    if t.distribute == "mirrored" and t.steps_per_execution > 1:
        # Keras 3.15 + MirroredStrategy: a multi-step compiled call fails with "You must feed
        # a value for placeholder tensor" on the first epoch.
        raise ConfigError(
            bad_value("train.steps_per_execution", t.steps_per_execution, "0 or 1 with train.distribute=mirrored")
        )

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

    _choice("sweep.objective", cfg.sweep.objective, OBJECTIVES)
    _range("sweep.gap_penalty", cfg.sweep.gap_penalty, 0.0, 1e6)

    rt = cfg.retrain
    _choice("retrain.metric", rt.metric, RETRAIN_METRICS)
    _range("retrain.margin", rt.margin, 0.0, 1.0)
    _range("retrain.max_gap", rt.max_gap, 0.0, 1.0)
    _range("retrain.min_score", rt.min_score, 0.0, 1.0)
    for key in ("lock_file", "report"):
        if not getattr(rt, key).strip():
            raise ConfigError(bad_value(f"retrain.{key}", getattr(rt, key), "a non-empty path"))

    k = cfg.tracking
    _choice("tracking.on_unreachable", k.on_unreachable, ("fail", "local"))
    if k.enabled and not k.experiment:
        raise ConfigError(bad_value("tracking.experiment", k.experiment, "a non-empty experiment name"))
    if k.enabled and not k.registered_model:
        raise ConfigError(
            bad_value("tracking.registered_model", k.registered_model, "a non-empty model name")
        )
    return cfg


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
    if m.init_from and m.init_from.startswith("models:/") and len(m.init_from) <= len("models:/"):
        raise ConfigError(bad_value("model.init_from", m.init_from, "a .keras file or models:/NAME@ALIAS"))


def builder_parts(builder: str) -> tuple[str, str]:
    """``(module, function)`` of ``package.module:function`` or ``package.module.function``."""
    import re

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
    import dataclasses

    key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
    msg = str(exc).splitlines()[0].strip() if str(exc) else type(exc).__name__
    owner = getattr(exc, "object_type", None)
    if "not in" in msg and owner is not None and dataclasses.is_dataclass(owner):
        allowed = ", ".join(f.name for f in dataclasses.fields(owner))
        msg = f"unknown key: expected one of {allowed}"
    if key:
        return f"{key}: {msg}"
    return msg
