"""Running the study: train the source models arms start from, then the jobs the cache lacks
(in parallel joblib processes), then summarize every job and write the study's files."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapline.config.schema import Config
from gapline.core.files import read_json, write_json, write_text
from gapline.experiments.learning_curve import curve_row, write_learning_curve
from gapline.experiments.study.baselines import classical_baselines
from gapline.experiments.study.plan import Job, job_key, plan, resolve, sources, trials, tuned
from gapline.experiments.study.table import bar_chart, headline_of, summarize, table_csv, table_markdown
from gapline.experiments.study.tuning import Tuning, choose, write_tuning
from gapline.experiments.trial import run_trial
from gapline.models.saving import save_model


@dataclass
class StudyResult:
    table: list[dict[str, Any]]  # one summary row per technique (study.table.summarize)
    results: list[dict[str, Any]]  # every arm and curve job's record, in plan order
    curve: list[dict[str, Any]]  # the learning-curve rows (learning_curve.curve_row)
    files: list[Path]
    trained: int
    reused: int
    seconds: float
    trials: list[dict[str, Any]] = field(default_factory=list)  # the tuned arms' trial records
    tuning: dict[str, Tuning] = field(default_factory=dict)  # per tuned arm: what it chose


def identity(job: Job) -> dict[str, Any]:
    """Who a record is: the same training run can serve several jobs (a tuned arm's first seed
    is its winning trial), each reading it under its own name."""
    return {
        "job": job.name, "arm": job.arm, "kind": job.kind, "seed": job.seed, "fraction": job.fraction,
        "overrides": list(job.overrides), "point": list(job.point), "trial": job.trial,
    }


def run_job(job: Job, root: str) -> dict[str, Any]:
    """Worker entry point (runs in a joblib process): train and evaluate one job."""

    start = time.perf_counter()
    cfg, cfg_dict = resolve(job, Path(root))
    record = run_trial(cfg).record(**identity(job), config=cfg_dict)
    record["job_seconds"] = time.perf_counter() - start  # all in: composing, data, fit, evaluation
    return record


def run_source(job: Job, root: str, path: str) -> dict[str, Any]:
    """Worker entry point: train one source model and save it where the arms look for it."""

    cfg, _ = resolve(job, Path(root))
    result = run_trial(cfg, keep_model=True)
    save_model(result.model, path)
    return result.record(**identity(job))


def train_sources(cfg: Config, base_overrides: Sequence[str], root: Path, out_dir: Path) -> list[dict[str, Any]]:
    """Train the source models whose config (or absence) changed; reuse the others."""
    from joblib import Parallel, delayed

    folder = out_dir / "sources"
    todo, records = [], []
    for job in sources(cfg, base_overrides):
        key = job_key(resolve(job, root)[1])
        marker, model = folder / f"{job.arm}.json", folder / f"{job.arm}.keras"
        if model.is_file() and marker.is_file() and read_json(marker).get("key") == key:
            records.append(read_json(marker))
        else:
            todo.append((job, key))
    if todo:
        parallel = Parallel(n_jobs=min(cfg.study.jobs, len(todo)))
        results = parallel(delayed(run_source)(job, str(root), str(folder / f"{job.arm}.keras")) for job, _ in todo)
        for (job, key), result in zip(todo, results):
            record = {**{k: v for k, v in result.items() if k != "history"}, "key": key}
            write_json(folder / f"{job.arm}.json", record)
            records.append(record)
    return records


class Runner:
    """Runs jobs through the cache: a job whose training run (:func:`job_key`) is cached or
    already done in this study is read back under its own name; the others train in parallel
    joblib processes, each distinct run once, and are cached as they finish."""

    def __init__(self, cfg: Config, root: Path, jobs_dir: Path, bar: Any, on_result: Callable[[dict[str, Any]], None] | None):
        self.cfg, self.root, self.jobs_dir, self.bar, self.on_result = cfg, root, jobs_dir, bar, on_result
        self.runs: dict[str, dict[str, Any]] = {}  # key -> record, as trained or read back
        self.trained = self.reused = 0
        self._keys: dict[tuple[str, ...], str] = {}
        self._counted: set[Job] = set()  # jobs the bar has counted (a second run() repeats the untuned ones)

    def _tick(self, jobs: Sequence[Job]) -> None:
        fresh = [job for job in jobs if job not in self._counted]
        self._counted.update(fresh)
        self.bar.update(len(fresh))

    def key(self, job: Job) -> str:
        if job.overrides not in self._keys:
            self._keys[job.overrides] = job_key(resolve(job, self.root)[1])
        return self._keys[job.overrides]

    def run(self, jobs: Sequence[Job]) -> list[dict[str, Any]]:
        """Every job's record, in the order given."""
        from joblib import Parallel, delayed

        todo: dict[str, Job] = {}
        for job in jobs:
            key = self.key(job)
            cached = self.jobs_dir / f"{key}.json"
            if key in self.runs or key in todo:
                continue
            if cached.is_file():
                self.runs[key] = read_json(cached)
                self.reused += 1
            else:
                todo[key] = job
        self._tick([job for job in jobs if self.key(job) not in todo])
        if todo:
            parallel = Parallel(n_jobs=min(self.cfg.study.jobs, len(todo)), return_as="generator_unordered")
            by_name = {job.name: key for key, job in todo.items()}
            for result in parallel(delayed(run_job)(job, str(self.root)) for job in todo.values()):
                key = by_name[result["job"]]
                write_json(self.jobs_dir / f"{key}.json", result)  # cached before anything else
                self.runs[key] = result
                self.trained += 1
                if self.on_result is not None:
                    self.on_result(result)
                head = headline_of(result)
                self.bar.set_postfix_str(f"{result['job']}: val_loss {result.get('val_loss', float('nan')):.3f}, "
                                         f"test {head} {result.get(f'test_{head}', float('nan')):.3f}")
                self._tick([job for job in jobs if self.key(job) == key])
        return [{**self.runs[self.key(job)], **identity(job), "run": self.key(job)} for job in jobs]


