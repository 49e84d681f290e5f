"""gapline benchmarks: print the figures BENCHMARKS.md quotes, measured side by side in one run.

    .venv/bin/python benchmarks/bench.py [--repeats 5] [--only overhead,speed,speed_cnn,logging,startup,memory,large]
    .venv/bin/python benchmarks/bench.py --repeats 5 --only autolog,stages,evaluate --evaluate-before REV
    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench.py --only large --large-batch 1024   # on a GPU

Every figure is the median of ``--repeats`` runs, each in a fresh Python process (so no run
profits from another's compiled graphs), timed inside the process after imports: interpreter
and TensorFlow start-up are excluded where a figure says so. ``autolog``, ``stages`` and
``evaluate`` time whole processes instead (start-up, imports and exit included), the two
sides alternated. Ratios are computed from medians of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import PY, REPO, median, sh  # noqa: E402  (benchmarks/ is on sys.path: the scripts run from it)

# ---------------------------------------------------------------------------------------
# Child programs (run with `python -c`), each printing one JSON line of measurements.

BARE_KERAS = r"""
import json, sys, time
import numpy as np
import gapline  # same TF environment defaults as the pipeline (oneDNN off, quiet logs)
import keras
from gapline.data.layout import AUGMENTED, read_meta, read_split
epochs, batch, naive = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "naive"
scale = np.float32(1 / read_meta().pixel_max if read_meta().pixel_max else 1)
def arrays(name, root=None):  # what a user's script holds: the split in memory, pixels in [0, 1]
    s = read_split(name, root) if root else read_split(name)
    return {"x": np.asarray(s.x) * scale, "y": s.y}
tr = arrays("train", AUGMENTED); va = arrays("val")
k = int(tr["y"].max()) + 1
oh = lambda y: np.eye(k, dtype="float32")[y]
keras.utils.set_random_seed(42)
import tensorflow as tf; tf.config.experimental.enable_op_determinism()
reg = keras.regularizers.L2(1e-4)
model = keras.Sequential([
    keras.Input(tr["x"].shape[1:]), keras.layers.Flatten(),
    keras.layers.Dense(256, kernel_regularizer=reg), keras.layers.Activation("relu"), keras.layers.Dropout(0.2),
    keras.layers.Dense(256, kernel_regularizer=reg), keras.layers.Activation("relu"), keras.layers.Dropout(0.2),
    keras.layers.Dense(k, activation="softmax", kernel_regularizer=reg),
])
model.compile(keras.optimizers.Adam(1e-3), keras.losses.CategoricalCrossentropy(), metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
t = time.perf_counter()
model.fit(tr["x"], oh(tr["y"]), validation_data=(va["x"], oh(va["y"])), epochs=epochs, batch_size=batch, verbose=0)
wall = time.perf_counter() - t
te = arrays("test")
acc = model.evaluate(te["x"], oh(te["y"]), verbose=0, return_dict=True)["accuracy"]
print(json.dumps({"wall": wall, "test_accuracy": float(acc)}))
"""

PIPELINE_TRAIN = r"""
import json, sys, time
import yaml
from gapline.config.params import load_params
from gapline.stages import train as stage
import gapline.train.fit  # import TF and Keras before the clock starts
text = open("params.yaml").read()
cfg = load_params("params.yaml")
t = time.perf_counter()
out = stage.train(cfg, text, yaml.safe_load(text))
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "fit_wall": out["wall_seconds"], "epochs": out["epochs_run"],
                  "samples_per_second": out["fit_samples"] * out["epochs_run"] / out["wall_seconds"]}))
"""

LOGGING_ONLY = r"""
import json, sys, time, tempfile
import mlflow
mode, epochs = sys.argv[1], int(sys.argv[2])
mlflow.set_tracking_uri("sqlite:///" + tempfile.mkdtemp() + "/m.db")
mlflow.set_experiment("bench")
if mode == "async":
    mlflow.config.enable_async_logging(True)
