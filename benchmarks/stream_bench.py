"""Data larger than memory (issue #14, BENCHMARKS.md section 10): print the figures and write
them to ``benchmarks/results/streaming/<bench>.json``.

    .venv/bin/python benchmarks/stream_bench.py [--repeats 5] [--only limit,throughput,decode,inference]

- ``limit``: a generated image folder (PNG, one subfolder per class) whose decoded uint8 pixels
  are at least twice a cgroup v1 memory limit; the whole pipeline (``dvc repro -s <stage>``, one
  stage after another) runs inside the limit in a throwaway project copy. Per stage: wall
  time, exit status, the largest single process's peak RSS (``getrusage(RUSAGE_CHILDREN)``
  of a wrapper around ``dvc``), each process's own peak (``VmHWM``, sampled every 0.2 s), and
  the group's ``memory.max_usage_in_bytes`` and ``memory.failcnt`` (both count page cache).
  Needs root and a cgroup v1 memory controller at /sys/fs/cgroup/memory.
- ``throughput``: ``gapline.train.fit.train_model`` on a split that fits in memory, streamed
  from ``.npy`` (``open_split``: rows read with pread) against loaded whole (``np.load``),
  MLP and CNN, same seed and batch size, fresh process per run, alternating (ABBA).
- ``inference`` (issue #28): images/s of the gap callback's scoring (``inference_scores``) and
  the evaluate stage's (``evaluate_splits``) with the default CNN at 8, 32, 96 and 224 pixels,
  rows per call as before #28 (1,024 for the gap, 512 for evaluate) against rows from the
  byte budget (``train.inference_memory``'s default), alternating in one process per size.
  ``limit --model cnn --size 96`` (or ``--model backbone --extra model.input_size=224,...``)
  is the pipeline under a limit with an image model.
- ``decode``: ``load_image_folder`` images/s with ``workers=1`` against ``workers=0`` (all
  cores), and the bytes per image of the prepared data and of the DVC cache after ``dvc repro``
  (through augment) with this code (uint8 ``.npy``) and with the code before issue #14
  (float32 ``.npz``, commit ``OLD_COMMIT``, run from ``git archive`` on ``PYTHONPATH``).

Every figure is a median over ``--repeats`` runs (the limit run is one run: its size is the
point); ratios are taken from medians of the same invocation. The generated image folder is
kept under ``--work`` (default /tmp/stream-bench) between invocations and reused when its
parameters match; delete it when done.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from common import PY, REPO, env, median, sh  # noqa: E402  (benchmarks/ is on sys.path: the scripts run from it)

RESULTS = REPO / "benchmarks/results/streaming"
CGROUP = Path("/sys/fs/cgroup/memory/gapline-bench")
#: The last commit whose prepare stage wrote float32 ``{train,val,test}.npz`` (before #14).
OLD_COMMIT = "b21e3e4"

OPTS = {"work": Path("/tmp/stream-bench"), "images": 70_000, "size": 128, "limit_gib": 1.5, "batch": 1024,
        "decode_images": 8_000, "model": "mlp", "extra": "", "tp_samples": 40_000, "tp_epochs": 3, "tp_batch": 32, "tp_families": "mlp,cnn", "tag": ""}








def du(path: Path) -> int:
    """Bytes of the regular files under ``path`` (apparent sizes, each inode once)."""
    if not path.exists():
        return 0
    seen, total = set(), 0
    for p in [path] if path.is_file() else path.rglob("*"):
        st = p.lstat()
        if p.is_file() and not p.is_symlink() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def disk_usage(path: Path) -> int:
    """Allocated bytes (``du -sb`` counts apparent; ``du -s --block-size=1`` allocated)."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out else 0


def git_state() -> dict[str, str]:
    head = sh(["git", "rev-parse", "--short", "HEAD"], REPO).stdout.strip()
    dirty = sh(["git", "status", "--short", "--untracked-files=no", "src", "conf", "dvc.yaml"], REPO).stdout.strip()
    return {"head": head, "src_conf_dvc_yaml_modified": dirty.splitlines()}


def machine() -> dict[str, object]:
    import keras

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "keras": keras.__version__, "backend": keras.backend.backend(),
            "mem_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), "git": git_state(), **data}, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------------------
# The generated image folder: 10 classes, each a fixed random size x size x 3 pattern; each
# image 30 % its class pattern and 70 % uniform noise (as benchmarks/image_set.py), as uint8
# PNGs (compress_level 1: noise barely compresses, and writing is 5x faster than level 6).


def _write_images(task: tuple[str, int, int, int, int, int]) -> int:
    from PIL import Image

    root, start, stop, size, classes, seed = task
    templates = np.random.default_rng(seed).uniform(0, 255, (classes, size, size, 3))
    for i in range(start, stop):
        k = i % classes
        noise = np.random.default_rng([seed, i]).integers(0, 256, (size, size, 3), dtype=np.uint8)
        img = np.rint(0.3 * templates[k] + 0.7 * noise).astype(np.uint8)
        Image.fromarray(img).save(Path(root) / f"class_{k:02d}" / f"{i:07d}.png", compress_level=1)
    return stop - start


