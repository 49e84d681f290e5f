"""`gapline tune` on small generated data: a budget of N trials runs N; the winner is a preset
that composes and trains; the trials see validation only (the test split plays no part); an
interrupted tune resumes to what an uninterrupted one finds; bad input is one line."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gapline import cli
from gapline.config.params import compose_config
from gapline.config.schema import MODEL_GROUPS
from gapline.data.prepare import load_source, plan_splits
from gapline.experiments.trial import run_trial
from gapline.experiments.tune import run_tune

REPO = Path(__file__).resolve().parents[3]
#: A tiny tabular task and a two-key space: each trial is a second or two.
BASE = [
    "data=npz",
    "model.hidden_units=[8]",
    "train.epochs=3",
    "train.batch_size=32",
    "regularization.early_stopping.enabled=false",
    "tracking.enabled=false",
    "~tune.space.train",
    "~tune.space.regularization.l2",
    "+tune.space.train.learning_rate=tag(log, interval(0.001, 0.05))",
]


def _data(path: Path, seed: int = 0, n: int = 240) -> Path:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 5)).astype("float32")
    x[:, 0] += 1.5 * y  # one informative column
    np.savez(path, x=x, y=y)
    return path


def _project(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    shutil.copytree(REPO / "conf", root / "conf")
    return root


def _base(data: Path, *extra: str) -> list[str]:
    return [*BASE, f"data.path={data}", *extra]


def _quoted(overrides: list[str]) -> list[str]:
    """As a shell passes them to the CLI: a sweep-like value quoted for Hydra's parser."""
    return [o.replace("=tag(log, interval(0.001, 0.05))", "='tag(log, interval(0.001, 0.05))'") for o in overrides]


def _tune(root: Path, overrides: list[str], on_trial: Any = None) -> Any:
    overrides = _quoted(overrides)
    return run_tune(compose_config(overrides, root), overrides, root, on_trial)


def test_a_budget_of_n_trials_runs_n_and_the_preset_composes_and_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    root = _project(tmp_path, "p")
    data = _data(tmp_path / "d.npz")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(root)
    overrides = _quoted(_base(data, "tune.trials=3", "tune.name=tiny"))
    overrides = [o for o in overrides if o != "tracking.enabled=false"] + [f"tracking.uri={uri}"]
    assert cli.main(["tune", *overrides]) == 0
    out = capsys.readouterr().out
    assert "Use it: gapline params experiment=tuned_tiny" in out and "| defaults" in out

    csv_rows = (root / "reports/tune/tiny/trials.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in csv_rows[1:]] == ["defaults", "1", "2", "3"]  # N trials, and the defaults

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("gapline.mode") == "tune" and "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(c.info.run_name for c in children) == ["defaults", "trial 1", "trial 2", "trial 3"]
    for child in children:  # validation only: no test number anywhere
        assert "val_nll" in child.data.metrics and "objective" in child.data.metrics
        assert not [k for k in child.data.metrics if "test" in k], child.data.metrics
    best_run = min(children, key=lambda c: c.data.metrics["objective"])
    assert parents[0].data.metrics["best_objective"] == pytest.approx(best_run.data.metrics["objective"])

    # the preset: it composes to the best trial's config, and it trains
    preset = root / "conf/experiment/tuned_tiny.yaml"
    assert preset.read_text().startswith("# @package _global_\n")
    tuned = compose_config(["experiment=tuned_tiny"], root)
    best_cfg = compose_config([*overrides, *best_run.data.tags.get("job.overrides", "").split()], root)
    for group in MODEL_GROUPS:
        assert dataclasses.asdict(tuned)[group] == dataclasses.asdict(best_cfg)[group], group
    assert cli.main(["params", "experiment=tuned_tiny"]) == 0
    result = run_trial(dataclasses.replace(tuned, tracking=dataclasses.replace(tuned.tracking, enabled=False)))
    assert result.epochs_run == 3 and np.isfinite(result.metrics["test_accuracy"])


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted tune of 3 trials on clean data: the tests below compare with it."""
    tmp = tmp_path_factory.mktemp("straight")
    root = _project(tmp, "p")
    data = _data(tmp / "clean.npz")
    return {"root": root, "data": data, "result": _tune(root, _base(data, "tune.trials=3", f"tune.out_dir={tmp / 'out'}"))}


def test_the_test_split_plays_no_part(straight: dict[str, Any], tmp_path: Path) -> None:
    """A source that differs from the clean one only in the test split's rows (their features
    replaced by noise) gives every trial the same point and objective: nothing of the test
    split reaches the choice."""
    root, clean = straight["root"], straight["data"]
    cfg = compose_config(_quoted(_base(clean)), root)
    test_rows = plan_splits(cfg, load_source(cfg.data, cfg.task.type)).rows["test"]
    with np.load(clean) as z:
        x, y = z["x"].copy(), z["y"]
    x[test_rows] = np.random.default_rng(9).normal(size=x[test_rows].shape) * 100
    noisy = tmp_path / "noisy.npz"
    np.savez(noisy, x=x, y=y)

    runs = [straight["result"], _tune(root, _base(noisy, "tune.trials=3", f"tune.out_dir={tmp_path / 'b'}"))]
    assert not runs[1].defaults.cached and not any(t.cached for t in runs[1].trials)  # trained anew on its own data
    for run in runs:
        assert not [k for t in [run.defaults, *run.trials] for k in t.record if k.startswith("test_")]
    assert [t.point for t in runs[0].trials] == [t.point for t in runs[1].trials]
    assert [t.objective for t in [runs[0].defaults, *runs[0].trials]] == [t.objective for t in [runs[1].defaults, *runs[1].trials]]


def test_an_interrupted_tune_resumes_to_the_uninterrupted_result(straight: dict[str, Any], tmp_path: Path) -> None:
    root, data, uninterrupted = straight["root"], straight["data"], straight["result"]

    class Stop(KeyboardInterrupt):
        pass

    def stop_after_two(trial: Any) -> None:
        if trial.number == 2:
            raise Stop

    resumed_args = _base(data, "tune.trials=3", f"tune.out_dir={tmp_path / 'resumed'}")
    with pytest.raises(Stop):
        _tune(root, resumed_args, stop_after_two)
    resumed = _tune(root, resumed_args)
    assert [t.cached for t in resumed.trials] == [True, True, False]  # only the third trains now
    assert resumed.defaults.cached
    assert [t.point for t in resumed.trials] == [t.point for t in uninterrupted.trials]
    assert [t.objective for t in resumed.trials] == [t.objective for t in uninterrupted.trials]
    assert resumed.best.point == uninterrupted.best.point


def test_a_diverging_trial_scores_worst_and_the_search_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A point whose fit diverges (here: any learning rate of 0.5, made to diverge the way the
    fit's guard reports it) is scored worst and the tune runs its whole budget."""
    from gapline.experiments import tune
    from gapline.train.fit import TrainingDiverged

    real = tune.run_trial

    def guarded(cfg: Any, **kwargs: Any) -> Any:
        if cfg.train.learning_rate == 0.5:
            raise TrainingDiverged("training diverged in epoch 1: loss=nan")
        return real(cfg, **kwargs)

    monkeypatch.setattr(tune, "run_trial", guarded)
    root = _project(tmp_path, "p")
    hot = "tune.space.train.learning_rate='choice(0.5)'"
    result = _tune(root, _base(_data(tmp_path / "d.npz"), "tune.trials=2", f"tune.out_dir={tmp_path / 'h'}", hot))
    assert len(result.trials) == 2
    assert all(t.objective == float("inf") and "loss=nan" in t.record["diverged"] for t in result.trials)
    assert result.best is result.defaults and np.isfinite(result.defaults.objective)


