"""A plain-words verdict on a trained model: underfitting, good fit or overfitting."""

from __future__ import annotations

from typing import Any, Optional, Sequence

ALL_TECHNIQUES = (
    "l2",
    "dropout",
    "early_stopping",
    "augment",
    "batch_norm",
    "noise",
    "weight_sharing",
    "label_smoothing",
    "max_norm",
    "l1",
)


def diagnose(
    metrics: dict[str, float],
    num_classes: int,
    onset_epoch: Optional[int],
    used: Sequence[str],
    gap_threshold: float = 0.03,
    underfit_accuracy: float = 0.8,
) -> dict[str, Any]:
    """Classify the fit and suggest what this config does not use yet."""
    train_acc = metrics["train_accuracy"]
    val_acc = metrics["val_accuracy"]
    gap = metrics["gap_accuracy_val"]
    chance = 1.0 / num_classes
    flags = []
    if train_acc > 0.9 and val_acc < 1.5 * chance:
        flags.append(
            "validation accuracy is near chance while training accuracy is high: a broken "
            "combination (e.g. batch norm with tiny batches, or early stopping restoring a "
            "very early epoch) or a train/validation mismatch"
        )
    if train_acc < underfit_accuracy:
        verdict = "underfitting"
        text = (
            f"Underfitting: training accuracy is only {train_acc:.1%}. Train longer, use a "
            "larger model or less regularization."
        )
    elif gap > gap_threshold:
        verdict = "overfitting"
        onset = f" from epoch {onset_epoch}" if onset_epoch else ""
        missing = [t for t in ALL_TECHNIQUES if t not in used]
        text = (
            f"Overfitting{onset}: train accuracy {train_acc:.1%} vs validation {val_acc:.1%} "
            f"(gap {gap * 100:.1f} points, loss gap {metrics['gap_loss_val']:.3f}). "
            f"Not used yet: {', '.join(missing) if missing else 'none'}; more training data "
            "(data.train_fraction) also helps."
        )
    else:
        verdict = "good fit"
        text = (
            f"Good fit: train accuracy {train_acc:.1%} vs validation {val_acc:.1%} "
            f"(gap {gap * 100:.1f} points)."
        )
    return {"verdict": verdict, "text": text, "flags": flags}


def as_markdown(d: dict[str, Any]) -> str:
    lines = [f"# Diagnosis: {d['verdict']}", "", d["text"], ""]
    for flag in d["flags"]:
        lines.append(f"- warning: {flag}")
    return "\n".join(lines).rstrip() + "\n"
