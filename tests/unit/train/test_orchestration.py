"""One orchestration: the train stage and every trial fit through
``train.orchestration.fit_and_summarize``, and the fit's summary (reports/train.json) has one
writer and one reader (``train.summary.FitSummary``)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from gapline.config.tasks import multiclass
from gapline.core.errors import DataError
from gapline.evaluate.gap import overfitting_onset
from gapline.train.orchestration import FitData, fit_and_summarize
from gapline.train.summary import FitSummary

SRC = Path(__file__).resolve().parents[3] / "src" / "gapline"


def callers(name: str, first_arg: str | None = None) -> set[str]:
    """The modules of src/gapline that call a function named ``name`` (with the variable
    ``first_arg`` as its first argument, when given)."""
    found = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
                first = node.args[0].id if node.args and isinstance(node.args[0], ast.Name) else None
                if called == name and first_arg in (None, first):
                    found.add(path.relative_to(SRC).as_posix())
    return found


def test_the_stage_and_the_trials_fit_through_one_function() -> None:
    assert callers("train_model") == {"train/orchestration.py"}
    assert callers("fit_and_summarize") == {"stages/train.py", "experiments/trial.py"}
    # train.json: written and read by FitSummary alone, never as a plain dict
    assert callers("write_json", "TRAIN_INFO_FILE") == callers("read_json", "TRAIN_INFO_FILE") == set()
    assert callers("write", "TRAIN_INFO_FILE") == {"stages/train.py"} and callers("read", "TRAIN_INFO_FILE") == {"stages/evaluate.py"}


def test_a_fit_summary_holds_what_the_fit_did(make_tiny_config: Any, tiny_image_splits: dict, cpu_runtime: Any) -> None:
    cpu_runtime(7)
    cfg = make_tiny_config({"train": {"epochs": 3}, "regularization": {"dropout": 0.25}})
    train, val = tiny_image_splits["train"], tiny_image_splits["val"]
    x_fit, y_fit = train[0][:45], train[1][:45]  # fit on fewer rows than the gap's split: both are counted apart
    result, summary = fit_and_summarize(cfg, multiclass(3), FitData((x_fit, y_fit), train, val))
    onset = overfitting_onset(result.history["loss"], result.history["val_loss"])
    assert summary.task == "multiclass" and summary.epochs_run == result.epochs_run == 3
    assert (summary.best_epoch, summary.onset_epoch) == (onset.best_epoch, onset.onset_epoch)
    assert (summary.train_samples, summary.fit_samples) == (60, 45) and summary.params == result.params > 0
    assert "dropout" in summary.techniques and summary.technique_label == "dropout"
    assert summary.warm_start is None and result.resumed_from == 0 and result.replicas == 1


def test_train_json_round_trips_and_names_a_missing_key(tmp_path: Path) -> None:
    summary = FitSummary(task="binary", epochs_run=5, best_epoch=4, onset_epoch=None, params=123, train_samples=40, fit_samples=80, techniques=["l2"])
    path = tmp_path / "train.json"
    summary.write(path)
    assert "warm_start" not in path.read_text()  # only a warm start writes it
    assert FitSummary.read(path) == summary
    assert summary.metrics() == {"best_epoch": 4, "onset_epoch": -1, "epochs_run": 5, "params": 123}
    path.write_text('{"task": "binary", "epochs_run": 5}')
    with pytest.raises(DataError, match=r"train.json: missing best_epoch, fit_samples, onset_epoch, params, techniques, train_samples"):
        FitSummary.read(path)
