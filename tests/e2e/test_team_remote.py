"""Sharing through a DVC remote, for real: a WebDAV server (WsgiDAV, basic auth) and a plain
folder (a shared file system), one tracking server for the team.

Alice runs the pipeline and pushes; Bob's fresh clone pulls and has nothing to rebuild, and
evaluate and retrain find the MLflow run without ``reports/mlflow_run.json``. A retrain in an
empty clone pulls, trains what changed, pushes before it promotes, and the champion's run
checks out anywhere: its git commit, its ``dvc.lock`` and ``dvc pull`` give the very model
file the registry holds. A refused push, a pull that finds nothing and missing credentials
are each one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.mlflow_server import MlflowServer
from helpers.pipeline_run import run_pipeline
from helpers.processes import BIN, in_process, retrain_in_process, run
from helpers.sandbox import REPO, copy_project
from helpers.team_stack import stop_at_once
from helpers.webdav import WebDav

pytestmark = pytest.mark.slow

DAV_USER, DAV_PASSWORD = "alice", "alice-webdav-password-71"
NAME = "gapline"
RETRAIN = ["experiment=debug", "retrain.min_score=0.5", "retrain.max_gap=0.2"]
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


@dataclass
class Team:
    dav: WebDav
    server: MlflowServer
    shared: Path  # the folder remote
    origin: Path  # alice's project, which every clone clones

    @property
    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.server.url}

    def clone(self, path: Path, password: str | None = DAV_PASSWORD) -> Path:
        """A teammate's fresh clone of the origin, with the WebDAV credentials in its local
        DVC config (never committed); ``password`` None: none at all."""
        run(["git", "clone", "-q", str(self.origin), str(path)], path.parent)
        if password is not None:
            self.credentials(path, password)
        return path

    def credentials(self, project: Path, password: str) -> None:
        """DVC's own ``dvc remote modify --local``, in this process (no Python start per call)."""
        in_process(["dvc", "remote", "modify", "--local", "team", "user", DAV_USER], project)
        in_process(["dvc", "remote", "modify", "--local", "team", "password", password], project)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324 - DVC's own digest


def _client(team: Team) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=team.server.url, registry_uri=team.server.url)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    root = tmp_path_factory.mktemp("remote")
    dav = WebDav(root / "dav", DAV_USER, DAV_PASSWORD)
    server = MlflowServer(root / "server")
    try:
        dav.start()
        (dav.files / "gapline").mkdir()  # the operator makes the remote's folder once
        server.start()
        origin = copy_project(root / "alice")
        shared = root / "shared-fs"
        shared.mkdir()
        in_process(["dvc", "remote", "add", "-d", "team", dav.url("gapline")], origin)
        in_process(["dvc", "remote", "add", "shared", str(shared)], origin)
        team = Team(dav, server, shared, origin)
        team.credentials(origin, DAV_PASSWORD)
        pipeline = run_pipeline(origin, server.url, [])
        assert "Running stage 'train'" in pipeline.output
        # what a clone of this repository has: reports/.gitignore keeps the local run record out
        shutil.copyfile(REPO / "reports/.gitignore", origin / "reports/.gitignore")
        run([*GIT, "add", "-A"], origin)
        run([*GIT, "commit", "-qm", "pipeline outputs and the team's remotes"], origin)
        assert "password" not in (origin / ".dvc/config").read_text()  # credentials stay in config.local
        yield team
    finally:
        stop_at_once(server)  # on SIGTERM alone it took ~6 s (MLflow's job runner and its huey consumers)
        dav.stop()


