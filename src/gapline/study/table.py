"""The study's summary: one row per technique (mean and std over seeds), as Markdown, CSV
and a bar chart."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

ROW_KEYS = (
    "test_accuracy",
    "val_accuracy",
    "train_accuracy",
    "gap_accuracy_test",
    "gap_accuracy_val",
    "gap_loss_test",
    "onset_epoch",
    "best_epoch",
    "epochs_run",
    "params",
    "train_seconds",
)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], float)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def summarize(results: Iterable[dict[str, Any]], classical: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """One row per arm (mean and std over seeds), plus classical rows; best test accuracy first."""
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r["kind"] == "arm":
            by_arm.setdefault(r["arm"], []).append(r)
    table = []
    for arm, runs in by_arm.items():
        row: dict[str, Any] = {"technique": arm, "runs": len(runs), "techniques": runs[0].get("techniques", "")}
        for key in ROW_KEYS:
            values = [r.get(key) for r in runs]
            if key == "onset_epoch":  # -1 means "no onset", not an epoch to average
                onsets = [v for v in values if v is not None and v >= 0]
                values = onsets or [-1]
            mean, std = _mean_std(values)
            row[f"{key}_mean"], row[f"{key}_std"] = mean, std
        table.append(row)
    for c in classical:
        row = {"technique": c["arm"], "runs": 1, "techniques": "classical"}
        for key in ROW_KEYS:
            value = c.get(key, float("nan"))
            row[f"{key}_mean"], row[f"{key}_std"] = float(value), 0.0
        table.append(row)
    table.sort(key=lambda r: (-np.nan_to_num(r["test_accuracy_mean"], nan=-1.0), r["technique"]))
    return table


def _pm(row: dict[str, Any], key: str, scale: float = 100.0, digits: int = 1) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    if math.isnan(mean):
        return "–"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _num(value: float, fmt: str) -> str:
    return "–" if value is None or math.isnan(value) else format(value, fmt)


def table_markdown(table: Sequence[dict[str, Any]]) -> str:
    """The table a person reads (``study.md``, also printed): percent, ± std, dashes for n/a."""
    header = (
        "| technique | test accuracy % | accuracy gap (train−test) pts | loss gap (test−train) "
        "| onset epoch | params | train time s |\n|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in table:
        onset = r["onset_epoch_mean"]
        onset_text = "none" if not math.isnan(onset) and onset < 0 else _num(onset, ".0f")
        lines.append(
            f"| {r['technique']} | {_pm(r, 'test_accuracy')} | {_pm(r, 'gap_accuracy_test')} "
            f"| {_num(r['gap_loss_test_mean'], '.3f')} | {onset_text} "
            f"| {_num(r['params_mean'], ',.0f')} | {_num(r['train_seconds_mean'], '.1f')} |"
        )
    return header + "\n".join(lines) + "\n"


def table_csv(table: Sequence[dict[str, Any]]) -> str:
    """Every mean and std unrounded (6 significant digits) for tools (``study.csv``)."""
    keys = ["technique", "runs", "techniques"] + [f"{k}_{s}" for k in ROW_KEYS for s in ("mean", "std")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in table:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def bar_chart(table: Sequence[dict[str, Any]], path: Path) -> Path:
    """Test accuracy and accuracy gap per technique, side by side (``study.png``)."""
    from ..plots import pyplot, save

    plt = pyplot()
    names = [r["technique"] for r in table]
    y = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.5), sharey=True)
    axes[0].barh(y, [r["test_accuracy_mean"] * 100 for r in table],
                 xerr=[r["test_accuracy_std"] * 100 for r in table], color="C0", capsize=3)
    lo = min(r["test_accuracy_mean"] for r in table) * 100
    axes[0].set_xlim(max(0.0, lo - 5), 100)
    axes[0].set_xlabel("test accuracy %")
    axes[1].barh(y, [r["gap_accuracy_test_mean"] * 100 for r in table],
                 xerr=[r["gap_accuracy_test_std"] * 100 for r in table], color="C3", capsize=3)
    axes[1].axvline(0, color="grey", lw=0.8)
    axes[1].set_xlabel("accuracy gap, train − test (points)")
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Regularization study (mean ± std over seeds)")
    fig.tight_layout()
    return save(fig, path)
