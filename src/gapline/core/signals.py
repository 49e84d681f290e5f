"""SIGTERM (``kill``, a CI or Kubernetes timeout) as an exception, so that whatever a process
holds open (an MLflow run, a sweep's parent run, a child process) is closed on the way out
instead of being left RUNNING by a process that vanished."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception: handled like Ctrl-C, reported as a termination."""


_received: list[bool] = []  # set by the handler: its exception can be lost (see below)


def raise_if_terminated() -> None:
    """A checkpoint between units of work. A signal handler's exception is dropped when the
    signal lands inside a finalizer or weakref callback (Python prints "Exception ignored"),
    so long loops check here too."""
    if _received:
        raise Terminated("terminated (SIGTERM)")


def stop_child(proc: subprocess.Popen, attempts: int = 6, wait: float = 10.0) -> int:
    """Wait for a child that was sent SIGTERM (or SIGINT) to wind down; send SIGTERM again
    while it runs on (its own handler's exception may have been dropped), SIGKILL at last."""
    for _ in range(attempts):
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    proc.kill()
    return proc.wait()


@contextlib.contextmanager
def sigterm_as_interrupt(before: Callable[[], None] | None = None) -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (after calling ``before``, e.g. to pass
    the signal on to a child process) instead of killing the process outright. A handler
    someone else installed, or a thread other than the main one, is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        _received.append(True)
        if before is not None:
            before()
        raise Terminated("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
