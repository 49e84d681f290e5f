"""The data side of tasks: labels read per task.type, auto only where unambiguous, one-line
refusals, per-task validation and stratified splits, meta task/target stats."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gapline.config.checks import from_container
from gapline.config.schema import Config
from gapline.config.tasks import target_stats
from gapline.core.errors import ConfigError, DataError, GaplineError
from gapline.data.bundled import load_breast_cancer, load_diabetes, load_digits
from gapline.data.dataset import Dataset, validate_dataset
from gapline.data.images import load_image_folder
from gapline.data.labels import read_labels
from gapline.data.prepare import load_source, split_source
from gapline.data.sources import load_csv, load_npz
from gapline.data.split import multilabel_strata, quantile_strata, stratified_split, task_split, task_subset


def _error(fn, *args, kind: type[Exception] = GaplineError, **kwargs) -> str:
    """Run fn expecting one of our errors; return its message after checking it is one line."""
    with pytest.raises(kind) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _cfg(data: dict[str, Any], task: str = "auto") -> Config:
    return from_container({"data": {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 3, **data}, "task": {"type": task}})


# ------------------------------------------------------------------ encoding per task


def test_csv_each_task_encoding(tmp_path: Path) -> None:
    p = _csv(tmp_path / "m.csv", "f,kind", ["1,cat", "2,dog", "3,cow", "4,cat"])
    multi = load_csv(p, "kind")
    assert multi.task == "multiclass" and multi.class_names == ("cat", "cow", "dog") and multi.y.tolist() == [0, 2, 1, 0]
    p = _csv(tmp_path / "b.csv", "f,on,flag", ["1,1,True", "2,0,False", "3,1,True", "4,0,False"])
    binary = load_csv(p, "flag")
    assert binary.task == "binary" and binary.class_names == ("False", "True") and binary.y.tolist() == [1, 0, 1, 0]
    assert load_csv(p, "flag", "multiclass").task == "multiclass"  # an explicit task reads it another way
    assert load_csv(p, "on", "regression").y.dtype == np.float32
    p = _csv(tmp_path / "r.csv", "f,flag,price", ["1,True,1.5", "2,False,2.25", "3,True,-3", "4,False,10"])
    reg = load_csv(p, "price")
    assert reg.task == "regression" and reg.class_names == ("price",)
    assert reg.y.dtype == np.float32 and reg.y.tolist() == [1.5, 2.25, -3.0, 10.0]
    assert reg.x.tolist() == [[1, 1], [2, 0], [3, 1], [4, 0]]  # a bool feature beside numbers
    p = _csv(tmp_path / "l.csv", "f,a,b,g", ["1,1,0,5", "2,0,1,6", "3,1,1,7", "4,0,0,8"])
    ml = load_csv(p, "label", label_columns=["a", "b"])
    assert ml.task == "multilabel" and ml.class_names == ("a", "b") and ml.y.dtype == np.int64
    assert ml.y.tolist() == [[1, 0], [0, 1], [1, 1], [0, 0]] and ml.x.tolist() == [[1, 5], [2, 6], [3, 7], [4, 8]]


def test_npz_each_task_encoding(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    x = np.zeros((6, 2))
    np.savez(p, x=x, y=np.array([-1, 1, 1, -1, 1, 1]))
    ds = load_npz(p)
    assert ds.task == "binary" and ds.class_names == ("-1", "1") and ds.y.tolist() == [0, 1, 1, 0, 1, 1]
    np.savez(p, x=x, y=np.array([0.5, 1, 2, 3, 4, 5]))
    ds = load_npz(p)
    assert ds.task == "regression" and ds.class_names == ("y",) and ds.y.dtype == np.float32
    y2 = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]])
    np.savez(p, x=x, y=y2)
    ds = load_npz(p)
    assert ds.task == "multilabel" and ds.class_names == ("label_0", "label_1", "label_2")
    assert ds.y.dtype == np.int64 and ds.y.shape == (6, 3)
    np.savez(p, x=x, y=y2.astype(bool), label_names=np.array(["red", "round", "sweet"]))
    ds = load_npz(p)
    assert ds.class_names == ("red", "round", "sweet") and ds.y.tolist() == y2.tolist()
    validate_dataset(ds, "d.npz")


def test_image_folder_tasks(tmp_path: Path) -> None:
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(2):
            Image.fromarray(np.full((4, 4), 9 * i, np.uint8), "L").save(tmp_path / label / f"{i}.png")
    ds = load_image_folder(tmp_path, (4, 4), "grayscale", "fail")
    assert ds.task == "multiclass" and ds.x.dtype == np.uint8 and ds.pixel_max == 255
    assert ds.x[:, 0, 0, 0].tolist() == [0, 9, 0, 9]
    assert load_image_folder(tmp_path, (4, 4), "grayscale", "fail", classes=["dog"]).y.tolist() == [1, 1]
    ds = load_image_folder(tmp_path, (4, 4), "grayscale", "fail", "binary")
    assert ds.task == "binary" and ds.class_names == ("cat", "dog")
    for task in ("regression", "multilabel"):
        msg = _error(load_image_folder, tmp_path, (4, 4), "grayscale", "fail", task)
        assert f"task.type='{task}'" in msg and str(tmp_path) in msg and "2 class folders" in msg
    (tmp_path / "emu").mkdir()
    msg = _error(load_image_folder, tmp_path, (4, 4), "grayscale", "fail", "binary")
    assert "task.type='binary'" in msg and "3 class folders (cat, dog, emu)" in msg


def test_bundled_sources() -> None:
    bc = load_breast_cancer()
    assert bc.x.shape == (569, 30) and bc.x.dtype == np.float32 and bc.kind == "tabular"
    assert bc.task == "binary" and bc.class_names == ("benign", "malignant")
    assert np.bincount(bc.y).tolist() == [357, 212]  # 212 malignant: the positive class
    assert load_breast_cancer("multiclass").task == "multiclass"
    validate_dataset(bc, "breast_cancer")
    db = load_diabetes()
    assert db.x.shape == (442, 10) and db.x.dtype == np.float32 and db.task == "regression"
    assert db.y.dtype == np.float32 and db.y.shape == (442,) and db.class_names == ("disease_progression",)
    assert 25 <= db.y.min() and db.y.max() <= 346
    validate_dataset(db, "diabetes")
    for fn, bad in ((load_breast_cancer, "regression"), (load_diabetes, "binary"), (load_digits, "multilabel")):
        msg = _error(fn, bad)
        assert f"task.type='{bad}' is not allowed" in msg


# ------------------------------------------------------------------ auto


@pytest.mark.parametrize(
    ("y", "task"),
    [
        (["b", "a", "b"], "binary"),
        (["b", "a", "c"], "multiclass"),
        ([True, False, True], "binary"),
        ([0.5, 1.0, 2.0], "regression"),
        ([3, 7, 3], "binary"),
        ([0, 1, 2, 0], "multiclass"),  # class indices 0..k-1
        ([4, 4, 4], "multiclass"),  # one class: validation then refuses it
    ],
)
def test_auto_resolves_only_the_unambiguous(y: list[Any], task: str) -> None:
    assert read_labels(np.array(y), source="s", field="f").task == task


@pytest.mark.parametrize("y", [[5, 6, 7, 5, 6], list(range(101)) * 3])
def test_auto_asks_when_integers_are_ambiguous(y: list[int]) -> None:
    msg = _error(read_labels, np.array(y), source="data file 'd.npz'", field="array 'y'", kind=DataError)
    assert "task.type='auto' cannot tell" in msg and "task.type=multiclass" in msg and "task.type=regression" in msg
    assert "'d.npz'" in msg and "array 'y'" in msg


def test_auto_asks_for_the_diabetes_target_as_a_csv(tmp_path: Path) -> None:
    db = load_diabetes()
    rows = [f"{a},{int(t)}" for a, t in zip(db.x[:, 0], db.y)]
    p = _csv(tmp_path / "diabetes.csv", "age,progression", rows)
    msg = _error(load_csv, p, "progression")
    assert "214 distinct integers" in msg and "data.label_column='progression'" in msg
    assert load_csv(p, "progression", "regression").task == "regression"
    assert load_csv(p, "progression", "multiclass").n_classes == 214


# ------------------------------------------------------------------ bad input, one line each


def test_regression_target_nan_and_inf(tmp_path: Path) -> None:
    p = _csv(tmp_path / "d.csv", "f,price", ["1,1.5", "2,inf", "3,2.5", "4,-inf"])
    msg = _error(load_csv, p, "price", "regression")
    assert "data.label_column='price'" in msg and "2 NaN/infinite target values" in msg and "line 3" in msg
    p = _csv(tmp_path / "e.csv", "f,price", ["1,1.5", "2,", "3,2.5"])  # an empty target: the row is dropped
    assert load_csv(p, "price", "regression").y.tolist() == [1.5, 2.5]
    msg = _error(load_csv, p, "price", "regression", missing_target="fail")
    assert "data.label_column='price'" in msg and "1 of 3 rows have no target" in msg and "row 2" in msg
    q = tmp_path / "d.npz"
    np.savez(q, x=np.zeros((3, 1)), y=np.array([1.5, np.nan, 2.0]))
    msg = _error(load_npz, q, "regression")
    assert "array 'y'" in msg and "1 NaN/infinite" in msg and "index 1" in msg


def test_binary_with_three_values_names_them(tmp_path: Path) -> None:
    p = _csv(tmp_path / "d.csv", "f,kind", ["1,cat", "2,dog", "3,emu"])
    msg = _error(load_csv, p, "kind", "binary")
    assert "data.label_column='kind'" in msg and "3 distinct values ('cat', 'dog', 'emu')" in msg
    assert "exactly 2 for task.type=binary" in msg


def test_multilabel_columns_not_zero_one(tmp_path: Path) -> None:
    p = _csv(tmp_path / "d.csv", "f,a,b", ["1,0,1", "2,1,2", "3,0,0"])
    for task in ("auto", "multilabel"):
        msg = _error(load_csv, p, "label", task, label_columns=["a", "b"])
        assert "data.label_columns=['a', 'b']" in msg and "column 'b' holds 2 at line 3" in msg
    q = tmp_path / "d.npz"
    np.savez(q, x=np.zeros((2, 1)), y=np.array([[0, 0.5], [1, 0]]))
    assert "label column 'label_1' holds 0.5 at index 0" in _error(load_npz, q)
    msg = _error(load_csv, p, "label", label_columns=["a"])
    assert msg.startswith("data.label_columns=['a'] is not allowed") and "at least 2" in msg
    msg = _error(load_csv, p, "label", label_columns=["a", "zz"])
    assert "data.label_columns=['a', 'zz']" in msg and "['f', 'a', 'b']" in msg


@pytest.mark.parametrize(
    ("header", "rows", "column", "task", "mentions"),
    [
        ("f,kind", ["1,cat", "2,dog"], "kind", "regression", ["task.type='regression'", "text", "'cat'"]),
        ("f,y", ["1,0", "2,1"], "y", "multilabel", ["task.type='multilabel'", "data.label_columns"]),
        ("f,y", ["1,0.5", "2,1.25"], "y", "multiclass", ["task.type='multiclass'", "0.5", "line 2"]),
        ("f,y", ["1,0.5", "2,1.25"], "y", "binary", ["task.type='binary'", "non-integer"]),
    ],
)
def test_task_that_does_not_fit(tmp_path: Path, header: str, rows: list[str], column: str, task: str, mentions: list[str]) -> None:
    msg = _error(load_csv, _csv(tmp_path / "d.csv", header, rows), column, task)
    assert "data.label_column='" + column + "'" in msg
    for text in mentions:
        assert text in msg, msg


def test_two_d_labels_for_a_single_label_task(tmp_path: Path) -> None:
    p = _csv(tmp_path / "d.csv", "f,a,b", ["1,0,1", "2,1,1"])
    msg = _error(load_csv, p, "label", "multiclass", label_columns=["a", "b"])
    assert "task.type='multiclass'" in msg and "auto or multilabel" in msg and "2 label columns" in msg
    msg = _error(load_csv, p, "label", "regression", label_columns=["a", "b"])
    assert "task.type='regression'" in msg


def test_one_hot_rows_ask_under_auto_and_read_as_classes_for_multiclass(tmp_path: Path) -> None:
    """A 0/1 matrix with one 1 per row is one-hot classes or one-label-per-row tags: auto asks."""
    p = _csv(tmp_path / "d.csv", "f,a,b,c", ["1,0,1,0", "2,1,0,0", "3,0,0,1", "4,0,1,0"])
    msg = _error(load_csv, p, "label", "auto", label_columns=["a", "b", "c"])
    assert "task.type='auto'" in msg and "exactly one 1" in msg and "task.type=multilabel" in msg
    ds = load_csv(p, "label", "multiclass", label_columns=["a", "b", "c"])
    assert ds.task == "multiclass" and ds.y.tolist() == [1, 0, 2, 1] and ds.class_names == ("a", "b", "c")


@pytest.mark.parametrize("labels", [[1, 2, 3, 4, 5] * 3, list(range(25)) * 2])
def test_whole_numbers_that_are_not_small_class_indices_ask(labels: list[int]) -> None:
    """Ratings 1..5 or 25 class indices could as well be quantities: auto asks, never guesses."""
    from gapline.data.labels import read_labels

    with pytest.raises(DataError) as err:
        read_labels(np.array(labels), "auto", source="data file 'd.csv'", field="data.label_column='y'")
    assert "task.type='auto' cannot tell" in str(err.value) and "task.type=regression" in str(err.value)
    assert read_labels(np.array(labels), "multiclass", source="s", field="f").task == "multiclass"


def test_npz_label_names_must_fit(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((2, 1)), y=np.array([[0, 1], [1, 0]]), label_names=np.array(["a"]))
    assert "'label_names'" in _error(load_npz, p) and "2 distinct" in _error(load_npz, p)
    np.savez(p, x=np.zeros((2, 1)), y=np.array([0, 1]), label_names=np.array(["a", "b"]))
    assert "'label_names'" in _error(load_npz, p)


def test_validate_per_task() -> None:
    x = np.zeros((4, 1), np.float32)
    constant = Dataset(x, np.array([[1, 0], [1, 1], [1, 0], [1, 1]]), ("a", "b"), "tabular", task="multilabel")
    msg = _error(validate_dataset, constant, "d.csv")
    assert "label 'a'" in msg and "1 in every one of its 4 rows" in msg
    flat = Dataset(x, np.full(4, 2.5, np.float32), ("price",), "tabular", task="regression")
    assert "at least 2 distinct values" in _error(validate_dataset, flat, "d.csv")
    validate_dataset(Dataset(x, np.arange(4, dtype=np.float32), ("price",), "tabular", task="regression"), "ok")
    wide = Dataset(x, np.array([0, 1, 2, 0]), ("a", "b", "c"), "tabular", task="binary")
    assert "expected exactly 2" in _error(validate_dataset, wide, "d.csv")


# ------------------------------------------------------------------ splits


def test_multilabel_strata_pool_rare_combinations() -> None:
    y = np.array([[0, 1]] * 10 + [[1, 1]] * 5 + [[1, 0]] * 2 + [[0, 0]] * 2)
    s = multilabel_strata(y)
    assert len(set(s[:10].tolist())) == 1 and len(set(s[10:15].tolist())) == 1
    assert len(set(s[15:].tolist())) == 1 and s[15] not in (s[0], s[10])  # 4 rare rows pooled
    s = multilabel_strata(y[:16])  # one rare row: joins the largest stratum
    assert s[15] == s[0] and len(set(s.tolist())) == 2


def test_multilabel_split_keeps_combinations_in_every_split() -> None:
    rng = np.random.default_rng(0)
    y = np.array([[0, 1]] * 40 + [[1, 1]] * 20 + [[1, 0]] * 10 + [[0, 0]] * 1)[rng.permutation(71)]
    parts = task_split(y, "multilabel", 0.2, 0.2, seed=5)
    assert sorted(np.concatenate(parts).tolist()) == list(range(71))
    for part in parts:
        combos = {tuple(r) for r in y[part].tolist()}
        assert {(0, 1), (1, 1), (1, 0)} <= combos
    # stratified: each combination's count in each split is within one row of proportional
    for seed in range(20):
        for part, fraction in zip(task_split(y, "multilabel", 0.2, 0.2, seed=seed), (0.6, 0.2, 0.2)):
            rows = [tuple(r) for r in y[part].tolist()]
            for combo, total in (((0, 1), 40), ((1, 1), 20), ((1, 0), 10)):
                assert abs(rows.count(combo) - total * fraction) <= 1, (seed, combo, fraction, rows.count(combo))
    again = task_split(y, "multilabel", 0.2, 0.2, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    assert any(not np.array_equal(a, b) for a, b in zip(parts, task_split(y, "multilabel", 0.2, 0.2, seed=6)))


def test_regression_split_spans_the_target_quantiles() -> None:
    y = np.random.default_rng(1).lognormal(size=200).astype(np.float32)
    s = quantile_strata(y)
    assert sorted(np.bincount(s).tolist()) == [20] * 10
    assert np.all(np.diff(s[np.argsort(y, kind="stable")]) >= 0)  # bins follow the order of y
    assert quantile_strata(y[:14]).max() == 3  # 14 // 3 = 4 bins of at least 3
    deciles = np.quantile(y, np.linspace(0, 1, 11))
    for part in task_split(y, "regression", 0.15, 0.15, seed=2):
        assert y[part].min() <= deciles[1] and y[part].max() >= deciles[9]
        assert np.all(np.bincount(s[part], minlength=10) >= 1)
    sub = task_subset(y, "regression", 0.25, seed=2)
    assert len(sub) == 50 and np.all(np.bincount(s[sub]) == 5)
    msg = _error(task_split, y[:2], "regression", 0.2, 0.2, 0)
    assert "only 2 samples" in msg and "at least 3" in msg


DIGITS_SPLIT_SHA256 = "c7d2797c6071fb03f07a3d24fff06685d6c689f29f17605dba522d26851d7725"
# The same split of x as uint8 pixels 0..240 (issue #14; float32 x / 16 before: sha256:e8b9f4ea...).
DIGITS_FINGERPRINT = "sha256:ef806ac346f103d12d140657eeed55fa9efd9d9f1411f129b3adbef91cb931cd"


def test_digits_default_split_unchanged() -> None:
    # The split's digest computed before tasks existed (main at f5f0a15); the fingerprint since
    # digits became uint8 pixels.
    y = load_digits().y
    parts = task_split(y, "multiclass", 0.15, 0.2, 42)
    for a, b in zip(parts, stratified_split(y, 0.15, 0.2, 42)):
        np.testing.assert_array_equal(a, b)
    digest = hashlib.sha256(b"".join(p.astype("<i8").tobytes() for p in parts)).hexdigest()
    assert digest == DIGITS_SPLIT_SHA256
    _, meta = split_source(Config())
    assert meta.fingerprint == DIGITS_FINGERPRINT and meta.task == "multiclass" and meta.target is None


# ------------------------------------------------------------------ split_source and meta


def test_regression_meta_target_from_the_training_split_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(100.0, 15.0, 60)
    p = tmp_path / "d.npz"
    np.savez(p, x=rng.normal(size=(60, 3)), y=y)
    cfg = _cfg({"source": "npz", "path": str(p), "train_fraction": 0.5})
    splits, meta = split_source(cfg)
    assert meta.task == "regression" and meta.class_names == ["y"]
    assert meta.counts["train"] == len(splits["train"]["y"]) < 60 * 0.6
    assert meta.target == target_stats(splits["train"]["y"])
    assert meta.target != target_stats(np.concatenate([s["y"] for s in splits.values()]))
    assert splits["train"]["y"].dtype == np.float32
    assert split_source(cfg)[1].fingerprint == meta.fingerprint  # float y fingerprints stably


def test_multilabel_split_source(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [f"{rng.normal():.3f},{i % 2},{int(i % 3 == 0)}" for i in range(30)]
    p = _csv(tmp_path / "d.csv", "f,a,b", rows)
    splits, meta = split_source(_cfg({"source": "csv", "path": str(p), "label_columns": ["a", "b"]}))
    assert meta.task == "multilabel" and meta.class_names == ["a", "b"] and meta.target is None
    assert splits["val"]["y"].shape[1] == 2 and meta.fingerprint.startswith("sha256:")
    msg = _error(split_source, _cfg({"source": "csv", "path": str(p), "label_columns": ["a", "b"], "classes": ["a", "b"]}), kind=ConfigError)
    assert msg.startswith("data.classes=['a', 'b'] is not allowed") and "task multilabel" in msg


def test_binary_from_two_selected_classes_and_explicit_task(tmp_path: Path) -> None:
    splits, meta = split_source(_cfg({"source": "digits", "classes": ["3", "8"]}, task="binary"))
    assert meta.task == "binary" and meta.class_names == ["3", "8"]
    assert set(np.unique(splits["train"]["y"]).tolist()) == {0, 1}
    msg = _error(split_source, _cfg({"source": "digits", "classes": ["1", "3", "8"]}, task="binary"), kind=ConfigError)
    assert "data.classes=['1', '3', '8']" in msg and "exactly 2" in msg
    _, meta = split_source(_cfg({"source": "breast_cancer"}))
    assert meta.task == "binary" and meta.source_digest == "sklearn.datasets.load_breast_cancer"
    # a dataset read for another task than the config's is refused, not silently used
    ds = load_source(_cfg({"source": "breast_cancer"}).data)
    msg = _error(split_source, _cfg({"source": "breast_cancer"}, task="multiclass"), ds, kind=DataError)
    assert "task.type='multiclass'" in msg and "'binary'" in msg


def test_multilabel_splits_keep_their_fractions_with_many_rare_combinations() -> None:
    """Each stratum gives val and test at least one row: rare label combinations are pooled
    until a stratum holds about 1 / the smallest fraction rows, so 8 labels (up to 256
    combinations) still split near 65/15/20 and train_fraction keeps its share."""
    from gapline.data.split import task_split, task_subset

    y = (np.random.default_rng(0).random((300, 8)) < 0.3).astype(np.int64)
    train, val, test = task_split(y, "multilabel", 0.15, 0.2, 42)
    assert abs(len(val) / 300 - 0.15) < 0.02 and abs(len(test) / 300 - 0.2) < 0.02
    assert abs(len(task_subset(y[train], "multilabel", 0.2, 42)) / len(train) - 0.2) < 0.02


@pytest.mark.parametrize(
    "values",
    [np.array(["a", "b", "a", "b"]), np.array(["a", "b", "c"]), np.array([0, 1, 2, 0]), np.array([0.5, 1.5, 2.0]),
     np.array([True, False, True]), np.array([3, 7, 11, 40, 41])],
    ids=["text2", "text3", "indices", "floats", "bools", "integers"],
)
@pytest.mark.parametrize("task", ["multilabel", "regression", "binary", "multiclass"])
def test_a_task_that_does_not_fit_offers_only_tasks_that_would(values: np.ndarray, task: str) -> None:
    """Every task an error lists after "expected" is then accepted for the same labels."""
    where = {"source": "data file 'x.csv'", "field": "data.label_column='label'"}
    try:
        read_labels(values, task, **where)
    except DataError as exc:
        match = re.search(r"task\.type='\w+' is not allowed: expected (.+?), because", str(exc))
        if match is None:
            return  # not a task misfit (e.g. binary on three classes names data.classes)
        offered = re.split(r", | or ", match.group(1))
        assert offered, str(exc)
        for other in offered:
            read_labels(values, other, **where)  # raises if the offer was false
