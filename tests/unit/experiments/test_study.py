"""The regularization study: planning, cache keys and the summary table (pure functions), and
one real study at debug scale through the ``gapline study`` command (slow)."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gapline.config.checks import from_container
from gapline.core.errors import ConfigError
from gapline.experiments.study.plan import Job, job_key, override_value, plan, resolve, trials, tuned
from gapline.experiments.study.table import ROW_KEYS, holm, paired_p, reference_of, summarize, table_csv, table_markdown
from gapline.experiments.study.tuning import choose

REPO = Path(__file__).resolve().parents[3]

ARMS = {
    "baseline": ["regularization=none"],
    "l2": ["regularization=l2"],
    "dropout": ["regularization=dropout"],
}


def _raw(**study: Any) -> dict[str, Any]:
    return {"train": {"seed": 5}, "study": {"arms": ARMS, "seeds": 2, "fractions": [], **study}}


def _cfg(**study: Any) -> Any:
    return from_container(_raw(**study))


# --------------------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------------------


def test_plan_is_arms_times_seeds_then_curve_points_in_a_stable_order() -> None:
    cfg = _cfg(fractions=[0.25, 1.0], learning_curve_arm="l2")
    jobs = plan(cfg, ["experiment=debug"])
    assert [j.name for j in jobs] == [
        "baseline-s5", "baseline-s6", "l2-s5", "l2-s6", "dropout-s5", "dropout-s6",
        "curve-l2-f0.25-s5", "curve-l2-f1-s5",
    ]
    assert jobs[0] == Job("baseline", 5, ("experiment=debug", "regularization=none", "train.seed=5"))
    curve = jobs[-2]
    assert (curve.kind, curve.fraction, curve.seed) == ("curve", 0.25, 5)
    # base overrides first, then the arm's, then the seed and the fraction (later ones win)
    assert curve.overrides == ("experiment=debug", "regularization=l2", "train.seed=5", "data.train_fraction=0.25")
    assert all(j.kind == "arm" and j.fraction is None for j in jobs[:6])
    assert plan(cfg, ["experiment=debug"]) == jobs  # same input, same plan


def test_plan_include_picks_and_orders_the_arms() -> None:
    jobs = plan(_cfg(include=["dropout", "baseline"], seeds=1), [])
    assert [j.name for j in jobs] == ["dropout-s5", "baseline-s5"]
    assert len(plan(_cfg(seeds=3), [])) == 3 * 3


def test_plan_rejects_unknown_arms_and_an_empty_study() -> None:
    with pytest.raises(ConfigError, match=r"study\.include"):
        _cfg(include=["nope"])
    with pytest.raises(ConfigError, match=r"study\.learning_curve_arm"):
        _cfg(learning_curve_arm="nope", fractions=[0.5])
    with pytest.raises(ConfigError, match=r"study\.arms"):
        plan(from_container({"study": {"arms": {}, "fractions": []}}), [])


def test_trials_span_each_tuned_arms_grid_weakest_first_at_the_first_seed() -> None:
    cfg = _cfg(search={"l2": {"regularization.l2": [0.0, 1e-05, 0.001]},
                       "dropout": {"regularization.dropout": [0.0, 0.5], "model.hidden_units": [[64], [64, 64]]}})
    jobs = trials(cfg, ["experiment=debug"])
    assert [(j.name, j.point) for j in jobs] == [
        ("trial-l2-0", ("regularization.l2=0.0",)),
        ("trial-l2-1", ("regularization.l2=1e-05",)),
        ("trial-l2-2", ("regularization.l2=0.001",)),
        ("trial-dropout-0", ("regularization.dropout=0.0", "model.hidden_units=[64]")),  # the first key varies slowest
        ("trial-dropout-1", ("regularization.dropout=0.0", "model.hidden_units=[64,64]")),
        ("trial-dropout-2", ("regularization.dropout=0.5", "model.hidden_units=[64]")),
        ("trial-dropout-3", ("regularization.dropout=0.5", "model.hidden_units=[64,64]")),
    ]
    assert jobs[1].overrides == ("experiment=debug", "regularization=l2", "regularization.l2=1e-05", "train.seed=5")
    assert all(j.kind == "trial" and j.seed == 5 for j in jobs)
    # the arms' seeds at the chosen point (after the arm's overrides, before the seed)
    final = plan(cfg, [], {"l2": ("regularization.l2=1e-05",)})
    assert final[2] == Job("l2", 5, ("regularization=l2", "regularization.l2=1e-05", "train.seed=5"), point=("regularization.l2=1e-05",))
    assert final[0].overrides == ("regularization=none", "train.seed=5")  # untuned: as listed
    # the untuned mode: no trial, every arm as listed
    assert trials(_cfg(search=cfg.study.search, tune=False), []) == []
    assert tuned(_cfg(search={"l2": {"regularization.l2": [0.0]}}, include=["baseline", "dropout"])) == []
    assert [override_value(v) for v in (True, None, "adam", 1e-4, 3, [64, 64])] == ["true", "null", "adam", "0.0001", "3", "[64,64]"]


def _trial(arm: str, i: int, val_loss: float) -> dict[str, Any]:
    return {"arm": arm, "trial": i, "point": [f"regularization.{arm}={i}"], "val_loss": val_loss, "val_nll": val_loss,
            "task": "multiclass", "val_accuracy": 1 - val_loss, "gap_loss_val": 0.1, "job_seconds": 2.0}


def test_choose_keeps_the_lowest_objective_ties_and_nan_go_to_the_earlier_point() -> None:
    cfg = _cfg()
    records = [_trial("l2", 0, 0.5), _trial("l2", 1, 0.3), _trial("l2", 2, 0.3), _trial("l2", 3, float("nan")),
               _trial("dropout", 1, float("nan")), _trial("dropout", 0, 0.9)]
    chosen = choose(cfg, records)
    assert chosen["l2"].point == ("regularization.l2=1",) and chosen["l2"].trials == 4
    assert chosen["l2"].seconds == 8.0 and chosen["l2"].objective == 0.3 and chosen["l2"].chosen == "l2=1"
    assert chosen["dropout"].point == ("regularization.dropout=0",)  # a diverged trial (NaN) never wins
    # study.objective: val_nll by default, not val_loss, which adds the weight penalty
    penalized = [_trial("l2", 0, 0.40), {**_trial("l2", 1, 0.30), "val_loss": 0.45}]
    assert choose(cfg, penalized)["l2"].point == ("regularization.l2=1",)
    by_loss = choose(from_container(_raw(objective="val_loss")), penalized)
    assert by_loss["l2"].point == ("regularization.l2=0",)
    # val_error picks on validation accuracy; a regression's val_nll is its val_rmse
    by_error = choose(from_container(_raw(objective="val_error")),
                      [{**_trial("l2", 0, 0.5), "val_accuracy": 0.99}, _trial("l2", 1, 0.3)])
    assert by_error["l2"].point == ("regularization.l2=0",)
    regression = [{**_trial("l2", i, 0.5), "task": "regression", "val_rmse": rmse} for i, rmse in enumerate((60.0, 55.0))]
    assert choose(cfg, regression)["l2"].point == ("regularization.l2=1",)


@pytest.mark.parametrize("objective", ["val_nll", "val_loss", "val_error", "val_loss_plus_gap"])
def test_choose_reads_validation_even_when_the_test_split_disagrees(objective: str) -> None:
    """Whole trial records, test metrics included: trial 1 is better on validation, trial 0
    on test by far. Every objective picks trial 1; one that read a test metric would not."""
    def record(i: int, val: float, test: float) -> dict[str, Any]:
        split = {"val": val, "test": test, "train": 0.1}
        out = {"arm": "l2", "trial": i, "point": [f"regularization.l2={i}"], "task": "multiclass", "job_seconds": 1.0}
        for name, loss in split.items():
            out.update({f"{name}_loss": loss, f"{name}_nll": loss, f"{name}_accuracy": 1 - loss / 2})
            out[f"gap_loss_{name}"] = loss - 0.1
        return out

    cfg = from_container(_raw(objective=objective))
    assert choose(cfg, [record(0, 0.50, 0.05), record(1, 0.30, 0.90)])["l2"].point == ("regularization.l2=1",)


# --------------------------------------------------------------------------------------
# job_key: the cache key of a job
# --------------------------------------------------------------------------------------


def test_job_key_is_stable_and_sensitive_to_the_training_config_only(conf_project: Path) -> None:
    job = Job("baseline", 42, ("experiment=study_debug", "regularization=none", "train.seed=42"))
    _, cfg_dict = resolve(job, conf_project)
    key = job_key(cfg_dict)
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert job_key(resolve(job, conf_project)[1]) == key  # composed again: same key

    def changed(section: str, name: str, value: Any) -> str:
        other = {**cfg_dict, section: {**cfg_dict[section], name: value}}
        return job_key(other)

    assert changed("train", "learning_rate", 0.5) != key
    assert changed("regularization", "l2", 0.123) != key
    assert changed("data", "train_fraction", 0.9) != key
    assert changed("tracking", "experiment", "elsewhere") == key
    assert changed("tracking", "uri", "sqlite:////elsewhere.db") == key
    assert changed("study", "seeds", 7) == key
    assert changed("meta", "conf_digest", "0123456789abcdef") == key
    assert changed("train", "seed", 43) != key
    # the key is the training run, whatever the job is called: a tuned arm's first seed is its
    # winning trial; a trial at l2=0 is the baseline's run
    assert job_key(resolve(Job("renamed", 42, job.overrides, kind="trial", trial=0), conf_project)[1]) == key
    at_zero = Job("l2", 42, ("experiment=study_debug", "regularization=l2", "regularization.l2=0.0", "train.seed=42"))
    assert job_key(resolve(at_zero, conf_project)[1]) == key


def test_job_key_survives_unrelated_conf_edits_and_follows_relevant_ones(conf_project: Path) -> None:
    job = Job("baseline", 42, ("experiment=study_debug", "regularization=none", "train.seed=42"))
    key = job_key(resolve(job, conf_project)[1])
    study = conf_project / "conf/study/default.yaml"
    study.write_text(study.read_text().replace("seeds: 3", "seeds: 4") + "# an edit elsewhere\n")
    assert job_key(resolve(job, conf_project)[1]) == key
    debug = conf_project / "conf/experiment/study_debug.yaml"
    debug.write_text(debug.read_text().replace("learning_rate: 0.01", "learning_rate: 0.02"))
    assert job_key(resolve(job, conf_project)[1]) != key


# --------------------------------------------------------------------------------------
# summarize / table_markdown / table_csv
# --------------------------------------------------------------------------------------


def _result(arm: str, seed: int, test: float, kind: str = "arm", onset: int = 4, **extra: Any) -> dict[str, Any]:
    return {
        "job": f"{arm}-s{seed}", "arm": arm, "kind": kind, "seed": seed, "techniques": arm,
        "test_accuracy": test, "val_accuracy": test + 0.01, "train_accuracy": test + 0.05,
        "gap_accuracy_test": 0.05, "gap_accuracy_val": 0.04, "gap_loss_test": 0.2,
        "onset_epoch": onset, "best_epoch": 3, "epochs_run": 10, "params": 1000, "train_seconds": 2.0,
        **extra,
    }


CLASSICAL = [
    {"arm": "svc_rbf (classical)", "kind": "classical", "test_accuracy": 0.85, "val_accuracy": 0.86,
     "train_accuracy": 0.99, "gap_accuracy_test": 0.14, "gap_accuracy_val": 0.13, "train_seconds": 0.01},
]


def test_summarize_mean_std_per_arm_sorted_by_test_accuracy_with_classical_rows() -> None:
    results = [
        _result("baseline", 1, 0.80), _result("baseline", 2, 0.86),
        _result("l2", 1, 0.95), _result("l2", 2, 0.95), _result("l2", 3, 0.95),
        _result("baseline", 1, 0.99, kind="curve", fraction=1.0),  # learning curve: not a row
    ]
    table = summarize(results, CLASSICAL)
    assert [r["technique"] for r in table] == ["l2", "svc_rbf (classical)", "baseline"]
    base = table[2]
    assert base["runs"] == 2 and base["techniques"] == "baseline"
    assert base["test_accuracy_mean"] == pytest.approx(0.83)
    assert base["test_accuracy_std"] == pytest.approx(math.sqrt(0.0018))  # sample std (ddof=1)
    assert table[0]["runs"] == 3 and table[0]["test_accuracy_std"] == pytest.approx(0.0, abs=1e-12)
    classical = table[1]
    assert classical["runs"] == 1 and classical["techniques"] == "classical"
    assert classical["test_accuracy_mean"] == 0.85 and classical["test_accuracy_std"] == 0.0
    assert math.isnan(classical["gap_loss_test_mean"]) and math.isnan(classical["params_mean"])
    for row in table:
        assert {f"{k}_{s}" for k in ROW_KEYS for s in ("mean", "std")} <= set(row)


def test_summarize_ties_break_by_name_and_a_single_seed_has_zero_std() -> None:
    table = summarize([_result("zeta", 1, 0.9), _result("alpha", 1, 0.9)])
    assert [r["technique"] for r in table] == ["alpha", "zeta"]
    assert table[0]["test_accuracy_std"] == 0.0
    assert summarize([]) == []


def test_summarize_does_not_average_the_no_onset_sentinel() -> None:
    row = summarize([_result("a", 1, 0.9, onset=10), _result("a", 2, 0.9, onset=-1)])[0]
    mean = row["onset_epoch_mean"]
    assert math.isnan(mean) or mean >= 10


def test_table_markdown_columns_none_onset_and_dashes_for_missing_values() -> None:
    results = [_result("baseline", 1, 0.80, onset=-1), _result("baseline", 2, 0.86, onset=-1), _result("l2", 1, 0.95)]
    text = table_markdown(summarize(results, CLASSICAL))
    lines = text.splitlines()
    assert lines[0] == (
        "| technique | test accuracy % (± 95 % CI) | vs baseline pts (paired, Holm p) | accuracy gap (train−test) pts "
        "| loss gap (test−train) | onset epoch | params | train time s |"
    )
    assert lines[1] == "|---|---|---|---|---|---|---|---|"
    rows = {line.split(" | ")[0].lstrip("| "): [c.strip() for c in line.strip("|").split("|")] for line in lines[2:]}
    assert list(rows) == ["l2", "svc_rbf (classical)", "baseline"]
    # one seed: a mean, no interval; its one pair with the baseline: a difference, no test
    assert rows["l2"] == ["l2", "95.0", "+15.0", "5.0", "0.200", "4", "1,000", "2.0"]
    # two seeds: t(0.975, 1) = 12.706 × 4.24 / √2 = 38.1 points
    assert rows["baseline"][1:3] == ["83.0 ± 38.1", "–"]
    assert rows["baseline"][5] == "none"  # onset -1: the gap never started to grow
    assert rows["svc_rbf (classical)"] == ["svc_rbf (classical)", "85.0", "–", "14.0", "–", "–", "–", "0.0"]
    assert all(len(cells) == 8 for cells in rows.values())


def test_paired_comparison_with_the_baseline_ci_holm_and_verdicts() -> None:
    base = [0.90, 0.92, 0.91, 0.93, 0.90]
    results = [_result("baseline", s, v) for s, v in enumerate(base)]
    results += [_result("good", s, v + d) for s, (v, d) in enumerate(zip(base, [0.020, 0.022, 0.018, 0.021, 0.019]))]
    results += [_result("bad", s, v - d) for s, (v, d) in enumerate(zip(base, [0.030, 0.028, 0.031, 0.029, 0.032]))]
    results += [_result("noisy", s, v + d) for s, (v, d) in enumerate(zip(base, [0.02, -0.03, 0.01, -0.01, 0.015]))]
    results += [_result("same", s, v) for s, v in enumerate(base)]
    rows = {r["technique"]: r for r in summarize(results)}
    from scipy import stats

    diffs = [0.020, 0.022, 0.018, 0.021, 0.019]
    p_good = stats.ttest_rel([b + d for b, d in zip(base, diffs)], base).pvalue
    assert rows["good"]["delta_mean"] == pytest.approx(0.02)
    assert rows["good"]["p_value"] == pytest.approx(p_good)
    # Holm over the 4 arms compared: the i-th smallest p times (4 - i), kept monotone
    raw = sorted((rows[a]["p_value"], a) for a in ("good", "bad", "noisy", "same"))
    running = 0.0
    for i, (p, arm) in enumerate(raw):
        running = max(running, min(1.0, (4 - i) * p))
        assert rows[arm]["p_holm"] == pytest.approx(running, rel=1e-12), arm
    assert rows["good"]["p_holm"] > rows["good"]["p_value"]
    assert (rows["good"]["verdict"], rows["bad"]["verdict"], rows["noisy"]["verdict"]) == ("better", "worse", "")
    assert rows["same"]["p_value"] == 1.0 and rows["same"]["verdict"] == ""
    assert rows["baseline"]["vs"] == "" and math.isnan(rows["baseline"]["delta_mean"])
    # the CI of a mean over 5 seeds is t(0.975, 4) × std / √5
    std = np.std(base, ddof=1)
    assert rows["baseline"]["test_accuracy_ci"] == pytest.approx(stats.t.ppf(0.975, 4) * std / math.sqrt(5))
    cell = table_markdown(summarize(results)).splitlines()
    good = next(line for line in cell if line.startswith("| good |"))
    assert " better" in good and "+2.0 ± " in good


def test_holm_takes_back_a_verdict_that_the_raw_p_value_would_give() -> None:
    """One arm better at raw p = 0.028 among four compared: 4 × 0.028 > 0.05, so no verdict."""
    base = [0.90, 0.92, 0.91, 0.93, 0.90]
    diffs = [0.01, 0.03, 0.004, 0.02, 0.012]
    results = [_result("baseline", s, v) for s, v in enumerate(base)]
    results += [_result("marginal", s, v + d) for s, (v, d) in enumerate(zip(base, diffs))]
    for arm in ("same1", "same2", "same3"):
        results += [_result(arm, s, v) for s, v in enumerate(base)]
    row = {r["technique"]: r for r in summarize(results, alpha=0.05)}["marginal"]
    assert row["p_value"] == pytest.approx(0.02782, abs=1e-4) and row["p_value"] < 0.05
    assert row["p_holm"] == pytest.approx(4 * row["p_value"])
    assert row["verdict"] == ""  # better by the raw p-value, not after the correction


def test_holm_adjusts_in_step_down_order_and_keeps_nan_out_of_the_family() -> None:
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": float("nan")})
    assert adjusted["a"] == pytest.approx(0.03)  # 3 × 0.01
    assert adjusted["c"] == pytest.approx(0.06)  # 2 × 0.03
    assert adjusted["b"] == pytest.approx(0.06)  # max(1 × 0.04, 0.06): monotone
    assert math.isnan(adjusted["d"])
    assert paired_p([0.1]) != paired_p([0.1]) and paired_p([0.0, 0.0]) == 1.0 and paired_p([0.1, 0.1]) == 0.0


def test_a_transfer_arm_is_compared_with_its_scratch_arm_not_the_baseline() -> None:
    results = [_result("baseline", s, 0.9) for s in (1, 2)]
    results += [_result("scratch_5_9", s, v) for s, v in ((1, 0.80), (2, 0.82))]
    results += [_result("transfer_5_9", s, v) for s, v in ((1, 0.90), (2, 0.93))]
    rows = {r["technique"]: r for r in summarize(results)}
    assert rows["transfer_5_9"]["vs"] == "scratch_5_9"
    assert rows["transfer_5_9"]["delta_mean"] == pytest.approx(0.105)
    assert rows["scratch_5_9"]["vs"] == "" and rows["baseline"]["vs"] == ""
    assert reference_of("l2", rows, "baseline") == "baseline" and reference_of("l2", ["l2"], "baseline") is None


def test_table_csv_has_one_row_per_technique_and_every_column() -> None:
    import csv
    import io

    table = summarize([_result("baseline", 1, 0.8), _result("baseline", 2, 0.86)], CLASSICAL)
    rows = list(csv.DictReader(io.StringIO(table_csv(table))))
    assert [r["technique"] for r in rows] == ["svc_rbf (classical)", "baseline"]
    assert set(rows[0]) == {
        "technique", "runs", "techniques", *(f"{k}_{s}" for k in ROW_KEYS for s in ("mean", "std", "ci")),
        "vs", "delta_mean", "delta_ci", "p_value", "p_holm", "verdict", "chosen", "trials", "tuning_seconds",
    }
    assert float(rows[1]["test_accuracy_mean"]) == pytest.approx(0.83)
    assert rows[0]["gap_loss_test_mean"] == "nan"


# --------------------------------------------------------------------------------------
# log_study: one parent run (tracking.create_parent_run) with a child per job, no training
# --------------------------------------------------------------------------------------


@pytest.fixture
def logged_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A StudyResult of two hand-made jobs, a tracking config on this test's store, and a
    clean-up that puts MLflow's process-wide state back."""
    import sys

    from gapline.experiments.study import StudyResult

    results = [_result("l2", 1, 0.9, history={"gap_accuracy": [0.1, 0.2]}), _result("l2", 2, 0.8)]
    table = summarize(results, CLASSICAL)
    md = tmp_path / "study.md"
    md.write_text(table_markdown(table))
    cfg = from_container({
        "study": {"arms": ARMS, "fractions": []},
        "tracking": {"enabled": True, "experiment": "unit-study", "system_metrics": False},
    })
    yield cfg, StudyResult(table, results, [], [md], trained=2, reused=0, seconds=3.0)
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(None)
        mlflow.config.enable_async_logging(False)


