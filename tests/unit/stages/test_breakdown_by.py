"""``task.breakdown_by``: the test split scored per category of a table's column, a missing
cell its own category; a name that is not a categorical column is one line, before evaluate
writes anything."""

from __future__ import annotations

import numpy as np
import pytest

from gapline.config.checks import from_container
from gapline.config.tasks import TaskSpec
from gapline.core.errors import ConfigError
from gapline.stages.evaluate import category_breakdown, check_breakdown_by
from helpers.prepared_meta import make_meta

CITY = {"name": "city", "kind": "categorical", "values": ["east", "north"], "vocabulary": ["east", "north"], "encoding": "one_hot"}
INCOME = {"name": "income", "kind": "numeric", "median": 0.0, "mean": 0.0, "std": 1.0, "indicator": False}


def test_each_category_and_the_missing_cells_get_a_row_most_frequent_first() -> None:
    cfg = from_container({})
    task = TaskSpec(name="binary", labels=("no", "yes"))
    cells = np.array([0, 0, 0, 1, 1, np.nan])
    y = np.array([1, 0, 1, 1, 1, 0])
    pred = np.array([0.9, 0.2, 0.8, 0.3, 0.7, 0.1])
    rows = category_breakdown(task, CITY, cells, y, pred, cfg)
    assert [(r["category"], r["support"]) for r in rows] == [("east", 3), ("north", 2), ("<missing>", 1)]
    assert rows[0]["accuracy"] == 1.0 and rows[0]["auc"] == 1.0
    assert rows[1]["accuracy"] == 0.5 and rows[1]["auc"] is None  # one class only: no AUC, null not NaN


def test_a_name_that_is_not_a_categorical_column_is_one_line() -> None:
    meta = make_meta(source="csv", kind="tabular", task="binary", class_names=["no", "yes"], input_shape=[2],
                     columns=[CITY, INCOME])
    assert check_breakdown_by("", meta) is None and check_breakdown_by("city", meta) == CITY
    with pytest.raises(ConfigError) as info:
        check_breakdown_by("income", meta)
    assert str(info.value) == "task.breakdown_by='income' is not allowed: expected '' or a categorical column of the table (city)"
    with pytest.raises(ConfigError, match="none: the data has no categorical column"):
        check_breakdown_by("city", make_meta())