def image_folder(root: Path, n: int, size: int, classes: int = 10, seed: int = 0) -> dict[str, object]:
    """``root/class_XX/NNNNNNN.png``, written in parallel (seeded: the same files every time);
    reused when ``root/.params.json`` matches."""
    params = {"n": n, "size": size, "classes": classes, "seed": seed}
    marker = root / ".params.json"
    t = time.perf_counter()
    reused = marker.is_file() and json.loads(marker.read_text()) == params
    if not reused:
        shutil.rmtree(root, ignore_errors=True)
        for k in range(classes):
            (root / f"class_{k:02d}").mkdir(parents=True)
        tasks = [(str(root), s, min(n, s + 1000), size, classes, seed) for s in range(0, n, 1000)]
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(_write_images, tasks))
        marker.write_text(json.dumps(params))
    return {**params, "files": n, "decoded_bytes": n * size * size * 3, "raw_bytes": du(root) - marker.stat().st_size,
            "reused": reused,
            "generate_seconds": None if reused else round(time.perf_counter() - t, 1)}


# ---------------------------------------------------------------------------------------
# Throwaway project copies (DVC needs git).


def project_copy(dest: Path, source: Path = REPO, files: list[str] | None = None) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    if files is None:
        files = sh(["git", "ls-files", "-co", "--exclude-standard"], source).stdout.splitlines()
    for rel in files:
        src = source / rel
        if src.is_file() and not rel.startswith(("reports/", "mlruns/", "docs/")) and rel not in ("dvc.lock", "mlflow.db"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    sh(["git", "init", "-q"], dest)
    sh(["git", "add", "-A"], dest)
    sh(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "bench copy"], dest)
    return dest


# ---------------------------------------------------------------------------------------
# limit: the pipeline inside a cgroup v1 memory limit.

# Runs its arguments as a child and prints its exit status, wall time and the largest peak
# RSS of any process below it that was waited for (dvc, the stage, decoding workers).
WRAP = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
with open(sys.argv[1], "w") as log:
    rc = subprocess.run(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT).returncode
wall = time.perf_counter() - t
print(json.dumps({"rc": rc, "wall": wall, "max_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""


def cg_read(name: str) -> str:
    return (CGROUP / name).read_text().strip()


def cg_write(name: str, value: object) -> None:
    (CGROUP / name).write_text(str(value))


def cg_stat() -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in cg_read("memory.stat").splitlines())}


def make_cgroup(limit: int) -> dict[str, object]:
    if CGROUP.exists():
        remove_cgroup()
    CGROUP.mkdir()
    cg_write("memory.limit_in_bytes", limit)
    memsw = (CGROUP / "memory.memsw.limit_in_bytes").exists()
    if memsw:
        cg_write("memory.memsw.limit_in_bytes", limit)
    return {"limit_bytes": int(cg_read("memory.limit_in_bytes")), "memsw_limit_set": memsw,
            "memsw_limit_bytes": int(cg_read("memory.memsw.limit_in_bytes")) if memsw else None}


def remove_cgroup() -> None:
    if CGROUP.exists():
        for pid in cg_read("cgroup.procs").split():  # none should be left; move any to the root group
            Path("/sys/fs/cgroup/memory/cgroup.procs").write_text(pid)
        CGROUP.rmdir()


class Sampler(threading.Thread):
    """Every 0.2 s: each process in the group (its VmHWM, its own peak so far, by command
    line) and the group's anonymous (``total_rss``) and page-cache (``total_cache``) bytes."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.procs: dict[int, dict[str, object]] = {}
        self.max_anon = self.max_cache = self.max_usage_seen = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                pids = [int(p) for p in cg_read("cgroup.procs").split()]
                stat = cg_stat()
                self.max_anon = max(self.max_anon, stat.get("total_rss", 0))
                self.max_cache = max(self.max_cache, stat.get("total_cache", 0))
                self.max_usage_seen = max(self.max_usage_seen, int(cg_read("memory.usage_in_bytes")))
            except OSError:
                pids = []
            for pid in pids:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    continue
                fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status.splitlines()
                          if line.startswith(("VmHWM:", "RssAnon:", "RssFile:", "RssShmem:"))}
                rec = self.procs.setdefault(pid, {"cmd": cmd[:160], "peak_rss_bytes": 0, "max_anon_bytes": 0, "max_file_bytes": 0})
                rec["peak_rss_bytes"] = max(int(rec["peak_rss_bytes"]), fields.get("VmHWM", 0))
                rec["max_anon_bytes"] = max(int(rec["max_anon_bytes"]), fields.get("RssAnon", 0))
                rec["max_file_bytes"] = max(int(rec["max_file_bytes"]), fields.get("RssFile", 0) + fields.get("RssShmem", 0))
            self.stop.wait(0.2)


def label(cmd: str) -> str:
    if "import json, resource, subprocess" in cmd:
        return "wrapper"
    if "multiprocessing" in cmd or "spawn_main" in cmd:
        return "decoding worker" if "resource_tracker" not in cmd else "resource tracker"
    if "bin/dvc" in cmd or cmd.startswith("dvc"):
        return "dvc"
    if "bin/gapline" in cmd or cmd.startswith("gapline"):
        return "gapline " + cmd.split("gapline", 1)[1].split()[0] if len(cmd.split("gapline", 1)[1].split()) else "gapline"
    if cmd.startswith("/bin/sh") or cmd.startswith("sh "):
        return "shell"
    return cmd.split()[0] if cmd else "?"


def run_limited(root: Path, args: list[str], log: Path) -> dict[str, object]:
    """``args`` inside the cgroup (via WRAP), with the group's peak and fail count reset first."""
    cg_write("memory.max_usage_in_bytes", 0)
    cg_write("memory.failcnt", 0)
    if (CGROUP / "memory.memsw.max_usage_in_bytes").exists():
        cg_write("memory.memsw.max_usage_in_bytes", 0)
        cg_write("memory.memsw.failcnt", 0)
    oom_before = oom_kills()
    sampler = Sampler()
    sampler.start()
    script = f"echo $$ > {CGROUP}/cgroup.procs && exec \"$@\""
    proc = subprocess.run(["sh", "-c", script, "sh", PY, "-c", WRAP, str(log), *args], cwd=root, env=env(),
                          capture_output=True, text=True)
    sampler.stop.set()
    sampler.join()
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):  # the wrapper itself was killed
        out = {"rc": proc.returncode, "wall": None, "max_rss_bytes": None, "wrapper_stderr": proc.stderr[-2000:]}
    by_kind: dict[str, int] = {}
    anon_by_kind: dict[str, int] = {}
    file_by_kind: dict[str, int] = {}
    for rec in sampler.procs.values():
        kind = label(str(rec["cmd"]))
        by_kind[kind] = max(by_kind.get(kind, 0), int(rec["peak_rss_bytes"]))
        anon_by_kind[kind] = max(anon_by_kind.get(kind, 0), int(rec["max_anon_bytes"]))
        file_by_kind[kind] = max(file_by_kind.get(kind, 0), int(rec["max_file_bytes"]))
    return {
        **out,
        "cgroup_max_usage_bytes": int(cg_read("memory.max_usage_in_bytes")),
        "cgroup_failcnt": int(cg_read("memory.failcnt")),
        "cgroup_oom_kills": oom_kills() - oom_before,
        "sampled_peak_rss_by_process_bytes": by_kind,
        # RSS splits into anonymous memory (the process's own) and mapped files (libraries,
        # shared with every process that maps them and charged to whichever group read them first)
        "sampled_max_rss_anon_by_process_bytes": anon_by_kind,
        "sampled_max_rss_file_by_process_bytes": file_by_kind,
        "sampled_max_anon_bytes": sampler.max_anon,
        "sampled_max_page_cache_bytes": sampler.max_cache,
        "log_tail": log.read_text()[-1500:] if log.exists() else "",
    }


