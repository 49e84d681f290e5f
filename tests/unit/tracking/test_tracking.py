"""gapline.tracking against a real (temporary sqlite) MLflow store: params, secrets, run
status on failure and interruption, async flushing, resuming. No mocks: every test reads
back what MLflow stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gapline import tracking
from gapline.config import provenance
from gapline.config.checks import from_container
from gapline.config.schema import Config
from gapline.core.errors import GaplineError
from gapline.data.meta import PreparedMeta
from gapline.tracking import redaction
from gapline.tracking.log import MAX_DIGEST_LENGTH, dataset_digest, retry_on_conflict
from gapline.tracking.redaction import MAX_PARAM_LENGTH, MAX_TAG_LENGTH
from gapline.tracking.run_record import RunRecord
from gapline.train import fit
from helpers.prepared_meta import make_meta


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module: creating one costs MLflow ~2 s of schema migrations."""
    return f"sqlite:///{tmp_path_factory.mktemp('tracking-store') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _shared_store_and_reset_mlflow_globals(store_uri: str, monkeypatch: pytest.MonkeyPatch):
    """Every test logs to the module's store. tracking.setup sets process-wide MLflow state;
    put MLflow's defaults back afterwards (conftest's monkeypatch restores the env)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(None)
        mlflow.config.enable_async_logging(False)


def _cfg(**tracking_overrides: Any) -> Config:
    return from_container(
        {"tracking": {"enabled": True, "experiment": "unit", "system_metrics": False, **tracking_overrides}}
    )


def _client():
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


# --------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------


def test_param_values_flatten_and_cut_overlong_values() -> None:
    params, cut = tracking.param_values(
        {"a": {"b": 1, "c": [1, 2]}, "none": None, "long": "x" * 7000, "ok": "y" * 6000}
    )
    assert params["a.b"] == "1" and params["a.c"] == "[1, 2]" and params["none"] == ""
    assert params["ok"] == "y" * 6000
    assert len(params["long"]) == MAX_PARAM_LENGTH
    assert params["long"].endswith("...[truncated; see config/params.yaml]")
    assert cut == ["long"]


def test_redact_secret_env_values_and_url_passwords() -> None:
    env = {"GITHUB_TOKEN": "ghp_0123456789", "DB_PASSWORD": "hunter22pw", "SOME_KEY": "1", "HOME": "/root/home1"}
    assert tracking.redact("x ghp_0123456789 y hunter22pw", env) == "x *** y ***"
    assert tracking.redact("lr=1 /root/home1", env) == "lr=1 /root/home1"  # short or non-secret: kept
    assert tracking.redact("https://alice:pa55@mlflow.example/x", env) == "https://alice:***@mlflow.example/x"
    assert tracking.canonical_uri("https://alice:pa55@h:5000/") == "https://alice:***@h:5000"


def test_redact_survives_a_variable_vanishing_while_the_environment_is_read() -> None:
    """Another thread (MLflow telemetry, in a Ray worker) unset a variable between listing the
    environment's keys and reading its value: that was a KeyError in the first child run."""

    from collections.abc import Mapping

    class Vanishing(Mapping):  # like os.environ: items() lists the keys, then reads each one
        data = {"API_TOKEN": "s3cr3t-value-123", "PATH": "/bin"}

        def __iter__(self):
            return iter([*self.data, "_GONE_BEFORE_IT_IS_READ"])

        def __getitem__(self, key):
            return self.data[key]

        def __len__(self):
            return len(self.data) + 1

    with pytest.MonkeyPatch.context() as patch:  # os.environ itself: put back at once
        patch.setattr(redaction.os, "environ", Vanishing())
        redacted = tracking.redact("token=s3cr3t-value-123")
    assert redacted == "token=***"


def test_tag_values_drop_secret_names_and_none() -> None:
    tags = tracking.tag_values({"api_key": "abc", "MY_TOKEN": "x", "device": "CPU", "none": None, "long": "z" * 9000})
    assert set(tags) == {"device", "long"}
    assert len(tags["long"]) == MAX_TAG_LENGTH


