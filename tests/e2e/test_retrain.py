"""`gapline retrain` and `gapline promote`: the decision rule, change detection and the lock
(fast), then the whole story through real DVC and a real MLflow store in a throwaway copy of
the repo (slow): first promotion, no-op rerun, a worse challenger kept out, a failure that
leaves the aliases alone, a better challenger promoted, rollback, and two overlapping runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gapline import retrain as R
from gapline.cli import _retrain_words, build_parser
from gapline.config.checks import from_container
from gapline.config.schema import Config, RetrainConfig
from gapline.core.errors import ConfigError
from gapline.core.exit_codes import PROMOTE_MEANINGS
from gapline.retrain.drift_gate import TAG_REFERENCE
from helpers.processes import retrain_in_process

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env(project: Path) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlflow.db'}"
    for name in ("DVC_EXP_NAME", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        env.pop(name, None)
    return env


def _gapline(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``gapline <args>`` as a scheduled job runs it: for the lock, signals and overlaps."""
    return subprocess.run(
        [str(BIN / "gapline"), *args], cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=timeout
    )


# --------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------


def test_retrain_defaults_compose_from_conf(conf_project: Path) -> None:
    from gapline.config.params import compose_config

    cfg = compose_config([], conf_project)
    assert cfg.retrain == RetrainConfig()
    assert cfg.retrain.metric == "auto"
    assert cfg.retrain.lock_file == ".gapline/retrain.lock"
    tuned = compose_config(["retrain.metric=val_accuracy", "retrain.margin=0.01"], conf_project)
    assert (tuned.retrain.metric, tuned.retrain.margin) == ("val_accuracy", 0.01)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("metric", "f1", "one of auto, test_accuracy, test_auc, test_rmse"),
        ("margin", -0.1, "a number in [0, 1]"),
        ("max_gap", 1.5, "a number in [0, 1]"),
        ("max_relative_gap", -0.5, "a number in [0, inf)"),
        ("min_score", 2.0, "a number in [-1e+09, 1]"),
        ("max_error", -1.0, "a number in [0, inf)"),
        ("drift", "always", "one of report, require, block"),
        ("max_drift", -0.1, "a number in [0, 1]"),
        ("lock_file", " ", "a non-empty path"),
        ("report", "", "a non-empty path"),
    ],
)
def test_retrain_config_is_validated_in_one_line(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_container({"retrain": {key: value}})
    message = str(err.value)
    assert f"retrain.{key}=" in message and expected in message
    assert "\n" not in message


# --------------------------------------------------------------------------------------
# The decision rule
# --------------------------------------------------------------------------------------


def _rc(**kw: object) -> RetrainConfig:
    return dataclasses.replace(RetrainConfig(min_score=0.8, max_gap=0.05), **kw)


def _scored(version: str, score: float | None, gap: float | None = 0.01) -> R.Scored:
    return R.Scored(version=version, score=score, gap=gap)


def test_first_champion_needs_only_the_floor_and_the_gap_bound() -> None:
    ok, reason = R.decide(_rc(), _scored("1", 0.85), None)
    assert ok and "no champion yet" in reason
    ok, reason = R.decide(_rc(), _scored("1", 0.79), None)
    assert not ok and "below retrain.min_score=0.8" in reason


def test_challenger_must_reach_champion_plus_margin_ties_promote() -> None:
    assert R.decide(_rc(), _scored("2", 0.90), _scored("1", 0.90))[0]  # >=: a tie promotes
    assert not R.decide(_rc(margin=0.01), _scored("2", 0.90), _scored("1", 0.90))[0]
    # 0.85 + 0.05 is 0.9000000000000001 in floats; the rule compares with a tolerance
    assert R.decide(_rc(margin=0.05), _scored("2", 0.9), _scored("1", 0.85))[0]
    ok, reason = R.decide(_rc(margin=0.02), _scored("2", 0.91), _scored("1", 0.90))
    assert not ok
    assert "0.9100 < champion v1's 0.9000 + margin 0.02" in reason


def test_gap_bound_and_floor_apply_even_to_a_winner() -> None:
    ok, reason = R.decide(_rc(), _scored("2", 0.99, gap=0.08), _scored("1", 0.85))
    assert not ok and "gap +0.0800 exceeds retrain.max_gap=0.05" in reason
    ok, reason = R.decide(_rc(min_score=0.95), _scored("2", 0.9), _scored("1", 0.5))
    assert not ok and "below retrain.min_score=0.95" in reason
    ok, reason = R.decide(_rc(min_score=0.95), _scored("2", 0.5, gap=0.3), _scored("1", 0.9))
    assert not ok and reason.count(";") == 2  # every failed check is named


def test_unscorable_champion_falls_back_to_the_floor() -> None:
    champion = R.Scored("1", None, None, error="ValueError: expected shape (None, 64)")
    ok, reason = R.decide(_rc(), _scored("2", 0.85), champion)
    assert ok and "cannot be scored" in reason


def test_gap_follows_the_metric_split() -> None:
    assert R.gap_key("test_accuracy") == "gap_accuracy_test"
    assert R.gap_key("val_accuracy") == "gap_accuracy_val"
    assert R.gap_key("test_rmse") == "gap_rmse_test"


def test_an_error_metric_promotes_the_lower_value_with_a_relative_margin() -> None:
    rc = _rc(metric="test_rmse", max_relative_gap=0.5, margin=0.1)
    ok, reason = R.decide(rc, _scored("2", 45.0, gap=0.2), _scored("1", 50.0))
    assert ok and "test_rmse 45 <= champion v1's 50 less margin 10%" in reason  # 45 <= 50 * 0.9
    ok, reason = R.decide(rc, _scored("2", 46.0, gap=0.2), _scored("1", 50.0))
    assert not ok and "> champion v1's 50 less margin 10% (45)" in reason
    assert not R.decide(_rc(metric="test_rmse", max_relative_gap=0.5), _scored("2", 51.0, gap=0.2), _scored("1", 50.0))[0]
    # the ceiling replaces the floor (an RMSE of 45 is far above min_score=0.8 and must not fail it)
    ok, reason = R.decide(_rc(metric="test_rmse", max_relative_gap=0.5, max_error=40.0), _scored("2", 45.0, gap=0.2), None)
    assert not ok and "above retrain.max_error=40" in reason and "min_score" not in reason
    assert R.decide(_rc(metric="test_rmse", max_relative_gap=0.5), _scored("2", 45.0, gap=0.2), None)[0]


def test_an_errors_gap_is_relative_to_the_train_error() -> None:
    metrics = {"train_rmse": 40.0, "test_rmse": 50.0, "gap_rmse_test": 10.0, "train_accuracy": 1.0, "gap_accuracy_test": 0.03}
    assert R.judged_gap("test_rmse", metrics) == pytest.approx(0.25)
    assert R.judged_gap("test_accuracy", metrics) == pytest.approx(0.03)  # a score's gap stays in points
    ok, reason = R.decide(_rc(metric="test_rmse", max_relative_gap=0.2), _scored("2", 50.0, gap=0.25), None)
    assert not ok and "+25.0% of the train error exceeds retrain.max_relative_gap=0.2" in reason
    assert R.decide(_rc(metric="test_rmse", max_gap=0.0, max_relative_gap=0.3), _scored("2", 50.0, gap=0.25), None)[0]


# --------------------------------------------------------------------------------------
# Change detection
# --------------------------------------------------------------------------------------


def test_config_digest_covers_only_what_builds_the_model() -> None:
    base = Config()
    digest = R.config_digest(base)
    elsewhere = dataclasses.replace(
        base,
        tracking=dataclasses.replace(base.tracking, experiment="other"),
        retrain=dataclasses.replace(base.retrain, margin=0.5),
        meta=dataclasses.replace(base.meta, conf_digest="x"),
    )
    assert R.config_digest(elsewhere) == digest
    assert R.config_digest(dataclasses.replace(base, train=dataclasses.replace(base.train, epochs=7))) != digest
    assert R.config_digest(dataclasses.replace(base, data=dataclasses.replace(base.data, seed=1))) != digest
    # the task's settings train another model from the same data
    assert R.config_digest(dataclasses.replace(base, task=dataclasses.replace(base.task, class_weight="balanced"))) != digest


def test_code_digest_follows_sources_not_bytecode(tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "gapline"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    assert R.code_dir(tmp_path) == pkg
    before = R.code_digest(pkg)
    (pkg / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    assert R.code_digest(pkg) == before
    (pkg / "training.py").write_text("y = 2\n")
    assert R.code_digest(pkg) != before


def test_what_changed_names_each_difference() -> None:
    state = R.State("sha256:aa", "cfg1", "code1", "0.1.0", "abc")
    tags = state.tags()
    assert R.what_changed(tags, state) == {}
    assert R.what_changed({**tags, "git.commit": "other"}, state) == {}  # commits alone do not count
    assert set(R.what_changed({**tags, R.TAG_DATA: "sha256:bb"}, state)) == {"data"}
    assert set(R.what_changed({**tags, R.TAG_CONFIG: "cfg0"}, state)) == {"config"}
    assert set(R.what_changed({**tags, R.TAG_VERSION: "0.0.9"}, state)) == {"code"}
    assert set(R.what_changed(None, state)) == {"champion"}
    assert set(R.what_changed({"test_accuracy": "0.9"}, state)) == {"champion"}  # no recorded state


# --------------------------------------------------------------------------------------
# The lock and the CLI
# --------------------------------------------------------------------------------------


def test_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    path = tmp_path / ".gapline" / "retrain.lock"
    with R.exclusive_lock(path) as info:
        assert R.lock_holder(path)["pid"] == os.getpid() == info["pid"]
        with pytest.raises(R.LockHeld) as err:
            with R.exclusive_lock(path):
                pass  # pragma: no cover
        message = str(err.value)
        assert f"pid {os.getpid()}" in message and info["started"] in message and str(path) in message
    assert R.lock_holder(path) == {}  # released and cleared
    with R.exclusive_lock(path):
        pass


def test_force_flag_and_overrides_parse_in_any_order() -> None:
    parser = build_parser()

    def words(*argv: str) -> tuple[list[str], bool]:
        return _retrain_words(parser.parse_args(["retrain", *argv]))

    assert words() == ([], False)
    assert words("--force") == ([], True)
    assert words("a=1", "b=2", "--force") == (["a=1", "b=2"], True)
    assert words("--force", "a=1", "b=2") == (["a=1", "b=2"], True)
    # how MLproject passes them: an empty `overrides` is an empty word, --force takes a value
    assert words("", "retrain.margin=0.1", "--force", "false") == (["retrain.margin=0.1"], False)
    assert words("--force", "true") == ([], True)


def _help(command: str) -> str:
    return build_parser()._subparsers._group_actions[0].choices[command].format_help()


def test_retrain_help_documents_exit_codes() -> None:
    text = _help("retrain")
    for code in R.ExitCode:
        assert f"  {code} " in text
    assert "up to date: nothing to retrain" in text


@pytest.mark.parametrize(
    ("command", "left_out", "meanings"),
    [("retrain", set(), {}), ("promote", {R.ExitCode.KEPT}, PROMOTE_MEANINGS)],
)
def test_help_lists_every_exit_code_from_the_one_table(command: str, left_out: set, meanings: dict) -> None:
    """The help reads ExitCode: every code, with its meaning (the command's own wording where
    it has one), in the table's order."""
    text = _help(command)
    lines = [f"  {code.value:<4}{meanings.get(code.name, code.meaning)}" for code in R.ExitCode if code not in left_out]
    assert all(line in text.splitlines() for line in lines), text
    positions = [text.index(line) for line in lines]
    assert positions == sorted(positions)
    for code in left_out:
        assert code.meaning not in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["retrain", "retrain.metric=f1"], "retrain.metric='f1' is not allowed"),
        (["retrain", "tracking=off"], "tracking.enabled=false is not allowed for retrain"),
        (["promote", "--version", "1", "tracking=off"], "tracking.enabled=false is not allowed for promote"),
    ],
)
def test_bad_input_exits_2_with_one_line(conf_project: Path, args: list[str], expected: str) -> None:
    proc = retrain_in_process(args, conf_project)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert not (conf_project / "params.yaml").exists()  # nothing was run or written