def oom_kills() -> int:
    for line in cg_read("memory.oom_control").splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return 0


def bench_limit(repeats: int) -> dict:
    n, size, limit_gib = OPTS["images"], OPTS["size"], OPTS["limit_gib"]
    work = OPTS["work"]
    images = work / f"images-{size}px-{n}"
    data = image_folder(images, n, size)
    limit = int(limit_gib * 2**30)
    print(f"[limit] {n:,} PNG images {size}x{size}x3 in 10 classes: {data['decoded_bytes'] / 2**30:.2f} GiB decoded "
          f"({data['decoded_bytes'] / limit:.2f}x the {limit_gib} GiB limit), {data['raw_bytes'] / 2**30:.2f} GiB of PNG files "
          + ("(reused from an earlier run)" if data["reused"] else f"(generated in {data['generate_seconds']} s)"))
    root = project_copy(work / "limit-repo")
    overrides = ["data=image_folder", f"data.path={images}", f"data.image_size=[{size},{size}]", "data.color_mode=rgb",
                 "augment=none", f"model={OPTS['model']}", "train.epochs=1", f"train.batch_size={OPTS['batch']}",
                 "train.resume=false", *[o for o in str(OPTS["extra"]).split(",") if o]]
    sh(["gapline", "params", *overrides], root)
    cg = make_cgroup(limit)
    # What the group is charged for starts empty: page cache the generator left belongs to
    # another group, so drop it (clean pages only) and let the stages read from disk.
    subprocess.run(["sync"])
    Path("/proc/sys/vm/drop_caches").write_text("1")
    stages = {}
    try:
        for stage in ("config", "prepare", "augment", "train", "evaluate"):
            r = run_limited(root, ["dvc", "repro", "-s", stage], work / f"limit-{stage}.log")
            stages[stage] = r
            procs = ", ".join(f"{k} {v / 2**20:.0f}" for k, v in sorted(r["sampled_peak_rss_by_process_bytes"].items()))
            print(f"  {stage:9s} rc {r['rc']}  wall {r['wall'] or 0:7.1f} s  largest process peak RSS "
                  f"{(r['max_rss_bytes'] or 0) / 2**20:6.0f} MiB  group max usage {r['cgroup_max_usage_bytes'] / 2**20:6.0f} MiB "
                  f"(anon <= {r['sampled_max_anon_bytes'] / 2**20:.0f}, cache <= {r['sampled_max_page_cache_bytes'] / 2**20:.0f})  "
                  f"failcnt {r['cgroup_failcnt']}  oom kills {r['cgroup_oom_kills']}")
            print(f"            per process (MiB, sampled VmHWM): {procs}")
            anon = ", ".join(f"{k} {v / 2**20:.0f}/{r['sampled_max_rss_file_by_process_bytes'][k] / 2**20:.0f}"
                             for k, v in sorted(r["sampled_max_rss_anon_by_process_bytes"].items()))
            print(f"            per process, largest sampled RssAnon/RssFile (MiB): {anon}")
            if r["rc"] != 0:
                print(f"  {stage} FAILED; log tail:\n{r['log_tail']}")
                break
        whole = run_limited(root, ["dvc", "repro"], work / "limit-all.log")
    finally:
        remove_cgroup()
    status = sh(["dvc", "status"], root, check=False).stdout.strip()
    metrics = json.loads((root / "reports/metrics.json").read_text()) if (root / "reports/metrics.json").exists() else {}
    train_info = json.loads((root / "reports/train.json").read_text()) if (root / "reports/train.json").exists() else {}
    import re

    fit = re.search(r"trained (\d+) epochs in ([\d.]+)s", stages.get("train", {}).get("log_tail", ""))
    if fit:  # the stage's own line: fit wall time (gap and validation included)
        train_info["fit_seconds"] = float(fit.group(2))
        train_info["samples_per_second"] = train_info.get("train_samples", 0) * int(fit.group(1)) / float(fit.group(2))
    sizes = {"prepared_bytes": du(root / "data/prepared"), "augmented_bytes": du(root / "data/augmented"),
             "dvc_cache_bytes": du(root / ".dvc/cache"), "model_bytes": du(root / "models")}
    print(f"  then `dvc repro` of the whole pipeline: rc {whole['rc']} ({whole['wall'] or 0:.1f} s); dvc status: {status!r}")
    print(f"  prepared {sizes['prepared_bytes'] / 2**30:.2f} GiB, augmented {sizes['augmented_bytes'] / 2**30:.2f} GiB, "
          f"DVC cache {sizes['dvc_cache_bytes'] / 2**30:.2f} GiB; test accuracy {metrics.get('test_accuracy')}, "
          f"train {train_info.get('train_samples')} samples at {train_info.get('samples_per_second')} samples/s")
    return {"data": data, "cgroup": cg, "overrides": overrides, "stages": stages, "repro_after": whole,
            "dvc_status_after": status, "sizes": sizes, "metrics": metrics,
            "train": {k: train_info.get(k) for k in ("train_samples", "epochs_run", "fit_seconds", "samples_per_second")}}


