"""The MLflow project: every entry point's typed parameters become valid Hydra overrides of a
gapline command (fast), and `mlflow run . -e train -P epochs=2 --env-manager local` works
offline into a local store, as one FINISHED run holding the pipeline's logging (slow)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gapline.cli import _retrain_words, build_parser, split_overrides

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENTRY_POINTS = {"main", "train", "evaluate", "study", "retrain"}


def _project():
    from mlflow.projects import _project_spec

    return _project_spec.load_project(str(REPO))


def _command(entry, params: dict[str, str]) -> list[str]:
    """The command MLflow would run, split as bash would split it."""
    import tempfile

    with tempfile.TemporaryDirectory() as storage:
        return shlex.split(entry.compute_command(params, storage))


def test_mlproject_declares_typed_entry_points_and_python_env() -> None:
    project = _project()
    assert ENTRY_POINTS <= set(project._entry_points)
    for name in ENTRY_POINTS:
        entry = project._entry_points[name]
        assert entry.parameters, name
        for param in entry.parameters.values():
            assert param.type in ("int", "float", "string"), (name, param.name, param.type)
            assert param.default is not None, (name, param.name)
    assert project.env_type == "python_env"
    assert project.env_config_path.endswith("python_env.yaml")
    typed = {p.name: p.type for p in project._entry_points["train"].parameters.values()}
    assert typed["epochs"] == "int" and typed["learning_rate"] == "float"


def test_python_env_is_loadable_and_pinned() -> None:
    from mlflow.utils.environment import _PythonEnv

    env = _PythonEnv.from_yaml(str(REPO / "python_env.yaml"))
    assert env.python == "3.11"
    assert "-c deploy/constraints.txt" in env.dependencies and "." in env.dependencies
    assert (REPO / "deploy" / "constraints.txt").is_file()


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_entry_point_parameters_become_valid_hydra_overrides(name: str, conf_project: Path) -> None:
    """With its defaults (and with every typed parameter set), each entry point's command is
    `gapline mlproject <command> ...`, which gapline parses, and whose overrides compose."""
    from gapline.config.params import compose_config

    entry = _project()._entry_points[name]
    examples = {"int": "5", "float": "0.25", "string": None}
    for params in ({}, {p.name: examples[p.type] for p in entry.parameters.values() if examples[p.type]}):
        argv = _command(entry, params)
        assert argv[:3] == ["gapline", "mlproject", argv[2]] and argv[2] in ("repro", "study", "retrain")
        inner = build_parser().parse_args(argv[2:])
        if argv[2] == "retrain":
            overrides, force = _retrain_words(inner)
            assert force is False
        else:
            overrides = split_overrides(inner.overrides)
        cfg = compose_config(overrides, conf_project)
        for key, value in params.items():
            if key == "epochs":
                assert cfg.train.epochs == int(value)
            if key == "margin":
                assert cfg.retrain.margin == float(value)
            if key == "seeds":
                assert cfg.study.seeds == int(value)
    if name in ("train", "evaluate"):
        assert inner.dvc_args == [name]


def test_mlproject_command_dispatches_to_gapline(conf_project: Path) -> None:
    """`gapline mlproject` outside `mlflow run` is the command itself."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_RUN_ID", None)
    proc = subprocess.run(
        [str(BIN / "gapline"), "mlproject", "retrain", "retrain.metric=f1"],
        cwd=conf_project, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "retrain.metric='f1' is not allowed" in proc.stderr


# --------------------------------------------------------------------------------------
# mlflow run, for real (slow)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.sandbox import copy_project

    return copy_project(tmp_path_factory.mktemp("mlproject") / "repo", drop=("params.yaml",))


def _mlflow_run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlflow.db'}"
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "DVC_EXP_NAME"):
        env.pop(name, None)
    return subprocess.run(
        [str(BIN / "mlflow"), "run", ".", *args, "--env-manager", "local"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )


def _client(project: Path):
    from helpers.project_store import local_client

    return local_client(project)


def _all_runs(project: Path) -> list:
    client = _client(project)
    return client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)


@pytest.mark.slow
def test_mlflow_run_train_entry_point_offline(project: Path) -> None:
    # experiment=debug's data and model (its 3 epochs give way to the typed -P epochs=2); the
    # retrain below composes the same data, so DVC keeps this run's prepare and augment
    proc = _mlflow_run(project, "-e", "train", "-P", "epochs=2", "-P", "overrides=experiment=debug")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Running stage 'train'" in proc.stdout and "Running stage 'evaluate'" not in proc.stdout
    runs = _all_runs(project)
    assert len(runs) == 1, [(r.info.run_name, r.info.status) for r in runs]
    run = runs[0]
    # The project run is the pipeline run: MLflow's entry-point params, gapline's config, the model.
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.project.entryPoint"] == "train"
    assert run.data.params["epochs"] == "2" and run.data.params["train.epochs"] == "2"
    assert run.data.metrics["epochs_run"] == 2
    record = json.loads((project / "reports/mlflow_run.json").read_text())
    assert record["run_id"] == run.info.run_id
    version = _client(project).get_model_version("gapline", record["model_version"])
    assert version.run_id == run.info.run_id
    # MLflow's default experiment, the one `mlflow run` opened the run in (not experiment=debug's)
    assert _client(project).get_experiment(run.info.experiment_id).name == "Default"


@pytest.mark.slow
def test_mlflow_run_retrain_entry_point_records_its_decision_in_the_project_run(project: Path) -> None:
    proc = _mlflow_run(
        project, "-e", "retrain", "--experiment-name", "gapline",
        "-P", "overrides=experiment=debug", "-P", "min_score=0.5", "-P", "max_gap=0.2",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((project / "reports/retrain.json").read_text())
    assert report["decision"] == "promoted"
    client = _client(project)
    retrain_run = client.get_run(report["mlflow_run_id"])
    # the run `mlflow run` opened is the retrain run; the pipeline logged a run of its own
    assert retrain_run.data.tags["mlflow.project.entryPoint"] == "retrain"
    assert retrain_run.info.status == "FINISHED" and retrain_run.info.run_name == "retrain"
    assert retrain_run.data.tags["retrain.decision"] == "promoted"
    assert client.get_experiment(retrain_run.info.experiment_id).name == "gapline"
    champion = client.get_model_version_by_alias("gapline", "champion")
    assert champion.run_id != retrain_run.info.run_id
    assert client.get_run(champion.run_id).info.experiment_id == retrain_run.info.experiment_id
    assert {r.info.status for r in _all_runs(project)} == {"FINISHED"}
