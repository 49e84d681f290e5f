"""Faults: a diverging run, and two trainings logging to one server at the same time."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from helpers.mlflow_server import MlflowServer
from helpers.processes import BIN, gapline_in_process, in_process
from helpers.sandbox import copy_project

pytestmark = pytest.mark.slow


def test_nan_loss_fails_the_stage_and_its_run_and_registers_nothing(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "repo")
    x = np.random.default_rng(0).random((90, 6)).astype("float32") * 1e20  # overflows in the first layers
    np.savez(project / "data/raw/huge.npz", x=x, y=np.arange(90) % 3)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri}
    gapline_in_process(["params", "experiment=debug", "data=npz", "data.path=data/raw/huge.npz",
                        "data.standardize=false", "train.optimizer=sgd", "train.learning_rate=10", "tracking.system_metrics=false"], project)
    proc = in_process(["dvc", "repro"], project, env, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    error_lines = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "training diverged" in error_lines[0] and "loss=nan" in error_lines[0]
    assert not (project / "models/model.keras").exists()
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("gapline-debug").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "training diverged" in runs[0].data.tags["error"]
    assert client.search_registered_models() == [] or not client.search_model_versions("name='gapline'")


def test_two_trainings_against_one_server_at_once(tmp_path: Path) -> None:
    server = MlflowServer(tmp_path / "server").start()
    try:
        projects = [copy_project(tmp_path / f"repo{i}") for i in (0, 1)]
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": server.url}
        env.pop("DVC_EXP_NAME", None)
        for i, project in enumerate(projects):
            gapline_in_process(["params", "experiment=debug", f"train.seed={i}", f"tracking.run_name=concurrent-{i}"], project)
        # One pipeline in a process of its own, the other in this one, at the same time.
        other = subprocess.Popen(["dvc", "repro"], cwd=projects[0], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        here = in_process(["dvc", "repro"], projects[1], {"MLFLOW_TRACKING_URI": server.url}, check=False)
        outputs = [other.communicate(timeout=600)[0], here.stdout + here.stderr]
        assert [other.returncode, here.returncode] == [0, 0], "\n=====\n".join(o[-3000:] for o in outputs)
        client = MlflowClient(tracking_uri=server.url)
        records = [json.loads((p / "reports/mlflow_run.json").read_text()) for p in projects]
        assert records[0]["run_id"] != records[1]["run_id"]
        for i, record in enumerate(records):
            got = client.get_run(record["run_id"])
            assert got.info.status == "FINISHED"
            assert got.info.run_name == f"concurrent-{i}"
            assert got.data.params["train.seed"] == str(i)
            metrics = json.loads((projects[i] / "reports/metrics.json").read_text())
            assert got.data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
            assert len(client.get_metric_history(record["run_id"], "gap_accuracy")) == metrics["epochs_run"]
        versions = sorted(int(r["model_version"]) for r in records)
        assert versions == [1, 2]  # both registered, neither overwrote the other
    finally:
        server.stop()
