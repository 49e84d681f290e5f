"""evaluate: the task's metrics on every split, the gaps, plots and a diagnosis, into the same run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gapline import tracking
from gapline.config import provenance
from gapline.config.metrics import FINAL_METRICS
from gapline.config.schema import Config
from gapline.config.tasks import TaskSpec
from gapline.core.errors import ConfigError, bad_value
from gapline.core.files import atomic_dir, write_json, write_text
from gapline.data.layout import read_meta
from gapline.data.meta import PreparedMeta
from gapline.evaluate import plots, scoring
from gapline.evaluate.curves import read_curves
from gapline.evaluate.diagnosis import as_markdown, diagnose
from gapline.evaluate.gap import predictions
from gapline.evaluate.splits import evaluate_splits
from gapline.models import memory, runtime
from gapline.models.saving import MODEL_FILE, load_model
from gapline.stages import BREAKDOWN_FILE, DIAGNOSIS_FILE, METRICS_FILE, PLOTS, SPLITS, TRAIN_INFO_FILE, read_split
from gapline.tracking.run_record import RUN_FILE, RunRecord
from gapline.train.summary import FitSummary


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def per_class_report(matrix: np.ndarray, class_names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for i, name in enumerate(class_names):
        tp = matrix[i, i]
        support = matrix[i].sum()
        predicted = matrix[:, i].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {"class": name, "precision": round(float(precision), 4), "recall": round(float(recall), 4),
             "f1": round(float(f1), 4), "support": int(support)}
        )
    return rows


def regression_breakdown(y: np.ndarray, pred: np.ndarray, bins: int = 5) -> list[dict[str, Any]]:
    """Errors per quintile of the true target: where in its range the model is wrong."""
    y = np.asarray(y, dtype="float64")
    pred = np.asarray(pred, dtype="float64").reshape(-1)
    order = np.argsort(y, kind="stable")
    rows = []
    for part in np.array_split(order, min(bins, len(y))):
        resid = pred[part] - y[part]
        rows.append(
            {"target_from": round(float(y[part].min()), 6), "target_to": round(float(y[part].max()), 6),
             "rmse": round(float(np.sqrt(np.mean(resid**2))), 6), "mean_residual": round(float(resid.mean()), 6),
             "support": int(len(part))}
        )
    return rows


def check_breakdown_by(name: str, meta: PreparedMeta) -> dict[str, Any] | None:
    """``task.breakdown_by``'s column of the table (None when unset); a name that is not one
    of its categorical columns is one line, before anything is written."""
    if not name:
        return None
    categorical = [c for c in meta.columns or () if c["kind"] == "categorical"]
    found = next((c for c in categorical if c["name"] == name), None)
    if found is None:
        allowed = ", ".join(c["name"] for c in categorical) or "none: the data has no categorical column"
        raise ConfigError(bad_value("task.breakdown_by", name, f"'' or a categorical column of the table ({allowed})"))
    return found


def category_breakdown(
    task: TaskSpec, column: dict[str, Any], cells: np.ndarray, y: np.ndarray, pred: np.ndarray, cfg: Config
) -> list[dict[str, Any]]:
    """The test split scored per category of ``column`` (``cells``: its stored codes), one row
    each with its support, most frequent first; a missing cell is the category ``<missing>``.
    A metric undefined on a category's rows (an AUC of one class) is null."""
    codes = np.where(np.isnan(cells), -1, cells).astype(np.int64)
    metrics = [m for m in FINAL_METRICS[task.name] if m != "top_k_accuracy"]
    rows = []
    for code in sorted(set(codes.tolist()), key=lambda c: (-int(np.sum(codes == c)), c)):
        rows_of = codes == code
        got = scoring.scores(task.name, y[rows_of], pred[rows_of], metrics, threshold=cfg.task.threshold,
                             bins=cfg.task.calibration_bins)
        category = "<missing>" if code < 0 else column["values"][code]
        rows.append({"column": column["name"], "category": category, "support": int(rows_of.sum()),
                     **{m: (round(float(v), 6) if np.isfinite(v) else None) for m, v in got.items()}})
    return rows


def task_reports(task: TaskSpec, y: np.ndarray, pred: np.ndarray, cfg: Config, out: Path) -> tuple[list[dict[str, Any]], list[Path]]:
    """The test split's breakdown (per class, per label or per target range) and the task's
    own plots, written into ``out``: confusion matrix (single-label classification), ROC and
    PR curves (binary), per-label scores (multilabel), calibration (every classifier),
    predicted vs actual and residuals (regression)."""

    pngs: list[Path] = []
    if task.name == "regression":
        pngs.append(plots.regression_plot(y, pred, out / "regression.png"))
        return regression_breakdown(y, pred), pngs
    if task.name == "multilabel":
        report = scoring.per_label(y, pred, cfg.task.threshold, list(task.labels))
        pngs.append(plots.per_label_plot(report, out / "per_label.png"))
    else:
        if task.name == "binary":
            y_pred = (pred.reshape(-1) >= cfg.task.threshold).astype(np.int64)
            pngs.append(plots.roc_pr_plot(y, pred.reshape(-1), out / "roc_pr.png"))
        else:
            y_pred = np.argmax(pred, axis=1)
        matrix = confusion(y, y_pred, len(task.labels))
        report = per_class_report(matrix, list(task.labels))
        pngs.append(plots.confusion_matrix_plot(matrix, list(task.labels), out / "confusion_matrix.png"))
    bins = scoring.reliability(task.name, y, pred, cfg.task.calibration_bins)
    pngs.append(plots.reliability_plot(bins, out / "reliability.png", "Calibration (test)"))
    return report, pngs


