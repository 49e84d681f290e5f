"""How the tests run gapline's commands: in a subprocess with the virtualenv's tools first on
PATH, or in the test process where the process boundary is not under test; free local ports;
stopping a process group we started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from gapline import cli

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process we started in its own session: the group by its id, TERM then KILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=15)


def gapline_in_process(args: list[str], cwd: Path) -> None:
    """``gapline <args>`` run in this test process, in ``cwd``: for the commands whose process
    boundary is not what a test checks (``params``, ``prepare``, ``augment``), it saves a
    Python start and its imports. The command must succeed."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        code = cli.main(args)
    finally:
        os.chdir(here)
    if code != 0:
        raise AssertionError(f"gapline {' '.join(args)} failed ({code}) in {cwd}")


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    full["PATH"] = f"{BIN}{os.pathsep}{full.get('PATH', '')}"
    full.pop("DVC_EXP_NAME", None)
    proc = subprocess.run(args, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_local(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """:func:`run` against the project's own embedded store (``<cwd>/mlflow.db``)."""
    return run(args, cwd, {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}, check)
