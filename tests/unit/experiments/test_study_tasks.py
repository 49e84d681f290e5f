"""Everything downstream of a trial follows the task (issue #13): the study table and its
direction, the classical baselines per task, the learning curve, the sweep's summary and the
command lines. Pure functions on hand-made rows, plus one tiny study per tabular task."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gapline.experiments.study.table import headline_of, read_csv, row_keys, summarize, table_csv, table_markdown, task_of

REPO = Path(__file__).resolve().parents[3]


def _job(arm: str, seed: int, task: str, head: float, gap: float, **extra: Any) -> dict[str, Any]:
    name = {"multiclass": "accuracy", "binary": "auc", "multilabel": "auc", "regression": "rmse"}[task]
    return {
        "job": f"{arm}-s{seed}", "arm": arm, "kind": "arm", "seed": seed, "techniques": arm, "task": task,
        f"test_{name}": head, f"val_{name}": head, f"train_{name}": head, f"gap_{name}_test": gap,
        f"gap_{name}_val": gap, "gap_loss_test": 0.1, "onset_epoch": 2, "best_epoch": 2, "epochs_run": 3,
        "params": 100, "train_seconds": 1.0, **extra,
    }


def _cells(md: str) -> tuple[list[str], dict[str, list[str]]]:
    lines = md.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return header, rows


# --------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------


def test_regression_table_sorts_lowest_rmse_first_in_the_targets_units() -> None:
    jobs = [_job("l2", 1, "regression", 60.0, 4.0), _job("l2", 2, "regression", 62.0, 6.0),
            _job("dropout", 1, "regression", 55.25, -1.5), _job("baseline", 1, "regression", 70.0, 20.0)]
    classical = [{"arm": "ridge (classical)", "kind": "classical", "task": "regression",
                  "test_rmse": 58.0, "gap_rmse_test": 2.0, "train_seconds": 0.01}]
    table = summarize(jobs, classical)
    assert [r["technique"] for r in table] == ["dropout", "ridge (classical)", "l2", "baseline"]
    assert table[0]["task"] == "regression" and table[2]["test_rmse_mean"] == pytest.approx(61.0)
    header, rows = _cells(table_markdown(table))
    assert header == ["technique", "test RMSE (± 95 % CI)", "vs baseline (paired, Holm p)", "RMSE gap (test−train)",
                      "loss gap (test−train)", "onset epoch", "params", "train time s"]  # no ECE: not a classifier
    assert (rows["dropout"][1], rows["dropout"][3]) == ("55.2", "-1.5")  # units, not percent; one seed: no CI
    assert rows["l2"][1] == "61.0 ± 12.7"  # t(0.975, 1) × 1.41 / √2
    assert rows["l2"][2] == "-10.0"  # its one seed paired with the baseline's: lower RMSE, no test with one pair
    assert rows["ridge (classical)"][4] == "–"
    fields = next(csv.reader(io.StringIO(table_csv(table))))
    assert fields[:6] == ["technique", "runs", "techniques", "test_rmse_mean", "test_rmse_std", "test_rmse_ci"]
    assert "test_accuracy_mean" not in fields and "gap_ece_test_mean" not in fields


def test_binary_table_shows_auc_percent_and_the_ece_gap() -> None:
    jobs = [_job("a", 1, "binary", 0.90, 0.05, gap_ece_test=0.02), _job("b", 1, "binary", 0.95, 0.03, gap_ece_test=0.01)]
    classical = [{"arm": "svc_rbf (classical)", "kind": "classical", "task": "binary", "test_auc": 0.93, "gap_auc_test": 0.04}]
    table = summarize(jobs, classical)
    assert [r["technique"] for r in table] == ["b", "svc_rbf (classical)", "a"]  # highest AUC first
    header, rows = _cells(table_markdown(table))
    assert header[1:5] == ["test AUC % (± 95 % CI)", "AUC gap (train−test) pts", "loss gap (test−train)", "ECE gap (test−train) pts"]
    assert rows["b"][1:5] == ["95.0", "3.0", "0.100", "1.0"]
    assert rows["svc_rbf (classical)"][4] == "–"  # no probabilities: no calibration error
    assert {"test_auc_mean", "gap_ece_test_mean"} <= set(next(csv.reader(io.StringIO(table_csv(table)))))


def test_multiclass_table_adds_the_ece_gap_only_where_rows_have_it() -> None:
    plain = _cells(table_markdown(summarize([_job("a", 1, "multiclass", 0.9, 0.05)])))[0]
    assert plain == ["technique", "test accuracy % (± 95 % CI)", "accuracy gap (train−test) pts", "loss gap (test−train)",
                     "onset epoch", "params", "train time s"]
    header, rows = _cells(table_markdown(summarize([_job("a", 1, "multiclass", 0.9, 0.05, gap_ece_test=0.031)])))
    assert header[4] == "ECE gap (test−train) pts" and rows["a"][4] == "3.1"


def test_the_task_is_read_from_the_row_or_from_its_metric_names() -> None:
    assert task_of({"task": "multilabel", "test_auc": 0.5}) == "multilabel"
    assert task_of({"test_rmse_mean": 3.0}) == "regression"
    assert task_of({"test_auc": 0.5, "test_pr_auc": 0.5}) == "binary"
    assert task_of({"test_auc": 0.5, "test_subset_accuracy": 0.5}) == "multilabel"
    assert task_of({"test_accuracy": 0.9}) == "multiclass"  # a job cached before tasks existed
    assert headline_of({"task": "regression"}) == "rmse"
    assert "gap_ece_test" in row_keys("multilabel") and "gap_ece_test" not in row_keys("regression")


def test_the_committed_digits_table_renders_again_from_its_csv() -> None:
    """reports/study/study.md is what table_markdown makes of study.csv (every column, the
    comparison and the tuning included)."""
    rows = read_csv(REPO / "reports/study/study.csv")
    assert rows[0]["task"] == "multiclass"
    assert table_markdown(rows) == (REPO / "reports/study/study.md").read_text(encoding="utf-8")


def test_the_readme_block_renders_a_regression_study_in_its_units(tmp_path: Path) -> None:
    from gapline.experiments.learning_curve import rows_csv
    from helpers.project_store import docs_module

    section = docs_module("study_section")
    jobs = [_job("baseline", 1, "regression", 70.0, 20.0), _job("l2", 1, "regression", 60.0, 4.0),
            _job("dropout", 1, "regression", 65.0, 9.0)]
    classical = [{"arm": "ridge (classical)", "kind": "classical", "task": "regression", "test_rmse": 58.0, "gap_rmse_test": 2.0}]
    table = summarize(jobs, classical)
    (tmp_path / "study.md").write_text(table_markdown(table))
    (tmp_path / "study.csv").write_text(table_csv(table))
    curve = [{"train_fraction": f, "train_samples": n, "task": "regression", "test_rmse": 60.0, "gap_rmse_test": g,
              "train_rmse": 50.0, "val_rmse": 60.0, "gap_rmse_val": g, "gap_loss_val": 0.1, "epochs_run": 3, "train_seconds": 1.0}
             for f, n, g in ((0.5, 100, 30.0), (1.0, 200, 12.5))]
    (tmp_path / "learning_curve.csv").write_text(rows_csv(curve))
    block = section.render(tmp_path)
    assert "The top arm is `l2`, at a test RMSE of 60.0, 2.0 higher than `ridge (classical)`" in block
    assert "its RMSE gap is 4.0, against 20.0 for the plain MLP" in block
    assert "the RMSE gap (test−train) goes from 30.0 at 100 training samples to 12.5 at 200" in block


# --------------------------------------------------------------------------------------
# classical baselines per task, scored as the networks are
# --------------------------------------------------------------------------------------


def _splits(y_of, n: int = 90, features: int = 6, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for _i, name in enumerate(("train", "val", "test")):
        x = rng.normal(size=(n, features)) * np.arange(1, features + 1) * 10  # features on other scales
        out[name] = (x, y_of(x, rng))
    return out


@pytest.mark.parametrize(
    ("task", "y_of", "names", "head"),
    [
        ("multiclass", lambda x, r: np.digitize(x[:, 0], [-5, 5]), ["svc_rbf", "logistic_regression", "gradient_boosting"], "accuracy"),
        ("binary", lambda x, r: (x[:, 0] + r.normal(size=len(x)) * 5 > 0).astype(int), ["svc_rbf", "logistic_regression", "gradient_boosting"], "auc"),
        ("multilabel", lambda x, r: (x[:, :3] > 0).astype(int), ["logistic_regression_ovr"], "auc"),
        ("regression", lambda x, r: (3 * x[:, 0] + r.normal(size=len(x))).astype("float32"), ["ridge", "gradient_boosting"], "rmse"),
    ],
)
def test_baselines_per_task_fill_the_headline_and_its_gaps(task: str, y_of: Any, names: list[str], head: str) -> None:
    from gapline.config.tasks import FINAL_METRICS
    from gapline.experiments.study.baselines import baselines

    flat = _splits(y_of)
    rows = baselines(task, flat, classes=3, scale=True)
    assert [r["arm"] for r in rows] == [f"{n} (classical)" for n in names]
    for row in rows:
        assert row["kind"] == "classical" and row["task"] == task and row["train_seconds"] >= 0
        for split in ("train", "val", "test"):
            assert math.isfinite(row[f"{split}_{head}"]), (row["arm"], split)
        for other in ("val", "test"):
            sign = -1 if head == "rmse" else 1  # positive = overfitting, whichever way the metric points
            assert row[f"gap_{head}_{other}"] == pytest.approx(sign * (row[f"train_{head}"] - row[f"{other}_{head}"]))
        assert {k.split("_", 1)[1] for k in row if k.startswith("test_")} <= {*FINAL_METRICS[task], "top5_accuracy"}
    if task == "regression":
        assert {"test_mae", "test_r2", "gap_r2_test"} <= set(rows[0])
    if task in ("binary", "multiclass"):  # only the one with probabilities has a calibration error
        assert "test_ece" not in rows[0] and math.isfinite(rows[1]["gap_ece_test"])


def test_baseline_numbers_are_scorings_numbers() -> None:
    """Logistic regression's test AUC is gapline.evaluate.scoring's AUC of its probabilities, fit on
    standardized features (a scaler fitted on train only) when asked to scale."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from gapline.evaluate.scoring import scores
    from gapline.experiments.study.baselines import baselines

    flat = _splits(lambda x, r: (x[:, 0] + r.normal(size=len(x)) * 5 > 0).astype(int))
    row = baselines("binary", flat, scale=True)[1]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(*flat["train"])
    x, y = flat["test"]
    expected = scores("binary", y, model.predict_proba(x)[:, 1], ["auc", "ece"])
    assert row["test_auc"] == pytest.approx(expected["auc"]) and row["test_ece"] == pytest.approx(expected["ece"])


