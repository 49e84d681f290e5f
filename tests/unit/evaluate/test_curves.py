"""DVCLive's per-epoch curves: names, the live view during training, resume, side effects."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gapline.evaluate import curves

HISTORY_KEYS = [
    "loss", "accuracy", "val_loss", "val_accuracy", "train_eval_loss", "train_eval_accuracy",
    "gap_loss", "gap_accuracy", "learning_rate", "phase", "val_rmse", "gap_rmse", "train_eval_auc",
]


def test_names_follow_dvclive_and_map_back() -> None:
    assert curves.curve_name("loss") == "train/loss"
    assert curves.curve_name("val_loss") == "eval/loss"
    assert curves.curve_name("train_eval_accuracy") == "train_eval/accuracy"
    assert curves.curve_name("gap_accuracy") == "gap/accuracy"
    assert curves.curve_name("learning_rate") == "learning_rate"
    for key in HISTORY_KEYS:
        assert curves.history_key(curves.curve_name(key)) == key


def _history(epochs: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(1)
    keys = ["loss", "accuracy", "val_loss", "val_accuracy", "train_eval_loss", "train_eval_accuracy", "gap_loss", "gap_accuracy"]
    return {k: [float(v) for v in rng.random(epochs)] for k in keys}


def test_replayed_then_continued_equals_logged_straight(tmp_path: Path, monkeypatch) -> None:
    """A resumed train stage writes back its backup's epochs, then logs on: the same bytes."""
    monkeypatch.chdir(tmp_path)
    history = _history(5)
    straight = curves.open_live(Path("straight"))
    for epoch in range(5):
        curves.log_epoch(straight, epoch + 1, {k: v[epoch] for k, v in history.items()}, "accuracy")
        straight.next_step()
    straight.end()
    resumed = curves.open_live(Path("resumed"))
    curves.replay(resumed, {k: v[:3] for k, v in history.items()}, "accuracy")
    for epoch in (3, 4):
        curves.log_epoch(resumed, epoch + 1, {k: v[epoch] for k, v in history.items()}, "accuracy")
        resumed.next_step()
    resumed.end()
    files = sorted(p.relative_to("straight") for p in Path("straight").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to("resumed") for p in Path("resumed").rglob("*") if p.is_file())
    for rel in files:
        assert (Path("resumed") / rel).read_bytes() == (Path("straight") / rel).read_bytes(), rel
    assert curves.read_curves(Path("straight")) == history  # exact floats back, no aliases
    assert json.loads(Path("straight/metrics.json").read_text())["step"] == 5


def test_curves_are_on_disk_after_every_epoch_while_training(tmp_path: Path, monkeypatch) -> None:
    """What `dvc plots show`, VS Code and Studio read live: epoch k's row is written at its end."""
    import keras

    from gapline.config.tasks import multiclass
    from gapline.train.callbacks import GapCallback

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy())
    live = curves.open_live()
    seen: list[tuple[int, int, float]] = []

    class Look(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs=None) -> None:
            rows = (curves.CURVES_DIR / "plots/metrics/gap/headline.tsv").read_text().splitlines()
            summary = json.loads((curves.CURVES_DIR / "metrics.json").read_text())
            seen.append((len(rows) - 1, summary["step"], float(rows[-1].split("\t")[1])))

    history = model.fit(
        x, np.eye(2, dtype="float32")[y], epochs=3, verbose=0,
        callbacks=[GapCallback(x, y, multiclass(2), val=(x[:8], y[:8])), curves.callback(live, "accuracy"), Look()],
    )
    live.end()
    gaps = history.history["gap_accuracy"]
    assert [(rows, step) for rows, step, _ in seen] == [(1, 1), (2, 2), (3, 3)]
    assert [gap for _, _, gap in seen] == gaps


