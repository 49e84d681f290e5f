"""The decision rule: score the challenger and the champion on the same, current splits, and
promote the challenger only if it clears every check in :func:`decide`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..config import RetrainConfig

SCORE_TOLERANCE = 1e-9  # accuracies are ratios: 0.85 + 0.05 must compare equal to 0.9


def gap_key(metric: str) -> str:
    """The gap that goes with the metric: train accuracy minus that split's accuracy."""
    return "gap_accuracy_" + metric.split("_", 1)[0]


@dataclass
class Scored:
    """A registered version scored on the current splits (``score`` None: it could not be)."""

    version: str
    score: Optional[float]
    gap: Optional[float]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "score": self.score, "gap": self.gap, "metrics": self.metrics}
        if self.error:
            out["error"] = self.error
        return out


def decide(rc: RetrainConfig, challenger: Scored, champion: Optional[Scored]) -> tuple[bool, str]:
    """Promote the challenger only if every check passes:

    - its gap (train accuracy minus the metric split's accuracy) is at most ``max_gap``;
    - its score reaches the floor ``min_score``;
    - there is no champion, or the champion cannot be scored on the current splits, or
      ``challenger >= champion + margin`` (greater or equal: with margin 0 a tie promotes the
      newer model).

    Returns ``(promote, reason)``; the reason names every check that failed.
    """
    metric = rc.metric
    assert challenger.score is not None and challenger.gap is not None
    failed: list[str] = []
    passed: list[str] = []
    if challenger.gap > rc.max_gap + SCORE_TOLERANCE:
        failed.append(f"its gap {challenger.gap:+.4f} exceeds retrain.max_gap={rc.max_gap:g}")
    else:
        passed.append(f"gap {challenger.gap:+.4f} <= {rc.max_gap:g}")
    if challenger.score < rc.min_score - SCORE_TOLERANCE:
        failed.append(f"its {metric} {challenger.score:.4f} is below retrain.min_score={rc.min_score:g}")
    else:
        passed.append(f"{metric} {challenger.score:.4f} >= floor {rc.min_score:g}")
    if champion is None:
        passed.append("no champion yet")
    elif champion.score is None:
        passed.append(f"champion v{champion.version} cannot be scored on the current splits ({champion.error})")
    else:
        needed = champion.score + rc.margin
        if challenger.score < needed - SCORE_TOLERANCE:
            failed.append(
                f"its {metric} {challenger.score:.4f} < champion v{champion.version}'s "
                f"{champion.score:.4f} + margin {rc.margin:g}"
            )
        else:
            passed.append(
                f"{metric} {challenger.score:.4f} >= champion v{champion.version}'s "
                f"{champion.score:.4f} + margin {rc.margin:g}"
            )
    if failed:
        return False, f"challenger v{challenger.version} kept out: " + "; ".join(failed)
    return True, f"challenger v{challenger.version} promoted: " + "; ".join(passed)


def score(model: Any, version: str, splits: Mapping[str, Any], num_classes: int, metric: str) -> Scored:
    """``model`` (registered as ``version``) evaluated on ``splits``, judged by ``metric``."""
    from ..evaluation import evaluate_splits

    metrics = {k: round(float(v), 6) for k, v in evaluate_splits(model, dict(splits), num_classes).items()}
    return Scored(version=str(version), score=metrics[metric], gap=metrics[gap_key(metric)], metrics=metrics)


def load_splits(root: Path) -> tuple[dict[str, tuple[Any, Any]], dict[str, Any]]:
    """The prepared splits both models are scored on, and their meta (fingerprint, classes)."""
    from ..files import load_arrays
    from ..data.layout import PREPARED, SPLITS, read_meta, split_file

    meta = read_meta(root / PREPARED)
    splits = {}
    for name in SPLITS:
        arrays = load_arrays(split_file(name, root / PREPARED))
        splits[name] = (arrays["x"], arrays["y"])
    return splits, meta
