"""The study's jobs: the tuned arms' trials (one per point of the arm's grid, at the first
seed), every arm at every seed (a tuned arm at its chosen point), then the learning-curve
points; and the cache key that lets any job reuse a training run whose resolved config (seed
included) it shares, whatever the job is called: a tuned arm's first seed is its winning trial,
an ``l2=0`` trial is the baseline."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapline.config.params import compose_config
from gapline.config.provenance import json_digest, without_output_only
from gapline.config.schema import MODEL_GROUPS, Config
from gapline.config.user_code import model_files_digest
from gapline.core.errors import ConfigError, bad_value


@dataclass(frozen=True)
class Job:
    """One training run of the study: an arm at one seed (or a learning-curve point)."""

    arm: str
    seed: int
    overrides: tuple[str, ...]
    kind: str = "arm"  # "arm", "curve", "source" or "trial"
    fraction: float | None = None
    point: tuple[str, ...] = ()  # a tuned arm's grid point (a trial's, or the one it chose)
    trial: int = -1  # a trial's index in its arm's grid

    @property
    def name(self) -> str:
        if self.kind == "source":
            return f"source-{self.arm}"
        if self.kind == "trial":
            return f"trial-{self.arm}-{self.trial}"
        if self.kind == "curve":
            return f"curve-{self.arm}-f{self.fraction:g}-s{self.seed}"
        return f"{self.arm}-s{self.seed}"


def arms(cfg: Config) -> list[str]:
    """The arms this study runs, in order (``study.include``, else every arm)."""
    if not cfg.study.arms:
        raise ConfigError(bad_value("study.arms", {}, "at least one arm (name: [overrides])"))
    return list(cfg.study.include) or list(cfg.study.arms)


def tuned(cfg: Config) -> list[str]:
    """The arms that search their grid first (none when ``study.tune`` is off)."""
    return [arm for arm in arms(cfg) if cfg.study.tune and arm in cfg.study.search]


def grid(cfg: Config, arm: str) -> list[tuple[str, ...]]:
    """The arm's grid points in search order (the product of its keys' values, the first key
    varying slowest), each as the Hydra overrides that set it."""
    space = cfg.study.search[arm]
    return [
        tuple(f"{key}={override_value(v)}" for key, v in zip(space, values))
        for values in itertools.product(*space.values())
    ]


def override_value(value: Any) -> str:
    """A value as a Hydra override writes it (``true``, ``1e-05``, ``[64,64]``, ``null``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)) or value is None or isinstance(value, bool):
        return json.dumps(value, separators=(",", ":"))
    return repr(value)


def seeds(cfg: Config) -> list[int]:
    return [cfg.train.seed + i for i in range(cfg.study.seeds)]


def trials(cfg: Config, base_overrides: Sequence[str]) -> list[Job]:
    """Every tuned arm's grid, one trial per point at the first seed."""
    seed = seeds(cfg)[0]
    return [
        Job(arm, seed, (*base_overrides, *arm_overrides(cfg, arm), *point, f"train.seed={seed}"),
            kind="trial", point=point, trial=i)
        for arm in tuned(cfg)
        for i, point in enumerate(grid(cfg, arm))
    ]


def plan(cfg: Config, base_overrides: Sequence[str], chosen: Mapping[str, tuple[str, ...]] | None = None) -> list[Job]:
    """Every arm at every seed, then the curve points, in a stable order; a tuned arm at the
    point ``chosen`` gives it (none given: its overrides as listed)."""
    chosen = chosen or {}
    all_seeds = seeds(cfg)

    def job(arm: str, seed: int, *extra: str, **kw: Any) -> Job:
        point = tuple(chosen.get(arm, ()))
        return Job(arm, seed, (*base_overrides, *arm_overrides(cfg, arm), *point, f"train.seed={seed}", *extra), point=point, **kw)

    jobs = [job(arm, seed) for arm in arms(cfg) for seed in all_seeds]
    for fraction in cfg.study.fractions:
        jobs.append(job(cfg.study.learning_curve_arm, all_seeds[0], f"data.train_fraction={fraction}", kind="curve", fraction=float(fraction)))
    return jobs


SOURCE_PREFIX = "model.init_from=study:"
# What a cached job record holds; bumped when that changes, so that older records (here: no
# val_nll to tune on) are trained again rather than read back incomplete.
RECORD_VERSION = 2


def source_path(cfg: Config, name: str) -> str:
    """Where the study saves source ``name`` (and where an arm naming it starts from)."""
    return f"{cfg.study.out_dir}/sources/{name}.keras"


def arm_overrides(cfg: Config, arm: str) -> list[str]:
    """The arm's overrides, ``model.init_from=study:NAME`` replaced by that source's file."""
    out = []
    for override in cfg.study.arms[arm]:
        if override.startswith(SOURCE_PREFIX):
            name = override[len(SOURCE_PREFIX):]
            if name not in cfg.study.sources:
                allowed = ", ".join(f"study:{n}" for n in cfg.study.sources) or "none: study.sources is empty"
                raise ConfigError(bad_value(f"study.arms.{arm}", override, f"model.init_from naming a study source ({allowed})"))
            override = f"model.init_from={source_path(cfg, name)}"
        out.append(override)
    return out


def sources(cfg: Config, base_overrides: Sequence[str]) -> list[Job]:
    """The models the included arms start from (``model.init_from=study:NAME``): each trained
    once, at the first seed."""
    st = cfg.study
    named = {o[len(SOURCE_PREFIX):] for arm in arms(cfg) for o in st.arms[arm] if o.startswith(SOURCE_PREFIX)}
    return [
        Job(name, cfg.train.seed, (*base_overrides, *overrides, f"train.seed={cfg.train.seed}"), kind="source")
        for name, overrides in st.sources.items()
        if name in named
    ]


def job_key(cfg_dict: dict[str, Any]) -> str:
    """The training run a job stands for: stable across runs and job names; changes when
    anything in the resolved config changes (the seed included), or the content of the model's
    files (a custom builder, a weights file, the model a warm start copies, e.g. a source)."""

    # the groups that decide the model, and sweep (it decides none, but it has always been in
    # the key: leaving it out now would retrain every cached job for nothing)
    relevant = without_output_only({k: v for k, v in cfg_dict.items() if k in (*MODEL_GROUPS, "sweep")})
    model = cfg_dict.get("model", {})
    files = model_files_digest(model.get("deps", {}), model.get("init_from", ""))
    if files:
        relevant["model_files"] = files
    return json_digest({"cfg": relevant, "record": RECORD_VERSION}, length=16)


def resolve(job: Job, root: Path) -> tuple[Config, dict[str, Any]]:
    """The job's config composed from conf/ under ``root``, and the same as a plain dict."""

    cfg = compose_config(job.overrides, root)
    return cfg, dataclasses.asdict(cfg)
