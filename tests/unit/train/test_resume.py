"""A killed training run resumes from its last completed epoch and ends exactly where an
uninterrupted run ends; the killed MLflow run is closed, not left RUNNING."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from gapline.config.checks import from_container
from gapline.train.fit import train_model
from gapline.train.resume import Backup, epoch_orders
from helpers.processes import gapline_in_process, in_process

BIN = Path(sys.executable).parent


def test_epoch_order_is_a_pure_function_of_seed_and_epoch() -> None:
    full = epoch_orders(50, 6, seed=3)
    assert np.array_equal(epoch_orders(50, 6, seed=3, start=4), full[4:])
    assert not np.array_equal(full[0], full[1])
    assert all(sorted(row) == list(range(50)) for row in full)


def _fit(cfg, x, y, backup=None, interrupt_at=None):
    from gapline.models import runtime

    keras.backend.clear_session()
    runtime.configure(0, True, "cpu", "float32")

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == interrupt_at:
                raise KeyboardInterrupt

    return train_model(cfg, x, y, x[:30], y[:30], 3, callbacks=[Interrupt()], backup=backup)


def test_interrupted_fit_resumes_bit_for_bit(tmp_path: Path) -> None:
    """Dropout, input noise and early stopping all carry state across the interruption."""
    cfg = from_container(
        {
            "train": {"epochs": 6, "batch_size": 16},
            "model": {"hidden_units": [32]},
            "regularization": {"dropout": 0.3, "input_noise": 0.1, "early_stopping": {"enabled": True, "patience": 3}},
        }
    )
    rng = np.random.default_rng(0)
    x = rng.random((120, 4, 4, 1)).astype("float32")
    y = rng.integers(0, 3, 120)
    straight = _fit(cfg, x, y)
    backup = Backup(tmp_path / "backup", "key")
    with pytest.raises(KeyboardInterrupt):
        _fit(cfg, x, y, backup=backup, interrupt_at=3)
    assert backup.state()["epoch"] == 3
    assert Backup(tmp_path / "backup", "other-settings").state() is None  # never resumed across settings
    resumed = _fit(cfg, x, y, backup=Backup(tmp_path / "backup", "key"))
    assert resumed.resumed_from == 3
    assert resumed.history == straight.history
    for a, b in zip(straight.model.get_weights(), resumed.model.get_weights()):
        assert np.array_equal(a, b)


def _run(args, cwd, **kw):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _check(args, cwd) -> str:
    """``args`` in this process (only the run killed mid-training needs one of its own)."""
    proc = in_process(args, cwd, {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"})
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_sigkill_mid_training_then_rerun_matches_uninterrupted(tmp_path: Path) -> None:
    from helpers.sandbox import copy_project

    copies = []
    for name in ("straight", "killed"):
        root = copy_project(tmp_path / name)
        for args in (
            ["params", "experiment=debug", "regularization=dropout", "train.epochs=60", "model.hidden_units=[64]"],
            ["prepare"],
            ["augment"],
        ):
            gapline_in_process(args, root)
        copies.append(root)
    straight, killed = copies
    _check(["gapline", "train"], straight)
    _check(["gapline", "evaluate"], straight)

    proc = _run(["gapline", "train"], killed)
    state = killed / ".gapline/backup/train/state.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if state.is_file() and json.loads(state.read_text())["epoch"] >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    saved = json.loads(state.read_text())["epoch"]
    assert 3 <= saved < 60, "the kill must land mid-training"
    assert not (killed / "models/model.keras").exists()
    killed_run = json.loads((killed / ".gapline/train_run.json").read_text())["run_id"]

    out = _check(["gapline", "train"], killed)
    assert f"resumed from the state saved after epoch {saved}" in out
    assert f"closed MLflow run {killed_run}" in out
    _check(["gapline", "evaluate"], killed)

    assert (killed / "reports/metrics.json").read_text() == (straight / "reports/metrics.json").read_text()
    for curve in sorted((straight / "dvclive").rglob("*.*")):  # the curves, as if never killed
        rel = curve.relative_to(straight)
        assert (killed / rel).read_bytes() == curve.read_bytes(), rel
    assert (killed / "models/model.keras").read_bytes() == (straight / "models/model.keras").read_bytes()
    assert not (killed / ".gapline/backup/train").exists()  # cleared once the model is saved

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{killed / 'mlflow.db'}")
    old = client.get_run(killed_run)
    assert old.info.status == "KILLED" and "process died" in old.data.tags["error"]
    new_id = json.loads((killed / "reports/mlflow_run.json").read_text())["run_id"]
    assert client.get_run(new_id).info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(new_id, "gap_accuracy"))
    assert steps == list(range(1, 61))  # the resumed run holds every epoch, before and after the kill


def test_state_saved_after_early_stopping_resumes_to_nothing_left(tmp_path: Path) -> None:
    """Killed after early stopping fired but before the model was saved: nothing to retrain."""
    assert epoch_orders(10, 5, seed=0, start=5).shape == (0, 10)
    cfg = from_container(
        {"train": {"epochs": 30, "batch_size": 16}, "model": {"hidden_units": [16]},
         "regularization": {"early_stopping": {"enabled": True, "patience": 1, "min_delta": 10.0}}}
    )
    rng = np.random.default_rng(1)
    x = rng.random((60, 4, 4, 1)).astype("float32")
    y = rng.integers(0, 3, 60)
    first = _fit(cfg, x, y, backup=Backup(tmp_path / "b", "k"))
    assert first.epochs_run < 30  # it stopped early; its state is still on disk (the stage clears it)
    again = _fit(cfg, x, y, backup=Backup(tmp_path / "b", "k"))
    assert again.resumed_from == 30 and again.history == first.history
    for a, b in zip(first.model.get_weights(), again.model.get_weights()):
        assert np.array_equal(a, b)
