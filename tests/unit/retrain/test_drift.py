"""The drift gate of ``gapline retrain`` (gapline.retrain.drift): generated data that drifts
(shifted or scaled features, brighter or noisier images, other class shares) is flagged, a
fresh sample of the same distribution is not; then each ``retrain.drift`` policy through a real
retrain against a real MLflow store (sqlite in tmp), with a champion whose reference was stored
the way a retrain stores it. The pipeline itself is never run here (test_retrain.py runs it):
where a policy lets the retrain go on to train, a stand-in for ``dvc repro`` stops it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gapline.retrain import drift as D
from gapline.retrain import drift_gate as G
from gapline.retrain.drift_report import write_report
from helpers.prepared_meta import make_meta

RNG_SEED = 3


def _tabular(n: int, seed: int, shift: float = 0.0, scale: float = 1.0, d: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * np.linspace(0.5, 3.0, d) + np.arange(d)
    x[:, : d // 2] = x[:, : d // 2] * scale + shift * np.linspace(0.5, 3.0, d)[: d // 2]
    y = (rng.random(n) < 0.4).astype(np.int64) + (rng.random(n) < 0.3)  # three classes, uneven
    return x.astype(np.float32), y


def _images(n: int, seed: int, brighter: int = 0, noise: float = 0.0, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Blobs of two classes: class 1 is lit at the top left, class 0 at the bottom right."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    yy, xx = np.mgrid[0:size, 0:size]
    x = np.empty((n, size, size), np.float64)
    for i in range(n):
        cy, cx = (2, 2) if y[i] else (5, 5)
        cy, cx = cy + rng.normal(0, 0.7), cx + rng.normal(0, 0.7)
        x[i] = 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(1.5, 2.5))) + rng.normal(20, 4)
    x = x + brighter + (rng.normal(0, noise, x.shape) if noise else 0)
    return np.clip(x, 0, 255).astype(np.uint8), y


def _summary(tmp: Path, x: np.ndarray, y: np.ndarray, name: str, **meta_extra) -> D.Summary:
    """The summary of ``x``/``y`` written as a prepared folder's training split."""
    from gapline.data.store import write_split

    folder = tmp / name
    for split in ("train", "val", "test"):
        write_split(folder / split, x, y)
    meta = make_meta(task="multiclass", pixel_max=255 if x.dtype == np.uint8 else 0, fingerprint=name, **meta_extra)
    return D.summarize(folder, meta)


# --------------------------------------------------------------------------------------
# Summaries and tests
# --------------------------------------------------------------------------------------


def test_a_summary_samples_a_seeded_subset_of_the_training_split(tmp_path: Path) -> None:
    x, y = _tabular(3000, 0)
    first = _summary(tmp_path, x, y, "a")
    again = _summary(tmp_path, x, y, "b")
    assert first.values.shape == (D.SAMPLE_ROWS, 12 + 1)  # the features and the label
    assert np.array_equal(first.values, again.values)  # seeded: the same rows every time
    assert first.rows == 3 * 3000 and first.train_rows == 3000
    assert first.columns[-1] == "label" and first.categorical == ["label"]
    # the sampled rows are rows of the split, in file order
    rows = D.sample_rows(3000)
    assert np.array_equal(first.values[:, :12], x[rows]) and np.all(np.diff(rows) > 0)


def test_image_summary_is_pixel_statistics_in_units_of_pixel_max(tmp_path: Path) -> None:
    x, y = _images(200, 0)
    s = _summary(tmp_path, x, y, "img")
    assert s.kind == "image"
    assert s.columns[:5] == ["pixel_mean", "pixel_std", "pixel_p05", "pixel_p50", "pixel_p95"]
    assert sum(c.startswith("cell_") for c in s.columns) == 16
    assert 0.0 <= s.values[:, :-1].min() and s.values[:, :-1].max() <= 1.0
    assert s.values[:, 0] == pytest.approx(x.reshape(200, -1).mean(1) / 255)
    rgb = np.repeat(x[..., None], 3, axis=3)
    assert "channel_2_mean" in _summary(tmp_path, rgb, y, "rgb").columns


