"""Progress while the train stage trains: a live bar on a terminal, compact lines in logs.

Keras' own ``verbose`` prints a bar per epoch that restarts at every epoch, with no overall
ETA and without the gap; written to a log (DVC, cron, Kubernetes) its carriage returns make one
endless line. This callback sees the whole run (every phase of a two-phase fit) and the
gap the gap callback added to the epoch's logs, so it must come after that callback.
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import Any, TextIO

from gapline.config.schema import Config, TrainConfig


def total_epochs(cfg: Config) -> int:
    """Every epoch the run may train: a fine-tuned backbone's two phases together."""
    fine = cfg.model.fine_tune.epochs if cfg.model.family == "backbone" else 0
    return cfg.train.epochs + fine


def resolve(verbose: str, stream: TextIO) -> str:
    """``bar``, ``lines`` or ``quiet``: ``auto`` is a bar on a terminal, lines otherwise. A
    terminal that reports 0 columns (``script`` without ``stty cols``, some CI runners,
    ``docker run -t``) has no room for a bar: it gets lines, even when ``bar`` was asked for."""
    if verbose not in ("auto", "bar"):
        return verbose
    isatty = getattr(stream, "isatty", None)
    terminal = isatty is not None and isatty()
    if verbose == "auto" and not terminal:
        return "lines"
    return "lines" if terminal and _columns(stream) == 0 else "bar"


def _columns(stream: TextIO) -> int | None:
    """The terminal's width as it reports it (None when it cannot be asked)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _number(value: Any) -> str:
    return f"{float(value):.4g}"


def _signed(value: Any) -> str:
    return f"{float(value):+.4g}"


def summary(logs: dict[str, Any], headline: str) -> list[str]:
    """``loss …``, ``val_loss …``, ``gap_<headline> …`` (the task's gap: positive =
    overfitting), whichever the logs hold."""
    parts = []
    for key in ("loss", "val_loss"):
        if key in logs:
            parts.append(f"{key} {_number(logs[key])}")
    gap = f"gap_{headline}" if f"gap_{headline}" in logs else "gap_loss"
    if gap in logs:
        parts.append(f"{gap} {_signed(logs[gap])}")
    return parts


def callback(train: TrainConfig, total_epochs: int, headline: str, stream: TextIO | None = None) -> Any:  # noqa: C901 - #24: split
    """The progress callback for ``train.verbose`` (None when quiet). ``total_epochs``: every
    epoch of the run, both phases of a fine-tuned backbone (an early stop ends it sooner)."""
    import keras

    out = stream if stream is not None else sys.stdout
    mode = resolve(train.verbose, out)
    if mode == "quiet":
        return None
    every = float(train.progress_every)

    class Progress(keras.callbacks.Callback):
        """One instance for the whole run: fit calls it once per phase."""

        def __init__(self) -> None:
            super().__init__()
            self.start: float | None = None  # the first batch of this process
            self.first_epoch = 0  # a resumed run starts later: its ETA counts from there
            self.epoch = 0
            self.steps = 1
            self.batches = 0  # batches done in this epoch
            self.done = 0  # batches done in this process
            self.last_line = -float("inf")
            self.pending: tuple[int, dict[str, Any]] | None = None  # an epoch not printed yet
            self.warm: tuple[float, int] | None = None  # (time, batches) at the first epoch's end
            self.bar: Any = None
            self.total = total_epochs
            self.fits = 0

        # -- timing ---------------------------------------------------------------------
        def elapsed(self) -> float:
            return time.perf_counter() - self.start if self.start is not None else 0.0

        def eta(self) -> float:
            """Remaining batches at the pace since the first epoch (which also compiled)."""
            remaining = max(0, (self.total - self.epoch) * self.steps - self.batches)
            if self.warm is not None and self.done > self.warm[1]:
                at, done = self.warm
                return (time.perf_counter() - at) / (self.done - done) * remaining
            return self.elapsed() / self.done * remaining if self.done else 0.0

        # -- keras hooks ----------------------------------------------------------------
        def on_train_begin(self, logs: dict | None = None) -> None:
            self.steps = max(1, int(self.params.get("steps") or 1))
            self.fits += 1
            if self.fits > 1 and self.params.get("epochs"):
                # a backbone's fine-tuning: it runs to its own end, which an early stop of
                # the first phase brought forward
                self.total = int(self.params["epochs"])
                if self.bar is not None:
                    self.bar.total = self.total * self.steps

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            if self.start is None:
                self.start = self.last_line = time.perf_counter()
                self.first_epoch = epoch
            self.epoch, self.batches = epoch, 0
            if mode == "bar":
                if self.bar is None:
                    from tqdm.auto import tqdm

                    self.bar = tqdm(
                        total=self.total * self.steps, initial=epoch * self.steps, unit="step",
                        file=out, dynamic_ncols=True, leave=True,
                    )
                self.bar.set_description(f"epoch {epoch + 1}/{self.total}", refresh=False)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            # with steps_per_execution > 1 Keras calls this once per compiled call
            step = min(batch + 1, self.steps) - self.batches
            self.batches += step
            self.done += step
            if mode == "bar":
                if logs and "loss" in logs:
                    self.bar.set_postfix_str(f"loss {_number(logs['loss'])}", refresh=False)
                self.bar.update(step)
            elif every > 0 and time.perf_counter() - self.last_line >= every and self.batches < self.steps:
                loss = f"  loss {_number(logs['loss'])}" if logs and "loss" in logs else ""
                self.line(f"epoch {self.epoch + 1}/{self.total}  step {self.batches}/{self.steps}{loss}")

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = dict(logs or {})
            if self.warm is None:
                self.warm = (time.perf_counter(), self.done)
            if mode == "bar":
                self.bar.set_postfix_str("  ".join(summary(logs, headline)))
                return
            now = time.perf_counter()
            if every == 0 or epoch == self.first_epoch or epoch + 1 >= self.total or now - self.last_line >= every:
                self.epoch_line(epoch, logs)
            else:
                self.pending = (epoch, logs)

        def on_train_end(self, logs: dict | None = None) -> None:
            if self.pending is not None:  # the last epoch (an early stop, a phase's end)
                self.epoch_line(*self.pending)

        # -- output ---------------------------------------------------------------------
        def epoch_line(self, epoch: int, logs: dict[str, Any]) -> None:
            self.pending = None
            self.line("  ".join([f"epoch {epoch + 1}/{self.total}", *summary(logs, headline)]))

        def line(self, text: str) -> None:
            self.last_line = time.perf_counter()
            print(f"{text}  elapsed {clock(self.elapsed())}  eta {clock(self.eta())}", file=out, flush=True)

        def close(self) -> None:
            """Ends the bar (after the last fit): the stage's summary line comes next."""
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return Progress()