def test_a_minutes_budget_stops_starting_trials(tmp_path: Path) -> None:
    root = _project(tmp_path, "p")
    result = _tune(root, _base(_data(tmp_path / "d.npz"), "tune.trials=50", "tune.minutes=0.0001",
                               f"tune.out_dir={tmp_path / 'm'}"))
    assert result.stopped_by == "minutes" and result.trials == [] and result.best is result.defaults


@pytest.mark.parametrize(
    "overrides,mentions",
    [
        (["tune.trials=0"], ["tune.trials=0", "an integer >= 1"]),
        (["tune.objective=val_auc"], ["tune.objective='val_auc'", "val_nll"]),
        (["tune.name=my-set"], ["tune.name='my-set'", "letters, digits and _"]),
        (["+tune.space.train.lerning_rate='interval(0.001, 0.1)'"], ["tune.space='train.lerning_rate'", "keys of the config"]),
        (["model=cnn", "+tune.space.model.hidden_units='choice([32],[64])'"],
         ["tune.space.model.hidden_units", "model.family=cnn reads", "read by model.family=backbone/mlp"]),
        (["tune.space.regularization.dropout='between(0, 1)'"], ["tune.space.regularization.dropout='between(0, 1)'", "interval(a, b)"]),
        (["tune.space.regularization.dropout=0.3"], ["tune.space.regularization.dropout='0.3'", "a range or a choice"]),
    ],
)
def test_bad_tune_input_is_one_line_and_opens_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], overrides: list[str], mentions: list[str]
) -> None:
    root = _project(tmp_path, "p")
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code = cli.main(["tune", *overrides])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    for text in mentions:
        assert text in err[0], err[0]
    assert not (tmp_path / "mlflow.db").exists()  # no run opened, not even a store
    assert not (root / "reports").exists() and not list((root / "conf/experiment").glob("tuned_*"))


def test_a_failed_or_interrupted_tune_closes_its_parent_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`gapline tune`'s (and the study's) parent run ends FAILED on an error and KILLED on a
    kill or Ctrl-C, with the reason: never RUNNING."""
    import mlflow

    from gapline.config.checks import from_container
    from gapline.experiments.trial_logging import closed_on_failure, open_tune

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = from_container({"tracking": {"uri": uri}})
    ids = []
    for raised in (ValueError("a store error"), KeyboardInterrupt()):
        parent = open_tune(cfg, "x", [])
        ids.append(parent)
        with pytest.raises(type(raised)), closed_on_failure(parent):
            raise raised
    runs = [mlflow.MlflowClient(uri).get_run(i) for i in ids]
    assert [r.info.status for r in runs] == ["FAILED", "KILLED"]
    assert "a store error" in runs[0].data.tags["error"] and "KeyboardInterrupt" in runs[1].data.tags["error"]


def test_a_space_range_from_the_shell_reaches_hydra_as_one_quoted_value() -> None:
    """`gapline tune 'tune.space.x=interval(0.1, 0.3)'`: the shell drops any quotes; the range
    stays one override and becomes the string Hydra must read (unquoted it is a sweep)."""
    from gapline.cli import split_overrides
    from gapline.experiments.tune import quote_space

    words = split_overrides(["tune.space.regularization.dropout=interval(0.1, 0.3) model.hidden_units=[8, 8]"])
    assert words == ["tune.space.regularization.dropout=interval(0.1, 0.3)", "model.hidden_units=[8, 8]"]
    assert [quote_space(w) for w in words] == ["tune.space.regularization.dropout='interval(0.1, 0.3)'", "model.hidden_units=[8, 8]"]
    assert quote_space("+tune.space.x='choice(1, 2)'") == "+tune.space.x='choice(1, 2)'"  # quoted already: as given