def test_push_then_a_fresh_clone_pulls_and_has_nothing_to_rebuild(team: Team, tmp_path: Path) -> None:
    pushed = in_process(["dvc", "push"], team.origin, team.env)
    assert "pushed" in pushed.stdout, pushed.stdout
    bob = team.clone(tmp_path / "bob")
    assert not (bob / "models/model.keras").exists() and not (bob / "reports/mlflow_run.json").exists()
    in_process(["dvc", "pull"], bob, team.env)
    assert _md5(bob / "models/model.keras") == _md5(team.origin / "models/model.keras")
    status = in_process(["dvc", "status"], bob, team.env)
    assert "Data and pipelines are up to date." in status.stdout, status.stdout
    repro = in_process(["dvc", "repro"], bob, team.env)
    assert "Running stage" not in repro.stdout + repro.stderr, repro.stdout
    assert not (bob / "reports/mlflow_run.json").exists()  # local state: a clone never has it

    # evaluate finds the run that trained this model in the team's store, by the model's md5
    run_id = json.loads((team.origin / "reports/mlflow_run.json").read_text())["run_id"]
    before = len(_client(team).get_metric_history(run_id, "test_accuracy"))
    evaluated = in_process(["gapline", "evaluate"], bob, team.env)
    assert "warning:" not in evaluated.stderr, evaluated.stderr
    assert len(_client(team).get_metric_history(run_id, "test_accuracy")) == before + 1

    # ... and retrain judges the version that run registered
    proc = retrain_in_process(["retrain", *RETRAIN], bob, team.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((bob / "reports/retrain.json").read_text())
    assert report["decision"] == "promoted" and report["challenger_version"] == "1"
    assert "Running stage 'train'" not in proc.stdout


def test_a_folder_remote_shares_the_same_outputs(team: Team, tmp_path: Path) -> None:
    in_process(["dvc", "push", "--remote", "shared"], team.origin, team.env)
    carol = team.clone(tmp_path / "carol", password=None)  # the folder needs no credentials
    in_process(["dvc", "pull", "--remote", "shared"], carol, team.env)
    assert _md5(carol / "models/model.keras") == _md5(team.origin / "models/model.keras")
    assert "Data and pipelines are up to date." in in_process(["dvc", "status"], carol, team.env).stdout


def test_retrain_from_an_empty_clone_pulls_trains_pushes_and_the_champion_checks_out_anywhere(
    team: Team, tmp_path: Path
) -> None:
    from unittest import mock

    from gapline.retrain import remote

    client = _client(team)
    job = team.clone(tmp_path / "job")  # what a scheduled container starts with: git's files only
    args = ["retrain", *RETRAIN, "train.epochs=8", "retrain.pull=true", "retrain.push=true"]

    # First as an account that may read the remote but not write it (the password is wrong
    # for the push only): the challenger trains and wins, the push fails, nothing is promoted.
    before = _champions(client)
    with mock.patch.object(remote, "sync", _refused_push(team)):
        proc = retrain_in_process(args, job, team.env)
    _one_line(proc, "retrain.push: `dvc push` to the default remote failed", "401")
    failed = json.loads((job / "reports/retrain.json").read_text())
    assert failed["decision"] == "failed" and "retrain.push" in failed["reason"]
    assert client.get_run(failed["mlflow_run_id"]).info.status == "FAILED"
    assert _champions(client) == before
    assert "Running stage 'train'" in proc.stdout + proc.stderr
    assert "Stage 'prepare' didn't change" in proc.stdout + proc.stderr  # pulled, not rebuilt

    # Then as scheduled again, with the right credentials: DVC has nothing left to train.
    proc = retrain_in_process(args, job, team.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "retrain: dvc pull (the default remote)" in proc.stdout
    assert "Running stage 'train'" not in proc.stdout + proc.stderr
    report = json.loads((job / "reports/retrain.json").read_text())
    assert report["decision"] == "promoted", report["reason"]
    assert report["challenger_version"] == failed["challenger_version"]
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert champion.version == report["challenger_version"]
    retrain_run = client.get_run(report["mlflow_run_id"])
    assert retrain_run.data.tags["retrain.pushed"] == "default remote"

    # Anywhere: the champion run's git commit and dvc.lock, then `dvc pull`.
    train_run = client.get_run(champion.run_id)
    elsewhere = team.clone(tmp_path / "elsewhere")
    run(["git", "checkout", "-q", train_run.data.tags["git.commit"]], elsewhere)
    lock = client.download_artifacts(champion.run_id, "reports/dvc.lock", str(tmp_path))
    shutil.copyfile(lock, elsewhere / "dvc.lock")
    in_process(["dvc", "pull"], elsewhere, team.env)
    registered = _champion_model_file(team, tmp_path / "registered")
    assert _md5(elsewhere / "models/model.keras") == _md5(registered) == train_run.data.tags["model.md5"]
    assert _md5(elsewhere / "models/model.keras") != _md5(team.origin / "models/model.keras")  # a new model


def _refused_push(team: Team) -> Any:
    """retrain's remote sync, with the clone's password wrong for the push only (as when an
    account may read the remote but not write it)."""
    from gapline.retrain import remote

    real = remote.sync

    def sync(action: str, root: Path, *args: Any, **kwargs: Any) -> None:
        if action == "push":
            team.credentials(root, "a-wrong-webdav-password")
            try:
                return real(action, root, *args, **kwargs)
            finally:
                team.credentials(root, DAV_PASSWORD)
        return real(action, root, *args, **kwargs)

    return sync


def _champion_model_file(team: Team, dst: Path) -> Path:
    import mlflow

    mlflow.set_tracking_uri(team.server.url)
    try:
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(dst)))
    finally:
        mlflow.set_tracking_uri(None)
    [keras_file] = list(local.rglob("*.keras"))
    return keras_file


def _champions(client: Any) -> dict[str, str]:
    aliases = client.get_registered_model(NAME).aliases
    return {k: str(aliases[k]) for k in ("champion", "previous-champion") if k in aliases}


