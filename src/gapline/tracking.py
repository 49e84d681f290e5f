"""Every MLflow call gapline makes lives here: one seam between the pipeline and the tracker.

One pipeline execution is one MLflow run. The train stage opens it and records its id in
``reports/mlflow_run.json``; evaluate resumes the same run. A stage that fails ends the run
FAILED (KILLED on Ctrl-C or SIGTERM) with the error in the ``error`` tag: no run is left
RUNNING.

What never reaches MLflow: the value of any environment variable whose name contains TOKEN,
PASSWORD, SECRET or KEY (it is replaced by ``***`` in params, tags, the run name and the
logged config), and the password part of a tracking URI.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional
from urllib.parse import urlsplit, urlunsplit

from .config import Config, TrackingConfig
from .errors import GaplineError

DEFAULT_URI = "sqlite:///mlflow.db"
RUN_FILE = Path("reports/mlflow_run.json")
MAX_PARAM_LENGTH = 6000  # MLflow's limit for one param value
MAX_TAG_LENGTH = 8000  # ... and for one tag value
MAX_DIGEST_LENGTH = 36  # ... and for a dataset digest
SECRET_MARKERS = ("TOKEN", "PASSWORD", "SECRET", "KEY")
MIN_SECRET_LENGTH = 8  # shorter values ("1", "true") would redact ordinary params
REDACTED = "***"
# Seconds between system-metric samples unless $MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL says
# otherwise. MLflow's own default (10 s) publishes nothing for runs shorter than that.
SYSTEM_METRICS_INTERVAL = 2
DATASET_CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
# How a store reports that a concurrent writer inserted the same unique row first
# (SQLite, PostgreSQL, MySQL), as raised locally or relayed by a server's REST answer.
CONFLICT = re.compile(r"UNIQUE constraint failed|IntegrityError|duplicate key value|Duplicate entry")
CONFLICT_ATTEMPTS = 4
ALIAS = "challenger"


class TrackingError(GaplineError):
    """The tracking store cannot be used as configured (one line, like every GaplineError)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a CI timeout) turned into an exception so the run is closed KILLED."""


# --------------------------------------------------------------------------------------
# Pure helpers: URIs, params, secrets, provenance
# --------------------------------------------------------------------------------------


# Set by setup() when tracking.on_unreachable=local replaced an unreachable server.
_fallback: dict[str, str] = {}


def project_root() -> Path:
    """Where the embedded store lives: the DVC project root. Queued and ``--temp`` DVC
    experiments run in a throwaway copy but get ``$DVC_ROOT`` pointing at the real project,
    so their runs land in the project's store instead of vanishing with the copy."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd())


def default_uri() -> str:
    return "sqlite:///" + str(project_root() / "mlflow.db") if os.environ.get("DVC_ROOT") else DEFAULT_URI


def resolve_uri(tracking: TrackingConfig) -> str:
    """Config first, then ``$MLFLOW_TRACKING_URI``, then the embedded sqlite store."""
    configured = tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()
    return _fallback.get(configured, configured)


