"""The numbers a task is judged by, in plain numpy: cheap enough to run after every epoch.

:mod:`gapline.config.tasks` names the metrics and which way each points; this module computes them
from targets ``y`` and model outputs ``pred`` in the shapes of the task contract:

===========  =============================  ==========================================
task         y                              pred
===========  =============================  ==========================================
multiclass   int class indices ``(n,)``     softmax probabilities ``(n, k)``
binary       int 0/1 ``(n,)``               sigmoid probability of class 1 ``(n, 1)``
multilabel   int 0/1 ``(n, L)``             sigmoid probabilities ``(n, L)``
regression   float ``(n,)``, user units     predictions ``(n, 1)``, user units
===========  =============================  ==========================================

(``(n,)`` is accepted for binary and regression predictions too.)

No scikit-learn at run time (it takes seconds to import); tests/unit/evaluate/test_scoring.py checks every
metric against it. Conventions, where a metric needs one:

* **Undefined is NaN, never an exception**: ROC AUC and average precision without both classes
  (AUC) or without a positive (AP); every metric on an empty split; every classification
  metric when a probability is not finite (a diverged model); r2 when the target is constant
  (``SS_tot == 0``: the mean already explains everything, so r2 has no meaning; scikit-learn
  returns 1 or 0 there, we return NaN).
* **Precision, recall and F1 with a zero denominator are 0** (scikit-learn's default): a model
  that predicts no positive has recall 0 and precision 0, not "unknown".
* **macro_f1** (multiclass) averages the per-class F1 over the classes present in ``y`` or
  predicted (argmax), as scikit-learn does by default: a class absent from both has no F1.
  For multilabel it averages over the labels with a positive in ``y`` or among the
  predictions, for the same reason (scikit-learn would count such a label as F1 0).
* **auc** (multilabel) is the macro average of per-label ROC AUC over the labels with both
  classes present; NaN when no label has both.
* **top_k_accuracy** comes back as ``top{k}_accuracy`` and only when ``0 < k < classes``
  (otherwise it is 1 by construction and omitted). A sample counts as a hit when fewer than
  ``k`` classes have a strictly higher probability than its true class (ties in its favour).
* **Thresholds**: binary accuracy/F1/precision/recall and multilabel subset accuracy/F1 call a
  probability positive when ``p >= threshold``.

Expected calibration error (ECE), the same definition for every classification task (the
"top-label" view): each prediction has a confidence, the probability of the label it predicts,
and is correct or not.

* multiclass: confidence ``max_j p_j``, correct when ``argmax_j p_j == y``;
* binary and multilabel: each probability ``p`` (every (row, label) pair for multilabel) is a
  two-class prediction: confidence ``max(p, 1 - p)``, correct when ``(p >= 0.5) == y``. The
  0.5 is fixed, not ``threshold``: calibration asks whether the stated probability of the
  predicted label is right, whatever threshold a decision then uses.

Confidences fall into ``bins`` equal-width bins over ``[0, 1]`` (``[i/B, (i+1)/B)``, the last
one closed), for every task, so ECEs and reliability plots of all tasks read alike (binary
confidences are >= 0.5, so the lower half of the bins stays empty there). Then
``ECE = sum_b (n_b / n) * |accuracy_b - confidence_b|`` with ``accuracy_b`` and
``confidence_b`` the means over bin ``b``.

Speed (``scores``, float32 inputs, numpy 2.4, median of 200 calls on the 2-core development
machine): 2,048 rows x 10 classes, multiclass, all FINAL_METRICS 0.32 ms (EPOCH_METRICS
0.17 ms); binary 2,048 rows 0.35 ms (0.15 ms); multilabel 2,048 rows x 10 labels 2.0 ms
(1.7 ms: one sort per label for its AUC); regression 2,048 rows 0.03 ms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gapline.config.tasks import EPOCH_METRICS, FINAL_METRICS

NAN = float("nan")

# What scores() computes per task: every metric the task reports (the loss comes from Keras).
_METRICS = {task: tuple(dict.fromkeys((*FINAL_METRICS[task], *EPOCH_METRICS[task]))) for task in FINAL_METRICS}


def scores(
    task: str,
    y: np.ndarray,
    pred: np.ndarray,
    metrics: Sequence[str],
    *,
    threshold: float = 0.5,
    bins: int = 15,
    top_k: int = 5,
) -> dict[str, float]:
    """``{metric: value}`` for the requested metric names of ``task`` (floats; NaN where
    undefined). ``top_k_accuracy`` is keyed ``top{top_k}_accuracy`` and left out unless
    ``0 < top_k < classes``. An unknown task or a metric the task does not have raises
    ValueError (a caller's mistake, not a data problem)."""
    if task not in _METRICS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(_METRICS)}")
    unknown = [m for m in metrics if m not in _METRICS[task]]
    if unknown:
        raise ValueError(f"metric(s) {', '.join(unknown)} not defined for task {task}; "
                         f"expected some of {', '.join(_METRICS[task])}")
    y, pred = _shaped(task, y, pred)
    n = y.shape[0]
    out: dict[str, float] = {}
    with np.errstate(all="ignore"):
        if task == "regression":
            for m in metrics:
                out[m] = _regression(m, y, pred) if n else NAN
            return out
        usable = n > 0 and bool(np.all(np.isfinite(pred)))
        for m in metrics:
            if m == "top_k_accuracy":
                if 0 < top_k < pred.shape[1]:
                    out[f"top{top_k}_accuracy"] = _top_k(y, pred, top_k) if usable else NAN
                continue
            if not usable:
                out[m] = NAN
            elif task == "multiclass":
                out[m] = _multiclass(m, y, pred, bins)
            elif task == "binary":
                out[m] = _binary(m, y, pred, threshold, bins)
            else:
                out[m] = _multilabel(m, y, pred, threshold, bins)
    return out


