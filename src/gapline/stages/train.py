"""train: fit the configured model on the augmented split; open the pipeline's MLflow run."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

import gapline
from gapline import tracking
from gapline.config import provenance
from gapline.config.schema import MODEL_GROUPS, Config
from gapline.config.user_code import model_files_digest
from gapline.core.errors import warn
from gapline.data.layout import read_meta
from gapline.data.meta import PreparedMeta
from gapline.data.store import Split
from gapline.evaluate import curves
from gapline.models import memory, runtime, sizing
from gapline.models.build import weight_sharing_applied
from gapline.models.regularization import technique_label
from gapline.models.saving import MODEL_FILE, save_model
from gapline.stages import AUGMENTED, METRICS_FILE, TRAIN_INFO_FILE, read_split
from gapline.tracking.input_contract import input_contract
from gapline.tracking.run_record import ACTIVE_RUN_FILE, MODEL_MD5_TAG, RUN_FILE, RunRecord
from gapline.train import progress, warm_start
from gapline.train.fit import TrainResult, build_compiled
from gapline.train.orchestration import FitData, fit_and_summarize
from gapline.train.resume import Backup
from gapline.train.summary import FitSummary

BACKUP_DIR = Path(".gapline/backup/train")


def backup_key(cfg: Config, meta: PreparedMeta) -> str:
    """What a saved training state is only valid for: the same data (and the task and
    standardization prepare resolved for it), task and training settings and model files (a
    custom builder's package, a weights file, a warm-start model)."""

    parts = provenance.config_groups(cfg, [g for g in MODEL_GROUPS if g != "data"])  # data: its fingerprint
    files = model_files_digest(asdict(cfg.model.deps), cfg.model.init_from)
    # the resolved task and the statistics the model standardizes with are not in the fingerprint
    resolved = {"task": meta.task, "target": meta.target, "features": meta.features}
    return provenance.json_digest(
        {**parts, "data": meta.fingerprint, "resolved": resolved, **({"model_files": files} if files else {})}
    )


def run_tags(cfg: Config, meta: PreparedMeta, env: dict[str, Any], model: Any = None) -> dict[str, Any]:
    root = Path.cwd()
    return {
        **provenance.git_state(root),
        "data.fingerprint": meta.fingerprint,
        "data.source": meta.source,
        "data.source_digest": meta.source_digest,
        # dvc.lock as it was when train started; evaluate adds dvc.stage.* from the updated lock
        "dvc.lock.md5": provenance.file_md5(root / "dvc.lock"),
        "keras.backend": env["backend"],
        "device": env["device"],
        "gapline.version": gapline.__version__,
        "techniques": technique_label(cfg, model_shares_weights(cfg, model)),
        "stage": "train",
        "task": meta.task,
        "processes": runtime.process()[1],
    }


def model_shares_weights(cfg: Config, model: Any) -> Any:
    """For a model gapline did not design (custom, backbone), whether it shares weights is read
    from the model itself; gapline's families say so in their config."""
    if model is None:
        return None

    return weight_sharing_applied(cfg.model.family, model)


def training_arrays(cfg: Config) -> tuple[Split, Split, Split]:
    """The augmented training set, the un-augmented split and the validation split, all
    memory-mapped: fit gathers its batches from them (train.fit.fit_data), the gap callback
    and evaluation read them a batch at a time, so no split is ever whole in memory.

    The augment stage writes the originals first, so the un-augmented split (for the gap and
    the dataset record) is the first rows of the same mapping, not a second file.
    """
    fit = read_split("train", AUGMENTED)
    originals = len(fit) // (cfg.augment.copies + 1)
    return fit, Split(x=fit.x[:originals], y=fit.y[:originals]), read_split("val")


def run_metrics(result: TrainResult, summary: FitSummary) -> dict[str, float]:
    """What the train stage logs to its MLflow run once the fit ends."""
    counts = summary.metrics()
    return {
        "epochs_run": counts["epochs_run"],
        "best_epoch": counts["best_epoch"],
        "onset_epoch": counts["onset_epoch"],
        "param_count": result.params,
        "param_count_untied": result.params_untied,
        "train_wall_seconds": result.wall_seconds,
        "samples_per_second": result.samples_per_second,
        "replicas": result.replicas,
    }


def sized_tag(sizes: dict[str, list[int]]) -> dict[str, str]:
    """``gapline.sized``: the model keys the family chose from the input (config: ``auto``)."""
    return {"gapline.sized": ",".join(f"model.{key}" for key in sizes)} if sizes else {}


def weights_digest(model: Any) -> str:
    """Short digest of the weights: every multi_worker process prints it, and all must agree."""

    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()[:16]


def train_worker(cfg: Config, index: int, processes: int) -> dict[str, Any]:
    """A non-chief multi_worker process: the same fit, in step with the chief, on its own
    share of the data; no MLflow run and no files (the chief writes those)."""

    meta = read_meta()
    fit, train_split, val = training_arrays(cfg)
    task = meta.task_for(cfg)
    model = build_compiled(cfg, tuple(fit.x.shape[1:]), task, len(fit.x))
    result, _ = fit_and_summarize(cfg, task, FitData(fit.pair(), train_split.pair(), val.pair()), model=model)
    print(f"process {index} of {processes}: trained {result.epochs_run} epochs; weights {weights_digest(result.model)}")
    return {"process": index, "epochs_run": result.epochs_run, "wall_seconds": result.wall_seconds}


def train(cfg: Config, cfg_yaml: str, cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """Train, save the model and history, and log it all to one MLflow run."""
    env = runtime.configure_for(cfg.train)

    index, processes = runtime.process()
    if index > 0:  # multi_worker: only the chief (process 0) tracks and writes outputs
        return train_worker(cfg, index, processes)
    meta = read_meta()
    # A resumed multi-process fit would need every process to restore the same epoch; the
    # backup lives on the chief's disk only, so multi_worker trains without one.
    backup = Backup(BACKUP_DIR, backup_key(cfg, meta)) if cfg.train.resume and processes == 1 else None
    if ACTIVE_RUN_FILE.is_file():  # the last train was killed: never leave its run RUNNING
        closed = tracking.close_stale_run(RunRecord.read(ACTIVE_RUN_FILE)) if cfg.tracking.enabled else None
        if closed:
            print(f"closed MLflow run {closed} of a killed train stage as KILLED")
        ACTIVE_RUN_FILE.unlink()
    task = meta.task_for(cfg)
    fit, train_split, val = training_arrays(cfg)
    # Built before the run opens: a config the model cannot honour fails with no run at all.
    warm: dict[str, Any] = {}  # what model.init_from copied, when set
    model = build_compiled(cfg, tuple(fit.x.shape[1:]), task, len(fit.x), warm_start=warm)
    sizes = sizing.chosen(cfg.model, tuple(fit.x.shape[1:]), task)  # what ``auto`` built
    too_big = memory.training_warning(model, cfg.train.batch_size, memory.train_budget(cfg.train))
    if too_big:
        warn(too_big)

    # The curves DVC shows, live: a resumed run first writes back the epochs its backup holds.
    live = curves.open_live()
    state = backup.state() if backup is not None else None
    curves.replay(live, state["history"] if state else {}, task.headline)
    shown = progress.callback(cfg.train, progress.total_epochs(cfg), task.headline)
    with tracking.run(cfg) as active:
        callbacks = [curves.callback(live, task.headline)]
        if active is not None:
            tracking.log_config(sizing.with_chosen(cfg_dict, sizes), cfg_yaml)
            tracking.log_tags({**run_tags(cfg, meta, env, model), **warm_start.run_tags(warm), **sized_tag(sizes)})
            tracking.log_datasets(
                meta, {"train": (train_split.x, train_split.y), "val": (val.x, val.y)}
            )
            callbacks.append(tracking.epoch_logger())
            RunRecord.started(
                active.info.run_id, tracking.canonical_uri(tracking.resolve_uri(cfg.tracking))
            ).write(ACTIVE_RUN_FILE)
        if shown is not None:
            callbacks.append(shown)
        try:  # the curves end (DVCLive's Studio "done", its VS Code signal) even on a failure
            result, summary = fit_and_summarize(
                cfg,
                task,
                FitData(fit.pair(), train_split.pair(), val.pair()),
                model=model,
                callbacks=callbacks,
                backup=backup,
                warm=warm,
            )
        finally:
            if shown is not None:
                shown.close()
            live.end()
        if result.resumed_from:
            print(f"resumed from the state saved after epoch {result.resumed_from}")
        if active is not None and result.resumed_from:  # the epochs before the kill, into this run too
            for epoch in range(min(result.resumed_from, result.epochs_run)):  # an early stop ends before train.epochs
                tracking.log_metrics({k: v[epoch] for k, v in result.history.items()}, step=epoch + 1)
        save_model(result.model, MODEL_FILE)
        run_record = RunRecord.no_run()
        if active is not None:
            tracking.log_metrics(run_metrics(result, summary))
            # what finds this run from a workspace that only pulled the model (tracking.find_record)
            tracking.log_tags({MODEL_MD5_TAG: provenance.file_md5(MODEL_FILE)})
            tracking.log_artifacts(curves.CURVES_DIR, curves.CURVES_DIR.name)
            version = tracking.log_model(
                result.model, np.asarray(val.x[:2]), cfg.tracking.registered_model or None, input_contract(meta),
                model_file=MODEL_FILE,
            )
            tracking.flush()
            run_record = RunRecord(
                run_id=active.info.run_id,
                experiment_id=active.info.experiment_id,
                tracking_uri=tracking.canonical_uri(tracking.resolve_uri(cfg.tracking)),
                registered_model=cfg.tracking.registered_model,
                model_version=version,
                model_md5=provenance.file_md5(MODEL_FILE),
            )
        summary.write(TRAIN_INFO_FILE)
        run_record.write(RUN_FILE)
        # The last evaluation belongs to the last run. Without it, DVC reruns evaluate even
        # when this model came out byte for byte the same (a fresh clone, a refactor), so every
        # run gets its test metrics; evaluate writes the same bytes, and dvc.lock stays as it was.
        METRICS_FILE.unlink(missing_ok=True)
        if backup is not None:
            backup.clear()
        ACTIVE_RUN_FILE.unlink(missing_ok=True)
    out = {**dataclasses.asdict(summary), "run": run_record.as_json(), "wall_seconds": result.wall_seconds}
    if processes > 1:
        out["weights"] = weights_digest(result.model)
    return out