def test_label_columns_per_task() -> None:
    """A multilabel task's columns are named by meta's class_names (its label names), numbered
    when they do not fit; a regression target is one numeric column, a class one categorical."""
    y = np.array([[0, 1], [1, 0], [1, 1]])
    _, names, categorical = D.label_columns(y, make_meta(task="multilabel", class_names=["cat", "dog"]))
    assert names == categorical == ["label:cat", "label:dog"]
    assert D.label_columns(y, make_meta(task="multilabel", class_names=["cat"]))[1] == ["label:0", "label:1"]
    assert D.label_columns(np.array([0.5, 1.5]), make_meta(task="regression", class_names=["y"]))[1:] == (["target"], [])
    assert D.label_columns(np.array([0, 1]), make_meta())[1:] == (["label"], ["label"])


@pytest.mark.parametrize(
    ("kind", "current", "drifts"),
    [
        ("tabular", dict(seed=1), False),  # a fresh sample of the same distribution
        ("tabular", dict(seed=1, shift=0.5), True),  # half the features moved by half a std
        ("tabular", dict(seed=1, scale=1.6), True),  # half the features spread wider
        ("image", dict(seed=1), False),
        ("image", dict(seed=1, brighter=40), True),
        ("image", dict(seed=1, noise=25.0), True),
    ],
)
def test_drift_is_detected_in_drifted_data_only(tmp_path: Path, kind: str, current: dict, drifts: bool) -> None:
    make = _tabular if kind == "tabular" else _images
    reference = _summary(tmp_path, *make(1500, 0), "ref")
    now = _summary(tmp_path, *make(1500, **current), "cur")
    result = D.compare(reference, now, "report", 0.25)
    assert result.status == "checked" and result.n_columns == len(now.columns)
    assert result.detected is drifts, [(c.name, c.p_value) for c in result.columns]
    if drifts:
        assert result.share > 0.25
    else:
        assert result.share <= 0.15  # each column's false alarms run at about p = 0.05
    assert not result.grew  # as many rows as the champion's


def test_class_shares_that_moved_drift_the_label(tmp_path: Path) -> None:
    x, y = _tabular(1500, 0)
    reference = _summary(tmp_path, x, y, "ref")
    x2, _ = _tabular(1500, 1)
    y2 = np.where(np.random.default_rng(5).random(1500) < 0.5, 2, 0)  # classes 0 and 2, half each
    result = D.compare(reference, _summary(tmp_path, x2, y2, "cur"), "report", 0.5)
    label = next(c for c in result.columns if c.name == "label")
    assert label.test == "chi2" and label.drifted and label.p_value < 1e-6
    assert not result.detected  # one column of 13: below max_drift


def test_other_columns_count_as_all_drifted(tmp_path: Path) -> None:
    reference = _summary(tmp_path, *_tabular(300, 0, d=12), "ref")
    now = _summary(tmp_path, *_tabular(300, 0, d=13), "cur")
    result = D.compare(reference, now, "block", 0.5)
    assert result.share == 1.0 and result.detected and "columns changed" in result.note


def test_a_schema_change_writes_strict_json(tmp_path: Path) -> None:
    """No NaN for the moments of columns that changed: jq and strict parsers read drift.json."""
    reference = _summary(tmp_path, *_tabular(300, 0, d=12), "ref")
    now = _summary(tmp_path, *_tabular(300, 0, d=13), "cur")
    result = D.compare(reference, now, "block", 0.5)
    write_report(tmp_path / "drift", result, reference, now, "blocked")
    text = (tmp_path / "drift" / "drift.json").read_text()
    json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} in drift.json"))
    assert "-</td>" in (tmp_path / "drift" / "drift.html").read_text()


