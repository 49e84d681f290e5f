"""The regularization study: which technique actually closes the gap on this data?

Every arm (a name and its Hydra overrides, from ``study.arms``) trains on the same split with
the same seeds; a classical baseline (RBF SVC, logistic regression) and a learning curve put
the numbers in perspective. Jobs run in parallel (joblib processes), each result is cached
under ``<out_dir>/jobs/`` keyed by its resolved config, so an interrupted study re-run only
trains what is missing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from .config import Config
from .errors import ConfigError, bad_value
from .files import read_json, write_json, write_text

ROW_KEYS = (
    "test_accuracy",
    "val_accuracy",
    "train_accuracy",
    "gap_accuracy_test",
    "gap_accuracy_val",
    "gap_loss_test",
    "onset_epoch",
    "best_epoch",
    "epochs_run",
    "params",
    "train_seconds",
)


@dataclass(frozen=True)
class Job:
    """One training run of the study: an arm at one seed (or a learning-curve point)."""

    arm: str
    seed: int
    overrides: tuple[str, ...]
    kind: str = "arm"  # "arm" or "curve"
    fraction: Optional[float] = None

    @property
    def name(self) -> str:
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


def job_key(job: Job, cfg_dict: dict[str, Any]) -> str:
    """Stable across runs; changes when anything in the job's resolved config changes."""
    relevant = {k: v for k, v in cfg_dict.items() if k not in ("study", "tracking", "meta")}
    text = json.dumps({"job": job.name, "cfg": relevant}, sort_keys=True)
    return f"{job.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def resolve(job: Job, root: Path) -> tuple[Config, dict[str, Any]]:
    import dataclasses

    from .params import compose_config

    cfg = compose_config(job.overrides, root)
    return cfg, dataclasses.asdict(cfg)


def run_job(job: Job, root: str) -> dict[str, Any]:
    """Worker entry point (runs in a joblib process): train and evaluate one job."""
    from .experiment import run_experiment

    cfg, cfg_dict = resolve(job, Path(root))
    out = run_experiment(cfg)
    return {
        "job": job.name,
        "arm": job.arm,
        "kind": job.kind,
        "seed": job.seed,
        "fraction": job.fraction,
        "overrides": list(job.overrides),
        "config": cfg_dict,
        **{k: v for k, v in out.items() if k != "history"},
        "history": out["history"],
    }


