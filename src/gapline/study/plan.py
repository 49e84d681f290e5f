"""The study's jobs: every arm at every seed, then the learning-curve points, and the cache
key that lets a re-run reuse a job whose resolved training config has not changed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..config import Config
from ..errors import ConfigError, bad_value
from ..provenance import json_digest


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
        Job(arm, seed, (*base_overrides, *st.arms[arm], f"train.seed={seed}"))
        for arm in names
        for seed in seeds
    ]
    for fraction in st.fractions:
        arm = st.learning_curve_arm
        jobs.append(
            Job(
                arm,
                seeds[0],
                (*base_overrides, *st.arms[arm], f"train.seed={seeds[0]}", f"data.train_fraction={fraction}"),
                kind="curve",
                fraction=float(fraction),
            )
        )
    return jobs


def sources(cfg: Config, base_overrides: Sequence[str]) -> list[Job]:
    """The models the included arms start from (an arm names ``sources/<name>.keras`` in its
    overrides): each trained once, at the first seed."""
    st = cfg.study
    named = [o for arm in (st.include or st.arms) for o in st.arms[arm]]
    return [
        Job(name, cfg.train.seed, (*base_overrides, *overrides, f"train.seed={cfg.train.seed}"), kind="source")
        for name, overrides in st.sources.items()
        if any(f"sources/{name}.keras" in o for o in named)
    ]


def job_key(job: Job, cfg_dict: dict[str, Any]) -> str:
    """Stable across runs; changes when anything in the job's resolved config changes, or the
    content of the model it starts from (a warm start from a study source)."""
    from ..provenance import file_md5

    relevant = {k: v for k, v in cfg_dict.items() if k not in ("study", "tracking", "meta")}
    start = cfg_dict.get("model", {}).get("init_from", "")
    if start and Path(start).is_file():
        relevant["init_from_md5"] = file_md5(Path(start))
    return f"{job.name}-{json_digest({'job': job.name, 'cfg': relevant}, length=12)}"


def resolve(job: Job, root: Path) -> tuple[Config, dict[str, Any]]:
    """The job's config composed from conf/ under ``root``, and the same as a plain dict."""
    from ..params import compose_config

    cfg = compose_config(job.overrides, root)
    return cfg, dataclasses.asdict(cfg)
