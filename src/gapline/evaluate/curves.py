"""The per-epoch curves for DVC, written by DVCLive while the train stage trains.

``dvclive/plots/metrics/<name>.tsv`` (one file per curve, ``step`` = the 1-based epoch, as in
MLflow) and ``dvclive/metrics.json`` (the last epoch's values): `dvc plots show`/`diff`,
`dvc exp show`, DVC's VS Code extension and Studio read them live during training. MLflow
stays the system of record; these files are the pipeline's view of the same numbers.

Names follow DVCLive's ``train/``/``eval/`` convention, with gapline's two extra views:

- ``train/<m>``: what ``fit`` reports (running means over the augmented batches, dropout on);
- ``eval/<m>``: the validation split (``val_<m>`` in MLflow);
- ``train_eval/<m>``: the un-augmented training split in inference mode (``train_eval_<m>``);
- ``gap/<m>``: the generalization gap (``gap_<m>``; positive = overfitting);
- ``learning_rate``, ``phase``: as they are.

``{train_eval,eval,gap}/headline`` repeat the task's headline metric (accuracy, AUC or RMSE),
so that dvc.yaml's plots read the same files for every task.

Byte-reproducible and resumable: values are logged as Python floats (the history's own
numbers), the step is the epoch, not DVCLive's counter, and a resumed train stage first
writes back the epochs its backup holds, so the files equal an uninterrupted run's.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gapline.core.errors import DataError

CURVES_DIR = Path("dvclive")
# (history prefix, DVCLive folder), most specific first
_VIEWS = (("train_eval_", "train_eval/"), ("val_", "eval/"), ("gap_", "gap/"))
_AS_IS = ("learning_rate", "phase")
HEADLINE = "headline"


def curve_name(key: str) -> str:
    """The DVCLive metric name of a history key (``val_loss`` -> ``eval/loss``)."""
    if key in _AS_IS:
        return key
    for prefix, folder in _VIEWS:
        if key.startswith(prefix):
            return folder + key[len(prefix):]
    return "train/" + key


def history_key(name: str) -> str:
    """The inverse of :func:`curve_name`."""
    for prefix, folder in _VIEWS:
        if name.startswith(folder):
            return prefix + name[len(folder):]
    return name[len("train/"):] if name.startswith("train/") else name


def epoch_curves(logs: Mapping[str, Any], headline: str | None) -> dict[str, float]:
    """One epoch's logs as DVCLive names and Python floats, with the headline aliases."""
    out = {curve_name(k): float(v) for k, v in logs.items()}
    if headline is not None and f"gap_{headline}" in logs:
        for prefix, folder in _VIEWS:
            out[folder + HEADLINE] = float(logs[prefix + headline])
    return out


def dvc_root(start: Path) -> Path | None:
    """The DVC project ``start`` is in (its ``.dvc`` folder's parent), or None."""
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def open_live(folder: Path = CURVES_DIR) -> Any:
    """A fresh ``dvclive.Live`` on ``folder`` (its old curves removed) that never writes a
    dvc.yaml (ours declares the plots), never saves a DVC experiment (this runs inside `dvc
    repro` or `dvc exp run`, which record the results), and makes no report."""
    from dvclive import Live

    class PipelineLive(Live):
        def _init_dvc(self) -> None:
            # Outside a DVC project DVCLive would `dvc init` the enclosing git repository.
            if os.environ.get("DVC_ROOT") or dvc_root(Path.cwd().resolve()) is not None:
                try:
                    super()._init_dvc()
                except Exception as exc:  # noqa: BLE001 - the curves must never stop training
                    # e.g. a git repository without a commit (the Docker image's project):
                    # DVCLive asks it for HEAD and scmrepo raises "Empty git repo". The curves
                    # are written all the same; only the experiment name and Studio are lost.
                    logging.getLogger("dvclive").info("DVC integration off: %s", exc)
                    self._dvc_repo = None

        def _init_resume(self) -> None:
            # DVCLIVE_RESUME=true in the environment would keep the old curves and append:
            # a resumed stage writes back its backup's epochs instead (replay).
            self._resume = False
            self._init_cleanup()

        def post_data_to_studio(self) -> None:
            # Without Studio, DVCLive still re-read every curve file at every step (a cost
            # that grows with the epochs) and kept a thread for it.
            if self._dvc_studio_config:
                super().post_data_to_studio()

    return PipelineLive(dir=str(folder), resume=False, report=None, save_dvc_exp=False, dvcyaml=None)


def log_epoch(live: Any, epoch: int, logs: Mapping[str, Any], headline: str | None) -> None:
    """Epoch ``epoch`` (1-based) into the curves, without DVCLive's per-step sync."""
    live.step = epoch
    for name, value in epoch_curves(logs, headline).items():
        live.log_metric(name, value)


def replay(live: Any, history: Mapping[str, Sequence[float]], headline: str | None) -> None:
    """Write back the epochs a resumed run's backup holds, before the first new one."""
    epochs = max((len(v) for v in history.values()), default=0)
    for i in range(epochs):
        log_epoch(live, i + 1, {k: v[i] for k, v in history.items() if i < len(v)}, headline)
    if epochs:
        live.make_summary()


def callback(live: Any, headline: str | None) -> Any:
    """A Keras callback logging each epoch to ``live`` (after the gap callback, so the gaps are
    in the logs). DVCLive's own ``DVCLiveCallback`` imports TensorFlow, and gapline's
    training runs on JAX too; it would also end the ``Live`` after the first of two phases."""
    import keras

    class DvcLiveCurves(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if logs:
                log_epoch(live, epoch + 1, logs, headline)
                live.next_step()  # metrics.json, Studio, the VS Code extension's signal

    return DvcLiveCurves()


def read_curves(folder: Path = CURVES_DIR) -> dict[str, list[float]]:
    """The history back from the curves (history keys; the headline aliases left out)."""

    root = folder / "plots" / "metrics"
    if not (root / "train" / "loss.tsv").is_file():
        raise DataError(f"{root / 'train' / 'loss.tsv'} does not exist: the train stage writes the curves (run `dvc repro`)")
    out: dict[str, list[float]] = {}
    for path in sorted(root.rglob("*.tsv")):
        name = path.relative_to(root).with_suffix("").as_posix()
        if name.endswith("/" + HEADLINE):
            continue
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        column = path.stem
        out[history_key(name)] = [float(r[column]) for r in rows]
    return out
