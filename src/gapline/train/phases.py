"""The two-phase schedule that fine-tunes a pretrained backbone: train the head on the frozen
backbone, then unfreeze (all or the top layers) and continue at a lower learning rate, with
one history, one gap curve and a resumable state across the phase boundary."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from gapline.config.schema import Config
from gapline.models.backbone import find_backbone, set_fine_tune
from gapline.models.runtime import distribution_scope
from gapline.train.resume import saved_phase


class Phases(Protocol):
    """What the schedule drives: one ``model.fit`` per call (:class:`gapline.train.fit.PhaseFit`)."""

    model: Any
    backup: Any

    def run(
        self, cfg: Config, first: int, end: int, phase: int = 0,
        history: dict[str, list[float]] | None = None, restore: bool = True,
    ) -> dict[str, list[float]]: ...

    def recompile(self, cfg: Config, steps: int) -> None: ...


def two_phase_fit(fit: Phases, cfg: Config, steps: int) -> tuple[dict[str, list[float]], int]:
    """Phase 1: ``train.epochs`` epochs, the backbone frozen as ``model.freeze`` says. Phase 2:
    ``model.fine_tune.unfreeze`` top layers of the backbone trainable (BatchNormalization kept
    frozen), the model recompiled with the same optimizer kind at ``train.learning_rate ×
    model.fine_tune.learning_rate_scale``, then ``model.fine_tune.epochs`` more epochs,
    numbered on from where phase 1 ended. Returns the history and the epoch resumed from.

    Each phase has its own EarlyStopping (its ``start_from_epoch`` counted from the phase's
    first epoch): stopping early ends phase 1, never the fine-tuning, which starts from the
    weights phase 1 ended with (its best epoch's, with ``restore_best_weights``).

    Resume: the backup's history says which phase its last epoch belongs to. Saved in phase
    1 (even its last epoch), phase 1 resumes (a finished one runs no epoch: it restores its
    state and its stopper's best weights) and phase 2 follows as in an uninterrupted run.
    Saved in phase 2, phase 1 is skipped: the model is given the phase-2 trainable state and
    optimizer first, then every variable, the optimizer's and the stopper's state are restored.
    """
    fine = cfg.model.fine_tune
    state = fit.backup.state() if fit.backup is not None else None
    phase = saved_phase(state)
    if phase < 2:
        # an early-stopped phase 1 resumes at its end (train.epochs): no epoch left to run
        first = fit.backup.initial_epoch(cfg.train.epochs) if fit.backup is not None else 0
        # the epochs before the kill: fewer than train.epochs when phase 1 had stopped early
        first_epoch = min(first, int(state["epoch"])) if state else first
        history = fit.run(cfg, first, cfg.train.epochs, phase=1)
        begin = len(history.get("loss", []))
    else:
        assert state is not None
        history = {}
        begin = sum(1 for p in state["history"]["phase"] if int(p) == 1)

    end = begin + fine.epochs
    es = cfg.regularization.early_stopping
    cfg2 = replace(
        cfg,
        train=replace(cfg.train, learning_rate=cfg.train.learning_rate * fine.learning_rate_scale),
        regularization=replace(
            cfg.regularization, early_stopping=replace(es, start_from_epoch=begin + es.start_from_epoch)
        ),
    )
    set_fine_tune(find_backbone(fit.model, cfg.model), fine.unfreeze)
    with distribution_scope(cfg.train):  # a trainable change takes effect with a new compile
        fit.recompile(cfg2, steps)
    if phase < 2:
        return fit.run(cfg2, begin, end, phase=2, history=history, restore=False), first_epoch
    assert state is not None
    first2 = end if state.get("stopped") else min(int(state["epoch"]), end)
    return fit.run(cfg2, first2, end, phase=2), int(state["epoch"])
