"""Inference batches sized by bytes (gapline.models.memory): the activation estimate, the rows it
allows, and every prediction path keeping to ``train.inference_memory``."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from gapline.config.checks import from_container


def _cnn(size: int = 16, filters: int = 8, nested: bool = False):
    import keras

    body = [keras.layers.Conv2D(filters, 3, padding="same"), keras.layers.ReLU(), keras.layers.MaxPooling2D()]
    inputs = keras.Input((size, size, 1))
    x = keras.Sequential(body, name="body")(inputs) if nested else _chain(body, inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def _chain(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def test_footprint_is_the_largest_layer_inputs_plus_outputs() -> None:
    from gapline.models.memory import footprint

    conv = 16 * 16 * 8 * 4  # one float32 feature map of 8 filters at 16x16, per row
    fp = footprint(_cnn())
    assert fp.peak == 2 * conv  # the ReLU holds the conv's output and its own
    pooled = conv // 4
    assert fp.total == 16 * 16 * 4 + conv + conv + pooled + pooled + 3 * 4  # input, conv, relu, pool, flatten, dense
    # a nested model is walked, not counted whole
    assert footprint(_cnn(nested=True)).peak == fp.peak


def test_a_shared_layer_counts_once_per_call() -> None:
    import keras

    from gapline.models.memory import footprint

    inputs = keras.Input((4, 4, 8))
    shared = keras.layers.Conv2D(8, 3, padding="same")
    outputs = keras.layers.Flatten()(shared(shared(inputs)))
    fp = footprint(keras.Model(inputs, outputs))
    assert fp.total == 4 * (4 * 4 * 8) * 4  # input, two calls of the conv, flatten


def test_inference_rows_follow_the_budget() -> None:
    from gapline.models.memory import MAX_ROWS, Footprint

    fp = Footprint(peak=1000, total=3000)
    assert fp.inference_rows(7_999) == 7
    assert fp.inference_rows(10) == 1  # a row bigger than the budget still runs, alone
    assert fp.inference_rows(10**12) == MAX_ROWS
    assert fp.training_bytes(32) == 32 * 4000


@pytest.mark.parametrize(
    ("value", "size"),
    [("268435456", 268435456), ("256MiB", 256 << 20), ("1.5GiB", int(1.5 * (1 << 30))), ("2 GB", 2 * 10**9), ("1mib", 1 << 20)],
)
def test_byte_sizes(value: str, size: int) -> None:
    from gapline.config.checks import byte_size

    assert byte_size("train.inference_memory", value) == size


@pytest.mark.parametrize("value", ["", "abc", "256 parsecs", "-1MiB", "1KiB", "1048575"])
def test_byte_sizes_refused(value: str) -> None:
    from gapline.config.checks import byte_size
    from gapline.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^train.inference_memory=.* is not allowed: expected a byte count of at least 1MiB"):
        byte_size("train.inference_memory", value)


def _images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 80, size=(n, size, size, 1), dtype=np.uint8)
    for i, label in enumerate(y):
        x[i, label * 8 : label * 8 + 8] += 150
    return x, y


def test_every_prediction_path_keeps_to_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The gap callback, validation, the evaluate stage, retraining's scoring and an in-memory
    trial: each prediction call takes at most the rows the budget allows (here 2 rows of
    64x64 images through 16 filters, 512 KiB a row, in 1 MiB), and a split is scored whole."""
    import keras
    from omegaconf import OmegaConf

    from gapline.data.layout import read_split
    from gapline.experiments.trial import run_trial
    from gapline.models.memory import footprint, train_budget
    from gapline.models.saving import load_model
    from gapline.retrain.decision import score
    from gapline.stages.augment import augment
    from gapline.stages.evaluate import evaluate
    from gapline.stages.prepare import prepare
    from gapline.stages.train import train

    x, y = _images(60, 64, 0)
    np.savez(tmp_path / "images.npz", x=x, y=y)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = from_container(
        {
            "data": {"source": "npz", "path": str(tmp_path / "images.npz"), "val_fraction": 0.2, "test_fraction": 0.2},
            "augment": {"copies": 0},
            "model": {"family": "cnn", "conv_filters": [16], "dense_units": 8},
            "regularization": {"early_stopping": {"enabled": False}},
            "train": {"epochs": 1, "batch_size": 8, "seed": 3, "accelerator": "cpu", "inference_memory": "1MiB"},
            "tracking": {"enabled": False},
        }
    )
    calls: list[int] = []
    original = keras.Model.predict_on_batch

    def counted(self, x):
        calls.append(len(x))
        return original(self, x)

    monkeypatch.setattr(keras.Model, "predict_on_batch", counted)

    def scored() -> collections.Counter:
        out = collections.Counter(calls)
        calls.clear()
        return out

    meta = prepare(cfg)
    augment(cfg)
    counts = meta.counts
    train(cfg, OmegaConf.to_yaml(OmegaConf.structured(cfg)), OmegaConf.to_container(OmegaConf.structured(cfg)))
    model = load_model(work / "models" / "model.keras")
    assert footprint(model).peak == 2 * 64 * 64 * 16 * 4
    rows = footprint(model).inference_rows(train_budget(cfg.train))
    assert rows == 2

    def whole(*sizes: int) -> collections.Counter:
        """The calls of scoring splits of these sizes, ``rows`` at a time."""
        out: collections.Counter = collections.Counter()
        for n in sizes:
            out[rows] += n // rows
            if n % rows:
                out[n % rows] += 1
        return out

    # train: one epoch's gap callback scores validation and the (whole) training split
    assert scored() == whole(counts["val"], counts["train"])
    warned = capsys.readouterr().err
    assert "warning: train.batch_size=8 needs about" in warned and "above train.inference_memory=1.0 MiB" in warned

    evaluate(cfg)  # the test split once (scored and plotted), then train and val
    assert scored() == whole(counts["test"], counts["train"], counts["val"])

    splits = {name: read_split(name).pair() for name in ("train", "val", "test")}
    score(model, "1", splits, meta.task_spec(), "test_accuracy", cfg.task, train_budget(cfg.train))
    assert scored() == whole(counts["train"], counts["val"], counts["test"])

    run_trial(cfg)  # the sweep's and the study's jobs: the gap callback, then evaluate_splits
    assert scored() == whole(counts["val"], counts["train"], counts["train"], counts["val"], counts["test"])


