"""One team tracking server under load, PostgreSQL against SQLite (issue #25, BENCHMARKS.md
section 13): print the figures and write them to ``benchmarks/results/team/team_server.json``.

    .venv/bin/python benchmarks/team_server.py [--repeats 3] [--rounds 5] [--only load,race] [--no-auth] [--pg-fsync on|off]

Three ``mlflow server`` processes run side by side on this machine (``--workers 2`` each,
artifacts proxied): one on a real PostgreSQL (``tests/helpers/postgres.py``: ``initdb`` into a
temporary folder, 127.0.0.1 only), one on SQLite, and (unless ``--no-auth``) one on PostgreSQL
behind ``--app-name basic-auth`` as ``deploy/team/mlflow-server.sh`` starts it, every request
as the admin.

- ``load``: ``--trainings`` (8) synthetic trainings at once, each a process of its own that
  logs the way a gapline training does, synchronously through ``MlflowClient``: a run, 40
  params in one batch, then per epoch (``--epochs`` 30, ``--pause`` 0.1 s of "training"
  before each) one ``log_batch`` of the 9 per-epoch metrics at ``step=epoch``, a small
  artifact, tags, ``FINISHED``. No Keras: on 2 cores real trainings would make the figure
  Keras's, not the server's. Each client call is timed (``log_artifact`` is two HTTP
  requests: the run, then the upload). Every repeat is checked: every run FINISHED, 40 params,
  the artifact, and for every metric key ``get_metric_history`` returns one row per epoch,
  steps 1..E; the rows are also counted in the database itself (psycopg, or sqlite3 on the
  file). The same training alone (one process) is the baseline. Backends take turns
  (alone on each, then repeat 1 on each, ...), so drift in the machine's load hits all alike.
- PostgreSQL runs with ``fsync=on`` (``--pg-fsync off``: the test helper's setting), so that
  its commits are as durable as SQLite's, which syncs every commit by default.
- ``race``: gapline's three MLflow race workarounds re-checked with raw MLflow (none of
  gapline's code), ``--rounds`` rounds per backend (auth server excluded), 8 processes released
  together by a barrier before each step: (a) ``mlflow.set_experiment(<new name>)`` then
  ``mlflow.start_run()``: runs that land outside the named experiment; (b) ``mlflow.log_input``
  of the same dataset (same name and digest) in each process's own run of one experiment;
  (c) ``mlflow.register_model`` of each process's logged model under one name, then
  ``set_registered_model_alias(name, "challenger", version)``. Counted: exceptions the caller
  sees, HTTP responses MLflow's client retried by itself (it retries 429/5xx, POST included,
  7 times with backoff: a store error answered 500 can be hidden from the caller), and the
  errors the server logged. Then, in the same round, the three steps again with gapline's
  workarounds (the experiment activated by id; ``retry_on_conflict`` around the dataset and the
  alias), on a second experiment and a second alias name; and whether gapline's conflict
  pattern recognizes each error message seen.

Workers are one pool of spawned processes kept for the whole invocation (importing MLflow
costs seconds; it is not what is measured).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import logging
import multiprocessing as mp
import os
import platform
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks/results/team"
sys.path.insert(0, str(REPO / "tests"))  # tests/helpers: the PostgreSQL and mlflow-server helpers

METRICS = ["loss", "accuracy", "val_loss", "val_accuracy", "gap_loss", "gap_accuracy",
           "train_eval_loss", "train_eval_accuracy", "learning_rate"]
N_PARAMS = 40
ALIAS = "challenger"
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
# What a lost race (or a busy store) leaves in the server's log.
SERVER_ERRORS = {
    "unique": re.compile(r"UNIQUE constraint failed|UniqueViolation|duplicate key value"),
    "integrity": re.compile(r"IntegrityError"),
    "locked": re.compile(r"database is locked"),
    "deadlock": re.compile(r"deadlock detected|could not serialize"),
    "error_lines": re.compile(r"\bERROR\b|Error in |Exception on "),
    "traceback": re.compile(r"^Traceback", re.M),
}
BARRIER_TIMEOUT = 240

# --------------------------------------------------------------------------------------------
# Worker side (spawned processes)
# --------------------------------------------------------------------------------------------

_RETRIED: list[dict] = []  # every HTTP response or error MLflow's client retried in this worker


def _install_retry_probe() -> None:
    """Record each retry urllib3 makes for MLflow's client (the status it retried on)."""
    from urllib3.util import retry

    if getattr(retry.Retry.increment, "_team_bench", False):
        return
    original = retry.Retry.increment

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        _RETRIED.append({"status": getattr(response, "status", None),
                         "error": type(error).__name__ if error is not None else None,
                         "method": method, "path": url})
        return original(self, method, url, response, error, _pool, _stacktrace)

    increment._team_bench = True
    retry.Retry.increment = increment


