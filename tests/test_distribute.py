"""Data parallelism on one machine: tf.distribute.MirroredStrategy, exercised on the CPU split
into two logical devices (the same code path as two GPUs: replicas, split batches, all-reduce).

TensorFlow fixes its devices when it first initializes, so each training runs in a fresh
interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gapline.config import from_container
from gapline.errors import ConfigError

TESTS = Path(__file__).resolve().parent

SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from conftest import TINY_CONFIG, _deep_merge, tiny_images
from gapline import runtime
from gapline.config import from_container

cfg = from_container(_deep_merge(TINY_CONFIG, json.loads(sys.argv[1])))
runtime.configure_for(cfg.train)
from gapline.training import evaluate_splits, train_model

x, y = tiny_images(60, seed=0)
xv, yv = tiny_images(15, seed=1)  # 15: the last batch splits unevenly between two replicas
result = train_model(cfg, x, y, xv, yv, 3)
print(json.dumps({{
    "replicas": result.extra["replicas"],
    "history": result.history,
    "evaluated": evaluate_splits(result.model, {{"train": (x, y), "val": (xv, yv)}}, 3),
    "weights": [w.tolist() for w in result.model.get_weights()],
}}))
"""


def _train(distribute: str, replicas: int = 2) -> dict:
    overrides = {
        "model": {"family": "cnn"},
        "regularization": {"l2": 0.001},
        "train": {"epochs": 3, "distribute": distribute, "cpu_replicas": replicas},
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(tests=str(TESTS)), json.dumps(overrides)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_mirrored_on_two_cpu_replicas_trains_the_same_model_as_one_device() -> None:
    mirrored, single = _train("mirrored"), _train("none")
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
        from_container({"train": {"distribute": "multi_worker"}})
    assert "train.distribute" in str(err.value) and "mirrored" in str(err.value)