metrics = {k: 0.5 for k in ("loss", "accuracy", "val_loss", "val_accuracy", "train_eval_loss",
                            "train_eval_accuracy", "gap_loss", "gap_accuracy", "learning_rate")}
with mlflow.start_run():
    t = time.perf_counter()
    for e in range(epochs):
        mlflow.log_metrics(metrics, step=e + 1, synchronous=(mode != "async"))
    per_call = (time.perf_counter() - t) / epochs
    t = time.perf_counter(); mlflow.flush_async_logging(); flush = time.perf_counter() - t
print(json.dumps({"per_epoch_call": per_call, "flush": flush}))
"""


# The same model gapline builds, compiled and fitted the way the Keras guides do it:
# default steps_per_execution (1), fit over numpy arrays with validation_data.
NAIVE_FIT = r"""
import json, sys, time
import numpy as np
import gapline.train.fit  # TF and Keras imported before the clock starts
import keras
from gapline.models import runtime
from gapline.data.layout import AUGMENTED, read_meta, read_split
from gapline.models.build import build_model
from gapline.config.params import load_params
cfg = load_params("params.yaml")
runtime.configure_for(cfg.train)
def arrays(name, root=None):  # the split in memory, as Keras' guides fit it
    s = read_split(name, root) if root else read_split(name)
    return {"x": np.asarray(s.x), "y": s.y}
tr = arrays("train", AUGMENTED); va = arrays("val")
k = int(tr["y"].max()) + 1
oh = lambda y: np.eye(k, dtype="float32")[y]
# gapline's own model (its pixel_scale layer included), fitted the naive way
model = build_model(tuple(tr["x"].shape[1:]), read_meta().task_spec(), cfg.model, cfg.regularization, cfg.augment.online, cfg.train.seed)
model.compile(keras.optimizers.Adam(cfg.train.learning_rate), keras.losses.CategoricalCrossentropy(),
              metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
t = time.perf_counter()
model.fit(tr["x"], oh(tr["y"]), validation_data=(va["x"], oh(va["y"])), epochs=cfg.train.epochs,
          batch_size=cfg.train.batch_size, verbose=0)
wall = time.perf_counter() - t
te = arrays("test")
acc = model.evaluate(te["x"], oh(te["y"]), verbose=0, return_dict=True)["accuracy"]
print(json.dumps({"wall": wall, "samples_per_second": len(tr["y"]) * cfg.train.epochs / wall, "test_accuracy": float(acc)}))
"""

TRAIN_FLOPS = r"""
import json
import gapline.train.fit
from gapline.data.layout import read_split
from gapline.models.build import build_model
from gapline.config.params import load_params
cfg = load_params("params.yaml")
x = read_split("val").x
model = build_model(tuple(x.shape[1:]), 10, cfg.model, cfg.regularization, cfg.augment.online, cfg.train.seed)
forward = 0
for layer in model.layers:  # multiply-adds of the layers that do the arithmetic, x2 for FLOPs
    kind = type(layer).__name__
    if "Conv2D" in kind:
        kh, kw, cin, cout = layer.kernel.shape
        _, h, w, _ = layer.output.shape
        forward += 2 * kh * kw * cin * cout * h * w
    elif "Dense" in kind:
        cin, cout = layer.kernel.shape
        forward += 2 * cin * cout
# Training a sample costs about 3x its forward pass (forward, input and weight gradients).
print(json.dumps({"forward": forward, "train": 3 * forward}))
"""

PEAK_RSS = r"""
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": proc.returncode, "peak_rss_mib": usage.ru_maxrss / 1024}))
"""


# What a user without gapline writes to see the gap: the same model (2x256 MLP, L2 on the
# kernels, dropout, the pixel scale), the same prepared arrays, epochs and batch size,
# mlflow.keras.autolog() into a local sqlite store, and a callback that evaluates the train
# set after every epoch and logs the gap. Keras' and MLflow's defaults otherwise: nothing of
# gapline is imported (no oneDNN or determinism settings), model.evaluate's own batch size.
USER_AUTOLOG = r"""
import json, sys, time
from pathlib import Path
import numpy as np
import keras
import mlflow

epochs, batch = int(sys.argv[1]), int(sys.argv[2])
def split(folder):
    return np.load(f"{folder}/x.npy"), np.load(f"{folder}/y.npy").astype("int64")
x_train, y_train = split("data/augmented/train")
x_val, y_val = split("data/prepared/val")
pixel_max = json.loads(Path("data/prepared/meta.json").read_text())["pixel_max"]
classes = int(y_train.max()) + 1

keras.utils.set_random_seed(42)
l2 = keras.regularizers.L2(1e-4)
model = keras.Sequential([
    keras.Input(x_train.shape[1:]),
    keras.layers.Rescaling(1.0 / pixel_max),
    keras.layers.Flatten(),
    keras.layers.Dense(256, activation="relu", kernel_regularizer=l2),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(256, activation="relu", kernel_regularizer=l2),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(classes, activation="softmax", kernel_regularizer=l2),
])
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])

