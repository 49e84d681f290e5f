"""Tuning a study arm: of its grid's trials (one per point, at the first seed), keep the point
with the best ``study.objective`` on validation; ties and NaN go to the earlier, weaker point.
Test metrics play no part in the choice, so the arm's test numbers stay an honest estimate."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapline.config.schema import Config, SweepConfig
from gapline.config.tasks import HEADLINE, objective
from gapline.core.files import write_text


@dataclass(frozen=True)
class Tuning:
    """What one arm's search chose, and what the search cost."""

    arm: str
    point: tuple[str, ...]  # the chosen overrides, e.g. ("regularization.l2=0.001",)
    trials: int
    seconds: float  # worker-seconds of the trials, all in (compose, data, fit, evaluation)
    objective: float  # the chosen trial's objective on validation

    @property
    def chosen(self) -> str:
        """The point as a table shows it: the last part of each key (``l2=0.001, copies=20``)."""
        return ", ".join(o.split("=", 1)[0].rsplit(".", 1)[-1] + "=" + o.split("=", 1)[1] for o in self.point)


def score(cfg: Config, record: dict[str, Any]) -> float:
    """The trial's ``study.objective`` (lower is better); NaN (a diverged run) is the worst."""
    rule = SweepConfig(objective=cfg.study.objective, gap_penalty=cfg.sweep.gap_penalty)
    value = objective(record, rule, record.get("task", "multiclass"))
    return value if math.isfinite(value) else math.inf


def choose(cfg: Config, trials: Sequence[dict[str, Any]]) -> dict[str, Tuning]:
    """Per tuned arm, its best trial (ties: the earlier point of the grid)."""
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for record in trials:
        by_arm.setdefault(record["arm"], []).append(record)
    out = {}
    for arm, records in by_arm.items():
        records = sorted(records, key=lambda r: r["trial"])
        best = min(records, key=lambda r: (score(cfg, r), r["trial"]))
        out[arm] = Tuning(
            arm=arm,
            point=tuple(best["point"]),
            trials=len(records),
            seconds=sum(float(r.get("job_seconds", r.get("train_seconds", 0.0))) for r in records),
            objective=score(cfg, best),
        )
    return out


def write_tuning(cfg: Config, trials: Sequence[dict[str, Any]], tuning: dict[str, Tuning], path: Path) -> Path:
    """Every trial's point and validation numbers, and which one its arm chose (``tuning.csv``)."""

    buf = io.StringIO()
    fields = ["arm", "trial", "point", "chosen", "objective", "val_nll", "val_loss", "val_headline", "headline",
              "gap_loss_val", "epochs_run", "job_seconds"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in sorted(trials, key=lambda r: (r["arm"], r["trial"])):
        head = HEADLINE[r.get("task", "multiclass")]
        chosen = tuning[r["arm"]].point == tuple(r["point"])
        writer.writerow({
            "arm": r["arm"], "trial": r["trial"], "point": " ".join(r["point"]), "chosen": int(chosen),
            "objective": f"{score(cfg, r):.6g}", "val_nll": f"{r['val_nll']:.6g}" if "val_nll" in r else "",
            "val_loss": f"{r['val_loss']:.6g}", "val_headline": f"{r[f'val_{head}']:.6g}", "headline": head,
            "gap_loss_val": f"{r.get('gap_loss_val', float('nan')):.6g}", "epochs_run": r.get("epochs_run", ""),
            "job_seconds": f"{float(r.get('job_seconds', r.get('train_seconds', 0.0))):.2f}",
        })
    write_text(path, buf.getvalue())
    return path