@contextlib.contextmanager
def _store_init_lock(uri: str) -> Iterator[None]:
    """Serialize first contact with a local sqlite store: two processes creating its schema
    at once make MLflow's alembic migration fail ("expected to match one row")."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    db = Path(canonical_uri(uri)[len("sqlite:///") :])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def canonical_uri(uri: str, cwd: Optional[Path] = None) -> str:
    """The store a URI names, comparable across processes: local paths made absolute,
    passwords removed, no trailing slash (``sqlite:///mlflow.db`` → ``sqlite:////abs/mlflow.db``).
    """
    base = Path.cwd() if cwd is None else cwd
    if uri == "databricks":
        return uri
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        return "sqlite:///" + os.path.normpath(base / path) if not path.startswith("/") else uri
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        path = parts.path if parts.scheme == "file" else uri
        return "file://" + os.path.normpath(base / path)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), parts.query, parts.fragment))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → dotted keys (``regularization.early_stopping.patience``)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def is_secret(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def secret_values(environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """Values of the environment's secret-named variables, longest first."""
    env = environment() if environ is None else environ
    found = {v for k, v in env.items() if is_secret(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(found, key=len, reverse=True)


def environment() -> dict[str, str]:
    """A snapshot of ``os.environ`` that another thread may be changing meanwhile.

    Iterating ``os.environ.items()`` looks each key up again, so a variable removed in between
    raises KeyError: MLflow's telemetry thread unsets ``_MLFLOW_TELEMETRY_SESSION_ID`` while
    a Ray worker logs its first child run. Listing the keys is one atomic copy."""
    out = {}
    for key in list(os.environ):
        value = os.environ.get(key)
        if value is not None:
            out[key] = value
    return out


_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/:@\s]+:)[^@/\s]+@")


def redact(text: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """``text`` with secret environment values and URL passwords replaced by ``***``."""
    for value in secret_values(environ):
        text = text.replace(value, REDACTED)
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{REDACTED}@", text)


def _cut(text: str, limit: int, where: str) -> str:
    marker = f"...[truncated; see {where}]"
    return text[: limit - len(marker)] + marker


def param_values(cfg_dict: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Params as MLflow strings, secrets redacted; over-long values are cut and their keys
    returned. The full config is always logged as ``config/params.yaml`` too, so nothing is lost.
    """
    params: dict[str, str] = {}
    cut: list[str] = []
    for key, value in flatten(cfg_dict).items():
        text = redact("" if value is None else str(value))
        if len(text) > MAX_PARAM_LENGTH:
            text = _cut(text, MAX_PARAM_LENGTH, "config/params.yaml")
            cut.append(key)
        params[key] = text
    return params, cut


def tag_values(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tags as MLflow strings: None dropped, secret-named keys dropped, values redacted and cut."""
    out = {}
    for key, value in tags.items():
        if value is None or is_secret(key):
            continue
        text = redact(str(value))
        out[key] = _cut(text, MAX_TAG_LENGTH, "the run's artifacts") if len(text) > MAX_TAG_LENGTH else text
    return out


def git_state(root: Path) -> dict[str, str]:
    """The commit and whether the work tree differs from it (empty outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"git.commit": commit, "git.dirty": str(bool(dirty)).lower()}


def file_md5(path: Path) -> Optional[str]:
    return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else None


def dvc_stage_digests(lock: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """``dvc.stage.<name>``: a short digest of each stage's entry in dvc.lock (its deps,
    params and outs as DVC recorded them), i.e. the version of every stage that ran."""
    if not lock.is_file():
        return {}
    import json

    import yaml

    try:
        stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    except yaml.YAMLError:
        return {}
    return {
        f"dvc.stage.{name}": hashlib.md5(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:12]
        for name, entry in sorted(stages.items())
        if name not in skip
    }


def dataset_digest(fingerprint: str) -> str:
    """A data fingerprint (``sha256:<64 hex>``) cut to the 36 characters MLflow stores."""
    return fingerprint.split(":", 1)[-1][:32]


def model_requirements() -> list[str]:
    """Pinned pip requirements of a logged Keras model: keras and its backend.

    Giving them saves MLflow's requirement inference, which loads the model in a subprocess
    (about 5 s per run) and falls back to ``keras`` alone with a warning anyway.
    """
    import importlib.metadata as md

    import keras

    reqs = [f"keras=={keras.__version__}"]
    dists = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax", "jaxlib"), "torch": ("torch",)}
    for dist in dists.get(keras.backend.backend(), ()):
        with contextlib.suppress(md.PackageNotFoundError):
            reqs.append(f"{dist}=={md.version(dist)}")
    return reqs


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(f"{type(exc).__name__}: {text[0] if text else ''}")[:5000]


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def _mlflow() -> Any:
    import mlflow
    import mlflow.exceptions  # noqa: F401 - used as mlflow.exceptions.MlflowException

    return mlflow


_pending: list[Any] = []  # async logging operations not yet confirmed


def _keep(operation: Any) -> None:
    if operation is not None:
        _pending.append(operation)


def _check_reachable(uri: str) -> None:
    """Fail in a second, not after MLflow's minutes of retries, when no server answers."""
    if urlsplit(uri).scheme not in ("http", "https"):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=10)
    except requests.RequestException as exc:
        raise TrackingError(
            f"tracking URI {canonical_uri(uri)!r} is not reachable ({type(exc).__name__}): expected a "
            "running `mlflow server` there, or set tracking.enabled=false to train without tracking"
        ) from None


def setup(tracking: TrackingConfig) -> str:
    """Point MLflow at the configured store and experiment; returns the experiment id."""
    mlflow = _mlflow()
    uri = resolve_uri(tracking)
    try:
        _check_reachable(uri)
    except TrackingError as exc:
        if tracking.on_unreachable != "local":
            raise
        local = default_uri()
        message = f"{exc}; logging to the embedded store {local} instead (tracking.on_unreachable=local)"
        warn(message)
        _fallback[uri] = local
        _fallback["message"] = message
        uri = local
    mlflow.set_tracking_uri(uri)
    mlflow.config.enable_async_logging(tracking.async_logging)
    if tracking.system_metrics:
        if importlib.util.find_spec("psutil") is None:
            raise TrackingError(
                "tracking.system_metrics=true is not allowed here: psutil is not installed; "
                "expected `pip install psutil` or tracking.system_metrics=false"
            )
        if not os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"):
            mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL)
    try:
        with _store_init_lock(uri):
            if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(tracking.experiment) is None:
                # Artifacts next to the store (not under whatever folder this process runs in).
                root = Path(canonical_uri(uri)[len("sqlite:///") :]).parent
                with contextlib.suppress(mlflow.exceptions.MlflowException):  # lost a creation race
                    mlflow.create_experiment(tracking.experiment, artifact_location=(root / "mlruns").as_uri())
        exp = mlflow.set_experiment(tracking.experiment)
        # MLflow 3.17: a process that loses the race to create the experiment gets it back
        # from set_experiment *without* making it active, and its run lands in "Default".
        # Activating it by id is race-free.
        exp = mlflow.set_experiment(experiment_id=exp.experiment_id)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(
            f"tracking.experiment={tracking.experiment!r} cannot be used in {canonical_uri(uri)}: "
            f"{one_line(exc)}"
        ) from None
    return str(exp.experiment_id)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a run is open, SIGTERM raises :class:`Terminated` instead of killing the process
    outright (which would leave the run RUNNING). Other handlers are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _close(mlflow: Any, status: str, error: Optional[str]) -> None:
    """End the active run with ``status``; on failure paths never mask the original error."""
    if error is not None:
        with contextlib.suppress(Exception):
            flush()
        with contextlib.suppress(Exception):
            mlflow.set_tag("error", error, synchronous=True)
        with contextlib.suppress(Exception):
            mlflow.end_run(status=status)
        return
    try:
        mlflow.end_run(status=status)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot close the MLflow run: {one_line(exc)}") from None