@pytest.mark.parametrize(("data", "head", "names"), [
    ("diabetes", "rmse", ["ridge (classical)", "gradient_boosting (classical)"]),
    ("breast_cancer", "auc", ["svc_rbf (classical)", "logistic_regression (classical)", "gradient_boosting (classical)"]),
])
def test_classical_baselines_on_the_built_in_tabular_sets(conf_project: Path, data: str, head: str, names: list[str]) -> None:
    from gapline.config.params import compose_config
    from gapline.experiments.study.baselines import classical_baselines

    rows = classical_baselines(compose_config(["experiment=study_debug", f"data={data}"], conf_project))
    assert [r["arm"] for r in rows] == names
    for row in rows:
        assert math.isfinite(row[f"test_{head}"]) and math.isfinite(row[f"gap_{head}_test"])
    if head == "rmse":
        assert 30 < rows[0]["test_rmse"] < 90  # disease progression, in its own units
    else:
        assert rows[0]["test_auc"] > 0.9


@pytest.mark.parametrize(("task", "head"), [("binary", "auc"), ("regression", "rmse")])
def test_classical_baselines_take_a_table_as_it_comes(tmp_path: Path, task: str, head: str) -> None:
    """Text categories and empty cells: the linear models and the SVC get the median, missing
    indicators and one-hot categories fitted on train; gradient boosting the cells themselves,
    with native categorical support, for regression too."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from gapline.config.checks import from_container
    from gapline.data.prepare import split_source
    from gapline.experiments.study import baselines as B
    from helpers.tables import mixed_table

    frame = mixed_table(600, seed=5)
    if task == "regression":  # a number to predict from the same columns: the city moves it, and so does income
        frame["label"] = frame["city"].map({"north": 10.0, "south": 0.0, "east": 5.0, "west": -5.0}) + frame["noise"]
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = from_container({"data": {"source": "csv", "path": str(tmp_path / "t.csv"), "columns": {"drop": ["id"]}},
                          "task": {"type": task}})
    rows = B.classical_baselines(cfg)
    by_arm = {r["arm"]: r for r in rows}
    boosting = by_arm["gradient_boosting (classical)"]
    assert all(math.isfinite(r[f"test_{head}"]) for r in rows)
    if task == "binary":
        assert set(by_arm) == {"svc_rbf (classical)", "logistic_regression (classical)", "gradient_boosting (classical)"}
        assert boosting["test_auc"] > 0.8 and by_arm["svc_rbf (classical)"]["test_auc"] > 0.7
    else:
        assert set(by_arm) == {"ridge (classical)", "gradient_boosting (classical)"}
        assert boosting["test_rmse"] < 2.0 and by_arm["ridge (classical)"]["test_rmse"] < 2.0  # the noise's scale
    _, meta = split_source(cfg)
    model = dict(B.models(task, True, meta.columns))["gradient_boosting (classical)"]
    assert isinstance(model, HistGradientBoostingClassifier | HistGradientBoostingRegressor)
    assert model.categorical_features == [c["kind"] == "categorical" for c in meta.columns]


# --------------------------------------------------------------------------------------
# learning curve rows and plot
# --------------------------------------------------------------------------------------


def test_curve_rows_carry_the_tasks_headline_and_the_plot_labels_it(tmp_path: Path) -> None:
    from gapline.experiments.learning_curve import curve_row, write_learning_curve

    job = _job("baseline", 1, "regression", 60.0, 5.0, train_samples=50, gap_loss_val=0.2)
    row = curve_row(0.5, job)
    assert row["test_rmse"] == 60.0 and "test_accuracy" not in row and "task" not in row  # columns only
    files = write_learning_curve([row, curve_row(1.0, {**job, "train_samples": 100})], tmp_path)
    header = files[0].read_text().splitlines()[0].split(",")
    assert header == ["train_fraction", "train_samples", "train_rmse", "val_rmse", "test_rmse",
                      "gap_rmse_val", "gap_rmse_test", "gap_loss_val", "epochs_run", "train_seconds"]
    assert files[1].stat().st_size > 0
    old = curve_row(1.0, {"test_accuracy": 0.9, "gap_accuracy_test": 0.05, "train_samples": 10})
    assert old["test_accuracy"] == 0.9 and headline_of(old) == "accuracy"  # a job cached before tasks


def test_plot_axis_labels_follow_the_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gapline.evaluate import plots

    labels: list[str] = []
    monkeypatch.setattr(plots, "save", lambda fig, path: labels.extend(ax.get_ylabel() for ax in fig.axes) or path)
    rows = [{"train_samples": n, "task": "binary", "train_auc": 1.0, "val_auc": 0.9, "test_auc": 0.9, "gap_auc_test": 0.1}
            for n in (10, 20)]
    plots.learning_curve_plot(rows, tmp_path / "lc.png")
    assert labels == ["AUC", "AUC gap"]


# --------------------------------------------------------------------------------------
# command lines and the sweep summary
# --------------------------------------------------------------------------------------


def test_evaluate_line_names_the_headline_and_its_gaps() -> None:
    from gapline.cli import headline_line

    reg = {"test_rmse": 54.2345, "gap_rmse_val": 10.12, "gap_rmse_test": 5.031, "test_mae": 40.0, "test_r2": 0.4}
    assert headline_line(reg) == "test rmse 54.23, gap on rmse (val vs train) +10.12, (test vs train) +5.031"
    acc = {"test_accuracy": 0.9, "gap_accuracy_val": 0.05, "gap_accuracy_test": -0.01}
    assert headline_line(acc) == "test accuracy 0.9000, gap on accuracy (train vs val) +0.0500, (train vs test) -0.0100"


def test_sweep_summary_of_regression_jobs_ranks_by_objective_and_reports_rmse(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from gapline import tracking
    from gapline.config.checks import from_container

    cfg = from_container({"tracking": {"enabled": True, "experiment": "unit-sweep", "system_metrics": False}})
    parent = tracking.create_parent_run(cfg.tracking, "sweep", {"gapline.mode": "sweep"})
    for seed, (objective, rmse) in enumerate(((70.0, 72.5), (55.0, 57.25))):
        job = {**_job("l2", seed, "regression", rmse, 3.5 + seed, test_mae=40.0, test_r2=0.5),
               "kind": "sweep", "objective": objective, "history": {"val_rmse": [80.0, objective]}}
        tracking.log_child_run(parent, cfg.tracking, job)
    table = tracking.finish_parent_run(parent)
    lines = table.splitlines()
    assert lines[0] == "| job | objective | test rmse | gap on rmse (val−train) | gap on rmse (test−train) | run |"
    assert lines[2].startswith("| l2-s1 | 55.0000 | 57.2500 | +4.5000 | +4.5000 |")
    run = MlflowClient().get_run(parent)
    assert run.data.metrics["best_test_rmse"] == pytest.approx(57.25) and "best_test_accuracy" not in run.data.metrics
    assert run.data.tags["task"] == "regression" and run.info.status == "FINISHED"
    children = tracking.child_runs(parent)
    assert all(c.data.tags["task"] == "regression" and "test_mae" in c.data.metrics for c in children)


# --------------------------------------------------------------------------------------
# a tiny study per tabular task (one arm, one seed, two curve points, 2 epochs)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "head", "classical"), [
    ("diabetes", "rmse", "ridge (classical)"),
    ("breast_cancer", "auc", "logistic_regression (classical)"),
    ("mixed", "auc", "gradient_boosting (classical)"),
])
def test_a_tiny_study_on_a_tabular_task(conf_project: Path, monkeypatch: pytest.MonkeyPatch, data: str, head: str, classical: str) -> None:
    from gapline.config.params import compose_config
    from gapline.experiments.study.run import run_study
    from gapline.experiments.trial_logging import _study_metrics
    from helpers.tables import mixed_table

    monkeypatch.chdir(conf_project)
    source = [f"data={data}"]
    if data == "mixed":  # a table as it comes: text categories and empty cells
        mixed_table(300, seed=6).to_csv(conf_project / "mixed.csv", index=False)
        source = ["data=csv", f"data.path={conf_project / 'mixed.csv'}", "data.columns.drop=[id]"]
    base = ["experiment=study_debug", *source, "train.epochs=2", "study.seeds=1", "study.jobs=1",
            "study.include=[baseline]", "study.fractions=[0.5,1.0]", f"study.out_dir={conf_project / 'out'}",
            "data.train_fraction=1.0"]
    cfg = compose_config(base, conf_project)
    result = run_study(cfg, base, conf_project, progress=False)
    # the curve point at 1.0 is the baseline's own run (same resolved config and seed): trained once
    assert (result.trained, len(result.results)) == (2, 3) and {r["task"] for r in result.results} == {"regression" if head == "rmse" else "binary"}
    means = [r[f"test_{head}_mean"] for r in result.table]
    assert means == sorted(means, reverse=head != "rmse")  # best first in the metric's direction
    assert classical in {r["technique"] for r in result.table}
    md = (conf_project / "out/study.md").read_text()
    assert md.splitlines()[0].startswith(f"| technique | test {'RMSE' if head == 'rmse' else 'AUC %'} (± 95 % CI) |")
    assert ("ECE gap" in md) == (head == "auc")
    curve = (conf_project / "out/learning_curve.csv").read_text().splitlines()
    assert curve[0].split(",")[2:7] == [f"train_{head}", f"val_{head}", f"test_{head}", f"gap_{head}_val", f"gap_{head}_test"]
    assert len(curve) == 3
    metrics = _study_metrics(result)
    assert f"baseline.test_{head}_mean" in metrics and f"baseline.gap_{head}_test_mean" in metrics


def test_every_sweep_objective_per_task_lower_is_better() -> None:
    """What a sweeper and the study's tuning minimize: val_nll is the log-loss without
    smoothing or penalties (a regression's val_rmse), val_error 1 − the headline score."""
    from gapline.config.schema import SweepConfig
    from gapline.config.tasks import objective

    metrics = {"val_loss": 0.5, "gap_loss_val": 0.2, "val_nll": 0.3, "val_accuracy": 0.9, "val_auc": 0.8, "val_rmse": 55.0}
    assert objective(metrics, SweepConfig("val_loss")) == 0.5
    assert objective(metrics, SweepConfig("val_loss_plus_gap", gap_penalty=2.0)) == pytest.approx(0.9)
    assert objective(metrics, SweepConfig("val_nll")) == 0.3
    assert objective(metrics, SweepConfig("val_nll"), "binary") == 0.3
    assert objective(metrics, SweepConfig("val_nll"), "regression") == 55.0
    assert objective(metrics, SweepConfig("val_error")) == pytest.approx(0.1)
    assert objective(metrics, SweepConfig("val_error"), "binary") == pytest.approx(0.2)
    assert objective(metrics, SweepConfig("val_error"), "regression") == 55.0
