"""One ``debug`` pipeline run through DVC, and the checks every logged pipeline run must pass
whichever store it landed in."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gapline
from gapline import tracking
from gapline.config import provenance
from gapline.config.checks import from_container
from gapline.evaluate.curves import read_curves
from gapline.models.regularization import technique_label
from helpers.processes import gapline_in_process, in_process

PER_EPOCH = (
    "loss", "accuracy", "val_loss", "val_accuracy", "train_eval_loss", "train_eval_accuracy",
    "gap_loss", "gap_accuracy", "learning_rate",
)
FINAL_FROM_METRICS_JSON = (
    "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
    "gap_accuracy_val", "gap_accuracy_test", "gap_loss_val", "gap_loss_test",
    "best_epoch", "onset_epoch", "epochs_run",
)
ARTIFACTS = {
    "config/params.yaml",
    "plots/confusion_matrix.png",
    "plots/gap_curve.png",
    "plots/learning_curves.png",
    "plots/reliability.png",
    "reports/breakdown.json",
    "reports/diagnosis.md",
    "reports/dvc.lock",
    "reports/metrics.json",
}
VERSION_TAGS = ("test_accuracy", "val_accuracy", "gap_accuracy_test", "gap_accuracy_val")


@dataclass
class PipelineRun:
    """One ``gapline params experiment=debug ...`` + ``dvc repro`` and what it left behind."""

    project: Path
    uri: str
    overrides: list[str]
    wall_seconds: float
    record: dict[str, Any] = field(default_factory=dict)
    output: str = ""

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    def read(self, rel: str) -> str:
        return (self.project / rel).read_text(encoding="utf-8")

    def json(self, rel: str) -> Any:
        return json.loads(self.read(rel))


def run_pipeline(project: Path, uri: str, overrides: list[str], env: dict[str, str] | None = None) -> PipelineRun:
    env = {"MLFLOW_TRACKING_URI": uri, **(env or {})}
    gapline_in_process(["params", "experiment=debug", *overrides], project)
    start = time.perf_counter()
    proc = in_process(["dvc", "repro"], project, env)
    wall = time.perf_counter() - start
    out = PipelineRun(project, uri, overrides, wall, output=proc.stdout + proc.stderr)
    out.record = out.json("reports/mlflow_run.json")
    return out


def _history(p: PipelineRun) -> dict[str, list[float]]:
    return read_curves(p.project / "dvclive")


def artifact_paths(client: Any, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        out |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def check_logged_run(p: PipelineRun, *, experiment: str, system_metrics: bool) -> dict[str, Any]:
    """Read the pipeline's run back from its store and check everything the run must hold.

    Returns what was read, for further test-specific checks.
    """
    import pytest
    import yaml
    from mlflow import MlflowClient


    client = MlflowClient(tracking_uri=p.uri, registry_uri=p.uri)
    run_ = client.get_run(p.run_id)
    data = run_.data
    assert run_.info.status == "FINISHED", run_.info.status
    assert "error" not in data.tags
    assert client.get_experiment(run_.info.experiment_id).name == experiment
    assert p.record["tracking_uri"] == tracking.canonical_uri(p.uri, p.project)

    # Params: the whole resolved config, flattened with dotted keys.
    cfg_dict = yaml.safe_load(p.read("params.yaml"))
    expected_params, cut = tracking.param_values(cfg_dict)
    assert not cut
    assert data.params == expected_params
    assert data.params["train.epochs"] == "3"
    assert data.params["regularization.early_stopping.patience"] == str(
        cfg_dict["regularization"]["early_stopping"]["patience"]
    )

    # Tags.
    meta = p.json("data/prepared/meta.json")
    cfg = from_container(cfg_dict)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=p.project, capture_output=True, text=True).stdout.strip()
    tags = data.tags
    assert tags["git.commit"] == head
    assert tags["git.dirty"] in ("true", "false")
    assert tags["data.fingerprint"] == meta["fingerprint"]
    assert tags["data.source"] == meta["source"]
    assert len(tags["dvc.lock.md5"]) == 32
    final_stages = provenance.dvc_stage_digests(p.project / "dvc.lock", skip=("evaluate",))
    assert set(final_stages) == {"dvc.stage.config", "dvc.stage.prepare", "dvc.stage.augment", "dvc.stage.train"}
    for key, value in final_stages.items():
        assert tags[key] == value, key
    assert tags["keras.backend"] == "tensorflow"
    assert tags["device"] == "CPU" or tags["device"].startswith("GPU: ")
    assert tags["gapline.version"] == gapline.__version__
    assert tags["techniques"] == technique_label(cfg) == "l2+dropout+early_stopping"
    assert tags["diagnosis"] in ("underfitting", "good fit", "overfitting")

    # Per-epoch metrics: every epoch of every curve, equal to DVCLive's curves.
    history = _history(p)
    epochs = int(p.json("reports/train.json")["epochs_run"])
    for key in PER_EPOCH:
        points = client.get_metric_history(p.run_id, key)
        assert [m.step for m in points] == list(range(1, epochs + 1)), key
        assert [m.value for m in points] == pytest.approx(history[key], rel=1e-4, abs=1e-6), key

    # Final metrics.
    metrics = p.json("reports/metrics.json")
    for key in FINAL_FROM_METRICS_JSON:
        name = f"final_{key}" if key in history else key  # val_loss/val_accuracy are curves too
        assert data.metrics[name] == pytest.approx(metrics[key], abs=1e-6), key
        assert len(client.get_metric_history(p.run_id, name)) == 1, name
    train_info = p.json("reports/train.json")
    assert data.metrics["param_count"] == train_info["params"] > 0
    assert data.metrics["train_wall_seconds"] > 0
    assert data.metrics["samples_per_second"] > 0
    assert data.metrics["epochs_run"] == epochs == 3

    # Artifacts (the model is a LoggedModel of its own, checked below).
    curves = {f.relative_to(p.project).as_posix() for f in (p.project / "dvclive").rglob("*") if f.is_file()}
    assert "dvclive/plots/metrics/gap/headline.tsv" in curves and "dvclive/metrics.json" in curves
    assert artifact_paths(client, p.run_id) == ARTIFACTS | curves  # DVCLive's files, as the run ends
    with tempfile.TemporaryDirectory() as tmp:
        logged = Path(client.download_artifacts(p.run_id, "config/params.yaml", tmp))
        assert logged.read_text(encoding="utf-8") == tracking.redact(p.read("params.yaml"))

    # Datasets as run inputs.
    inputs = {
        d.dataset.name: (d.dataset.digest, {t.key: t.value for t in d.tags})
        for d in run_.inputs.dataset_inputs
    }
    contexts = {"train": "training", "val": "validation", "test": "test"}
    assert set(inputs) == {f"{meta['source']}-{s}" for s in contexts}
    for split, context in contexts.items():
        digest, input_tags = inputs[f"{meta['source']}-{split}"]
        fingerprint = meta["fingerprints"][split]
        assert digest == fingerprint.removeprefix("sha256:")[:32]
        assert input_tags["mlflow.data.context"] == context
        assert input_tags["fingerprint"] == fingerprint

    # The model: Keras flavor, signature, input example; registered, alias, version tags.
    import mlflow

    name = cfg_dict["tracking"]["registered_model"]
    version = client.get_model_version_by_alias(name, "challenger")
    assert str(version.version) == str(p.record["model_version"])
    assert version.run_id == p.run_id
    for key in VERSION_TAGS:
        assert float(version.tags[key]) == pytest.approx(metrics[key], abs=1e-6), key
    assert [o.model_id for o in run_.outputs.model_outputs] == [version.source.removeprefix("models:/")]
    local = download_registered_model(p, f"models:/{name}@challenger")
    info = mlflow.models.Model.load(local)
    example = info.load_input_example(local)
    assert "keras" in info.flavors and "python_function" in info.flavors
    # the served form: the digits as scikit-learn hands them out, (n, 8, 8) float64 0..16
    shape = tuple(meta["input_shape"])[:-1] if meta["source"] == "digits" else tuple(meta["input_shape"])
    assert info.signature.inputs.inputs[0].shape == (-1, *shape)
    assert str(info.signature.inputs.inputs[0].type) == "float64"
    assert info.signature.outputs.inputs[0].shape == (-1, len(meta["class_names"]))
    assert example is not None and tuple(example.shape[1:]) == shape
    assert info.metadata["gapline_input"]["shape"] == list(shape)
    assert version.description == info.metadata["gapline_input"]["description"]

    # System metrics: sampled when on, absent when off.
    system = sorted(k for k in data.metrics if k.startswith("system/"))
    if system_metrics:
        assert "system/cpu_utilization_percentage" in system
        assert "system/system_memory_usage_megabytes" in system
    else:
        assert system == []
    return {"run": run_, "client": client, "metrics": metrics, "version": version, "meta": meta}


@contextlib.contextmanager
def mlflow_uri(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking (and so registry) URI set to ``uri`` for a block.

    Resolving ``models:/<name>@<alias>`` always goes through the process-wide registry URI
    (MLflow ignores ``registry_uri=`` there), so tests that load registry models need this.
    """
    import mlflow

    env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # back to $MLFLOW_TRACKING_URI, which this also unset
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env


def download_registered_model(p: PipelineRun, model_uri: str) -> str:
    """A registry model URI resolved through ``p``'s store and downloaded to a temp folder."""
    import mlflow

    dst = tempfile.mkdtemp(prefix="registry-model-", dir=p.project.parent)
    with mlflow_uri(p.uri):
        return mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst)


def check_registered_model_predicts_like_local(p: PipelineRun) -> None:
    """The registered challenger, downloaded through ``p``'s store and loaded with pyfunc, gives
    the local model's classes on the test split, fed as a client has it: scikit-learn's
    load_digits().images (0..16), while the split stores 0..240 uint8 (n, 8, 8, 1)."""
    import keras
    import mlflow
    import numpy as np

    x_test = np.load(p.project / "data/prepared/test/x.npy")
    served = x_test[..., 0] / 15.0
    local = keras.saving.load_model(p.project / "models/model.keras")
    expected = np.argmax(local.predict(x_test, verbose=0), axis=1)
    registered = mlflow.pyfunc.load_model(download_registered_model(p, "models:/gapline@challenger"))
    np.testing.assert_array_equal(np.argmax(np.asarray(registered.predict(served)), axis=1), expected)
