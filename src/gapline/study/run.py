"""Running the study: train the source models arms start from, then the jobs the cache lacks
(in parallel joblib processes), then summarize every job and write the study's files."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..config import Config
from ..files import read_json, write_json, write_text
from .plan import Job, job_key, plan, resolve, sources


@dataclass
class StudyResult:
    table: list[dict[str, Any]]  # one summary row per technique (study.table.summarize)
    results: list[dict[str, Any]]  # every job's record, in plan order
    curve: list[dict[str, Any]]  # the learning-curve rows (learning_curve.curve_row)
    files: list[Path]
    trained: int
    reused: int
    seconds: float


def run_job(job: Job, root: str) -> dict[str, Any]:
    """Worker entry point (runs in a joblib process): train and evaluate one job."""
    from ..trial import run_trial

    cfg, cfg_dict = resolve(job, Path(root))
    return run_trial(cfg).record(
        job=job.name,
        arm=job.arm,
        kind=job.kind,
        seed=job.seed,
        fraction=job.fraction,
        overrides=list(job.overrides),
        config=cfg_dict,
    )


def run_source(job: Job, root: str, path: str) -> dict[str, Any]:
    """Worker entry point: train one source model and save it where the arms look for it."""
    from ..model_io import save_model
    from ..trial import run_trial

    cfg, _ = resolve(job, Path(root))
    result = run_trial(cfg, keep_model=True)
    save_model(result.model, path)
    return result.record(job=job.name, arm=job.arm, kind=job.kind, seed=job.seed, overrides=list(job.overrides))


def train_sources(cfg: Config, base_overrides: Sequence[str], root: Path, out_dir: Path) -> list[dict[str, Any]]:
    """Train the source models whose config (or absence) changed; reuse the others."""
    from joblib import Parallel, delayed

    folder = out_dir / "sources"
    todo, records = [], []
    for job in sources(cfg, base_overrides):
        key = job_key(job, resolve(job, root)[1])
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


def run_study(
    cfg: Config,
    base_overrides: Sequence[str],
    root: Path,
    progress: bool = True,
    on_result: Optional[Callable[[dict[str, Any]], None]] = None,
) -> StudyResult:
    """Plan, run what is missing (in parallel), summarize and write the study's files."""
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from .baselines import classical_baselines
    from .table import headline_of

    out_dir = Path(cfg.study.out_dir)
    if not out_dir.is_absolute():
        out_dir = root / out_dir
    jobs_dir = out_dir / "jobs"
    train_sources(cfg, base_overrides, root, out_dir)  # before the arms' keys: they hash them
    jobs = plan(cfg, base_overrides)
    keys = {job: job_key(job, resolve(job, root)[1]) for job in jobs}
    done: list[dict[str, Any]] = []
    todo: list[Job] = []
    for job in jobs:
        cached = jobs_dir / f"{keys[job]}.json"
        if cached.is_file():
            done.append(read_json(cached))
        else:
            todo.append(job)
    reused = len(done)
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), initial=reused, desc="study", unit="job", disable=not progress, dynamic_ncols=True)
    try:
        if todo:
            parallel = Parallel(n_jobs=min(cfg.study.jobs, len(todo)), return_as="generator_unordered")
            for result in parallel(delayed(run_job)(job, str(root)) for job in todo):
                job = next(j for j in todo if j.name == result["job"])
                write_json(jobs_dir / f"{keys[job]}.json", result)  # cached before anything else
                done.append(result)
                if on_result is not None:
                    on_result(result)
                head = headline_of(result)
                bar.set_postfix_str(f"{result['job']}: test {head} {result.get(f'test_{head}', float('nan')):.3f}")
                bar.update(1)
    finally:
        bar.close()
    order = {job.name: i for i, job in enumerate(jobs)}
    done.sort(key=lambda r: order.get(r["job"], len(order)))
    classical = classical_baselines(resolve(jobs[0], root)[0]) if cfg.study.classical else []
    files, curve, table = _write(done, classical, out_dir)
    return StudyResult(table, done, curve, files, len(todo), reused, time.perf_counter() - start)


def _write(
    done: list[dict[str, Any]], classical: list[dict[str, Any]], out_dir: Path
) -> tuple[list[Path], list[dict[str, Any]], list[dict[str, Any]]]:
    """The table, the chart and (when the study has curve points) the learning curve."""
    from ..learning_curve import curve_row, write_learning_curve
    from .table import bar_chart, summarize, table_csv, table_markdown

    table = summarize(done, classical)
    points = sorted((r for r in done if r["kind"] == "curve"), key=lambda r: r["fraction"])
    curve = [curve_row(r["fraction"], r) for r in points]
    files = [out_dir / "study.md", out_dir / "study.csv"]
    write_text(files[0], table_markdown(table))
    write_text(files[1], table_csv(table))
    files.append(bar_chart(table, out_dir / "study.png"))
    if curve:
        files.extend(write_learning_curve(curve, out_dir))
    return files, curve, table
