"""GPU throughput of gapline's own training path (BENCHMARKS.md, "The GPU path").

    PYTHONPATH=src KERAS_BACKEND=jax python benchmarks/gpu_bench.py [--preset full] [--out DIR]

One process trains a sequence of configurations on the same generated image set (the one
``bench.py --only large`` makes: 50,000 32x32x3 images, 10 classes, 30 % class pattern and
70 % uniform noise; split 32,500 train / 7,500 val / 10,000 unused test). Each "gapline" row
is ``gapline.train.fit.train_model``: the model from ``gapline.models``, compiled by
``compile_model`` (steps_per_execution auto, ``train.jit_compile`` as given) and fitted with
gapline's callbacks (divergence guard, the train-set gap and validation measured in inference
mode every epoch); ``gapline.models.runtime.configure_for`` sets the seed and the precision policy.
"bare" rows are bench.py's naive side: the same model, ``compile`` with Keras' defaults
(``jit_compile="auto"``, one step per execution) and ``fit(numpy, validation_data=...)``.

Timing: the first epoch (compilation) is reported apart; samples/s is the training-set size
over the median of the later epochs' times, each taken from one epoch's end to the next (so
validation and the gap are included, as bench.py's figures include them). "steps" is the
same over the part of each epoch up to its last training step (host sync forced by the
divergence guard's ``float(loss)``). FLOPs are counted as bench.py counts them: 2 x the
multiply-adds of the Conv2D and Dense layers for a forward pass, x3 for a training sample.

Nothing here imports TensorFlow, MLflow, Hydra or OmegaConf: the device needs only Keras and
one backend. Prints a table last and writes ``gpu_bench.json`` to ``--out`` (default
``$OUT`` or the current directory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

# Card peaks (dense, no sparsity), TFLOP/s, from NVIDIA's datasheets: H100 SXM5 / H200 SXM
# (identical compute): FP32 67, TF32 tensor 494.7, BF16/FP16 tensor 989.4. H100 PCIe:
# FP32 51, TF32 378, BF16/FP16 756.
PEAKS = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "source": "NVIDIA H200 datasheet (SXM)"},
    "H100 PCIe": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0, "source": "NVIDIA H100 datasheet (PCIe)"},
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "source": "NVIDIA H100 datasheet (SXM5)"},
}

# (kind, family, batch, precision, jit_compile) in the order they run: the most telling
# first, so a run cut short by --deadline still answers the main question.
PRESETS = {
    "full": [
        ("gapline", "cnn", 1024, "float32", True),
        ("gapline", "cnn", 1024, "mixed_bfloat16", True),
        ("gapline", "cnn", 1024, "float32", False),  # gapline's default train.jit_compile
        ("gapline", "cnn", 4096, "float32", True),
        ("gapline", "cnn", 4096, "mixed_bfloat16", True),
        ("gapline", "cnn", 256, "float32", True),
        ("gapline", "cnn", 256, "mixed_bfloat16", True),
        ("gapline", "mlp", 1024, "float32", True),
        ("gapline", "mlp", 1024, "mixed_bfloat16", True),
        ("gapline", "mlp", 1024, "float32", False),
        ("gapline", "mlp", 4096, "float32", True),
        ("gapline", "mlp", 4096, "mixed_bfloat16", True),
        ("gapline", "mlp", 256, "float32", True),
        ("bare", "cnn", 1024, "float32", None),
        ("bare", "cnn", 1024, "mixed_bfloat16", None),
        ("gapline", "cnn", 1024, "mixed_float16", True),
        ("gapline", "cnn", 4096, "mixed_float16", True),
        ("gapline", "cnn", 8192, "mixed_bfloat16", True),
        ("gapline", "cnn", 8192, "float32", True),
        ("gapline", "mlp", 256, "mixed_bfloat16", True),
    ],
    # the headline pair again, for the spread between runs
    "repeat": [
        ("gapline", "cnn", 1024, "float32", True),
        ("bare", "cnn", 1024, "float32", None),
        ("gapline", "cnn", 1024, "mixed_bfloat16", True),
    ],
    "tiny": [
        ("gapline", "cnn", 256, "float32", True),
        ("gapline", "cnn", 256, "mixed_bfloat16", True),
        ("gapline", "cnn", 256, "float32", False),
        ("gapline", "mlp", 256, "mixed_float16", True),
        ("bare", "cnn", 256, "float32", None),
    ],
}

SIZE, CLASSES = 32, 10


def make_images(n: int) -> tuple:
    """bench.py's set (benchmarks/image_set.py: same seed, same arrays)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from image_set import make

    return make(n, SIZE, CLASSES)


