"""The four DVC stages end to end on a tiny .npz dataset, tracking off, in a tmp project."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gapline.config.checks import from_container
from gapline.config.schema import Config
from gapline.evaluate.curves import read_curves


def _write_dataset(path: Path, make_tiny_images) -> Path:
    x, y = make_tiny_images(60, size=8, classes=3, seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, y=y)
    return path


def _config(npz: Path, **data: Any) -> Config:
    return from_container(
        {
            "data": {"source": "npz", "path": str(npz), "val_fraction": 0.15, "test_fraction": 0.2, **data},
            "augment": {"copies": 1, "shift": 0.2, "seed": 3},
            "model": {"family": "mlp", "hidden_units": [8]},
            "regularization": {"dropout": 0.2, "early_stopping": {"enabled": False}},
            "train": {"epochs": 2, "batch_size": 16, "learning_rate": 0.01, "seed": 5, "accelerator": "cpu"},
            "tracking": {"enabled": False},
        }
    )


def _load(folder: Path) -> dict[str, np.ndarray]:
    """A split folder (x.npy, y.npy) read into memory."""
    return {k: np.load(folder / f"{k}.npy") for k in ("x", "y")}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_tiny_images) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    _write_dataset(tmp_path / "raw" / "dataset.npz", make_tiny_images)
    monkeypatch.chdir(work)
    return work


def test_pipeline_stages_write_their_outputs(project: Path, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from gapline.data.fingerprint import fingerprint
    from gapline.stages.augment import augment
    from gapline.stages.evaluate import evaluate
    from gapline.stages.prepare import prepare
    from gapline.stages.train import train

    cfg = _config(tmp_path / "raw" / "dataset.npz")

    # prepare
    meta = prepare(cfg)
    prepared = project / "data" / "prepared"
    for name in ("train", "val", "test"):
        assert (prepared / name / "x.npy").is_file() and (prepared / name / "y.npy").is_file()
    on_disk = json.loads((prepared / "meta.json").read_text())
    assert on_disk == meta.as_json()
    assert on_disk["kind"] == "image" and on_disk["class_names"] == ["0", "1", "2"]
    assert on_disk["input_shape"] == [8, 8, 1]
    counts = on_disk["counts"]
    assert sum(counts.values()) == 60
    assert counts == {"train": 39, "val": 9, "test": 12}
    assert on_disk["fingerprint"].startswith("sha256:")
    splits = {}
    for name in ("train", "val", "test"):
        arrays = _load(prepared / name)
        splits[name] = arrays
        assert len(arrays["y"]) == counts[name]
        assert on_disk["fingerprints"][name] == fingerprint({"x": arrays["x"], "y": arrays["y"]})
        assert sorted(np.unique(arrays["y"]).tolist()) == [0, 1, 2]

    # augment
    out = augment(cfg)
    aug = _load(project / "data" / "augmented" / "train")
    assert out["samples"] == len(aug["y"]) == 2 * counts["train"]
    np.testing.assert_array_equal(aug["x"][: counts["train"]], splits["train"]["x"])
    np.testing.assert_array_equal(aug["y"], np.concatenate([splits["train"]["y"]] * 2))
    assert not np.array_equal(aug["x"][counts["train"] :], splits["train"]["x"])

    # train
    cfg_yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    cfg_dict = OmegaConf.to_container(OmegaConf.structured(cfg))
    info = train(cfg, cfg_yaml, cfg_dict)
    assert (project / "models" / "model.keras").is_file()
    assert info["epochs_run"] == 2
    assert info["train_samples"] == counts["train"] and info["fit_samples"] == 2 * counts["train"]
    assert info["run"]["run_id"] is None  # tracking off: no MLflow run
    history = read_curves(project / "dvclive")
    for col in ("loss", "val_loss", "accuracy", "val_accuracy", "train_eval_loss",
                "train_eval_accuracy", "gap_loss", "gap_accuracy", "learning_rate"):
        assert len(history[col]) == 2, col
    for gap, train_eval, val in zip(history["gap_accuracy"], history["train_eval_accuracy"], history["val_accuracy"]):
        assert gap == pytest.approx(train_eval - val, abs=1e-12)
    with open(project / "dvclive/plots/metrics/gap/headline.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert [r["step"] for r in rows] == ["1", "2"]  # step = the 1-based epoch, as in MLflow
    assert [float(r["headline"]) for r in rows] == history["gap_accuracy"]
    assert not (tmp_path / "mlflow.db").exists()  # tracking off: nothing logged

    # evaluate
    metrics = evaluate(cfg)
    written = json.loads((project / "reports" / "metrics.json").read_text())
    assert written == metrics
    for key in ("train_accuracy", "val_accuracy", "test_accuracy", "train_loss", "val_loss", "test_loss",
                "gap_accuracy_val", "gap_accuracy_test", "gap_loss_val", "gap_loss_test",
                "best_epoch", "onset_epoch", "epochs_run", "params"):
        assert key in written, key
    assert written["gap_accuracy_val"] == pytest.approx(
        written["train_accuracy"] - written["val_accuracy"], abs=2e-6
    )
    assert written["gap_accuracy_test"] == pytest.approx(
        written["train_accuracy"] - written["test_accuracy"], abs=2e-6
    )
    assert written["gap_loss_val"] == pytest.approx(written["val_loss"] - written["train_loss"], abs=2e-6)
    assert written["epochs_run"] == 2 and 1 <= written["best_epoch"] <= 2
    # "train" in metrics is the un-augmented prepared split, evaluated with the saved model.
    import keras

    model = keras.saving.load_model(project / "models" / "model.keras")
    probs = model.predict(splits["test"]["x"], verbose=0)
    acc = float(np.mean(np.argmax(probs, axis=1) == splits["test"]["y"]))
    assert written["test_accuracy"] == pytest.approx(acc, abs=1e-6)

    diagnosis = (project / "reports" / "diagnosis.md").read_text()
    assert diagnosis.startswith("# Diagnosis: ")
    assert any(v in diagnosis for v in ("underfitting", "good fit", "overfitting"))
    for png in ("learning_curves.png", "gap_curve.png", "confusion_matrix.png"):
        data = (project / "reports" / "plots" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", png
    assert not (tmp_path / "mlflow.db").exists()


def test_prepare_twice_gives_identical_fingerprints(project: Path, tmp_path: Path) -> None:
    from gapline.stages.prepare import prepare

    cfg = _config(tmp_path / "raw" / "dataset.npz")
    first = prepare(cfg)
    first_bytes = {n: _load(project / "data" / "prepared" / n) for n in ("train", "val", "test")}
    second = prepare(cfg, out_dir=Path("again"))
    assert first.fingerprint == second.fingerprint
    assert first.fingerprints == second.fingerprints
    assert first == second
    for n, arrays in first_bytes.items():
        again = _load(project / "again" / n)
        assert again["x"].tobytes() == arrays["x"].tobytes()
        np.testing.assert_array_equal(again["y"], arrays["y"])
    # A different split seed is a different dataset.
    third = prepare(_config(tmp_path / "raw" / "dataset.npz", seed=1), out_dir=Path("other"))
    assert third.fingerprint != first.fingerprint


def test_train_fraction_halves_train_only(project: Path, tmp_path: Path) -> None:
    from gapline.stages.prepare import prepare

    npz = tmp_path / "raw" / "dataset.npz"
    full = prepare(_config(npz), out_dir=Path("full"))
    half = prepare(_config(npz, train_fraction=0.5), out_dir=Path("half"))
    assert half.fingerprints["val"] == full.fingerprints["val"]
    assert half.fingerprints["test"] == full.fingerprints["test"]
    assert half.counts["val"] == full.counts["val"]
    assert half.counts["test"] == full.counts["test"]
    assert half.fingerprints["train"] != full.fingerprints["train"]
    assert half.fingerprint != full.fingerprint
    y_full = _load(project / "full" / "train")["y"]
    y_half = _load(project / "half" / "train")["y"]
    per_full = np.bincount(y_full, minlength=3)
    per_half = np.bincount(y_half, minlength=3)
    assert np.all(np.abs(per_half - per_full / 2) <= 1), (per_half, per_full)
    assert np.all(per_half >= 1)
    # The smaller train split is a subset of the full one.
    x_full = _load(project / "full" / "train")["x"].reshape(len(y_full), -1)
    x_half = _load(project / "half" / "train")["x"].reshape(len(y_half), -1)
    full_rows = {row.tobytes() for row in x_full}
    assert all(row.tobytes() in full_rows for row in x_half)


def test_train_measures_the_gap_on_the_unaugmented_split(project: Path, tmp_path: Path) -> None:
    """With offline augmentation on, the train stage fits on the augmented set but its
    per-epoch train-side metrics (train_eval_*, hence gap_*) score the prepared training split:
    at the last epoch they equal the saved model's score on that split, not on the augmented
    set (which the same model scores differently)."""
    import dataclasses

    from omegaconf import OmegaConf

    from gapline.evaluate.splits import evaluate_splits
    from gapline.models.saving import load_model
    from gapline.stages.augment import augment
    from gapline.stages.prepare import prepare
    from gapline.stages.train import train

    cfg = _config(tmp_path / "raw" / "dataset.npz")
    cfg = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, copies=2, shift=0.3, noise_std=0.3))
    prepare(cfg)
    augment(cfg)
    train(cfg, OmegaConf.to_yaml(OmegaConf.structured(cfg)), OmegaConf.to_container(OmegaConf.structured(cfg)))

    split = _load(project / "data" / "prepared" / "train")
    augmented = _load(project / "data" / "augmented" / "train")
    assert len(augmented["y"]) == 3 * len(split["y"])  # the fit really saw augmented copies
    model = load_model(project / "models" / "model.keras")  # the last epoch's weights: no early stopping
    on_split = evaluate_splits(model, {"train": (split["x"], split["y"])}, 3)
    on_augmented = evaluate_splits(model, {"train": (augmented["x"], augmented["y"])}, 3)
    assert abs(on_augmented["train_loss"] - on_split["train_loss"]) > 0.01  # the check can tell them apart

    history = read_curves(project / "dvclive")
    assert history["train_eval_loss"][-1] == pytest.approx(on_split["train_loss"], rel=1e-4)
    assert history["train_eval_accuracy"][-1] == pytest.approx(on_split["train_accuracy"], abs=1e-5)
    assert history["gap_loss"][-1] == pytest.approx(history["val_loss"][-1] - on_split["train_loss"], abs=1e-4)