@contextlib.contextmanager
def run(
    cfg: Config, *, run_id: Optional[str] = None, run_name: Optional[str] = None
) -> Iterator[Optional[Any]]:
    """Open (or resume) the pipeline's MLflow run; always close it with the right status.

    Everything logged asynchronously is flushed, and any logging failure surfaced, before
    the run is marked FINISHED.
    """
    if not cfg.tracking.enabled:
        yield None
        return
    mlflow = _mlflow()
    setup(cfg.tracking)
    name = run_name or cfg.tracking.run_name or (None if run_id else default_run_name())
    try:
        active = mlflow.start_run(
            run_id=run_id,
            run_name=redact(name) if name else None,
            log_system_metrics=cfg.tracking.system_metrics,
        )
    except mlflow.exceptions.MlflowException as exc:
        what = f"run {run_id}" if run_id else "a run"
        raise TrackingError(
            f"cannot start {what} in {canonical_uri(resolve_uri(cfg.tracking))}: {one_line(exc)}"
        ) from None
    _pending.clear()
    if "message" in _fallback:  # the run must say it is not where the config pointed
        mlflow.set_tag("tracking.fallback", redact(_fallback["message"])[:5000])
    with _sigterm_as_interrupt():
        try:
            yield active
            flush()
        except KeyboardInterrupt as exc:
            reason = str(exc) if isinstance(exc, Terminated) else "interrupted (KeyboardInterrupt)"
            _close(mlflow, "KILLED", reason)
            raise
        except BaseException as exc:
            _close(mlflow, "FAILED", one_line(exc))
            raise
        else:
            _close(mlflow, "FINISHED", None)


