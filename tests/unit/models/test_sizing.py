"""A family sized from its input (``auto``): the rules, the model they build, what the run
logs, and a list in the config winning over them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gapline.config.checks import from_container
from gapline.config.schema import ModelConfig, RegularizationConfig
from gapline.config.tasks import TaskSpec
from gapline.core.errors import ConfigError
from gapline.models.build import build_model
from gapline.models.sizing import cnn_filters, mlp_units


def test_mlp_width_follows_the_number_of_features() -> None:
    assert mlp_units(64) == [256, 256]  # the bundled digits: the MLP the default always had
    assert mlp_units(5) == [64, 64]  # a small table: the narrowest
    assert mlp_units(30) == [128, 128]
    assert mlp_units(28 * 28) == [512, 512]  # the widest


def test_cnn_stacks_blocks_until_the_map_is_small_and_widens_as_it_deepens() -> None:
    assert cnn_filters(8, 8) == [32, 64]  # 8 -> 4 -> 2
    assert cnn_filters(28, 28) == [32, 64, 128]  # 28 -> 14 -> 7 -> 3
    assert cnn_filters(25, 25) == [32, 64, 128]
    assert cnn_filters(32, 32) == [32, 64, 128, 256]
    assert cnn_filters(96, 96) == [32, 64, 128, 256, 256]  # capped at 256
    assert cnn_filters(96, 20) == [32, 64, 128]  # the shorter side decides
    assert cnn_filters(3, 3) == [32]  # at least one block


def _convs(model) -> list[int]:
    return [layer.filters for layer in model.layers if type(layer).__name__ == "Conv2D"]


def test_auto_builds_what_the_rule_says_and_a_list_wins() -> None:
    reg = RegularizationConfig()
    task = TaskSpec("multiclass", ("a", "b", "c"))
    assert _convs(build_model((28, 28, 1), task, ModelConfig(family="cnn"), reg)) == [32, 64, 128]
    assert _convs(build_model((8, 8, 1), task, ModelConfig(family="cnn"), reg)) == [32, 64]
    assert _convs(build_model((28, 28, 1), task, ModelConfig(family="cnn", conv_filters=[4, 8]), reg)) == [4, 8]
    dense = [layer.units for layer in build_model((64,), task, ModelConfig(), reg).layers if type(layer).__name__ == "Dense"]
    assert dense == [256, 256, 3]


def test_block_counting_keys_are_checked_against_what_auto_chose() -> None:
    """``dropout_rates`` needs one rate per block: with ``auto`` the count is known only once
    the input is, so the model build refuses it with the count it chose."""
    reg = RegularizationConfig(dropout_rates=[0.1, 0.2])
    task = TaskSpec("multiclass", ("a", "b"))
    with pytest.raises(ConfigError, match=r"regularization.dropout_rates.*4 for model.family=cnn"):
        build_model((28, 28, 1), task, ModelConfig(family="cnn"), reg)
    build_model((8, 8, 1), task, ModelConfig(family="cnn"), RegularizationConfig(dropout_rates=[0.1, 0.2, 0.3]))


def test_the_run_logs_what_auto_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_tiny_images) -> None:
    """params.yaml says ``auto``; the MLflow run says what was built, and tags it."""
    import mlflow

    from gapline.stages.augment import augment
    from gapline.stages.prepare import prepare
    from gapline.stages.train import train

    x, y = make_tiny_images(60, size=12, classes=3, seed=0)
    np.savez(tmp_path / "raw.npz", x=x, y=y)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw = {
        "data": {"source": "npz", "path": str(tmp_path / "raw.npz")},
        "model": {"family": "cnn", "dense_units": 8},
        "train": {"epochs": 1, "batch_size": 16, "accelerator": "cpu"},
        "tracking": {"uri": uri, "system_metrics": False},
    }
    cfg = from_container(raw)
    assert cfg.model.conv_filters == "auto"
    prepare(cfg)
    augment(cfg)
    train(cfg, "", {"model": {"family": "cnn", "conv_filters": "auto", "dense_units": 8}})
    run_id = json.loads((tmp_path / "reports/mlflow_run.json").read_text())["run_id"]
    run = mlflow.MlflowClient(uri).get_run(run_id)
    assert run.data.params["model.conv_filters"] == "[32, 64]"  # 12 -> 6 -> 3
    assert run.data.tags["gapline.sized"] == "model.conv_filters"
