"""Hydra sweeps: ``gapline train -m regularization=none,l2 train.seed=0,1``.

Hydra expands the sweep and launches the jobs (basic launcher: one after another; joblib
launcher: in parallel processes; Optuna sweeper: trials chosen by TPE). A Hydra callback
opens one MLflow parent run before the first job and closes it with a summary table after the
last; each job is one in-memory trial that logs itself as a child of that parent.

The Hydra app is this module's ``app``, decorated at module level. ``@hydra.main`` reads its
arguments from the command line only, so :func:`hydra_train` runs it as its own process
(``python -m gapline.experiments.sweep``) in the project root, instead of patching ``sys.argv`` and the
working directory of the calling process.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback as _HydraCallback
from hydra.types import RunMode
from omegaconf import OmegaConf

from gapline import tracking
from gapline.config.checks import from_container
from gapline.config.params import CONF_DIR, CONFIG_NAME, compose_config, free_key, register_resolver
from gapline.config.schema import register_schema
from gapline.config.tasks import HEADLINE, objective
from gapline.core.errors import ConfigError, GaplineError
from gapline.core.signals import raise_if_terminated, sigterm_as_interrupt, stop_child
from gapline.experiments.trial import run_trial
from gapline.experiments.trial_logging import close_sweep, log_trial, open_sweep

PARENT_ENV = "GAPLINE_SWEEP_PARENT_RUN_ID"


def job_overrides() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not inside a Hydra job
        return []


def multirun() -> bool:
    """Whether this job is one of a sweep's (``-m``): its epochs are never printed, since
    the joblib and Ray launchers run jobs side by side."""
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not inside a Hydra job
        return True


def ray_node() -> str:
    """The Ray node running this job (launcher=ray), or "" outside a Ray worker."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    return str(ray.get_runtime_context().get_node_id())


def sweep_job(raw: Any) -> float:
    """One sweep job: train + evaluate in memory, log a child run, return the objective."""

    raise_if_terminated()
    cfg = from_container(OmegaConf.to_container(raw, resolve=True))
    overrides = job_overrides()
    result = run_trial(cfg, show_progress=not multirun())
    value = objective(result.metrics, cfg.sweep, result.task)
    job = result.record(
        job=" ".join(overrides) or "default",
        arm=" ".join(o for o in overrides if not o.startswith("train.seed=")) or "default",
        kind="sweep",
        seed=cfg.train.seed,
        overrides=overrides,
        config=dataclasses.asdict(cfg),
        objective=value,
        ray_node=ray_node(),
    )
    if cfg.tracking.enabled:
        log_trial(os.environ.get(PARENT_ENV), cfg.tracking, job)

    head = HEADLINE[result.task]
    print(
        f"[{job['job']}] test {head} {result.metrics[f'test_{head}']:.4f}, gap on {head} (train vs val) "
        f"{result.metrics[f'gap_{head}_val']:+.4f}, {cfg.sweep.objective}={value:.4f}",
        flush=True,
    )
    return value




class MlflowSweepCallback(_HydraCallback):
    """Opens the sweep's parent run before the first job and summarizes it after the last."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        keys = [k for k in config.keys() if k != "hydra"]
        cfg = from_container(OmegaConf.to_container(OmegaConf.masked_copy(config, keys), resolve=True))
        if not cfg.tracking.enabled:
            return
        parent = open_sweep(cfg.tracking, list(config.hydra.overrides.task))
        os.environ[PARENT_ENV] = parent
        os.environ["MLFLOW_TRACKING_URI"] = tracking.resolve_uri(cfg.tracking)
        print(f"MLflow parent run {parent} for this sweep", flush=True)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        parent = os.environ.pop(PARENT_ENV, None)
        if parent:
            print(close_sweep(parent), end="", flush=True)


def expand(overrides: Sequence[str]) -> list[list[str]]:
    """Every job's overrides of a sweep (``a=1,2 b=x`` → ``[a=1 b=x], [a=2 b=x]``), as Hydra's
    basic sweeper expands them, through Hydra's public override parser."""
    choices: dict[str, list[str]] = {}  # a key given twice keeps its first place, last value
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise ConfigError(
                f"{override.input_line} is not allowed: expected a list (a,b), choice() or range() sweep "
                "(Hydra's basic sweeper expands no other kind)"
            )
    return [list(job) for job in itertools.product(*choices.values())]


def check_jobs(overrides: Sequence[str], multirun: bool, root: Path) -> None:
    """Compose and validate every job before Hydra starts one, so a bad value is one line
    and no sweep (or MLflow parent run) is opened for a sweep that cannot finish."""

    jobs = expand(overrides) if multirun else [list(overrides)]
    for job in jobs:
        compose_config(job, root)


def hydra_train(overrides: Sequence[str], multirun: bool, root: Path) -> int:
    """Run the Hydra app over conf/ with these overrides (``-m``: a sweep); its exit status."""
    check_jobs(overrides, multirun, root)

    overrides = [free_key(o) for o in overrides]
    argv = ["--config-dir", str(root / CONF_DIR), *(["--multirun"] if multirun else []), *overrides]
    with subprocess.Popen([sys.executable, "-m", __name__, *argv], cwd=root) as app_process:
        # Ctrl-C reaches both processes; a SIGTERM to this one is passed on to the app
        with sigterm_as_interrupt(before=lambda: app_process.send_signal(signal.SIGTERM)):
            try:
                return app_process.wait()
            except KeyboardInterrupt:  # let the app close its parent run first
                stop_child(app_process)
                raise


@hydra.main(version_base=None, config_path=None, config_name=CONFIG_NAME)
def app(cfg: Any) -> float | None:
    """One Hydra job: the in-memory trial; a bad config is one error line and exit 2."""

    try:
        return sweep_job(cfg)
    except GaplineError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def main() -> None:
    """The Hydra app's process: run it; a sweep whose job failed never reached
    ``on_multirun_end``, so its parent run is closed here (FAILED; KILLED on Ctrl-C or
    SIGTERM), never left RUNNING."""

    register_schema()
    register_resolver()
    status = "FAILED"
    try:
        with sigterm_as_interrupt():
            app()
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        parent = os.environ.pop(PARENT_ENV, None)
        if parent:
            close_sweep(parent, status)


if __name__ == "__main__":  # `python -m gapline.experiments.sweep`: the app of the imported module, not a copy
    from gapline.experiments.sweep import main as _main

    _main()