def evaluate(cfg: Config) -> dict[str, Any]:
    runtime.configure(cfg.train.seed, cfg.train.deterministic, cfg.train.accelerator, cfg.train.precision)

    meta = read_meta()
    task = meta.task_spec()
    by = check_breakdown_by(cfg.task.breakdown_by, meta)
    model = load_model(MODEL_FILE)
    splits = {name: read_split(name).pair() for name in SPLITS}  # x mapped: scored a batch at a time
    x_test, y_test = splits["test"]
    budget = memory.train_budget(cfg.train)
    test_pred = predictions(model, x_test, budget)  # scored, then plotted: predicted once
    scores = evaluate_splits(model, splits, task, cfg.task, {"test": test_pred}, budget)
    info = FitSummary.read(TRAIN_INFO_FILE)
    metrics = {key: round(value, 6) for key, value in scores.items()}
    metrics.update(info.metrics())
    verdict = diagnose(
        metrics,
        task,
        info.onset_epoch,
        info.techniques,
        batch_size=cfg.train.batch_size,
        best_epoch=info.best_epoch,
        epochs_run=info.epochs_run,
    )
    history = read_curves()

    write_json(METRICS_FILE, metrics)
    write_text(DIAGNOSIS_FILE, as_markdown(verdict))
    with atomic_dir(PLOTS) as tmp:  # this task's plots only: none left from another task
        report, task_pngs = task_reports(task, y_test, test_pred, cfg, tmp)
        pngs = [
            plots.learning_curves(history, tmp / "learning_curves.png", task.headline),
            plots.gap_curve(history, tmp / "gap_curve.png", info.onset_epoch, task.headline),
            *task_pngs,
        ]
    pngs = [PLOTS / png.name for png in pngs]
    if by is not None:
        j = [c["name"] for c in meta.columns or ()].index(by["name"])
        report = [*report, *category_breakdown(task, by, np.asarray(x_test[:, j], dtype="float64"), y_test, test_pred, cfg)]
    write_json(BREAKDOWN_FILE, report)
    print(as_markdown(verdict).strip())

    # The run train opened; skipped with a one-line warning when there is none here (train
    # ran in another workspace), it lives in another store than tracking points at now (or
    # that store no longer holds it), or it trained another model.
    # Without the local record (a clone that pulled the model from a DVC remote), the run is
    # the one in the store that trained this very model file.
    model_md5 = provenance.file_md5(MODEL_FILE)
    record = RunRecord.read(RUN_FILE) if RUN_FILE.is_file() else tracking.find_record(cfg, model_md5)
    run_id = tracking.resume_target(cfg, record, model_md5)
    if run_id is not None:
        # Logged synchronously: a handful of values once, nothing to overlap with. MLflow's
        # async queue would cost up to a second at the flush before FINISHED and another when
        # the run ends (its thread polls the queue with a 1 s timeout), for nothing.
        sync = replace(cfg, tracking=replace(cfg.tracking, async_logging=False))
        with tracking.run(sync, run_id=run_id):
            tracking.log_datasets(meta, {"test": splits["test"]})
            # best/onset epoch, epochs run and the parameter count were logged by train
            final = {k2: v for k2, v in metrics.items() if k2 not in info.metrics()}
            tracking.log_metrics(tracking.final_metrics(final, curves=history))
            # dvc.lock now holds this execution's prepare/augment/train entries (not evaluate's yet)
            stages = provenance.dvc_stage_digests(Path("dvc.lock"), skip=("evaluate",))
            tracking.log_tags({"diagnosis": verdict["verdict"], **stages})
            for png in pngs:
                tracking.log_artifact(png, "plots")
            for path in (METRICS_FILE, DIAGNOSIS_FILE, BREAKDOWN_FILE):
                tracking.log_artifact(path, "reports")
            if Path("dvc.lock").is_file():
                tracking.log_text_file(Path("dvc.lock"), "reports")
            if record is not None and record.model_version and record.registered_model:
                tracking.tag_version(
                    tracking.registry(cfg.tracking),
                    record.registered_model,
                    record.model_version,
                    {key: metrics[key] for key in (f"test_{task.headline}", f"val_{task.headline}", f"gap_{task.headline}_test", f"gap_{task.headline}_val")},
                )
    return metrics
