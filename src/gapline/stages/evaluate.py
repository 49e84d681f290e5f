"""evaluate: metrics on every split, the gaps, plots and a diagnosis, into the same run."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from .. import provenance, runtime, tracking
from ..config import Config
from ..data.layout import read_meta
from ..diagnosis import as_markdown, diagnose
from ..files import load_arrays, read_json, write_json, write_text
from ..regularization import techniques
from ..tracking.run_record import RUN_FILE, RunRecord
from . import DIAGNOSIS_FILE, HISTORY_FILE, METRICS_FILE, MODEL_FILE, PLOTS, SPLITS, TRAIN_INFO_FILE, split_file


def read_history(path: Path = HISTORY_FILE) -> dict[str, list[float]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    keys = [k for k in (rows[0].keys() if rows else []) if k != "epoch"]
    return {k: [float(r[k]) for r in rows] for k in keys}


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


def evaluate(cfg: Config) -> dict[str, Any]:
    runtime.configure(cfg.train.seed, cfg.train.deterministic, cfg.train.accelerator, cfg.train.precision)
    from .. import plots
    from ..model_io import load_model
    from ..evaluation import evaluate_splits

    meta = read_meta()
    class_names = list(meta["class_names"])
    k = len(class_names)
    model = load_model(MODEL_FILE)
    splits = {}
    for name in SPLITS:
        arrays = load_arrays(split_file(name))
        splits[name] = (arrays["x"], arrays["y"])
    scores = evaluate_splits(model, splits, k)
    info = read_json(TRAIN_INFO_FILE)
    metrics = {key: round(value, 6) for key, value in scores.items()}
    metrics.update(
        {
            "best_epoch": info["best_epoch"],
            "onset_epoch": info["onset_epoch"] if info["onset_epoch"] is not None else -1,
            "epochs_run": info["epochs_run"],
            "params": info["params"],
        }
    )
    x_test, y_test = splits["test"]
    y_pred = np.argmax(model.predict(x_test, batch_size=512, verbose=0), axis=1)
    matrix = confusion(y_test, y_pred, k)
    report = per_class_report(matrix, class_names)
    verdict = diagnose(
        metrics,
        k,
        info["onset_epoch"],
        info.get("techniques", techniques(cfg)),
        batch_size=cfg.train.batch_size,
        best_epoch=info["best_epoch"],
        epochs_run=info["epochs_run"],
    )
    history = read_history()

    write_json(METRICS_FILE, metrics)
    write_json(PLOTS / "per_class.json", report)
    write_text(DIAGNOSIS_FILE, as_markdown(verdict))
    pngs = [
        plots.learning_curves(history, PLOTS / "learning_curves.png"),
        plots.gap_curve(history, PLOTS / "gap_curve.png", info["onset_epoch"]),
        plots.confusion_matrix_plot(matrix, class_names, PLOTS / "confusion_matrix.png"),
    ]
    print(as_markdown(verdict).strip())

    # The run train opened; skipped with a one-line warning when there is none here (train
    # ran in another workspace), it lives in another store than tracking points at now (or
    # that store no longer holds it), or it trained another model.
    record = RunRecord.read(RUN_FILE) if RUN_FILE.is_file() else None
    run_id = tracking.resume_target(cfg, record, provenance.file_md5(MODEL_FILE))
    if run_id is not None:
        with tracking.run(cfg, run_id=run_id):
            tracking.log_datasets(meta, {"test": splits["test"]})
            # best/onset epoch, epochs run and the parameter count were logged by train
            logged_by_train = ("best_epoch", "onset_epoch", "epochs_run", "params")
            final = {k2: v for k2, v in metrics.items() if k2 not in logged_by_train}
            tracking.log_metrics(tracking.final_metrics(final, curves=history))
            # dvc.lock now holds this execution's prepare/augment/train entries (not evaluate's yet)
            stages = provenance.dvc_stage_digests(Path("dvc.lock"), skip=("evaluate",))
            tracking.log_tags({"diagnosis": verdict["verdict"], **stages})
            for png in pngs:
                tracking.log_artifact(png, "plots")
            for path in (METRICS_FILE, DIAGNOSIS_FILE, PLOTS / "per_class.json"):
                tracking.log_artifact(path, "reports")
            if Path("dvc.lock").is_file():
                tracking.log_text_file(Path("dvc.lock"), "reports")
            if record.model_version and record.registered_model:
                tracking.tag_version(
                    tracking.registry(cfg.tracking),
                    record.registered_model,
                    record.model_version,
                    {key: metrics[key] for key in ("test_accuracy", "val_accuracy", "gap_accuracy_test", "gap_accuracy_val")},
                )
    return metrics
