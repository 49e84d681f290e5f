"""The validated config schema: every knob gapline reads, its type, its default and its range.

Hydra checks types and unknown keys while composing (the dataclasses below are registered in
its ConfigStore as ``gapline_schema``); :func:`gapline.config.checks.validate` checks ranges,
choices and the keys that depend on each other, which OmegaConf cannot express. Both report
one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gapline.config.metrics import FINAL_METRICS, HEADLINE, TASK_NAMES, monitors

SCHEMA_NAME = "gapline_schema"
# A registered model as model.init_from: models:/NAME@ALIAS or models:/NAME/VERSION.
MODELS_SCHEME = "models:/"

DATA_SOURCES = ("digits", "breast_cancer", "diabetes", "npz", "csv", "parquet", "image_folder")
TABLE_SOURCES = ("csv", "parquet")  # tables as they come: typed columns, missing cells (gapline.data.table)
MISSING_TARGET = ("drop", "fail")
BUILTIN_SOURCES = DATA_SOURCES[:3]  # scikit-learn's bundled sets (gapline.data.bundled); the rest read data.path
# What is predicted (task.type); auto infers it from the labels where that is unambiguous.
TASKS = ("auto", *TASK_NAMES)
LOSSES = ("auto", "crossentropy", "mse", "mae", "huber")
CLASS_WEIGHTS = ("none", "balanced")
COLOR_MODES = ("grayscale", "rgb")
ON_CORRUPT = ("skip", "fail")
MODEL_FAMILIES = ("mlp", "cnn", "custom", "backbone")
# model.hidden_units / model.conv_filters: sized from the input (gapline.models.sizing)
AUTO_SIZE = "auto"
# keras.applications constructors gapline builds as backbones (input at least 32x32).
BACKBONES = ("MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "ResNet50", "MobileNetV2", "DenseNet121")
ACTIVATIONS = ("relu", "gelu", "elu", "tanh", "sigmoid", "selu", "swish")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
ACCELERATORS = ("auto", "cpu", "gpu")
# Early stopping's monitor: the loss, or one of a task's per-epoch metrics on validation, or
# (training mode) its running metric on the training batches (metrics.monitors, every task).
MONITORS = tuple(dict.fromkeys(m for task in TASK_NAMES for m in monitors(task)))
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DISTRIBUTIONS = ("none", "mirrored", "multi_worker")
# train.verbose: a live bar on a terminal and lines otherwise (auto), always one, or silence.
VERBOSITY = ("auto", "bar", "lines", "quiet")
# Keys that change what is printed or how fast, never a byte of the data or the model (and
# data.dep, which only restates source and path): left out of every digest of "the config"
# (resume, retrain, study cache) and of the train stage's DVC params, so that changing them
# retrains nothing.
OUTPUT_ONLY = {"data": ("workers", "dep"), "train": ("verbose", "progress_every")}
# The config groups that decide a trained model, in pipeline order: the one definition behind
# retrain's config digest, the train stage's backup key and the study's job key.
MODEL_GROUPS = ("data", "task", "augment", "model", "regularization", "train")
OBJECTIVES = ("val_loss", "val_loss_plus_gap", "val_error", "val_nll")
# retrain.metric: a split and a task's headline metric (accuracy, AUC, RMSE) or one of
# regression's other metrics (MAE, R²); rmse and mae are errors (lower is better).
# auto: the task's headline on the test split (test_accuracy, test_auc or test_rmse).
RETRAIN_METRICS = (
    "auto",
    *(f"{split}_{m}" for split in ("test", "val") for m in dict.fromkeys([*HEADLINE.values(), *FINAL_METRICS["regression"]])),
)
# retrain.drift: what the drift check between the champion's training data and the current
# data does (gapline.retrain.drift): report only; train only on drift or more rows; block
# promotion (and training) when the data drifted beyond retrain.max_drift.
DRIFT_POLICIES = ("report", "require", "block")


@dataclass
class ColumnsConfig:
    """csv and parquet: the role of feature columns the inference would get wrong (numbers
    are numeric, text and booleans categorical), and how categories are encoded."""

    # integer codes that name categories (a zip code, a product id), or text to keep as text
    categorical: list[str] = field(default_factory=list)
    # columns to read as numbers (every filled cell must parse)
    numeric: list[str] = field(default_factory=list)
    # identifiers and other columns the model must not see
    drop: list[str] = field(default_factory=list)
    # a categorical column with more training values than this gets an embedding, else one-hot
    one_hot_max: int = 16
    # values seen fewer times than this in the training split share the out-of-vocabulary bucket
    min_count: int = 1


@dataclass
class DataConfig:
    """Where the data comes from and how it is split."""

    source: str = "digits"
    path: str = "data/raw"
    # What the prepare stage depends on in dvc.yaml, composed from source and path (conf/
    # config.yaml), never set by hand: data.path for a source read from files; for the built-in
    # sets, which load from scikit-learn, their loader's module, so files under data/raw/ do
    # not mark the default pipeline as changed.
    dep: str = "src/gapline/data/bundled.py"
    # csv: the target column (a class label, a 0/1 label or a number, per task.type)
    label_column: str = "label"
    # csv, multi-label: several 0/1 target columns (then label_column is not read)
    label_columns: list[str] = field(default_factory=list)
    # csv, parquet: feature column roles and category encoding (else inferred)
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    # csv, parquet: rows without a target are dropped (a warning, counted in meta.json) or refused
    missing_target: str = "drop"
    # Tabular data: the model standardizes each feature with the training split's mean and
    # std (a layer of the saved model, so it serves raw features). Images stay uint8 pixels,
    # scaled to [0, 1] by the model's first layer (pixel_scale).
    standardize: bool = True
    image_size: list[int] = field(default_factory=lambda: [32, 32])
    color_mode: str = "grayscale"
    on_corrupt: str = "fail"
    # image folders: processes that decode the images, in chunks (0: every core this process
    # may use); the result is the same for any number
    workers: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    train_fraction: float = 1.0
    seed: int = 42
    # Keep only the samples of these classes (names as in meta.json's class_names; digits are
    # "0".."9"), before the split; empty: every class. At least 2, each named once.
    classes: list[str] = field(default_factory=list)


@dataclass
class TaskConfig:
    """What the model predicts, and the loss and metrics that go with it (gapline.config.tasks)."""

    # auto | multiclass | binary | multilabel | regression; auto reads the labels and asks
    # (one error line) when they fit more than one task.
    type: str = "auto"
    # auto: cross-entropy for classification, mse for regression; regression may use mae or
    # huber (on the standardized target: huber_delta is in standard deviations).
    loss: str = "auto"
    huber_delta: float = 1.0
    # binary and multilabel: a label is predicted at probability >= threshold
    threshold: float = 0.5
    # none | balanced: weight each class (binary, multiclass) by n / (classes * its count)
    class_weight: str = "none"
    # multiclass with more than top_k classes: also report top-k accuracy (0: never)
    top_k: int = 5
    # expected calibration error over this many equal-width confidence bins
    calibration_bins: int = 15
    # a CSV/Parquet table's categorical column: reports/breakdown.json also scores the test
    # split per category of it (and its missing cells); empty: per class, label or range only
    breakdown_by: str = ""


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
    none stands in as src/gapline/models/saving.py (already a dependency of train and evaluate)."""

    # the builder's top-level package folder, or its lone module file
    builder: str = "src/gapline/models/saving.py"
    weights: str = "src/gapline/models/saving.py"
    init_from: str = "src/gapline/models/saving.py"


