"""Sweeps end to end, in a throwaway copy of the repo: Hydra multirun (basic launcher, joblib
launcher, Optuna sweeper) with one MLflow parent run and a child run per job, bad sweep input,
and DVC's experiment queue."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers.processes import in_process

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow

DEBUG_EXPERIMENT = "gapline-debug"  # tracking.experiment of experiment=debug


def _env(uri: str | None) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("DVC_EXP_NAME", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    if uri is not None:
        env["MLFLOW_TRACKING_URI"] = uri
    return env


def _run(
    args: list[str], cwd: Path, uri: str | None, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run a command with this venv first on PATH; ``uri=None``: no $MLFLOW_TRACKING_URI at all.
    ``gapline`` runs in this process (the Hydra app it starts is a process of its own, as
    always); DVC's queue starts its own processes (its workers) anyway."""
    if args[0] == "gapline" and uri is not None:
        proc = in_process(args, cwd, {"MLFLOW_TRACKING_URI": uri}, check=False)
    else:
        proc = subprocess.run(args, cwd=cwd, env=_env(uri), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _copy_project(root: Path) -> Path:
    from helpers.sandbox import copy_project

    return copy_project(root)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_project(tmp_path_factory.mktemp("sweeps") / "repo")


def _uri(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def new_store(project: Path) -> Callable[[str | Path], str]:
    """``new_store("grid.db")``: the URI of a new MLflow store (in the project unless the path
    is absolute), its tables made and nothing in it, as a process that opens a new file makes
    it (MLflow's migrations, seconds each time): made here once, then copied for each test."""
    template = project.parent / "empty-store.db"
    with contextlib.chdir(project):  # the Default experiment's artifacts: ./mlruns of the project
        _client(_uri(template)).search_experiments()

    def make(name: str | Path) -> str:
        path = project / name
        assert not path.exists(), path
        with contextlib.closing(sqlite3.connect(template)) as src, contextlib.closing(sqlite3.connect(path)) as dst:
            src.backup(dst)
        return _uri(path)

    return make


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _all_runs(uri: str) -> list[Any]:
    client = _client(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, max_results=1000) if ids else []


def _sweep(uri: str, n_children: int) -> tuple[Any, list[Any]]:
    """The store's only sweep parent run and its children."""
    client = _client(uri)
    exp = client.get_experiment_by_name(DEBUG_EXPERIMENT)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [(r.info.run_name, r.info.status) for r in parents]
    parent = parents[0]
    assert parent.data.tags["gapline.mode"] == "sweep"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == n_children == len(runs) - 1
    return parent, children


def _summary(uri: str, run_id: str, tmp: Path) -> str:
    path = _client(uri).download_artifacts(run_id, "sweep/summary.md", str(tmp))
    return Path(path).read_text(encoding="utf-8")


def _final(client: Any, run: Any, key: str) -> float:
    """A child's final (post-training) metric ``key``: ``final_<key>`` where the name is also a
    per-epoch curve, else the value log_child_run logs at step 0, else the run's value."""
    metrics = run.data.metrics
    if f"final_{key}" in metrics:
        return float(metrics[f"final_{key}"])
    at_zero = [m.value for m in client.get_metric_history(run.info.run_id, key) if m.step == 0]
    return float(at_zero[-1]) if at_zero else float(metrics[key])


# --------------------------------------------------------------------------------------
# Hydra multirun, basic launcher: 2 × 2 grid
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid(project: Path, new_store: Callable[[str | Path], str]) -> dict[str, Any]:
    uri = new_store("grid.db")
    proc = _run(["gapline", "train", "-m", "experiment=debug", "regularization=none,l2", "train.seed=0,1"], project, uri)
    return {"uri": uri, "proc": proc}


def test_grid_sweep_logs_four_children_under_one_parent(grid: dict[str, Any]) -> None:
    uri = grid["uri"]
    client = _client(uri)
    parent, children = _sweep(uri, 4)
    assert f"MLflow parent run {parent.info.run_id}" in grid["proc"].stdout
    combos = sorted((c.data.params["regularization.l2"], c.data.params["train.seed"]) for c in children)
    assert combos == [("0.0", "0"), ("0.0", "1"), ("0.001", "0"), ("0.001", "1")]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.info.experiment_id == parent.info.experiment_id
        assert child.data.params["train.epochs"] == "3"  # experiment=debug
        m = child.data.metrics
        assert 0.0 <= m["test_accuracy"] <= 1.0
        assert m["gap_accuracy_val"] == pytest.approx(_final(client, child, "train_accuracy") - _final(client, child, "val_accuracy"), abs=1e-5)
        assert m["objective"] == pytest.approx(_final(client, child, "val_loss"), rel=1e-6)  # sweep.objective=val_loss
        gaps = client.get_metric_history(child.info.run_id, "gap_accuracy")
        assert sorted(g.step for g in gaps) == [1, 2, 3]
        assert child.data.tags["gapline.mode"] == "sweep"
        assert child.data.tags["job.overrides"] == child.info.run_name


def test_grid_sweep_parent_summarizes_and_tags_the_best_child(grid: dict[str, Any], tmp_path: Path) -> None:
    uri = grid["uri"]
    parent, children = _sweep(uri, 4)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["jobs"] == 4
    best = min(children, key=lambda c: c.data.metrics["objective"])
    assert parent.data.tags["sweep.best_run"] == best.info.run_id
    assert parent.data.tags["sweep.best_job"] == best.info.run_name
    assert parent.data.metrics["best_objective"] == pytest.approx(best.data.metrics["objective"])
    assert parent.data.tags["sweep.overrides"] == "experiment=debug regularization=none,l2 train.seed=0,1"
    summary = _summary(uri, parent.info.run_id, tmp_path)
    rows = [line for line in summary.splitlines()[2:] if line.startswith("|")]
    assert len(rows) == 4
    for child in children:
        assert any(child.info.run_id in r and child.info.run_name in r for r in rows)
    assert best.info.run_id in rows[0]  # best objective first
    # the summary follows the children's task (here multiclass: its headline is accuracy)
    assert summary.splitlines()[0].startswith("| job | objective | test accuracy | gap on accuracy (train−val) |")
    assert parent.data.metrics["best_test_accuracy"] == pytest.approx(best.data.metrics["test_accuracy"])
    assert parent.data.tags["task"] == "multiclass" and all(c.data.tags["task"] == "multiclass" for c in children)
    objectives = [float(r.split("|")[2]) for r in rows]
    assert objectives == sorted(objectives)
    assert summary in grid["proc"].stdout  # also printed at the end of the sweep


def test_grid_sweep_child_curves_are_not_mixed_with_final_metrics(grid: dict[str, Any]) -> None:
    uri = grid["uri"]
    client = _client(uri)
    _, children = _sweep(uri, 4)
    for child in children:
        for key in ("val_loss", "val_accuracy"):
            steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, key))
            assert steps == [1, 2, 3], (key, steps)


