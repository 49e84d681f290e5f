"""``gapline promote``: move ``champion`` by hand (a version, or back to ``previous-champion``),
under the retrain lock, recorded like a retrain's promotion (an MLflow run, version tags)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gapline import tracking
from gapline.config.params import compose_config, find_root, load_params
from gapline.config.schema import Config
from gapline.core.errors import ConfigError, GaplineError
from gapline.retrain.lock import exclusive_lock
from gapline.retrain.outcome import ExitCode, Outcome
from gapline.retrain.records import aliases_moved, decision_tags, run_config, utc_now
from gapline.retrain.state import git_commit


def promote(
    version: str | None = None,
    *,
    rollback: bool = False,
    reason: str = "",
    overrides: Sequence[str] = (),
    params: str = "params.yaml",
    root: Path | None = None,
    echo: Callable[[str], None] = print,
) -> Outcome:
    """Point ``champion`` at ``version`` (or, with ``rollback``, at ``previous-champion``); the
    replaced champion becomes ``previous-champion``. Recorded as an MLflow run ``promote`` and
    as tags on the version. Takes the retrain lock; runs in the project root, as retrain does."""

    root = (root or find_root()).resolve()
    with contextlib.chdir(root):
        cfg = _load_config(overrides, params, root)
        name = cfg.tracking.registered_model
        with exclusive_lock(root / cfg.retrain.lock_file, "promote"):
            client = tracking.registry(cfg.tracking)
            aliases = tracking.registry_aliases(client, name)
            old = aliases.get(tracking.CHAMPION)
            version = _target(client, name, aliases, version, rollback)
            if old == version:
                message = f"{name} v{version} is already the champion: nothing to do"
                echo(message)
                return Outcome("up-to-date", ExitCode.OK, message)
            why = reason or ("rollback" if rollback else "manual promotion")
            previous = _move(cfg, root, client, version, old, rollback, why)
            message = f"{aliases_moved(name, version, previous)} ({why})"
            echo(message)
            return Outcome("promoted", ExitCode.OK, message)


def _load_config(overrides: Sequence[str], params: str, root: Path) -> Config:
    cfg = compose_config(overrides, root) if overrides else load_params(root / params, check_drift=False)
    if not cfg.tracking.enabled or not cfg.tracking.registered_model:
        raise ConfigError(
            "tracking.enabled=false is not allowed for promote: expected tracking on and a "
            "tracking.registered_model, since aliases live in the MLflow model registry"
        )
    return cfg


def _target(client: Any, name: str, aliases: Mapping[str, str], version: str | None, rollback: bool) -> str:
    """The registered version to promote: ``version``, or with ``rollback`` the previous champion."""

    if rollback:
        version = aliases.get(tracking.PREVIOUS_CHAMPION)
        if version is None:
            raise GaplineError(f"{name} has no alias {tracking.PREVIOUS_CHAMPION!r}: expected an earlier promotion to roll back")
    assert version is not None
    version = str(version).lstrip("v")
    if not version.isdigit() or tracking.registry_version(client, name, version) is None:
        raise GaplineError(f"--version={version!r} is not allowed: expected a registered version of {name!r}")
    return version


def _move(cfg: Config, root: Path, client: Any, version: str, old: str | None, rollback: bool, why: str) -> str | None:
    """Record the promotion (an MLflow run ``promote``, the version's tags), then move the
    aliases last; returns the new ``previous-champion``."""

    name = cfg.tracking.registered_model
    with tracking.run(run_config(cfg), run_name="promote") as active:
        assert active is not None  # promote refused tracking.enabled=false first
        tracking.log_params({"registered_model": name, "promote.version": version, "promote.rollback": rollback})
        tracking.log_tags(
            {"gapline.mode": "promote", "promote.from": old or "none", "promote.to": version, "promote.reason": why,
             "promote.git_commit": git_commit(root)}
        )
        tracking.tag_version(
            client, name, version,
            decision_tags("promoted", f"{why} (gapline promote)", active.info.run_id, promoted_at=utc_now()),
        )
        tracking.flush()
        with tracking.promotion_lock(client, name):  # retrains on other machines move it under the same lock
            moved = tracking.move_champion(client, name, version)
    return moved["previous_champion"]
