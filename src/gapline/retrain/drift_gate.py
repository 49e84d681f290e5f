"""The drift gate of a retrain: the champion's reference (the summary of its training data,
stored in the run of the retrain that trained it), the current data measured against it
before anything is trained, and ``retrain.drift`` applied to the result.

The statistics are :mod:`.drift`, the report :mod:`.drift_report`; the job
(:mod:`.job`) calls :func:`measure`, :func:`stop` and :func:`record` in that order, and
:func:`store_reference` once its pipeline has trained a challenger.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapline import tracking
from gapline.config.schema import Config
from gapline.data.meta import PreparedMeta
from gapline.retrain.drift import Drift, Summary, compare, summarize
from gapline.retrain.drift_report import write_report
from gapline.retrain.outcome import ExitCode
from gapline.retrain.state import TAG_DATA

TAG_REFERENCE = "retrain.drift_reference"
REFERENCE_DIR = "drift/reference"
PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def scratch(root: Path) -> tempfile.TemporaryDirectory:
    """A temporary folder under the project's ``.gapline/`` (the reference on its way)."""
    folder = root / ".gapline"
    folder.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=folder, prefix="retrain-drift-", ignore_cleanup_errors=True)


def report_folder(cfg: Config, root: Path) -> Path:
    """``drift/`` next to ``retrain.report`` (``reports/drift/`` by default)."""
    return (root / cfg.retrain.report).parent / "drift"


def wants_current(champion_tags: Mapping[str, str] | None, fingerprint: str) -> bool:
    """Whether the current data is summarized: only when the champion has a reference to
    compare it with, and the data is not the champion's own."""
    tags = champion_tags or {}
    return bool(tags.get(TAG_REFERENCE)) and tags.get(TAG_DATA) != fingerprint


# --------------------------------------------------------------------------------------
# The champion's reference in MLflow
# --------------------------------------------------------------------------------------


def log_reference(summary: Summary, folder: Path) -> None:
    """The summary as artifacts ``drift/reference/reference.*`` of the active run."""

    folder.mkdir(parents=True, exist_ok=True)
    for path in summary.save(folder):
        tracking.log_artifact(path, REFERENCE_DIR)


def fetch_reference(client: Any, run_id: str, folder: Path) -> Summary:
    """The reference a run stored (:func:`log_reference`), downloaded into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    before = os.environ.get(PROGRESS_BAR)
    os.environ[PROGRESS_BAR] = "false"  # no progress bar on a scheduled job's stderr
    try:
        return Summary.load(Path(client.download_artifacts(run_id, REFERENCE_DIR, str(folder))))
    finally:
        if before is None:
            os.environ.pop(PROGRESS_BAR, None)
        else:
            os.environ[PROGRESS_BAR] = before


def store_reference(root: Path, prepared: Path, meta: PreparedMeta, run_id: str) -> dict[str, str]:
    """The summary of the data a challenger was trained on (the prepared training split),
    stored in the active run ``run_id``: the reference of the next retrain's check if the
    challenger becomes the champion. Returns the version tag that points at it."""
    summary = summarize(prepared, meta)
    with scratch(root) as tmp:
        log_reference(summary, Path(tmp))
    return {TAG_REFERENCE: run_id}


# --------------------------------------------------------------------------------------
# The check and the policy
# --------------------------------------------------------------------------------------


def measure(
    cfg: Config,
    root: Path,
    client: Any,
    champion: str | None,
    champion_tags: Mapping[str, str] | None,
    fingerprint: str,
    current: Summary | None,
) -> tuple[Drift, Summary | None]:
    """The current data (``current``, its summary) against the champion's reference; the
    reference too, when one was read (the report draws both)."""
    rc = cfg.retrain
    policy: dict[str, Any] = {"policy": rc.drift, "max_drift": rc.max_drift, "champion": champion}
    if champion_tags is None:
        return Drift("no-champion", note="no champion yet: nothing to compare the data with", **policy), None
    if champion_tags.get(TAG_DATA) == fingerprint:
        return Drift("unchanged", **policy), None
    run_id = champion_tags.get(TAG_REFERENCE)
    if not run_id or current is None:
        note = (f"champion v{champion} has no stored reference (tag {TAG_REFERENCE}): no retrain "
                "recorded its training data; the next champion a retrain trains will have one")
        return Drift("no-reference", note=note, **policy), None
    try:
        with scratch(root) as tmp:
            reference = fetch_reference(client, run_id, Path(tmp))
    except Exception as exc:  # noqa: BLE001 - an artifact deleted by hand must not stop every retrain
        note = f"cannot read champion v{champion}'s reference from run {run_id}: {tracking.error_text(exc)}"
        return Drift("no-reference", note=note, reference_run=run_id, **policy), None
    return compare(reference, current, reference_run=run_id, **policy), reference


@dataclass(frozen=True)
class Stop:
    """``retrain.drift`` ends the retrain before training: ``blocked`` or ``skipped``."""

    decision: str
    exit_code: ExitCode
    reason: str


def stop(drift: Drift, policy: str, force: bool, changed: Mapping[str, Any], report: str) -> Stop | None:
    """What the policy says: None to train. ``block``: data that drifted beyond
    ``retrain.max_drift`` (exit 3). ``require``: a change of the data alone (no ``--force``)
    that neither drifted nor grew (exit 0). ``report`` never stops. ``report`` is where the
    reason tells the operator to look."""
    if policy == "block" and drift.detected:
        reason = (f"data drift blocks the retrain (retrain.drift=block): {drift.describe()}; nothing was trained "
                  f"or promoted, see {report}")
        return Stop("blocked", ExitCode.KEPT, reason)
    if (policy == "require" and not force and set(changed) == {"data"} and drift.known
            and not drift.detected and not drift.grew):
        reason = (f"nothing to retrain: the data changed but neither drifted nor grew (retrain.drift=require): "
                  f"{drift.describe()}; see {report}")
        return Stop("skipped", ExitCode.OK, reason)
    return None


def record(folder: Path, drift: Drift, reference: Summary | None, current: Summary | None, decision: str) -> None:
    """The report into ``folder`` and the active run: its files, metrics and tags."""

    paths = write_report(folder, drift, reference, current, decision)
    tracking.log_metrics(drift.metrics())
    tracking.log_tags({"retrain.drift_status": drift.status, "retrain.drift_detected": str(drift.detected).lower(),
                       "retrain.drift_gate": decision})
    for path in paths:
        tracking.log_artifact(path, "drift")
