"""Hydra sweeps: ``gapline train -m regularization=none,l2 train.seed=0,1``.

Hydra expands the sweep and launches the jobs (basic launcher: one after another; joblib
launcher: in parallel processes; Optuna sweeper: trials chosen by TPE). A Hydra callback
opens one MLflow parent run before the first job and closes it with a summary table after the
last; each job trains in memory and logs itself as a child of that parent.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from .config import Config, SweepConfig

PARENT_ENV = "GAPLINE_SWEEP_PARENT_RUN_ID"


def objective(metrics: dict[str, float], sweep: SweepConfig) -> float:
    """The number a sweeper minimizes."""
    if sweep.objective == "val_error":
        return 1.0 - float(metrics["val_accuracy"])
    value = float(metrics["val_loss"])
    if sweep.objective == "val_loss_plus_gap":
        value += sweep.gap_penalty * max(0.0, float(metrics["gap_loss_val"]))
    return value


def job_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not inside a Hydra job
        return []


def ray_node() -> str:
    """The Ray node running this job (launcher=ray), or "" outside a Ray worker."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    return str(ray.get_runtime_context().get_node_id())


def sweep_job(raw: Any) -> float:
    """One sweep job: train + evaluate in memory, log a child run, return the objective."""
    from omegaconf import OmegaConf

    from . import tracking
    from .config import from_container
    from .experiment import run_experiment

    cfg = from_container(OmegaConf.to_container(raw, resolve=True))
    overrides = job_overrides()
    result = run_experiment(cfg)
    value = objective(result, cfg.sweep)
    job = {
        **result,
        "job": " ".join(overrides) or "default",
        "arm": " ".join(o for o in overrides if not o.startswith("train.seed=")) or "default",
        "kind": "sweep",
        "seed": cfg.train.seed,
        "overrides": overrides,
        "config": _asdict(cfg),
        "objective": value,
        "ray_node": ray_node(),
    }
    parent = os.environ.get(PARENT_ENV)
    if cfg.tracking.enabled:
        tracking.log_child_run(parent, cfg.tracking, job)
    print(
        f"[{job['job']}] test accuracy {result['test_accuracy']:.4f}, gap (train−val) "
        f"{result['gap_accuracy_val']:+.4f}, {cfg.sweep.objective}={value:.4f}",
        flush=True,
    )
    return value


def _asdict(cfg: Config) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(cfg)


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a hard dependency
    _HydraCallback = object


class MlflowSweepCallback(_HydraCallback):
    """Opens the sweep's parent run before the first job and summarizes it after the last."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        from . import tracking
        from .config import from_container

        keys = [k for k in config.keys() if k != "hydra"]
        cfg = from_container(OmegaConf.to_container(OmegaConf.masked_copy(config, keys), resolve=True))
        if not cfg.tracking.enabled:
            return
        sweep_args = list(config.hydra.overrides.task)
        parent = tracking.create_parent_run(cfg.tracking, "sweep", {"gapline.mode": "sweep", "sweep.overrides": " ".join(sweep_args)})
        os.environ[PARENT_ENV] = parent
        os.environ["MLFLOW_TRACKING_URI"] = tracking.resolve_uri(cfg.tracking)
        print(f"MLflow parent run {parent} for this sweep", flush=True)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from . import tracking

        parent = os.environ.pop(PARENT_ENV, None)
        if parent:
            table = tracking.finish_parent_run(parent)
            print(table, end="", flush=True)


def expand(overrides: Sequence[str]) -> list[list[str]]:
    """Every job's overrides of a sweep (``a=1,2 b=x`` → ``[a=1 b=x], [a=2 b=x]``)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(job) for batch in batches for job in batch]


def check_jobs(overrides: Sequence[str], multirun: bool, root: Path) -> None:
    """Compose and validate every job before Hydra starts one, so a bad value is one line
    and no sweep (or MLflow parent run) is opened for a sweep that cannot finish."""
    from .params import compose_config

    jobs = expand(overrides) if multirun else [list(overrides)]
    for job in jobs:
        compose_config(job, root)


def hydra_train(overrides: Sequence[str], multirun: bool, root: Path) -> int:
    """Run the Hydra app over conf/ with these overrides (``-m``: a sweep)."""
    import hydra

    from . import tracking
    from .config import register_schema
    from .params import CONF_DIR, CONFIG_NAME, register_resolver

    register_schema()
    register_resolver()
    check_jobs(overrides, multirun, root)

    @hydra.main(version_base=None, config_path=None, config_name=CONFIG_NAME)
    def app(cfg: Any) -> Optional[float]:
        from .errors import GaplineError

        try:
            return sweep_job(cfg)
        except GaplineError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    argv = ["gapline train", "--config-dir", str(root / CONF_DIR), *(["--multirun"] if multirun else []), *overrides]
    saved = sys.argv
    sys.argv = argv
    cwd = os.getcwd()
    try:
        os.chdir(root)
        app()
    finally:
        sys.argv = saved
        os.chdir(cwd)
        parent = os.environ.pop(PARENT_ENV, None)
        if parent:  # a job failed, so Hydra never called on_multirun_end: never leave it RUNNING
            tracking.finish_parent_run(parent, "FAILED")
    return 0
