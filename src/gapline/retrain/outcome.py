"""How a retrain or promote ends: the exit codes a scheduler acts on, and the outcome object.

:class:`ExitCode` (from :mod:`gapline.core.exit_codes`, the one table of codes and meanings) is
what retrain and promote return; ``--help`` prints the same table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gapline.core.errors import GaplineError
from gapline.core.exit_codes import ExitCode, exit_codes_help  # noqa: F401  (retrain's API)


class RetrainFailed(GaplineError):
    """The pipeline or the evaluation failed (exit 1); the aliases were not touched."""


@dataclass
class Outcome:
    """What a retrain or promote decided, with the exit code the CLI returns."""

    decision: str  # promoted | kept | up-to-date | skipped | blocked | failed
    exit_code: ExitCode
    message: str
    report: dict[str, Any] = field(default_factory=dict)
