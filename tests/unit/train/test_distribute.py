"""Data parallelism. On one machine: tf.distribute.MirroredStrategy, exercised on the CPU split
into two logical devices (the same code path as two GPUs: replicas, split batches, all-reduce).
Across processes: keras.distribution.DataParallel on JAX, two `gapline train` processes on
127.0.0.1 (the same code path as two machines: a coordinator, gloo all-reduce over TCP).

TensorFlow and JAX fix their devices when they first initialize, so each distributed training
runs in a fresh interpreter (the one-device reference it is compared with runs in this one)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from gapline.config.checks import from_container
from gapline.core.errors import ConfigError
from helpers.processes import BIN, free_port, gapline_in_process, in_process, run
from helpers.sandbox import copy_project

TESTS = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from conftest import TINY_CONFIG, _deep_merge, tiny_images
from gapline.models import runtime
from gapline.config.checks import from_container

cfg = from_container(_deep_merge(TINY_CONFIG, json.loads(sys.argv[1])))
runtime.configure_for(cfg.train)
from gapline.evaluate.splits import evaluate_splits
from gapline.train.fit import train_model

x, y = tiny_images(60, seed=0)
xv, yv = tiny_images(15, seed=1)  # 15: the last batch splits unevenly between two replicas
result = train_model(cfg, x, y, xv, yv, 3)
print(json.dumps({{
    "replicas": result.replicas,
    "history": result.history,
    "evaluated": evaluate_splits(result.model, {{"train": (x, y), "val": (xv, yv)}}, 3),
    "weights": [w.tolist() for w in result.model.get_weights()],
}}))
"""


def _train(distribute: str, replicas: int = 2, here: bool = False) -> dict:
    """SCRIPT's report of one training: in a fresh interpreter, or with ``here`` in this one
    (where TensorFlow has set up its devices already: fine for one device, not for a split CPU)."""
    overrides = {
        "model": {"family": "cnn"},
        "regularization": {"l2": 0.001},
        "train": {"epochs": 3, "distribute": distribute, "cpu_replicas": replicas},
    }
    if here:
        out = io.StringIO()
        with mock.patch.object(sys, "argv", ["-c", json.dumps(overrides)]), mock.patch.object(sys, "path", list(sys.path)):
            with contextlib.redirect_stdout(out):
                exec(SCRIPT.format(tests=str(TESTS)), {"__name__": "__main__"})
        return json.loads(out.getvalue().strip().splitlines()[-1])
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(tests=str(TESTS)), json.dumps(overrides)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_mirrored_on_two_cpu_replicas_trains_the_same_model_as_one_device() -> None:
    mirrored, single = _train("mirrored"), _train("none", here=True)
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    # Each step's batch is split in two and the gradients all-reduced: the same update as
    # one device computing the whole batch, up to float summation order.
    for a, b in zip(mirrored["weights"], single["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for key in ("loss", "val_loss", "train_eval_loss", "gap_loss", "gap_accuracy"):
        np.testing.assert_allclose(mirrored["history"][key], single["history"][key], rtol=1e-4, atol=1e-6)
    # The gap callback and the final evaluation see each sample once, not once per replica.
    ev = mirrored["evaluated"]
    assert ev["train_loss"] == pytest.approx(mirrored["history"]["train_eval_loss"][-1], rel=1e-5)
    assert ev["val_accuracy"] == pytest.approx(single["evaluated"]["val_accuracy"], abs=1e-6)
    assert ev["val_loss"] == pytest.approx(single["evaluated"]["val_loss"], rel=1e-4)


def test_mirrored_refuses_multi_step_calls_with_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        from_container({"train": {"distribute": "mirrored", "steps_per_execution": 8}})
    message = str(err.value)
    assert "\n" not in message and "train.steps_per_execution" in message and "8" in message


def test_unknown_distribution_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as err:
        from_container({"train": {"distribute": "parameter_server"}})
    assert "train.distribute" in str(err.value) and "mirrored" in str(err.value) and "multi_worker" in str(err.value)


def _project(tmp_path: Path, overrides: list[str], data: bool = True) -> tuple[Path, dict[str, str]]:
    """A fresh copy with its params.yaml composed and (``data``) its prepared data."""
    project = copy_project(tmp_path / "repo")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    for args in (["params", "experiment=debug", *overrides], *([["prepare"], ["augment"]] if data else [])):
        gapline_in_process(args, project)
    return project, env


@pytest.mark.slow
def test_multi_worker_two_processes_train_one_model_and_only_the_chief_logs(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    project, env = _project(tmp_path, ["train.distribute=multi_worker", "train.batch_size=32"])
    env = {
        **os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "KERAS_BACKEND": "jax",
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{free_port()}", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
    }
    procs = [
        subprocess.Popen(["gapline", "train"], cwd=project, env={**env, "KERAS_DISTRIBUTION_PROCESS_ID": str(i)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in (1, 0)
    ]
    worker, chief = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], f"{chief[-3000:]}\n=====\n{worker[-3000:]}"
    # Every step all-reduced the two processes' gradients: both hold the same weights.
    ours = re.search(r"process 1 of 2: trained (\d+) epochs; weights (\w+)", worker)
    theirs = re.search(r"trained (\d+) epochs in .*; weights (\w+)", chief)
    assert ours and theirs and ours.groups() == theirs.groups(), (chief[-2000:], worker[-2000:])

    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, "only the chief opens an MLflow run"
    logged = runs[0]
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["processes"] == "2" and logged.data.tags["keras.backend"] == "jax"
    assert logged.data.params["train.distribute"] == "multi_worker"
    assert len(client.get_metric_history(logged.info.run_id, "gap_accuracy")) == int(ours.group(1))
    # The chief's model is an ordinary one-process model: the evaluate stage uses it as is,
    # here in this process, on its TensorFlow backend (the stage never joins the processes).
    in_process(["gapline", "evaluate"], project, {"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]})
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.5
    # The per-epoch validation loss the processes computed together is the one a single
    # process computes from the saved model (each sample counted once, not once per process).
    from gapline.evaluate.curves import read_curves

    assert read_curves(project / "dvclive")["val_loss"][-1] == pytest.approx(metrics["val_loss"], rel=1e-4)


@pytest.mark.slow
def test_multi_worker_misconfigured_is_one_line_before_any_run(tmp_path: Path) -> None:
    # no data: each refusal comes first, before train reads any (a missing split would show)
    project, env = _project(tmp_path, ["train.distribute=multi_worker"], data=False)
    proc = in_process(["gapline", "train"], project, {**env, "KERAS_BACKEND": "tensorflow"}, check=False)  # this process's backend
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "train.distribute" in proc.stderr and "KERAS_BACKEND=jax" in proc.stderr
    if importlib.util.find_spec("jax") is not None:
        unset = {name: "" for name in ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                                       "KERAS_DISTRIBUTION_PROCESS_ID")}
        proc = run(["gapline", "train"], project, {**env, **unset, "KERAS_BACKEND": "jax"}, check=False)
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
        assert "KERAS_DISTRIBUTION_JOB_ADDRESSES" in proc.stderr and "coordinator" in proc.stderr
        gapline_in_process(["params", "experiment=debug", "train.distribute=mirrored"], project)
        proc = run(["gapline", "train"], project, {**env, "KERAS_BACKEND": "jax"}, check=False)
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
        assert "train.distribute='mirrored'" in proc.stderr and "jax backend" in proc.stderr
    if (project / "mlflow.db").exists():  # no store at all: no run either
        from mlflow import MlflowClient

        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        assert not client.search_runs([e.experiment_id for e in client.search_experiments()])
