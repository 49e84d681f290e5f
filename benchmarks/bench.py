"""gapline benchmarks: print the figures BENCHMARKS.md quotes, measured side by side in one run.

    .venv/bin/python benchmarks/bench.py [--repeats 5] [--only overhead,speed,speed_cnn,logging,startup,memory,large]
    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench.py --only large --large-batch 1024   # on a GPU

Every figure is the median of ``--repeats`` runs, each in a fresh Python process (so no run
profits from another's compiled graphs), timed inside the process after imports: interpreter
and TensorFlow start-up are excluded where a figure says so. Ratios are computed from
medians of the same run.
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
scale = np.float32(1 / read_meta().get("pixel_max", 1) if read_meta().get("pixel_max") else 1)
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
from gapline.params import load_params
from gapline.stages import train as stage
import gapline.training  # import TF and Keras before the clock starts
text = open("params.yaml").read()
cfg = load_params("params.yaml")
t = time.perf_counter()
out = stage.train(cfg, text, yaml.safe_load(text))
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "fit_wall": out["wall_seconds"], "epochs": out["epochs_run"],
                  "samples_per_second": out["train_samples"] * out["epochs_run"] / out["wall_seconds"]}))
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
import gapline.training  # TF and Keras imported before the clock starts
import keras
from gapline import runtime
from gapline.data.layout import AUGMENTED, read_meta, read_split
from gapline.models import build_model
from gapline.params import load_params
from gapline.tasks import spec_from_meta
cfg = load_params("params.yaml")
runtime.configure_for(cfg.train)
def arrays(name, root=None):  # the split in memory, as Keras' guides fit it
    s = read_split(name, root) if root else read_split(name)
    return {"x": np.asarray(s.x), "y": s.y}
tr = arrays("train", AUGMENTED); va = arrays("val")
k = int(tr["y"].max()) + 1
oh = lambda y: np.eye(k, dtype="float32")[y]
# gapline's own model (its pixel_scale layer included), fitted the naive way
model = build_model(tuple(tr["x"].shape[1:]), spec_from_meta(read_meta()), cfg.model, cfg.regularization, cfg.augment.online, cfg.train.seed)
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
import gapline.training
from gapline.data.layout import read_split
from gapline.models import build_model
from gapline.params import load_params
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
    tf_loaded = sh([PY, "-c", "import sys, gapline.cli, gapline.params; print('tensorflow' in sys.modules)"], root).stdout.strip()
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


BENCHES = {"overhead": bench_overhead, "speed": bench_speed, "speed_cnn": bench_speed_cnn, "logging": bench_logging,
           "startup": bench_startup, "memory": bench_memory, "large": bench_large}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default=",".join(BENCHES))
    parser.add_argument("--large-samples", type=int, default=LARGE["samples"])
    parser.add_argument("--large-epochs", type=int, default=LARGE["epochs"])
    parser.add_argument("--large-batch", type=int, default=LARGE["batch"], help="e.g. 1024 to saturate a GPU")
    args = parser.parse_args()
    LARGE.update(samples=args.large_samples, epochs=args.large_epochs, batch=args.large_batch)
    import keras

    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"Keras {keras.__version__} ({keras.backend.backend()})")
    for name in args.only.split(","):
        BENCHES[name](args.repeats)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