# ---------------------------------------------------------------------------------------
# throughput: streamed (.npy, pread) against in memory (np.load), gapline's own fit path.

TRAIN_ONE = r"""
import json, sys, time
import numpy as np
import gapline.train.fit  # TF and Keras imported before the clock starts
import keras
from gapline.models import runtime
from gapline.data.store import open_split
from gapline.config.params import compose_config
from gapline.config.tasks import TaskSpec
from gapline.train.fit import train_model
mode, family, epochs, batch, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
cfg = compose_config([f"model={family}", "augment=none", "regularization=none", f"train.epochs={epochs}",
                      f"train.batch_size={batch}", "tracking.enabled=false", "train.resume=false"])
runtime.configure_for(cfg.train)
def split(name):
    if mode == "streamed":
        return open_split(__import__("pathlib").Path(folder) / name).pair()
    return np.load(f"{folder}/{name}/x.npy"), np.load(f"{folder}/{name}/y.npy")
(x, y), (xv, yv) = split("train"), split("val")
spec = TaskSpec("multiclass", tuple(str(k) for k in range(10)), pixel_max=255)
times = []
class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): times.append(time.perf_counter() - self.t)
r = train_model(cfg, x, y, xv, yv, spec, callbacks=[Timer()])
print(json.dumps({"epoch_seconds": times, "samples": len(x), "x_type": type(x).__name__, "dtype": str(x.dtype),
                  "samples_per_second_all_epochs": r.samples_per_second, "val_accuracy": r.history.get("val_accuracy", [None])[-1]}))
"""


