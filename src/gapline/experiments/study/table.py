"""The study's summary: one row per technique (mean and std over seeds), as Markdown, CSV
and a bar chart, for any task.

The columns follow the task (:data:`gapline.config.tasks.HEADLINE`): its headline metric on test, the
gap on it (train vs test, positive = overfitting), the loss gap and, for classification, the
gap in calibration error (ECE). Rows are sorted best first in the headline's direction (lowest
RMSE first for regression). Scores in [0, 1] (accuracy, AUC) read as percent and points; an
error in the target's units (RMSE) reads as it is.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gapline.config.tasks import CLASSIFICATION, HEADLINE, UNIT_SCORES, gap_label, headline_of, higher_is_better, label, task_of
from gapline.evaluate.plots import pyplot, save

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


def _values(values: Sequence[Any]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], float)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = _values(values)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def ci_halfwidth(std: float, n: int, alpha: float = 0.05) -> float:
    """Half the width of the t confidence interval of a mean over ``n`` seeds (NaN below 2)."""
    from scipy import stats

    if n < 2 or not math.isfinite(std):
        return float("nan")
    return float(stats.t.ppf(1 - alpha / 2, n - 1) * std / math.sqrt(n))


def paired_p(diffs: Sequence[float]) -> float:
    """Two-sided paired t-test p-value of ``diffs`` (arm − reference, one per seed) against 0.
    Identical runs (all differences 0) give 1; a constant non-zero difference gives 0."""
    from scipy import stats

    arr = np.asarray(diffs, float)
    if arr.size < 2:
        return float("nan")
    if np.allclose(arr, arr[0], rtol=0, atol=1e-12):
        return 1.0 if abs(arr[0]) <= 1e-12 else 0.0
    return float(stats.ttest_1samp(arr, 0.0).pvalue)


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment over one family of tests (NaN stays NaN, outside the family)."""
    finite = sorted(((p, name) for name, p in pvalues.items() if math.isfinite(p)))
    m, running, out = len(finite), 0.0, {name: float("nan") for name in pvalues}
    for i, (p, name) in enumerate(finite):
        running = max(running, min(1.0, (m - i) * p))
        out[name] = running
    return out


def reference_of(arm: str, arms: Iterable[str], baseline: str) -> str | None:
    """The arm an arm is compared with: ``scratch_X`` for ``transfer_X`` (their own data and
    split), else the baseline; none for the baseline itself and for a scratch arm."""
    arms = set(arms)
    if arm.startswith("transfer_") and "scratch_" + arm[len("transfer_"):] in arms:
        return "scratch_" + arm[len("transfer_"):]
    if arm == baseline or arm.startswith("scratch_") or baseline not in arms:
        return None
    return baseline