def _one_line(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 1, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in errors[0], errors[0]


def test_a_pull_that_finds_nothing_and_missing_credentials_are_one_line(
    team: Team, tmp_path: Path
) -> None:
    client = _client(team)
    before = _champions(client)
    nothing = team.clone(tmp_path / "nothing")
    empty = tmp_path / "empty-remote"
    empty.mkdir()
    in_process(["dvc", "remote", "add", "--local", "empty", str(empty)], nothing)
    proc = retrain_in_process(["retrain", *RETRAIN, "retrain.pull=true", "retrain.remote=empty"], nothing, team.env)
    _one_line(proc, "retrain.pull: `dvc pull` from remote 'empty' failed", "retrain.pull=false")
    assert not (nothing / "models/model.keras").exists()

    anonymous = team.clone(tmp_path / "anonymous", password=None)
    proc = retrain_in_process(["retrain", *RETRAIN, "retrain.pull=true"], anonymous, team.env)
    _one_line(proc, "retrain.pull", "401")

    assert _champions(client) == before  # (challenger names the last version trained, as always)
    running = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
               if r.info.status == "RUNNING"]
    assert not running


def _retrain_process(project: Path, env: dict[str, str], *extra: str) -> subprocess.Popen:
    full = {**os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen([str(BIN / "gapline"), "retrain", *RETRAIN, *extra], cwd=project, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_retrains_on_two_machines_at_once_keep_the_aliases_consistent(team: Team, tmp_path: Path) -> None:
    """Two clones (two machines: the file lock does not reach across them) retrain at once
    against one server. Whatever the interleaving, each decision is recorded, the champion is
    one that won against the champion it was scored against, and previous-champion is the
    champion it replaced."""
    client = _client(team)
    before = _champions(client)["champion"]
    machines = {team.clone(tmp_path / f"machine{i}"): f"train.epochs={epochs}" for i, epochs in ((1, 6), (2, 7))}
    # Each machine's challenger is trained (and registered) here first, in this process, as
    # retrain's own pipeline would (the same params.yaml): the retrains the two processes run
    # at once find DVC up to date and race where the aliases are at stake, scoring and
    # promoting, without a train and an evaluate stage of their own to start per machine.
    for machine, epochs in machines.items():
        in_process(["dvc", "pull"], machine, team.env)
        in_process(["gapline", "params", *RETRAIN, epochs], machine)
        in_process(["dvc", "repro"], machine, team.env)
    procs = [_retrain_process(m, team.env, epochs) for m, epochs in machines.items()]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    reports = [json.loads((m / "reports/retrain.json").read_text()) for m in machines]
    for proc, out, report in zip(procs, outputs, reports, strict=True):
        assert proc.returncode in (0, 3, 75), out
        assert "Running stage 'train'" not in out  # trained above: the race is retrain's own
        assert report["exit_code"] == proc.returncode and report["decision"] in ("promoted", "kept", "superseded"), out
        run_ = client.get_run(report["mlflow_run_id"])
        assert run_.info.status == "FINISHED" and run_.data.tags["retrain.decision"] == report["decision"]
        version = client.get_model_version(NAME, report["challenger_version"])
        assert version.tags["retrain.decision"] == report["decision"]
    after = _champions(client)
    promoted = [r for r in reports if r["decision"] == "promoted"]
    if not promoted:
        assert after["champion"] == before
    else:
        last = max(promoted, key=lambda r: r["finished"])
        assert after["champion"] == last["challenger_version"]
        assert after["previous-champion"] == last["champion_before"]  # scored against it, and it replaced it
        if len(promoted) == 2:  # one after the other: the second was scored against the first
            first = min(promoted, key=lambda r: r["finished"])
            assert last["champion_before"] == first["challenger_version"]


def test_a_champion_promoted_elsewhere_meanwhile_supersedes_the_challenger(team: Team, tmp_path: Path) -> None:
    """The window made certain: while this retrain pushes, another machine promotes."""
    from unittest import mock

    from gapline.retrain import remote

    client = _client(team)
    client.set_registered_model_alias(NAME, "champion", "1")  # 3 epochs: the 8-epoch challenger beats it
    before = _champions(client)
    elsewhere = max((v.version for v in client.search_model_versions(f"name='{NAME}'")), key=int)
    machine = team.clone(tmp_path / "machine")
    in_process(["dvc", "pull"], machine, team.env)

    def push_while_another_machine_promotes(action: str, *args: Any, **kwargs: Any) -> None:
        client.set_registered_model_alias(NAME, "previous-champion", before["champion"])
        client.set_registered_model_alias(NAME, "champion", elsewhere)

    with mock.patch.object(remote, "sync", push_while_another_machine_promotes):
        proc = retrain_in_process(["retrain", *RETRAIN, "train.epochs=8", "retrain.push=true"], machine, team.env)
    report = json.loads((machine / "reports/retrain.json").read_text())
    assert proc.returncode == 75, proc.stdout + proc.stderr
    assert report["decision"] == "superseded" and f"moved from v{before['champion']} to v{elsewhere}" in report["reason"]
    assert _champions(client) == {"champion": elsewhere, "previous-champion": before["champion"]}  # left as moved
    assert client.get_model_version(NAME, report["challenger_version"]).tags["retrain.decision"] == "superseded"
    assert client.get_run(report["mlflow_run_id"]).data.tags["retrain.decision"] == "superseded"
