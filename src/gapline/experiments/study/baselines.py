"""Classical baselines that put the study's networks in perspective, fit on the very same
split the arms train on and scored with :func:`gapline.evaluate.scoring.scores`, so every number means
what the networks' numbers mean (same metric names, same gap signs: positive = overfitting).

Per task:

* multiclass, binary: an RBF SVC, a logistic regression and histogram gradient boosting. The
  SVC has no probabilities: its rows carry the metrics a decision needs (accuracy, F1, ...)
  and, for binary, the AUC and average precision of its decision function (rank metrics); no
  ECE.
* multilabel: a one-vs-rest logistic regression (AUC, subset accuracy, F1, ECE).
* regression: a ridge regression and gradient boosting (RMSE, MAE, R² in the target's units).

Linear models and the SVC see standardized features (a StandardScaler fitted on the train
split, in a Pipeline) on tabular data; images keep their raw pixels (all on one scale already,
and the committed digits study's baselines were fit on them). A CSV or Parquet table (its
cells as stored: NaN where missing, a category as its dictionary index) is prepared for them
the way the network's first layer prepares it, fitted on the train split: the median and a
missing indicator, standardization, one-hot categories (unseen ones all zero); histogram
gradient boosting takes the cells as they are, with native categorical support and its own
handling of missing values, for regression too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from gapline.config.schema import Config
from gapline.config.tasks import FINAL_METRICS, gap
from gapline.data.prepare import split_source
from gapline.evaluate.scoring import scores

SPLITS = ("train", "val", "test")


def classical_baselines(cfg: Config) -> list[dict[str, Any]]:
    """The task's classical rows on the very same (flattened) split as the arms."""

    splits, meta = split_source(cfg)
    pixel_max = meta.pixel_max  # uint8 pixels: in [0, 1], as the networks see them
    flat = {
        n: (a["x"].reshape(len(a["x"]), -1) / np.float32(pixel_max) if pixel_max else a["x"].reshape(len(a["x"]), -1), a["y"])
        for n, a in splits.items()
    }
    spec = meta.task_spec()
    return baselines(spec.name, flat, classes=len(spec.labels), scale=meta.kind == "tabular", columns=meta.columns)


#: Histogram gradient boosting's native categories: at most this many per column (its max_bins).
HGB_MAX_CATEGORIES = 255


def table_models(task: str, columns: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """The task's baselines for a table's stored cells (see the module's docstring)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import SVC

    numeric = [j for j, c in enumerate(columns) if c["kind"] == "numeric"]
    categorical = [j for j, c in enumerate(columns) if c["kind"] == "categorical"]

    def prepared(model: Any) -> Any:
        parts = []
        if numeric:
            parts.append(("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                                                   StandardScaler()), numeric))
        if categorical:
            parts.append(("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value=-1.0),
                                                       OneHotEncoder(handle_unknown="ignore")), categorical))
        return make_pipeline(ColumnTransformer(parts), model)

    native = [j in categorical and len(columns[j]["values"]) <= HGB_MAX_CATEGORIES for j in range(len(columns))]
    if task in ("multiclass", "binary"):
        return [
            ("svc_rbf (classical)", prepared(SVC(kernel="rbf"))),
            ("logistic_regression (classical)", prepared(LogisticRegression(max_iter=5000))),
            ("gradient_boosting (classical)", HistGradientBoostingClassifier(categorical_features=native, random_state=0)),
        ]
    if task == "multilabel":
        return [("logistic_regression_ovr (classical)", prepared(OneVsRestClassifier(LogisticRegression(max_iter=5000))))]
    return [
        ("ridge (classical)", prepared(Ridge())),
        ("gradient_boosting (classical)", HistGradientBoostingRegressor(categorical_features=native, random_state=0)),
    ]


def models(task: str, scale: bool, columns: list[dict[str, Any]] | None = None) -> list[tuple[str, Any]]:
    """``(row name, unfitted estimator)`` per classical baseline of ``task`` (a table's own
    when ``columns``, meta.json's, are given)."""
    if columns:
        return table_models(task, columns)
    from sklearn.ensemble import (
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
    )
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    def scaled(model: Any) -> Any:
        return make_pipeline(StandardScaler(), model) if scale else model

    if task in ("multiclass", "binary"):
        return [  # scikit-learn defaults, as users run them
            ("svc_rbf (classical)", scaled(SVC(kernel="rbf"))),
            ("logistic_regression (classical)", scaled(LogisticRegression(max_iter=5000))),
            ("gradient_boosting (classical)", HistGradientBoostingClassifier(random_state=0)),
        ]
    if task == "multilabel":
        return [("logistic_regression_ovr (classical)", scaled(OneVsRestClassifier(LogisticRegression(max_iter=5000))))]
    if task == "regression":
        return [
            ("ridge (classical)", scaled(Ridge())),
            ("gradient_boosting (classical)", GradientBoostingRegressor(random_state=0)),
        ]
    raise ValueError(f"unknown task {task!r}")


def baselines(
    task: str, flat: Mapping[str, tuple[np.ndarray, np.ndarray]], classes: int = 0, scale: bool = False,
    columns: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Fit each of the task's baselines on ``flat["train"]`` and score it on every split:
    ``<split>_<metric>`` and ``gap_<metric>_<val|test>``, as the networks' job records."""
    rows = []
    for name, model in models(task, scale, columns):
        start = time.perf_counter()
        with threadpool_limits(1):  # on a busy machine OpenMP threads made boosting take 1-5 s instead of 0.1-0.4 s
            model.fit(*flat["train"])
        seconds = time.perf_counter() - start
        per_split = {n: _scores(task, model, x, y, classes) for n, (x, y) in flat.items()}
        row: dict[str, Any] = {"arm": name, "kind": "classical", "task": task}
        for split in SPLITS:
            row.update({f"{split}_{m}": v for m, v in per_split.get(split, {}).items()})
        for other in ("val", "test"):
            if "train" in per_split and other in per_split:
                row.update({f"gap_{m}_{other}": gap(m, v, per_split[other][m]) for m, v in per_split["train"].items()})
        row["train_seconds"] = seconds
        rows.append(row)
    return rows


def _scores(task: str, model: Any, x: np.ndarray, y: np.ndarray, classes: int) -> dict[str, float]:
    metrics = FINAL_METRICS[task]
    if task == "regression":
        return scores(task, y, model.predict(x), metrics)
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(x)
        if task == "binary":
            return scores(task, y, proba[:, list(model.classes_).index(1)] if 1 in model.classes_ else np.zeros(len(x)), metrics)
        if task == "multiclass":  # a column per class, also for a class the train split lacks
            full = np.zeros((len(x), max(classes, int(np.max(model.classes_)) + 1)))
            full[:, np.asarray(model.classes_, dtype=int)] = proba
            return scores(task, y, full, metrics)
        return scores(task, y, proba, metrics)
    # no probabilities (SVC): decisions only, and for binary the decision function's ranking
    if task == "binary":
        margin = 1.0 / (1.0 + np.exp(-np.asarray(model.decision_function(x), dtype="float64")))  # p >= 0.5 iff predict
        return scores(task, y, margin, [m for m in metrics if m not in ("ece", "nll")])
    predicted = np.asarray(model.predict(x), dtype=int)
    onehot = np.eye(max(classes, int(predicted.max()) + 1, int(np.max(y)) + 1))[predicted]
    return scores(task, y, onehot, [m for m in metrics if m in ("accuracy", "macro_f1")])
