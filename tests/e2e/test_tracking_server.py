"""The debug pipeline through real DVC into a real ``mlflow server`` the tests start on
127.0.0.1 (sqlite backend, proxied artifacts), read back with MlflowClient, then shown in the
MLflow UI by headless Chromium. This run keeps every tracking default (system metrics on)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers.browser import Shot, chromium, screenshots
from helpers.mlflow_server import MlflowServer
from helpers.pipeline_run import (
    PipelineRun,
    check_logged_run,
    check_registered_model_predicts_like_local,
    run_pipeline,
)
from helpers.processes import free_port, in_process
from helpers.sandbox import copy_project

pytestmark = pytest.mark.slow

EXPERIMENT = "gapline-debug"  # what experiment=debug sets
# Set to a folder to keep the UI screenshots (docs/mlflow-*.png were made this way).
SCREENSHOT_ENV = "GAPLINE_UI_SCREENSHOTS"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def server_run(server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    project = copy_project(tmp_path_factory.mktemp("tracking-server") / "repo")
    return run_pipeline(project, server.url, [])


def test_server_run_holds_params_tags_metrics_artifacts_model_datasets(
    server: MlflowServer, server_run: PipelineRun
) -> None:
    got = check_logged_run(server_run, experiment=EXPERIMENT, system_metrics=True)
    run_ = got["run"]
    # Artifacts went through the server's proxy into its artifact destination, not the repo.
    assert run_.info.artifact_uri.startswith("mlflow-artifacts:")
    stored = {p.name for p in (server.root / "art").rglob("*") if p.is_file()}
    assert {"gap_curve.png", "params.yaml", "MLmodel", "input_example.json"} <= stored
    assert not (server_run.project / "mlflow.db").exists() and not (server_run.project / "mlruns").exists()


def test_registry_model_from_server_predicts_like_the_local_model(server_run: PipelineRun) -> None:
    check_registered_model_predicts_like_local(server_run)


def test_mlflow_ui_shows_the_run_and_its_gap_accuracy(
    server: MlflowServer, server_run: PipelineRun, tmp_path: Path
) -> None:
    """Headless Chromium opens the run in the MLflow UI the server serves, finds it and its
    gap metrics (table and per-epoch chart), and screenshots both pages."""
    if chromium() is None:
        pytest.skip("no Chromium: `make setup` installs Debian's chromium package when run as root")
    from mlflow import MlflowClient

    run_ = MlflowClient(tracking_uri=server.url).get_run(server_run.run_id)
    page = f"{server.url}/#/experiments/{run_.info.experiment_id}/runs/{server_run.run_id}"
    gap_rows = "document.body.innerText.includes('gap_accuracy_test')"
    charts = "document.querySelectorAll('.js-plotly-plot').length >= 2"
    overview, curves = screenshots(
        [
            Shot(page, tmp_path / "mlflow-run.png", (run_.info.run_name, "gap_accuracy", "Finished"),
                 search="gap", settle_js=gap_rows),
            Shot(f"{page}/model-metrics", tmp_path / "mlflow-gap-curves.png", ("Model metrics",),
                 search="gap", settle_js=charts),
        ]
    )
    assert server_run.run_id in overview and "gapline" in overview  # the registered model
    assert "digits-train" in overview  # a dataset input
    for name in ("gap_accuracy", "gap_loss", "gap_accuracy_val", "gap_loss_test"):
        assert name in overview and name in curves, name
    for png in (tmp_path / "mlflow-run.png", tmp_path / "mlflow-gap-curves.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 30_000, png
    if os.environ.get(SCREENSHOT_ENV):
        target = Path(os.environ[SCREENSHOT_ENV])
        target.mkdir(parents=True, exist_ok=True)
        for png in (tmp_path / "mlflow-run.png", tmp_path / "mlflow-gap-curves.png"):
            shutil.copyfile(png, target / png.name)


def test_unreachable_server_stops_train_with_one_line(server_run: PipelineRun) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    proc = in_process(["gapline", "train"], server_run.project, {"MLFLOW_TRACKING_URI": dead}, check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not reachable" in errors[0] and dead in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