def classical_baselines(cfg: Config) -> list[dict[str, Any]]:
    """RBF SVC and logistic regression on the very same (flattened) split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    from .data.prepare import split_source

    splits, _ = split_source(cfg)
    flat = {n: (a["x"].reshape(len(a["x"]), -1), a["y"]) for n, a in splits.items()}
    rows = []
    for name, model in (
        ("svc_rbf (classical)", SVC(kernel="rbf")),  # scikit-learn defaults, as users run it
        ("logistic_regression (classical)", LogisticRegression(max_iter=5000)),
    ):
        start = time.perf_counter()
        model.fit(*flat["train"])
        seconds = time.perf_counter() - start
        acc = {n: float(model.score(x, y)) for n, (x, y) in flat.items()}
        rows.append(
            {
                "arm": name,
                "kind": "classical",
                "test_accuracy": acc["test"],
                "val_accuracy": acc["val"],
                "train_accuracy": acc["train"],
                "gap_accuracy_test": acc["train"] - acc["test"],
                "gap_accuracy_val": acc["train"] - acc["val"],
                "train_seconds": seconds,
            }
        )
    return rows


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], float)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def summarize(results: Iterable[dict[str, Any]], classical: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """One row per arm (mean and std over seeds), plus classical rows; best test accuracy first."""
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r["kind"] == "arm":
            by_arm.setdefault(r["arm"], []).append(r)
    table = []
    for arm, runs in by_arm.items():
        row: dict[str, Any] = {"technique": arm, "runs": len(runs), "techniques": runs[0].get("techniques", "")}
        for key in ROW_KEYS:
            values = [r.get(key) for r in runs]
            if key == "onset_epoch":  # -1 means "no onset", not an epoch to average
                onsets = [v for v in values if v is not None and v >= 0]
                values = onsets or [-1]
            mean, std = _mean_std(values)
            row[f"{key}_mean"], row[f"{key}_std"] = mean, std
        table.append(row)
    for c in classical:
        row = {"technique": c["arm"], "runs": 1, "techniques": "classical"}
        for key in ROW_KEYS:
            value = c.get(key, float("nan"))
            row[f"{key}_mean"], row[f"{key}_std"] = float(value), 0.0
        table.append(row)
    table.sort(key=lambda r: (-np.nan_to_num(r["test_accuracy_mean"], nan=-1.0), r["technique"]))
    return table


def _pm(row: dict[str, Any], key: str, scale: float = 100.0, digits: int = 1) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    if math.isnan(mean):
        return "–"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _num(value: float, fmt: str) -> str:
    return "–" if value is None or math.isnan(value) else format(value, fmt)


def table_markdown(table: Sequence[dict[str, Any]]) -> str:
    header = (
        "| technique | test accuracy % | accuracy gap (train−test) pts | loss gap (test−train) "
        "| onset epoch | params | train time s |\n|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in table:
        onset = r["onset_epoch_mean"]
        onset_text = "none" if not math.isnan(onset) and onset < 0 else _num(onset, ".0f")
        lines.append(
            f"| {r['technique']} | {_pm(r, 'test_accuracy')} | {_pm(r, 'gap_accuracy_test')} "
            f"| {_num(r['gap_loss_test_mean'], '.3f')} | {onset_text} "
            f"| {_num(r['params_mean'], ',.0f')} | {_num(r['train_seconds_mean'], '.1f')} |"
        )
    return header + "\n".join(lines) + "\n"


def table_csv(table: Sequence[dict[str, Any]]) -> str:
    keys = ["technique", "runs", "techniques"] + [f"{k}_{s}" for k in ROW_KEYS for s in ("mean", "std")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in table:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def bar_chart(table: Sequence[dict[str, Any]], path: Path) -> Path:
    from .plots import _pyplot, _save

    plt = _pyplot()
    names = [r["technique"] for r in table]
    y = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.5), sharey=True)
    axes[0].barh(y, [r["test_accuracy_mean"] * 100 for r in table],
                 xerr=[r["test_accuracy_std"] * 100 for r in table], color="C0", capsize=3)
    lo = min(r["test_accuracy_mean"] for r in table) * 100
    axes[0].set_xlim(max(0.0, lo - 5), 100)
    axes[0].set_xlabel("test accuracy %")
    axes[1].barh(y, [r["gap_accuracy_test_mean"] * 100 for r in table],
                 xerr=[r["gap_accuracy_test_std"] * 100 for r in table], color="C3", capsize=3)
    axes[1].axvline(0, color="grey", lw=0.8)
    axes[1].set_xlabel("accuracy gap, train − test (points)")
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Regularization study (mean ± std over seeds)")
    fig.tight_layout()
    return _save(fig, path)


@dataclass
class StudyResult:
    table: list[dict[str, Any]]
    results: list[dict[str, Any]]
    curve: list[dict[str, Any]]
    files: list[Path]
    trained: int
    reused: int
    seconds: float


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

    out_dir = Path(cfg.study.out_dir)
    if not out_dir.is_absolute():
        out_dir = root / out_dir
    jobs_dir = out_dir / "jobs"
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
                bar.set_postfix_str(f"{result['job']}: test {result['test_accuracy']:.3f}")
                bar.update(1)
    finally:
        bar.close()
    order = {job.name: i for i, job in enumerate(jobs)}
    done.sort(key=lambda r: order.get(r["job"], len(order)))
    classical = classical_baselines(resolve(jobs[0], root)[0]) if cfg.study.classical else []
    table = summarize(done, classical)
    curve = sorted((r for r in done if r["kind"] == "curve"), key=lambda r: r["fraction"])
    files = [out_dir / "study.md", out_dir / "study.csv"]
    write_text(files[0], table_markdown(table))
    write_text(files[1], table_csv(table))
    files.append(bar_chart(table, out_dir / "study.png"))
    if curve:
        from .learning_curve import write_learning_curve

        files.extend(write_learning_curve([{**r, "train_fraction": r["fraction"]} for r in curve], out_dir))
    return StudyResult(table, done, curve, files, len(todo), reused, time.perf_counter() - start)