# --- shapes ----------------------------------------------------------------------------------


def _shaped(task: str, y: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype="float64")
    if task == "regression":
        y = np.asarray(y, dtype="float64").reshape(-1)
        pred = pred.reshape(-1)
    elif task == "binary":
        y = np.asarray(y).reshape(-1).astype("int64")
        pred = pred.reshape(-1)
    elif task == "multiclass":
        y = np.asarray(y).reshape(-1).astype("int64")
        if pred.ndim != 2:
            raise ValueError(f"multiclass predictions must be (n, classes), got shape {pred.shape}")
    else:
        y = np.asarray(y).astype("int64")
        if pred.ndim != 2 or y.shape != pred.shape:
            raise ValueError(f"multilabel targets and predictions must both be (n, labels), "
                             f"got {y.shape} and {pred.shape}")
    if y.shape[0] != pred.shape[0]:
        raise ValueError(f"{y.shape[0]} targets but {pred.shape[0]} predictions")
    return y, pred


# --- per task --------------------------------------------------------------------------------


def _regression(metric: str, y: np.ndarray, pred: np.ndarray) -> float:
    err = pred - y
    if metric == "rmse":
        return float(np.sqrt(np.mean(err * err)))
    if metric == "mae":
        return float(np.mean(np.abs(err)))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        return NAN
    return float(1.0 - np.sum(err * err) / ss_tot)


EPSILON = 1e-7  # Keras' backend epsilon: probabilities are clipped to [eps, 1 - eps] for the log


