"""The debug pipeline through real DVC into the embedded sqlite store (no server), read back
with MlflowClient. This run turns system metrics off and names its own experiment, and carries
a secret in its environment and in its run name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.pipeline_run import (
    PipelineRun,
    check_logged_run,
    check_registered_model_predicts_like_local,
    run_pipeline,
)
from helpers.processes import in_process
from helpers.sandbox import copy_project

pytestmark = pytest.mark.slow

SECRET_VAR = "GAPLINE_E2E_API_TOKEN"
SECRET = "tok-e2e-5b1f0c9a77"
EXPERIMENT = "gapline-local-e2e"


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    project = copy_project(tmp_path_factory.mktemp("tracking-local") / "repo")
    return run_pipeline(
        project,
        f"sqlite:///{project / 'mlflow.db'}",
        [f"tracking.experiment={EXPERIMENT}", "tracking.system_metrics=false", f"tracking.run_name=debug-{SECRET}"],
        env={SECRET_VAR: SECRET},
    )


def test_local_store_run_holds_params_tags_metrics_artifacts_model_datasets(
    local_run: PipelineRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_VAR, SECRET)  # so the expected params are redacted the same way
    got = check_logged_run(local_run, experiment=EXPERIMENT, system_metrics=False)
    run_ = got["run"]
    assert str(local_run.project) in run_.info.artifact_uri  # artifacts in the repo, no server
    assert (local_run.project / "mlflow.db").is_file()


def test_secret_env_value_is_never_logged(local_run: PipelineRun, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from helpers.pipeline_run import artifact_paths

    client = MlflowClient(tracking_uri=local_run.uri)
    run_ = client.get_run(local_run.run_id)
    assert SECRET in local_run.read("params.yaml")  # the user's own file has it ...
    assert run_.info.run_name == "debug-***"  # ... MLflow does not
    for key, value in [*run_.data.params.items(), *run_.data.tags.items()]:
        assert SECRET not in key + value and SECRET_VAR not in key, key
    for rel in artifact_paths(client, local_run.run_id):
        if rel.endswith((".yaml", ".lock", ".json", ".md", ".csv")):
            text = Path(client.download_artifacts(local_run.run_id, rel, str(tmp_path))).read_text()
            assert SECRET not in text, rel
    version = client.get_model_version_by_alias("gapline", "challenger")
    logged_model = client.get_logged_model(version.source.removeprefix("models:/"))
    assert logged_model.params["tracking.run_name"] == "debug-***"
    assert all(SECRET not in v for v in [*logged_model.params.values(), *version.tags.values()])


def test_registry_model_predicts_like_the_local_model(local_run: PipelineRun) -> None:
    check_registered_model_predicts_like_local(local_run)


def test_evaluate_against_another_store_warns_once_and_skips(local_run: PipelineRun, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    before = local_run.read("reports/metrics.json")
    proc = in_process(["gapline", "evaluate"], local_run.project, {"MLFLOW_TRACKING_URI": other})
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, proc.stderr
    assert local_run.run_id in warnings[0] and str(tmp_path / "other.db") in warnings[0]
    assert "not logging evaluation to MLflow" in warnings[0]
    assert not (tmp_path / "other.db").exists()
    assert local_run.read("reports/metrics.json") == before  # evaluation itself still ran
    assert "test accuracy" in proc.stdout
    assert os.environ.get("MLFLOW_TRACKING_URI") != other