def test_a_reference_of_another_format_is_not_compared(tmp_path: Path) -> None:
    """After an upgrade that changes the summary, `block` must not refuse every retrain."""
    import dataclasses

    reference = _summary(tmp_path, *_tabular(300, 0), "ref")
    now = _summary(tmp_path, *_tabular(300, 0), "cur")
    result = D.compare(dataclasses.replace(reference, format=D.FORMAT + 1), now, "block", 0.5)
    assert result.status == "no-reference" and not result.known and not result.detected
    assert "format" in result.note


def test_image_statistics_do_not_depend_on_the_chunking(tmp_path: Path, monkeypatch) -> None:
    """Summarized IMAGE_CHUNK sampled rows at a time: the same numbers as all at once."""
    x, y = _images(100, 0)
    whole = _summary(tmp_path, x, y, "whole")
    monkeypatch.setattr(D, "IMAGE_CHUNK", 7)
    chunked = _summary(tmp_path, x, y, "chunked")
    np.testing.assert_array_equal(whole.values, chunked.values)
    np.testing.assert_allclose(whole.values[:, 0], x.reshape(100, -1).mean(1) / 255, rtol=1e-5)


def test_more_rows_is_growth_and_max_drift_is_a_strict_bound(tmp_path: Path) -> None:
    reference = _summary(tmp_path, *_tabular(500, 0), "ref")
    now = _summary(tmp_path, *_tabular(800, 1), "cur")
    result = D.compare(reference, now, "require", 1.0)
    assert result.grew and result.rows_current == 2400 and result.rows_reference == 1500
    assert not result.detected  # a share can never exceed 1
    result.max_drift = 0.0
    assert result.detected is (result.n_drifted > 0)


def test_the_report_is_html_and_json_replaced_as_a_whole(tmp_path: Path) -> None:
    reference = _summary(tmp_path, *_images(300, 0), "ref")
    now = _summary(tmp_path, *_images(300, 1, brighter=40), "cur")
    result = D.compare(reference, now, "block", 0.5, champion="4", reference_run="abc")
    folder = tmp_path / "reports" / "drift"
    (folder).mkdir(parents=True)
    (folder / "stale.txt").write_text("from an older report")
    paths = write_report(folder, result, reference, now, "blocked")
    assert sorted(p.name for p in folder.iterdir()) == ["drift.html", "drift.json"] == sorted(p.name for p in paths)
    assert [p.name for p in folder.parent.iterdir()] == ["drift"]  # no temporary left behind
    summary = json.loads((folder / "drift.json").read_text())
    assert summary["drift_share"] == pytest.approx(result.share) and summary["decision"] == "blocked"
    assert summary["n_drifted_columns"] == result.n_drifted and len(summary["columns"]) == result.n_columns
    page = (folder / "drift.html").read_text()
    assert "pixel_mean" in page and "<svg" in page and "retrain.drift=block" in page and "<script" not in page


# --------------------------------------------------------------------------------------
# The policies, through a real retrain and a real MLflow store
# --------------------------------------------------------------------------------------

NAME = "gapline"


class PipelineStarted(Exception):
    """The stand-in for ``dvc repro``: the retrain went on to train."""


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store with its tables made: creating them takes ~6 s, a copy none."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    uri = f"sqlite:///{path}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments()
    return path


@pytest.fixture()
def no_pipeline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, empty_store: Path) -> list[Path]:
    import shutil

    shutil.copyfile(empty_store, tmp_path / "mlflow.db")  # where the autouse fixture points MLflow
    calls: list[Path] = []

    def run_pipeline(root: Path, force: bool) -> None:
        calls.append(root)
        raise PipelineStarted("training would start here")

    monkeypatch.setattr("gapline.retrain.job.run_pipeline", run_pipeline)
    return calls


def _data(project: Path, x: np.ndarray, y: np.ndarray) -> list[str]:
    np.savez(project / "data.npz", x=x, y=y)
    return ["data=npz", f"data.path={project / 'data.npz'}", "tracking.system_metrics=false"]


