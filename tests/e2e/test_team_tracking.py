"""A team's tracking server, for real: PostgreSQL (``initdb`` into a temporary folder, on
127.0.0.1) behind ``mlflow server --app-name basic-auth`` with proxied artifacts, an admin and
two users. Against it: the whole pipeline, retrain with promotion, rollback, serving the
champion, a joblib sweep of 4 concurrent jobs and a study; a wrong password, no credentials,
and a user without permission on the registered model, each one line with exit 77; and no
password anywhere the server, the project or the logs keep.

The clients get credentials the way MLflow's do, from ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD``; the test reads the store back as the admin.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import postgres
from helpers.mlflow_server import ADMIN, ADMIN_PASSWORD, MlflowServer
from helpers.pipeline_run import PipelineRun, check_logged_run, run_pipeline
from helpers.processes import BIN, in_process, retrain_in_process
from helpers.sandbox import copy_project
from helpers.serving import models_serve
from helpers.team_stack import stop_at_once

pytestmark = pytest.mark.slow

ALICE = ("alice", "alice-password-4b7e91")  # trains, owns the experiment and the registered model
BOB = ("bob", "bob-password-c03d55")  # default READ: may not move the registered model's aliases
WRONG = "not-alices-password-0000"
NAME = "gapline"
EXPERIMENT = "gapline-debug"  # what experiment=debug sets
RETRAIN = ["experiment=debug", "retrain.min_score=0.5", "retrain.max_gap=0.2"]


@dataclass
class Team:
    db: postgres.Postgres
    server: MlflowServer
    project: Path
    outputs: list[str] = field(default_factory=list)  # every command's stdout and stderr

    def env(self, user: tuple[str, str] | None, password: str | None = None) -> dict[str, str]:
        """What a user's shell holds: the server, and the account (None: no credentials)."""
        name, secret = user if user is not None else ("", "")
        return {"MLFLOW_TRACKING_URI": self.server.url, "MLFLOW_TRACKING_USERNAME": name,
                "MLFLOW_TRACKING_PASSWORD": secret if password is None else password}

    def gapline(self, args: list[str], user: tuple[str, str] | None, password: str | None = None) -> subprocess.CompletedProcess:
        """``gapline retrain|promote|train ...`` as ``user``, in this process (retrain's pipeline too)."""
        proc = retrain_in_process(args, self.project, self.env(user, password))
        self.outputs += [proc.stdout, proc.stderr]
        return proc


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    why = postgres.missing()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("team")
    db = postgres.Postgres(root / "pg")
    server = MlflowServer(root / "server", workers=2)
    try:
        db.start()
        server.backend, server.auth_db = db.create_database("mlflow"), db.create_database("mlflow_auth")
        server.start()
        for user in (ALICE, BOB):
            server.create_user(*user)
        with pytest.MonkeyPatch.context() as mp:  # this test process reads the store back as the admin
            mp.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
            mp.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
            yield Team(db, server, copy_project(root / "repo"))
    finally:
        stop_at_once(server)  # the last test leaves PostgreSQL stopped: on SIGTERM alone it waits ~10 s
        db.stop()


def _client(team: Team) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=team.server.url, registry_uri=team.server.url)


def _aliases(team: Team) -> dict[str, str]:
    return {k: str(v) for k, v in _client(team).get_registered_model(NAME).aliases.items()}


def _runs(team: Team) -> list[Any]:
    client = _client(team)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, max_results=1000)


def _no_run_left_running(team: Team) -> None:
    assert {r.info.status for r in _runs(team)} <= {"FINISHED", "FAILED"}


