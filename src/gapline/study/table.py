"""The study's summary: one row per technique (mean and std over seeds), as Markdown, CSV
and a bar chart, for any task.

The columns follow the task (:data:`gapline.tasks.HEADLINE`): its headline metric on test, the
gap on it (train vs test, positive = overfitting), the loss gap and, for classification, the
gap in calibration error (ECE). Rows are sorted best first in the headline's direction (lowest
RMSE first for regression). Scores in [0, 1] (accuracy, AUC) read as percent and points; an
error in the target's units (RMSE) reads as it is.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..tasks import CLASSIFICATION, HEADLINE, UNIT_SCORES, gap_label, headline_of, higher_is_better, label, task_of  # noqa: F401 (re-exported)

# Metrics whose values lie in [0, 1]: shown as percent (points for their gaps).
TAIL_KEYS = ("onset_epoch", "best_epoch", "epochs_run", "params", "train_seconds")


def row_keys(task: str = "multiclass") -> tuple[str, ...]:
    """The numbers of a summary row (each as ``<key>_mean`` and ``<key>_std``) for ``task``."""
    head = HEADLINE[task]
    keys = [f"test_{head}", f"val_{head}", f"train_{head}", f"gap_{head}_test", f"gap_{head}_val", "gap_loss_test"]
    if task in CLASSIFICATION:
        keys.append("gap_ece_test")
    return (*keys, *TAIL_KEYS)


ROW_KEYS = row_keys("multiclass")


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], float)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def summarize(results: Iterable[dict[str, Any]], classical: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """One row per arm (mean and std over seeds), plus classical rows; best first on the task's
    headline (highest accuracy/AUC, lowest RMSE), ties by name."""
    results = list(results)
    arms = [r for r in results if r["kind"] == "arm"]
    task = task_of(next(iter([*arms, *classical]), {}))
    keys = row_keys(task)
    head = f"test_{HEADLINE[task]}"
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for r in arms:
        by_arm.setdefault(r["arm"], []).append(r)
    table = []
    for arm, runs in by_arm.items():
        row: dict[str, Any] = {"technique": arm, "runs": len(runs), "techniques": runs[0].get("techniques", ""), "task": task}
        for key in keys:
            values = [r.get(key) for r in runs]
            if key == "onset_epoch":  # -1 means "no onset", not an epoch to average
                onsets = [v for v in values if v is not None and v >= 0]
                values = onsets or [-1]
            mean, std = _mean_std(values)
            row[f"{key}_mean"], row[f"{key}_std"] = mean, std
        table.append(row)
    for c in classical:
        row = {"technique": c["arm"], "runs": 1, "techniques": "classical", "task": task}
        for key in keys:
            row[f"{key}_mean"], row[f"{key}_std"] = _float(c.get(key, float("nan"))), 0.0
        table.append(row)
    sign = -1.0 if higher_is_better(head) else 1.0
    table.sort(key=lambda r: (math.isnan(r[f"{head}_mean"]), sign * np.nan_to_num(r[f"{head}_mean"]), r["technique"]))
    return table


def _decimals(value: float) -> int:
    """Three significant digits for a value in the target's units (54.2, 0.0345, 1234)."""
    if not math.isfinite(value) or value == 0:
        return 3
    return int(min(6, max(0, 2 - math.floor(math.log10(abs(value))))))


def _pm(row: Mapping[str, Any], key: str, scale: float = 100.0, digits: int = 1) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    if math.isnan(mean):
        return "–"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _num(value: float, fmt: str) -> str:
    return "–" if value is None or math.isnan(value) else format(value, fmt)


def _has(table: Sequence[Mapping[str, Any]], key: str) -> bool:
    return any(not math.isnan(_float(r.get(f"{key}_mean"))) for r in table)


def table_markdown(table: Sequence[dict[str, Any]]) -> str:
    """The table a person reads (``study.md``, also printed): the task's headline on test and its
    gap (percent and points for a score in [0, 1], the target's units for an error), the loss
    gap, the ECE gap where the rows have one, ± std, dashes for n/a."""
    head = headline_of(table[0]) if table else "accuracy"
    unit = head in UNIT_SCORES
    if unit:
        cols = [f"test {label(head)} %", f"{label(head)} gap ({gap_label(head)}) pts"]
        scale, digits = 100.0, 1
    else:
        cols = [f"test {label(head)}", f"{label(head)} gap ({gap_label(head)})"]
        scale, digits = 1.0, _decimals(np.nanmedian([_float(r[f"test_{head}_mean"]) for r in table] or [float("nan")]))
    cols.append("loss gap (test−train)")
    ece = _has(table, "gap_ece_test")
    if ece:
        cols.append("ECE gap (test−train) pts")
    cols += ["onset epoch", "params", "train time s"]
    header = "| technique | " + " | ".join(cols) + " |\n" + "|---" * (len(cols) + 1) + "|\n"
    lines = []
    for r in table:
        onset = r["onset_epoch_mean"]
        onset_text = "none" if not math.isnan(onset) and onset < 0 else _num(onset, ".0f")
        cells = [r["technique"], _pm(r, f"test_{head}", scale, digits), _pm(r, f"gap_{head}_test", scale, digits),
                 _num(r["gap_loss_test_mean"], ".3f")]
        if ece:
            cells.append(_pm(r, "gap_ece_test"))
        cells += [onset_text, _num(r["params_mean"], ",.0f"), _num(r["train_seconds_mean"], ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return header + "\n".join(lines) + "\n"


def table_csv(table: Sequence[dict[str, Any]]) -> str:
    """Every mean and std unrounded (6 significant digits) for tools (``study.csv``)."""
    keys = row_keys(task_of(table[0]) if table else "multiclass")
    fields = ["technique", "runs", "techniques"] + [f"{k}_{s}" for k in keys for s in ("mean", "std")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in table:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def read_csv(path: Path) -> list[dict[str, Any]]:
    """A ``study.csv`` back as summary rows (numbers as floats), e.g. to render its table again."""
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        row: dict[str, Any] = {k: (v if k in ("technique", "techniques") else _float(v)) for k, v in r.items()}
        row["runs"] = int(row["runs"])
        row["task"] = task_of(row)
        out.append(row)
    return out


def bar_chart(table: Sequence[dict[str, Any]], path: Path) -> Path:
    """The task's headline on test and its gap per technique, side by side (``study.png``)."""
    from ..plots import pyplot, save

    head = headline_of(table[0]) if table else "accuracy"
    unit = head in UNIT_SCORES
    scale = 100.0 if unit else 1.0
    plt = pyplot()
    names = [r["technique"] for r in table]
    y = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.5), sharey=True)
    axes[0].barh(y, [r[f"test_{head}_mean"] * scale for r in table],
                 xerr=[r[f"test_{head}_std"] * scale for r in table], color="C0", capsize=3)
    if unit and table:
        lo = np.nanmin([r[f"test_{head}_mean"] for r in table]) * 100
        axes[0].set_xlim(max(0.0, lo - 5) if math.isfinite(lo) else 0.0, 100)
    axes[0].set_xlabel(f"test {label(head)}" + (" %" if unit else ""))
    axes[1].barh(y, [r[f"gap_{head}_test_mean"] * scale for r in table],
                 xerr=[r[f"gap_{head}_test_std"] * scale for r in table], color="C3", capsize=3)
    axes[1].axvline(0, color="grey", lw=0.8)
    axes[1].set_xlabel(f"{label(head)} gap, {gap_label(head).replace('−', ' − ')}" + (" (points)" if unit else ""))
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Regularization study (mean ± std over seeds)")
    fig.tight_layout()
    return save(fig, path)
