"""README's task-preset table is exactly what reports/tasks/presets.csv says."""

from __future__ import annotations

import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _section():
    from helpers.project_store import docs_module

    return docs_module("tasks_section")


def test_readme_tasks_block_says_what_the_csv_says() -> None:
    section = _section()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split(section.BEGIN, 1)[1].split(section.END, 1)[0]
    assert block == "\n" + section.render(section.read_csv())


def test_every_overfit_preset_has_a_larger_gap_than_its_regularized_twin() -> None:
    """What the presets are for: the README claims each regularized preset shrinks the gap."""
    section = _section()
    rows = section.read_csv()
    for overfit, regularized in section.PAIRS:
        gap = {p: section._stat([r for r in rows if r["preset"] == p], "gap_loss_test")[0] for p in (overfit, regularized)}
        assert not math.isnan(gap[overfit]) and gap[overfit] > gap[regularized] > 0

    def mean(preset: str, key: str) -> float:
        return section._stat([r for r in rows if r["preset"] == preset], key)[0]

    # the README's sentences around the table: on diabetes the RMSE gap and the test RMSE
    # both fall; on breast cancer the calibration gap shrinks and the AUC does not get worse
    assert mean("diabetes_regularized", "gap") < mean("diabetes_overfit", "gap") / 3
    assert mean("diabetes_regularized", "test") < mean("diabetes_overfit", "test")
    assert mean("breast_cancer_regularized", "gap_ece_test") < mean("breast_cancer_overfit", "gap_ece_test")
    assert mean("breast_cancer_regularized", "test") >= mean("breast_cancer_overfit", "test")


def test_render_formats_scores_in_points_and_errors_in_units(tmp_path: Path) -> None:
    section = _section()
    rows = [
        {"preset": "breast_cancer_overfit", "task": "binary", "seed": "0", "headline": "auc", "test": "0.9", "train": "1",
         "gap": "0.1", "gap_loss_test": "0.2", "gap_ece_test": "0.03", "epochs_run": "10"},
        {"preset": "diabetes_overfit", "task": "regression", "seed": "0", "headline": "rmse", "test": "55.5", "train": "40",
         "gap": "15.5", "gap_loss_test": "0.3", "gap_ece_test": "nan", "epochs_run": "20"},
    ]
    text = section.render(rows)
    assert "AUC 90.0 ± 0.0 %" in text and "+10.0 ± 0.0 pts" in text
    assert "RMSE 55.5 ± 0.0" in text and "+15.5 ± 0.0 |" in text and "| – |" in text
