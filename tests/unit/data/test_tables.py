"""Tables as they come (CSV and Parquet): column types inferred or declared, missing cells,
text categories; what the model learns its preprocessing from is fitted on the training
split alone; the table's bad input is one line naming the column."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gapline.config.checks import from_container
from gapline.config.schema import Config
from gapline.core.errors import ConfigError, DataError, GaplineError
from gapline.data.columns import fit_columns
from gapline.data.dataset import validate_dataset
from gapline.data.prepare import load_source, plan_splits, split_source
from gapline.data.table import CATEGORICAL, NUMERIC, Column
from helpers.tables import mixed_table


def _error(fn: Any, *args: Any, kind: type[Exception] = GaplineError, **kwargs: Any) -> str:
    with pytest.raises(kind) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def _cfg(path: Path, source: str = "csv", label: str = "label", **data: Any) -> Config:
    return from_container({
        "data": {"source": source, "path": str(path), "label_column": label, "val_fraction": 0.2,
                 "test_fraction": 0.2, "seed": 3, **data},
    })


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_mixed_table_is_typed_encoded_and_its_columns_recorded(tmp_path: Path, suffix: str) -> None:
    frame = mixed_table(60)
    frame.loc[3, "city"] = None
    path = _write(frame, tmp_path / f"t{suffix}")
    cfg = _cfg(path, suffix[1:], columns={"categorical": ["plan"], "drop": ["id"]})
    ds = load_source(cfg.data)
    validate_dataset(ds, str(path))  # missing cells are data in a table
    names = [c.name for c in ds.columns]
    assert names == ["city", "income", "member", "plan", "noise"]
    kinds = {c.name: c.kind for c in ds.columns}
    assert kinds == {"city": CATEGORICAL, "income": NUMERIC, "member": CATEGORICAL, "plan": CATEGORICAL, "noise": NUMERIC}
    city = ds.columns[0]
    assert city.values == ("east", "north", "south", "west")
    assert np.isnan(ds.x[3, 0]) and city.values[int(ds.x[0, 0])] == frame.loc[0, "city"]
    assert ds.columns[3].values == ("1", "2", "3")  # integer codes as categories
    assert np.isnan(ds.x[:, 1]).sum() == frame["income"].isna().sum()
    assert ds.class_names == ("buy", "pass") and ds.task == "binary"


def test_parquet_keeps_booleans_nullable_integers_and_dictionary_text(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "flag": pa.array([True, False, None, True, False, True] * 5, type=pa.bool_()),
        "count": pa.array([1, None, 3, 4, 5, 6] * 5, type=pa.int64()),
        "kind": pa.array(["a", "b", "a", None, "b", "a"] * 5).dictionary_encode(),
        "label": pa.array([0, 1, 0, 1, 0, 1] * 5),
    })
    pq.write_table(table, tmp_path / "t.parquet")
    ds = load_source(_cfg(tmp_path / "t.parquet", "parquet").data)
    kinds = {c.name: (c.kind, c.values) for c in ds.columns}
    assert kinds == {"flag": (CATEGORICAL, ("False", "True")), "count": (NUMERIC, ()), "kind": (CATEGORICAL, ("a", "b"))}
    assert np.isnan(ds.x[2, 0]) and np.isnan(ds.x[1, 1]) and np.isnan(ds.x[3, 2])


def test_training_statistics_come_from_the_training_split_alone(tmp_path: Path) -> None:
    """Every value only validation or test hold stays out of the vocabulary; medians, means
    and stds are the training rows' own (a test row's outlier moves none of them)."""
    frame = mixed_table(300)
    frame["income"] = frame["income"].fillna(10.0)
    path = _write(frame, tmp_path / "t.csv")
    cfg = _cfg(path, columns={"drop": ["id"]})
    ds = load_source(cfg.data)
    plan = plan_splits(cfg, ds)
    held_out = np.concatenate([plan.rows["val"], plan.rows["test"]])
    # make the held-out rows extreme and give them a city no training row has
    x = ds.x.copy()
    x[held_out, 1] = 1e6
    city = ds.columns[0]
    values = (*city.values, "zzz-only-held-out")
    x[held_out, 0] = len(values) - 1
    columns = (Column("city", CATEGORICAL, values), *ds.columns[1:])
    leaky = plan_splits(cfg, dataclasses.replace(ds, x=x, columns=columns))
    fitted = {c["name"]: c for c in leaky.meta.columns}
    assert "zzz-only-held-out" not in fitted["city"]["vocabulary"] and "zzz-only-held-out" in fitted["city"]["values"]
    train_income = ds.x[plan.rows["train"], 1].astype(np.float64)
    assert fitted["income"]["median"] == pytest.approx(np.median(train_income))
    assert fitted["income"]["mean"] == pytest.approx(train_income.mean())
    assert fitted["income"]["std"] == pytest.approx(train_income.std())
    assert leaky.meta.columns == fit_columns(columns, x[plan.rows["train"]])


def test_fitted_columns_impute_indicate_and_choose_one_hot_or_embedding() -> None:
    values = tuple(f"v{i}" for i in range(20))
    x = np.array([[np.nan, 1.0, 0.0], [2.0, 2.0, 1.0], [4.0, np.nan, 1.0], [6.0, 3.0, np.nan]] * 3, dtype=np.float32)
    x[:, 2] = [0, 1, 1, np.nan, 2, 3, 4, 5, 6, 7, 8, 1]
    columns = (Column("a", NUMERIC), Column("b", NUMERIC), Column("c", CATEGORICAL, values))
    a, _, c = fit_columns(columns, x, one_hot_max=4, min_count=2)
    assert a["median"] == 4.0 and a["indicator"] is True
    assert c["vocabulary"] == ["v1"] and c["encoding"] == "one_hot"  # only v1 is seen twice
    wide = fit_columns(columns, x, one_hot_max=4)[2]
    assert wide["encoding"] == "embedding" and wide["vocabulary"][0] == "v1" and wide["embedding_dim"] >= 2
    flat = fit_columns(columns, x, standardize=False)[0]
    assert (flat["mean"], flat["std"]) == (0.0, 1.0)


def test_rows_without_a_target_are_dropped_counted_or_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = mixed_table(80)
    frame.loc[[5, 9], "label"] = None
    path = _write(frame.drop(columns=["id"]), tmp_path / "t.csv")
    cfg = _cfg(path)
    splits, meta = split_source(cfg)
    assert meta.dropped_missing_target == 2 and sum(meta.counts.values()) == 78
    assert "dropped 2 of 80 rows without a target" in capsys.readouterr().err
    assert meta.as_json()["dropped_missing_target"] == 2
    msg = _error(load_source, _cfg(path, missing_target="fail").data, kind=DataError)
    assert "data.label_column='label'" in msg and "2 of 80 rows have no target" in msg


def test_a_numeric_table_without_gaps_keeps_its_meta_lean(tmp_path: Path) -> None:
    path = _write(mixed_table(60)[["income", "noise", "label"]].fillna(1.0), tmp_path / "t.csv")
    _, meta = split_source(_cfg(path))
    record = meta.as_json()
    assert "dropped_missing_target" not in record and "features" not in record
    assert [c["kind"] for c in record["columns"]] == [NUMERIC, NUMERIC]
    assert all(c["indicator"] is False for c in record["columns"])
    json.dumps(record)


# ------------------------------------------------------------------ bad input, one line each


def test_a_column_empty_in_every_row_is_refused_by_name(tmp_path: Path) -> None:
    frame = mixed_table(40).drop(columns=["id"])
    frame["blank"] = np.nan
    msg = _error(load_source, _cfg(_write(frame, tmp_path / "t.csv")).data, kind=DataError)
    assert "column 'blank'" in msg and "empty in every one of its 40 rows" in msg and "data.columns.drop=[blank]" in msg


def test_a_single_valued_column_is_a_warning_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = mixed_table(40).drop(columns=["id"])
    frame["same"] = "x"
    load_source(_cfg(_write(frame, tmp_path / "t.csv")).data)
    assert "warning: column 'same'" in capsys.readouterr().err


def test_an_identifier_column_asks_to_be_dropped_or_declared(tmp_path: Path) -> None:
    path = _write(mixed_table(40), tmp_path / "t.csv")
    msg = _error(load_source, _cfg(path).data, kind=DataError)
    assert "column 'id'" in msg and "like an identifier" in msg and "data.columns.drop=[id]" in msg
    assert load_source(_cfg(path, columns={"categorical": ["id"]}).data).columns[0].name == "id"


def test_parquet_nested_and_binary_columns_are_refused_by_name(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, column in (("tags", pa.array([["a"], ["b"]] * 10)), ("blob", pa.array([b"\x00", b"\x01"] * 10))):
        pq.write_table(pa.table({name: column, "label": pa.array([0, 1] * 10)}), tmp_path / f"{name}.parquet")
        msg = _error(load_source, _cfg(tmp_path / f"{name}.parquet", "parquet").data, kind=DataError)
        assert f"column {name!r}" in msg and "Parquet type" in msg and "data.columns.drop" in msg


def test_column_names_that_collide_once_normalized_are_refused(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("Income,income ,label\n1,2,a\n3,4,b\n")
    msg = _error(load_source, _cfg(tmp_path / "t.csv").data, kind=DataError)
    assert "'Income' and 'income '" in msg and "'income' once normalized" in msg


def test_text_in_a_declared_numeric_column_names_the_cell(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("size,label\n1,a\nbig,b\n3,a\n")
    msg = _error(load_source, _cfg(tmp_path / "t.csv", columns={"numeric": ["size"]}).data, kind=DataError)
    assert "column 'size'" in msg and "'big' on row 2" in msg and "data.columns.categorical" in msg


@pytest.mark.parametrize(("columns", "words"), [
    ({"drop": ["nope"]}, "data.columns.drop=['nope']"),
    ({"categorical": ["label"]}, "'label' is the target"),
    ({"categorical": ["noise"], "numeric": ["noise"]}, "in both data.columns.categorical and data.columns.numeric"),
])
def test_column_roles_that_name_no_feature_are_one_line(tmp_path: Path, columns: dict[str, Any], words: str) -> None:
    path = _write(mixed_table(40).drop(columns=["id"]), tmp_path / "t.csv")
    assert words in _error(load_source, _cfg(path, columns=columns).data, kind=DataError)


def test_column_settings_for_a_source_without_columns_are_refused() -> None:
    msg = _error(from_container, {"data": {"source": "digits", "columns": {"drop": ["x"]}}}, kind=ConfigError)
    assert "data.columns.drop=['x']" in msg and "csv or parquet" in msg
    msg = _error(from_container, {"data": {"source": "csv", "missing_target": "keep"}}, kind=ConfigError)
    assert "data.missing_target='keep'" in msg
    msg = _error(from_container, {"data": {"source": "csv", "columns": {"one_hot_max": 0}}}, kind=ConfigError)
    assert "data.columns.one_hot_max=0" in msg


def test_the_served_loader_reads_a_cell_as_the_table_reader_does() -> None:
    """The loader ships alone with the model (no gapline where it is served), so it repeats
    the table reader's rule for a categorical cell's text: the two must agree."""
    from gapline.data.table import _cell_text
    from gapline.tracking.shipped_loader import _text

    for value in (3, 3.0, np.float32(3.0), 2.5, True, np.bool_(False), "north", "3", np.int64(7), -0.0):
        assert _text(value) == _cell_text(value), value