def default_run_name(prefix: str = "run") -> str:
    """A unique name. MLflow's own generator draws from Python's ``random``, which
    ``keras.utils.set_random_seed`` has just seeded: every run would get the same name."""
    import secrets
    import time

    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def close_stale_run(record: Mapping[str, Any]) -> Optional[str]:
    """End a run that a killed process left RUNNING (status KILLED, reason in ``error``)."""
    mlflow = _mlflow()
    run_id = record.get("run_id")
    if not run_id:
        return None
    client = mlflow.MlflowClient(tracking_uri=record.get("tracking_uri") or None)
    try:
        run = client.get_run(run_id)
    except Exception:  # the store moved or the run is gone: nothing left to close
        return None
    if run.info.status != "RUNNING":
        return None
    client.set_tag(run_id, "error", "the process died before the run ended (found RUNNING when train started again)")
    client.set_terminated(run_id, "KILLED")
    return str(run_id)


def flush() -> None:
    """Wait for async logging to land; raise if any of it failed."""
    mlflow = _mlflow()
    mlflow.flush_async_logging()
    pending, _pending[:] = list(_pending), []
    for operation in pending:
        try:
            operation.wait()
        except Exception as exc:  # noqa: BLE001 - any failure means data did not land
            raise TrackingError(f"MLflow did not accept logged data: {one_line(exc)}") from None


def resume_target(cfg: Config, record: Mapping[str, Any]) -> Optional[str]:
    """The run id evaluate should add to, or None (after a one-line warning) when the run
    named in ``reports/mlflow_run.json`` is not in the store tracking now points at."""
    run_id = record.get("run_id")
    if not cfg.tracking.enabled or not run_id:
        return None
    current = canonical_uri(resolve_uri(cfg.tracking))
    recorded = record.get("tracking_uri")
    if recorded and canonical_uri(str(recorded)) != current:
        warn(
            f"{RUN_FILE} names run {run_id} in {canonical_uri(str(recorded))}, but tracking now "
            f"points at {current}; not logging evaluation to MLflow (rerun train to log there)"
        )
        return None
    mlflow = _mlflow()
    _check_reachable(resolve_uri(cfg.tracking))
    try:
        mlflow.MlflowClient(tracking_uri=resolve_uri(cfg.tracking)).get_run(run_id)
    except mlflow.exceptions.MlflowException:
        warn(
            f"{RUN_FILE} names run {run_id}, which {current} does not hold; "
            "not logging evaluation to MLflow (rerun train to log there)"
        )
        return None
    return str(run_id)


# --------------------------------------------------------------------------------------
# What goes into the run
# --------------------------------------------------------------------------------------


def log_config(cfg_dict: Mapping[str, Any], yaml_text: str) -> None:
    mlflow = _mlflow()
    params, cut = param_values(cfg_dict)
    _keep(mlflow.log_params(params))
    if cut:
        _keep(mlflow.set_tag("params.truncated", ",".join(cut)))
    mlflow.log_text(redact(yaml_text), "config/params.yaml")


def log_tags(tags: Mapping[str, Any]) -> None:
    _keep(_mlflow().set_tags(tag_values(tags)))


def log_metrics(metrics: Mapping[str, float], step: Optional[int] = None) -> None:
    _keep(_mlflow().log_metrics({k: float(v) for k, v in metrics.items()}, step=step))