class TrainSetGap(keras.callbacks.Callback):
    # The train set in inference mode (no dropout) after every epoch, and its gap to
    # validation, added to the epoch's logs: autolog's callback (appended after this one)
    # logs them with the rest. (MLflow 3.17's autolog then warns at the very end, after the
    # model is logged, that linking the run's metrics to the logged model hit a UNIQUE
    # constraint; logging them with mlflow.log_metrics does the same.)
    def on_epoch_end(self, epoch, logs=None):
        train = self.model.evaluate(x_train, y_train, verbose=0, return_dict=True)
        logs.update({"train_eval_loss": train["loss"], "train_eval_accuracy": train["accuracy"],
                     "gap_loss": logs["val_loss"] - train["loss"],
                     "gap_accuracy": train["accuracy"] - logs["val_accuracy"]})

mlflow.set_tracking_uri("sqlite:///user_mlflow.db")
mlflow.set_experiment("user-autolog")
mlflow.keras.autolog()
with mlflow.start_run():
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=batch,
                        callbacks=[TrainSetGap()], verbose=0)
run = mlflow.last_active_run()
print(json.dumps({"epochs": len(history.history["loss"]), "val_accuracy": float(history.history["val_accuracy"][-1]),
                  "gap_accuracy": float(history.history["gap_accuracy"][-1]),
                  "logged_metrics": sorted(run.data.metrics), "logged_model": bool(mlflow.search_logged_models(output_format="list"))}))
"""


def child(code: str, args: list[str], cwd: Path) -> dict:
    out = sh([PY, "-c", code, *args], cwd).stdout.strip().splitlines()
    return json.loads(out[-1])


def project(overrides: list[str]) -> Path:
    """A throwaway copy of the repo's sources with params composed and data prepared."""
    root = Path(tempfile.mkdtemp(prefix="gapline-bench-")) / "repo"
    files = sh(["git", "ls-files"], REPO).stdout.split()
    for rel in files:
        src = REPO / rel
        if src.is_file() and not rel.startswith(("reports/", "docs/")):
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    sh(["git", "init", "-q"], root)
    sh(["gapline", "params", *overrides], root)
    sh(["gapline", "prepare"], root)
    sh(["gapline", "augment"], root)
    return root


def bench_overhead(repeats: int) -> None:
    """Pipeline train stage (incl. MLflow, gap per epoch) vs a bare Keras script, same model."""
    epochs = 100
    root = project(["regularization=standard", "regularization.early_stopping.enabled=false", f"train.epochs={epochs}"])
    pipe, bare = [], []
    for _ in range(repeats):
        pipe.append(child(PIPELINE_TRAIN, [], root)["wall"])
        bare.append(child(BARE_KERAS, [str(epochs), "32", "naive"], root)["wall"])
    p, b = median(pipe), median(bare)
    print(f"[overhead] digits, 2x256 MLP + L2 + dropout, {epochs} epochs, batch 32, {repeats} runs each")
    print(f"  bare Keras fit(validation_data=...)      median {b:6.2f} s")
    print(f"  gapline train stage (gap/epoch + MLflow) median {p:6.2f} s")
    print(f"  ratio gapline / bare Keras               {p / b:6.3f}")