def throughput_set(folder: Path, n: int) -> dict[str, int]:
    """§7's generated 32x32x3 set (benchmarks/image_set.py) as uint8, split 65/15/20 by a
    seeded permutation and written as on-disk splits (x.npy, y.npy)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import image_set

    from gapline.data.store import write_split

    x, y = image_set.make(n, 32)
    x = np.rint(x * 255).astype(np.uint8)
    order = np.random.default_rng(0).permutation(n)
    cut = [0, int(0.65 * n), int(0.80 * n), n]
    counts = {}
    for name, a, b in zip(("train", "val", "test"), cut, cut[1:]):
        write_split(folder / name, x, y, np.sort(order[a:b]))
        counts[name] = b - a
    from gapline.data.store import CHUNK_BYTES

    train_bytes = counts["train"] * x[0].nbytes
    if train_bytes <= CHUNK_BYTES:  # RowReader would read it whole: no pread to measure
        raise SystemExit(f"--tp-samples={n}: the training split is {train_bytes / 2**20:.0f} MiB; expected more than "
                         f"{CHUNK_BYTES / 2**20:.0f} MiB, which is read whole instead of streamed (use at least 34,000)")
    return counts


def bench_throughput(repeats: int) -> dict:
    folder = OPTS["work"] / "throughput"
    shutil.rmtree(folder, ignore_errors=True)
    counts = throughput_set(folder, OPTS["tp_samples"])
    epochs, batch = OPTS["tp_epochs"], OPTS["tp_batch"]
    print(f"[throughput] {counts['train']:,} training 32x32x3 uint8 images ({counts['train'] * 3072 / 2**20:.0f} MiB), "
          f"{counts['val']:,} val; train_model {epochs} epochs at batch {batch}; samples/s over the epochs after the "
          f"first (gap and validation included), median over them and over {repeats} runs per side (ABBA order)")
    out: dict[str, dict] = {}
    for family in OPTS["tp_families"].split(","):
        runs: dict[str, list[dict]] = {"streamed": [], "memory": []}
        for i in range(repeats):
            order = ("streamed", "memory") if i % 2 == 0 else ("memory", "streamed")
            for mode in order:
                r = json.loads(sh([PY, "-c", TRAIN_ONE, mode, family, str(epochs), str(batch), str(folder)], REPO).stdout.strip().splitlines()[-1])
                r["samples_per_second"] = r["samples"] / median(r["epoch_seconds"][1:])
                runs[mode].append(r)
        s = median([r["samples_per_second"] for r in runs["streamed"]])
        m = median([r["samples_per_second"] for r in runs["memory"]])
        sa = median([r["samples_per_second_all_epochs"] for r in runs["streamed"]])
        ma = median([r["samples_per_second_all_epochs"] for r in runs["memory"]])
        out[family] = {"streamed": s, "memory": m, "ratio": s / m, "streamed_all_epochs": sa, "memory_all_epochs": ma,
                       "ratio_all_epochs": sa / ma, "runs": runs}
        print(f"  {family}: in memory {m:8.0f} samples/s, streamed {s:8.0f} samples/s, ratio {s / m:.3f} "
              f"(all epochs incl. the first: {ma:.0f} / {sa:.0f}, ratio {sa / ma:.3f}); "
              f"per-run streamed {[round(r['samples_per_second']) for r in runs['streamed']]}, "
              f"memory {[round(r['samples_per_second']) for r in runs['memory']]}")
    shutil.rmtree(folder, ignore_errors=True)
    return {"counts": counts, "epochs": epochs, "batch": batch, "repeats": repeats, "results": out}


# ---------------------------------------------------------------------------------------
# decode: images/s of load_image_folder by workers, and bytes per image on disk and in DVC.

DECODE_ONE = r"""
import json, shutil, sys, tempfile, time
from gapline.data.images import load_image_folder
path, size, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
scratch = tempfile.mkdtemp(dir=sys.argv[4])
t = time.perf_counter()
ds = load_image_folder(path, (size, size), "rgb", "fail", scratch=scratch, workers=workers)
wall = time.perf_counter() - t
print(json.dumps({"seconds": wall, "images": len(ds.y), "dtype": str(ds.x.dtype)}))
shutil.rmtree(scratch)
"""


def prepared_sizes(root: Path) -> dict[str, int]:
    prepared, augmented, cache = root / "data/prepared", root / "data/augmented", root / ".dvc/cache"
    return {"prepared_bytes": du(prepared), "augmented_bytes": du(augmented), "dvc_cache_bytes": du(cache),
            "prepared_allocated_bytes": disk_usage(prepared), "dvc_cache_allocated_bytes": disk_usage(cache),
            "files": {str(p.relative_to(root)): p.stat().st_size for d in (prepared, augmented) for p in sorted(d.rglob("*")) if p.is_file()}}


def bench_decode(repeats: int) -> dict:
    n, size = OPTS["decode_images"], OPTS["size"]
    work = OPTS["work"]
    images = work / "decode-images"
    data = image_folder(images, n, size, seed=1)
    scratch = work / "decode-scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    print(f"[decode] load_image_folder of {n:,} PNG images {size}x{size}x3 ({data['raw_bytes'] / 2**20:.0f} MiB of files, "
          f"in the page cache) to a scratch .npy, {repeats} runs per side, alternating; {cores} cores")
    sh([PY, "-c", DECODE_ONE, str(images), str(size), "1", str(scratch)], REPO)  # warm the page cache
    rates: dict[str, dict] = {}
    # at the files' size (decode and copy only), and resized to half (PIL's bilinear resize per image)
    for out_size in (size, size // 2):
        runs: dict[str, list[float]] = {"1": [], "0": []}
        for i in range(repeats):
            for w in (("1", "0") if i % 2 == 0 else ("0", "1")):
                r = json.loads(sh([PY, "-c", DECODE_ONE, str(images), str(out_size), w, str(scratch)], REPO).stdout.strip().splitlines()[-1])
                runs[w].append(r["seconds"])
        one, all_ = n / median(runs["1"]), n / median(runs["0"])
        rates[f"{out_size}x{out_size}"] = {"seconds": runs, "workers_1": one, "workers_0": all_, "speedup": all_ / one}
        print(f"  to {out_size}x{out_size}: workers=1 {one:7.0f} images/s   workers=0 ({cores} processes) {all_:7.0f} images/s   "
              f"speed-up {all_ / one:.2f}x")
        print(f"    per-run seconds: workers=1 {[round(s, 2) for s in runs['1']]}, workers=0 {[round(s, 2) for s in runs['0']]}")

    # Bytes per image: `dvc repro augment` (config, prepare, augment) on the same folder,
    # with this code and with the code before #14 (float32 .npz).
    overrides = ["data=image_folder", f"data.path={images}", f"data.image_size=[{size},{size}]", "data.color_mode=rgb",
                 "augment=none", "tracking.enabled=false"]
    new_root = project_copy(work / "decode-new")
    sh(["gapline", "params", *overrides], new_root)
    sh(["dvc", "repro", "augment"], new_root)
    new = prepared_sizes(new_root)
    old_src = work / "old-src"
    shutil.rmtree(old_src, ignore_errors=True)
    old_src.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", OLD_COMMIT], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old_src)], input=archive, check=True)
    files = sh(["git", "ls-tree", "-r", "--name-only", OLD_COMMIT], REPO).stdout.splitlines()
    old_root = project_copy(work / "decode-old", old_src, files)
    old_env = {"PYTHONPATH": str(old_src / "src")}
    sh(["gapline", "params", *[o for o in overrides if not o.startswith("data.workers")]], old_root, extra=old_env)
    sh(["dvc", "repro", "augment"], old_root, extra=old_env)
    old = prepared_sizes(old_root)
    # the old prepare decoded in one process, into memory: its wall time as a stage, for scale
    old_prep = []
    new_prep = []
    for _ in range(max(1, min(repeats, 3))):
        t = time.perf_counter()
        sh(["gapline", "prepare"], old_root, extra=old_env)
        old_prep.append(time.perf_counter() - t)
        t = time.perf_counter()
        sh(["gapline", "prepare"], new_root)
        new_prep.append(time.perf_counter() - t)
    meta_old = json.loads((old_root / "data/prepared/meta.json").read_text())
    total = sum(meta_old["counts"].values())
    for name, s in (("float32 .npz (before #14)", old), ("uint8 .npy (now)", new)):
        print(f"  {name:26s} prepared {s['prepared_bytes'] / total:9.0f} B/image   DVC cache {s['dvc_cache_bytes'] / total:9.0f} B/image "
              f"(prepared {s['prepared_bytes'] / 2**20:.1f} MiB, augmented {s['augmented_bytes'] / 2**20:.1f} MiB, "
              f"cache {s['dvc_cache_bytes'] / 2**20:.1f} MiB, for {total:,} images)")
    print(f"  prepared/cache ratio old/new: {old['prepared_bytes'] / new['prepared_bytes']:.2f}x / {old['dvc_cache_bytes'] / new['dvc_cache_bytes']:.2f}x")
    print(f"  `gapline prepare` stage wall (incl. interpreter start, validation, split, fingerprints, writing): "
          f"before #14 median {median(old_prep):.1f} s, now median {median(new_prep):.1f} s")
    shutil.rmtree(scratch, ignore_errors=True)
    return {"data": data, "cores": cores, "repeats": repeats, "images_per_second": rates,
            "bytes": {"images": total, "old_float32_npz": old, "new_uint8_npy": new, "old_commit": OLD_COMMIT},
            "prepare_stage_seconds": {"old": old_prep, "new": new_prep}}


# ---------------------------------------------------------------------------------------
# inference: the gap callback's and the evaluate stage's scoring, rows per call as before
# issue #28 (1,024 and 512) against rows from the byte budget (train.inference_memory).

INFER_ONE = r"""
import json, sys, time
import numpy as np
import gapline.evaluate.gap as G
from gapline.models import memory, runtime
from gapline.evaluate.splits import evaluate_splits
from gapline.config.params import compose_config
from gapline.config.tasks import EPOCH_METRICS, multiclass
from gapline.train.fit import build_compiled
size, n, repeats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cfg = compose_config(["model=cnn", "tracking.enabled=false", "train.resume=false"])
runtime.configure_for(cfg.train)
task = multiclass(10)
model = build_compiled(cfg, (size, size, 3), task, n)
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
y = rng.integers(0, 10, n)
real = G.inference_rows
modes = {"before": {"gap": 1024, "evaluate": 512}, "after": {}}
def rows_for(fixed):
    return (lambda model, budget: fixed) if fixed else real
