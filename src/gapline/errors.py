"""The one exception type users see: a single line naming what was wrong and what is allowed."""

from __future__ import annotations


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
