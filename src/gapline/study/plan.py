"""The study's jobs: every arm at every seed, then the learning-curve points, and the cache
key that lets a re-run reuse a job whose resolved training config has not changed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..config import Config
from ..errors import ConfigError, bad_value
from ..provenance import json_digest, without_output_only


@dataclass(frozen=True)
class Job:
    """One training run of the study: an arm at one seed (or a learning-curve point)."""

    arm: str
    seed: int
    overrides: tuple[str, ...]
    kind: str = "arm"  # "arm", "curve" or "source"
    fraction: Optional[float] = None

    @property
    def name(self) -> str:
        if self.kind == "source":
            return f"source-{self.arm}"
        if self.kind == "curve":
            return f"curve-{self.arm}-f{self.fraction:g}-s{self.seed}"
        return f"{self.arm}-s{self.seed}"


def plan(cfg: Config, base_overrides: Sequence[str]) -> list[Job]:
    """Every job of the study, in a stable order (arms as listed, then seeds)."""
    st = cfg.study
    if not st.arms:
        raise ConfigError(bad_value("study.arms", {}, "at least one arm (name: [overrides])"))
    names = list(st.include) or list(st.arms)
    seeds = [cfg.train.seed + i for i in range(st.seeds)]
    jobs = [
        Job(arm, seed, (*base_overrides, *arm_overrides(cfg, arm), f"train.seed={seed}"))
        for arm in names
        for seed in seeds
    ]
    for fraction in st.fractions:
        arm = st.learning_curve_arm
        jobs.append(
            Job(
                arm,
                seeds[0],
                (*base_overrides, *arm_overrides(cfg, arm), f"train.seed={seeds[0]}", f"data.train_fraction={fraction}"),
                kind="curve",
                fraction=float(fraction),
            )
        )
    return jobs


SOURCE_PREFIX = "model.init_from=study:"


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
    named = {o[len(SOURCE_PREFIX):] for arm in (st.include or st.arms) for o in st.arms[arm] if o.startswith(SOURCE_PREFIX)}
    return [
        Job(name, cfg.train.seed, (*base_overrides, *overrides, f"train.seed={cfg.train.seed}"), kind="source")
        for name, overrides in st.sources.items()
        if name in named
    ]


def job_key(job: Job, cfg_dict: dict[str, Any]) -> str:
    """Stable across runs; changes when anything in the job's resolved config changes, or the
    content of the model's files (a custom builder, a weights file, the model a warm start
    copies, e.g. a study source)."""
    from ..user_code import model_files_digest

    relevant = without_output_only(
        {k: v for k, v in cfg_dict.items() if k not in ("study", "tracking", "meta", "retrain")}
    )
    model = cfg_dict.get("model", {})
    files = model_files_digest(model.get("deps", {}), model.get("init_from", ""))
    if files:
        relevant["model_files"] = files
    return f"{job.name}-{json_digest({'job': job.name, 'cfg': relevant}, length=12)}"


def resolve(job: Job, root: Path) -> tuple[Config, dict[str, Any]]:
    """The job's config composed from conf/ under ``root``, and the same as a plain dict."""
    from ..params import compose_config

    cfg = compose_config(job.overrides, root)
    return cfg, dataclasses.asdict(cfg)
