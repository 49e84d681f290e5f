"""A plain-words verdict on a trained model: underfitting, good fit or overfitting.

Also flags the failure patterns users hit most: validation accuracy near chance while
training accuracy is high (a broken combination, not ordinary overfitting), batch norm fed
tiny batches, and early stopping that restored a very early epoch.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

# What to suggest against overfitting, roughly in the order worth trying.
ALL_TECHNIQUES = (
    "l2",
    "dropout",
    "early_stopping",
    "augment",
    "online_augment",
    "batch_norm",
    "noise",
    "weight_sharing",
    "label_smoothing",
    "max_norm",
    "tying",
    "l1",
)
SMALL_BATCH_FOR_BN = 8


def diagnose(
    metrics: dict[str, float],
    num_classes: int,
    onset_epoch: Optional[int],
    used: Sequence[str],
    gap_threshold: float = 0.03,
    underfit_accuracy: float = 0.8,
    *,
    batch_size: Optional[int] = None,
    best_epoch: Optional[int] = None,
    epochs_run: Optional[int] = None,
) -> dict[str, Any]:
    """Classify the fit and suggest what this config does not use yet."""
    train_acc = metrics["train_accuracy"]
    val_acc = metrics["val_accuracy"]
    gap = metrics["gap_accuracy_val"]
    chance = 1.0 / num_classes
    flags = []
    if train_acc > 0.9 and val_acc < 1.5 * chance:
        flags.append(
            f"validation accuracy {val_acc:.1%} is near chance ({chance:.1%}) while training "
            f"accuracy is {train_acc:.1%}: a broken combination (e.g. batch norm with tiny "
            "batches, or early stopping restoring a very early epoch) or a train/validation "
            "mismatch, not ordinary overfitting"
        )
    if "batch_norm" in used and batch_size is not None and batch_size < SMALL_BATCH_FOR_BN:
        flags.append(
            f"batch norm with train.batch_size={batch_size}: batch statistics of so few samples "
            "are noisy and differ from the moving averages used at inference; use batches of "
            f"at least {SMALL_BATCH_FOR_BN}"
        )
    if (
        "early_stopping" in used
        and best_epoch is not None
        and epochs_run is not None
        and best_epoch <= 2 < epochs_run
    ):
        flags.append(
            f"early stopping restored epoch {best_epoch} of {epochs_run}: validation loss never "
            "improved after the start; check the learning rate and the validation split"
        )
    if train_acc < underfit_accuracy:
        verdict = "underfitting"
        text = (
            f"Underfitting: training accuracy is only {train_acc:.1%} (validation {val_acc:.1%}). "
            "Train longer, use a larger model or less regularization."
        )
    elif gap > gap_threshold:
        verdict = "overfitting"
        onset = f" from epoch {onset_epoch}" if onset_epoch and onset_epoch > 0 else ""
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