def test_the_gap_subset_of_a_mapped_split_stays_on_disk(tmp_path: Path) -> None:
    """A subset of a split larger than the 64 MiB read whole is read a call at a time, rows
    in the same order and with the same scores as the subset copied into memory."""
    import keras

    from gapline.config.tasks import multiclass
    from gapline.data.store import IndexedRows, open_split, write_split
    from gapline.evaluate.gap import gap_subset, inference_scores, subset_indices

    n = 1100
    x = np.random.default_rng(0).integers(0, 255, size=(n, 128, 128, 4), dtype=np.uint8)  # 64 KiB a row: 69 MiB
    y = np.arange(n) % 3
    split = write_split(tmp_path / "train", x, y)
    mapped = open_split(tmp_path / "train")
    gx, gy = gap_subset(mapped.x, mapped.y, 300, 5)
    assert isinstance(gx, IndexedRows) and len(gx) == 300 and gx.reader.file is not None  # not read whole
    pick = subset_indices(n, 300, 5)
    np.testing.assert_array_equal(gx.rows(10, 20), x[pick[10:20]])
    np.testing.assert_array_equal(gy, y[pick])
    inputs = keras.Input((128, 128, 4))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs)))
    model.compile("adam", keras.losses.CategoricalCrossentropy())
    assert inference_scores(model, gx, gy, multiclass(3), budget=1 << 20) == pytest.approx(
        inference_scores(model, x[pick], y[pick], multiclass(3), budget=1 << 20), abs=1e-6
    )
    assert len(split.y) == n