def _log_loss(truth: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy of 0/1 ``truth`` under probabilities ``p`` (same shape)."""
    p = np.clip(p, EPSILON, 1 - EPSILON)
    return float(-np.mean(truth * np.log(p) + (1 - truth) * np.log1p(-p)))


def _multiclass(metric: str, y: np.ndarray, pred: np.ndarray, bins: int) -> float:
    if metric == "nll":  # the plain log-loss: no label smoothing, no weight penalty
        return float(-np.mean(np.log(np.clip(pred[np.arange(len(y)), y], EPSILON, 1.0))))
    hard = pred.argmax(axis=1)
    if metric == "accuracy":
        return float(np.mean(hard == y))
    if metric == "macro_f1":
        _, _, f1, support, predicted = _per_class_counts(y, hard, pred.shape[1])
        present = (support > 0) | (predicted > 0)
        return float(f1[present].mean()) if present.any() else NAN
    conf = pred.max(axis=1)
    return _ece(conf, hard == y, bins)


def _binary(metric: str, y: np.ndarray, p: np.ndarray, threshold: float, bins: int) -> float:
    if metric == "auc":
        return roc_auc(y, p)
    if metric == "pr_auc":
        return average_precision(y, p)
    if metric == "nll":
        return _log_loss((y == 1).astype("float64"), p)
    if metric == "ece":
        conf, correct = _two_class_view(y, p)
        return _ece(conf, correct, bins)
    hard = p >= threshold
    if metric == "accuracy":
        return float(np.mean(hard == (y == 1)))
    precision, recall, f1 = _prf(*_confusion(y == 1, hard))
    return {"precision": precision, "recall": recall, "f1": f1}[metric]


def _multilabel(metric: str, y: np.ndarray, p: np.ndarray, threshold: float, bins: int) -> float:
    if metric == "nll":  # per label, averaged over labels and rows
        return _log_loss((y == 1).astype("float64"), p)
    if metric == "auc":
        aucs = [roc_auc(y[:, j], p[:, j]) for j in range(y.shape[1])]
        defined = [a for a in aucs if not math.isnan(a)]
        return float(np.mean(defined)) if defined else NAN
    if metric == "ece":
        conf, correct = _two_class_view(y.reshape(-1), p.reshape(-1))
        return _ece(conf, correct, bins)
    truth = y == 1
    hard = p >= threshold
    if metric == "subset_accuracy":
        return float(np.mean(np.all(hard == truth, axis=1)))
    if metric == "micro_f1":
        return _prf(*_confusion(truth, hard))[2]
    tp = np.sum(truth & hard, axis=0)
    fp = np.sum(~truth & hard, axis=0)
    fn = np.sum(truth & ~hard, axis=0)
    present = (tp + fn > 0) | (tp + fp > 0)
    if not present.any():
        return NAN
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return float(f1[present].mean())


def _top_k(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    true_p = pred[np.arange(len(y)), y]
    higher = np.sum(pred > true_p[:, None], axis=1)
    return float(np.mean(higher < k))


# --- building blocks -------------------------------------------------------------------------


def _confusion(truth: np.ndarray, hard: np.ndarray) -> tuple[int, int, int]:
    tp = int(np.sum(truth & hard))
    fp = int(np.sum(~truth & hard))
    fn = int(np.sum(truth & ~hard))
    return tp, fp, fn


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return float(precision), float(recall), float(f1)


def _per_class_counts(y: np.ndarray, hard: np.ndarray, k: int):
    """Per-class precision, recall, F1, support and number predicted (zero denominators 0)."""
    k = max(k, int(y.max(initial=-1)) + 1)
    tp = np.bincount(y[hard == y], minlength=k).astype("float64")
    support = np.bincount(y, minlength=k).astype("float64")
    predicted = np.bincount(hard, minlength=k).astype("float64")
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
    recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
    f1 = np.where(support + predicted > 0, 2 * tp / np.maximum(support + predicted, 1), 0.0)
    return precision, recall, f1, support, predicted


def _two_class_view(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label view of a probability of the positive class: (confidence, correct)."""
    positive = p >= 0.5
    return np.where(positive, p, 1.0 - p), positive == (y == 1)


def _bin_stats(conf: np.ndarray, correct: np.ndarray, bins: int):
    idx = np.clip((conf * bins).astype("int64"), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct.astype("float64"), minlength=bins)
    return count, conf_sum, acc_sum


def _ece(conf: np.ndarray, correct: np.ndarray, bins: int) -> float:
    if conf.size == 0:
        return NAN
    count, conf_sum, acc_sum = _bin_stats(conf, correct, bins)
    return float(np.sum(np.abs(acc_sum - conf_sum)) / conf.size)


def _clf_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest score first."""
    y = np.asarray(y).reshape(-1) == 1
    p = np.asarray(p, dtype="float64").reshape(-1)
    order = np.argsort(-p, kind="mergesort")
    p, y = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(p)), p.size - 1] if p.size else np.zeros(0, "int64")
    tps = np.cumsum(y)[last].astype("float64")
    fps = (last + 1) - tps
    return tps, fps, p[last]


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the average of their ranks (scipy's rankdata 'average')."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]


# --- public pieces ---------------------------------------------------------------------------


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank formula (average ranks for tied scores); NaN unless
    both classes are present or when a score is not finite."""
    y = np.asarray(y).reshape(-1) == 1
    p = np.asarray(p, dtype="float64").reshape(-1)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0 or not np.all(np.isfinite(p)):
        return NAN
    ranks = _average_ranks(p)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision, scikit-learn's definition: ``sum_n (R_n - R_{n-1}) P_n`` over the
    distinct thresholds; NaN without a positive."""
    tps, fps, _ = _clf_curve(y, p)
    if tps.size == 0 or tps[-1] == 0 or not np.all(np.isfinite(p)):
        return NAN
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` at every distinct score, highest first, starting at (0, 0)
    with threshold +inf (scikit-learn's ``roc_curve(drop_intermediate=False)``). fpr (tpr) is
    all NaN without a negative (positive)."""
    tps, fps, thresholds = _clf_curve(y, p)
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, NAN)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, NAN)
    return fpr, tpr, np.r_[np.inf, thresholds]