def split(x, y, val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 42) -> dict:
    """A seeded shuffle split with gapline's default fractions (50,000 -> 32,500/7,500/10,000)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(x))
    n_test, n_val = int(round(len(x) * test_fraction)), int(round(len(x) * val_fraction))
    tr, va = order[n_test + n_val :], order[n_test : n_test + n_val]
    return {"x_train": x[tr], "y_train": y[tr], "x_val": x[va], "y_val": y[va]}


def train_flops(model) -> dict:
    """bench.py's TRAIN_FLOPS count: 2 x multiply-adds of Conv2D and Dense, x3 for training."""
    forward = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if "Conv2D" in kind:
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            forward += 2 * kh * kw * cin * cout * h * w
        elif "Dense" in kind:
            cin, cout = layer.kernel.shape
            forward += 2 * cin * cout
    return {"forward": int(forward), "train": int(3 * forward)}


def make_config(family: str, batch: int, precision: str, jit: bool, epochs: int):
    from gapline.config.checks import validate
    from gapline.config.schema import Config, ModelConfig, TrackingConfig, TrainConfig

    model = ModelConfig(family=family, hidden_units=[256, 256], conv_filters=[32, 64], kernel_size=3, dense_units=128)
    train = TrainConfig(epochs=epochs, batch_size=batch, precision=precision, jit_compile=bool(jit), resume=False)
    # regularization and augment stay at their defaults: conf/regularization/none.yaml and
    # conf/augment/none.yaml, as bench.py's large set uses.
    return validate(Config(model=model, train=train, tracking=TrackingConfig(enabled=False)))


def epoch_timer(cap_s: float, hard_cap_s: float, max_epochs: int):
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Last in gapline's callback list: its on_epoch_end runs after the gap and validation."""

        def __init__(self) -> None:
            super().__init__()
            self.t0 = 0.0
            self.last_step = 0.0
            self.ends: list[float] = []
            self.step_ends: list[float] = []
            self.truncated = False

        def on_train_begin(self, logs=None) -> None:
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None) -> None:
            self.last_step = time.perf_counter()
            if self.last_step - self.t0 > hard_cap_s:  # an epoch far slower than planned
                self.truncated = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None) -> None:
            now = time.perf_counter()
            self.ends.append(now)
            self.step_ends.append(self.last_step)
            if len(self.ends) >= max_epochs or (len(self.ends) >= 2 and now - self.t0 > cap_s):
                self.model.stop_training = True

    return EpochTimer()


