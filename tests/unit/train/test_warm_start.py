"""model.init_from (warm start from a saved or registered gapline model) and data.classes (a
subset of the source's classes): real .keras files, a real local sqlite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gapline.config.checks import from_container
from gapline.core.errors import ConfigError

CNN = {"family": "cnn", "conv_filters": [4, 8], "kernel_size": 3, "dense_units": 8}


def _cfg(model: dict[str, Any] | None = None, **extra: Any) -> Any:
    raw: dict[str, Any] = {
        "model": {**CNN, **(model or {})},
        "regularization": {"batch_norm": True, "early_stopping": {"enabled": False}},
        "train": {"epochs": 1, "batch_size": 16, "seed": 3, "accelerator": "cpu", "gap_eval_samples": 0},
        "tracking": {"enabled": False},
    }
    raw.update(extra)
    return from_container(raw)


def _build(cfg: Any, classes: int, report: dict[str, Any] | None = None) -> Any:
    from gapline.train.fit import build_compiled

    return build_compiled(cfg, (8, 8, 1), classes, 64, warm_start=report)


def _trained_source(path: Path, classes: int = 5, model: dict[str, Any] | None = None) -> Any:
    """A gapline model fitted for a few steps (so its weights are not an initialisation),
    saved the way the train stage saves it."""
    from gapline.config.tasks import one_hot
    from gapline.models.saving import save_model

    src = _build(_cfg(model, train={"seed": 11, "accelerator": "cpu"}), classes)
    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 1), dtype=np.float32)
    y = np.arange(32) % classes
    src.fit(x, one_hot(y, classes), epochs=1, batch_size=16, verbose=0)
    save_model(src, path)
    return src


def _weights(model: Any, name: str) -> list[np.ndarray]:
    return model.get_layer(name).get_weights()


BODY = ("conv_0", "conv_0_bn", "conv_1", "conv_1_bn", "dense_head", "dense_head_bn")


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_keras_file_copies_matching_layers_and_skips_a_head_of_another_shape(tmp_path: Path, capsys) -> None:
    source_file = tmp_path / "digits_0_4.keras"
    src = _trained_source(source_file, classes=5)
    report: dict[str, Any] = {}
    model = _build(_cfg({"init_from": str(source_file)}), classes=3, report=report)

    for name in BODY:  # weights equal right after build, batch-norm statistics included
        assert _same(_weights(model, name), _weights(src, name)), name
    assert report["copied"] == list(BODY)
    assert list(report["skipped"]) == ["classifier"]
    assert "8x3" in report["skipped"]["classifier"] and "8x5" in report["skipped"]["classifier"]
    assert _weights(model, "classifier")[0].shape == (8, 3)
    line = capsys.readouterr().out
    assert "warm start from" in line and "copied 6 layers" in line and "skipped 1: classifier" in line

    # the control: without init_from the same build keeps its own initialisation
    fresh = _build(_cfg(), classes=3)
    assert not _same(_weights(fresh, "conv_0"), _weights(src, "conv_0"))


def test_same_class_count_copies_the_head_too(tmp_path: Path) -> None:
    source_file = tmp_path / "src.keras"
    src = _trained_source(source_file, classes=5)
    report: dict[str, Any] = {}
    model = _build(_cfg({"init_from": str(source_file)}), classes=5, report=report)
    assert report["copied"] == [*BODY, "classifier"] and report["skipped"] == {}
    assert _same(model.get_weights(), src.get_weights())


def test_registered_alias_and_version_warm_start_through_a_local_store(tmp_path: Path) -> None:
    import mlflow

    from gapline import tracking
    from helpers.pipeline_run import mlflow_uri

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    src = _trained_source(tmp_path / "src.keras", classes=5)
    x = np.zeros((2, 8, 8, 1), dtype="float32")
    with mlflow_uri(uri):
        mlflow.set_experiment("warm-start-source")
        with mlflow.start_run():
            assert tracking.log_model(src, x, "digits-0-4") == "1"  # also sets @challenger
        with mlflow.start_run():  # a second version, which the alias below must not pick
            assert tracking.log_model(_build(_cfg(), 5), x, "digits-0-4") == "2"
        mlflow.MlflowClient().set_registered_model_alias("digits-0-4", "champion", "1")

        tracking_cfg = {"uri": uri, "enabled": False}
        for init_from, version in (("models:/digits-0-4@champion", "1"), ("models:/digits-0-4/1", "1")):
            report: dict[str, Any] = {}
            model = _build(_cfg({"init_from": init_from}, tracking=tracking_cfg), classes=3, report=report)
            assert report["version"] == version and report["registered_model"] == "digits-0-4"
            assert report["copied"] == list(BODY) and list(report["skipped"]) == ["classifier"]
            for name in BODY:
                assert _same(_weights(model, name), _weights(src, name)), (init_from, name)

        for bad, mentions in (
            ("models:/digits-0-4@nope", ["@champion (v1)", "@challenger (v2)"]),
            ("models:/digits-0-4/9", ["a version registered as 'digits-0-4'"]),
            ("models:/no-such-model@champion", ["it has: none"]),
            ("models:/digits-0-4@", ["models:/NAME@ALIAS"]),
        ):
            with pytest.raises(ConfigError) as info:
                _build(_cfg({"init_from": bad}, tracking=tracking_cfg), classes=3)
            message = str(info.value)
            assert "\n" not in message and message.startswith(f"model.init_from={bad!r}"), message
            for text in mentions:
                assert text in message, message


@pytest.mark.parametrize(
    "make,mentions",
    [
        (lambda p: str(p / "missing.keras"), ["does not exist", "models/model.keras"]),
        (lambda p: str(p), ["is a folder"]),
        (lambda p: (p / "broken.keras").write_bytes(b"not a zip") and str(p / "broken.keras"), ["cannot be loaded"]),
    ],
    ids=["missing file", "a folder", "not a model"],
)
def test_unusable_init_from_is_one_line(tmp_path: Path, make, mentions) -> None:
    value = make(tmp_path)
    with pytest.raises(ConfigError) as info:
        _build(_cfg({"init_from": value}), classes=3)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"model.init_from={value!r} is not allowed"), message
    for text in mentions:
        assert text in message, message


def test_a_model_with_no_layer_in_common_is_one_line(tmp_path: Path) -> None:
    from gapline.models.saving import save_model
    from gapline.train.fit import build_compiled

    mlp_cfg = from_container(
        {"model": {"family": "mlp", "hidden_units": [16]}, "tracking": {"enabled": False}, "train": {"accelerator": "cpu"}}
    )
    save_model(build_compiled(mlp_cfg, (8, 8, 1), 3, 64), tmp_path / "mlp.keras")
    with pytest.raises(ConfigError) as info:
        _build(_cfg({"init_from": str(tmp_path / "mlp.keras")}), classes=3)
    message = str(info.value)
    assert "\n" not in message and message.startswith("model.init_from="), message
    assert "none in common" in message
    assert "conv_0" in message and "dense_0" in message  # both sides' layers are named
    assert "classifier: weight shapes [8x3, 3] here, [16x3, 3] in the source" in message


def test_nested_models_are_matched_layer_by_layer(tmp_path: Path) -> None:
    """A nested model (a backbone, a custom builder's block) is entered, not compared whole:
    its matching layers are copied even when one of its layers differs."""
    import keras

    from gapline.models.saving import save_model
    from gapline.train.warm_start import warm_start

    def model(width: int, classes: int) -> Any:
        block = keras.Sequential(
            [keras.Input((6,)), keras.layers.Dense(4, name="stem"), keras.layers.Dense(width, name="mid")], name="block"
        )
        inputs = keras.Input((6,), name="inputs")
        return keras.Model(inputs, keras.layers.Dense(classes, name="head")(block(inputs)))

    src = model(3, 2)
    save_model(src, tmp_path / "nested.keras")
    target = model(5, 2)
    summary = warm_start(target, str(tmp_path / "nested.keras"))
    assert summary["copied"] == ["block/stem"]
    assert set(summary["skipped"]) == {"block/mid", "head"}
    assert _same(target.get_layer("block").get_layer("stem").get_weights(), src.get_layer("block").get_layer("stem").get_weights())


# -- data.classes --------------------------------------------------------------------------


def test_classes_keep_only_the_listed_digits(tmp_path: Path) -> None:
    from gapline.data.bundled import load_digits
    from gapline.data.prepare import split_source

    cfg = from_container({"data": {"classes": ["5", "6", "7", "8", "9"]}, "tracking": {"enabled": False}})
    splits, meta = split_source(cfg)
    assert meta.class_names == ["5", "6", "7", "8", "9"]
    assert meta.class_filter == {"classes": ["5", "6", "7", "8", "9"], "source_class_names": [str(d) for d in range(10)]}
    digits = load_digits()
    wanted = digits.y >= 5
    assert sum(meta.counts.values()) == int(wanted.sum())
    for split in splits.values():
        assert sorted(np.unique(split["y"]).tolist()) == [0, 1, 2, 3, 4]
    # every kept image is a 5..9 of the source, with its label shifted to the kept names' index
    source = {img.tobytes(): int(t) for img, t in zip(digits.x[..., 0], digits.y)}
    for split in splits.values():
        for img, label in zip(split["x"][..., 0], split["y"]):
            assert source[img.tobytes()] == int(label) + 5
    everything = split_source(from_container({"tracking": {"enabled": False}}))[1]
    assert everything.class_filter is None and everything.fingerprint != meta.fingerprint


def test_prepare_stage_writes_the_selected_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import shutil

    from gapline import cli

    shutil.copytree(Path(__file__).resolve().parents[3] / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["params", "experiment=transfer"]) == 0
    assert cli.main(["prepare"]) == 0
    meta = json.loads(Path("data/prepared/meta.json").read_text())
    assert meta["class_names"] == ["5", "6", "7", "8", "9"]
    y = np.load("data/prepared/train/y.npy")
    assert sorted(np.unique(y).tolist()) == [0, 1, 2, 3, 4]
    assert len(y) == len(np.load("data/prepared/train/x.npy", mmap_mode="r")) == meta["counts"]["train"] == 59


# -- the train stage ----------------------------------------------------------------------------


@pytest.mark.slow
def test_train_stage_records_the_warm_start_and_fails_before_a_run_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registered source: the run's tags and reports/train.json name the version the alias
    resolved to; a bad init_from fails with no MLflow run at all."""
    import mlflow
    from omegaconf import OmegaConf

    from gapline import tracking
    from gapline.stages.augment import augment
    from gapline.stages.prepare import prepare
    from gapline.stages.train import train
    from helpers.pipeline_run import mlflow_uri

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    uri = f"sqlite:///{tmp_path / 'store.db'}"

    def config(init_from: str) -> Any:
        return from_container(
            {
                "data": {"classes": ["5", "6", "7", "8", "9"], "train_fraction": 0.2},
                "model": {**CNN, "init_from": init_from},
                "regularization": {"early_stopping": {"enabled": False}},
                "train": {"epochs": 1, "batch_size": 32, "seed": 1, "accelerator": "cpu", "resume": False},
                "tracking": {"uri": uri, "experiment": "transfer", "registered_model": "digits-5-9", "system_metrics": False},
            }
        )

    src = _build(_cfg({}, regularization={"early_stopping": {"enabled": False}}), classes=5)
    with mlflow_uri(uri):
        mlflow.set_experiment("source")
        with mlflow.start_run():
            tracking.log_model(src, np.zeros((2, 8, 8, 1), dtype="float32"), "digits-0-4")

    bad = config("models:/digits-0-4@champion")
    prepare(bad)
    augment(bad)
    with pytest.raises(ConfigError):
        train(bad, OmegaConf.to_yaml(OmegaConf.structured(bad)), OmegaConf.to_container(OmegaConf.structured(bad)))
    client = mlflow.MlflowClient(uri)
    assert client.get_experiment_by_name("transfer") is None  # no run opened (not even the experiment)

    cfg = config("models:/digits-0-4@challenger")
    out = train(cfg, OmegaConf.to_yaml(OmegaConf.structured(cfg)), OmegaConf.to_container(OmegaConf.structured(cfg)))
    tags = client.get_run(out["run"]["run_id"]).data.tags
    assert tags["model.init_from"] == "models:/digits-0-4@challenger"
    assert tags["model.init_from.version"] == "1"
    assert tags["model.init_from.layers_copied"] == "4"  # conv_0, conv_1, dense_head, classifier
    assert tags["model.init_from.layers_skipped"] == "none"
    info = json.loads((work / "reports" / "train.json").read_text())
    assert info["warm_start"] == {
        "init_from": "models:/digits-0-4@challenger",
        "version": "1",
        "layers_copied": ["conv_0", "conv_1", "dense_head", "classifier"],
        "layers_skipped": {},
    }
    assert "transfer" in tags["techniques"]