def fast_vs_naive(root: Path, naive: str, naive_args: list[str], repeats: int, key: str) -> dict[str, float]:
    """Alternate gapline's train stage and a naive fit on one project; medians of ``key``
    ("wall" seconds or "samples_per_second") and of both test accuracies."""
    fast, slow, acc_fast, acc_slow = [], [], [], []
    for _ in range(repeats):
        r = child(PIPELINE_TRAIN, [], root)
        fast.append(r["fit_wall"] if key == "wall" else r[key])
        sh(["gapline", "evaluate"], root)
        acc_fast.append(json.loads((root / "reports/metrics.json").read_text())["test_accuracy"])
        r = child(naive, naive_args, root)
        slow.append(r[key])
        acc_slow.append(r["test_accuracy"])
    return {"fast": median(fast), "naive": median(slow), "acc_fast": median(acc_fast), "acc_naive": median(acc_slow)}


def bench_speed(repeats: int) -> None:
    """Fast defaults vs naive Keras on the small-data case the issue names (201-234 digits)."""
    epochs = 100
    root = project(["regularization=dropout", "data.train_fraction=0.2", f"train.epochs={epochs}", "tracking.enabled=false"])
    r = fast_vs_naive(root, BARE_KERAS, [str(epochs), "32", "naive"], repeats, "wall")
    m = json.loads((root / "reports/train.json").read_text())
    print(f"[speed] digits train_fraction=0.2 ({m['train_samples']} samples), 2x256 MLP, {epochs} epochs, batch 32")
    print(f"  naive Keras fit(numpy, validation_data)  median {r['naive']:6.2f} s  test accuracy {r['acc_naive']:.4f}")
    print(f"  gapline fit (tf.data repeat, epoch-long steps_per_execution, cheap eval) median {r['fast']:6.2f} s  "
          f"test accuracy {r['acc_fast']:.4f}")
    print(f"  speed-up                                 {r['naive'] / r['fast']:6.2f}x  (gapline also measures the train-set gap every epoch)")


def bench_speed_cnn(repeats: int) -> None:
    """The same small-data comparison for the CNN (gapline's model, fitted the naive way)."""
    epochs = 100
    root = project(["model=cnn", "regularization=dropout", "data.train_fraction=0.2", f"train.epochs={epochs}",
                    "tracking.enabled=false", "train.resume=false"])
    r = fast_vs_naive(root, NAIVE_FIT, [], repeats, "wall")
    print(f"[speed_cnn] digits train_fraction=0.2, CNN (conf/model/cnn.yaml) + dropout, {epochs} epochs, batch 32")
    print(f"  naive Keras fit(numpy, validation_data)  median {r['naive']:6.2f} s  test accuracy {r['acc_naive']:.4f}")
    print(f"  gapline defaults                         median {r['fast']:6.2f} s  test accuracy {r['acc_fast']:.4f}")
    print(f"  speed-up                                 {r['naive'] / r['fast']:6.2f}x")


def bench_logging(repeats: int) -> None:
    """MLflow per-epoch logging: sync vs async, against the default pipeline's epoch time."""
    epochs = 200
    sync = median([child(LOGGING_ONLY, ["sync", str(epochs)], REPO)["per_epoch_call"] for _ in range(repeats)])
    asyn = [child(LOGGING_ONLY, ["async", str(epochs)], REPO) for _ in range(repeats)]
    a = median([r["per_epoch_call"] for r in asyn])
    flush = median([r["flush"] for r in asyn])
    root = project(["tracking.enabled=false"])
    fit = child(PIPELINE_TRAIN, [], root)
    epoch_s = fit["fit_wall"] / fit["epochs"]
    print(f"[logging] 9 metrics per epoch into a local sqlite store, {epochs} epochs, {repeats} runs")
    print(f"  synchronous log_metrics per epoch        median {sync * 1e3:6.2f} ms")
    print(f"  asynchronous log_metrics per epoch       median {a * 1e3:6.2f} ms  (final flush {flush:.2f} s)")
    print(f"  default pipeline epoch time              {epoch_s * 1e3:6.1f} ms  ({fit['epochs']} epochs)")
    print(f"  async logging overhead per epoch         {100 * a / epoch_s:6.2f} %  (sync would be {100 * sync / epoch_s:.2f} %)")


