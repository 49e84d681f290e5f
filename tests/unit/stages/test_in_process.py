"""A stage run twice in one process writes what a fresh process writes (the suite runs the
pipeline in-process; so do notebooks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gapline.config.checks import from_container
from gapline.stages.augment import augment
from gapline.stages.prepare import prepare
from gapline.stages.train import train


def test_training_twice_in_one_process_saves_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_tiny_images
) -> None:
    x, y = make_tiny_images(60, size=8, classes=3, seed=0)
    np.savez(tmp_path / "raw.npz", x=x, y=y)
    monkeypatch.chdir(tmp_path)
    cfg = from_container(
        {
            "data": {"source": "npz", "path": str(tmp_path / "raw.npz")},
            "model": {"family": "mlp", "hidden_units": [8]},
            "train": {"epochs": 1, "batch_size": 16, "seed": 5, "accelerator": "cpu"},
            "tracking": {"enabled": False},
        }
    )
    prepare(cfg)
    augment(cfg)
    saved = []
    for _ in range(2):  # the second build would name its optimizer adam_1 on a stale session
        train(cfg, "", {})
        saved.append((tmp_path / "models/model.keras").read_bytes())
    assert saved[0] == saved[1]