def once(mode, path):
    G.inference_rows = rows_for(modes[mode].get(path))
    t = time.perf_counter()
    if path == "gap":
        G.inference_scores(model, x, y, task, None, EPOCH_METRICS["multiclass"], memory.DEFAULT_BUDGET)
    else:
        evaluate_splits(model, {"test": (x, y)}, task, None, None, memory.DEFAULT_BUDGET)
    return n / (time.perf_counter() - t)
for mode in modes:  # warm-up: every batch shape compiled once
    for path in ("gap", "evaluate"):
        once(mode, path)
out = {f"{m}_{p}": [] for m in modes for p in ("gap", "evaluate")}
for r in range(repeats):
    for mode in (("before", "after") if r % 2 == 0 else ("after", "before")):
        for path in ("gap", "evaluate"):
            out[f"{mode}_{path}"].append(once(mode, path))
print(json.dumps({"rows_after": real(model, memory.DEFAULT_BUDGET), "peak_row_bytes": memory.footprint(model).peak, **out}))
"""


def bench_inference(repeats: int) -> dict:
    """Images/s of the gap's and evaluate's scoring of the default CNN, one fresh process per
    image size; before and after alternate inside it (ABBA), medians over ``repeats``."""
    sizes = {8: 4096, 32: 4096, 96: 1024, 224: 256}  # 224: 256 rows, one call before (1,024 rows would need 12 GiB)
    results = {}
    for size, n in sizes.items():
        proc = sh([PY, "-c", INFER_ONE, size, n, repeats], REPO, extra={"TF_CPP_MIN_LOG_LEVEL": "2"})
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        med = {k: median(v) for k, v in r.items() if isinstance(v, list)}
        results[size] = {**r, "rows": n, "medians": med,
                         "ratio_gap": med["after_gap"] / med["before_gap"], "ratio_evaluate": med["after_evaluate"] / med["before_evaluate"]}
        print(f"[inference] {size}x{size}x3, {n} rows: rows per call after {r['rows_after']} (peak {r['peak_row_bytes'] / 2**20:.2f} MiB a row); "
              f"gap {med['before_gap']:.0f} -> {med['after_gap']:.0f} images/s ({results[size]['ratio_gap']:.2f}x), "
              f"evaluate {med['before_evaluate']:.0f} -> {med['after_evaluate']:.0f} images/s ({results[size]['ratio_evaluate']:.2f}x)")
    return {"sizes": results}


# ---------------------------------------------------------------------------------------
# anatomy: where a train process's anonymous memory goes, step by step (RssAnon after each,
# and the peak RSS VmHWM), for the default CNN at one image size.

ANATOMY_ONE = r"""
import json, sys, time
def mem():
    f = {lyr.split(":")[0]: int(lyr.split()[1]) * 1024 for lyr in open("/proc/self/status") if lyr.startswith(("RssAnon:", "VmHWM:"))}
    return {"anon": f["RssAnon"], "hwm": f["VmHWM"]}