def bench_startup(repeats: int) -> None:
    root = project(["experiment=debug"])
    sh(["dvc", "repro"], root)

    def timed(args: list[str]) -> float:
        t = time.perf_counter()
        sh(args, root)
        return time.perf_counter() - t

    noop = median([timed(["dvc", "repro"]) for _ in range(repeats)])
    helps = median([timed(["gapline", "--help"]) for _ in range(repeats)])
    check = median([timed(["gapline", "check"]) for _ in range(repeats)])
    tf_loaded = sh([PY, "-c", "import sys, gapline.cli, gapline.config.params; print('tensorflow' in sys.modules)"], root).stdout.strip()
    print(f"[startup] {repeats} runs each, wall clock including the interpreter")
    print(f"  dvc repro with nothing to do             median {noop:6.2f} s")
    print(f"  gapline --help                           median {helps:6.2f} s")
    print(f"  gapline check (validate params.yaml)     median {check:6.2f} s")
    print(f"  TensorFlow imported by the CLI/config?   {tf_loaded}")


def bench_memory(repeats: int) -> None:
    root = project([])
    rss = [child(PEAK_RSS, ["gapline", "train"], root)["peak_rss_mib"] for _ in range(repeats)]
    size = sum(p.stat().st_size for p in (root / "data").rglob("*.npy")) / 2**20
    print(f"[memory] peak RSS of the default train stage, {repeats} runs")
    print(f"  peak RSS                                 median {median(rss):6.0f} MiB  (prepared+augmented arrays on disk: {size:.1f} MiB)")


LARGE = {"samples": 50_000, "epochs": 1, "batch": 32}  # --large-samples/-epochs/-batch


def bench_large(repeats: int) -> None:
    """Throughput on a larger generated image set (MLP and CNN), gapline defaults vs naive
    Keras, and the memory the train stage needs for it."""
    samples, epochs, batch = LARGE["samples"], LARGE["epochs"], LARGE["batch"]
    data = Path(tempfile.mkdtemp(prefix="gapline-large-")) / "large.npz"
    sh([PY, str(REPO / "benchmarks/image_set.py"), str(samples), "32", str(data)], REPO)  # §7's set
    common = ["data=npz", f"data.path={data}", "augment=none", "regularization=none", f"train.epochs={epochs}",
              f"train.batch_size={batch}", "tracking.enabled=false", "train.resume=false"]
    root = project(common)
    train_x = (root / "data/augmented/train/x.npy").stat().st_size / 2**20
    print(f"[large] {samples:,} generated 32x32x3 images, 10 classes ({train_x:.0f} MiB of training arrays), "
          f"{epochs} epochs, batch {batch}, {repeats} runs each")
    for family in ("mlp", "cnn"):
        sh(["gapline", "params", *common, f"model={family}"], root)
        r = fast_vs_naive(root, NAIVE_FIT, [], repeats, "samples_per_second")
        f, n = r["fast"], r["naive"]
        flops = child(TRAIN_FLOPS, [], root)["train"]
        print(f"  {family}: naive Keras fit(numpy)     median {n:8.0f} samples/s  test accuracy {r['acc_naive']:.4f}")
        print(f"  {family}: gapline defaults          median {f:8.0f} samples/s  test accuracy {r['acc_fast']:.4f}")
        print(f"  {family}: speed-up {f / n:5.2f}x; {flops / 1e6:.1f} MFLOP per training sample, "
              f"gapline achieves {f * flops / 1e9:.1f} GFLOP/s")
    sh(["gapline", "params", *common, "model=mlp", "train.epochs=1"], root)
    large = median([child(PEAK_RSS, ["gapline", "train"], root)["peak_rss_mib"] for _ in range(repeats)])
    small_root = project(["model=mlp", "augment=none", "regularization=none", "train.epochs=1",
                          "tracking.enabled=false", "train.resume=false"])
    small = median([child(PEAK_RSS, ["gapline", "train"], small_root)["peak_rss_mib"] for _ in range(repeats)])
    print(f"  peak RSS of the train stage (MLP, 1 epoch): large set {large:.0f} MiB, digits {small:.0f} MiB; "
          f"the difference is {(large - small) / train_x:.2f}x the training arrays (bound: 2 copies)")
    shutil.rmtree(data.parent, ignore_errors=True)


