"""PNG plots a person reads: learning curves, the gap per epoch, the confusion matrix, and per
task: ROC and PR curves (binary), reliability (classification), predicted vs actual
(regression), per-label scores (multilabel)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gapline.config.tasks import UNIT_SCORES, gap_label, headline_of, higher_is_better, label
from gapline.core.files import atomic_path
from gapline.evaluate import scoring


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend: plots are written, never shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: dict[str, list[float]], path: Path, metric: str = "accuracy") -> Path:
    """Loss and ``metric`` per epoch: train (inference mode, ``train_eval_*`` when recorded,
    else the running training value) against validation."""
    plt = pyplot()
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name in zip(axes, ("loss", metric)):
        train_key = f"train_eval_{name}" if f"train_eval_{name}" in history else name
        if train_key in history:
            ax.plot(epochs, history[train_key], label="train (inference mode)")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.suptitle("Learning curves")
    fig.tight_layout()
    return save(fig, path)


def gap_curve(history: dict[str, list[float]], path: Path, onset_epoch: int | None,
              metric: str = "accuracy") -> Path:
    """The gap per epoch on ``metric``, the loss and (when recorded) the ECE, each with the
    sign convention that makes positive mean overfitting: train − val for a score, val − train
    for an error. A metric in the target's units (RMSE) gets its own right-hand axis, so the
    loss gap is not flattened against it."""

    plt = pyplot()
    names = [m for m in dict.fromkeys((metric, "loss", "ece")) if f"gap_{m}" in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    own_axis = metric in names and metric not in UNIT_SCORES
    right = ax.twinx() if own_axis else None
    for i, name in enumerate(names):
        sign = "train − val" if higher_is_better(name) else "val − train"
        values = history[f"gap_{name}"]
        target = right if (right is not None and name == metric) else ax
        target.plot(np.arange(1, len(values) + 1), values, color=f"C{i}", label=f"gap_{name} ({sign})")
    if right is not None:
        right.set_ylabel(f"gap_{metric} (target's units)")
        handles, labels = right.get_legend_handles_labels()
        for h, lab in zip(handles, labels):
            ax.plot([], [], color=h.get_color(), label=f"{lab}, right axis")
    ax.axhline(0.0, color="grey", lw=0.8)
    if onset_epoch:
        ax.axvline(onset_epoch, color="red", ls="--", label=f"overfitting onset (epoch {onset_epoch})")
    ax.set_xlabel("epoch")
    ax.set_title("Generalization gap (positive = train looks better)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    return save(fig, path)


def confusion_matrix_plot(matrix: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    plt = pyplot()
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * k + 2), max(4, 0.5 * k + 2)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=90 if k > 12 else 0)
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        top = matrix.max() if matrix.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                        color="white" if matrix[i, j] > top / 2 else "black", fontsize=8)
    ax.set_title("Confusion matrix (test)")
    fig.tight_layout()
    return save(fig, path)


def save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically (no half-written file) and free it."""
    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def learning_curve_plot(rows: Sequence[dict], path: Path) -> Path:
    """The task's headline metric (accuracy, AUC, RMSE) on every split and its gap against the
    number of training samples."""

    head = headline_of(rows[0]) if rows else "accuracy"
    name = label(head)
    plt = pyplot()
    n = [r["train_samples"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(n, [r[f"train_{head}"] for r in rows], "o-", label="train")
    axes[0].plot(n, [r[f"val_{head}"] for r in rows], "o-", label="validation")
    axes[0].plot(n, [r[f"test_{head}"] for r in rows], "o-", label="test")
    axes[0].set_ylabel(name if head in UNIT_SCORES else f"{name} (target units)")
    direction = gap_label(head).replace("−", " − ")
    axes[1].plot(n, [r[f"gap_{head}_test"] for r in rows], "o-", color="C3", label=f"gap ({direction})")
    axes[1].axhline(0.0, color="grey", lw=0.8)
    axes[1].set_ylabel(f"{name} gap")
    for ax in axes:
        ax.set_xlabel("training samples")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Learning curve: more training data")
    fig.tight_layout()
    return save(fig, path)


def roc_pr_plot(y: np.ndarray, p: np.ndarray, path: Path, title: str = "ROC and precision-recall (test)") -> Path:
    """Binary: the ROC curve (AUC in its legend) beside the precision-recall curve (average
    precision in its legend, the positive rate as the no-skill line)."""

    plt = pyplot()
    y = np.asarray(y).reshape(-1)
    p = np.asarray(p, dtype="float64").reshape(-1)
    fpr, tpr, _ = scoring.roc_curve(y, p)
    precision, recall, _ = scoring.pr_curve(y, p)
    auc, ap = scoring.roc_auc(y, p), scoring.average_precision(y, p)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    axes[0].plot(fpr, tpr, label=f"model (AUC {auc:.3f})")
    axes[0].plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="chance (AUC 0.5)")
    axes[0].set_xlabel("false positive rate")
    axes[0].set_ylabel("true positive rate")
    axes[0].set_title("ROC")
    axes[1].step(recall, precision, where="post", label=f"model (AP {ap:.3f})")
    rate = float(np.mean(y == 1)) if y.size else float("nan")
    axes[1].axhline(rate, color="grey", ls="--", lw=0.8, label=f"no skill (positive rate {rate:.3f})")
    axes[1].set_xlabel("recall")
    axes[1].set_ylabel("precision")
    axes[1].set_title("Precision-recall")
    for ax in axes:
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is axes[0] else "lower left")
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def reliability_plot(bins: dict[str, Any], path: Path, title: str = "Reliability (test)") -> Path:
    """Classification calibration from :func:`gapline.evaluate.scoring.reliability`: per-bin accuracy
    as bars against the diagonal (perfect calibration), the mean confidence of each bin as
    a red tick over its bar (the distance from bar top to tick is that bin's miscalibration), the number of predictions per bin below, the ECE in the title."""
    plt = pyplot()
    edges = np.asarray(bins["edges"], dtype="float64")
    width = np.diff(edges)
    centers = edges[:-1] + width / 2
    filled = [i for i, k in enumerate(bins["count"]) if k]
    acc = np.array([bins["accuracy"][i] for i in filled], dtype="float64")
    conf = np.array([bins["confidence"][i] for i in filled], dtype="float64")
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True,
                                   gridspec_kw={"height_ratios": (3, 1)})
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfect calibration")
    ax.bar(centers[filled], acc, width=width[filled], edgecolor="C0", alpha=0.7, label="accuracy")
    ax.plot(centers[filled], conf, "_", color="C3", ms=14, mew=2, label="mean confidence")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(f"{title}: ECE {float(bins['ece']):.3f}")
    hist.bar(centers, bins["count"], width=width, color="C7")
    hist.set_xlabel("confidence")
    hist.set_ylabel("predictions")
    hist.set_xlim(0, 1)
    hist.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, path)


