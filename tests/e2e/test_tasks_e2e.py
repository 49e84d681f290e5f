"""Every task through the real pipeline: ``dvc repro`` → an MLflow run with the task's
metrics and gaps → a registered model that ``mlflow.pyfunc`` loads and that predicts in the
user's units; and ``gapline retrain`` promoting on a lower-is-better metric (RMSE).
Multiclass (the default digits) is covered the same way by test_pipeline_e2e.py and
test_tracking_local.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from helpers.processes import gapline_in_process
from helpers.tables import mixed_table

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, check: bool = True):
    """``dvc ...`` in this process, its stages too (no Python start per stage)."""
    from helpers.processes import in_process

    return in_process(args, cwd, {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}, check)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.sandbox import copy_project

    return copy_project(tmp_path_factory.mktemp("tasks") / "repo")


def _client(project: Path):
    from helpers.project_store import local_client

    return local_client(project)


def _repro(project: Path, *overrides: str) -> tuple[dict, dict]:
    gapline_in_process(["params", *overrides], project)
    _run(["dvc", "repro"], project)
    return json.loads((project / "reports/metrics.json").read_text()), json.loads((project / "reports/mlflow_run.json").read_text())


def _pyfunc(project: Path, record: dict, x: Any) -> np.ndarray:
    """The registered version's predictions through mlflow.pyfunc, as a serving client sees them.
    The process-wide URI is put back afterwards: later modules on this test process read
    their own stores (a registry URI left here once sent them to this one)."""
    import mlflow

    from helpers.pipeline_run import mlflow_uri

    with mlflow_uri(f"sqlite:///{project / 'mlflow.db'}"):
        model = mlflow.pyfunc.load_model(f"models:/{record['registered_model']}/{record['model_version']}")
    if isinstance(x, pd.DataFrame):
        return np.asarray(model.predict(x))
    return np.asarray(model.predict(np.asarray(x, dtype=np.float64)))  # a client's numbers: float64


def _test_split(project: Path) -> tuple[np.ndarray, np.ndarray]:
    return np.load(project / "data/prepared/test/x.npy"), np.load(project / "data/prepared/test/y.npy")


def _curve(project: Path, run_id: str, key: str) -> list[int]:
    return [m.step for m in _client(project).get_metric_history(run_id, key)]


def test_binary_breast_cancer(project: Path) -> None:
    from gapline.evaluate import scoring

    metrics, record = _repro(project, "experiment=breast_cancer_overfit", "train.epochs=3")
    for key in ("test_auc", "test_pr_auc", "test_accuracy", "test_f1", "test_ece", "gap_auc_test", "gap_ece_val", "gap_loss_val"):
        assert key in metrics, key
    assert not any("rmse" in k for k in metrics)
    run = _client(project).get_run(record["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["task"] == "binary"
    assert _curve(project, record["run_id"], "gap_auc") == [1, 2, 3]
    assert _curve(project, record["run_id"], "gap_ece") == [1, 2, 3]
    assert run.data.metrics["test_auc"] == pytest.approx(metrics["test_auc"], abs=1e-6)
    plots = {p.name for p in (project / "reports/plots").iterdir()}
    assert plots == {"learning_curves.png", "gap_curve.png", "confusion_matrix.png", "roc_pr.png", "reliability.png"}
    x, y = _test_split(project)
    probs = _pyfunc(project, record, x)
    assert probs.shape == (len(x), 1) and np.all((probs >= 0) & (probs <= 1))
    assert scoring.roc_auc(y, probs[:, 0]) == pytest.approx(metrics["test_auc"], abs=1e-5)
    shown = _run(["dvc", "plots", "show", "--json"], project)
    assert '"errors"' not in shown.stdout, shown.stdout[:2000]


def test_multilabel_csv(project: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 6))
    labels = np.stack([(x[:, 0] > 0), (x[:, 1] + x[:, 2] > 0), (x[:, 3] > 0.5)], axis=1).astype(int)
    rows = [",".join(f"{v:.4f}" for v in xi) + "," + ",".join(str(v) for v in li) for xi, li in zip(x, labels)]
    (project / "data/raw").mkdir(parents=True, exist_ok=True)
    (project / "data/raw/tags.csv").write_text("f0,f1,f2,f3,f4,f5,cat,dog,bird\n" + "\n".join(rows) + "\n")
    metrics, record = _repro(
        project, "data=csv", "data.path=data/raw/tags.csv", "data.label_columns=[cat,dog,bird]", "experiment=debug"
    )
    for key in ("test_auc", "test_subset_accuracy", "test_micro_f1", "test_macro_f1", "test_ece", "gap_auc_test"):
        assert key in metrics, key
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    assert meta["task"] == "multilabel" and meta["class_names"] == ["cat", "dog", "bird"]
    run = _client(project).get_run(record["run_id"])
    assert run.data.tags["task"] == "multilabel"
    assert _curve(project, record["run_id"], "gap_auc") == [1, 2, 3]
    assert {p.name for p in (project / "reports/plots").iterdir()} == {
        "learning_curves.png", "gap_curve.png", "per_label.png", "reliability.png"
    }
    breakdown = json.loads((project / "reports/breakdown.json").read_text())
    assert [row["label"] for row in breakdown] == ["cat", "dog", "bird"]
    rows = pd.read_csv(project / "data/raw/tags.csv").drop(columns=["cat", "dog", "bird"])
    assert _pyfunc(project, record, rows).shape == (len(rows), 3)  # a table is served as its raw rows


def test_a_mixed_table_from_raw_csv_to_a_served_prediction(project: Path) -> None:
    """Text categories, an integer-coded category and a number with 30 % empty cells: the
    pipeline trains on them as they come, and the registered model answers raw rows through
    mlflow.pyfunc and `mlflow models serve`, an unseen category included."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from helpers.pipeline_run import mlflow_uri
    from helpers.serving import models_serve

    table = mixed_table(300, seed=2)
    (project / "data/raw").mkdir(parents=True, exist_ok=True)
    table.to_csv(project / "data/raw/shop.csv", index=False)
    metrics, record = _repro(
        project, "data=csv", "data.path=data/raw/shop.csv", "data.columns.drop=[id]", "data.columns.categorical=[plan]",
        "experiment=debug", "train.epochs=6", "task.breakdown_by=city",
    )
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    assert [(c["name"], c["kind"]) for c in meta["columns"]] == [
        ("city", "categorical"), ("income", "numeric"), ("member", "categorical"), ("plan", "categorical"), ("noise", "numeric")
    ]
    assert meta["columns"][1]["indicator"] is True and meta["task"] == "binary"
    assert "gap_accuracy_test" in metrics
    breakdown = json.loads((project / "reports/breakdown.json").read_text())
    by_city = [row for row in breakdown if row.get("column") == "city"]
    assert {row["category"] for row in by_city} == {"east", "north", "south", "west"}
    assert sum(row["support"] for row in by_city) == meta["counts"]["test"] and all("auc" in row for row in by_city)
    assert [row["class"] for row in breakdown if "class" in row] == ["buy", "pass"]  # the per-class rows stay first
    uri = f"models:/{record['registered_model']}/{record['model_version']}"
    with mlflow_uri(f"sqlite:///{project / 'mlflow.db'}"):
        info = mlflow.models.get_model_info(uri)
        model = mlflow.pyfunc.load_model(uri)
    inputs = {c["name"]: c for c in info.signature.inputs.to_dict()}
    assert set(inputs) == {"city", "income", "member", "plan", "noise"}
    assert inputs["city"]["type"] == "string" and inputs["plan"]["type"] == "long" and inputs["income"]["required"] is False
    raw = table.drop(columns=["id", "label"]).head(5).copy()
    raw.loc[0, "city"] = "atlantis"  # never seen: the out-of-vocabulary bucket, not an error
    raw.loc[1, "income"] = None
    out = np.asarray(model.predict(raw))
    assert out.shape == (5, 1) and np.all((out >= 0) & (out <= 1))
    with pytest.raises(MlflowException, match="input lacks the column city"):
        model.predict(raw.drop(columns=["city"]))

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    with models_serve(uri, env, project, project / "serve.log") as url:
        split = json.loads(raw.to_json(orient="split", index=False))
        answer = requests.post(f"{url}/invocations", json={"dataframe_split": split}, timeout=60)
        assert answer.status_code == 200, answer.text
        served = [list(row.values()) for row in answer.json()["predictions"]]  # a frame in, a frame out: one dict per row
        assert np.allclose(np.asarray(served, dtype=float).reshape(-1), out.reshape(-1), atol=1e-6)
        records = json.loads(raw.to_json(orient="records"))
        assert requests.post(f"{url}/invocations", json={"dataframe_records": records}, timeout=60).status_code == 200
        refused = requests.post(f"{url}/invocations", json={"dataframe_records": [{k: v for k, v in r.items() if k != "member"} for r in records]}, timeout=60)
        assert refused.status_code == 400 and "input lacks the column member" in refused.text, refused.text


