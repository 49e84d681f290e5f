"""The one exception type users see: a single line naming what was wrong and what is allowed;
and the two ways gapline words any other problem: an unexpected exception as one line, and
a warning on stderr."""

from __future__ import annotations

import sys


class GaplineError(Exception):
    """A problem with the user's input or environment, reported as one clear line.

    The CLI prints ``error: <message>`` and exits non-zero instead of a traceback.
    """


class ConfigError(GaplineError):
    """A config value that the schema does not allow."""


class DataError(GaplineError):
    """Input data that cannot be loaded or split as configured."""


def bad_value(field: str, value: object, allowed: str) -> str:
    """Format the house style: ``<field>=<value> is not allowed: expected <allowed>``."""
    return f"{field}={value!r} is not allowed: expected {allowed}"


def flat_message(exc: BaseException) -> str:
    """The whole message on one line (a library's multi-line explanation folded), to embed
    in an error of our own that already says what was expected."""
    return " ".join(str(exc).split()) or type(exc).__name__


def one_line(exc: BaseException) -> str:
    """``<type>: <first line of the message>``: an unexpected exception as one line of a
    report, a run's ``error`` tag or an error message (secrets are the caller's to redact)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def warn(message: str) -> None:
    """A problem gapline works around: one ``warning: ...`` line on stderr."""
    print(f"warning: {message}", file=sys.stderr)
