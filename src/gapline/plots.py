"""PNG plots a person reads: learning curves, the gap per epoch, the confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .files import atomic_path


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend: plots are written, never shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: dict[str, list[float]], path: Path) -> Path:
    plt = pyplot()
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        train_key = f"train_eval_{metric}" if f"train_eval_{metric}" in history else metric
        ax.plot(epochs, history[train_key], label="train (inference mode)")
        ax.plot(epochs, history[f"val_{metric}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Learning curves")
    fig.tight_layout()
    return save(fig, path)


def gap_curve(history: dict[str, list[float]], path: Path, onset_epoch: int | None) -> Path:
    plt = pyplot()
    epochs = np.arange(1, len(history["gap_accuracy"]) + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, history["gap_accuracy"], label="gap_accuracy (train − val)")
    ax.plot(epochs, history["gap_loss"], label="gap_loss (val − train)")
    ax.axhline(0.0, color="grey", lw=0.8)
    if onset_epoch:
        ax.axvline(onset_epoch, color="red", ls="--", label=f"overfitting onset (epoch {onset_epoch})")
    ax.set_xlabel("epoch")
    ax.set_title("Generalization gap")
    ax.grid(alpha=0.3)
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
    """Accuracy and gap against the number of training samples."""
    plt = pyplot()
    n = [r["train_samples"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(n, [r["train_accuracy"] for r in rows], "o-", label="train")
    axes[0].plot(n, [r["val_accuracy"] for r in rows], "o-", label="validation")
    axes[0].plot(n, [r["test_accuracy"] for r in rows], "o-", label="test")
    axes[0].set_ylabel("accuracy")
    axes[1].plot(n, [r["gap_accuracy_test"] for r in rows], "o-", color="C3", label="gap (train − test)")
    axes[1].axhline(0.0, color="grey", lw=0.8)
    axes[1].set_ylabel("accuracy gap")
    for ax in axes:
        ax.set_xlabel("training samples")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Learning curve: more training data")
    fig.tight_layout()
    return save(fig, path)
