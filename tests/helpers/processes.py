"""How the tests run gapline's commands: in a subprocess with the virtualenv's tools first on
PATH, or in the test process where the process boundary is not under test; free local ports;
stopping a process group we started."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

from gapline import cli
from gapline.retrain import job as retrain_job
from gapline.retrain.outcome import RetrainFailed

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


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status ``url`` answers with (an error status too); None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local only
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    """Poll ``ready()`` until it holds (True), or ``proc`` exits or ``timeout`` passes (False):
    how the tests wait for a server they started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            return True
        time.sleep(interval)
    return False


def gapline_in_process(args: list[str], cwd: Path) -> None:
    """``gapline <args>`` in this test process, in ``cwd``, through :func:`in_process`, for the
    commands a test only needs done (``params``, ``prepare``, ``augment``); it must succeed."""
    in_process(["gapline", *args], cwd)


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


@contextlib.contextmanager
def _environment(env: dict[str, str], cwd: Path) -> Iterator[None]:
    """``os.environ`` replaced by ``env`` and the working directory set, both put back after;
    MLflow's process-wide URIs (a stage sets them) go back to following the environment."""
    saved, here = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(here)
        mlflow = sys.modules.get("mlflow")
        if mlflow is not None:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
        os.environ.clear()
        os.environ.update(saved)


DVC_LOGGERS = ("dvc", "dvc_objects", "dvc_data")  # the loggers dvc.logger.setup configures


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger))]
    return [h for lg in loggers for h in lg.handlers if type(h) is not logging.FileHandler and isinstance(h, logging.StreamHandler)]


@contextlib.contextmanager
def _output_captured() -> Iterator[list[str]]:
    """What the block writes to stdout and to stderr, by Python (pytest's own capture replaces
    ``sys.stdout``) or by native code (TensorFlow logs to the file descriptors); the two texts
    land in the yielded list as the block ends."""
    box: list[str] = []
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        sys.stdout.flush()
        sys.stderr.flush()
        saved_fds = os.dup(1), os.dup(2)
        saved = sys.stdout, sys.stderr
        texts = [
            io.TextIOWrapper(open(f.fileno(), "wb", closefd=False), encoding="utf-8", line_buffering=True)
            for f in (out_file, err_file)
        ]
        os.dup2(out_file.fileno(), 1)
        os.dup2(err_file.fileno(), 2)
        sys.stdout, sys.stderr = texts
        # Log handlers hold the stream they were made with: DVC's were made at its import,
        # perhaps inside an earlier capture, so theirs are pointed here whatever they hold.
        dvc_own = {id(h): h for name in DVC_LOGGERS for h in logging.getLogger(name).handlers if isinstance(h, logging.StreamHandler)}
        moved = [(h, texts[saved.index(h.stream)]) for h in _stream_handlers() if h.stream in saved and id(h) not in dvc_own]
        moved += [(h, texts[1] if h.level >= logging.WARNING else texts[0]) for h in dvc_own.values()]
        previous = [h.setStream(text) for h, text in moved]
        # DVC writes JSON with colorama off, which puts back the streams colorama wrapped.
        colorama = sys.modules.get("colorama.initialise")
        wrapped = (colorama.orig_stdout, colorama.orig_stderr) if colorama else None
        if colorama:
            colorama.orig_stdout, colorama.orig_stderr = texts
        try:
            yield box
        finally:
            for text in texts:
                text.flush()
            if colorama and wrapped:
                colorama.orig_stdout, colorama.orig_stderr = wrapped
            for (handler, _), stream in zip(moved, previous, strict=True):
                handler.setStream(stream)
            sys.stdout, sys.stderr = saved
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)
            for f in (out_file, err_file):
                f.seek(0)
                box.append(f.read().decode("utf-8", "replace"))