@dataclass
class ModelConfig:
    """Which network: gapline's ``mlp`` (dense) and ``cnn`` (weight sharing), a user's own
    ``custom`` builder, or a keras.applications ``backbone`` with a head."""

    family: str = "mlp"
    # Layer sizes: a list, or ``auto``: chosen from the input when the model is built
    # (gapline.models.sizing), and logged as the run's params. Typed Any: OmegaConf has no
    # union of a string and a list; config/checks.py checks the values.
    hidden_units: Any = "auto"
    activation: str = "relu"
    conv_filters: Any = "auto"
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
    # Weight EMA momentum (e.g. 0.99): the averaged weights are validated and kept; 0 = off.
    ema: float = 0.0
    seed: int = 42
    deterministic: bool = True
    accelerator: str = "auto"
    precision: str = "float32"
    # Train-set samples evaluated in inference mode each epoch for the gap (0 = all).
    gap_eval_samples: int = 2048
    # Bytes of activations one prediction call may take (gapline.models.memory): the gap callback,
    # validation, evaluate and retraining's scoring size their calls from it, not in rows.
    inference_memory: str = "256MiB"
    # CPU threads for the backend's kernels (0 = its default: all cores).
    threads: int = 0
    # Training steps per compiled call (0 = auto: a whole epoch, at most 64 steps); always
    # the largest divisor of the epoch's steps up to this, so a call never crosses an epoch.
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
    # Progress while training (the train stage only; sweeps and the study show their jobs):
    # auto = a live bar on a terminal, one line per epoch otherwise (DVC, cron, container
    # logs); bar; lines; quiet. `gapline train --quiet` is train.verbose=quiet.
    verbose: str = "auto"
    # lines: at most one line per this many seconds (the first and last epoch always), and a
    # line inside an epoch that runs longer than this; 0 = a line at the end of every epoch.
    progress_every: float = 10.0


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
class TuneConfig:
    """``gapline tune``: Optuna's TPE sampler searches ``space`` on validation only (``objective``,
    the study's val_nll by default); the winner becomes conf/experiment/tuned_<name>.yaml."""

    # the preset's name (tuned_<name>); empty: <data.source>_<model.family>
    name: str = ""
    # the budget: at most ``trials`` trials, and no new one after ``minutes`` (0: no limit)
    trials: int = 20
    minutes: float = 0.0
    seed: int = 0  # the sampler's
    objective: str = "val_nll"
    out_dir: str = "reports/tune"  # <out_dir>/<name>/: the trials' cache, trials.csv, best.json
    # config key -> Hydra's Optuna sweeper syntax: interval(a, b), tag(log, interval(a, b)),
    # choice(a, b, ...), range(a, b, step); nested like the config (tune.space.train.learning_rate)
    space: dict[str, Any] = field(default_factory=dict)


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
    # Tuned arms: each arm named here first trains one trial per point of its grid (the
    # product of its keys' values, a Hydra override each) at the first seed, keeps the point
    # with the best ``objective`` on validation (ties: the earlier point), and only then
    # runs its seeds. ``tune: false`` runs every arm as listed (the quick, untuned look).
    tune: bool = True
    search: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    # What a tuned arm's trials are ranked by on validation (one of sweep.objective's choices).
    # val_nll, not val_loss: the loss includes the weight penalty and label smoothing, so it
    # ranks a stronger L1/L2 or smoothing worse even where it predicts the labels better.
    objective: str = "val_nll"
    # The arm the others are compared with (paired by seed, Holm-corrected); a transfer_X arm
    # is compared with scratch_X instead.
    baseline: str = "baseline"
    # Two-sided level of the confidence intervals and the paired tests.
    alpha: float = 0.05


