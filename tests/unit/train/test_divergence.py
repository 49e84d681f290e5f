"""A diverging run stops at once with one clear line instead of training on NaNs."""

import numpy as np
import pytest

from gapline.config.checks import from_container
from gapline.train.fit import TrainingDiverged, train_model


def test_nan_loss_stops_training_with_one_line(cpu_runtime) -> None:
    cpu_runtime(0)
    cfg = from_container({"train": {"learning_rate": 10.0, "epochs": 5, "optimizer": "sgd"}, "model": {"hidden_units": [16]}})
    rng = np.random.default_rng(0)
    x = (rng.random((64, 4, 4, 1)) * 1e20).astype("float32")  # overflows float32 in the first matmuls
    y = rng.integers(0, 3, 64)
    with pytest.raises(TrainingDiverged) as info:
        train_model(cfg, x, y, x[:16], y[:16], 3)
    message = str(info.value)
    assert "\n" not in message
    assert "epoch 1" in message and "loss=nan" in message and "train.learning_rate" in message