steps = [("python and numpy", (__import__("numpy"), mem())[1])]
size, old_rows = int(sys.argv[1]), int(sys.argv[2])
import gapline.train.fit, keras
steps.append(("TensorFlow, Keras and gapline.train.fit imported", mem()))
import mlflow
steps.append(("MLflow imported", mem()))
import numpy as np
import gapline.evaluate.gap as G
from gapline.models import memory, runtime
from gapline.config.params import compose_config
from gapline.config.tasks import multiclass, one_hot
from gapline.train.fit import build_compiled
cfg = compose_config(["model=cnn", "tracking.enabled=false", "train.resume=false"])
runtime.configure_for(cfg.train)
model = build_compiled(cfg, (size, size, 3), multiclass(10), 256)
steps.append(("default CNN built and compiled", mem()))
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (max(old_rows, 256), size, size, 3), dtype=np.uint8)
y = rng.integers(0, 10, len(x))
steps.append((f"{len(x)} rows of pixels in memory ({x.nbytes / 2**20:.0f} MiB)", mem()))
model.fit(x[:256], one_hot(y[:256], 10), batch_size=32, epochs=1, verbose=0)
steps.append(("8 training steps of batch 32", mem()))
rows = memory.inference_rows(model, memory.DEFAULT_BUDGET)
G._predict(model, x[: rows * 2], rows)
steps.append((f"prediction, {rows} rows per call (the 256MiB budget)", mem()))
if old_rows:
    G._predict(model, x[:old_rows], old_rows)
    steps.append((f"prediction, {old_rows} rows per call (before #28)", mem()))
print(json.dumps({"rows": rows, "peak_row_bytes": memory.footprint(model).peak,
                  "training_bytes_estimate": memory.footprint(model).training_bytes(32), "steps": steps}))
"""


def bench_anatomy(repeats: int) -> dict:
    """One fresh process per size: the anonymous memory after each step of what ``train`` does."""
    out = {}
    for size, old in ((8, 1024), (32, 1024), (96, 1024), (224, 0)):
        r = json.loads(sh([PY, "-c", ANATOMY_ONE, size, old], REPO, extra={"TF_CPP_MIN_LOG_LEVEL": "2"}).stdout.strip().splitlines()[-1])
        out[size] = r
        print(f"[anatomy] {size}x{size}x3, default CNN ({r['rows']} rows per prediction call, "
              f"{r['peak_row_bytes'] / 2**20:.2f} MiB a row; training batch estimate {r['training_bytes_estimate'] / 2**20:.0f} MiB)")
        for name, m in r["steps"]:
            print(f"    {name:55s} RssAnon {m['anon'] / 2**20:7.0f} MiB   peak RSS {m['hwm'] / 2**20:7.0f} MiB")
    print(anatomy_table(out))
    return {"sizes": out}


def limit_table(runs: dict[str, dict]) -> str:
    """BENCHMARKS.md's table of limit runs (``{label: limit JSON}``): per stage, its exit
    status, wall time and the gapline process's peak anonymous / file-backed RSS (sampled),
    with the group's OOM kills."""
    lines = ["| run | stage | exit | wall s | gapline process: peak RssAnon / RssFile MiB | group anon max MiB | OOM kills |",
             "|---|---|---|---|---|---|---|"]
    for name, run in runs.items():
        for stage, r in run["stages"].items():
            anon = r["sampled_max_rss_anon_by_process_bytes"]
            files = r["sampled_max_rss_file_by_process_bytes"]
            # the stage's process; sampled first as the shell DVC started it, it may carry that label
            others = [k for k in anon if k not in ("dvc", "wrapper", "git", "decoding worker", "resource tracker")]
            key = next((k for k in anon if k.startswith("gapline")), max(others, key=anon.get, default=None))
            proc = f"{anon[key] / 2**20:,.0f} / {files[key] / 2**20:,.0f}" if key else "–"
            lines.append(f"| {name} | {stage} | {r['rc']} | {r['wall'] or 0:,.1f} | {proc} | "
                         f"{r['sampled_max_anon_bytes'] / 2**20:,.0f} | {r['cgroup_oom_kills']} |")
    return "\n".join(lines)