def _one_error(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    assert proc.returncode == code, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def alice_run(team: Team) -> PipelineRun:
    run = run_pipeline(team.project, team.server.url, [], env=team.env(ALICE))
    team.outputs.append(run.output)
    return run


def test_the_pipeline_logs_to_postgres_through_the_server_as_its_user(team: Team, alice_run: PipelineRun) -> None:
    got = check_logged_run(alice_run, experiment=EXPERIMENT, system_metrics=True)
    run = got["run"]
    assert run.info.user_id == ALICE[0]  # the server's account, not this machine's login
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied: clients never see the folder
    stored = {p.name for p in (team.server.root / "art").rglob("*") if p.is_file()}
    assert {"gap_curve.png", "params.yaml", "MLmodel"} <= stored
    # the rows are in PostgreSQL: one per epoch of a curve
    import psycopg

    with psycopg.connect(team.db.url("mlflow")) as conn:
        rows = conn.execute("SELECT count(*) FROM metrics WHERE run_uuid = %s AND key = 'gap_accuracy'",
                            (alice_run.run_id,)).fetchone()
    assert rows is not None and rows[0] == 3


def test_retrain_promotes_then_rollback_on_the_server(team: Team, alice_run: PipelineRun) -> None:
    first = team.gapline(["retrain", *RETRAIN], ALICE)
    assert first.returncode == 0, first.stdout + first.stderr
    v1 = str(alice_run.record["model_version"])
    assert _aliases(team) == {"challenger": v1, "champion": v1}
    second = team.gapline(["retrain", *RETRAIN, "train.epochs=8"], ALICE)  # better, as in test_retrain
    assert second.returncode == 0, second.stdout + second.stderr
    report = json.loads((team.project / "reports/retrain.json").read_text())
    v2 = report["challenger_version"]
    assert report["decision"] == "promoted" and v2 != v1
    assert _aliases(team) == {"challenger": v2, "champion": v2, "previous-champion": v1}
    back = team.gapline(["promote", "--rollback", "--reason", "team test"], ALICE)
    assert back.returncode == 0, back.stdout + back.stderr
    assert _aliases(team) == {"challenger": v2, "champion": v1, "previous-champion": v2}
    promote_run = next(r for r in _runs(team) if r.info.run_name == "promote")
    assert promote_run.info.status == "FINISHED" and promote_run.info.user_id == ALICE[0]
    _no_run_left_running(team)


def test_mlflow_models_serve_answers_with_the_champion_from_the_server(team: Team, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(team.env(ALICE), MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    try:
        with models_serve(f"models:/{NAME}@champion", env, tmp_path, log) as url:
            body = json.dumps({"inputs": load_digits().images[:3].tolist()}).encode()
            request = urllib.request.Request(f"{url}/invocations", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - local only
                answer = json.loads(resp.read())
    finally:
        team.outputs.append(log.read_text(errors="replace"))
    predictions = np.array(answer["predictions"])
    assert predictions.shape == (3, 10) and np.allclose(predictions.sum(axis=1), 1.0, atol=1e-4)


def test_a_wrong_password_is_one_line_with_exit_77_and_nothing_running(team: Team, alice_run: PipelineRun) -> None:
    before = len(_runs(team))
    for args in (["retrain", *RETRAIN, "--force"], ["train"], ["promote", "--rollback"]):
        proc = team.gapline(args, ALICE, password=WRONG)
        _one_error(proc, 77, "refused user 'alice'", "HTTP 401", team.server.url, "MLFLOW_TRACKING_PASSWORD")
    proc = team.gapline(["retrain", *RETRAIN, "--force"], None)
    _one_error(proc, 77, "a request without credentials", "HTTP 401")
    assert len(_runs(team)) == before  # refused before any run could open
    _no_run_left_running(team)


def test_a_user_without_permission_on_the_model_cannot_move_its_aliases(team: Team, alice_run: PipelineRun) -> None:
    client = _client(team)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    team.server.grant(BOB[0], "experiment", experiment.experiment_id, "EDIT")  # may log runs, not promote
    before = _aliases(team)
    proc = team.gapline(["promote", "--version", before["previous-champion"]], BOB)
    _one_error(proc, 77, "denied user 'bob' permission", "HTTP 403", "registered")
    assert _aliases(team) == before
    bobs = [r for r in _runs(team) if r.info.user_id == BOB[0]]
    assert [(r.info.run_name, r.info.status) for r in bobs] == [("promote", "FAILED")]
    _no_run_left_running(team)


def test_a_joblib_sweep_of_four_concurrent_jobs_logs_a_parent_and_four_children(team: Team, alice_run: PipelineRun) -> None:
    proc = in_process(["gapline", "train", "-m", "experiment=debug", "launcher=joblib", "hydra.launcher.n_jobs=4",
                       "train.seed=1,2,3,4", "tracking.experiment=team-sweep"], team.project, team.env(ALICE), check=False)
    team.outputs += [proc.stdout, proc.stderr]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Joblib.Parallel(n_jobs=4" in proc.stdout
    client = _client(team)
    runs = client.search_runs([client.get_experiment_by_name("team-sweep").experiment_id], max_results=100)
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and parent.data.tags["gapline.mode"] == "sweep"
    assert sorted(c.data.params["train.seed"] for c in children) == ["1", "2", "3", "4"]
    for child in children:
        assert child.info.status == "FINISHED" and child.info.user_id == ALICE[0]
        assert "test_accuracy" in child.data.metrics
        assert len(client.get_metric_history(child.info.run_id, "gap_accuracy")) == 3


def test_a_study_logs_its_parent_and_children_to_the_server(team: Team, alice_run: PipelineRun) -> None:
    proc = in_process(["gapline", "study", "--no-progress", "experiment=study_debug", "study.include=[baseline]",
                       "study.fractions=[]", "study.tune=false", "study.classical=false",
                       "study.out_dir=reports/team-study"],
                      team.project, team.env(ALICE), check=False)
    team.outputs += [proc.stdout, proc.stderr]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    client = _client(team)
    runs = client.search_runs([client.get_experiment_by_name("gapline-study-debug").experiment_id], max_results=100)
    [parent] = [r for r in runs if r.data.tags.get("gapline.mode") == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and parent.info.user_id == ALICE[0]
    assert sorted(c.info.run_name for c in children) == ["baseline-s42", "baseline-s43"]
    assert all(c.info.status == "FINISHED" for c in children)


def test_no_password_is_kept_by_the_store_the_artifacts_the_project_or_the_logs(team: Team, alice_run: PipelineRun) -> None:
    """Runs last: everything the tests above made, searched for the users' passwords."""
    secrets = [ALICE[1], BOB[1], WRONG, ADMIN_PASSWORD]
    dump = subprocess.run([str(postgres.binaries() / "pg_dumpall"), "-h", "127.0.0.1", "-p", str(team.db.port),
                           "-U", team.db.user], env={**os.environ, "PGPASSWORD": postgres.PASSWORD},
                          capture_output=True, check=True)
    assert b"CREATE TABLE" in dump.stdout and len(dump.stdout) > 100_000
    places: dict[str, bytes] = {"the PostgreSQL dump (store and accounts)": dump.stdout}
    for folder in (team.server.root / "art", team.project):  # the project: all but git and these tests' sources
        for path in folder.rglob("*"):
            if path.is_file() and ".git" not in path.parts and "tests" not in path.relative_to(folder).parts[:1]:
                places[str(path)] = path.read_bytes()
    places["the commands' output"] = "\n".join(team.outputs).encode()
    assert "Running stage 'train'" in places["the commands' output"].decode()
    for where, content in places.items():
        for secret in secrets:
            assert secret.encode() not in content, f"{secret!r} found in {where}"


def test_a_database_down_behind_the_server_is_one_line_in_seconds(team: Team, alice_run: PipelineRun) -> None:
    """Runs after the dump above: PostgreSQL stops, the MLflow server stays up and answers
    /health, and every store request fails (MLflow's client would retry those for minutes)."""
    record = (team.project / "reports/mlflow_run.json").read_bytes()
    team.db.stop()
    started = time.monotonic()
    train = in_process(["gapline", "train"], team.project, team.env(ALICE), check=False)
    _one_error(train, 2, f"the tracking server {team.server.url} answers but cannot use its store (HTTP 503",
               "expected the database behind it to be up")
    retrain = team.gapline(["retrain", *RETRAIN, "--force"], ALICE)
    _one_error(retrain, 1, "retrain failed", "cannot use its store")
    assert time.monotonic() - started < 60  # no minutes of retries
    assert (team.project / "reports/mlflow_run.json").read_bytes() == record  # nothing half-written
    assert not (team.project / ".gapline/train_run.json").exists()  # no run was opened to be left RUNNING