def _gapline_main(args: list[str]) -> int:
    """:func:`gapline.cli.main`, with the log levels it changed put back (DVCLive quiets DVC's
    logger, which is this process's own when DVC runs here too)."""
    levels = {name: lg.level for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    try:
        return cli.main(args)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def in_process(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``gapline ...`` or ``dvc ...`` run in this test process as :func:`run` would run it,
    DVC's ``gapline ...`` stage commands in this process too, each with the environment DVC
    gives a stage. A pipeline then costs no Python start and no Keras import (about 15 s a
    pipeline on 2 cores). For tests whose subject is not the process boundary: the
    fresh-clone test, signals, concurrency, the retrain lock, the MLproject and the Docker
    image keep real processes (docs/architecture.md, "How the tests run gapline"). Returns
    what :func:`run` returns."""
    from dvc.cli import main as dvc_main
    from dvc.stage import run as stage_run
    from dvc.stage.exceptions import StageCmdFailedError

    real_run = stage_run._run

    def run_stage(executable: str | None, cmd: str, **kwargs: object) -> None:
        if not cmd.startswith("gapline "):
            return real_run(executable, cmd, **kwargs)
        with _environment(dict(kwargs["env"]), Path(str(kwargs["cwd"]))):  # type: ignore[call-overload]
            code = _gapline_main(shlex.split(cmd)[1:])
        if code != 0:
            raise StageCmdFailedError(cmd, code)
        return None

    mains = {"dvc": dvc_main, "gapline": _gapline_main}
    if args[0] not in mains:
        raise ValueError(f"in_process runs dvc or gapline, not {args[0]!r}")
    full = {**os.environ, **(env or {})}
    full["PATH"] = f"{BIN}{os.pathsep}{full.get('PATH', '')}"
    full.pop("DVC_EXP_NAME", None)
    stage_run._run = run_stage
    path, modules = sys.path[:], set(sys.modules)
    # DVC's loggers as a fresh `dvc` has them (INFO): an earlier fit in this process may have
    # quieted them (DVCLive sets WARNING), and DVC would then print no "Running stage" lines.
    levels = [(lg, lg.level, lg.disabled) for lg in map(logging.getLogger, DVC_LOGGERS)]
    for lg, _, _ in levels:
        lg.setLevel(logging.INFO)
        lg.disabled = False
    try:
        with _environment(full, cwd), _output_captured() as out:
            code = mains[args[0]](list(args[1:]))
    finally:
        stage_run._run = real_run
        for lg, level, disabled in levels:
            lg.setLevel(level)
            lg.disabled = disabled
        # What a process would have taken with it: the project on sys.path (user_code puts
        # it there for a custom model) and the user's modules imported from it.
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if Path(str(getattr(sys.modules[name], "__file__", None) or "/")).resolve().is_relative_to(cwd.resolve()):
                del sys.modules[name]
    proc = subprocess.CompletedProcess(args, code, *out)
    if check and code != 0:
        raise AssertionError(f"{' '.join(args)} failed ({code}) in-process:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _pipeline_in_process(root: Path, force: bool) -> None:
    """retrain's ``dvc repro``, in this process; its output joins retrain's, as the child's does.
    The train stage opens its own MLflow run, which a child process does beside retrain's:
    here, MLflow's stack of active runs (this thread's) is set aside meanwhile."""
    from mlflow.tracking import fluent

    held = fluent._active_run_stack.get()
    fluent._active_run_stack.set([])
    try:
        proc = in_process(["dvc", "repro", *(["--force"] if force else [])], root, check=False)
    finally:
        fluent._active_run_stack.set(held)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise RetrainFailed(f"the pipeline failed: `dvc repro` exited {proc.returncode}")


def retrain_in_process(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``gapline <args>`` (retrain, promote) in this process, retrain's pipeline too: no Python
    start and no Keras import per command; against the project's own store unless ``env``
    names another. Retrain's real child pipeline, in its own process group, is the subject of
    the lock, overlap and termination tests, which run ``gapline retrain`` as a process."""
    env = env if env is not None else {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    with mock.patch.object(retrain_job, "run_pipeline", _pipeline_in_process):
        return in_process(["gapline", *args], cwd, env, check=False)