# --------------------------------------------------------------------------------------
# Optuna sweeper
# --------------------------------------------------------------------------------------


def test_optuna_preset_runs_three_trials_and_reports_the_best(project: Path, new_store: Callable[[str | Path], str]) -> None:
    uri = new_store("optuna.db")
    proc = _run(
        ["gapline", "train", "-m", "experiment=debug", "hparams_search=optuna", "hydra.sweeper.n_trials=3"], project, uri
    )
    assert "Best parameters" in proc.stdout
    client = _client(uri)
    parent, children = _sweep(uri, 3)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["jobs"] == 3
    searched = ("train.learning_rate", "regularization.dropout", "regularization.l2")
    points = {tuple(float(c.data.params[k]) for k in searched) for c in children}
    assert len(points) == 3  # three different trials
    for lr, dropout, l2 in points:
        assert 0.0003 <= lr <= 0.01 and 0.0 <= dropout <= 0.6 and 1e-6 <= l2 <= 0.01
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["sweep.objective"] == "val_loss_plus_gap"
        penalty = float(child.data.params["sweep.gap_penalty"])
        m = child.data.metrics
        expected = _final(client, child, "val_loss") + penalty * max(0.0, m["gap_loss_val"])
        assert m["objective"] == pytest.approx(expected, rel=1e-5)
    best = min(children, key=lambda c: c.data.metrics["objective"])
    assert parent.data.metrics["best_objective"] == pytest.approx(best.data.metrics["objective"], rel=1e-9)
    assert parent.data.tags["sweep.best_run"] == best.info.run_id
    reported = re.search(r"Best value: ([0-9.eE+-]+)", proc.stdout)
    assert reported and float(reported.group(1)) == pytest.approx(best.data.metrics["objective"], rel=1e-6)


# --------------------------------------------------------------------------------------
# joblib launcher
# --------------------------------------------------------------------------------------