def final_metrics(metrics: Mapping[str, float], curves: Any = ()) -> dict[str, float]:
    """Final metrics as MLflow metrics. A name that is also a per-epoch curve (``val_loss``,
    ``val_accuracy``) becomes ``final_<name>``: logged under its own name it would be one
    more point on the curve, and hide behind the last epoch as the run's value."""
    taken = set(curves)
    return {(f"final_{k}" if k in taken else k): float(v) for k, v in metrics.items()}


def log_artifact(path: Path, artifact_path: Optional[str] = None) -> None:
    _mlflow().log_artifact(str(path), artifact_path=artifact_path)


def log_text_file(path: Path, artifact_path: str) -> None:
    """A text file as an artifact, with secrets redacted (dvc.lock holds params, for one)."""
    _mlflow().log_text(redact(path.read_text(encoding="utf-8")), f"{artifact_path}/{path.name}")


def log_datasets(
    meta: Mapping[str, Any], splits: Mapping[str, tuple[Any, Any]], prepared: Path = Path("data/prepared")
) -> None:
    """Each split as a run input: ``<source>-<split>``, digest from meta.json's fingerprint
    (cut to MLflow's 36 characters; the whole one is the input's ``fingerprint`` tag), context
    training/validation/test, the prepared ``.npz`` as its source."""
    mlflow = _mlflow()
    datasets, contexts, tags = [], [], []
    for split, (x, y) in splits.items():
        with warnings.catch_warnings():
            # A relative path matches two equivalent local source types; MLflow warns and picks one.
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
            datasets.append(
                mlflow.data.from_numpy(
                    x,
                    targets=y,
                    source=str(prepared / f"{split}.npz"),
                    name=f"{meta['source']}-{split}",
                    digest=dataset_digest(meta["fingerprints"][split]),
                )
            )
        contexts.append(DATASET_CONTEXTS.get(split, split))
        tags.append({"fingerprint": str(meta["fingerprints"][split]), "samples": str(len(y))})
    retry_on_conflict(lambda: mlflow.log_inputs(datasets=datasets, contexts=contexts, tags_list=tags))


def retry_on_conflict(operation: Any, attempts: int = CONFLICT_ATTEMPTS) -> Any:
    """``operation()``, tried again when it lost a get-or-create race in the store.

    MLflow's SQL store looks a dataset up by (experiment, name, digest) and inserts it when
    absent, without a lock: two trainings on the same data that log their inputs in the same
    instant both find nothing, and the second insert fails on the unique constraint. The
    failed transaction is rolled back whole, and the next attempt finds the winner's row and
    links to it, so trying again is safe and gives both runs the same dataset entry.
    """
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except Exception as exc:  # MlflowException, RestException, SQLAlchemy's IntegrityError
            if attempt == attempts or not CONFLICT.search(str(exc)):
                raise
            time.sleep(0.05 * attempt)


def epoch_logger() -> Any:
    """A Keras callback sending every epoch's logs (loss, gaps, learning rate) to MLflow.

    With ``tracking.async_logging`` (the default) each epoch is queued and sent in batches by
    MLflow's logging thread, so training never waits on the store.
    """
    import keras

    mlflow = _mlflow()

    class MlflowEpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
            if logs:
                _keep(mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch + 1))

    return MlflowEpochLogger()


class _KerasFlavor:
    """``mlflow.keras`` for ``Model.log``, except that the model folder exists before the
    input example is written into it (mlflow issue 16183, still open in 3.17: with
    ``input_example``, ``mlflow.keras.log_model`` fails with FileNotFoundError)."""

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path: str, **kwargs: Any) -> Any:
        os.makedirs(path, exist_ok=True)
        return _mlflow().keras.save_model(path=path, **kwargs)


@contextlib.contextmanager
def _quiet_keras() -> Iterator[None]:
    import keras

    was_on = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        yield
    finally:
        if was_on:
            keras.config.enable_interactive_logging()