def test_outside_a_dvc_project_nothing_is_initialised(tmp_path: Path, monkeypatch) -> None:
    """DVCLive alone would `dvc init` the enclosing git repository."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    live = curves.open_live()
    curves.log_epoch(live, 1, {"loss": 0.5}, None)
    live.next_step()
    live.end()
    assert not (tmp_path / ".dvc").exists() and not (tmp_path / "dvc.yaml").exists()
    assert curves.read_curves() == {"loss": [0.5]}


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_headline_aliases_repeat_the_tasks_headline(task: str) -> None:
    head = {"multiclass": "accuracy", "regression": "rmse"}[task]
    logs = {f"train_eval_{head}": 0.9, f"val_{head}": 0.8, f"gap_{head}": 0.1, "loss": 1.0}
    out = curves.epoch_curves(logs, head)
    assert out["train_eval/headline"] == 0.9 and out["eval/headline"] == 0.8 and out["gap/headline"] == 0.1


def test_evaluate_without_curves_is_one_clear_error(tmp_path: Path) -> None:
    from gapline.core.errors import DataError

    with pytest.raises(DataError, match=r"dvclive/plots/metrics/train/loss.tsv does not exist: the train stage"):
        curves.read_curves(tmp_path / "dvclive")


def test_dvclive_resume_in_the_environment_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    """DVCLIVE_RESUME=true would make DVCLive keep the old curves and append to them."""
    monkeypatch.chdir(tmp_path)
    for value in (0.1, 0.2):
        live = curves.open_live()
        curves.log_epoch(live, 1, {"loss": value}, None)
        live.next_step()
        live.end()
        monkeypatch.setenv("DVCLIVE_RESUME", "true")
    assert curves.read_curves() == {"loss": [0.2]}


def test_a_dvc_project_in_a_git_repository_without_commits(tmp_path: Path, monkeypatch) -> None:
    """The Docker image's baked-in project: `git init` and `.dvc/`, no commit yet. DVCLive asks
    git for HEAD there and scmrepo raises; the curves are written all the same."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    no_scm = false\n")
    monkeypatch.chdir(tmp_path)
    live = curves.open_live()
    curves.log_epoch(live, 1, {"loss": 0.25}, None)
    live.next_step()
    live.end()
    assert curves.read_curves() == {"loss": [0.25]}


def test_a_resumed_train_stage_writes_back_the_epochs_before_the_kill(tmp_path: Path, monkeypatch, make_tiny_images) -> None:
    """The train stage, stopped at the start of epoch 3 of 4 and run again: DVCLive's curves
    hold all four epochs, the first two written back from the saved state (its history)."""
    from omegaconf import OmegaConf

    from gapline.config.checks import from_container
    from gapline.data.layout import read_meta
    from gapline.stages import train as stage
    from gapline.stages.augment import augment
    from gapline.stages.prepare import prepare
    from gapline.train.resume import Backup

    x, y = make_tiny_images(60, size=4, classes=3, seed=0)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = from_container(
        {
            "data": {"source": "npz", "path": str(tmp_path / "d.npz")},
            "augment": {"copies": 0},
            "model": {"hidden_units": [8]},
            "regularization": {"early_stopping": {"enabled": False}},
            "train": {"epochs": 4, "batch_size": 16, "seed": 1, "accelerator": "cpu", "verbose": "quiet"},
            "tracking": {"enabled": False},
        }
    )
    prepare(cfg)
    augment(cfg)
    yaml, plain = OmegaConf.to_yaml(OmegaConf.structured(cfg)), OmegaConf.to_container(OmegaConf.structured(cfg))
    logging = curves.callback

    def stopping(live, headline):
        inner = logging(live, headline)

        class Stop(type(inner)):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 2:
                    raise KeyboardInterrupt

        return Stop()

    monkeypatch.setattr(stage.curves, "callback", stopping)
    with pytest.raises(KeyboardInterrupt):
        stage.train(cfg, yaml, plain)
    saved = Backup(stage.BACKUP_DIR, stage.backup_key(cfg, read_meta())).state()["history"]
    assert len(saved["loss"]) == 2
    monkeypatch.setattr(stage.curves, "callback", logging)
    info = stage.train(cfg, yaml, plain)
    assert info["epochs_run"] == 4
    history = curves.read_curves(work / "dvclive")
    assert len(history["loss"]) == 4
    assert history["loss"][:2] == pytest.approx(saved["loss"], abs=1e-6)
    assert history["gap_loss"][:2] == pytest.approx(saved["gap_loss"], abs=1e-6)
