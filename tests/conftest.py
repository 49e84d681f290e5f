"""Shared fixtures: an isolated MLflow store per test, the repo root, a throw-away copy of
conf/, tiny datasets and tiny configs for anything that trains a model."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Before any test module imports TensorFlow (conftest.py is imported first): gapline's package
# sets TensorFlow's environment (oneDNN off, quiet logs) as in every gapline process, so what
# a test computes in this process is what a `gapline` command computes: oneDNN's kernels
# round differently.
import gapline  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No test writes to the repo's mlflow.db, and no test leaves an MLflow run open."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}")
    # runtime.configure(accelerator="cpu") writes these into os.environ: leave them as they
    # are during the test, but have monkeypatch put the original values back afterwards.
    for name in ("CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    yield
    mlflow = sys.modules.get("mlflow")  # a test that never imported MLflow cannot have a run
    if mlflow is not None:
        for _ in range(100):
            if mlflow.active_run() is None:
                break
            mlflow.end_run()


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def conf_project(tmp_path: Path) -> Path:
    """A temporary project folder holding a copy of the repo's conf/ (and nothing else)."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(REPO_ROOT / "conf", project / "conf")
    return project


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


TINY_CONFIG: dict[str, Any] = {
    "model": {"family": "mlp", "hidden_units": [8], "conv_filters": [4], "dense_units": 8},
    "regularization": {"early_stopping": {"enabled": False}},
    "train": {
        "epochs": 2,
        "batch_size": 16,
        "learning_rate": 0.01,
        "seed": 7,
        "accelerator": "cpu",
        "gap_eval_samples": 0,
    },
    "tracking": {"enabled": False},
}


@pytest.fixture
def make_tiny_config() -> Callable[..., Any]:
    """``make_tiny_config({"regularization": {"dropout": 0.5}})`` → a validated tiny Config."""
    from gapline.config.checks import from_container

    def make(extra: dict[str, Any] | None = None) -> Any:
        return from_container(_deep_merge(TINY_CONFIG, extra or {}))

    return make


def tiny_images(n: int = 60, size: int = 4, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 images (n, size, size, 1) in [0, 1] with a class-dependent bright row."""
    rng = np.random.default_rng(seed)
    y = np.arange(n, dtype=np.int64) % classes
    x = rng.uniform(0.0, 0.3, size=(n, size, size, 1)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, label % size, :, 0] += 0.6
    return np.clip(x, 0.0, 1.0), y


@pytest.fixture
def tiny_image_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train (60), val (15) and test (15) samples of 4x4x1 images, 3 classes."""
    return {
        "train": tiny_images(60, seed=0),
        "val": tiny_images(15, seed=1),
        "test": tiny_images(15, seed=2),
    }


@pytest.fixture
def cpu_runtime() -> Callable[[int], Any]:
    """Seed every RNG and pin Keras to deterministic float32 on the CPU."""
    from gapline.models import runtime

    def configure(seed: int = 0) -> Any:
        return runtime.configure(seed, True, "cpu", "float32")

    return configure


@pytest.fixture
def make_tiny_images() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """The :func:`tiny_images` generator, for tests that need their own sizes."""
    return tiny_images


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules with slow tests first, then the modules with the most tests, each module's
    tests in their own order: with one module per test process (``--dist loadscope``) the
    long ones start early and the quick ones fill the end, instead of a long module starting
    last while the other process idles."""
    modules = [getattr(item, "module", None) for item in items]
    slow = {m for m, item in zip(modules, items, strict=True) if item.get_closest_marker("slow")}
    size = {m: modules.count(m) for m in set(modules)}
    order = {id(item): (m not in slow, -size[m]) for m, item in zip(modules, items, strict=True)}
    items.sort(key=lambda item: order[id(item)])
