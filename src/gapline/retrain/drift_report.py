"""The drift check's report: ``drift.html`` (one self-contained page, no scripts: the verdict,
then every column with its test, p-value, moments and both histograms, drifted first) and
``drift.json`` (the same numbers), written together and atomically."""

from __future__ import annotations

import html
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from gapline.core.files import atomic_dir, write_json, write_text
from gapline.retrain.drift import P_VALUE, Drift, Summary


def _moments(mean: float | None, std: float | None) -> str:
    return "-" if mean is None or std is None else f"{mean:.4g} &plusmn; {std:.3g}"


def _histograms(ref: np.ndarray, cur: np.ndarray, width: int = 160, height: int = 36) -> str:
    """Two overlaid histograms (reference grey, current orange) as an inline SVG."""
    lo, hi = float(min(ref.min(), cur.min())), float(max(ref.max(), cur.max()))
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return ""
    bins = np.linspace(lo, hi, 21)
    parts = []
    hists = [np.histogram(a, bins)[0] / max(len(a), 1) for a in (ref, cur)]
    top = max(float(h.max()) for h in hists) or 1.0
    step = width / 20
    for hist, colour in zip(hists, ("#999", "#e8710a")):
        for k, v in enumerate(hist):
            bar = height * float(v) / top
            parts.append(f'<rect x="{k * step:.1f}" y="{height - bar:.1f}" width="{step:.1f}" height="{bar:.1f}" '
                         f'fill="{colour}" fill-opacity="0.55"/>')
    return f'<svg width="{width}" height="{height}">{"".join(parts)}</svg>'


def render_html(drift: Drift, reference: Summary | None, current: Summary | None, decision: str) -> str:
    """One page, no scripts and no external files: the summary, then every column, drifted first."""
    s = drift.summary()
    esc = html.escape
    head = [("policy", f"retrain.drift={drift.policy}"), ("decision", decision), ("status", drift.status),
            ("drift share", "-" if s["drift_share"] is None else f"{s['drift_share']:.3f}"),
            ("threshold", f"retrain.max_drift={drift.max_drift:g} (a column drifts at p < {P_VALUE:g})"),
            ("drifted columns", f"{drift.n_drifted} of {drift.n_columns}"),
            ("rows (champion -> current)", f"{drift.rows_reference} -> {drift.rows_current}"),
            ("sampled rows (champion, current)", f"{drift.sample_reference}, {drift.sample_current}"),
            ("champion", f"v{drift.champion}" if drift.champion else "none"),
            ("reference run", drift.reference_run or "none")]
    if drift.note:
        head.append(("note", drift.note))
    rows = []
    index = {name: i for i, name in enumerate(current.columns)} if current is not None else {}
    comparable = reference is not None and current is not None and reference.columns == current.columns
    for c in sorted(drift.columns, key=lambda c: (not c.drifted, c.p_value, c.name)):
        chart = ""
        if comparable and c.name in index:
            i = index[c.name]
            chart = _histograms(reference.values[:, i], current.values[:, i])  # type: ignore[union-attr]
        rows.append(
            f'<tr class="{"drifted" if c.drifted else ""}"><td>{esc(c.name)}</td><td>{esc(c.test)}</td>'
            f"<td>{c.statistic:.4g}</td><td>{c.p_value:.3g}</td><td>{'yes' if c.drifted else 'no'}</td>"
            f"<td>{_moments(c.reference_mean, c.reference_std)}</td>"
            f"<td>{_moments(c.current_mean, c.current_std)}</td><td>{chart}</td></tr>"
        )
    summary = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in head)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>gapline retrain: data drift</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;text-align:left}tr.drifted td{background:#fde8e8}"
        "</style></head><body>\n<h1>Data drift: the champion's training data vs the current data</h1>\n"
        f"<table>{summary}</table>\n<h2>Columns</h2>\n<p>Kolmogorov-Smirnov (ks) for numeric columns, chi-square "
        "(chi2) for labels and features with few values; histograms: champion grey, current orange.</p>\n"
        "<table><tr><th>column</th><th>test</th><th>statistic</th><th>p-value</th><th>drifted</th>"
        "<th>champion mean &plusmn; std</th><th>current mean &plusmn; std</th><th>distributions</th></tr>\n"
        + "\n".join(rows) + "\n</table>\n</body></html>\n"
    )


def write_report(folder: Path, drift: Drift, reference: Summary | None, current: Summary | None,
                 decision: str) -> list[Path]:
    """``drift.html`` and ``drift.json`` in ``folder``, replaced as a whole (atomically)."""

    with atomic_dir(folder) as tmp:
        write_text(tmp / "drift.html", render_html(drift, reference, current, decision))
        write_json(tmp / "drift.json", {**drift.summary(), "decision": decision,
                                        "columns": [asdict(c) for c in drift.columns]})
    return [folder / "drift.html", folder / "drift.json"]