def test_joblib_launcher_runs_two_jobs_in_parallel_processes(project: Path, new_store: Callable[[str | Path], str]) -> None:
    uri = new_store("joblib.db")
    proc = _run(["gapline", "train", "-m", "experiment=debug", "launcher=joblib", "regularization=none,l2"], project, uri)
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout
    assert not re.search(r"^epoch \d+/", proc.stdout + proc.stderr, re.M)  # jobs side by side: no epochs
    parent, children = _sweep(uri, 2)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["jobs"] == 2
    assert sorted(c.data.params["regularization.l2"] for c in children) == ["0.0", "0.001"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["train.threads"] == "1"  # the preset's one thread per job
        assert "test_accuracy" in child.data.metrics


def test_a_single_hydra_run_prints_its_epochs_unless_quiet(project: Path, new_store: Callable[[str | Path], str]) -> None:
    """(The joblib test above: parallel sweep jobs print none.)"""
    uri = new_store("single.db")
    proc = _run(["gapline", "train", "experiment=debug", "train.progress_every=0"], project, uri)
    epochs = re.findall(r"^epoch (\d+)/3  loss .* gap_accuracy [+-]", proc.stdout, re.M)
    assert epochs == ["1", "2", "3"], proc.stdout
    quiet = _run(["gapline", "train", "--quiet", "experiment=debug", "train.progress_every=0"], project, uri)
    assert not re.search(r"^epoch \d+/", quiet.stdout, re.M), quiet.stdout


# --------------------------------------------------------------------------------------
# Bad sweep input
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_sweep(project: Path, new_store: Callable[[str | Path], str]) -> dict[str, Any]:
    uri = new_store("bad.db")
    proc = _run(["gapline", "train", "-m", "experiment=debug", "regularization.dropout=1.5"], project, uri, check=False)
    return {"uri": uri, "proc": proc}


def test_bad_sweep_value_is_one_error_line_and_leaves_no_running_run(bad_sweep: dict[str, Any]) -> None:
    proc = bad_sweep["proc"]
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: regularization.dropout=1.5 is not allowed: expected a number in [0, 1)"]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not [r for r in _all_runs(bad_sweep["uri"]) if r.info.status == "RUNNING"]


def test_bad_sweep_value_is_reported_once(bad_sweep: dict[str, Any]) -> None:
    proc = bad_sweep["proc"]
    mentions = [line for line in (proc.stdout + proc.stderr).splitlines() if "regularization.dropout=1.5 is not" in line]
    assert len(mentions) == 1, mentions


def test_sweep_failing_midway_closes_its_parent_run(project: Path, new_store: Callable[[str | Path], str]) -> None:
    uri = new_store("midway.db")
    # the invalid value first, so that the sweep fails before it trains anything
    proc = _run(["gapline", "train", "-m", "experiment=debug", "regularization.dropout=1.5,0.1"], project, uri, check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "regularization.dropout=1.5" in errors[0]
    runs = _all_runs(uri)
    assert not [(r.info.run_name, r.info.status) for r in runs if r.info.status == "RUNNING"]


def test_sigterm_to_a_sweep_reaches_its_app_and_closes_the_parent_killed(
    project: Path, new_store: Callable[[str | Path], str]
) -> None:
    """`gapline train -m` runs the Hydra app as a child process: a SIGTERM to the command (a
    scheduler's timeout) must stop the app too and close the parent run KILLED, never leave
    it RUNNING or the app training on alone."""
    import signal
    import threading
    import time

    import psutil

    uri = new_store("sigterm.db")
    # far more jobs than the test lets start (one), though not so many that composing them all
    # first (the command checks every job before it starts the app) takes long
    jobs = 10
    seeds = ",".join(str(s) for s in range(jobs))
    proc = subprocess.Popen(
        ["gapline", "train", "-m", "experiment=debug", f"train.seed={seeds}"],
        cwd=project, env=_env(uri), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # until the sweep has its parent run and its first job runs
            if any("for this sweep" in ln for ln in lines) and any(re.search(r"\s#0 : ", ln) for ln in lines):
                break
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.2)
        else:
            raise AssertionError("no job started within 240 s:\n" + "".join(lines))
        open_parents = [r.info.status for r in _all_runs(uri) if not r.data.tags.get("mlflow.parentRunId")]
        assert open_parents == ["RUNNING"], "".join(lines)  # mid-sweep: its parent run is open
        app = psutil.Process(proc.pid).children(recursive=True)  # the Hydra app, and what it started
        assert app, "".join(lines)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines)
    assert proc.returncode != 0, output
    runs = _all_runs(uri)
    parents = [r for r in runs if r.data.tags.get("gapline.mode") == "sweep" and not r.data.tags.get("mlflow.parentRunId")]
    assert [p.info.status for p in parents] == ["KILLED"], output
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    assert len(runs) - 1 < jobs  # the app stopped: it did not go on through the remaining jobs
    _, alive = psutil.wait_procs(app, timeout=5)
    assert not alive, [p.cmdline() for p in alive]  # no process of the sweep runs on: none can log more
    assert len(_all_runs(uri)) == len(runs)


# --------------------------------------------------------------------------------------
# DVC experiments: queued, then run two at a time
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy whose DVC run cache already holds experiment=debug's prepare and augment
    (run here, in this process, then the workspace put back as committed): the experiments
    below differ only from the train stage on, and DVC restores those two stages from its run
    cache, as it would for anyone who had run the pipeline once. Their temp copies share the
    project's cache, so they train and evaluate for real but do not redo the data."""
    from helpers.processes import gapline_in_process

    root = _copy_project(tmp_path_factory.mktemp("dvc_queue") / "repo")
    gapline_in_process(["params", "experiment=debug"], root)
    in_process(["dvc", "repro", "augment"], root)
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=root, check=True)
    for made in ("dvc.lock", "reports", "data/prepared", "data/augmented"):
        path = root / made
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    left = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root, capture_output=True, text=True, check=True)
    assert left.stdout == "", left.stdout  # as committed: nothing of the warm-up run is in the workspace
    return root