def test_held_lock_exits_75_before_anything_runs(conf_project: Path) -> None:
    lock = conf_project / ".gapline" / "retrain.lock"
    with R.exclusive_lock(lock) as info:
        for args in (["retrain", "experiment=debug"], ["promote", "--rollback", "experiment=debug"]):
            proc = _gapline(args, conf_project, timeout=120)
            assert proc.returncode == R.ExitCode.LOCKED == 75, proc.stderr
            assert f"pid {info['pid']}" in proc.stderr and info["started"] in proc.stderr
    assert not (conf_project / "params.yaml").exists()
    assert not (conf_project / "mlflow.db").exists()


# --------------------------------------------------------------------------------------
# The whole story, through DVC and a real MLflow store (slow)
# --------------------------------------------------------------------------------------

NAME = "gapline"
# experiment=debug trains for seconds; its 3 epochs reach ~0.85 test accuracy.
BASE = ["experiment=debug", "retrain.min_score=0.5", "retrain.max_gap=0.2"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the repo (sources only, no outputs, no stores) under git."""
    from helpers.sandbox import copy_project

    return copy_project(tmp_path_factory.mktemp("retrain") / "repo")


def _client(project: Path):
    from helpers.project_store import local_client

    return local_client(project)


def _aliases(project: Path) -> dict[str, str]:
    return {k: str(v) for k, v in _client(project).get_registered_model(NAME).aliases.items()}


def _report(project: Path) -> dict:
    return json.loads((project / "reports/retrain.json").read_text())


def _runs(project: Path) -> list:
    client = _client(project)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, max_results=1000)


def _versions(project: Path) -> list[str]:
    return sorted((v.version for v in _client(project).search_model_versions(f"name='{NAME}'")), key=int)


def _retrain(project: Path, *extra: str) -> subprocess.CompletedProcess:
    return retrain_in_process(["retrain", *BASE, *extra], project)


def _check(proc: subprocess.CompletedProcess, code: int) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"


def _no_run_left_running(project: Path) -> None:
    assert {r.info.status for r in _runs(project)} <= {"FINISHED", "FAILED"}


def _retrain_run(project: Path, run_id: str):
    run = _client(project).get_run(run_id)
    assert run.info.run_name == "retrain"
    return run


state: dict[str, str] = {}


@pytest.mark.slow
def test_first_retrain_promotes_when_the_floor_is_met(project: Path) -> None:
    proc = _retrain(project)
    _check(proc, 0)
    report = _report(project)
    assert report["decision"] == "promoted" and report["exit_code"] == 0
    assert report["champion"] is None and report["changed"] == ["champion"]
    first = report["challenger_version"]
    assert _aliases(project) == {"challenger": first, "champion": first}
    assert report["challenger"]["score"] >= 0.5
    assert report["challenger"]["gap"] == pytest.approx(
        report["challenger"]["metrics"]["train_accuracy"] - report["challenger"]["metrics"]["test_accuracy"], abs=2e-6
    )
    # The version records what it was trained from, for the next retrain to compare.
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    tags = _client(project).get_model_version(NAME, first).tags
    assert tags[R.TAG_DATA] == meta["fingerprint"]
    assert tags[R.TAG_CONFIG] and tags[R.TAG_CODE] and tags["retrain.decision"] == "promoted"
    # ...and the summary of its training data, the reference of the next drift check
    assert tags[TAG_REFERENCE] == report["mlflow_run_id"]
    stored = {a.path for a in _client(project).list_artifacts(report["mlflow_run_id"], "drift/reference")}
    assert stored == {"drift/reference/reference.npz", "drift/reference/reference.json"}
    assert report["drift"]["status"] == "no-champion" and report["drift_policy"] == "report"
    run = _retrain_run(project, report["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["retrain.decision"] == "promoted"
    assert run.data.params["retrain.metric"] == "auto"  # as configured; auto: the task's headline on test
    assert run.data.params["retrain.judged_on"] == "test_accuracy"
    assert run.data.metrics["challenger_score"] == pytest.approx(report["challenger"]["score"])
    assert "champion_score" not in run.data.metrics
    assert "promoted" in proc.stdout and f"@champion -> v{first}" in proc.stdout
    _no_run_left_running(project)
    state["first"] = first


@pytest.mark.slow
def test_unchanged_rerun_is_a_noop(project: Path) -> None:
    runs, versions = len(_runs(project)), _versions(project)
    for args in (BASE, []):  # with the same overrides, and with params.yaml as it is
        proc = retrain_in_process(["retrain", *args], project)
        _check(proc, 0)
        assert "up to date: nothing to retrain" in proc.stdout
        assert "Running stage" not in proc.stdout + proc.stderr  # DVC was not even started
    assert len(_runs(project)) == runs and _versions(project) == versions  # nothing logged
    assert _report(project)["decision"] == "up-to-date"
    assert _aliases(project)["champion"] == state["first"]


@pytest.mark.slow
def test_code_change_that_no_stage_depends_on_reproduces_the_champion(project: Path) -> None:
    """The code digest changes, DVC has nothing to rerun, the challenger is the champion: up
    to date, no new version, and the champion's recorded state catches up."""
    cli = project / "src" / "gapline" / "cli.py"
    cli.write_text(cli.read_text() + "\n# a comment no stage depends on\n")
    versions = _versions(project)
    proc = _retrain(project)
    _check(proc, 0)
    assert "reproduced champion" in proc.stdout
    assert "Running stage" not in proc.stdout
    report = _report(project)
    assert report["decision"] == "up-to-date" and report["changed"] == ["code"]
    assert _versions(project) == versions and _aliases(project)["champion"] == state["first"]
    assert _client(project).get_model_version(NAME, state["first"]).tags[R.TAG_CODE] == report["state"][R.TAG_CODE]
    again = _retrain(project)
    _check(again, 0)
    assert "up to date: nothing to retrain" in again.stdout and "Running stage" not in again.stdout


@pytest.mark.slow
def test_worse_challenger_is_kept_out_and_the_champion_stays(project: Path) -> None:
    proc = _retrain(project, "train.epochs=1")
    _check(proc, R.ExitCode.KEPT)
    report = _report(project)
    worse = report["challenger_version"]
    assert report["decision"] == "kept" and report["changed"] == ["config"]
    assert report["champion"]["version"] == state["first"]
    assert report["challenger"]["score"] < report["champion"]["score"]
    assert report["challenger"]["gap"] is not None and report["champion"]["gap"] is not None
    assert "kept out" in report["reason"] and "kept out" in proc.stdout
    # both were scored on the same, current test split: the champion's score is what its own
    # evaluate stage measured on that split
    champion_tags = _client(project).get_model_version(NAME, state["first"]).tags
    assert report["champion"]["score"] == pytest.approx(float(champion_tags["test_accuracy"]), abs=1e-6)
    assert _aliases(project) == {"challenger": worse, "champion": state["first"]}
    run = _retrain_run(project, report["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["retrain.decision"] == "kept"
    assert run.data.metrics["champion_score"] == pytest.approx(report["champion"]["score"])
    assert run.data.metrics["challenger_score"] == pytest.approx(report["challenger"]["score"])
    assert _client(project).get_model_version(NAME, worse).tags["retrain.decision"] == "kept"
    # the same data as the champion's: the drift check has nothing to compare, and says so
    assert report["drift"]["status"] == "unchanged" and report["drift"]["drift_share"] == 0.0
    assert run.data.metrics["drift_share"] == 0.0 and run.data.tags["retrain.drift_gate"] == "train"
    assert (project / "reports/drift/drift.html").is_file()
    _no_run_left_running(project)


@pytest.mark.slow
def test_a_failed_retrain_never_moves_the_aliases(project: Path) -> None:
    client = _client(project)
    before = _aliases(project)
    # The champion's model files vanish: the challenger trains, then cannot be compared.
    source = client.get_model_version(NAME, state["first"]).source
    artifacts = Path(client.get_logged_model(source.removeprefix("models:/")).artifact_location.removeprefix("file://"))
    hidden = artifacts.with_name(artifacts.name + ".hidden")
    artifacts.rename(hidden)
    try:
        proc = _retrain(project, "train.epochs=8")
    finally:
        hidden.rename(artifacts)
    _check(proc, R.ExitCode.FAILED)
    assert "retrain failed" in proc.stderr and f"cannot load model {NAME} v{state['first']}" in proc.stderr
    report = _report(project)
    assert report["decision"] == "failed" and report["exit_code"] == 1
    after = _aliases(project)
    assert after["champion"] == before["champion"] and "previous-champion" not in after
    run = client.get_run(report["mlflow_run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["retrain.decision"] == "failed" and "cannot load model" in run.data.tags["error"]
    assert client.get_model_version(NAME, report["challenger_version"]).tags["retrain.decision"] == "failed"
    _no_run_left_running(project)
    state["better"] = report["challenger_version"]


@pytest.mark.slow
def test_better_challenger_is_promoted_and_the_old_champion_kept_as_previous(project: Path) -> None:
    proc = _retrain(project, "train.epochs=8")  # DVC reuses the training of the failed run
    _check(proc, 0)
    assert "Running stage 'train'" not in proc.stdout
    report = _report(project)
    assert report["decision"] == "promoted" and report["challenger_version"] == state["better"]
    assert report["challenger"]["score"] >= report["champion"]["score"]
    assert _aliases(project)["champion"] == state["better"]
    assert _aliases(project)["previous-champion"] == state["first"]
    assert report["previous_champion_after"] == state["first"]
    assert _client(project).get_model_version(NAME, state["better"]).tags["retrain.decision"] == "promoted"


@pytest.mark.slow
def test_rollback_restores_the_previous_champion(project: Path) -> None:
    proc = retrain_in_process(["promote", "--rollback", "--reason", "bad in production"], project)
    _check(proc, 0)
    assert _aliases(project)["champion"] == state["first"]
    assert _aliases(project)["previous-champion"] == state["better"]
    runs = [r for r in _runs(project) if r.info.run_name == "promote"]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["promote.to"] == state["first"]
    assert runs[0].data.tags["promote.from"] == state["better"]
    assert runs[0].data.tags["promote.reason"] == "bad in production"

    bad = retrain_in_process(["promote", "--version", "999"], project)
    _check(bad, 2)
    assert "--version='999' is not allowed" in bad.stderr

    _check(retrain_in_process(["promote", "--version", state["better"]], project), 0)  # and forward again
    assert _aliases(project)["champion"] == state["better"]
    assert _aliases(project)["previous-champion"] == state["first"]
    _no_run_left_running(project)


@pytest.mark.slow
def test_forced_retrain_trains_a_new_version_although_nothing_changed(project: Path) -> None:
    """--force with params.yaml as it is (nothing changed since the champion): DVC reruns every
    stage, a new version as good as the champion is registered, and the lock is free after."""
    versions = _versions(project)
    lock = project / ".gapline" / "retrain.lock"
    proc = retrain_in_process(["retrain", "--force"], project)
    _check(proc, 0)
    assert {"prepare", "augment", "train", "evaluate"} <= {
        line.split("'")[1] for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Running stage '")
    }
    assert len(_versions(project)) == len(versions) + 1
    assert _report(project)["forced"] is True
    assert R.lock_holder(lock) == {}
    _no_run_left_running(project)


@pytest.mark.slow
def test_overlapping_retrains_one_refuses_with_75_and_a_terminated_one_stops_its_pipeline(project: Path) -> None:
    """A retrain (a real process, as a scheduler starts it) holds the lock: a second one refuses
    with 75, naming the first. Then SIGTERM to the first (a scheduler's timeout) reaches the
    pipeline too: no dvc or stage process outlives it, its run ends KILLED (never RUNNING), the
    aliases stay, the lock is free."""
    import signal

    import psutil

    def pipeline_processes() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline", "cwd"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if p.info["cwd"] == str(project) and ("dvc" in cmd or "gapline" in cmd) and p.pid != os.getpid():
                found.append(p)
        return found

    before = _aliases(project)
    lock = project / ".gapline" / "retrain.lock"
    log = project.parent / "terminated-retrain.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BIN / "gapline"), "retrain", *BASE, "train.epochs=5"], cwd=project, env=_env(project),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.time() + 120
        while R.lock_holder(lock).get("pid") != proc.pid:
            assert proc.poll() is None, log.read_text()
            assert time.time() < deadline, "the first retrain never took the lock"
            time.sleep(0.1)
        second = _retrain(project)
        _check(second, R.ExitCode.LOCKED)
        assert f"another gapline retrain is running (pid {proc.pid}" in second.stderr
        assert "started" in second.stderr

        deadline = time.time() + 300
        while "Running stage 'train'" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.time() < deadline, "the pipeline never reached the train stage"
            time.sleep(0.1)
        assert pipeline_processes()
        os.kill(proc.pid, signal.SIGTERM)  # retrain only; it passes it on to the pipeline
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.returncode == 130, log.read_text()
    deadline = time.time() + 30
    while pipeline_processes() and time.time() < deadline:
        time.sleep(0.5)
    assert pipeline_processes() == []
    report = _report(project)
    assert report["decision"] == "failed" and "terminated" in report["reason"]
    assert _client(project).get_run(report["mlflow_run_id"]).info.status == "KILLED"
    assert "RUNNING" not in {r.info.status for r in _runs(project) if r.info.run_name == "retrain"}
    assert _aliases(project)["champion"] == before["champion"]
    assert _aliases(project).get("previous-champion") == before.get("previous-champion")
    assert R.lock_holder(lock) == {}


def test_a_score_that_is_not_a_number_never_promotes() -> None:
    """An AUC on a split with one class, an RMSE of a model that outputs inf: NaN fails every
    comparison, so without this check it would pass them all."""
    nan = float("nan")
    ok, reason = R.decide(_rc(metric="test_auc"), _scored("2", nan, gap=nan), _scored("1", 0.9))
    assert not ok and "not a number" in reason
    ok, reason = R.decide(_rc(metric="test_auc"), _scored("2", 0.9), _scored("1", nan))
    assert ok and "cannot be scored" in reason  # a champion with no score counts as absent


def test_a_champion_trained_for_another_task_is_read_from_its_run(tmp_path: Path) -> None:
    """retrain compares the champion's task (its run's ``task`` tag, multiclass before tasks
    existed) with the data's: a regression champion scored as a binary classifier would
    report an AUC of its raw outputs and could keep a real classifier out."""
    from types import SimpleNamespace

    from mlflow import MlflowClient

    from gapline.retrain.job import RetrainJob

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    client.create_registered_model("m")
    for tags in ({"task": "regression"}, {}):
        run = client.create_run(exp, tags=tags)
        client.create_model_version("m", str(tmp_path / "art"), run.info.run_id)
    job = SimpleNamespace(champion=SimpleNamespace(client=client), name="m")
    assert RetrainJob._version_task(job, "1") == "regression"
    assert RetrainJob._version_task(job, "2") == "multiclass"  # no tag: trained before tasks existed


def test_an_infinite_relative_gap_fails_the_gap_bound() -> None:
    """A regression that fits its training rows exactly (train RMSE 0) has an infinite gap."""
    ok, reason = R.decide(_rc(metric="test_rmse"), _scored("2", 5.0, gap=float("inf")), None)
    assert not ok and "exceeds retrain.max_relative_gap" in reason
