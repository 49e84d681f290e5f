"""``gapline retrain``: retrain when something changed, and promote only a better model.

One concept per module:

- :mod:`.outcome`: the exit codes (one table, :class:`ExitCode`) and the :class:`Outcome`;
- :mod:`.lock`: the exclusive lock two scheduled runs share;
- :mod:`.state`: what a model was trained from, and what changed since;
- :mod:`.drift`: summaries of a training split and their column-by-column comparison;
- :mod:`.drift_report`: that comparison as ``drift.html`` and ``drift.json``;
- :mod:`.drift_gate`: the champion's stored reference, the check before training, ``retrain.drift``;
- :mod:`.decision`: scoring and the promotion rule;
- :mod:`.pipeline`: ``dvc repro`` as a subprocess, and the challenger it registered;
- :mod:`.remote`: ``dvc pull`` before comparing, ``dvc push`` of a champion before it is promoted;
- :mod:`.records`: what retrain and promote both write (report, run config, decision tags);
- :mod:`.job`: one retrain (:class:`RetrainJob`), from the comparison to the alias move;
- :mod:`.promote`: moving ``champion`` by hand, and rollback.

Nothing here imports TensorFlow or MLflow at import time: ``gapline --help`` reads
:class:`ExitCode` from this package.
"""

from __future__ import annotations

from gapline.retrain.decision import SCORE_TOLERANCE, Scored, decide, gap_key, judged_gap, load_splits, score
from gapline.retrain.job import Champion, RetrainJob, Verdict, load_config, retrain
from gapline.retrain.lock import LockHeld, exclusive_lock, lock_holder
from gapline.retrain.outcome import ExitCode, Outcome, RetrainFailed, exit_codes_help
from gapline.retrain.pipeline import challenger_version, run_pipeline
from gapline.retrain.promote import promote
from gapline.retrain.state import (
    COMPARED,
    PIPELINE_GROUPS,
    TAG_CODE,
    TAG_COMMIT,
    TAG_CONFIG,
    TAG_DATA,
    TAG_VERSION,
    State,
    code_digest,
    code_dir,
    config_digest,
    current_state,
    what_changed,
)

__all__ = [
    "COMPARED",
    "PIPELINE_GROUPS", "SCORE_TOLERANCE", "TAG_CODE", "TAG_COMMIT", "TAG_CONFIG", "TAG_DATA", "TAG_VERSION",
    "Champion", "ExitCode", "LockHeld", "Outcome", "RetrainFailed", "RetrainJob", "Scored", "State", "Verdict",
    "challenger_version", "code_digest", "code_dir", "config_digest", "current_state", "decide",
    "exclusive_lock", "exit_codes_help", "gap_key", "judged_gap", "load_config", "load_splits", "lock_holder", "promote",
    "retrain", "run_pipeline", "score", "what_changed",
]