def _queue_status(root: Path, uri: str) -> dict[str, str]:
    out = _run(["dvc", "queue", "status"], root, uri).stdout
    status = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and re.fullmatch(r"[0-9a-f]{7}", parts[0]):
            status[parts[1]] = parts[-1]
    return status


def test_dvc_queue_runs_two_experiments_with_gap_metrics(dvc_project: Path, new_store: Callable[[str | Path], str]) -> None:
    root = dvc_project
    # Queued experiments run in temp copies under .dvc/tmp/exps, so the store is an absolute path.
    # Its tables are made up front: two MLflow clients initializing one fresh sqlite file at the
    # same moment race on its schema migration (alembic: "expected to match one row").
    uri = new_store(root.parent / "queue-mlflow.db")
    queued = _run(["dvc", "exp", "run", "--queue", "-S", "experiment=debug", "-S", "regularization=none,l2"], root, uri)
    assert queued.stdout.count("Queued experiment") == 2
    try:
        # Two queue workers run the queue; --run-all follows their logs and returns once every
        # queued experiment has finished and been collected (DVC's own wait: no polling here).
        _run(["dvc", "exp", "run", "--run-all", "-j", "2"], root, uri, timeout=420)
    finally:
        _run(["dvc", "queue", "stop"], root, uri, check=False, timeout=120)
    status = _queue_status(root, uri)
    assert len(status) == 2 and not {"Queued", "Running"} & set(status.values()), status
    if set(status.values()) != {"Success"}:
        logs = "\n".join(_run(["dvc", "queue", "logs", n], root, uri, check=False).stdout[-3000:] for n in status)
        raise AssertionError(f"queued experiments did not all succeed: {status}\n{logs}")

    shown = json.loads(_run(["dvc", "exp", "show", "--json"], root, uri).stdout)
    exps = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            rev = exp["revs"][0]
            exps[rev["name"]] = rev["data"]
    assert set(exps) == set(status)
    l2s = []
    for data in exps.values():
        params = data["params"]["params.yaml"]["data"]
        metrics = data["metrics"]["reports/metrics.json"]["data"]
        assert params["train"]["epochs"] == 3  # experiment=debug composed by DVC's Hydra
        l2s.append(params["regularization"]["l2"])
        for key in ("gap_accuracy_val", "gap_accuracy_test", "gap_loss_val", "test_accuracy"):
            assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key
        assert metrics["gap_accuracy_val"] == pytest.approx(metrics["train_accuracy"] - metrics["val_accuracy"], abs=2e-6)
    assert sorted(l2s) == [0.0, 0.001]

    runs = _all_runs(uri)
    assert len(runs) == 2  # one MLflow run per experiment, in the shared store
    assert all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.data.params["regularization.l2"] for r in runs) == ["0.0", "0.001"]
    assert all("gap_accuracy_val" in r.data.metrics for r in runs)


def test_dvc_temp_experiment_logs_to_the_projects_default_store(dvc_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temp experiment (a copy under .dvc/tmp/exps) and its stages run in this process, as
    DVC would run them in its own: the stages get DVC's environment ($DVC_ROOT among it)."""
    root = dvc_project
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # no $MLFLOW_TRACKING_URI at all: the default store
    # up to the train stage, which opens and closes the run (evaluate only adds to it)
    in_process(["dvc", "exp", "run", "--temp", "-S", "experiment=debug", "-S", "train.seed=3", "train"], root)
    store = root / "mlflow.db"
    assert store.is_file(), "no MLflow store in the project after the experiment"
    runs = [r for r in _all_runs(_uri(store)) if r.data.params.get("train.seed") == "3"]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
