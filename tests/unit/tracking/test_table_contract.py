"""A table's served input, checked by the loader that ships with the model: raw rows to the
cells TableEncoding takes; a missing or an extra column, or text in a numeric column, is one
line (MLflow drops an extra column before the loader sees it; called directly, the loader
refuses it too)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from gapline.tracking.input_contract import input_contract, to_served
from gapline.tracking.shipped_loader import table_cells
from helpers.prepared_meta import make_meta

COLUMNS = [
    {"name": "city", "kind": "categorical", "cells": "text", "values": ["east", "north"], "vocabulary": ["east"], "encoding": "one_hot"},
    {"name": "plan", "kind": "categorical", "cells": "integer", "values": ["1", "2"], "vocabulary": ["1", "2"], "encoding": "one_hot"},
    {"name": "income", "kind": "numeric", "cells": "number", "median": 1.0, "mean": 1.0, "std": 1.0, "indicator": True},
]
CONTRACT = input_contract(make_meta(source="csv", kind="tabular", task="binary", class_names=["no", "yes"],
                                    input_shape=[3], columns=COLUMNS))


def test_stored_rows_serve_as_the_source_held_them_and_come_back_the_same() -> None:
    stored = np.array([[1.0, 0.0, 2.5], [np.nan, 1.0, np.nan]], dtype="float32")
    served = to_served(stored, CONTRACT)
    assert served.to_dict("records")[0] == {"city": "north", "plan": 1, "income": 2.5}
    assert served["city"][1] is None and served["plan"][1] == 2
    np.testing.assert_array_equal(table_cells(served, CONTRACT), stored)


def test_an_unseen_category_is_one_past_the_dictionary_not_an_error() -> None:
    cells = table_cells(pd.DataFrame({"income": [1.0], "plan": [3], "city": ["atlantis"]}), CONTRACT)  # any column order
    assert cells.tolist() == [[2.0, 2.0, 1.0]]


@pytest.mark.parametrize(("frame", "words"), [
    (pd.DataFrame({"city": ["east"], "plan": [1]}), "input lacks the column income"),
    (pd.DataFrame({"city": ["east"], "plan": [1], "income": [1.0], "zip": ["x"]}), "input has the column zip, which the model does not know"),
    (pd.DataFrame({"city": ["east"], "plan": [1], "income": ["lots"]}), "column 'income' holds 'lots'"),
])
def test_a_request_outside_the_contract_is_one_line(frame: pd.DataFrame, words: str) -> None:
    with pytest.raises(MlflowException) as info:
        table_cells(frame, CONTRACT)
    assert words in str(info.value) and "\n" not in str(info.value)
