"""More training data as an experiment axis: the same config trained at several fractions.

The one learning-curve implementation: ``gapline learning-curve`` trains its points here, in
this process; the study trains its curve points as cached jobs and turns them into rows with
:func:`curve_row`. Both write the same CSV and plot with :func:`write_learning_curve`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gapline.config.checks import validate
from gapline.config.schema import Config
from gapline.config.tasks import HEADLINE, task_of
from gapline.core.errors import ConfigError, bad_value
from gapline.core.files import write_text
from gapline.data.dataset import validate_dataset
from gapline.data.prepare import load_source
from gapline.evaluate.plots import learning_curve_plot
from gapline.experiments.trial import run_trial

TAIL = ("gap_loss_val", "epochs_run", "train_seconds")


def columns(task: str = "multiclass") -> tuple[str, ...]:
    """The curve's columns for ``task``: its headline metric on every split and the gaps on it
    (positive = overfitting), the loss gap, epochs and time."""
    head = HEADLINE[task]
    return (
        "train_fraction",
        "train_samples",
        f"train_{head}",
        f"val_{head}",
        f"test_{head}",
        f"gap_{head}_val",
        f"gap_{head}_test",
        *TAIL,
    )


COLUMNS = columns("multiclass")


def with_fraction(cfg: Config, fraction: float) -> Config:
    data = dataclasses.replace(cfg.data, train_fraction=float(fraction))
    return validate(dataclasses.replace(cfg, data=data))


def curve_row(fraction: float, row: Mapping[str, Any]) -> dict[str, Any]:
    """One point of the curve from a trial's flat row (``TrialResult.row()`` or a cached job):
    the one row shape both ``gapline learning-curve`` and the study write and plot, with the
    headline of the row's task (its ``task``; a job cached before tasks existed is multiclass).
    The row's metric names say which headline it holds (``tasks.headline_of``)."""
    return {"train_fraction": fraction, **{k: row[k] for k in columns(task_of(row)) if k in row}}


def learning_curve(cfg: Config, fractions: Sequence[float]) -> list[dict[str, Any]]:
    """One row per fraction (ascending); the source is loaded once and split identically."""

    if not fractions:
        raise ConfigError(bad_value("fractions", list(fractions), "at least one fraction in (0, 1]"))
    for f in fractions:
        if not 0.0 < f <= 1.0:
            raise ConfigError(bad_value("fractions", list(fractions), "fractions in (0, 1]"))
    ds = load_source(cfg.data, cfg.task.type)
    validate_dataset(ds, cfg.data.source)
    return [
        curve_row(fraction, run_trial(with_fraction(cfg, fraction), ds).row())
        for fraction in sorted(set(float(f) for f in fractions))
    ]


def rows_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    task = task_of(rows[0]) if rows else "multiclass"
    writer = csv.DictWriter(buf, fieldnames=list(columns(task)), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def write_learning_curve(rows: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    csv_path = out_dir / "learning_curve.csv"
    write_text(csv_path, rows_csv(rows))
    return [csv_path, learning_curve_plot(rows, out_dir / "learning_curve.png")]
