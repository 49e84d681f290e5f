"""A champion trained on another version of a table: its categories numbered in another
dictionary, its columns in another order. Retrain scores it on the current data through
``reads_table``, which reads every cell's category through the data's dictionary and gives
the champion's own index, so both models are judged on the same rows."""

from __future__ import annotations

import numpy as np
import pytest

from gapline.config.schema import ModelConfig, RegularizationConfig
from gapline.config.tasks import TaskSpec
from gapline.retrain.decision import reads_table
from helpers.prepared_meta import make_meta

INCOME = {"name": "income", "kind": "numeric", "cells": "number", "median": 10.0, "mean": 12.0, "std": 4.0, "indicator": True}
CITY = {"name": "city", "kind": "categorical", "cells": "text", "values": ["east", "north", "south", "west"],
        "vocabulary": ["north", "east", "west"], "encoding": "one_hot"}


def _champion():
    from gapline.models.build import build_model

    model = build_model((2,), TaskSpec(name="binary", labels=("no", "yes"), table=(CITY, INCOME)),
                        ModelConfig(family="mlp", hidden_units=[8]), RegularizationConfig(), seed=2)
    model.compile(loss="binary_crossentropy")
    return model


def _meta(columns):
    return make_meta(source="csv", kind="tabular", task="binary", class_names=["no", "yes"], input_shape=[len(columns)],
                     columns=columns)


def test_a_champion_reads_cells_numbered_by_another_dictionary_in_another_order() -> None:
    model = _champion()
    now_city = {**CITY, "values": ["aaa", "east", "north", "south", "west", "zed"]}  # two new categories
    meta = _meta([INCOME, now_city])  # and the columns swapped
    rows_now = np.array([[20.0, 2.0], [np.nan, 1.0], [5.0, 0.0], [7.0, 5.0], [9.0, np.nan]], dtype="float32")
    # the same rows as the champion's data held them: north, east, (aaa: beyond its dictionary), (zed: the same), missing
    rows_then = np.array([[1.0, 20.0], [0.0, np.nan], [4.0, 5.0], [4.0, 7.0], [np.nan, 9.0]], dtype="float32")
    wrapped = reads_table(model, meta)
    np.testing.assert_allclose(np.asarray(wrapped.predict(rows_now, verbose=0)), np.asarray(model.predict(rows_then, verbose=0)),
                               rtol=0, atol=1e-6)
    assert wrapped.loss == model.loss


def test_the_same_dictionaries_in_the_same_order_leave_the_champion_as_it_is() -> None:
    model = _champion()
    assert reads_table(model, _meta([CITY, INCOME])) is model
    assert reads_table(model, make_meta()) is model  # not a table


def test_a_column_the_data_lacks_is_a_champion_that_cannot_be_scored() -> None:
    with pytest.raises(ValueError, match="columns the data lacks: city"):
        reads_table(_champion(), _meta([INCOME]))