def run_one(kind: str, family: str, batch: int, precision: str, jit, data: dict, args) -> dict:
    import keras

    from gapline.config.tasks import one_hot
    from gapline.models import runtime
    from gapline.models.build import build_model
    from gapline.train.fit import train_model

    t_unix = time.time()
    keras.backend.clear_session()  # also resets the dtype policy; configure_for sets it again
    cfg = make_config(family, batch, precision, bool(jit), args.max_epochs)
    env = runtime.configure_for(cfg.train)
    timer = epoch_timer(args.cap, args.hard_cap, args.max_epochs)
    xtr, ytr, xva, yva = data["x_train"], data["y_train"], data["x_val"], data["y_val"]
    start = time.perf_counter()
    if kind == "gapline":
        result = train_model(cfg, xtr, ytr, xva, yva, CLASSES, callbacks=[timer])
        model, history = result.model, result.history
        extra = {"gapline_wall_seconds": result.wall_seconds, "gapline_samples_per_second": result.samples_per_second,
                 "steps_per_execution": int(model.steps_per_execution), "jit_compile_resolved": bool(model.jit_compile)}
    else:  # bench.py's NAIVE_FIT: Keras' defaults
        model = build_model(tuple(xtr.shape[1:]), CLASSES, cfg.model, cfg.regularization, cfg.augment.online, cfg.train.seed)
        model.compile(keras.optimizers.Adam(cfg.train.learning_rate), keras.losses.CategoricalCrossentropy(),
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
        hist = model.fit(xtr, one_hot(ytr, CLASSES), validation_data=(xva, one_hot(yva, CLASSES)),
                         epochs=args.max_epochs, batch_size=batch, verbose=0, callbacks=[timer])
        history = hist.history
        extra = {"steps_per_execution": int(model.steps_per_execution), "jit_compile_resolved": bool(model.jit_compile)}
    wall = time.perf_counter() - start
    ends, step_ends, t0 = timer.ends, timer.step_ends, timer.t0
    epoch_s = [b - a for a, b in zip(ends, ends[1:])]
    steps_s = [s - a for a, s in zip(ends, step_ends[1:])]
    eval_s = [e - s for e, s in zip(ends[1:], step_ends[1:])]
    flops = train_flops(model)
    n = len(xtr)
    row = {
        "kind": kind, "family": family, "batch": batch, "precision": precision,
        "jit_compile": jit if kind == "gapline" else "auto",
        "backend": env["backend"], "device": env["device"],
        "t_start_unix": t_unix, "t_end_unix": time.time(), "train_samples": n, "epochs_run": len(ends), "truncated": timer.truncated,
        "first_epoch_s": (ends[0] - t0) if ends else None,
        "epoch_s": epoch_s, "steps_s": steps_s, "eval_s": eval_s, "wall_s": wall,
        "mflop_per_train_sample": flops["train"] / 1e6, "params": int(model.count_params()),
        "val_accuracy_last": float(history["val_accuracy"][-1]) if history.get("val_accuracy") else None,
        **extra,
    }
    if epoch_s:
        med, med_steps = statistics.median(epoch_s), statistics.median(steps_s)
        row.update(
            median_epoch_s=med, median_steps_s=med_steps, median_eval_s=statistics.median(eval_s),
            samples_per_s=n / med, samples_per_s_steps=n / med_steps,
            tflops_epoch=n / med * flops["train"] / 1e12, tflops_steps=n / med_steps * flops["train"] / 1e12,
            spread_epoch=(max(epoch_s) - min(epoch_s)) / med if len(epoch_s) > 1 else 0.0,
        )
    del model
    return row


def diagnose(data: dict, batches: tuple = (1024, 4096), repeats: int = 5) -> dict:
    """Where an epoch's time goes, outside gapline: (1) Keras' own numpy batching for the JAX
    backend (``ArrayDataAdapter``, shuffled, what ``fit(numpy)`` iterates) alone, and then
    with each batch put on the device; (2) the CNN's compiled train step (gapline's model and
    ``compile_model``) over batches already on the device: the model's own rate without the
    host. Medians of ``repeats`` passes over the training set, after one warm pass."""
    import jax
    import keras
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    from gapline.config.tasks import one_hot
    from gapline.models import runtime
    from gapline.train.fit import build_compiled

    x, y = data["x_train"], one_hot(data["y_train"], CLASSES)
    n = len(x)
    out: dict = {"feed": [], "device_resident": []}

    def timed(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    for batch in batches:
        adapter = ArrayDataAdapter(x, y, batch_size=batch, shuffle=True)

        def host_only(adapter: Any = adapter) -> None:
            for _ in adapter.get_jax_iterator():
                pass

        def host_and_put(adapter: Any = adapter) -> None:
            last = None
            for b in adapter.get_jax_iterator():
                last = jax.device_put(b)
            jax.block_until_ready(last)

        h, hp = timed(host_only), timed(host_and_put)
        out["feed"].append({"batch": batch, "host_gather_s": h, "host_gather_and_put_s": hp,
                            "samples_per_s_host": n / h, "samples_per_s_host_put": n / hp})
        print("# diag feed " + json.dumps(out["feed"][-1]), flush=True)

    for batch in batches:
        for precision in ("float32", "mixed_bfloat16"):
            keras.backend.clear_session()
            cfg = make_config("cnn", batch, precision, True, 1)
            runtime.configure_for(cfg.train)
            model = build_compiled(cfg, tuple(x.shape[1:]), CLASSES, n)
            full = n // batch
            on_device = [(jax.device_put(x[i * batch : (i + 1) * batch]), jax.device_put(y[i * batch : (i + 1) * batch]), None)
                         for i in range(full)]
            model.train_on_batch(on_device[0][0], on_device[0][1])  # builds and compiles the step
            model.make_train_function()
            state = [model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                          optimizer_variables=True, metrics_variables=True, purge_model_variables=False)]

            def one_pass(state: list = state, on_device: list = on_device, model: Any = model) -> None:
                st = state[0]
                for b in on_device:
                    _, st = model.train_function(st, iter([b]))
                jax.block_until_ready(st)
                state[0] = st

            sec = timed(one_pass)
            flops = train_flops(model)["train"]
            row = {"family": "cnn", "batch": batch, "precision": precision, "samples": full * batch,
                   "pass_s": sec, "samples_per_s": full * batch / sec, "tflops": full * batch / sec * flops / 1e12}
            out["device_resident"].append(row)
            print("# diag device-resident " + json.dumps(row), flush=True)
            model = on_device = state = None  # free the device copies before the next configuration
    return out


def ceilings(n: int = 8192) -> dict:
    """Measured matmul rates through JAX (8192^3, median of 10 after warm-up): what the
    card's matrix units give this software stack, next to the datasheet peak."""
    import jax
    import jax.numpy as jnp

    out = {}
    key = jax.random.PRNGKey(0)
    for name, dtype, precision in (("bf16", jnp.bfloat16, None), ("fp32_default", jnp.float32, None),
                                   ("fp32_highest", jnp.float32, jax.lax.Precision.HIGHEST)):
        a = jax.random.normal(key, (n, n), dtype)
        b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), dtype)
        f = jax.jit(lambda a, b, p=precision: jnp.matmul(a, b, precision=p))
        f(a, b).block_until_ready()
        times = []
        for _ in range(10):
            t = time.perf_counter()
            f(a, b).block_until_ready()
            times.append(time.perf_counter() - t)
        out[name] = 2 * n**3 / statistics.median(times) / 1e12
    return out