def pr_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` as scikit-learn's ``precision_recall_curve``:
    increasing thresholds, recall decreasing, ending at precision 1, recall 0 (one point
    more than thresholds). Recall is all NaN without a positive."""
    tps, fps, thresholds = _clf_curve(y, p)
    precision = np.where(tps + fps > 0, tps / np.maximum(tps + fps, 1), 0.0)
    if tps.size and tps[-1] > 0:
        recall = tps / tps[-1]
    else:
        recall = np.full(tps.shape, NAN)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def reliability(task: str, y: np.ndarray, pred: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """Per-bin calibration of a classification task, for the reliability plot and reports
    (plain lists, JSON-ready): ``edges`` (bins + 1), per bin ``confidence`` and ``accuracy``
    (means; None for an empty bin) and ``count``, and the ``ece`` they add up to (NaN when
    there are no usable predictions). Same confidence and bins as the ``ece`` of
    :func:`scores`."""
    if task not in ("multiclass", "binary", "multilabel"):
        raise ValueError(f"reliability needs a classification task, not {task!r}")
    y, pred = _shaped(task, y, pred)
    if task == "multiclass":
        conf, correct = pred.max(axis=1), pred.argmax(axis=1) == y
    else:
        conf, correct = _two_class_view(y.reshape(-1), pred.reshape(-1))
    if not np.all(np.isfinite(conf)):
        conf, correct = conf[:0], correct[:0]
    count, conf_sum, acc_sum = _bin_stats(conf, correct, bins)
    safe = np.maximum(count, 1)
    return {
        "edges": [float(e) for e in np.linspace(0.0, 1.0, bins + 1)],
        "confidence": [float(c) if k else None for c, k in zip(conf_sum / safe, count)],
        "accuracy": [float(a) if k else None for a, k in zip(acc_sum / safe, count)],
        "count": [int(k) for k in count],
        "ece": _ece(conf, correct, bins),
    }


def per_label(y: np.ndarray, pred: np.ndarray, threshold: float = 0.5,
              names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per label of a multilabel task: ``label``, ``auc`` (NaN without both classes),
    ``f1``, ``precision``, ``recall`` (at ``threshold``) and ``support`` (positives in y)."""
    y, pred = _shaped("multilabel", y, pred)
    names = list(names) if names is not None else [str(j) for j in range(y.shape[1])]
    rows = []
    with np.errstate(all="ignore"):
        for j, name in enumerate(names):
            truth, hard = y[:, j] == 1, pred[:, j] >= threshold
            precision, recall, f1 = _prf(*_confusion(truth, hard))
            rows.append({"label": str(name), "auc": roc_auc(truth, pred[:, j]), "f1": f1,
                         "precision": precision, "recall": recall, "support": int(truth.sum())})
    return rows


def per_class(y: np.ndarray, pred: np.ndarray,
              names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per class of a multiclass task (argmax decisions): ``label``, ``auc``
    (one-vs-rest; NaN without both), ``f1``, ``precision``, ``recall`` and ``support``."""
    y, pred = _shaped("multiclass", y, pred)
    k = pred.shape[1]
    names = list(names) if names is not None else [str(j) for j in range(k)]
    with np.errstate(all="ignore"):
        precision, recall, f1, support, _ = _per_class_counts(y, pred.argmax(axis=1), k)
        return [{"label": str(name), "auc": roc_auc(y == j, pred[:, j]), "f1": float(f1[j]),
                 "precision": float(precision[j]), "recall": float(recall[j]),
                 "support": int(support[j])} for j, name in enumerate(names)]