def _crown(project: Path, overrides: list[str]) -> str:
    """A champion trained (as far as retrain can tell) from the data now in data.npz: its
    version carries that data's state and a reference stored the way a retrain stores it."""
    import contextlib

    from mlflow import MlflowClient

    from gapline import tracking
    from gapline.config.params import compose_config
    from gapline.data.prepare import write_prepared
    from gapline.retrain.records import run_config
    from gapline.retrain.state import current_state

    cfg = compose_config(overrides, project)
    with contextlib.chdir(project):
        prepared = project / "old-prepared"
        meta = write_prepared(cfg, prepared)
        state = current_state(cfg, project, fingerprint=meta.fingerprint)
        with tracking.run(run_config(cfg), run_name="old-retrain") as active:
            G.log_reference(D.summarize(prepared, meta), project / "scratch")
            run_id = active.info.run_id
    client = MlflowClient()
    client.create_registered_model(NAME)
    version = client.create_model_version(NAME, str(project / "no-model"), run_id).version
    for key, value in {**state.tags(), G.TAG_REFERENCE: run_id}.items():
        client.set_model_version_tag(NAME, version, key, value)
    client.set_registered_model_alias(NAME, "champion", version)
    return str(version)


def _retrain_run(run_id: str):
    from mlflow import MlflowClient

    return MlflowClient().get_run(run_id)


def _no_run_left_running() -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments()]
    assert {r.info.status for r in client.search_runs(ids)} <= {"FINISHED", "FAILED"}


DATA = {
    "tabular": {"same": lambda: _tabular(600, 1), "drifted": lambda: _tabular(600, 1, shift=0.6),
                "grown": lambda: _tabular(900, 1), "champion": lambda: _tabular(600, 0)},
    "image": {"same": lambda: _images(600, 1), "drifted": lambda: _images(600, 1, brighter=40),
              "grown": lambda: _images(900, 1), "champion": lambda: _images(600, 0)},
}


@pytest.mark.parametrize(
    ("kind", "policy", "now", "gate"),
    [
        ("image", "block", "drifted", "blocked"),
        ("tabular", "block", "same", "train"),
        ("tabular", "require", "same", "skipped"),
        ("image", "require", "drifted", "train"),
        ("tabular", "require", "grown", "train"),
        ("tabular", "report", "drifted", "train"),
    ],
)
def test_each_policy_gates_the_retrain_before_training(
    conf_project: Path, no_pipeline: list[Path], kind: str, policy: str, now: str, gate: str
) -> None:
    from mlflow import MlflowClient

    from gapline.retrain import ExitCode, retrain

    project = conf_project
    champion = _crown(project, _data(project, *DATA[kind]["champion"]()))
    overrides = [*_data(project, *DATA[kind][now]()), f"retrain.drift={policy}", "retrain.max_drift=0.3"]
    lines: list[str] = []
    if gate == "train":
        with pytest.raises(PipelineStarted):
            retrain(overrides, root=project, echo=lines.append)
        assert no_pipeline == [project]
    else:
        outcome = retrain(overrides, root=project, echo=lines.append)
        assert no_pipeline == []  # nothing was trained
        assert outcome.decision == gate
        assert outcome.exit_code == (ExitCode.KEPT if gate == "blocked" else ExitCode.OK)
    report = json.loads((project / "reports" / "retrain.json").read_text())
    drift = report["drift"]
    assert drift["status"] == "checked" and drift["policy"] == policy and drift["drift_detected"] is (now == "drifted")
    assert drift["data_grew"] is (now == "grown")
    assert report["changed"] == ["data"] and report["drift_policy"] == policy
    aliases = MlflowClient().get_registered_model(NAME).aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": champion}  # never moved
    summary = json.loads((project / "reports" / "drift" / "drift.json").read_text())
    assert summary["decision"] == gate and summary["drift_share"] == pytest.approx(drift["drift_share"])
    assert (project / "reports" / "drift" / "drift.html").is_file()
    assert any(line.startswith("retrain: drift check: ") for line in lines)

    run = _retrain_run(report["mlflow_run_id"])
    assert run.info.status == ("FAILED" if gate == "train" else "FINISHED")
    assert run.data.metrics["drift_share"] == pytest.approx(drift["drift_share"])
    assert run.data.metrics["n_drifted_features"] == drift["n_drifted_columns"]
    assert run.data.params["retrain.drift"] == policy and run.data.params["retrain.max_drift"] == "0.3"
    assert run.data.tags["retrain.drift_gate"] == gate
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "drift")}
    assert {"drift/drift.html", "drift/drift.json"} <= artifacts
    if gate == "blocked":
        assert "data drift blocks the retrain" in report["reason"] and report["decision"] == "blocked"
        assert "retrain.max_drift=0.3" in report["reason"] and report["exit_code"] == 3
        assert report["champion_after"] == champion and report["challenger"] is None
    if gate == "skipped":
        assert "neither drifted nor grew" in report["reason"] and report["exit_code"] == 0
    _no_run_left_running()


