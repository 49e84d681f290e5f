"""A table's preprocessing inside the model (gapline.layers.TableEncoding): imputation with the
training median, missing indicators, standardization, vocabulary buckets with one for missing
and one for the unseen, one-hot or a trained embedding; saved and reloaded in safe mode; and
a model that learns from a category and from a number with 30 % of its cells empty."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gapline.config.schema import ModelConfig, RegularizationConfig
from gapline.config.tasks import TaskSpec
from helpers.tables import mixed_table

NUM = {"name": "income", "kind": "numeric", "median": 10.0, "mean": 12.0, "std": 4.0, "indicator": True}
CAT = {"name": "city", "kind": "categorical", "values": ["east", "north", "south"], "vocabulary": ["north", "east"],
       "encoding": "one_hot"}


def test_numeric_cells_are_imputed_indicated_and_standardized() -> None:
    from gapline.layers import TableEncoding

    out = np.asarray(TableEncoding([NUM])(np.array([[20.0], [np.nan]], dtype="float32")))
    assert out.tolist() == [[2.0, 0.0], [-0.5, 1.0]]  # (20-12)/4, no indicator; (10-12)/4, indicator


def test_categorical_cells_go_to_their_bucket_missing_or_out_of_vocabulary() -> None:
    from gapline.layers import TableEncoding

    # dictionary indices: east=0, north=1, south=2 (never in training: OOV), 3 (beyond: OOV), NaN (missing)
    out = np.asarray(TableEncoding([CAT])(np.array([[0.0], [1.0], [2.0], [3.0], [np.nan]], dtype="float32")))
    buckets = out.argmax(axis=1).tolist()
    assert buckets == [3, 2, 1, 1, 0]  # vocabulary order north (2), east (3); OOV 1; missing 0
    assert out.sum(axis=1).tolist() == [1.0] * 5


def _table_spec() -> TaskSpec:
    wide = {**CAT, "name": "shop", "values": [f"s{i}" for i in range(30)], "vocabulary": [f"s{i}" for i in range(25)],
            "encoding": "embedding", "embedding_dim": 4}
    return TaskSpec(name="binary", labels=("no", "yes"), table=(NUM, CAT, wide))


def test_a_table_model_saves_and_reloads_in_safe_mode_with_the_same_predictions(tmp_path: Path) -> None:
    from gapline.models.build import build_model
    from gapline.models.saving import load_model

    model = build_model((3,), _table_spec(), ModelConfig(family="mlp", hidden_units=[8]), RegularizationConfig(), seed=1)
    encoding = model.get_layer("table_encoding")
    assert encoding.compute_output_shape((None, 3)) == (None, 2 + 4 + 4)
    assert len(encoding.trainable_weights) == 1  # the embedding; one-hot and statistics are fixed
    x = np.array([[1.0, 0.0, 3.0], [np.nan, np.nan, 29.0], [5.0, 7.0, np.nan]], dtype="float32")
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(model.predict(x, verbose=0)), np.asarray(again.predict(x, verbose=0)))
    assert again.get_layer("table_encoding").get_config()["columns"][1]["vocabulary"] == ["north", "east"]


def test_a_model_learns_from_a_category_and_from_a_number_with_missing_cells(tmp_path: Path) -> None:
    """The label is the city group XOR the income above 50, income 30 % empty: neither column
    alone beats chance; the table's model reaches well above the majority class on test."""
    from gapline.config.checks import from_container
    from gapline.experiments.trial import run_trial

    mixed_table(1200, seed=4).to_csv(tmp_path / "t.csv", index=False)
    cfg = from_container({
        "data": {"source": "csv", "path": str(tmp_path / "t.csv"), "columns": {"drop": ["id"]}, "seed": 1},
        "model": {"family": "mlp", "hidden_units": [32, 16]},
        "regularization": {"early_stopping": {"enabled": False}},
        "train": {"epochs": 40, "batch_size": 32, "learning_rate": 0.01, "seed": 3, "accelerator": "cpu",
                  "verbose": "quiet"},
        "tracking": {"enabled": False},
    })
    result = run_trial(cfg)
    counts = np.bincount((mixed_table(1200, seed=4)["label"] == "buy").astype(int))
    majority = counts.max() / counts.sum()
    # missing incomes cap what any model can know: 30 % of rows are a coin flip at best
    assert result.metrics["test_accuracy"] > majority + 0.2, (result.metrics, majority)
    assert result.metrics["test_accuracy"] > 0.75


def test_the_encoding_runs_on_jax_with_the_same_numbers() -> None:
    """Strings never enter the graph: the same cells give the same features on JAX."""
    import os
    import subprocess
    import sys

    from gapline.layers import TableEncoding

    x = [[20.0, 0.0], [float("nan"), float("nan")], [3.0, 2.0]]
    code = (
        "import json, sys, numpy as np; from gapline.layers import TableEncoding; "
        "cols, x = json.loads(sys.argv[1]); "
        "print(json.dumps(np.asarray(TableEncoding(cols)(np.array(x, dtype='float32'))).tolist()))"
    )
    import json

    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps([[NUM, CAT], x])], env=env, capture_output=True,
                          text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    on_jax = np.asarray(json.loads(proc.stdout.strip().splitlines()[-1]))
    here = np.asarray(TableEncoding([NUM, CAT])(np.array(x, dtype="float32")))
    np.testing.assert_allclose(on_jax, here, rtol=0, atol=1e-6)