@dataclass
class SweepConfig:
    """What a Hydra sweep job returns to the sweeper (Optuna minimizes it)."""

    # val_loss | val_loss_plus_gap (val_loss + gap_penalty * max(0, gap_loss_val)) | val_error
    # | val_nll (the log-loss without smoothing or penalties; a regression's val_rmse)
    objective: str = "val_loss"
    gap_penalty: float = 1.0


@dataclass
class RetrainConfig:
    """``gapline retrain``: when a newly trained challenger replaces the ``champion``.

    Promotion needs the challenger to beat the champion by ``margin`` on ``metric``, to reach
    ``min_score`` (scores) or stay within ``max_error`` (errors), and a gap on that metric of at
    most ``max_gap`` (scores) or ``max_relative_gap`` (errors); every score is measured on the
    current splits. For scores (accuracy, AUC, R²) margin and gap are absolute (0.01 = one
    point); for errors (rmse, mae), whose units are the target's, they are relative: the
    challenger's error at most ``champion * (1 - margin)``, and
    ``(split error - train error) / train error <= max_relative_gap``.
    """

    metric: str = "auto"
    margin: float = 0.0
    max_gap: float = 0.05
    max_relative_gap: float = 0.5
    # Absolute quality floor of a score: the first champion must reach it, and no later one may
    # fall below it. Errors (rmse, mae) use max_error instead, a ceiling (.inf: none).
    min_score: float = 0.9
    max_error: float = float("inf")
    # The drift check before training (docs/retraining.md): report (log it, decide nothing),
    # require (data-only changes retrain only when the data drifted or grew) or block (data
    # that drifted beyond max_drift is not trained on or promoted: exit 3).
    drift: str = "report"
    # The data drifted when more than this share of its columns (features or image statistics,
    # and the label) drifted, each by its own test at p < 0.05.
    max_drift: float = 0.5
    # Held (flock) while a retrain or promote runs; relative to the project root.
    lock_file: str = ".gapline/retrain.lock"
    # The decision, both scores and the reason, as JSON; relative to the project root.
    report: str = "reports/retrain.json"
    # A DVC remote the team shares: ``pull`` what it holds before comparing (a retrain that
    # starts from an empty clone); ``push`` the new champion's outputs before its alias moves,
    # so the champion's run can be checked out anywhere. ``remote``: its name in .dvc/config
    # ('' = the default remote).
    pull: bool = False
    push: bool = False
    remote: str = ""


@dataclass
class MetaConfig:
    """Provenance of params.yaml: the digest of conf/ it was composed from."""

    conf_digest: str = ""


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)


def register_schema() -> None:
    """Make ``gapline_schema`` available to Hydra (our compose and DVC's alike)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)