def inference_table(sizes: dict) -> str:
    """BENCHMARKS.md's table of the inference part: images/s before and after, per size."""
    lines = ["| image size | rows per call after (before: gap 1,024, evaluate 512) | gap images/s before → after | ratio "
             "| evaluate images/s before → after | ratio |",
             "|---|---|---|---|---|---|"]
    for size, r in sizes.items():
        m = r["medians"]
        lines.append(f"| {size}×{size}×3 | {r['rows_after']:,} | {m['before_gap']:,.0f} → {m['after_gap']:,.0f} | {r['ratio_gap']:.2f} | "
                     f"{m['before_evaluate']:,.0f} → {m['after_evaluate']:,.0f} | {r['ratio_evaluate']:.2f} |")
    return "\n".join(lines)


def print_tables() -> None:
    """Every table BENCHMARKS.md §10 (issue #28) shows, from the JSON files already written."""
    limits = {path.stem.removeprefix("limit_"): json.loads(path.read_text()) for path in sorted(RESULTS.glob("limit_*.json"))
              if path.stem != "limit_run1"}
    print(limit_table({k: limits[k] for k in LIMIT_RUNS if k in limits}))
    for name, fn in (("anatomy_session9.json", anatomy_table), ("inference_session9.json", inference_table)):
        if (RESULTS / name).is_file():
            print()
            print(fn(json.loads((RESULTS / name).read_text())["sizes"]))


LIMIT_RUNS = ("cnn96", "cnn224", "backbone224", "backbone96")


ANATOMY_STEPS = ("Python and numpy", "TensorFlow, Keras and gapline.train.fit imported", "MLflow imported",
                 "the default CNN built and compiled", "the rows of pixels in memory", "8 training steps of batch 32",
                 "prediction, rows per call from the 256MiB budget", "prediction, 1,024 rows per call (before #28)")


def anatomy_table(sizes: dict) -> str:
    """BENCHMARKS.md's table: RssAnon / peak RSS (MiB) after each step, a column per size."""
    lines = ["| after (RssAnon / peak RSS, MiB) | " + " | ".join(f"{s}×{s}" for s in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for i, name in enumerate(ANATOMY_STEPS):
        cells = [f"{v['steps'][i][1]['anon'] / 2**20:.0f} / {v['steps'][i][1]['hwm'] / 2**20:.0f}" if i < len(v["steps"])
                 else "not run" for v in sizes.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| rows per prediction call (256MiB) | " + " | ".join(f"{v['rows']:,}" for v in sizes.values()) + " |")
    return "\n".join(lines)


BENCHES = {"limit": bench_limit, "throughput": bench_throughput, "decode": bench_decode, "inference": bench_inference,
           "anatomy": bench_anatomy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default=",".join(BENCHES))
    parser.add_argument("--work", type=Path, default=OPTS["work"], help="scratch folder (the image folders are kept there)")
    parser.add_argument("--images", type=int, default=OPTS["images"], help="limit: images in the generated folder")
    parser.add_argument("--size", type=int, default=OPTS["size"], help="image height and width")
    parser.add_argument("--limit-gib", type=float, default=OPTS["limit_gib"], help="limit: the cgroup's memory limit")
    parser.add_argument("--batch", type=int, default=OPTS["batch"], help="limit: train.batch_size")
    parser.add_argument("--model", default=OPTS["model"], help="limit: the model group (mlp, cnn, backbone)")
    parser.add_argument("--extra", default=OPTS["extra"], help="limit: more overrides, comma-separated (model.weights=none)")
    parser.add_argument("--decode-images", type=int, default=OPTS["decode_images"])
    parser.add_argument("--tp-samples", type=int, default=OPTS["tp_samples"], help="throughput: generated images (65 %% train)")
    parser.add_argument("--tp-epochs", type=int, default=OPTS["tp_epochs"])
    parser.add_argument("--tp-batch", type=int, default=OPTS["tp_batch"])
    parser.add_argument("--tp-families", default=OPTS["tp_families"], help="throughput: model families, e.g. mlp,cnn")
    parser.add_argument("--tag", default="", help="suffix of the results file names (<bench>_<tag>.json)")
    parser.add_argument("--tables", action="store_true", help="print BENCHMARKS.md's #28 tables from the saved JSON files, run nothing")
    args = parser.parse_args()
    if args.tables:
        print_tables()
        return
    OPTS.update(work=args.work, images=args.images, size=args.size, limit_gib=args.limit_gib, batch=args.batch, model=args.model, extra=args.extra,
                decode_images=args.decode_images, tp_samples=args.tp_samples, tp_epochs=args.tp_epochs, tp_batch=args.tp_batch,
                tp_families=args.tp_families, tag=args.tag)
    global CGROUP
    CGROUP = CGROUP.with_name(f"gapline-bench-{args.tag}") if args.tag else CGROUP  # runs side by side
    m = machine()
    print(f"# {m['platform']}, {m['cpus']} CPUs, {m['mem_total_gib']} GiB, Python {m['python']}, Keras {m['keras']} ({m['backend']})")
    for name in args.only.split(","):
        t = time.perf_counter()
        result = BENCHES[name](args.repeats)
        result["bench_seconds"] = round(time.perf_counter() - t, 1)
        result["options"] = {k: str(v) for k, v in OPTS.items()}
        print(f"  -> {save(name + (f'_{args.tag}' if args.tag else ''), result)} ({result['bench_seconds']} s)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
