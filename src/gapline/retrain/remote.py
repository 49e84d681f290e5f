"""retrain and the team's DVC remote: ``dvc pull`` before comparing (a retrain in an empty
clone or container has nothing but git's files), ``dvc push`` of a new champion's outputs
before its alias moves (the champion is never a model only one machine holds).

DVC runs as a subprocess of this interpreter, like the pipeline; its credentials are DVC's
own (``dvc remote modify --local``), never gapline's. A failure is one line naming the
remote and DVC's error.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from gapline.core.dvc_command import dvc_executable
from gapline.retrain.outcome import RetrainFailed
from gapline.retrain.pipeline import pipeline_env

_ERROR = re.compile(r"^ERROR: (?P<text>.+)$", re.M)
_HINTS = {
    "pull": "expected a remote that holds this commit's outputs (`dvc push` from where the pipeline ran), "
            "or retrain.pull=false to build them here",
    "push": "expected a reachable remote this account may write to (`dvc remote modify --local` sets its credentials)",
}


def sync(action: str, root: Path, remote: str, echo: Callable[[str], None] = print) -> None:
    """``dvc pull`` or ``dvc push`` in ``root`` with ``remote`` ('' = the default remote)."""
    assert action in _HINTS
    cmd = [dvc_executable(), action, *(["--remote", remote] if remote else [])]
    sys.stdout.flush()
    try:
        proc = subprocess.run(cmd, cwd=root, env=pipeline_env(), capture_output=True, text=True, check=False)
    except OSError as exc:
        raise RetrainFailed(f"retrain.{action}: cannot run `{' '.join(cmd[1:])}`: {exc}") from None
    name = f"remote {remote!r}" if remote else "the default remote"
    if proc.returncode != 0:
        errors = [" ".join(m.group("text").split()) for m in _ERROR.finditer(proc.stdout + proc.stderr)]
        said = "; ".join(errors) or (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        where = "from" if action == "pull" else "to"
        raise RetrainFailed(f"retrain.{action}: `dvc {action}` {where} {name} failed: {said}: {_HINTS[action]}")
    last = (proc.stdout.strip().splitlines() or ["done"])[-1]
    echo(f"retrain: dvc {action} ({name}): {last}")