def _store_runs(cfg: Any) -> tuple[Any, list[Any]]:
    from mlflow import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    return client, client.search_runs([exp.experiment_id])


def test_log_study_writes_one_finished_parent_with_a_child_per_job(logged_study: Any) -> None:
    from gapline.experiments.trial_logging import log_study

    cfg, result = logged_study
    parent_id = log_study(cfg, result)
    client, runs = _store_runs(cfg)
    [parent] = [r for r in runs if r.info.run_id == parent_id]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "regularization-study"
    assert parent.data.tags["gapline.mode"] == "study"
    assert parent.data.tags["study.arms"] == "l2,svc_rbf (classical)"
    assert parent.data.metrics["study.jobs_trained"] == 2 and parent.data.metrics["study.seconds"] == 3.0
    assert parent.data.metrics["l2.test_accuracy_mean"] == pytest.approx(0.85)
    assert "svc_rbf.gap_loss_test_mean" not in parent.data.metrics  # NaN: not logged
    assert [a.path for a in client.list_artifacts(parent_id, "study")] == ["study/study.md"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert sorted(c.info.run_name for c in children) == ["l2-s1", "l2-s2"]
    assert all(c.info.status == "FINISHED" and c.data.tags["gapline.mode"] == "arm" for c in children)
    assert len(runs) == 3


def test_log_study_under_mlflow_run_logs_into_the_project_run(
    logged_study: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from gapline import tracking
    from gapline.experiments.trial_logging import log_study

    cfg, result = logged_study
    project_run = MlflowClient().create_run(tracking.setup(cfg.tracking)).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", project_run)  # what `mlflow run -e study` passes down
    assert log_study(cfg, result) == project_run
    client, runs = _store_runs(cfg)
    parent = client.get_run(project_run)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "regularization-study"
    assert parent.data.tags["gapline.mode"] == "study" and "study.jobs_trained" in parent.data.metrics
    assert sum(r.data.tags.get("mlflow.parentRunId") == project_run for r in runs) == 2
    assert len(runs) == 3


# --------------------------------------------------------------------------------------
# A real study at debug scale (slow): `gapline study experiment=study_debug`
# --------------------------------------------------------------------------------------

STUDY = ["gapline", "study", "experiment=study_debug"]
SUMMARY = re.compile(r"(\d+) jobs? trained, (\d+) reused")
N_JOBS = 2 * 2 + 3 * 2 + 2  # trials (two tuned arms × two points) + arms × seeds + learning-curve points


def _trained(root: Path) -> int:
    """The distinct training runs of the debug study: baseline × 2 seeds, the two curve points,
    the two non-zero trials, and each tuned arm's second seed unless it chose 0 (then it is the
    baseline's run at that seed)."""
    import csv

    with (root / "reports/study/tuning.csv").open() as fh:
        chosen = [r for r in csv.DictReader(fh) if r["chosen"] == "1"]
    assert len(chosen) == 2
    return 6 + sum(1 for r in chosen if r["trial"] != "0")


def _run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    from helpers.processes import run_local

    return run_local(args, cwd, check)


def _rerun(root: Path) -> subprocess.CompletedProcess:
    """The study again, in this process: at most one job is left to train, and one job runs
    without a joblib pool (only a pool's processes would keep this one's working directory)."""
    from helpers.processes import in_process

    return in_process(STUDY, root, {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"})


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A fresh copy of the repo (sources only) and one full study run in it."""
    from helpers.sandbox import copy_project

    root = copy_project(tmp_path_factory.mktemp("study") / "repo")
    return {"root": root, "first": _run(STUDY, root)}


def _client(root: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def _parents(root: Path) -> list[Any]:
    client = _client(root)
    exp = client.get_experiment_by_name("gapline-study-debug")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`gapline.mode` = 'study'", order_by=["start_time ASC"])
    return runs


@pytest.mark.slow
def test_study_writes_the_table_the_chart_and_the_learning_curve(study: dict[str, Any]) -> None:
    root, proc = study["root"], study["first"]
    out = root / "reports/study"
    for name in ("study.md", "study.csv", "study.png", "learning_curve.csv", "learning_curve.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    md = (out / "study.md").read_text()
    techniques = [line.split("|")[1].strip() for line in md.splitlines()[2:]]
    assert sorted(techniques) == sorted(
        ["baseline", "l2", "dropout", "svc_rbf (classical)", "logistic_regression (classical)", "gradient_boosting (classical)"]
    )
    assert md in proc.stdout  # the table is also printed
    import csv

    with (out / "study.csv").open() as fh:
        rows = {r["technique"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(techniques)
    assert rows["baseline"]["runs"] == "2" and rows["svc_rbf (classical)"]["techniques"] == "classical"
    accs = [float(rows[t]["test_accuracy_mean"]) for t in techniques]
    assert accs == sorted(accs, reverse=True)
    with (out / "learning_curve.csv").open() as fh:
        curve = list(csv.DictReader(fh))
    assert [float(r["train_fraction"]) for r in curve] == [0.5, 1.0]
    assert int(curve[0]["train_samples"]) < int(curve[1]["train_samples"])
    trained = _trained(root)
    assert len(list((out / "jobs").glob("*.json"))) == trained
    assert SUMMARY.search(proc.stdout).groups() == (str(trained), "0")


@pytest.mark.slow
def test_study_shows_a_progress_bar_with_an_eta(study: dict[str, Any]) -> None:
    err = study["first"].stderr
    assert re.search(rf"study:\s+\d+%.*\| *[1-9]\d*/{N_JOBS} \[\d\d:\d\d<\d\d:\d\d", err), err[-2000:]
    assert f"{N_JOBS}/{N_JOBS} [" in err


@pytest.mark.slow
def test_study_logs_one_parent_run_with_a_child_per_job(study: dict[str, Any]) -> None:
    root = study["root"]
    client = _client(root)
    parents = _parents(root)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["gapline.mode"] == "study"
    assert parent.data.metrics["study.jobs_trained"] == _trained(root)
    assert parent.data.metrics["l2.tuning_trials"] == 2
    assert parent.data.metrics["study.jobs_reused"] == 0
    assert "baseline.test_accuracy_mean" in parent.data.metrics
    assert "svc_rbf.test_accuracy_mean" in parent.data.metrics
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {f"study/{n}" for n in ("study.md", "study.csv", "study.png", "learning_curve.csv", "learning_curve.png")} <= arts
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == N_JOBS
    names = sorted(c.info.run_name for c in children)
    assert names == sorted(
        [f"{a}-s{s}" for a in ("baseline", "l2", "dropout") for s in (42, 43)]
        + ["curve-baseline-f0.5-s42", "curve-baseline-f1-s42"]
        + [f"trial-{a}-{i}" for a in ("l2", "dropout") for i in (0, 1)]
    )
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["gapline.mode"] in ("arm", "curve", "trial")
        assert child.data.params["train.epochs"] == "3"
        assert 0.0 <= child.data.metrics["test_accuracy"] <= 1.0
        assert "gap_accuracy_val" in child.data.metrics
    shared = {c.info.run_name: c.data.tags.get("job.run") for c in children}  # the training run behind each job
    assert shared["trial-l2-0"] == shared["trial-dropout-0"] == shared["baseline-s42"]  # the zero points
    assert shared["trial-l2-1"] != shared["baseline-s42"] and len(set(shared.values())) == _trained(root)
    trial = next(c for c in children if c.info.run_name == "trial-l2-1")
    assert trial.data.params["regularization.l2"] == "0.01" and trial.data.tags["job.point"] == "regularization.l2=0.01"
    l2 = next(c for c in children if c.info.run_name == "l2-s43")
    chosen = next(r for r in _tuning(root) if r["arm"] == "l2" and r["chosen"] == "1")
    assert l2.data.params["regularization.l2"] == chosen["point"].split("=")[1]
    assert l2.data.params["train.seed"] == "43"
    gaps = client.get_metric_history(l2.info.run_id, "gap_accuracy")
    assert sorted(g.step for g in gaps) == [1, 2, 3]


def _tuning(root: Path) -> list[dict[str, str]]:
    import csv

    with (root / "reports/study/tuning.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_study_tunes_each_arm_on_validation_and_runs_its_seeds_at_the_choice(study: dict[str, Any]) -> None:
    """Each tuned arm's trials are in tuning.csv with their validation numbers; the chosen one
    has the lowest val_nll (ties: the earlier point); the arm's first seed is that very trial's
    run, and a trial at 0 is the baseline's run."""
    root = study["root"]
    rows = _tuning(root)
    assert [(r["arm"], r["trial"], r["point"]) for r in rows] == [
        ("dropout", "0", "regularization.dropout=0.0"), ("dropout", "1", "regularization.dropout=0.5"),
        ("l2", "0", "regularization.l2=0.0"), ("l2", "1", "regularization.l2=0.01"),
    ]
    for arm in ("l2", "dropout"):
        mine = [r for r in rows if r["arm"] == arm]
        best = min(mine, key=lambda r: (float(r["val_nll"]), int(r["trial"])))
        assert [r["chosen"] for r in mine] == ["1" if r is best else "0" for r in mine]
        assert all(r["objective"] == r["val_nll"] for r in mine)  # study.objective: val_nll
    # the baseline's run at the first seed, found by its cache key (whichever job trained it first)
    base = Job("baseline", 42, ("experiment=study_debug", "regularization=none", "augment=none", "model=mlp", "train.seed=42"))
    record = json.loads((root / "reports/study/jobs" / f"{job_key(resolve(base, root)[1])}.json").read_text())
    assert record["config"]["regularization"]["l2"] == 0.0 and record["config"]["train"]["seed"] == 42
    zero = [r for r in rows if r["trial"] == "0"]
    assert {r["val_loss"] for r in zero} == {f"{record['val_loss']:.6g}"}
    md = (root / "reports/study/study.md").read_text()
    header = md.splitlines()[0]
    assert "| tuned to | trials | tuning s |" in header and "vs baseline pts (paired, Holm p)" in header
    l2_row = next(line for line in md.splitlines() if line.startswith("| l2 |"))
    chosen = next(r for r in rows if r["arm"] == "l2" and r["chosen"] == "1")
    assert f"| l2={chosen['point'].split('=')[1]} | 2 |" in l2_row


def _without_times(md: str) -> list[list[str]]:
    return [line.strip("|").split("|")[:-1] for line in md.splitlines()]


@pytest.mark.slow
def test_study_rerun_reuses_every_cached_job(study: dict[str, Any]) -> None:
    root = study["root"]
    before = _without_times((root / "reports/study/study.md").read_text())
    proc = _rerun(root)
    trained = _trained(root)
    assert SUMMARY.search(proc.stdout).groups() == ("0", str(trained))
    # the same numbers (train times aside: the classical baselines are timed again)
    assert _without_times((root / "reports/study/study.md").read_text()) == before
    parents = _parents(root)
    assert len(parents) == 2
    assert parents[-1].data.metrics["study.jobs_reused"] == trained


@pytest.mark.slow
def test_study_after_losing_one_cached_job_trains_exactly_that_one(study: dict[str, Any]) -> None:
    root = study["root"]
    jobs = root / "reports/study/jobs"
    [victim] = [p for p in jobs.glob("*.json") if json.loads(p.read_text())["job"] == "baseline-s43"]
    victim.unlink()
    proc = _rerun(root)
    trained = _trained(root)
    assert SUMMARY.search(proc.stdout).groups() == ("1", str(trained - 1))
    assert victim.is_file()  # cached again under the same key
    assert len(list(jobs.glob("*.json"))) == trained


@pytest.mark.slow
def test_study_sources_train_once_and_a_transfer_arm_follows_its_source(conf_project: Path, monkeypatch) -> None:
    """A source model is trained before the arms and reused while its config stands; the arm
    that starts from it is retrained when the source changes, the other arm is not."""
    from gapline.config.params import compose_config
    from gapline.experiments.study.run import run_study

    monkeypatch.chdir(conf_project)
    source = str(conf_project / "out" / "sources" / "low.keras")
    study_yaml = """
seeds: 1
jobs: 1
classical: false
out_dir: {out}
arms:
  scratch: ["data.classes=[5,6,7]"]
  transfer: ["data.classes=[5,6,7]", "model.init_from=study:low"]
sources:
  low: ["data.classes=[0,1,2]"{extra}]
"""
    folder = conf_project / "conf" / "study"
    (folder / "tiny.yaml").write_text(study_yaml.format(out=conf_project / "out", extra=""))
    (folder / "tiny2.yaml").write_text(study_yaml.format(out=conf_project / "out", extra=', "train.epochs=2"'))
    base = ["experiment=debug", "model=cnn", "train.epochs=1", "study=tiny"]
    cfg = compose_config(base, conf_project)
    first = run_study(cfg, [], conf_project, progress=False)
    assert first.trained == 2 and Path(source).is_file()
    techniques = {r["arm"]: r["techniques"] for r in first.results}
    assert "transfer" in techniques["transfer"] and "transfer" not in techniques["scratch"]
    stamp = Path(source).stat().st_mtime_ns

    again = run_study(cfg, [], conf_project, progress=False)
    assert again.trained == 0 and Path(source).stat().st_mtime_ns == stamp

    changed = compose_config([*base[:-1], "study=tiny2"], conf_project)
    third = run_study(changed, [], conf_project, progress=False)
    assert Path(source).stat().st_mtime_ns != stamp
    assert third.trained == 1 and third.reused == 1  # only the transfer arm


def test_an_arm_naming_a_source_that_does_not_exist_is_one_line() -> None:
    cfg = _cfg(arms={**ARMS, "transfer": ["model.init_from=study:nowhere"]}, sources={"low": ["data.classes=[0,1]"]})
    with pytest.raises(ConfigError) as err:
        plan(cfg, [])
    assert "study.arms.transfer='model.init_from=study:nowhere'" in str(err.value) and "study:low" in str(err.value)


def test_an_arm_naming_a_source_starts_from_its_file_under_out_dir() -> None:
    cfg = _cfg(arms={"transfer": ["model.init_from=study:low"]}, sources={"low": []}, out_dir="elsewhere", seeds=1)
    assert plan(cfg, [])[0].overrides[-2] == "model.init_from=elsewhere/sources/low.keras"


def test_the_untuned_mode_runs_the_arms_as_listed_and_drops_a_stale_tuning_file(conf_project: Path, monkeypatch) -> None:
    """study.tune=false: no trial, each arm at its listed overrides (l2 at the preset's 0.001),
    no tuning columns, and no tuning.csv left from an earlier tuned run to contradict the table."""
    from gapline.config.params import compose_config
    from gapline.experiments.study.run import run_study

    monkeypatch.chdir(conf_project)
    out = conf_project / "out"
    (out).mkdir()
    (out / "tuning.csv").write_text("arm,trial\nl2,0\n")
    base = ["experiment=study_debug", "train.epochs=1", "study.seeds=1", "study.jobs=1", "study.include=[baseline,l2]",
            "study.fractions=[]", "study.classical=false", "study.tune=false", f"study.out_dir={out}"]
    result = run_study(compose_config(base, conf_project), base, conf_project, progress=False)
    assert result.trials == [] and result.tuning == {} and result.trained == 2
    l2 = next(r for r in result.results if r["arm"] == "l2")
    assert l2["config"]["regularization"]["l2"] == 0.001 and l2["point"] == []
    assert not (out / "tuning.csv").exists()
    assert "tuned to" not in (out / "study.md").read_text()


def test_a_diverged_seed_drops_out_of_the_pairing_instead_of_the_test() -> None:
    base = [_result("baseline", s, v) for s, v in enumerate([0.90, 0.92, 0.91])]
    arm = [_result("l2", s, v) for s, v in enumerate([0.93, float("nan"), 0.95])]
    row = next(r for r in summarize(base + arm) if r["technique"] == "l2")
    assert row["delta_mean"] == pytest.approx(0.035)  # seeds 0 and 2 only
    assert math.isfinite(row["p_value"]) and math.isfinite(row["p_holm"])