def test_canonical_uri_makes_local_stores_absolute(tmp_path: Path) -> None:
    assert tracking.canonical_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    assert tracking.canonical_uri(f"sqlite:///{tmp_path}/x.db", Path("/elsewhere")) == f"sqlite:///{tmp_path}/x.db"
    assert tracking.canonical_uri("mlruns", tmp_path) == f"file://{tmp_path}/mlruns"
    assert tracking.canonical_uri("http://127.0.0.1:5000/") == "http://127.0.0.1:5000"
    assert tracking.canonical_uri("databricks") == "databricks"


def test_dataset_digest_fits_mlflow() -> None:
    digest = dataset_digest("sha256:" + "ab" * 32)
    assert digest == "ab" * 16 and len(digest) <= MAX_DIGEST_LENGTH


def test_dvc_stage_digests(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  train:\n    cmd: a\n  evaluate:\n    cmd: b\n")
    first = provenance.dvc_stage_digests(lock, skip=("evaluate",))
    assert set(first) == {"dvc.stage.train"}
    lock.write_text("schema: '2.0'\nstages:\n  train:\n    cmd: changed\n")
    assert provenance.dvc_stage_digests(lock) != first
    assert provenance.dvc_stage_digests(tmp_path / "missing.lock") == {}


@pytest.mark.parametrize(
    "record, written",
    [
        (RunRecord.no_run(), {"run_id": None, "model_version": None}),
        (RunRecord.started("r1", "sqlite:////p/mlflow.db"), {"run_id": "r1", "tracking_uri": "sqlite:////p/mlflow.db"}),
        (
            RunRecord("r1", tracking_uri="sqlite:////p/mlflow.db", experiment_id="3", registered_model="gapline",
                      model_md5="ab" * 16),
            {"run_id": "r1", "experiment_id": "3", "tracking_uri": "sqlite:////p/mlflow.db",
             "registered_model": "gapline", "model_version": None, "model_md5": "ab" * 16},
        ),
    ],
)
def test_run_record_writes_the_bytes_train_always_wrote_and_reads_them_back(
    tmp_path: Path, record: RunRecord, written: dict
) -> None:
    import json

    path = tmp_path / "mlflow_run.json"
    record.write(path)
    assert path.read_text(encoding="utf-8") == json.dumps(written, indent=2, sort_keys=True) + "\n"
    assert RunRecord.read(path) == record


def test_run_record_of_another_shape_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "mlflow_run.json"
    path.write_text("[1, 2]\n")
    with pytest.raises(GaplineError) as err:
        RunRecord.read(path)
    assert "\n" not in str(err.value) and "expected an object" in str(err.value) and "list" in str(err.value)


# --------------------------------------------------------------------------------------
# The run against a real store
# --------------------------------------------------------------------------------------


def test_disabled_tracking_yields_none_and_touches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with tracking.run(_cfg(enabled=False)) as active:
        assert active is None
    assert not (tmp_path / "mlflow.db").exists()


def test_overlong_param_is_cut_never_crashes_and_yaml_keeps_it(tmp_path: Path) -> None:
    long_value = "v" * 7000
    with tracking.run(_cfg()) as active:
        tracking.log_config({"a": {"long": long_value, "n": 3}}, f"a:\n  long: {long_value}\n  n: 3\n")
        run_id = active.info.run_id
    run = _client().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert len(run.data.params["a.long"]) == MAX_PARAM_LENGTH
    assert run.data.params["a.n"] == "3"
    assert run.data.tags["params.truncated"] == "a.long"
    yaml_path = _client().download_artifacts(run_id, "config/params.yaml", str(tmp_path))
    assert long_value in Path(yaml_path).read_text()


def test_secret_env_values_never_reach_params_tags_or_run_name(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-value-for-test"
    monkeypatch.setenv("GAPLINE_TEST_API_TOKEN", secret)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "another-secret-pw")
    with tracking.run(_cfg(run_name=f"run-{secret}")) as active:
        tracking.log_config({"data": {"path": f"/data/{secret}"}}, f"data:\n  path: /data/{secret}\n")
        tracking.log_tags({"note": f"uses {secret}", "GAPLINE_TEST_API_TOKEN": secret, "pw": "another-secret-pw"})
        run_id = active.info.run_id
    run = _client().get_run(run_id)
    logged = [*run.data.params.items(), *run.data.tags.items()]
    assert all(secret not in k + v and "another-secret-pw" not in k + v for k, v in logged)
    assert run.data.params["data.path"] == "/data/***"
    assert run.data.tags["note"] == "uses ***"
    assert run.info.run_name == "run-***"
    assert "GAPLINE_TEST_API_TOKEN" not in run.data.tags
    text = Path(_client().download_artifacts(run_id, "config/params.yaml")).read_text()
    assert secret not in text and "/data/***" in text


def test_exception_ends_run_failed_with_one_line_error() -> None:
    with pytest.raises(ValueError):
        with tracking.run(_cfg()) as active:
            run_id = active.info.run_id
            raise ValueError("boom\nsecond line of detail")
    run = _client().get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "ValueError: boom"


def test_keyboard_interrupt_ends_run_killed() -> None:
    with pytest.raises(KeyboardInterrupt):
        with tracking.run(_cfg()) as active:
            run_id = active.info.run_id
            tracking.log_metrics({"loss": 1.0}, step=1)
            raise KeyboardInterrupt
    run = _client().get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"] == "interrupted (KeyboardInterrupt)"
    assert run.data.metrics["loss"] == 1.0  # what was logged before the interrupt landed


@pytest.mark.parametrize("async_logging", [True, False])
def test_per_epoch_metrics_all_land_before_the_run_finishes(async_logging: bool) -> None:
    with tracking.run(_cfg(async_logging=async_logging)) as active:
        for epoch in range(1, 21):
            tracking.log_metrics({"gap_accuracy": epoch / 100, "loss": 1 / epoch}, step=epoch)
        run_id = active.info.run_id
    history = _client().get_metric_history(run_id, "gap_accuracy")
    assert [m.step for m in history] == list(range(1, 21))
    assert _client().get_run(run_id).info.status == "FINISHED"


def test_async_logging_failure_fails_the_run_instead_of_vanishing() -> None:
    with pytest.raises(tracking.TrackingError) as err:
        with tracking.run(_cfg(async_logging=True)) as active:
            run_id = active.info.run_id
            tracking.log_config({"a": 1}, "a: 1\n")
            tracking.log_config({"a": 2}, "a: 2\n")  # MLflow refuses to change a param
    assert "\n" not in str(err.value)
    run = _client().get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("TrackingError: MLflow did not accept logged data")


def test_unreachable_server_is_a_one_line_error_not_minutes_of_retries() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(GaplineError) as err:
        with tracking.run(_cfg(uri=f"http://127.0.0.1:{port}")):
            pass
    assert time.perf_counter() - start < 15
    message = str(err.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message and "not reachable" in message


def test_dataset_inputs_survive_a_concurrent_training_logging_the_same_data() -> None:
    """MLflow's SQL store looks a dataset up, then inserts it: another training logging the same
    split between those two steps made the insert fail on the unique constraint (seen in CI
    with two trainings against one server). Replay that interleaving in the real store."""
    import mlflow
    from mlflow.store.tracking import sqlalchemy_store

    meta = make_meta(source="digits", fingerprints={"train": "a" * 64, "val": "b" * 64})
    splits = {s: (np.zeros((4, 2), "float32"), np.arange(4)) for s in ("train", "val")}
    with tracking.run(_cfg(async_logging=False)):
        other = mlflow.active_run().info.run_id  # the other training; its inputs land mid-way
    real_uuid4, raced = sqlalchemy_store.uuid.uuid4, []

    def uuid4_after_the_other_training_logs():  # called once our lookup found no dataset
        if not raced:
            raced.append(True)
            _client().log_inputs(other, _dataset_inputs(meta, splits))
        return real_uuid4()

    with tracking.run(_cfg(async_logging=False)) as active:
        with pytest.MonkeyPatch.context() as patch:  # from after the run's own uuid on
            patch.setattr(sqlalchemy_store.uuid, "uuid4", uuid4_after_the_other_training_logs)
            tracking.log_datasets(meta, splits)
        run_id = active.info.run_id
    assert raced, "the interleaving was not replayed"
    runs = [_client().get_run(r) for r in (run_id, other)]
    assert runs[0].info.status == "FINISHED"
    for run in runs:
        inputs = run.inputs.dataset_inputs
        assert sorted(i.dataset.name for i in inputs) == ["digits-train", "digits-val"]
    shared = [{i.dataset.name: i.dataset.digest for i in r.inputs.dataset_inputs} for r in runs]
    assert shared[0] == shared[1]


def test_only_unique_constraint_conflicts_are_tried_again() -> None:
    calls: list[str] = []

    def fails_with(message: str):
        def operation():
            calls.append(message)
            raise RuntimeError(message)
        return operation

    with pytest.raises(RuntimeError):
        retry_on_conflict(fails_with("RESOURCE_DOES_NOT_EXIST: run 123"))
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(RuntimeError):
        retry_on_conflict(fails_with("duplicate key value violates unique constraint"), attempts=3)
    assert len(calls) == 3


def _dataset_inputs(meta: PreparedMeta, splits: dict) -> list:
    import mlflow
    from mlflow.entities import DatasetInput

    return [
        DatasetInput(
            mlflow.data.from_numpy(x, targets=y, name=f"{meta.source}-{s}",
                                   digest=dataset_digest(meta.fingerprints[s]))._to_mlflow_entity()
        )
        for s, (x, y) in splits.items()
    ]


def test_resume_target_only_resumes_runs_of_the_current_store(tmp_path: Path, capsys) -> None:
    cfg = _cfg()
    with tracking.run(cfg) as active:
        run_id = active.info.run_id
    capsys.readouterr()
    here = tracking.canonical_uri(os.environ["MLFLOW_TRACKING_URI"])
    assert tracking.resume_target(cfg, RunRecord(run_id, tracking_uri=here)) == run_id
    assert tracking.resume_target(cfg, RunRecord(run_id)) == run_id  # older records: no URI
    assert tracking.resume_target(_cfg(enabled=False), RunRecord(run_id)) is None
    assert tracking.resume_target(cfg, RunRecord.no_run()) is None
    assert capsys.readouterr().err == ""

    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert tracking.resume_target(cfg, RunRecord(run_id, tracking_uri=other)) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ") and run_id in err and other in err
    assert not (tmp_path / "other.db").exists()

    assert tracking.resume_target(cfg, RunRecord("0" * 32, tracking_uri=here)) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ") and "does not hold" in err

    # the record is local state, not a DVC output: a model DVC restored from its cache is not
    # the one the recorded run trained, so its evaluation must not land in that run
    assert tracking.resume_target(cfg, None) is None  # no record here: train ran elsewhere
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ") and "does not exist" in err
    assert tracking.resume_target(_cfg(enabled=False), None) is None
    assert capsys.readouterr().err == ""

    mine = RunRecord(run_id, tracking_uri=here, model_md5="a" * 32)
    assert tracking.resume_target(cfg, mine, model_md5="a" * 32) == run_id
    assert capsys.readouterr().err == ""
    assert tracking.resume_target(cfg, mine, model_md5="b" * 32) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ") and "another model" in err

    with tracking.run(cfg, run_id=run_id):  # resuming adds to the same run and re-finishes it
        tracking.log_metrics({"test_accuracy": 0.5})
    run = _client().get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test_accuracy"] == 0.5


@pytest.mark.slow
def test_sigterm_ends_run_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from gapline import tracking
        from gapline.config.checks import from_container
        cfg = from_container({"tracking": {"enabled": True, "experiment": "unit", "system_metrics": False}})
        with tracking.run(cfg) as active:
            print(active.info.run_id, flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = proc.stdout.readline().strip()
        assert len(run_id) == 32, proc.stderr.read()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    run = _client().get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"] == "terminated (SIGTERM)"


def test_a_dropped_sigterm_still_ends_the_run_killed_at_the_next_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python drops a signal handler's exception raised inside a finalizer; the handler's flag
    makes the epoch logger end training at the next epoch, and the run ends KILLED."""
    from gapline.core import signals

    monkeypatch.setattr(signals, "_received", [])
    with pytest.raises(signals.Terminated):
        with tracking.run(_cfg()) as active:
            run_id = active.info.run_id
            logger = tracking.epoch_logger()
            logger.on_epoch_end(0, {"loss": 1.0})  # no signal yet: logs and goes on
            signals._received.append(True)  # what the handler leaves when its raise is lost
            logger.on_epoch_end(1, {"loss": 0.9})
    run = _client().get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["error"] == "terminated (SIGTERM)"
    assert [m.value for m in _client().get_metric_history(run_id, "loss")] == [1.0, 0.9]


@pytest.mark.slow
def _tabular_stage_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_tiny_images, family: str) -> Any:
    from gapline.stages.augment import augment
    from gapline.stages.prepare import prepare

    x, y = make_tiny_images(60, size=4, classes=3, seed=0)
    np.savez(tmp_path / "tabular.npz", x=x.reshape(len(x), -1), y=y)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = from_container(
        {
            "data": {"source": "npz", "path": str(tmp_path / "tabular.npz")},
            "model": {"family": family, "conv_filters": [4], "dense_units": 8, "hidden_units": [8]},
            "regularization": {"early_stopping": {"enabled": False}},
            "train": {"epochs": 1, "batch_size": 16, "accelerator": "cpu", "seed": 1},
            "tracking": {"enabled": True, "experiment": "unit-train-failure", "system_metrics": False},
        }
    )
    prepare(cfg)
    augment(cfg)
    return cfg, work


def test_a_model_the_data_cannot_feed_fails_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_tiny_images
) -> None:
    """A CNN on tabular features: the model is built before the run opens, so the one-line
    error leaves no run at all (nothing RUNNING, nothing FAILED to explain)."""
    from omegaconf import OmegaConf

    from gapline.stages.train import train

    cfg, work = _tabular_stage_inputs(tmp_path, monkeypatch, make_tiny_images, "cnn")
    cfg_dict = OmegaConf.to_container(OmegaConf.structured(cfg))
    with pytest.raises(GaplineError) as err:
        train(cfg, OmegaConf.to_yaml(OmegaConf.structured(cfg)), cfg_dict)
    assert "\n" not in str(err.value) and "model.family='cnn'" in str(err.value)
    experiment = _client().get_experiment_by_name("unit-train-failure")
    assert experiment is None or not _client().search_runs([experiment.experiment_id])
    assert not (work / "models" / "model.keras").exists()


def test_training_error_in_train_stage_ends_run_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_tiny_images
) -> None:
    """An error raised while fitting (injected into the fit's data pipeline): the run ends
    FAILED with the one-line error, and nothing is left RUNNING."""
    from omegaconf import OmegaConf

    from gapline.core.errors import DataError
    from gapline.stages.train import train

    cfg, work = _tabular_stage_inputs(tmp_path, monkeypatch, make_tiny_images, "mlp")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise DataError("data.path: the training data went away mid-fit")

    monkeypatch.setattr(fit, "fit_data", broken)
    cfg_dict = OmegaConf.to_container(OmegaConf.structured(cfg))
    with pytest.raises(GaplineError) as err:
        train(cfg, OmegaConf.to_yaml(OmegaConf.structured(cfg)), cfg_dict)
    runs = _client().search_runs([_client().get_experiment_by_name("unit-train-failure").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert runs[0].data.tags["error"] == f"DataError: {err.value}"
    assert runs[0].data.params["model.family"] == "mlp"  # logged before training started
    assert not (work / "models" / "model.keras").exists()
