"""How a ``gapline`` command ends: the exit codes schedulers act on, in one table.

Every command returns these members (0 done, 1 failure, 2 bad input, 130 interrupted), and
``retrain`` and ``promote`` add their own (3 kept out, 75 locked). ``--help`` prints them from
here (:func:`exit_codes_help`), so code and help cannot drift apart. Kept apart from
``retrain`` so the CLI reads it without importing retraining.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping


class ExitCode(enum.IntEnum):
    """Exit codes for schedulers, in the order the help lists them; each carries its meaning."""

    meaning: str

    def __new__(cls, code: int, meaning: str) -> ExitCode:
        member = int.__new__(cls, code)
        member._value_ = code
        member.meaning = meaning
        return member

    OK = 0, 'promoted, or up to date ("up to date: nothing to retrain", or no drift under retrain.drift=require)'
    KEPT = 3, "challenger kept out, or data drift blocked it (retrain.drift=block): the champion is unchanged"
    LOCKED = 75, (  # EX_TEMPFAIL: run again later
        "another retrain (or promote) holds the lock, nothing was run; or another machine promoted a champion "
        "while this retrain ran (decision superseded), nothing was moved"
    )
    FAILED = 1, "failure (pipeline, evaluation or tracking store); aliases untouched"
    BAD_INPUT = 2, "bad input (invalid config, override or option); nothing was run"
    DENIED = 77, "the tracking server refused the credentials, or the account lacks the permission; aliases untouched"  # EX_NOPERM
    INTERRUPTED = 130, "interrupted (Ctrl-C, or SIGTERM once its MLflow run is open); aliases untouched"


# What the codes mean for ``promote``, where they differ from retrain's wording.
PROMOTE_MEANINGS = {
    "OK": "promoted (the old champion is now `previous-champion`), or the version already was the champion",
    "FAILED": "failure (registry or tracking store); aliases untouched",
}


def exit_codes_help(codes: Iterable[ExitCode] = ExitCode, meanings: Mapping[str, str] | None = None) -> str:
    """The ``exit codes`` block of a command's ``--help`` epilog, read from :class:`ExitCode`
    (``meanings``: a command's own wording for some members, by name)."""
    meanings = meanings or {}
    lines = [f"  {code.value:<4}{meanings.get(code.name, code.meaning)}" for code in codes]
    return "exit codes (for schedulers):\n" + "\n".join(lines) + "\n"
