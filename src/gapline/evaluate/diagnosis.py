"""A plain-words verdict on a trained model: underfitting, good fit or overfitting, judged on
the task's headline metric (accuracy, AUC or RMSE).

Also flags the failure patterns users hit most: validation scores near chance while
training scores are high (a broken combination, not ordinary overfitting), a model that
grew overconfident on unseen data (calibration), batch norm fed tiny batches, and early
stopping that restored a very early epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gapline.config.tasks import TaskSpec, as_spec

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


# A regression overfits when its validation error exceeds the training error by this share.
RELATIVE_ERROR_GAP = 0.15
# Calibration: flagged when validation ECE exceeds the train one by this, and is at least twice it.
ECE_GAP_FLAG = 0.02
# A classifier also overfits when its validation loss exceeds the train loss by this much: a
# headline like AUC saturates near 1 while the loss (and the confidence) still drift apart.
LOSS_GAP = 0.1
NAMES = {"accuracy": "accuracy", "auc": "AUC", "rmse": "RMSE", "mae": "MAE"}


def diagnose(
    metrics: dict[str, float],
    task: TaskSpec | int,
    onset_epoch: int | None,
    used: Sequence[str],
    gap_threshold: float = 0.03,
    underfit_accuracy: float = 0.8,
    *,
    batch_size: int | None = None,
    best_epoch: int | None = None,
    epochs_run: int | None = None,
) -> dict[str, Any]:
    """Classify the fit on the task's headline metric and suggest what this config does not
    use yet. ``task``: a TaskSpec (a number of classes: multiclass). A classifier is judged
    on accuracy (multiclass) or AUC (binary, multilabel): underfitting below
    ``underfit_accuracy``, overfitting above a ``gap_threshold`` gap or a loss gap above
    :data:`LOSS_GAP`; a regression on R²
    (underfitting below 0.5) and on its validation RMSE against the training RMSE
    (overfitting above :data:`RELATIVE_ERROR_GAP` more)."""
    spec = as_spec(task)
    head = spec.headline
    name = NAMES.get(head, head)
    train, val = metrics[f"train_{head}"], metrics[f"val_{head}"]
    gap = metrics[f"gap_{head}_val"]
    flags = _flags(metrics, spec, used, batch_size, best_epoch, epochs_run)
    if spec.name == "regression":
        r2 = metrics.get("train_r2", 1.0)
        rel = gap / train if train > 0 else 0.0
        shown = f"train {name} {train:.4g} vs validation {val:.4g} (gap {gap:+.4g}, {rel:+.0%} of the train error, loss gap {metrics['gap_loss_val']:.3f})"
        underfit, overfit = r2 < 0.5, rel > RELATIVE_ERROR_GAP
        limits = f"validation {name} within {RELATIVE_ERROR_GAP:.0%} of the train error"
        under_text = f"Underfitting: the model explains only {r2:.0%} of the training target's variance (R²); {shown}."
    else:
        shown = f"train {name} {train:.1%} vs validation {val:.1%} (gap {gap * 100:.1f} points, loss gap {metrics['gap_loss_val']:.3f})"
        underfit = train < underfit_accuracy
        overfit = gap > gap_threshold or metrics["gap_loss_val"] > LOSS_GAP
        limits = f"a gap of at most {gap_threshold * 100:g} points and a loss gap of at most {LOSS_GAP:g}"
        under_text = f"Underfitting: training {name} is only {train:.1%} (validation {val:.1%})."
    if underfit:
        verdict = "underfitting"
        text = f"{under_text} Train longer, use a larger model or less regularization."
    elif overfit:
        verdict = "overfitting"
        onset = f" from epoch {onset_epoch}" if onset_epoch and onset_epoch > 0 else ""
        missing = [t for t in ALL_TECHNIQUES if t not in used and not (t == "label_smoothing" and spec.name == "regression")]
        text = (
            f"Overfitting{onset}: {shown}. "
            f"Not used yet: {', '.join(missing) if missing else 'none'}; more training data "
            "(data.train_fraction) also helps."
        )
    else:
        verdict = "good fit"
        text = f"Good fit: {shown}."
        if onset_epoch and onset_epoch > 0:
            text += (
                f" Validation loss was lowest at epoch {onset_epoch} and rose after it while training loss "
                "kept falling: that epoch is where longer training began to overfit (the onset epoch), "
                f"but the model as kept still has {limits}."
            )
    return {"verdict": verdict, "text": text, "flags": flags}


def _flags(
    metrics: dict[str, float],
    spec: TaskSpec,
    used: Sequence[str],
    batch_size: int | None,
    best_epoch: int | None,
    epochs_run: int | None,
) -> list[str]:
    flags = []
    if spec.name == "multiclass":
        train_acc, val_acc = metrics["train_accuracy"], metrics["val_accuracy"]
        chance = 1.0 / max(1, spec.outputs)
        if train_acc > 0.9 and val_acc < 1.5 * chance:
            flags.append(
                f"validation accuracy {val_acc:.1%} is near chance ({chance:.1%}) while training "
                f"accuracy is {train_acc:.1%}: a broken combination (e.g. batch norm with tiny "
                "batches, or early stopping restoring a very early epoch) or a train/validation "
                "mismatch, not ordinary overfitting"
            )
    elif spec.name in ("binary", "multilabel"):
        train_auc, val_auc = metrics.get("train_auc", math.nan), metrics.get("val_auc", math.nan)
        if train_auc > 0.9 and val_auc < 0.6:
            flags.append(
                f"validation AUC {val_auc:.3f} is near chance (0.5) while training AUC is {train_auc:.3f}: "
                "a broken combination or a train/validation mismatch, not ordinary overfitting"
            )
    if spec.classification:
        train_ece, val_ece = metrics.get("train_ece", math.nan), metrics.get("val_ece", math.nan)
        if val_ece - train_ece > ECE_GAP_FLAG and val_ece >= 2 * train_ece:
            flags.append(
                f"overconfident on unseen data: validation calibration error (ECE) {val_ece:.3f} vs "
                f"{train_ece:.3f} on train; overfit networks grow overconfident: early stopping, "
                "label smoothing or more regularization calibrate them (or rescale the logits after training)"
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
    return flags


def as_markdown(d: dict[str, Any]) -> str:
    lines = [f"# Diagnosis: {d['verdict']}", "", d["text"], ""]
    for flag in d["flags"]:
        lines.append(f"- warning: {flag}")
    return "\n".join(lines).rstrip() + "\n"
