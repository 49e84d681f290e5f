"""What retrain and promote write down, in one format for both: timestamps, the report file,
the version tags and MLflow run config they share, and the line that says where the aliases went."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path
from typing import Any

from gapline.config.schema import Config
from gapline.core.files import write_json


def utc_now() -> str:
    """Now, to the second, as ``2024-05-01T12:00:00Z`` (lock holders, reports, tags)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def write_report(root: Path, cfg: Config, report: dict[str, Any]) -> Path:
    """Write ``retrain.report`` (relative to the project root); returns its path."""

    path = root / cfg.retrain.report
    write_json(path, report)
    return path


def run_config(cfg: Config) -> Config:
    """The config for retrain's and promote's own MLflow runs: they mostly wait (on the
    pipeline, on the registry), so they log no system metrics of their own."""
    return dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, system_metrics=False))


def decision_tags(decision: str, reason: str, run_id: str, promoted_at: str = "") -> dict[str, str]:
    """The tags a model version gets when a retrain or promote decides about it."""
    tags = {"retrain.decision": decision, "retrain.reason": reason, "retrain.run_id": run_id}
    if promoted_at:
        tags["retrain.promoted_at"] = promoted_at
    return tags


def aliases_moved(name: str, champion: str, previous: str | None) -> str:
    """``name@champion -> vN, @previous-champion -> vM``: where a promotion left the aliases."""
    return f"{name}@champion -> v{champion}" + (f", @previous-champion -> v{previous}" if previous else "")
