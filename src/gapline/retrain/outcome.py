"""How a retrain or promote ends: the exit codes a scheduler acts on, and the outcome object.

:class:`ExitCode` is the one table of codes and their meanings; the code returns its members
and ``gapline retrain --help`` / ``gapline promote --help`` print it (:func:`exit_codes_help`),
so the two cannot drift apart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import GaplineError


class ExitCode(enum.IntEnum):
    """Exit codes for schedulers, in the order the help lists them; each carries its meaning."""

    meaning: str

    def __new__(cls, code: int, meaning: str) -> "ExitCode":
        member = int.__new__(cls, code)
        member._value_ = code
        member.meaning = meaning
        return member

    OK = 0, 'promoted, or up to date ("up to date: nothing to retrain")'
    KEPT = 3, "challenger kept out: the champion is unchanged"
    LOCKED = 75, "another retrain (or promote) holds the lock; nothing was run"  # EX_TEMPFAIL
    FAILED = 1, "failure (pipeline, evaluation or tracking store); aliases untouched"
    BAD_INPUT = 2, "bad input (invalid config, override or option); nothing was run"
    INTERRUPTED = 130, "interrupted (Ctrl-C, or SIGTERM once its MLflow run is open); aliases untouched"


def exit_codes_help(codes: Iterable[ExitCode] = ExitCode) -> str:
    """The ``exit codes`` block of a command's ``--help`` epilog, read from :class:`ExitCode`."""
    lines = [f"  {code.value:<4}{code.meaning}" for code in codes]
    return "exit codes (for schedulers):\n" + "\n".join(lines) + "\n"


class RetrainFailed(GaplineError):
    """The pipeline or the evaluation failed (exit 1); the aliases were not touched."""


@dataclass
class Outcome:
    """What a retrain or promote decided, with the exit code the CLI returns."""

    decision: str  # promoted | kept | up-to-date | failed
    exit_code: ExitCode
    message: str
    report: dict[str, Any] = field(default_factory=dict)
