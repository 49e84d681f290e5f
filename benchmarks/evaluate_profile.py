"""Where the `gapline evaluate` process spends its wall time, phase by phase.

Run it in a project whose train stage has run (BENCHMARKS.md, section 11):

    cd <project> && PYTHONPATH=<checkout>/src python <checkout>/benchmarks/evaluate_profile.py

It starts `gapline evaluate` in a child process with timers wrapped around the functions the
stage calls (whichever of them the code on PYTHONPATH has), and prints, in seconds: the
interpreter start and gapline's own imports, each phase (start offset, duration), and the
interpreter's exit after the command returned (from the child's last timestamp to the
parent seeing it end). A phase includes the imports it triggers: TensorFlow and Keras are
imported by ``runtime.configure``, MLflow by ``resume_target``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

CHILD = r"""
import functools, json, os, sys, time
from contextlib import contextmanager
T0 = time.time()
rows = []

def wrap(mod, name, label=None):
    f = getattr(mod, name, None)
    if f is None:
        return
    @functools.wraps(f)
    def timed(*a, **k):
        t = time.time()
        try:
            return f(*a, **k)
        finally:
            rows.append((label or name, t, time.time() - t))
    setattr(mod, name, timed)

import gapline.cli, gapline.models.runtime, gapline.tracking, gapline.stages.evaluate as st
import gapline.tracking.runs as runs
IMPORTED = time.time()
wrap(gapline.models.runtime, "configure", "runtime.configure (imports TensorFlow, Keras)")
for name in ("load_model", "evaluate_splits", "task_reports", "diagnose", "read_history"):
    wrap(st, name)  # a no-op for names the stage imports inside the function

def late_wraps():  # modules the stage imports lazily: wrap them where they live
    import gapline.evaluate.splits, gapline.models.saving, gapline.evaluate.plots
    wrap(gapline.models.saving, "load_model")
    wrap(gapline.evaluate.splits, "evaluate_splits")
    for n in ("learning_curves", "gap_curve", "confusion_matrix_plot", "reliability_plot", "roc_pr_plot",
              "regression_plot", "per_label_plot"):
        wrap(gapline.evaluate.plots, n, "plot " + n)

configure = gapline.models.runtime.configure
def configure_then_wrap(*a, **k):
    out = configure(*a, **k)
    late_wraps()
    return out
gapline.models.runtime.configure = configure_then_wrap
for n in ("resume_target", "log_datasets", "log_metrics", "log_tags", "log_artifact", "log_text_file", "tag_version"):
    wrap(gapline.tracking, n, "tracking." + n + (" (imports MLflow)" if n == "resume_target" else ""))
wrap(runs, "flush", "tracking: flush before FINISHED")
wrap(runs, "_close", "tracking: end_run")
opened = gapline.tracking.run
@contextmanager
def run(*a, **k):
    t = time.time()
    with opened(*a, **k) as r:
        rows.append(("tracking.run: start_run", t, time.time() - t))
        yield r
gapline.tracking.run = run
sys.argv = ["gapline", "evaluate"]
try:
    code = gapline.cli.main()
finally:
    end = time.time()
    print("PROFILE " + json.dumps({"t0": T0, "imported": IMPORTED, "end": end, "rows": rows}), file=sys.stderr, flush=True)
sys.exit(code)
"""


def main() -> None:
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=os.environ)
    done = time.time()
    lines = [line for line in proc.stderr.splitlines() if line.startswith("PROFILE ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"gapline evaluate failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    prof = json.loads(lines[-1][len("PROFILE "):])
    t0 = prof["t0"]
    print(f"whole process                                          {done - start:6.2f} s")
    print(f"interpreter start until the profiler's first line      {t0 - start:6.2f} s")
    print(f"gapline.cli, runtime, tracking, stages.evaluate import {prof['imported'] - t0:6.2f} s")
    print("phases (start offset from the process start, duration), those over 5 ms:")
    for label, t, dur in sorted(prof["rows"], key=lambda row: row[1]):
        if dur >= 0.005:
            print(f"  {t - start:6.2f}  {dur:6.3f}  {label}")
    print(f"command returned at                                    {prof['end'] - start:6.2f} s")
    print(f"interpreter exit after the command returned            {done - prof['end']:6.2f} s")


if __name__ == "__main__":
    main()