def compare(table: list[dict[str, Any]], by_arm: Mapping[str, list[dict[str, Any]]], head: str, baseline: str, alpha: float) -> None:
    """Add to each arm's row its paired difference on ``head`` with its reference (by seed),
    the difference's CI, the paired t-test's p-value, Holm's adjusted p over all the arms
    compared, and a verdict: better or worse beyond noise (adjusted p < alpha), or empty."""
    pvalues: dict[str, float] = {}
    rows = {r["technique"]: r for r in table}
    for arm, runs in by_arm.items():
        row, ref = rows[arm], reference_of(arm, by_arm, baseline)
        row.update(vs=ref or "", delta_mean=float("nan"), delta_ci=float("nan"), p_value=float("nan"))
        if ref is None:
            continue
        mine = {r["seed"]: r.get(head) for r in runs}
        theirs = {r["seed"]: r.get(head) for r in by_arm[ref]}
        pairs = [(float(a), float(b)) for s, a in sorted(mine.items()) if a is not None and (b := theirs.get(s)) is not None]
        diffs = [a - b for a, b in pairs if math.isfinite(a - b)]  # a diverged seed drops out
        if not diffs:
            continue
        mean, std = _mean_std(diffs)
        row.update(delta_mean=mean, delta_ci=ci_halfwidth(std, len(diffs), alpha), p_value=paired_p(diffs))
        pvalues[arm] = row["p_value"]
    adjusted = holm(pvalues)
    sign = 1.0 if higher_is_better(head) else -1.0
    for row in table:
        p = adjusted.get(row["technique"], float("nan"))
        row["p_holm"] = p
        verdict = ""
        if math.isfinite(p) and p < alpha:
            verdict = "better" if sign * row["delta_mean"] > 0 else "worse"
        row["verdict"] = verdict


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def summarize(
    results: Iterable[dict[str, Any]],
    classical: Sequence[dict[str, Any]] = (),
    baseline: str = "baseline",
    alpha: float = 0.05,
    tuning: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per arm (mean, std and the CI half-width over seeds; the paired comparison with
    its reference, :func:`compare`; what its tuning chose and cost), plus classical rows; best
    first on the task's headline (highest accuracy/AUC, lowest RMSE), ties by name."""
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
            values: list[Any] = [r.get(key) for r in runs]
            if key == "onset_epoch":  # -1 means "no onset", not an epoch to average
                onsets = [v for v in values if v is not None and v >= 0]
                values = onsets or [-1]
            mean, std = _mean_std(values)
            row[f"{key}_mean"], row[f"{key}_std"] = mean, std
            row[f"{key}_ci"] = ci_halfwidth(std, _values(values).size, alpha)
        chosen = (tuning or {}).get(arm)
        row.update(chosen=chosen.chosen if chosen else "", trials=chosen.trials if chosen else 0,
                   tuning_seconds=chosen.seconds if chosen else 0.0)
        table.append(row)
    compare(table, by_arm, head, baseline, alpha)
    for c in classical:
        row = {"technique": c["arm"], "runs": 1, "techniques": "classical", "task": task}
        for key in keys:
            row[f"{key}_mean"], row[f"{key}_std"], row[f"{key}_ci"] = _float(c.get(key, float("nan"))), 0.0, float("nan")
        row.update(chosen="", trials=0, tuning_seconds=0.0, vs="", delta_mean=float("nan"), delta_ci=float("nan"),
                   p_value=float("nan"), p_holm=float("nan"), verdict="")
        table.append(row)
    sign = -1.0 if higher_is_better(head) else 1.0
    table.sort(key=lambda r: (math.isnan(r[f"{head}_mean"]), sign * np.nan_to_num(r[f"{head}_mean"]), r["technique"]))
    return table


def decimals(value: float) -> int:
    """Three significant digits for a value in the target's units (54.2, 0.0345, 1234)."""
    if not math.isfinite(value) or value == 0:
        return 3
    return int(min(6, max(0, 2 - math.floor(math.log10(abs(value))))))


def _pm(row: Mapping[str, Any], key: str, scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± CI half-width`` (just the mean where there is no interval: one run)."""
    mean, ci = row[f"{key}_mean"], _float(row.get(f"{key}_ci"))
    if math.isnan(mean):
        return "–"
    return f"{mean * scale:.{digits}f}" + ("" if math.isnan(ci) else f" ± {ci * scale:.{digits}f}")


def _num(value: float, fmt: str) -> str:
    return "–" if value is None or math.isnan(value) else format(value, fmt)


def _has(table: Sequence[Mapping[str, Any]], key: str) -> bool:
    return any(not math.isnan(_float(r.get(f"{key}_mean"))) for r in table)


def _versus(row: Mapping[str, Any], baseline: str, scale: float, digits: int) -> str:
    """The paired difference with the arm's reference: ``+2.6 ± 1.1 (p=0.004) better``."""
    delta = _float(row.get("delta_mean"))
    if math.isnan(delta):
        return "–"
    text = f"{delta * scale:+.{digits}f}"
    ci = _float(row.get("delta_ci"))
    if not math.isnan(ci):
        text += f" ± {ci * scale:.{digits}f}"
    p = _float(row.get("p_holm"))
    if not math.isnan(p):
        text += f" (p={p:.2g})"
    if row.get("verdict"):
        text += f" {row['verdict']}"
    if row.get("vs") and row["vs"] != baseline:
        text += f" vs {row['vs']}"
    return text


def table_markdown(table: Sequence[dict[str, Any]], baseline: str = "baseline", alpha: float = 0.05) -> str:
    """The table a person reads (``study.md``, also printed): the task's headline on test with
    its confidence interval and its paired difference with the baseline, its gap (percent and
    points for a score in [0, 1], the target's units for an error), the loss gap, the ECE gap
    where the rows have one, what tuning chose and cost; ± is the CI half-width over seeds,
    dashes for n/a."""
    head = headline_of(table[0]) if table else "accuracy"
    unit = head in UNIT_SCORES
    level = f"{100 * (1 - alpha):g} % CI"
    if unit:
        cols = [f"test {label(head)} % (± {level})", f"{label(head)} gap ({gap_label(head)}) pts"]
        scale, digits = 100.0, 1
    else:
        cols = [f"test {label(head)} (± {level})", f"{label(head)} gap ({gap_label(head)})"]
        scale, digits = 1.0, decimals(np.nanmedian([_float(r[f"test_{head}_mean"]) for r in table] or [float("nan")]))
    versus = any(not math.isnan(_float(r.get("delta_mean"))) for r in table)
    if versus:
        cols.insert(1, f"vs {baseline}{' pts' if unit else ''} (paired, Holm p)")
    cols.append("loss gap (test−train)")
    ece = _has(table, "gap_ece_test")
    if ece:
        cols.append("ECE gap (test−train) pts")
    tuned = any(r.get("trials") for r in table)
    if tuned:
        cols += ["tuned to", "trials", "tuning s"]
    cols += ["onset epoch", "params", "train time s"]
    header = "| technique | " + " | ".join(cols) + " |\n" + "|---" * (len(cols) + 1) + "|\n"
    lines = []
    for r in table:
        onset = r["onset_epoch_mean"]
        onset_text = "none" if not math.isnan(onset) and onset < 0 else _num(onset, ".0f")
        cells = [r["technique"], _pm(r, f"test_{head}", scale, digits)]
        if versus:
            cells.append(_versus(r, baseline, scale, digits))
        cells += [_pm(r, f"gap_{head}_test", scale, digits), _num(r["gap_loss_test_mean"], ".3f")]
        if ece:
            cells.append(_pm(r, "gap_ece_test"))
        if tuned:
            cells += [r.get("chosen") or "–", str(r.get("trials") or "–"),
                      _num(r["tuning_seconds"], ".0f") if r.get("trials") else "–"]
        cells += [onset_text, _num(r["params_mean"], ",.0f"), _num(r["train_seconds_mean"], ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return header + "\n".join(lines) + "\n"


TEXT_FIELDS = ("technique", "techniques", "chosen", "vs", "verdict")
COMPARISON = ("vs", "delta_mean", "delta_ci", "p_value", "p_holm", "verdict")
TUNING = ("chosen", "trials", "tuning_seconds")


def table_csv(table: Sequence[dict[str, Any]]) -> str:
    """Every mean, std and CI half-width unrounded (6 significant digits), the comparison with
    the reference and the tuning, for tools (``study.csv``)."""
    keys = row_keys(task_of(table[0]) if table else "multiclass")
    fields = (["technique", "runs", "techniques"] + [f"{k}_{s}" for k in keys for s in ("mean", "std", "ci")]
              + list(COMPARISON) + list(TUNING))
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
        row: dict[str, Any] = {k: (v if k in TEXT_FIELDS else _float(v)) for k, v in r.items()}
        row["runs"] = int(row["runs"])
        if "trials" in row:
            row["trials"] = int(row["trials"])
        row["task"] = task_of(row)
        out.append(row)
    return out


def bar_chart(table: Sequence[dict[str, Any]], path: Path) -> Path:
    """The task's headline on test and its gap per technique, side by side (``study.png``)."""

    head = headline_of(table[0]) if table else "accuracy"
    unit = head in UNIT_SCORES
    scale = 100.0 if unit else 1.0
    plt = pyplot()
    names = [r["technique"] for r in table]
    y = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.5), sharey=True)
    axes[0].barh(y, [r[f"test_{head}_mean"] * scale for r in table],
                 xerr=[np.nan_to_num(_float(r.get(f"test_{head}_ci"))) * scale for r in table], color="C0", capsize=3)
    if unit and table:
        lo = np.nanmin([r[f"test_{head}_mean"] for r in table]) * 100
        axes[0].set_xlim(max(0.0, lo - 5) if math.isfinite(lo) else 0.0, 100)
    axes[0].set_xlabel(f"test {label(head)}" + (" %" if unit else ""))
    axes[1].barh(y, [r[f"gap_{head}_test_mean"] * scale for r in table],
                 xerr=[np.nan_to_num(_float(r.get(f"gap_{head}_test_ci"))) * scale for r in table], color="C3", capsize=3)
    axes[1].axvline(0, color="grey", lw=0.8)
    axes[1].set_xlabel(f"{label(head)} gap, {gap_label(head).replace('−', ' − ')}" + (" (points)" if unit else ""))
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Regularization study (mean over seeds; bars: confidence interval)")
    fig.tight_layout()
    return save(fig, path)
