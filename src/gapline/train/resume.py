"""Resume a killed training run from its last completed epoch, bit for bit.

Keras' ``BackupAndRestore`` restores weights and the optimizer but not the random state of
dropout/noise layers, not EarlyStopping's counters and not the history, and ``fit`` restarts
the data order at the first epoch; a resumed run would then differ from an uninterrupted
one. This backup saves every model variable (seed-generator states included), the optimizer,
the early-stopping state and the history after each epoch, atomically, keyed by a digest of
the training config and data; training data order is a pure function of (seed, epoch)
(:func:`epoch_orders`), so the resumed epochs see exactly the batches they would have seen.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from gapline.core.files import atomic_dir

STATE_FILE = "state.json"
ARRAYS_FILE = "variables.npz"


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """Row order of ``epoch``: a permutation seeded by (seed, epoch) alone, so any epoch's
    order can be made on its own (training streams them one epoch at a time)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_orders(n: int, epochs: int, seed: int, start: int = 0) -> np.ndarray:
    """Row order of every epoch from ``start`` on (:func:`epoch_order` stacked)."""
    if start >= epochs:
        return np.zeros((0, n), dtype=np.int64)
    return np.stack([epoch_order(n, seed, e) for e in range(start, epochs)])


class Backup:
    """The on-disk training state for one (config, data) key."""

    def __init__(self, folder: str | os.PathLike[str], key: str) -> None:
        self.folder = Path(folder)
        self.key = key

    def state(self) -> dict[str, Any] | None:
        """The saved state if it belongs to this key; a backup of other settings is ignored."""
        path = self.folder / STATE_FILE
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return state if state.get("key") == self.key else None

    def initial_epoch(self, epochs: int) -> int:
        """Where ``fit`` continues: after the last saved epoch, or nowhere if it had stopped."""
        state = self.state()
        if not state:
            return 0
        return epochs if state.get("stopped") else min(int(state["epoch"]), epochs)

    def save(self, model: Any, epoch: int, history: dict[str, list[float]], stopper: Any) -> None:
        from keras import ops

        arrays = {f"model_{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}
        arrays.update({f"opt_{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)})
        es: dict[str, Any] = {}
        if stopper is not None:
            es = {
                "wait": int(stopper.wait),
                "best": float(stopper.best) if stopper.best is not None else None,
                "best_epoch": int(stopper.best_epoch),
                "stopped_epoch": int(stopper.stopped_epoch),
                "has_best_weights": stopper.best_weights is not None,
            }
            if stopper.best_weights is not None:
                arrays.update({f"best_{i}": np.asarray(w) for i, w in enumerate(stopper.best_weights)})
        state = {
            "key": self.key,
            "epoch": epoch,
            "stopped": bool(getattr(model, "stop_training", False)),
            "history": history,
            "early_stopping": es,
        }
        with atomic_dir(self.folder) as tmp:
            np.savez(tmp / ARRAYS_FILE, **arrays)
            (tmp / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")

    def restore(self, model: Any, stopper: Any) -> dict[str, list[float]]:
        """Put the saved state back into ``model`` (and the stopper); returns the saved history."""
        state = self.state()
        if state is None:
            return {}
        with np.load(self.folder / ARRAYS_FILE) as npz:
            for i, v in enumerate(model.variables):
                v.assign(npz[f"model_{i}"])
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            for i, v in enumerate(model.optimizer.variables):
                v.assign(npz[f"opt_{i}"])
            es = state.get("early_stopping") or {}
            if stopper is not None and es:
                stopper.wait = es["wait"]
                stopper.best = es["best"]
                stopper.best_epoch = es["best_epoch"]
                stopper.stopped_epoch = es.get("stopped_epoch", 0)
                if es.get("has_best_weights"):
                    count = len(model.get_weights())
                    stopper.best_weights = [npz[f"best_{i}"] for i in range(count)]
        return {k: list(v) for k, v in state["history"].items()}

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def saved_phase(state: dict[str, Any] | None) -> int:
    """The fit phase (1, or 2 for a backbone's fine-tuning) of a saved state's last epoch; 0
    without a state. A state of a single-phase fit has no ``phase`` column: phase 1."""
    if not state:
        return 0
    phases = state.get("history", {}).get("phase") or [1]
    return int(phases[-1])


def callback(
    backup: Backup,
    stopper: Any,
    restored: dict[str, list[float]],
    history: dict[str, list[float]] | None = None,
    restore: bool = True,
) -> Any:
    """Restores at the start of ``fit`` (after EarlyStopping reset itself) and saves each epoch.

    ``history``: the epochs of earlier fits of this training (a backbone's phase 1, when this
    fit is its phase 2), so that every save holds the whole history. ``restore=False``: this
    fit goes on from the model in memory (the state on disk is an earlier phase's, with that
    phase's optimizer and stopper), and restores nothing."""
    import keras

    class ResumeFromBackup(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.history: dict[str, list[float]] = {}

        def on_train_begin(self, logs: dict | None = None) -> None:
            self.history = {k: list(v) for k, v in (history or {}).items()}
            if restore:
                saved = backup.restore(self.model, stopper)
                if saved:
                    self.history = saved
                restored.update({k: list(v) for k, v in saved.items()})

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            backup.save(self.model, epoch + 1, self.history, stopper)

    return ResumeFromBackup()