def peaks_for(name: str) -> dict:
    for key, value in PEAKS.items():
        if key in name and (key != "H100" or "PCIe" not in name):
            return {"card_key": key, **value}
    return {}


def fmt_table(rows: list[dict]) -> str:
    head = (f"{'kind':8} {'model':4} {'batch':>5} {'precision':15} {'jit':5} {'1st ep s':>8} {'epoch s':>8} "
            f"{'samples/s':>10} {'steps smp/s':>11} {'TFLOP/s ep':>10} {'TFLOP/s st':>10} {'eval s':>7} {'n':>2} {'val acc':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['kind']:8} {r['family']:4} {r['batch']:>5} {r['precision']:15} {str(r['jit_compile']):5} ERROR {r['error']}")
            continue
        if "samples_per_s" not in r:
            lines.append(f"{r['kind']:8} {r['family']:4} {r['batch']:>5} {r['precision']:15} {str(r['jit_compile']):5} "
                         f"{r['first_epoch_s'] or 0:8.2f}  (only the first epoch ran{', truncated' if r['truncated'] else ''})")
            continue
        lines.append(
            f"{r['kind']:8} {r['family']:4} {r['batch']:>5} {r['precision']:15} {str(r['jit_compile']):5} "
            f"{r['first_epoch_s']:8.2f} {r['median_epoch_s']:8.3f} {r['samples_per_s']:10,.0f} {r['samples_per_s_steps']:11,.0f} "
            f"{r['tflops_epoch']:10.2f} {r['tflops_steps']:10.2f} {r['median_eval_s']:7.3f} {len(r['epoch_s']):>2} "
            f"{r['val_accuracy_last'] if r['val_accuracy_last'] is not None else float('nan'):7.4f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="full", choices=sorted(PRESETS))
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--max-epochs", type=int, default=7, help="per configuration: 1 compile epoch + up to 6 timed")
    parser.add_argument("--cap", type=float, default=20.0, help="seconds per configuration after which it stops at an epoch end (>= 2 epochs)")
    parser.add_argument("--hard-cap", type=float, default=45.0, help="seconds after which a configuration stops mid-epoch")
    parser.add_argument("--deadline", type=float, default=330.0, help="seconds for the whole run; later configurations are skipped")
    parser.add_argument("--reserve", type=float, default=15.0, help="no new configuration starts with fewer seconds left than this")
    parser.add_argument("--skip-ceilings", action="store_true")
    parser.add_argument("--diagnose", action="store_true", help="also time the host feed and a device-resident CNN step loop")
    parser.add_argument("--diag-batches", default="1024,4096")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    t_start = time.perf_counter()

    import jax
    import keras
    import numpy as np

    import gapline

    smi = ""
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    dev = jax.devices()[0]
    meta = {
        "python": platform.python_version(), "platform": platform.platform(), "keras": keras.__version__,
        "jax": jax.__version__, "numpy": np.__version__, "backend": keras.backend.backend(),
        "jax_device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}", "nvidia_smi": smi,
        "gapline_file": gapline.__file__, "cpus": os.cpu_count(), "argv": sys.argv, "preset": args.preset,
        "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
    }
    meta["peaks_tflops"] = peaks_for(smi or meta["jax_device"])
    print("# " + json.dumps({k: meta[k] for k in ("keras", "jax", "backend", "jax_device", "nvidia_smi", "gapline_file")}), flush=True)

    if not args.skip_ceilings and dev.platform == "gpu":
        meta["measured_matmul_tflops"] = ceilings()
        print("# measured 8192^3 matmul TFLOP/s through JAX: " + json.dumps(meta["measured_matmul_tflops"]), flush=True)

    t = time.perf_counter()
    x, y = make_images(args.samples)
    data = split(x, y)
    del x, y
    meta["data_seconds"] = time.perf_counter() - t
    meta["train_samples"], meta["val_samples"] = len(data["x_train"]), len(data["x_val"])
    print(f"# data: {args.samples:,} images generated in {meta['data_seconds']:.1f} s; "
          f"{meta['train_samples']:,} train / {meta['val_samples']:,} val", flush=True)

    if args.diagnose:
        meta["diagnose"] = diagnose(data, tuple(int(b) for b in args.diag_batches.split(",")))

    rows: list[dict] = []
    skipped = []
    out_path = os.path.join(args.out, "gpu_bench.json")
    os.makedirs(args.out, exist_ok=True)
    for kind, family, batch, precision, jit in PRESETS[args.preset]:
        left = args.deadline - (time.perf_counter() - t_start)
        if left < args.reserve:
            skipped.append([kind, family, batch, precision, jit])
            continue
        try:
            row = run_one(kind, family, batch, precision, jit, data, args)
        except Exception as exc:  # one failing configuration must not cost the others
            row = {"kind": kind, "family": family, "batch": batch, "precision": precision, "jit_compile": jit,
                   "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
        rows.append(row)
        brief = {k: row.get(k) for k in ("kind", "family", "batch", "precision", "jit_compile", "first_epoch_s",
                                         "samples_per_s", "samples_per_s_steps", "tflops_steps", "error")}
        print("# " + json.dumps(brief), flush=True)
        meta["elapsed_s"] = time.perf_counter() - t_start
        with open(out_path, "w") as fh:  # after every configuration: a cut-off run keeps what it had
            json.dump({"meta": meta, "rows": rows, "skipped": skipped}, fh, indent=1)
    meta["elapsed_s"] = time.perf_counter() - t_start
    with open(out_path, "w") as fh:
        json.dump({"meta": meta, "rows": rows, "skipped": skipped}, fh, indent=1)
    print()
    print(f"gapline GPU bench: {meta['nvidia_smi'] or meta['jax_device']}; Keras {meta['keras']}, JAX {meta['jax']}; "
          f"{meta['train_samples']:,} train images 32x32x3; medians over the timed epochs (first epoch apart)")
    if meta.get("peaks_tflops"):
        p = meta["peaks_tflops"]
        print(f"peaks ({p['source']}): FP32 {p['fp32']} / TF32 {p['tf32']} / BF16 {p['bf16']} TFLOP/s dense")
    if meta.get("measured_matmul_tflops"):
        print("measured matmul: " + ", ".join(f"{k} {v:.0f}" for k, v in meta["measured_matmul_tflops"].items()) + " TFLOP/s")
    if meta.get("diagnose"):
        for f in meta["diagnose"]["feed"]:
            print(f"host feed, batch {f['batch']}: Keras' numpy batching {f['samples_per_s_host']:,.0f} samples/s, "
                  f"with device_put {f['samples_per_s_host_put']:,.0f} samples/s")
        for r in meta["diagnose"]["device_resident"]:
            print(f"device-resident CNN step loop, batch {r['batch']} {r['precision']}: {r['samples_per_s']:,.0f} samples/s, "
                  f"{r['tflops']:.2f} TFLOP/s")
    print(fmt_table(rows))
    if skipped:
        print(f"skipped for the deadline: {skipped}")
    print(f"total {meta['elapsed_s']:.0f} s; JSON: {out_path}")


if __name__ == "__main__":
    main()