def log_model(model: Any, x_sample: Any, registered_model: Optional[str]) -> Optional[str]:
    """Log the Keras model (Keras flavor) with a signature and an input example; register it
    and point the alias ``challenger`` at the new version. Returns the registered version."""
    mlflow = _mlflow()
    from mlflow.models import Model, infer_signature

    flush()  # Model.log copies the run's params onto the logged model: they must have landed
    signature = infer_signature(x_sample, model.predict(x_sample, verbose=0))
    with _quiet_keras():  # MLflow checks the input example with a verbose predict
        info = Model.log(
            artifact_path=None,
            name="model",
            flavor=_KerasFlavor(),
            model=model,
            signature=signature,
            input_example=x_sample,
            pip_requirements=model_requirements(),
            registered_model_name=registered_model or None,
        )
    version = getattr(info, "registered_model_version", None)
    if registered_model and version is not None:
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(registered_model, ALIAS, str(version))
        return str(version)
    return None


def set_version_tags(registered_model: str, version: str, tags: Mapping[str, Any]) -> None:
    client = _mlflow().MlflowClient()
    for key, value in tag_values(tags).items():
        client.set_model_version_tag(registered_model, version, key, value)


# --------------------------------------------------------------------------------------
# Parent/child runs for sweeps and studies. Children are written with explicit run ids
# (MlflowClient), not the fluent active run, so jobs in other processes can log safely.

CHILD_METRIC_KEYS = (
    "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
    "gap_accuracy_val", "gap_accuracy_test", "gap_loss_val", "gap_loss_test",
    "best_epoch", "onset_epoch", "epochs_run", "params", "params_untied", "train_seconds", "objective",
)


def _experiment_id(tracking_cfg: TrackingConfig) -> str:
    return setup(tracking_cfg)


def create_parent_run(tracking_cfg: TrackingConfig, name: str, tags: Mapping[str, Any]) -> str:
    """An open parent run (RUNNING until :func:`close_parent_run`) for a sweep or study. Under
    ``mlflow run`` ($MLFLOW_RUN_ID) the project's run is the parent, as it is every stage's run."""
    mlflow = _mlflow()
    exp_id = _experiment_id(tracking_cfg)
    client = mlflow.MlflowClient()
    if "message" in _fallback:  # the run must say it is not where the config pointed
        tags = {**tags, "tracking.fallback": _fallback["message"][:5000]}
    project_run = os.environ.get("MLFLOW_RUN_ID")
    if project_run:
        client.update_run(project_run, status="RUNNING", name=name)
        for key, value in tag_values(tags).items():
            client.set_tag(project_run, key, value)
        return project_run
    run = client.create_run(exp_id, run_name=name, tags=tag_values(tags))
    return str(run.info.run_id)


def log_to_parent_run(parent_id: str, metrics: Mapping[str, float], files: list[Path], artifact_path: str) -> None:
    """Metrics (step 0) and files of an open parent run, by id: a study's summary and table."""
    mlflow = _mlflow()
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    _log_metric_batches(client, parent_id, [Metric(k, float(v), now, 0) for k, v in metrics.items()])
    for path in files:
        client.log_artifact(parent_id, str(path), artifact_path)


def _log_metric_batches(client: Any, run_id: str, metrics: list[Any]) -> None:
    for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(run_id, metrics=metrics[i : i + 1000])


