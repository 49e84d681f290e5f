"""Every row of the README's "what happens when…" table: one clear line, a non-zero exit,
nothing half-written for DVC to cache."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gapline import cli
from helpers.processes import free_port
from helpers.tables import mixed_table

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = cli.main(list(argv))
    err = capsys.readouterr().err.strip()
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _prepare_fails(capsys, *overrides: str) -> str:
    assert cli.main(["params", *overrides]) == 0
    capsys.readouterr()
    line = _fails(capsys, "prepare")
    assert not Path("data/prepared").exists()  # nothing half-written
    return line


# -- config -------------------------------------------------------------------------------

CONFIG_ROWS = [
    (["regularization=foo"], ["regularization/foo", "l2"]),
    (["train.epochz=3"], ["train.epochz", "epochs"]),
    (["train.epochs=abc"], ["train.epochs", "abc"]),
    (["train.learning_rate=-0.1"], ["train.learning_rate", "-0.1"]),
    (["train.ema=1.0"], ["train.ema", "[0, 1)"]),
    (["regularization.dropout=1.0"], ["regularization.dropout", "[0, 1)"]),
    (["train.epochs=0"], ["train.epochs", ">= 1"]),
    (["train.batch_size=0"], ["train.batch_size", ">= 1"]),
    (["data.train_fraction=0"], ["data.train_fraction", "(0, 1]"]),
    (["regularization.l2=-1"], ["regularization.l2", "-1"]),
    # your own model (README "Your own model"); a switch it cannot honour: test_custom_model*.py
    (["model=custom"], ["model.builder=''", "package.module:function"]),
    (["model=custom", "model.builder=nowhere.nets:build"], ["model.builder='nowhere.nets:build'", "importable"]),
    (["model=custom", "model.builder=my-models:build"], ["model.builder='my-models:build'", "import path"]),
    (["model.kwargs.depth=3"], ["model.kwargs={'depth': 3}", "model.family=custom only"]),
    (["model.freeze=none"], ["model.freeze='none'", "model.family=backbone only"]),
    # a family's sizes: auto (models/sizing.py) or a list
    (["model.hidden_units=big"], ["model.hidden_units='big'", "auto (sized from the input)", "list of positive integers"]),
    (["model=cnn", "model.conv_filters=[]"], ["model.conv_filters=[]", "auto", "a non-empty list"]),
    (["model=backbone", "model.hidden_units=auto"], ["model.hidden_units='auto'", "for model.family=backbone"]),
    (["model=backbone", "model.fine_tune.unfreeze=-2"], ["model.fine_tune.unfreeze='-2'", "all or a number"]),
    (["model=backbone", "model.backbone=VGG16"], ["model.backbone='VGG16'", "MobileNetV3Small"]),
    (["data.classes=[5]"], ["data.classes", "['5']", "at least 2 class names"]),
    (["data.classes=[5,6,5]"], ["data.classes", "5 repeated"]),
    (["data.workers=-1"], ["data.workers=-1", "an integer >= 0"]),
    (["train.verbose=loud"], ["train.verbose='loud'", "auto, bar, lines, quiet"]),
    (["train.progress_every=-1"], ["train.progress_every=-1", "[0, inf)"]),
    (["train.inference_memory=lots"], ["train.inference_memory='lots'", "a byte count of at least 1MiB"]),
    (["train.inference_memory=1KiB"], ["train.inference_memory='1KiB'", "256MiB"]),
    # tasks (README "Tasks"): a metric or loss the task does not have, when the task is set
    (["task=regression", "regularization.early_stopping.monitor=val_accuracy"],
     ["regularization.early_stopping.monitor='val_accuracy'", "val_rmse", "for task regression"]),
    (["task=regression", "retrain.metric=test_auc"], ["retrain.metric='test_auc'", "test_rmse", "for task regression"]),
    (["task=binary", "task.loss=huber"], ["task.loss='huber'", "crossentropy", "for task binary"]),
    (["task=multilabel", "task.class_weight=balanced"], ["task.class_weight='balanced'", "for task multilabel"]),
    (["task=classify"], ["task/classify", "regression"]),
    # retraining's drift gate (README "Scheduled retraining")
    (["retrain.drift=sometimes"], ["retrain.drift='sometimes'", "one of report, require, block"]),
    (["retrain.max_drift=1.5"], ["retrain.max_drift=1.5", "a number in [0, 1]"]),
    (["retrain.remote=webdav://host/x"], ["retrain.remote='webdav://host/x'", "the name of a remote in .dvc/config"]),
    (["retrain.pull=maybe"], ["retrain.pull", "maybe"]),
    # the study's tuning and comparison (README "The regularization study")
    (["+study.search.nope={regularization.l2:[0.1]}"], ["study.search='nope'", "an arm to tune", "l2"]),
    (["~study.search.l2", "+study.search.l2={regularization.l3:[0.1]}"],
     ["study.search.l2='regularization.l3'", "config keys", "groups"]),
    (["study.search.l2={regularization.l2:[]}"], ["study.search.l2.regularization.l2=[]", "a non-empty list"]),
    (["study.alpha=0.7"], ["study.alpha=0.7", "(0, 0.5]"]),
    (["study.baseline=nope"], ["study.baseline='nope'", "one of the arms"]),
    (["study.objective=val_auc"], ["study.objective='val_auc'", "val_loss", "val_nll"]),
]


@pytest.mark.parametrize("overrides,mentions", CONFIG_ROWS)
def test_bad_config_is_one_line_and_writes_nothing(project: Path, capsys, overrides, mentions) -> None:
    line = _fails(capsys, "params", *overrides)
    for text in mentions:
        assert text in line
    assert not (project / "params.yaml").exists()


@pytest.mark.parametrize("stage", ["check", "prepare", "augment", "train", "evaluate"])
def test_hand_broken_params_yaml_is_one_line_naming_line_and_column(project: Path, capsys, stage: str) -> None:
    assert cli.main(["params"]) == 0
    capsys.readouterr()
    lines = (project / "params.yaml").read_text(encoding="utf-8").splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.strip().startswith("epochs:"))
    lines[at] = lines[at].replace("epochs:", "epochs: [", 1)  # an unclosed flow sequence
    (project / "params.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    line = _fails(capsys, stage)
    assert "params.yaml:" in line and "invalid YAML" in line
    row, col = line.split("params.yaml:")[1].split(":")[:2]
    assert int(row) in (at + 1, at + 2) and int(col) >= 1  # PyYAML marks the token after the error
    assert not Path("data/prepared").exists() and not Path("reports").exists()


# -- data ---------------------------------------------------------------------------------


def _images(root: Path, counts: dict[str, int], size=(8, 8), mode="L") -> Path:
    rng = np.random.default_rng(0)
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 255, (*size, 3) if mode == "RGB" else size, dtype=np.uint8)
            Image.fromarray(arr, mode).save(root / label / f"{i}.png")
    return root


def _npz(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    np.savez(path, x=x, y=y)
    return path


DataMaker = Callable[[Path], list[str]]


def _missing(p: Path) -> list[str]:
    return ["data=npz", f"data.path={p / 'nope.npz'}"]


def _empty_folder(p: Path) -> list[str]:
    (p / "imgs").mkdir()
    return ["data=image_folder", f"data.path={p / 'imgs'}"]


def _tiny_class(p: Path) -> list[str]:
    _images(p / "imgs", {"a": 10, "b": 2})
    return ["data=image_folder", f"data.path={p / 'imgs'}", "data.image_size=[8,8]"]


def _corrupt(p: Path) -> list[str]:
    _images(p / "imgs", {"a": 6, "b": 6})
    (p / "imgs" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return ["data=image_folder", f"data.path={p / 'imgs'}", "data.image_size=[8,8]", "data.on_corrupt=fail"]


def _mismatch(p: Path) -> list[str]:
    return ["data=npz", f"data.path={_npz(p / 'd.npz', np.zeros((10, 4)), np.zeros(9))}"]


def _missing_key(p: Path) -> list[str]:
    np.savez(p / "d.npz", features=np.zeros((10, 4)), y=np.zeros(10))
    return ["data=npz", f"data.path={p / 'd.npz'}"]


def _csv_no_label(p: Path) -> list[str]:
    (p / "d.csv").write_text("a,b\n1,2\n3,4\n")
    return ["data=csv", f"data.path={p / 'd.csv'}"]


def _csv_text_in_numeric(p: Path) -> list[str]:
    (p / "d.csv").write_text("a,label\n1,x\nhello,y\n3,x\n")
    return ["data=csv", f"data.path={p / 'd.csv'}", "data.columns.numeric=[a]"]


def _mixed(p: Path, name: str, **extra: Any) -> Path:
    frame = mixed_table(40)
    for column, values in extra.items():
        frame[column] = values
    path = p / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _empty_column(p: Path) -> list[str]:
    return ["data=csv", f"data.path={_mixed(p, 'e.csv', blank=np.nan)}", "data.columns.drop=[id]"]


def _identifier(p: Path) -> list[str]:
    return ["data=csv", f"data.path={_mixed(p, 'i.csv')}"]


def _nested_parquet(p: Path) -> list[str]:
    return ["data=parquet", f"data.path={_mixed(p, 'n.parquet', tags=[['a', 'b']] * 40)}", "data.columns.drop=[id]"]


def _not_parquet(p: Path) -> list[str]:
    (p / "t.parquet").write_text("a,label\n1,x\n")
    return ["data=parquet", f"data.path={p / 't.parquet'}"]


def _colliding_names(p: Path) -> list[str]:
    return ["data=csv", f"data.path={_mixed(p, 'c.csv', **{'City ': ['x'] * 40})}", "data.columns.drop=[id]"]


def _target_missing_refused(p: Path) -> list[str]:
    path = _table(p, "r.csv", "target", lambda i: "" if i == 5 else f"{i * 1.5 + 0.25}")
    return ["data=csv", f"data.path={path}", "data.label_column=target", "task=regression", "data.missing_target=fail"]


def _nan(p: Path) -> list[str]:
    x = np.random.default_rng(0).random((30, 4))
    x[3, 1] = np.nan
    return ["data=npz", f"data.path={_npz(p / 'd.npz', x, np.arange(30) % 3)}"]


def _unknown_class(p: Path) -> list[str]:
    return ["data.classes=[5,x]"]


def _table(p: Path, name: str, header: str, label: Callable[[int], str]) -> Path:
    rng = np.random.default_rng(0)
    rows = [",".join(f"{v:.3f}" for v in rng.random(3)) + f",{label(i)}" for i in range(40)]
    (p / name).write_text(f"a,b,c,{header}\n" + "\n".join(rows) + "\n")
    return p / name


def _regression_inf(p: Path) -> list[str]:
    path = _table(p, "r.csv", "target", lambda i: "inf" if i == 5 else f"{i * 1.5 + 0.25}")
    return ["data=csv", f"data.path={path}", "data.label_column=target", "task=regression"]


def _binary_three_values(p: Path) -> list[str]:
    path = _table(p, "b.csv", "label", lambda i: ("yes", "no", "maybe")[i % 3])
    return ["data=csv", f"data.path={path}", "task=binary"]


def _multilabel_not_01(p: Path) -> list[str]:
    path = _table(p, "m.csv", "l1,l2", lambda i: f"{i % 2},{2 if i == 7 else (i // 2) % 2}")
    return ["data=csv", f"data.path={path}", "data.label_columns=[l1,l2]"]


def _task_does_not_fit(p: Path) -> list[str]:
    path = _table(p, "t.csv", "label", lambda i: ("yes", "no")[i % 2])
    return ["data=csv", f"data.path={path}", "task=regression"]


def _task_ambiguous(p: Path) -> list[str]:
    path = _table(p, "a.csv", "label", lambda i: str(i * 3 + 5))
    return ["data=csv", f"data.path={path}"]


def _single_class(p: Path) -> list[str]:
    return ["data=npz", f"data.path={_npz(p / 'd.npz', np.ones((30, 4)), np.zeros(30))}"]


DATA_ROWS: list[tuple[str, DataMaker, list[str]]] = [
    ("data path missing", _missing, ["nope.npz", "does not exist"]),
    ("empty image folder", _empty_folder, ["imgs"]),
    ("a class with too few images", _tiny_class, ["'b'", "2"]),
    ("corrupt image (on_corrupt=fail)", _corrupt, ["broken.png"]),
    ("npz x/y lengths differ", _mismatch, ["10", "9"]),
    ("npz without x", _missing_key, ["'x'", "features"]),
    ("CSV without the label column", _csv_no_label, ["data.label_column='label'", "['a', 'b']"]),
    ("text in a column declared numeric", _csv_text_in_numeric, ["column 'a'", "'hello' on row 2", "data.columns.numeric"]),
    ("a column empty in every row", _empty_column, ["column 'blank'", "empty in every one of its 40 rows", "data.columns.drop=[blank]"]),
    ("a text column with one value per row", _identifier, ["column 'id'", "like an identifier", "data.columns.drop=[id]"]),
    ("a Parquet column of a nested type", _nested_parquet, ["column 'tags'", "Parquet type list<", "data.columns.drop"]),
    ("a file that is not Parquet", _not_parquet, ["t.parquet", "cannot be read as Parquet", "expected a Parquet file"]),
    ("column names that collide once normalized", _colliding_names, ["'city' and 'City '", "once normalized"]),
    ("rows without a target, refused", _target_missing_refused,
     ["data.label_column='target'", "1 of 40 rows have no target", "row 6", "data.missing_target=drop"]),
    ("NaN in the data", _nan, ["NaN"]),
    ("a single class", _single_class, ["single-class"]),
    ("a regression target that is infinite", _regression_inf, ["data.label_column='target'", "1 NaN/infinite", "line 7"]),
    ("a binary column with three values", _binary_three_values, ["data.label_column='label'", "3 distinct", "'maybe'", "task.type=binary"]),
    ("multilabel columns that are not 0/1", _multilabel_not_01, ["data.label_columns=['l1', 'l2']", "'l2' holds 2", "only 0 or 1"]),
    ("a task that does not fit the data", _task_does_not_fit, ["task.type='regression'", "holds text"]),
    ("task=auto with labels that fit two tasks", _task_ambiguous, ["task.type='auto'", "task.type=multiclass", "task.type=regression"]),
    ("data.classes names an unknown class", _unknown_class, ["data.classes=['5', 'x']", "x is not among them", "0, 1, 2, 3, 4, 5, 6, 7, 8, 9"]),
]


@pytest.mark.parametrize("name,make,mentions", DATA_ROWS, ids=[r[0] for r in DATA_ROWS])
def test_bad_data_is_one_line_and_leaves_no_output(project: Path, capsys, name, make, mentions) -> None:
    line = _prepare_fails(capsys, *make(project))
    for text in mentions:
        assert text in line, line


def test_metric_the_resolved_task_lacks_stops_train_before_any_run(project: Path, capsys) -> None:
    """task=auto: the task is known once prepare read the labels; train checks the keys that
    depend on it before the MLflow run opens (none is left RUNNING, no model is written)."""
    path = _table(project, "r.csv", "target", lambda i: f"{i * 1.5 + 0.25}")
    overrides = ["data=csv", f"data.path={path}", "data.label_column=target", "regularization.early_stopping.monitor=val_accuracy",
                 f"tracking.uri=sqlite:///{project / 'mlflow.db'}", "tracking.system_metrics=false"]
    assert cli.main(["params", *overrides]) == 0
    assert cli.main(["prepare"]) == 0 and cli.main(["augment"]) == 0
    capsys.readouterr()
    line = _fails(capsys, "train")
    assert "regularization.early_stopping.monitor='val_accuracy'" in line and "for task regression" in line
    assert not Path("models/model.keras").exists() and not Path("reports/train.json").exists()
    assert not (project / "mlflow.db").exists()  # the store was never even opened: no run at all


@pytest.mark.parametrize("damage", ["deleted", "cut short"])
def test_a_missing_or_short_split_is_one_line_naming_it(project: Path, capsys, damage: str) -> None:
    """A prepared split deleted or truncated by hand (or a stage run out of order): the stage
    reading it names the file and what writes it, and writes nothing."""
    assert cli.main(["params", "tracking.enabled=false", "train.epochs=1"]) == 0
    assert cli.main(["prepare"]) == 0 and cli.main(["augment"]) == 0
    x = Path("data/prepared/val/x.npy")
    if damage == "deleted":
        x.unlink()
    else:
        x.write_bytes(x.read_bytes()[:-100])
    capsys.readouterr()
    line = _fails(capsys, "train")
    assert "data/prepared/val/x.npy" in line
    assert ("does not exist" in line and "dvc repro" in line) or "cannot be read" in line, line
    assert not Path("models/model.keras").exists()


def test_corrupt_image_skipped_and_counted_when_configured(project: Path, capsys) -> None:
    args = _corrupt(project)[:-1] + ["data.on_corrupt=skip"]
    assert cli.main(["params", *args]) == 0
    assert cli.main(["prepare"]) == 0
    import json

    meta = json.loads(Path("data/prepared/meta.json").read_text())
    assert meta["skipped_corrupt"] == 1
    assert sum(meta["counts"].values()) == 12


def test_mixed_sizes_and_channels_are_resized(project: Path, capsys) -> None:
    _images(project / "imgs", {"a": 4}, size=(8, 8), mode="L")
    _images(project / "imgs", {"b": 4}, size=(12, 10), mode="RGB")
    assert cli.main(["params", "data=image_folder", f"data.path={project / 'imgs'}", "data.image_size=[6,6]"]) == 0
    assert cli.main(["prepare"]) == 0
    x = np.load("data/prepared/train/x.npy")
    assert x.shape[1:] == (6, 6, 1)


# -- fuzzing the config surface ----------------------------------------------------------

KEYS = [
    "train.epochs", "train.batch_size", "train.learning_rate", "regularization.dropout",
    "regularization.l2", "regularization.l1", "data.train_fraction", "data.val_fraction",
    "augment.copies", "augment.rotation", "model.hidden_units", "model.family", "train.optimizer",
    "regularization.early_stopping.patience", "bogus.key", "train.bogus",
]
VALUES = st.one_of(
    st.integers(-5, 1000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(float(f))),
    st.sampled_from(["abc", "''", "[]", "[1,2]", "[0]", "null", "true", "mlp", "cnn", "adam", "1e309", "-0.0"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=3))
def test_fuzzed_overrides_give_a_valid_config_or_one_clean_line(project: Path, capsys, pairs) -> None:
    """Never a traceback: either params.yaml is written and loads, or one `error:` line."""
    overrides = [f"{k}={v}" for k, v in pairs]
    code = cli.main(["params", *overrides])
    captured = capsys.readouterr()
    if code == 0:
        from gapline.config.params import load_params

        load_params("params.yaml")
    else:
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), captured.err


# -- an unreachable tracking server -------------------------------------------------------


def test_unreachable_server_fails_before_training_or_falls_back(tmp_path: Path, monkeypatch, capsys) -> None:
    from mlflow import MlflowClient

    from gapline import tracking
    from gapline.config.checks import from_container
    from gapline.tracking import store

    monkeypatch.chdir(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    cfg = from_container({"tracking": {"uri": dead, "system_metrics": False}})
    with pytest.raises(tracking.TrackingError) as info:
        with tracking.run(cfg):
            pytest.fail("the body must not run: training would start without tracking")
    assert dead in str(info.value) and "\n" not in str(info.value)

    monkeypatch.setattr(store, "_fallback", {})
    cfg = from_container({"tracking": {"uri": dead, "system_metrics": False, "on_unreachable": "local"}})
    with tracking.run(cfg) as active:
        run_id = active.info.run_id
    assert "not reachable" in capsys.readouterr().err
    run = MlflowClient(tracking_uri="sqlite:///mlflow.db").get_run(run_id)
    assert run.info.status == "FINISHED"
    assert dead in run.data.tags["tracking.fallback"]
    assert tracking.resolve_uri(cfg.tracking) == tracking.DEFAULT_URI
