"""What bench.py and stream_bench.py share: the environment children run in, running a
command (one clear failure line with its output), the median."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
BIN = Path(PY).parent


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This interpreter's bin first on PATH (gapline, dvc), no inherited tracking server."""
    out = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    out.pop("MLFLOW_TRACKING_URI", None)
    out.update(extra or {})
    return out


def sh(args: list, cwd: Path, check: bool = True, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env(extra), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def median(values: list[float]) -> float:
    return statistics.median(values)