def log_child_run(parent_id: Optional[str], tracking_cfg: TrackingConfig, job: Mapping[str, Any]) -> str:
    """One finished job as a child run: flattened config, tags, per-epoch curves, final metrics."""
    import time

    mlflow = _mlflow()
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient()
    exp_id = _experiment_id(tracking_cfg)
    tags = {
        "gapline.mode": job.get("kind", "job"),
        "techniques": job.get("techniques", ""),
        "data.fingerprint": job.get("fingerprint", ""),
        "job.arm": job.get("arm", ""),
        "job.seed": job.get("seed", ""),
        "job.overrides": " ".join(job.get("overrides", [])),
        "gapline.ray_node": job.get("ray_node") or None,  # tag_values drops None
    }
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    run = client.create_run(exp_id, run_name=str(job.get("job", "job")), tags=tag_values(tags))
    run_id = run.info.run_id
    try:
        params, cut = param_values(job.get("config", {}))
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=items[i : i + 100])
        now = int(time.time() * 1000)
        finals = final_metrics(
            {k: job[k] for k in CHILD_METRIC_KEYS if isinstance(job.get(k), (int, float)) and job.get(k) == job.get(k)},
            curves=(job.get("history") or {}).keys(),
        )
        metrics = [Metric(k, v, now, 0) for k, v in finals.items()]
        for key, values in (job.get("history") or {}).items():
            metrics.extend(Metric(key, float(v), now, step + 1) for step, v in enumerate(values))
        _log_metric_batches(client, run_id, metrics)
        client.set_terminated(run_id, "FINISHED")
    except BaseException as exc:
        client.set_tag(run_id, "error", one_line(exc))
        client.set_terminated(run_id, "FAILED")
        raise
    return str(run_id)


def child_runs(parent_id: str) -> list[Any]:
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    parent = client.get_run(parent_id)
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        max_results=10000,
    )


def finish_parent_run(parent_id: str, status: str = "FINISHED") -> str:
    """Summarize the children (best objective first) into the parent and close it."""
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    children = child_runs(parent_id)
    rows = []
    for child in children:
        m = child.data.metrics
        rows.append(
            (
                m.get("objective", float("nan")),
                child.info.run_name,
                m.get("test_accuracy", float("nan")),
                m.get("gap_accuracy_val", float("nan")),
                m.get("gap_accuracy_test", float("nan")),
                child.info.run_id,
            )
        )
    rows.sort(key=lambda r: (r[0] != r[0], r[0]))
    lines = [
        "| job | objective | test accuracy | gap (train−val) | gap (train−test) | run |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r[1]} | {r[0]:.4f} | {r[2]:.4f} | {r[3]:+.4f} | {r[4]:+.4f} | {r[5]} |" for r in rows]
    table = "\n".join(lines) + "\n"
    client.log_text(parent_id, table, "sweep/summary.md")
    if rows:
        best = rows[0]
        client.set_tag(parent_id, "sweep.best_run", best[5])
        client.set_tag(parent_id, "sweep.best_job", best[1])
        client.log_metric(parent_id, "best_objective", float(best[0]))
        client.log_metric(parent_id, "best_test_accuracy", float(best[2]))
    client.log_metric(parent_id, "jobs", float(len(rows)))
    close_parent_run(parent_id, status)
    return table


def close_parent_run(parent_id: str, status: str = "FINISHED", error: Optional[str] = None) -> None:
    """End a parent run with ``status``; with ``error`` (a failure path) record it in the
    ``error`` tag and never let a store error mask the original one."""
    client = _mlflow().MlflowClient()
    if error is None:
        client.set_terminated(parent_id, status)
        return
    with contextlib.suppress(Exception):
        client.set_tag(parent_id, "error", error)
    with contextlib.suppress(Exception):
        client.set_terminated(parent_id, status)


# ======================================================================================
# Model registry for scheduled retraining (`gapline retrain`, `gapline promote`) and the
# MLflow-project run (`gapline mlproject`). Everything above this line is unchanged; the
# registry calls below are the only ones retraining makes.
# ======================================================================================

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"


def _is_missing(exc: BaseException) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def registry(tracking_cfg: TrackingConfig) -> Any:
    """A client for the configured store and its model registry; opens no run."""
    mlflow = _mlflow()
    uri = resolve_uri(tracking_cfg)
    _check_reachable(uri)
    # Resolving ``models:/<name>/<version>`` always goes through the process-wide URI.
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot open the MLflow store {canonical_uri(uri)}: {one_line(exc)}") from None