def run_study(
    cfg: Config,
    base_overrides: Sequence[str],
    root: Path,
    progress: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> StudyResult:
    """Tune the arms that search (their trials), run every arm at every seed and the curve
    (what the cache lacks, in parallel), summarize and write the study's files."""
    from tqdm.auto import tqdm

    out_dir = Path(cfg.study.out_dir)
    if not out_dir.is_absolute():
        out_dir = root / out_dir
    train_sources(cfg, base_overrides, root, out_dir)  # before the arms' keys: they hash them
    tuned_arms = tuned(cfg)
    searching = trials(cfg, base_overrides)
    untuned = [job for job in plan(cfg, base_overrides) if job.arm not in tuned_arms]
    total = len(searching) + len(plan(cfg, base_overrides))
    start = time.perf_counter()
    bar = tqdm(total=total, desc="study", unit="job", disable=not progress, dynamic_ncols=True)
    runner = Runner(cfg, root, out_dir / "jobs", bar, on_result)
    try:
        # the trials and the untuned arms in one pool; then the tuned arms at their choice
        first = runner.run([*searching, *untuned])
        trial_records = first[: len(searching)]
        tuning = choose(cfg, trial_records)
        jobs = plan(cfg, base_overrides, {arm: t.point for arm, t in tuning.items()})
        done = runner.run(jobs)
    finally:
        bar.close()
    classical = classical_baselines(resolve(jobs[0], root)[0]) if cfg.study.classical else []
    files, curve, table = _write(cfg, done, classical, tuning, out_dir)
    if trial_records:
        files.append(write_tuning(cfg, trial_records, tuning, out_dir / "tuning.csv"))
    else:  # an untuned run: a tuning.csv left by an earlier, tuned one describes another table
        (out_dir / "tuning.csv").unlink(missing_ok=True)
    return StudyResult(table, done, curve, files, runner.trained, runner.reused, time.perf_counter() - start,
                       trial_records, tuning)


def _write(
    cfg: Config, done: list[dict[str, Any]], classical: list[dict[str, Any]], tuning: dict[str, Tuning], out_dir: Path
) -> tuple[list[Path], list[dict[str, Any]], list[dict[str, Any]]]:
    """The table, the chart and (when the study has curve points) the learning curve."""

    table = summarize(done, classical, baseline=cfg.study.baseline, alpha=cfg.study.alpha, tuning=tuning)
    points = sorted((r for r in done if r["kind"] == "curve"), key=lambda r: r["fraction"])
    curve = [curve_row(r["fraction"], r) for r in points]
    files = [out_dir / "study.md", out_dir / "study.csv"]
    write_text(files[0], table_markdown(table, cfg.study.baseline, cfg.study.alpha))
    write_text(files[1], table_csv(table))
    files.append(bar_chart(table, out_dir / "study.png"))
    if curve:
        files.extend(write_learning_curve(curve, out_dir))
    return files, curve, table
