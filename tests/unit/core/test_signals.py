"""SIGTERM as an exception, and stopping a child whose handler's exception was dropped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from gapline.core import signals

# A child that swallows its first SIGTERM (as a handler whose exception lands in a finalizer
# does) and exits on the second.
STUBBORN = """
import signal, sys, time
seen = []
def handler(signum, frame):
    seen.append(signum)
    if len(seen) > 1:
        sys.exit(7)
signal.signal(signal.SIGTERM, handler)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def test_stop_child_sends_sigterm_again_to_a_child_that_ran_on() -> None:
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert signals.stop_child(proc, attempts=3, wait=0.5) == 7
    assert time.monotonic() - started < 5


def test_sigterm_raises_terminated_and_leaves_a_checkpoint_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        pytest.skip("this process has its own SIGTERM handler: gapline leaves it alone")
    monkeypatch.setattr(signals, "_received", [])
    with pytest.raises(signals.Terminated):
        with signals.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs here
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)  # restored on the way out
    with pytest.raises(signals.Terminated):  # a lost exception is raised again at a checkpoint
        signals.raise_if_terminated()
