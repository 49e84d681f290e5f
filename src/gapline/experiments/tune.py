"""``gapline tune``: find the configuration to deploy on the user's own data.

Optuna's TPE sampler (seeded) proposes points of ``tune.space`` (Hydra's Optuna sweeper
syntax, parsed by that plugin); each point is one :func:`run_trial` of the user's config with
the point's overrides, scored on validation only (``tune.objective``): the test split is
neither read nor scored, so the test numbers of the preset's later runs stay honest. The
defaults (the config without any point) are trained too, as the reference the gain is
measured against.

Every finished trial is cached under ``<out_dir>/<name>/jobs/`` by its resolved config. A
rerun replays the cached trials into a sampler with the same seed, which therefore proposes
the same points in the same order, and trains only what is missing: an interrupted tune
resumes where it stopped and ends as an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapline.config.checks import config_path
from gapline.config.params import compose_config
from gapline.config.provenance import json_digest
from gapline.config.schema import MODEL_FAMILIES, Config, SweepConfig
from gapline.config.tasks import HEADLINE, objective
from gapline.core.errors import ConfigError, bad_value
from gapline.core.files import read_json, write_json
from gapline.data.prepare import source_digest
from gapline.experiments.study.plan import job_key
from gapline.experiments.trial import run_trial
from gapline.tracking.redaction import flatten
from gapline.train.fit import TrainingDiverged

#: The model keys each family reads (the rest of ``model`` is shared or bookkeeping): a search
#: over another family's key would train the same model N times.
FAMILY_KEYS = {
    "mlp": ("hidden_units", "activation"),
    "cnn": ("conv_filters", "kernel_size", "dense_units", "activation"),
    "custom": ("kwargs",),
    "backbone": ("hidden_units", "activation", "backbone", "input_size", "freeze", "fine_tune"),
}
assert set(FAMILY_KEYS) == set(MODEL_FAMILIES)
DEFAULTS = "defaults"  # the trial without any point: the reference


@dataclass(frozen=True)
class Trial:
    """One finished trial: its point (overrides), its validation numbers and its objective."""

    number: int  # 0: the defaults; 1..N: the sampler's trials
    point: tuple[str, ...]
    objective: float
    record: dict[str, Any]  # the trial's record (TrialResult.record), as cached
    cached: bool  # read back from an earlier tune, not trained now

    @property
    def seconds(self) -> float:
        return float(self.record.get("job_seconds", 0.0))


@dataclass
class TuneResult:
    name: str
    objective: str
    headline: str
    defaults: Trial
    trials: list[Trial] = field(default_factory=list)
    stopped_by: str = "trials"  # trials | minutes
    seconds: float = 0.0
    out_dir: Path = Path("reports/tune")  # this tune's folder: jobs/, trials.csv

    @property
    def best(self) -> Trial:
        """The best trial (ties and NaN: the earlier); the defaults when no trial beats them."""
        ranked = [self.defaults, *self.trials]
        return min(ranked, key=lambda t: (t.objective, t.number))

    @property
    def gain(self) -> float:
        """How much lower the best objective is than the defaults' (validation)."""
        return self.defaults.objective - self.best.objective


SPACE_KEY = re.compile(r"^(\+{0,2})(tune\.space\.[^=]+)=(?!['\"])(.*\(.*)$")


def quote_space(override: str) -> str:
    """``tune.space.k=interval(0.1, 0.3)`` as Hydra must read it, a string (``'...'``): unquoted
    it is a sweep, which a single composition refuses."""
    match = SPACE_KEY.match(override)
    return f"{match.group(1)}{match.group(2)}='{match.group(3)}'" if match else override


def preset_name(cfg: Config) -> str:
    return cfg.tune.name or f"{cfg.data.source}_{cfg.model.family}"


def tune_dir(cfg: Config, root: Path) -> Path:
    """``<tune.out_dir>/<name>``, under the project unless absolute."""
    out = Path(cfg.tune.out_dir)
    return (out if out.is_absolute() else root / out) / preset_name(cfg)


def search_space(cfg: Config) -> dict[str, Any]:
    """``tune.space`` as Optuna distributions, key by key; a key that is no config key, one
    the model family does not read, or a range Hydra's Optuna sweeper cannot parse is one
    line naming it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override

    space = flatten(cfg.tune.space)
    if not space:
        raise ConfigError(bad_value("tune.space", {}, "at least one key to search, e.g. regularization.dropout: interval(0.0, 0.5)"))
    family = cfg.model.family
    parser = OverridesParser.create()
    out = {}
    for key, text in space.items():
        if not config_path(cfg, key) or key.startswith(("tune.", "tracking.", "meta.", "study.", "sweep.", "retrain.")):
            raise ConfigError(
                bad_value("tune.space", key, "keys of the config a trial trains with (train.*, regularization.*, augment.*, model.*, task.*, data.*)")
            )
        if key.startswith("model."):
            part = key.split(".")[1]
            if part == "family" or part not in FAMILY_KEYS[family]:
                readers = sorted(f for f, keys in FAMILY_KEYS.items() if part in keys)
                reads = f"read by model.family={'/'.join(readers)}" if readers else "not a layer setting"
                raise ConfigError(
                    bad_value(
                        f"tune.space.{key}", str(text),
                        f"a key model.family={family} reads ({', '.join('model.' + k for k in FAMILY_KEYS[family])}); "
                        f"{key} is {reads}",
                    )
                )
        try:
            override = parser.parse_override(f"{key}={text}")
            distribution = create_optuna_distribution_from_override(override)
        except Exception as exc:  # Hydra's grammar errors and the plugin's ValueErrors alike
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                bad_value(f"tune.space.{key}", str(text), f"interval(a, b), tag(log, interval(a, b)), choice(a, b, ...) or range(a, b) ({reason})")
            ) from None
        if not hasattr(distribution, "single"):  # a plain value: nothing to search
            raise ConfigError(bad_value(f"tune.space.{key}", str(text), "a range or a choice to search, not a single value"))
        out[key] = distribution
    return out


def _override(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    if isinstance(value, float):  # 4 significant digits: what a preset shows is what trained
        return f"{key}={float(f'{value:.4g}')!r}"
    return f"{key}={value}"


def _data_digest(cfg: Config) -> str:
    """The source's content: an edited data file never reads a stale trial back."""
    return source_digest(cfg.data)