def _worker_setup(url: str, env: dict[str, str]) -> None:
    """This worker talks to ``url`` with ``env``'s credentials and no state left from a task before."""
    import mlflow
    import mlflow.tracking.fluent as fluent

    for key in (*CREDENTIALS, "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        os.environ.pop(key, None)
    os.environ.update(env)
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # pyfunc's cloudpickle and type-hint advice, per model
    warnings.filterwarnings("ignore", category=UserWarning)
    while mlflow.active_run() is not None:
        mlflow.end_run()
    fluent._active_experiment_id = None
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    _install_retry_probe()
    _RETRIED.clear()


def warm(barrier) -> int:
    """Import MLflow and wait for the others: the pool then holds its workers, all distinct."""
    import mlflow  # noqa: F401
    import mlflow.pyfunc  # noqa: F401

    barrier.wait(timeout=BARRIER_TIMEOUT)
    return os.getpid()


def _oneline(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"


def error_kind(message: str) -> str:
    """An error message without what differs from one call to the next (SQL, ids, names)."""
    text = message.split(" [SQL:")[0]
    text = re.sub(r"\(experiment_id, name, digest\)=\(\d+,", "(experiment_id, name, digest)=(N,", text)
    text = re.sub(r"race-model-[0-9a-f]{8}", "<model>", text)
    text = re.sub(r"[0-9a-f]{32}", "<id>", text)
    return text[:300]


def load_training(url: str, env: dict[str, str], experiment_id: str, start_at: float, epochs: int,
                  pause: float, index: int) -> dict:
    """One synthetic training: log what a gapline training logs, synchronously, each call timed."""
    _worker_setup(url, env)
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    calls: list[tuple[str, float]] = []
    errors: list[str] = []

    def timed(kind, fn):
        t0 = time.perf_counter()
        try:
            return fn()
        except Exception as exc:  # recorded, and the training goes on as far as it can
            errors.append(f"{kind}: {_oneline(exc)}")
            return None
        finally:
            calls.append((kind, time.perf_counter() - t0))

    folder = Path(tempfile.mkdtemp(prefix="team-bench-"))
    artifact = folder / "summary.json"
    artifact.write_text(json.dumps({"index": index, "scores": [random.random() for _ in range(100)]}))
    rng = random.Random(index)
    time.sleep(max(0.0, start_at - time.time()))
    t_start = time.time()
    run = timed("create_run", lambda: client.create_run(experiment_id, run_name=f"load-{index}",
                                                         tags={"gapline.stage": "train"}))
    run_id = run.info.run_id if run is not None else None
    if run_id is not None:
        params = [Param(f"param_{i:02d}", str(rng.random())) for i in range(N_PARAMS)]
        timed("log_params", lambda: client.log_batch(run_id, params=params))
        for epoch in range(1, epochs + 1):
            time.sleep(pause)  # the epoch's training
            stamp = int(time.time() * 1000)
            batch = [Metric(key, rng.random(), stamp, epoch) for key in METRICS]
            timed("log_metrics", lambda batch=batch: client.log_batch(run_id, metrics=batch))
        timed("log_artifact", lambda: client.log_artifact(run_id, str(artifact)))
        tags = [RunTag("gapline.outcome", "trained"), RunTag("gapline.model", "mlp"),
                RunTag("gapline.data_digest", "0" * 32), RunTag("gapline.epochs", str(epochs))]
        timed("set_tags", lambda: client.log_batch(run_id, tags=tags))
        timed("finish", lambda: client.set_terminated(run_id, "FINISHED"))
    t_end = time.time()
    shutil.rmtree(folder, ignore_errors=True)
    return {"index": index, "pid": os.getpid(), "run_id": run_id, "t_start": t_start, "t_end": t_end,
            "calls": [(k, round(s * 1000, 3)) for k, s in calls], "errors": errors,
            "retried": list(_RETRIED)}


def tiny_model():
    """A pyfunc model to register (never loaded)."""
    import mlflow.pyfunc

    class TinyModel(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    return TinyModel()


def race_round(url: str, env: dict[str, str], experiment: str, model_name: str, barrier, index: int) -> dict:
    """One process of a race round: each step starts when all 8 processes reached it."""
    _worker_setup(url, env)
    import mlflow
    import mlflow.data
    import mlflow.pyfunc
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    out: dict = {"pid": os.getpid(), "index": index}

    def step(name, fn):
        before = len(_RETRIED)
        record: dict = {"error": None}
        try:
            value = fn()
        except Exception as exc:
            value = None
            record["error"] = _oneline(exc)
        record["retried"] = _RETRIED[before:]
        out[name] = record
        return value

    def wait():
        barrier.wait(timeout=BARRIER_TIMEOUT)

    # (a) the experiment: created by whoever comes first, then a run in it
    wait()

    def experiment_and_run():
        exp = mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=f"race-a-{index}")
        return exp.experiment_id, run.info.experiment_id, run.info.run_id

    got = step("a", experiment_and_run)
    if got is not None:
        out["a"].update(returned_experiment=got[0], run_experiment=got[1], run_id=got[2])
    while mlflow.active_run() is not None:
        mlflow.end_run()

    # (b) the same dataset logged by every run of one experiment (runs started by the
    # experiment's id, whatever (a) did)
    found = client.get_experiment_by_name(experiment)
    named_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    out["named_experiment"] = named_id
    run = mlflow.start_run(experiment_id=named_id, run_name=f"race-bc-{index}")
    out["run_id"] = run.info.run_id
    dataset = mlflow.data.from_numpy(np.arange(12, dtype="float32").reshape(4, 3), name="same",
                                     digest="samedigest")
    # (c)'s model, logged before the start so that only registering races
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow's advice on type hints, per model
        info = mlflow.pyfunc.log_model(name="model", python_model=tiny_model(), pip_requirements=[])
    wait()
    step("b", lambda: mlflow.log_input(dataset, context="training"))

    # (c) one registered model, a version each, then the alias at once
    wait()
    with contextlib.redirect_stderr(io.StringIO()):  # "Created version '3' of model ..."
        version = step("c_register", lambda: mlflow.register_model(info.model_uri, model_name))
    out["version"] = str(version.version) if version is not None else None
    wait()
    if version is not None:
        step("c_alias", lambda: client.set_registered_model_alias(model_name, ALIAS, str(version.version)))
    mlflow.end_run()

    # The same three steps with gapline's workarounds (src/gapline/tracking/store.py setup(),
    # log.py retry_on_conflict, keras_model.py log_model): the experiment activated by id, the
    # dataset and the alias retried on a unique-constraint conflict. A second experiment and a
    # second alias name, so that each insert races again.
    from gapline.tracking.log import retry_on_conflict

    wait()

    def experiment_by_id_and_run():
        exp = mlflow.set_experiment(experiment + "-fixed")
        exp = mlflow.set_experiment(experiment_id=exp.experiment_id)
        run = mlflow.start_run(run_name=f"race-fixed-{index}")
        return exp.experiment_id, run.info.experiment_id, run.info.run_id

    got = step("a_fixed", experiment_by_id_and_run)
    if got is not None:
        out["a_fixed"].update(returned_experiment=got[0], run_experiment=got[1], run_id=got[2])
    else:  # still a run in that experiment for the dataset step
        found = client.get_experiment_by_name(experiment + "-fixed")
        mlflow.start_run(experiment_id=found.experiment_id, run_name=f"race-fixed-{index}")
    out["run_id_fixed"] = mlflow.active_run().info.run_id
    wait()
    step("b_fixed", lambda: retry_on_conflict(lambda: mlflow.log_input(dataset, context="training")))
    wait()
    if version is not None:
        step("c_alias_fixed", lambda: retry_on_conflict(
            lambda: client.set_registered_model_alias(model_name, ALIAS + "_fixed", str(version.version))))
    mlflow.end_run()
    return out


# --------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------


def sh(args: list[str]) -> str:
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, check=False).stdout.strip()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def median(values: list[float]) -> float:
    return float(np.median(np.asarray(values))) if values else float("nan")


class Backend:
    """One server and how to read its store back."""

    def __init__(self, name: str, server, env: dict[str, str], pg=None, pg_db: str = "", sqlite_file: Path | None = None):
        self.name, self.server, self.env = name, server, env
        self.pg, self.pg_db, self.sqlite_file = pg, pg_db, sqlite_file
        self.log_offset = 0

    def client(self):
        from mlflow import MlflowClient

        for key in CREDENTIALS:
            os.environ.pop(key, None)
        os.environ.update(self.env)
        return MlflowClient(tracking_uri=self.server.url, registry_uri=self.server.url)

    def db_metric_rows(self, run_ids: list[str]) -> dict[tuple[str, str], tuple[int, int, int, int]]:
        """(run, key) -> (rows, distinct steps, min step, max step), read in the database itself."""
        query = ("SELECT run_uuid, key, count(*), count(DISTINCT step), min(step), max(step) FROM metrics "
                 "WHERE run_uuid IN ({}) GROUP BY run_uuid, key")
        if self.pg is not None:
            import psycopg

            with psycopg.connect(self.pg.url(self.pg_db)) as conn:
                rows = conn.execute(query.format(", ".join(["%s"] * len(run_ids))), run_ids).fetchall()
        else:
            with sqlite3.connect(f"file:{self.sqlite_file}?mode=ro", uri=True) as conn:
                rows = conn.execute(query.format(", ".join(["?"] * len(run_ids))), run_ids).fetchall()
        return {(r[0], r[1]): tuple(int(x) for x in r[2:]) for r in rows}

    def log_delta(self) -> dict[str, int]:
        """Errors the server logged since the last call."""
        text = Path(self.server.log).read_text(errors="replace")
        new, self.log_offset = text[self.log_offset:], len(text)
        counts = {name: len(pattern.findall(new)) for name, pattern in SERVER_ERRORS.items()}
        counts["sample"] = [line[:300] for line in new.splitlines()
                            if SERVER_ERRORS["error_lines"].search(line)][:3]
        return counts


def check_runs(backend: Backend, results: list[dict], epochs: int) -> dict:
    """Every run FINISHED, its params, artifact and every epoch's metric rows (REST and SQL)."""
    client = backend.client()
    run_ids = [r["run_id"] for r in results if r["run_id"]]
    out = {"runs": len(results), "runs_created": len(run_ids), "finished": 0, "params_ok": 0, "artifact_ok": 0,
           "metric_rows_expected": len(results) * len(METRICS) * epochs, "metric_rows_rest": 0,
           "metric_rows_db": 0, "missing": []}
    for run_id in run_ids:
        run = client.get_run(run_id)
        out["finished"] += run.info.status == "FINISHED"
        out["params_ok"] += len(run.data.params) == N_PARAMS
        out["artifact_ok"] += any(f.path == "summary.json" for f in client.list_artifacts(run_id))
        for key in METRICS:
            history = client.get_metric_history(run_id, key)
            out["metric_rows_rest"] += len(history)
            steps = sorted(m.step for m in history)
            if steps != list(range(1, epochs + 1)):
                out["missing"].append(f"REST {run_id} {key}: {len(history)} rows, steps {steps[:3]}..{steps[-3:]}")
    db = backend.db_metric_rows(run_ids) if run_ids else {}
    for run_id in run_ids:
        for key in METRICS:
            rows, distinct, lo, hi = db.get((run_id, key), (0, 0, 0, 0))
            out["metric_rows_db"] += rows
            if (rows, distinct, lo, hi) != (epochs, epochs, 1, epochs):
                out["missing"].append(f"DB {run_id} {key}: {rows} rows, {distinct} steps {lo}..{hi}")
    return out


def summarize(results: list[dict], start_at: float) -> dict:
    latencies = [ms for r in results for _, ms in r["calls"]]
    per_kind: dict[str, list[float]] = {}
    for r in results:
        for kind, ms in r["calls"]:
            per_kind.setdefault(kind, []).append(ms)
    wall = max(r["t_end"] for r in results) - min(r["t_start"] for r in results)
    return {
        "trainings": len(results), "calls": len(latencies), "wall_s": wall, "calls_per_s": len(latencies) / wall,
        "median_ms": median(latencies), "p95_ms": pct(latencies, 95), "p99_ms": pct(latencies, 99),
        "max_ms": max(latencies) if latencies else float("nan"),
        "per_kind_median_ms": {k: median(v) for k, v in per_kind.items()},
        "training_s_median": median([r["t_end"] - r["t_start"] for r in results]),
        "logging_s_per_training_median": median([sum(ms for _, ms in r["calls"]) / 1000 for r in results]),
        "start_skew_ms": 1000 * (max(r["t_start"] for r in results) - start_at),
        "errors": [e for r in results for e in r["errors"]],
        "retried": [x for r in results for x in r["retried"]],
        "distinct_pids": len({r["pid"] for r in results}),
        "latencies_ms": latencies,
    }


def load_once(pool, backend: Backend, n: int, epochs: int, pause: float, tag: str) -> dict:
    client = backend.client()
    experiment_id = client.create_experiment(f"load-{tag}-{uuid.uuid4().hex[:8]}")
    backend.log_delta()
    start_at = time.time() + 1.5
    futures = [pool.submit(load_training, backend.server.url, backend.env, experiment_id, start_at, epochs, pause, i)
               for i in range(n)]
    results = [f.result() for f in futures]
    out = summarize(results, start_at)
    out["server_log"] = backend.log_delta()
    out["check"] = check_runs(backend, results, epochs)
    return out


def load_figures(pool, backends: list[Backend], opts) -> dict:
    figures: dict = {b.name: {"alone": [], "load": []} for b in backends}
    for b in backends:  # the baseline: one training alone on an idle server
        for r in range(opts.repeats):
            figures[b.name]["alone"].append(load_once(pool, b, 1, opts.epochs, opts.pause, f"alone{r}"))
            print(f"  alone  {b.name:16s} repeat {r + 1}: median {figures[b.name]['alone'][-1]['median_ms']:.1f} ms",
                  flush=True)
    for r in range(opts.repeats):
        for b in backends:
            one = load_once(pool, b, opts.trainings, opts.epochs, opts.pause, f"load{r}")
            figures[b.name]["load"].append(one)
            c = one["check"]
            print(f"  load   {b.name:16s} repeat {r + 1}: wall {one['wall_s']:.2f} s, {one['calls_per_s']:.1f} calls/s, "
                  f"median {one['median_ms']:.1f} ms, p95 {one['p95_ms']:.1f}, p99 {one['p99_ms']:.1f}, "
                  f"max {one['max_ms']:.1f}; FINISHED {c['finished']}/{c['runs']}, metric rows REST "
                  f"{c['metric_rows_rest']}/{c['metric_rows_expected']} DB {c['metric_rows_db']}, "
                  f"errors {len(one['errors'])}, retried {len(one['retried'])}", flush=True)
    for b in backends:
        f = figures[b.name]
        f["summary"] = {
            part: {key: median([x[key] for x in f[part]]) for key in
                   ("wall_s", "calls_per_s", "median_ms", "p95_ms", "p99_ms", "max_ms", "training_s_median",
                    "logging_s_per_training_median")}
            for part in ("alone", "load")
        }
        for part in ("alone", "load"):
            kinds = f[part][0]["per_kind_median_ms"].keys()
            f["summary"][part]["per_kind_median_ms"] = {k: median([x["per_kind_median_ms"][k] for x in f[part]]) for k in kinds}
        checks = [x["check"] for x in f["load"]] + [x["check"] for x in f["alone"]]
        f["summary"]["all_finished"] = all(c["finished"] == c["runs"] for c in checks)
        f["summary"]["metric_rows"] = {
            "expected": sum(c["metric_rows_expected"] for c in checks),
            "rest": sum(c["metric_rows_rest"] for c in checks), "db": sum(c["metric_rows_db"] for c in checks),
            "missing": [m for c in checks for m in c["missing"]]}
        f["summary"]["errors"] = sum(len(x["errors"]) for x in f["load"] + f["alone"])
        f["summary"]["retried"] = sum(len(x["retried"]) for x in f["load"] + f["alone"])
    return figures


def race_figures(pool, manager, backends: list[Backend], opts) -> dict:
    figures: dict = {}
    for b in backends:
        rounds = []
        for r in range(opts.rounds):
            tag = uuid.uuid4().hex[:8]
            experiment, model_name = f"race-{tag}", f"race-model-{tag}"
            barrier = manager.Barrier(opts.trainings)
            b.log_delta()
            futures = [pool.submit(race_round, b.server.url, b.env, experiment, model_name, barrier, i)
                       for i in range(opts.trainings)]
            results = [f.result() for f in futures]
            rounds.append(judge_round(b, results, experiment, model_name))
            rr = rounds[-1]
            print(f"  race   {b.name:16s} round {r + 1}: (a) wrong experiment {rr['a']['wrong_experiment']}, "
                  f"errors {len(rr['a']['errors'])}; (b) errors {len(rr['b']['errors'])}, retried {rr['b']['retried']}, "
                  f"runs without the dataset {rr['b']['runs_without_dataset']}; (c) register errors "
                  f"{len(rr['c_register']['errors'])}, retried {rr['c_register']['retried']}, versions "
                  f"{rr['c_register']['versions']}; alias errors {len(rr['c_alias']['errors'])}, retried "
                  f"{rr['c_alias']['retried']}; with gapline's workarounds: wrong experiment {rr['a_fixed']['wrong_experiment']}, "
                  f"errors {len(rr['a_fixed']['errors'])}+{len(rr['b_fixed']['errors'])}+{len(rr['c_alias_fixed']['errors'])}; "
                  f"server log {rr['server_log']['unique']} unique, "
                  f"{rr['server_log']['locked']} locked, {rr['server_log']['deadlock']} deadlock", flush=True)
        figures[b.name] = rounds
    return figures


def judge_round(b: Backend, results: list[dict], experiment: str, model_name: str) -> dict:
    client = b.client()
    named = results[0]["named_experiment"]

    def step(name):
        records = [r.get(name) for r in results if r.get(name) is not None]
        retried = [x for rec in records for x in rec["retried"]]
        return {"errors": [rec["error"] for rec in records if rec["error"]],
                "retried": len(retried), "retried_statuses": sorted({str(x["status"] or x["error"]) for x in retried}),
                "calls": len(records)}

    a = step("a")
    landed = [r["a"].get("run_experiment") for r in results if r["a"].get("run_experiment") is not None]
    a["wrong_experiment"] = sum(e != named for e in landed)
    a["wrong_experiment_ids"] = sorted({e for e in landed if e != named})
    a["returned_named"] = sum(r["a"].get("returned_experiment") == named for r in results)
    bb = step("b")
    bb["runs_without_dataset"] = sum(len(client.get_run(r["run_id"]).inputs.dataset_inputs) != 1 for r in results)
    c1 = step("c_register")
    versions = client.search_model_versions(f"name='{model_name}'")
    c1["versions"] = len(versions)
    c1["distinct_versions"] = len({v.version for v in versions})
    c2 = step("c_alias")
    try:
        c2["alias_version"] = str(client.get_model_version_by_alias(model_name, ALIAS).version)
    except Exception as exc:
        c2["alias_version"] = _oneline(exc)
    af = step("a_fixed")
    named_fixed = client.get_experiment_by_name(experiment + "-fixed").experiment_id
    landed = [r["a_fixed"].get("run_experiment") for r in results if r["a_fixed"].get("run_experiment") is not None]
    af["wrong_experiment"] = sum(e != named_fixed for e in landed)
    bf = step("b_fixed")
    bf["runs_without_dataset"] = sum(len(client.get_run(r["run_id_fixed"]).inputs.dataset_inputs) != 1 for r in results)
    cf = step("c_alias_fixed")
    try:
        cf["alias_version"] = str(client.get_model_version_by_alias(model_name, ALIAS + "_fixed").version)
    except Exception as exc:
        cf["alias_version"] = _oneline(exc)
    return {"a": a, "b": bb, "c_register": c1, "c_alias": c2, "a_fixed": af, "b_fixed": bf, "c_alias_fixed": cf,
            "server_log": b.log_delta(), "distinct_pids": len({r["pid"] for r in results})}


STEPS = ("a", "b", "c_register", "c_alias", "a_fixed", "b_fixed", "c_alias_fixed")


def error_kinds(rounds: list[dict]) -> dict[str, dict]:
    """Per step: each kind of error, how often, and whether gapline's conflict pattern
    (``gapline.tracking.log.CONFLICT``, what retry_on_conflict retries) recognizes it."""
    from gapline.tracking.log import CONFLICT

    kinds: dict[str, dict] = {}
    for r in rounds:
        for s in STEPS:
            for e in r[s]["errors"]:
                entry = kinds.setdefault(s, {}).setdefault(error_kind(e), {"count": 0, "gapline_retries_it": bool(CONFLICT.search(e))})
                entry["count"] += 1
    return kinds


def race_summary(rounds: list[dict]) -> dict:
    def count(step, key):
        return [len(r[step][key]) if isinstance(r[step][key], list) else r[step][key] for r in rounds]

    return {
        "rounds": len(rounds),
        "a_wrong_experiment_per_round": count("a", "wrong_experiment"),
        "a_errors_per_round": count("a", "errors"),
        "b_errors_per_round": count("b", "errors"),
        "b_retried_per_round": count("b", "retried"),
        "b_runs_without_dataset_per_round": count("b", "runs_without_dataset"),
        "c_register_errors_per_round": count("c_register", "errors"),
        "c_register_retried_per_round": count("c_register", "retried"),
        "c_versions_per_round": count("c_register", "versions"),
        "c_alias_errors_per_round": count("c_alias", "errors"),
        "c_alias_retried_per_round": count("c_alias", "retried"),
        "server_log_unique_per_round": [r["server_log"]["unique"] for r in rounds],
        "server_log_locked_per_round": [r["server_log"]["locked"] for r in rounds],
        "server_log_deadlock_per_round": [r["server_log"]["deadlock"] for r in rounds],
        "a_fixed_wrong_experiment_per_round": count("a_fixed", "wrong_experiment"),
        "a_fixed_errors_per_round": count("a_fixed", "errors"),
        "b_fixed_errors_per_round": count("b_fixed", "errors"),
        "b_fixed_runs_without_dataset_per_round": count("b_fixed", "runs_without_dataset"),
        "c_alias_fixed_errors_per_round": count("c_alias_fixed", "errors"),
        "error_kinds": error_kinds(rounds),
        "retried_statuses": sorted({x for r in rounds for s in STEPS for x in r[s]["retried_statuses"]}),
    }


def print_tables(load: dict, race: dict, opts) -> None:
    if load:
        print(f"\nLoad: {opts.trainings} trainings at once, {opts.epochs} epochs, {opts.pause} s per epoch; medians of "
              f"{opts.repeats} repeats (latency = one client call, ms)")
        head = f"{'backend':18s} {'mode':6s} {'wall s':>7s} {'calls/s':>8s} {'median':>7s} {'p95':>7s} {'p99':>7s} {'max':>7s} {'log s/train':>11s}"
        print(head)
        for name, f in load.items():
            for part in ("alone", "load"):
                s = f["summary"][part]
                print(f"{name:18s} {part:6s} {s['wall_s']:7.2f} {s['calls_per_s']:8.1f} {s['median_ms']:7.1f} "
                      f"{s['p95_ms']:7.1f} {s['p99_ms']:7.1f} {s['max_ms']:7.1f} {s['logging_s_per_training_median']:11.2f}")
        for name, f in load.items():
            s = f["summary"]
            m = s["metric_rows"]
            print(f"{name}: all FINISHED {s['all_finished']}; metric rows REST {m['rest']}/{m['expected']}, "
                  f"DB {m['db']}/{m['expected']}; missing {len(m['missing'])}; errors {s['errors']}; retried {s['retried']}; "
                  f"load/alone median {s['load']['median_ms'] / s['alone']['median_ms']:.2f}x, p95 "
                  f"{s['load']['p95_ms'] / s['alone']['p95_ms']:.2f}x")
        if "postgresql" in load and "sqlite" in load:
            pg, sq = load["postgresql"]["summary"], load["sqlite"]["summary"]
            for part in ("alone", "load"):
                print(f"PostgreSQL/SQLite {part}: median {pg[part]['median_ms'] / sq[part]['median_ms']:.2f}x, "
                      f"p95 {pg[part]['p95_ms'] / sq[part]['p95_ms']:.2f}x, wall {pg[part]['wall_s'] / sq[part]['wall_s']:.2f}x")
    for name, rounds in race.items():
        s = race_summary(rounds)
        print(f"\nRaces on {name} ({s['rounds']} rounds of {opts.trainings} processes; per round):")
        for key, value in s.items():
            if key != "rounds":
                print(f"  {key}: {value}")


def durable(pg, folder: Path) -> None:
    """Restart the test helper's cluster without its ``fsync=off``: every commit then waits for
    its WAL to reach the disk, as SQLite's does (its default ``synchronous=FULL``)."""
    pg_ctl = str(folder / "pg_ctl")
    stopped = pg._run([pg_ctl, "-D", str(pg.data), "-m", "fast", "-w", "stop"])
    assert stopped.returncode == 0, stopped.stderr
    options = f"-c listen_addresses=127.0.0.1 -p {pg.port} -k {pg.root} -c max_connections=200"
    started = pg._run([pg_ctl, "-D", str(pg.data), "-o", options, "-l", str(pg.root / "server-durable.log"), "-w", "-t", "60", "start"])
    assert started.returncode == 0, f"PostgreSQL did not restart:\n{started.stdout}\n{started.stderr}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trainings", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--pause", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2, help="mlflow server --workers, every server")
    parser.add_argument("--only", default="load,race")
    parser.add_argument("--no-auth", action="store_true", help="no PostgreSQL + basic-auth server")
    parser.add_argument("--pg-fsync", choices=("on", "off"), default="on",
                        help="PostgreSQL's fsync: on (the default, durable like SQLite) or off (the test helper's setting)")
    parser.add_argument("--out", type=Path, default=RESULTS / "team_server.json")
    opts = parser.parse_args()
    only = set(opts.only.split(","))

    from helpers import postgres
    from helpers.mlflow_server import ADMIN, ADMIN_PASSWORD, MlflowServer

    why = postgres.missing()
    if why:
        raise SystemExit(why)
    import mlflow

    # MLflow's telemetry (a background request per process; this machine has no network)
    # off in the servers (DO_NOT_TRACK: the server helper drops MLFLOW_* variables) and workers.
    os.environ["DO_NOT_TRACK"] = "true"
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    started = time.time()
    meta = {
        "commit": sh(["git", "rev-parse", "HEAD"]), "dirty": bool(sh(["git", "status", "--porcelain", "--untracked-files=no"])),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mlflow": mlflow.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(), "options": {k: str(v) for k, v in vars(opts).items()},
    }
    root = Path(tempfile.mkdtemp(prefix="team-bench-"))
    pg = postgres.Postgres(root / "pg").start()
    if opts.pg_fsync == "on":
        durable(pg, postgres.binaries())
    servers = []
    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    pool = ProcessPoolExecutor(max_workers=opts.trainings, mp_context=ctx)
    try:
        import psycopg

        with psycopg.connect(pg.url("postgres")) as conn:
            meta["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
            meta["postgresql_fsync"] = conn.execute("SHOW fsync").fetchone()[0]
            meta["postgresql_synchronous_commit"] = conn.execute("SHOW synchronous_commit").fetchone()[0]
        backends = []
        server = MlflowServer(root / "srv-pg", backend=pg.create_database("mlflow"), workers=opts.workers)
        servers.append(server)
        backends.append(Backend("postgresql", server.start(), {}, pg=pg, pg_db="mlflow"))
        server = MlflowServer(root / "srv-sqlite", workers=opts.workers)
        servers.append(server)
        backends.append(Backend("sqlite", server.start(), {}, sqlite_file=root / "srv-sqlite" / "db"))
        if not opts.no_auth:
            server = MlflowServer(root / "srv-pg-auth", backend=pg.create_database("mlflow_b"),
                                  auth_db=pg.create_database("mlflow_auth"), workers=opts.workers)
            servers.append(server)
            backends.append(Backend("postgresql+auth", server.start(),
                                    {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD},
                                    pg=pg, pg_db="mlflow_b"))
        print(f"servers up in {time.time() - started:.1f} s: " + ", ".join(f"{b.name} {b.server.url}" for b in backends), flush=True)
        barrier = manager.Barrier(opts.trainings)
        pids = [f.result() for f in [pool.submit(warm, barrier) for _ in range(opts.trainings)]]
        assert len(set(pids)) == opts.trainings, pids
        print(f"{len(set(pids))} workers ready at {time.time() - started:.1f} s", flush=True)

        load = load_figures(pool, backends, opts) if "load" in only else {}
        race = race_figures(pool, manager, [b for b in backends if b.name != "postgresql+auth"], opts) if "race" in only else {}
        meta["loadavg_after"] = os.getloadavg()
        meta["runtime_s"] = time.time() - started
        print_tables(load, race, opts)
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        race_out = {name: {"summary": race_summary(rounds), "rounds": rounds} for name, rounds in race.items()}
        opts.out.write_text(json.dumps({"meta": meta, "load": load, "race": race_out}, indent=1, default=str) + "\n")
        print(f"\nwrote {opts.out.relative_to(REPO) if opts.out.is_relative_to(REPO) else opts.out} "
              f"({meta['runtime_s']:.0f} s; load average {meta['loadavg_before'][0]:.2f} before, "
              f"{meta['loadavg_after'][0]:.2f} after)")
    finally:
        pool.shutdown(cancel_futures=True)
        manager.shutdown()
        for server in servers:
            server.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