def test_a_champion_without_a_reference_trains_under_any_policy(conf_project: Path, no_pipeline: list[Path]) -> None:
    """A champion no drift-recording retrain trained (promoted by hand, or from before drift
    checks) has nothing to compare with: block cannot block, require cannot skip."""
    from mlflow import MlflowClient

    from gapline.retrain import retrain

    project = conf_project
    champion = _crown(project, _data(project, *_tabular(600, 0)))
    MlflowClient().delete_model_version_tag(NAME, champion, G.TAG_REFERENCE)
    with pytest.raises(PipelineStarted):
        retrain([*_data(project, *_tabular(600, 1, shift=2.0)), "retrain.drift=block"], root=project, echo=lambda _: None)
    drift = json.loads((project / "reports" / "retrain.json").read_text())["drift"]
    assert drift["status"] == "no-reference" and "has no stored reference" in drift["note"]
    assert drift["drift_share"] is None and not drift["drift_detected"]
    _no_run_left_running()


def _table_summary(folder: Path, frame: Any) -> D.Summary:
    from gapline.config.checks import from_container
    from gapline.data.prepare import write_prepared

    folder.mkdir()
    frame.to_csv(folder / "t.csv", index=False)
    cfg = from_container({"data": {"source": "csv", "path": str(folder / "t.csv"), "columns": {"drop": ["id"]}}})
    (folder / "prepared").mkdir()
    meta = write_prepared(cfg, folder / "prepared")
    return D.summarize(folder / "prepared", meta)


def test_a_table_drifts_by_its_categories_and_missing_rates_not_by_its_codes(tmp_path: Path) -> None:
    """Two tables number their categories each in its own dictionary: the summary compares
    the categories. A fresh sample is quiet; more empty incomes and another city mix drift,
    named by column."""
    import pandas as pd

    from helpers.tables import mixed_table

    reference = _table_summary(tmp_path / "a", mixed_table(900, seed=1))
    assert reference.columns[:4] == ["city", "income", "missing:income", "member"]
    assert reference.dictionaries["city"] == ["east", "north", "south", "west"]
    fresh = mixed_table(900, seed=2)
    fresh.loc[0, "city"] = "aaa-once"  # sorts first: every other city's code moves up by one
    current = _table_summary(tmp_path / "b", fresh)
    assert current.dictionaries["city"][0] == "aaa-once"
    same = D.compare(reference, current, "block", 0.3)
    assert {c.name for c in same.columns if c.drifted} <= {"noise"}, same.describe()  # at most a chance hit

    moved = mixed_table(900, seed=3, missing=0.6)
    moved.loc[moved.index[:300], "city"] = "aardvark-town"  # a new category: every code of the others shifts
    drift = D.compare(reference, _table_summary(tmp_path / "c", pd.DataFrame(moved)), "block", 0.3)
    drifted = {c.name for c in drift.columns if c.drifted}
    assert {"city", "missing:income"} <= drifted, drift.describe()
    assert "income" not in drifted and "member" not in drifted  # filled incomes and yes/no shares are as before
    json.dumps(drift.summary())  # no NaN from the missing cells