def trial_key(cfg: Config, digest: str) -> str:
    """The training run a trial is (its resolved config and the data's content): the objective
    is computed from the cached record, so a changed ``tune.objective`` retrains nothing."""
    return json_digest({"run": job_key(dataclasses.asdict(cfg)), "data": digest}, length=16)


def score(cfg: Config, record: Mapping[str, Any]) -> float:
    """The trial's objective on validation (lower is better); NaN (a diverged fit) the worst."""
    if record.get("diverged"):
        return math.inf
    rule = SweepConfig(objective=cfg.tune.objective, gap_penalty=cfg.sweep.gap_penalty)
    value = objective(record, rule, str(record.get("task", "multiclass")))
    return value if math.isfinite(value) else math.inf


def _cached_or_trained(
    point: Sequence[str], base: Sequence[str], root: Path, jobs: Path, digest: str
) -> tuple[dict[str, Any], bool]:
    """The point's record: read back when this very run is cached, else trained (validation
    only) and cached before anything else, so an interrupt after it keeps it."""
    cfg = compose_config([*base, *point], root)  # also checks the point's values
    cached = jobs / f"{trial_key(cfg, digest)}.json"
    if cached.is_file():
        return read_json(cached), True
    start = time.perf_counter()
    try:
        record = run_trial(cfg, with_test=False).record(config=dataclasses.asdict(cfg), overrides=list(point))
    except TrainingDiverged as exc:  # a point too hot to train: the worst score, not the end of the search
        record = {"config": dataclasses.asdict(cfg), "overrides": list(point), "diverged": str(exc)}
    record["job_seconds"] = time.perf_counter() - start  # all in: data, fit, evaluation
    write_json(cached, record)
    return record, False


def run_tune(
    cfg: Config, base: Sequence[str], root: Path, on_trial: Callable[[Trial], None] | None = None
) -> TuneResult:
    """Train the defaults, then the sampler's points until ``tune.trials`` or ``tune.minutes``."""
    import optuna

    space = search_space(cfg)
    name = preset_name(cfg)
    out_dir = tune_dir(cfg, root)
    jobs = out_dir / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    digest = _data_digest(cfg)
    start = time.perf_counter()

    record, cached = _cached_or_trained((), base, root, jobs, digest)
    defaults = Trial(0, (), score(cfg, record), record, cached)
    if on_trial is not None:
        on_trial(defaults)
    task = str(record.get("task", "multiclass"))
    result = TuneResult(name, cfg.tune.objective, HEADLINE[task], defaults, out_dir=out_dir)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=cfg.tune.seed))
    for number in range(1, cfg.tune.trials + 1):
        if cfg.tune.minutes and time.perf_counter() - start >= cfg.tune.minutes * 60:
            result.stopped_by = "minutes"
            break
        asked = study.ask(space)
        point = tuple(_override(key, asked.params[key]) for key in space)
        record, cached = _cached_or_trained(point, base, root, jobs, digest)
        trial = Trial(number, point, score(cfg, record), record, cached)
        if math.isfinite(trial.objective):
            study.tell(asked, trial.objective)
        else:  # a diverged fit: the sampler learns nothing from it
            study.tell(asked, state=optuna.trial.TrialState.FAIL)
        result.trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
    result.seconds = time.perf_counter() - start
    return result


def iter_rows(result: TuneResult) -> Iterator[dict[str, Any]]:
    """One row per trial (the defaults first): what the table and trials.csv show."""
    best = result.best.number
    for t in [result.defaults, *result.trials]:
        r = t.record
        yield {
            "trial": DEFAULTS if t.number == 0 else str(t.number),
            "point": " ".join(t.point) or "(the config as composed)",
            "objective": t.objective,
            f"val_{result.headline}": float(r.get(f"val_{result.headline}", math.nan)),
            f"gap_{result.headline}_val": float(r.get(f"gap_{result.headline}_val", math.nan)),
            "epochs_run": int(r.get("epochs_run", 0)),
            "seconds": t.seconds,
            "cached": int(t.cached),
            "best": int(t.number == best),
        }
