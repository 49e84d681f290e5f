"""The README's promise that models load with Keras ``safe_mode=True``: a model file holding
Python code (a ``Lambda`` layer) is refused, with one line, by every path that loads models:
the evaluate stage (models.saving.load_model) and retrain's registry loader."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers.processes import BIN

SENTINEL = "gapline-lambda-ran"


def lambda_model() -> Any:
    """A small classifier whose ``Lambda`` layer would print a sentinel if its code ever ran."""
    import keras

    return keras.Sequential(
        [
            keras.Input((4, 4, 1)),
            keras.layers.Lambda(lambda x: (print("gapline-lambda-ran"), x)[1]),  # SENTINEL: no globals once loaded
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def test_model_io_refuses_a_lambda_layer_with_one_line(tmp_path: Path) -> None:
    from gapline.core.errors import GaplineError
    from gapline.models.saving import load_model

    path = tmp_path / "model.keras"
    lambda_model().save(path)
    with pytest.raises(GaplineError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "safe_mode=True" in message and "Lambda" in message


def test_evaluate_refuses_a_lambda_model_with_one_line_and_writes_nothing(
    conf_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_tiny_images
) -> None:
    """``gapline evaluate`` in a real process: exit 2, one ``error:`` line naming the file and
    safe mode, no traceback, the Lambda never ran, no report written."""
    from gapline import cli

    project = conf_project
    monkeypatch.chdir(project)
    x, y = make_tiny_images(30, size=4, classes=3, seed=0)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    assert cli.main(["params", "data.source=npz", f"data.path={tmp_path / 'data.npz'}", "tracking.enabled=false"]) == 0
    assert cli.main(["prepare"]) == 0
    model_file = project / "models" / "model.keras"
    model_file.parent.mkdir()
    lambda_model().save(model_file)
    before = model_file.read_bytes()

    proc = subprocess.run(
        [str(BIN / "gapline"), "evaluate"], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "models/model.keras" in errors[0] and "safe_mode=True" in errors[0] and "Lambda" in errors[0]
    assert "Traceback" not in proc.stderr
    assert SENTINEL not in proc.stdout + proc.stderr
    assert not (project / "reports").exists()
    assert model_file.read_bytes() == before


def test_registry_loader_refuses_a_lambda_model(tmp_path: Path) -> None:
    """retrain loads the champion through tracking.load_registered_keras: a registered model
    holding a Lambda layer (logged to a real sqlite store the way train logs) is refused as
    one TrackingError line, which retrain reports as ``error: retrain failed: ...``."""
    import mlflow

    from gapline import tracking
    from helpers.pipeline_run import mlflow_uri

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    model = lambda_model()
    x = np.zeros((2, 4, 4, 1), dtype="float32")
    with mlflow_uri(uri):
        # its own experiment: the active one may be another test's, in another store
        mlflow.set_experiment("safe-mode")
        with mlflow.start_run():
            version = tracking.log_model(model, x, "lambda-model")
        assert version is not None
        with pytest.raises(tracking.TrackingError) as info:
            tracking.load_registered_keras("lambda-model", version)
    message = str(info.value)
    assert "\n" not in message
    assert f"lambda-model v{version}" in message and "safe_mode=True" in message and "Lambda" in message


def test_unsafe_loading_would_have_run_the_lambda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The control: loaded with safe_mode=False and called, as evaluate would, the same file
    runs the Lambda's code, so the refusals above are what keeps it from running (and the
    sentinel check can fail)."""
    import keras

    path = tmp_path / "model.keras"
    lambda_model().save(path)
    capsys.readouterr()
    model = keras.saving.load_model(path, safe_mode=False)
    model(np.zeros((1, 4, 4, 1), dtype="float32"))  # what evaluate does with a model it loaded
    assert SENTINEL in capsys.readouterr().out
