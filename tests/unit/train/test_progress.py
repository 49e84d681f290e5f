"""Training progress: a live bar on a terminal, compact lines in logs, silence on request."""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np

from gapline import cli
from gapline.config.schema import TrainConfig
from gapline.train import progress

REPO = Path(__file__).resolve().parents[3]
LINE = re.compile(
    r"^epoch (\d+)/(\d+)  loss \S+  val_loss \S+  gap_accuracy [+-]\S+  elapsed \d+:\d\d  eta \d+:\d\d$"
)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fit(train: TrainConfig, epochs: int, stream: io.StringIO, patience: int = 0) -> int:
    """A tiny model fit with the gap callback first and the progress callback after it, as the
    train stage orders them; returns the epochs run."""
    import keras

    from gapline.config.tasks import multiclass
    from gapline.train.callbacks import GapCallback

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy())
    shown = progress.callback(train, epochs, "accuracy", stream)
    callbacks = [GapCallback(x, y, multiclass(2), val=(x, y))]
    if patience:  # nothing counts as better after the first epoch: stops `patience` later
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", mode="max", min_delta=1e9, patience=patience))
    if shown is not None:
        callbacks.append(shown)
    history = model.fit(x, np.eye(2, dtype="float32")[y], batch_size=16, epochs=epochs, verbose=0, callbacks=callbacks)
    if shown is not None:
        shown.close()
    return len(history.history["loss"])


def test_auto_is_a_bar_on_a_terminal_and_lines_elsewhere() -> None:
    assert progress.resolve("auto", Tty()) == "bar"
    assert progress.resolve("auto", io.StringIO()) == "lines"
    assert progress.resolve("lines", Tty()) == "lines"
    assert progress.callback(TrainConfig(verbose="quiet"), 3, "accuracy", Tty()) is None


def test_a_terminal_of_zero_columns_gets_lines(monkeypatch) -> None:
    """A new pseudo-terminal reports 0 x 0 until someone sets its size (``script`` without
    ``stty cols``): a bar there prints nothing, so auto and bar both fall back to lines."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty, os.fdopen(master, "rb", buffering=0):
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 0, 0, 0))
        assert tty.isatty() and os.get_terminal_size(slave).columns == 0
        assert progress.resolve("auto", tty) == "lines"
        assert progress.resolve("bar", tty) == "lines"
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        assert progress.resolve("auto", tty) == "bar"
    assert progress.resolve("bar", io.StringIO()) == "bar"  # asked for, not a terminal: as asked


def test_lines_every_epoch_with_loss_val_loss_gap_and_eta() -> None:
    out = io.StringIO()
    _fit(TrainConfig(verbose="auto", progress_every=0), 3, out)
    lines = out.getvalue().splitlines()
    assert [LINE.match(line).groups() for line in lines] == [("1", "3"), ("2", "3"), ("3", "3")], lines
    assert lines[-1].endswith("eta 0:00")
    assert "\r" not in out.getvalue()  # nothing a log file shows as one endless line


def test_lines_at_most_every_n_seconds_keep_the_first_and_last_epoch() -> None:
    out = io.StringIO()
    _fit(TrainConfig(verbose="lines", progress_every=3600), 6, out)
    assert [LINE.match(line).group(1) for line in out.getvalue().splitlines()] == ["1", "6"]


class FakeClock:
    """``time.perf_counter`` for the progress module: moves only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _drive(monkeypatch, every: float, epochs: int, steps: int, step_seconds: float) -> list[str]:
    """The callback driven by hand through ``epochs`` epochs of ``steps`` batches, each batch
    ``step_seconds`` long on a fake clock; returns the lines it printed."""
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    out = io.StringIO()
    shown = progress.callback(TrainConfig(verbose="lines", progress_every=every), epochs, "accuracy", out)
    shown.set_params({"steps": steps, "epochs": epochs})
    shown.on_train_begin()
    for epoch in range(epochs):
        shown.on_epoch_begin(epoch)
        for batch in range(steps):
            clock.now += step_seconds
            shown.on_train_batch_end(batch, {"loss": 1.0})
        shown.on_epoch_end(epoch, {"loss": 1.0, "val_loss": 1.5, "gap_accuracy": 0.01})
    shown.on_train_end()
    return out.getvalue().splitlines()