def _retrain(project: Path, *overrides: str):
    from helpers.processes import retrain_in_process

    return retrain_in_process(["retrain", "experiment=diabetes_regularized", "retrain.max_relative_gap=10", *overrides], project)


def test_regression_diabetes_and_retrain_promotes_on_lower_rmse(project: Path) -> None:
    """The regression pipeline runs inside retrain (params, dvc repro, judge, promote): the
    first challenger becomes champion; a longer training has a lower test RMSE and replaces it."""
    from gapline.evaluate import scoring

    first = _retrain(project, "train.epochs=2")
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads((project / "reports/retrain.json").read_text())
    assert report["decision"] == "promoted" and report["metric"] == "test_rmse"
    metrics = json.loads((project / "reports/metrics.json").read_text())
    for key in ("test_rmse", "test_mae", "test_r2", "gap_rmse_test", "gap_mae_val", "gap_loss_test"):
        assert key in metrics, key
    assert not any("accuracy" in k or "ece" in k for k in metrics)
    record = json.loads((project / "reports/mlflow_run.json").read_text())
    run = _client(project).get_run(record["run_id"])
    assert run.data.tags["task"] == "regression"
    assert _curve(project, record["run_id"], "gap_rmse") == [1, 2]
    assert {p.name for p in (project / "reports/plots").iterdir()} == {"learning_curves.png", "gap_curve.png", "regression.png"}
    # served predictions are in the target's units (disease progression, 25..346), not standardized
    x, y = _test_split(project)
    pred = _pyfunc(project, record, x)
    assert pred.shape == (len(x), 1)
    assert scoring.scores("regression", y, pred, ["rmse"])["rmse"] == pytest.approx(metrics["test_rmse"], rel=1e-5)
    assert 25 < float(pred.mean()) < 346

    second = _retrain(project, "train.epochs=12")
    assert second.returncode == 0, second.stdout + second.stderr
    report = json.loads((project / "reports/retrain.json").read_text())
    assert report["decision"] == "promoted", report["reason"]
    assert report["challenger"]["score"] < report["champion"]["score"]  # lower RMSE wins
    assert "<= champion v" in report["reason"] and "test_rmse" in report["reason"]