def registry_aliases(client: Any, name: str) -> dict[str, str]:
    """``{alias: version}`` of registered model ``name``; empty when it is not registered yet."""
    mlflow = _mlflow()
    try:
        model = client.get_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        if _is_missing(exc):
            return {}
        raise TrackingError(f"cannot read registered model {name!r}: {one_line(exc)}") from None
    return {str(alias): str(version) for alias, version in (model.aliases or {}).items()}


def registry_version(client: Any, name: str, version: str) -> Optional[Any]:
    """The ModelVersion ``name``/``version``, or None when the registry does not hold it."""
    mlflow = _mlflow()
    try:
        return client.get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException as exc:
        if _is_missing(exc) or getattr(exc, "error_code", "") == "INVALID_PARAMETER_VALUE":
            return None
        raise TrackingError(f"cannot read model version {name} v{version}: {one_line(exc)}") from None


def tag_version(client: Any, name: str, version: str, tags: Mapping[str, Any]) -> None:
    """Version tags through an explicit client (redacted and cut like run tags)."""
    mlflow = _mlflow()
    try:
        for key, value in tag_values(tags).items():
            client.set_model_version_tag(name, str(version), key, value)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot tag model version {name} v{version}: {one_line(exc)}") from None


def move_champion(client: Any, name: str, version: str) -> dict[str, Optional[str]]:
    """Point ``champion`` at ``version`` and ``previous-champion`` at the champion it replaces.

    The last registry write of a promotion. If either alias cannot be set, both are put back
    as they were before raising, so a failed promotion leaves the aliases untouched.
    """
    mlflow = _mlflow()
    before = registry_aliases(client, name)
    old = before.get(CHAMPION)
    version = str(version)
    if old == version:
        return {"champion": version, "previous_champion": before.get(PREVIOUS_CHAMPION)}
    try:
        if old is not None:
            client.set_registered_model_alias(name, PREVIOUS_CHAMPION, old)
        client.set_registered_model_alias(name, CHAMPION, version)
    except BaseException as exc:
        for alias in (CHAMPION, PREVIOUS_CHAMPION):
            with contextlib.suppress(Exception):
                if before.get(alias) is not None:
                    client.set_registered_model_alias(name, alias, before[alias])
                else:
                    client.delete_registered_model_alias(name, alias)
        if isinstance(exc, mlflow.exceptions.MlflowException):
            raise TrackingError(f"cannot move alias {CHAMPION!r} of {name!r}: {one_line(exc)}") from None
        raise
    return {"champion": version, "previous_champion": old if old is not None else before.get(PREVIOUS_CHAMPION)}


def load_registered_keras(name: str, version: str) -> Any:
    """The Keras model of registered version ``name``/``version`` (gapline's layers registered).

    Call :func:`registry` first: the ``models:/`` URI resolves through the process-wide store.
    """
    import tempfile

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow = _mlflow()
    import mlflow.keras  # noqa: F401 - the flavor module is not imported by ``import mlflow``

    from . import layers  # noqa: F401 - registers gapline's serializable layers

    with tempfile.TemporaryDirectory(prefix="gapline-model-") as tmp:
        try:
            with _quiet_keras():
                return mlflow.keras.load_model(f"models:/{name}/{version}", dst_path=tmp)
        except Exception as exc:  # noqa: BLE001 - missing artifacts surface as several types
            raise TrackingError(f"cannot load model {name} v{version} from the registry: {one_line(exc)}") from None


def log_params(params: Mapping[str, Any]) -> None:
    """Params of the active run (strings, secrets redacted)."""
    _keep(_mlflow().log_params({k: redact("" if v is None else str(v)) for k, v in params.items()}))


def project_run_experiment() -> Optional[str]:
    """Under ``mlflow run`` (``$MLFLOW_RUN_ID`` set): the name of the experiment holding that
    run, so gapline can log into it instead of failing on an experiment mismatch; else None."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return None
    mlflow = _mlflow()
    try:
        client = mlflow.MlflowClient()
        experiment_id = client.get_run(run_id).info.experiment_id
        return str(client.get_experiment(experiment_id).name)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot read the MLflow project run {run_id}: {one_line(exc)}") from None
