"""An exclusive, kernel-held lock, so two scheduled retrains (or a retrain and a promote) never
run at once; the holder is named in the file, for the message the second one prints."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gapline.core.errors import GaplineError
from gapline.retrain.records import utc_now


class LockHeld(GaplineError):
    """Another retrain or promote holds the lock (exit 75)."""


def lock_holder(path: Path) -> dict[str, Any]:
    """What the holder wrote into the lock file (empty if nothing readable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], command: str = "retrain") -> Iterator[dict[str, Any]]:
    """Hold an exclusive ``flock`` on ``path`` for the block, or raise :class:`LockHeld` at once.

    The holder writes its pid, host, command and start time into the file; the lock is the
    kernel's, so it is released when the process dies, whatever happens (no stale locks).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by subprocesses
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockHeld(_held_message(target)) from None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "started": utc_now()}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield info
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _held_message(target: Path) -> str:
    holder = lock_holder(target)
    who = f"pid {holder.get('pid', '?')}"
    if holder.get("host"):
        who += f" on {holder['host']}"
    return (
        f"another gapline {holder.get('command', 'retrain')} is running ({who}, started "
        f"{holder.get('started', '?')}; lock {target}): not starting a second one, try again later"
    )