def test_lines_come_at_the_configured_pace_between_the_first_and_last_epoch(monkeypatch) -> None:
    """Epochs of 4 s, a line at most every 10 s: epochs 1 (the first), 4 (12 s after it),
    7 and 10 (the last); the epochs between wait for the pace."""
    lines = _drive(monkeypatch, every=10, epochs=10, steps=1, step_seconds=4)
    assert [line.split()[1] for line in lines] == ["1/10", "4/10", "7/10", "10/10"], lines


def test_a_long_epoch_prints_step_lines_at_the_pace(monkeypatch) -> None:
    """One epoch of 10 batches of 3 s, a line every 10 s: step lines at 12 s (batch 4) and
    24 s (batch 8), none at the epoch's last batch (the epoch line says it)."""
    lines = _drive(monkeypatch, every=10, epochs=1, steps=10, step_seconds=3)
    assert [line.split("  elapsed")[0] for line in lines] == [
        "epoch 1/1  step 4/10  loss 1",
        "epoch 1/1  step 8/10  loss 1",
        "epoch 1/1  loss 1  val_loss 1.5  gap_accuracy +0.01",
    ], lines
    assert lines[0].endswith("elapsed 0:12  eta 0:18")


def test_an_early_stop_still_prints_its_last_epoch() -> None:
    out = io.StringIO()
    ran = _fit(TrainConfig(verbose="lines", progress_every=3600), 20, out, patience=2)
    assert ran < 20
    assert [LINE.match(line).group(1) for line in out.getvalue().splitlines()] == ["1", str(ran)]


def test_a_second_phase_after_an_early_stop_counts_to_its_own_end() -> None:
    """A backbone planned for 4 + 2 epochs whose phase 1 stopped after 2: phase 2 runs epochs
    3-4, so the count and the ETA end at 4, not at the 6 planned."""
    import keras

    from gapline.config.tasks import multiclass
    from gapline.train.callbacks import GapCallback

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy())
    out = io.StringIO()
    shown = progress.callback(TrainConfig(verbose="lines", progress_every=0), 6, "accuracy", out)
    gap = GapCallback(x, y, multiclass(2), val=(x, y))
    target = np.eye(2, dtype="float32")[y]
    model.fit(x, target, epochs=2, verbose=0, callbacks=[gap, shown])  # phase 1, stopped early at 2
    model.fit(x, target, initial_epoch=2, epochs=4, verbose=0, callbacks=[gap, shown])  # phase 2
    lines = out.getvalue().splitlines()
    assert [LINE.match(line).groups() for line in lines] == [("1", "6"), ("2", "6"), ("3", "4"), ("4", "4")]
    assert lines[-1].endswith("eta 0:00")


def test_bar_on_a_terminal_shows_epoch_eta_and_the_gap() -> None:
    out = Tty()
    _fit(TrainConfig(verbose="auto"), 3, out)
    text = out.getvalue()
    assert "\r" in text and "epoch 3/3" in text and "100%" in text
    last = text.rsplit("\r", 1)[-1]
    assert re.search(r"loss \S+  val_loss \S+  gap_accuracy [+-]\S+", last), last
    assert not LINE.search(text)


def test_clock() -> None:
    assert progress.clock(0) == "0:00"
    assert progress.clock(75.4) == "1:15"
    assert progress.clock(3 * 3600 + 62) == "3:01:02"


def test_train_stage_prints_lines_and_quiet_prints_none(tmp_path: Path, monkeypatch, capsys) -> None:
    """The stage command as DVC runs it (output not a terminal): one line per epoch with
    progress_every=0; `gapline train --quiet` trains the same model and prints no epoch."""
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    common = ["tracking.enabled=false", "train.epochs=3", "data.train_fraction=0.2", "regularization=none"]
    assert cli.main(["params", *common, "train.progress_every=0"]) == 0
    assert cli.main(["prepare"]) == 0 and cli.main(["augment"]) == 0
    capsys.readouterr()
    assert cli.main(["train"]) == 0
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [LINE.match(line).groups() for line in shown] == [("1", "3"), ("2", "3"), ("3", "3")], shown
    curves = {p: p.read_bytes() for p in sorted(Path("dvclive").rglob("*.tsv"))}
    assert len(curves) >= 10
    assert cli.main(["train", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("trained 3 epochs") and len(out.splitlines()) == 1, out
    # the same training (in one process Keras names the second model's layers differently,
    # so the model files differ; the curves, every number of every epoch, do not)
    assert {p: p.read_bytes() for p in sorted(Path("dvclive").rglob("*.tsv"))} == curves