# --- a whole process against what a user writes instead, the stages, evaluate before/after ---

SRC = {"PYTHONPATH": str(REPO / "src")}  # gapline commands run this checkout's code
EVALUATE_BEFORE: dict[str, str] = {}  # --evaluate-before REV: the code evaluate is compared with


def timed(args: list, cwd: Path, extra: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall time of a whole process (interpreter start, imports and exit included), and its stdout."""
    t = time.perf_counter()
    proc = sh(args, cwd, extra=extra)
    return time.perf_counter() - t, proc.stdout


def bench_autolog(repeats: int) -> None:
    """`gapline train` as a whole process against the plain Keras script a user writes to see
    the gap (USER_AUTOLOG): same model, data, epochs and batch size, both logging to a local
    sqlite store. Alternated, the order swapped every repeat."""
    epochs, batch = 60, 32
    # Early stopping off, so both sides run exactly the same number of epochs.
    root = project(["regularization.early_stopping.enabled=false", f"train.epochs={epochs}", f"train.batch_size={batch}"])
    walls: dict[str, list[float]] = {"gapline": [], "user": []}
    user = {}
    for i in range(repeats):
        for side in ("gapline", "user") if i % 2 == 0 else ("user", "gapline"):
            if side == "gapline":
                wall, _ = timed(["gapline", "train"], root, SRC)
            else:
                wall, out = timed([PY, "-c", USER_AUTOLOG, str(epochs), str(batch)], root)
                user = json.loads(out.strip().splitlines()[-1])
            walls[side].append(wall)
    info = json.loads((root / "reports/train.json").read_text())
    g, u = median(walls["gapline"]), median(walls["user"])
    print(f"[autolog] default digits model (2x256 MLP, L2 1e-4, dropout 0.2), {epochs} epochs, batch {batch}, "
          f"early stopping off; whole processes, {repeats} runs each, alternated")
    print(f"  user script: Keras fit + mlflow.keras.autolog() + per-epoch model.evaluate(train)  median {u:6.2f} s  "
          f"({user.get('epochs')} epochs, final val accuracy {user.get('val_accuracy', float('nan')):.4f}, "
          f"gap {user.get('gap_accuracy', float('nan')):+.4f}; model logged: {user.get('logged_model')})")
    print(f"  gapline train (gap per epoch, async MLflow, model logged and registered)    median {g:6.2f} s  "
          f"({info['epochs_run']} epochs)")
    print(f"  ratio gapline / user script              {g / u:6.3f}")
    print(f"  runs (s): gapline {[round(w, 2) for w in walls['gapline']]}, user {[round(w, 2) for w in walls['user']]}")


STAGES = (
    ("config", ["gapline", "check", "--marker", "reports/config.ok"]),
    ("prepare", ["gapline", "prepare"]),
    ("augment", ["gapline", "augment"]),
    ("train", ["gapline", "train"]),
    ("evaluate", ["gapline", "evaluate"]),
)


def bench_stages(repeats: int) -> None:
    """Each stage of the default pipeline as the whole process dvc.yaml runs, in pipeline
    order, and the whole `dvc repro -f` (DVC's hashing and lock included); the two alternate."""
    root = project([])
    sh(["gapline", "train"], root, extra=SRC)  # the store created and the model registered once before timing
    per: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    whole: list[float] = []
    for i in range(repeats):
        for part in ("stages", "dvc") if i % 2 == 0 else ("dvc", "stages"):
            if part == "dvc":
                whole.append(timed(["dvc", "repro", "-f"], root, SRC)[0])
            else:
                for name, cmd in STAGES:
                    per[name].append(timed(cmd, root, SRC)[0])
    print(f"[stages] the default pipeline (digits), each stage a whole process, {repeats} runs each")
    for name, _ in STAGES:
        print(f"  {name:<10} median {median(per[name]):6.2f} s   runs {[round(w, 2) for w in per[name]]}")
    print(f"  sum of the stage medians                 {sum(median(v) for v in per.values()):6.2f} s")
    print(f"  dvc repro -f (all five stages)           median {median(whole):6.2f} s   runs {[round(w, 2) for w in whole]}")


def outputs_digest(root: Path) -> str:
    """One digest of every file evaluate writes: metrics, breakdown, diagnosis and the plots."""
    import hashlib

    reports = root / "reports"
    files = [reports / n for n in ("metrics.json", "breakdown.json", "diagnosis.md")] + sorted((reports / "plots").glob("*"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def bench_evaluate(repeats: int) -> None:
    """`gapline evaluate` as a whole process on the default digits, this checkout's code
    against ``--evaluate-before REV`` (its src/ from `git archive`), alternated on the same
    trained project; every run's output files are compared byte for byte."""
    root = project([])
    sh(["gapline", "train"], root, extra=SRC)
    sides = {"now": SRC}
    if EVALUATE_BEFORE.get("rev"):
        rev = EVALUATE_BEFORE["rev"]
        old = Path(tempfile.mkdtemp(prefix="gapline-before-"))
        sh(["git", "archive", "-o", old / "src.tar", rev, "src"], REPO)
        shutil.unpack_archive(old / "src.tar", old)
        sides = {f"before ({rev})": {"PYTHONPATH": str(old / "src")}, **sides}
    walls: dict[str, list[float]] = {side: [] for side in sides}
    digests: dict[str, set[str]] = {side: set() for side in sides}
    names = list(sides)
    for i in range(repeats):
        for side in names if i % 2 == 0 else names[::-1]:
            walls[side].append(timed(["gapline", "evaluate"], root, sides[side])[0])
            digests[side].add(outputs_digest(root))
    print(f"[evaluate] gapline evaluate on the default digits (1,797 images), whole process, {repeats} runs each, alternated")
    for side in names:
        print(f"  {side:<22} median {median(walls[side]):6.2f} s   runs {[round(w, 2) for w in walls[side]]}   "
              f"outputs {sorted(digests[side])}")
    if len(names) == 2:
        a, b = (median(walls[n]) for n in names)
        same = digests[names[0]] == digests[names[1]] and len(digests[names[0]]) == 1
        print(f"  now / before {b / a:6.3f} ({a - b:+.2f} s); output files byte-identical across all runs: {same}")


BENCHES = {"overhead": bench_overhead, "speed": bench_speed, "speed_cnn": bench_speed_cnn, "logging": bench_logging,
           "startup": bench_startup, "memory": bench_memory, "large": bench_large, "autolog": bench_autolog,
           "stages": bench_stages, "evaluate": bench_evaluate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default=",".join(BENCHES))
    parser.add_argument("--large-samples", type=int, default=LARGE["samples"])
    parser.add_argument("--large-epochs", type=int, default=LARGE["epochs"])
    parser.add_argument("--large-batch", type=int, default=LARGE["batch"], help="e.g. 1024 to saturate a GPU")
    parser.add_argument("--evaluate-before", default="", help="a git revision: `--only evaluate` compares its code with this checkout's")
    args = parser.parse_args()
    EVALUATE_BEFORE["rev"] = args.evaluate_before
    LARGE.update(samples=args.large_samples, epochs=args.large_epochs, batch=args.large_batch)
    import keras

    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"Keras {keras.__version__} ({keras.backend.backend()})")
    for name in args.only.split(","):
        BENCHES[name](args.repeats)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
