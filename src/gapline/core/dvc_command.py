"""This interpreter's ``dvc``: the one installed beside it, found before any other on PATH.

``gapline repro`` and ``gapline retrain`` start DVC as a subprocess; from a virtualenv that
is not activated (cron, systemd, an IDE) PATH may name another DVC, or none, and DVC's own
stages must run this environment's ``gapline``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def tools_env() -> dict[str, str]:
    """The environment with this interpreter's scripts folder first on PATH."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def dvc_executable() -> str:
    """The ``dvc`` installed beside this interpreter, else whichever ``dvc`` is on PATH."""
    dvc = Path(sys.executable).parent / "dvc"
    return str(dvc) if dvc.exists() else "dvc"