def regression_plot(y: np.ndarray, pred: np.ndarray, path: Path, title: str = "Regression (test)",
                    max_points: int = 5000) -> Path:
    """Predicted against actual with the identity line, beside residuals (actual − predicted)
    against predicted. More than ``max_points`` rows are thinned evenly (deterministic)."""
    plt = pyplot()
    y = np.asarray(y, dtype="float64").reshape(-1)
    pred = np.asarray(pred, dtype="float64").reshape(-1)
    if y.size > max_points:
        keep = np.linspace(0, y.size - 1, max_points).astype("int64")
        y, pred = y[keep], pred[keep]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    axes[0].scatter(y, pred, s=8, alpha=0.5)
    finite = np.concatenate([y, pred])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        axes[0].plot([lo, hi], [lo, hi], color="grey", ls="--", lw=0.8, label="predicted = actual")
        axes[0].legend(loc="upper left")
    axes[0].set_xlabel("actual")
    axes[0].set_ylabel("predicted")
    axes[0].set_title("Predicted vs actual")
    axes[1].scatter(pred, y - pred, s=8, alpha=0.5)
    axes[1].axhline(0.0, color="grey", ls="--", lw=0.8)
    axes[1].set_xlabel("predicted")
    axes[1].set_ylabel("residual (actual − predicted)")
    axes[1].set_title("Residuals")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def per_label_plot(rows: Sequence[dict], path: Path, title: str = "Per label (test)") -> Path:
    """Multilabel: ROC AUC and F1 of each label as side-by-side bars, from
    :func:`gapline.evaluate.scoring.per_label` (a label without both classes has no AUC bar)."""
    plt = pyplot()
    names = [str(r["label"]) for r in rows]
    k = len(names)
    x = np.arange(k)
    auc = np.array([r["auc"] for r in rows], dtype="float64")
    f1 = np.array([r["f1"] for r in rows], dtype="float64")
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * k + 2), 4.5))
    ax.bar(x - 0.2, np.nan_to_num(auc, nan=0.0), width=0.4, label="ROC AUC")
    ax.bar(x + 0.2, f1, width=0.4, label="F1")
    for i in np.flatnonzero(np.isnan(auc)):
        ax.text(x[i] - 0.2, 0.01, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x, names, rotation=90 if k > 12 else 0)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)
