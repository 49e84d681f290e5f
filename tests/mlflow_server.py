"""Helpers for the MLflow tests: a real ``mlflow server`` on a free local port, a throwaway
copy of the repo that runs the ``debug`` pipeline through DVC, headless Chromium, and the
checks every logged pipeline run must pass whichever store it landed in.

Not a test module and not a conftest: test modules import it (``tests/`` is on sys.path
under pytest's default rootdir-based import mode).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SERVER_START_TIMEOUT = 120.0

PER_EPOCH = (
    "loss", "accuracy", "val_loss", "val_accuracy", "train_eval_loss", "train_eval_accuracy",
    "gap_loss", "gap_accuracy", "learning_rate",
)
FINAL_FROM_METRICS_JSON = (
    "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
    "gap_accuracy_val", "gap_accuracy_test", "gap_loss_val", "gap_loss_test",
    "best_epoch", "onset_epoch", "epochs_run",
)
ARTIFACTS = {
    "config/params.yaml",
    "plots/confusion_matrix.png",
    "plots/gap_curve.png",
    "plots/learning_curves.png",
    "reports/diagnosis.md",
    "reports/dvc.lock",
    "reports/history.csv",
    "reports/metrics.json",
    "reports/per_class.json",
}
VERSION_TAGS = ("test_accuracy", "val_accuracy", "gap_accuracy_test", "gap_accuracy_val")


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process we started in its own session: the group by its id, TERM then KILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=15)


@dataclass
class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a sqlite backend and a local artifact root."""

    root: Path
    port: int = 0
    proc: Optional[subprocess.Popen] = None
    log: Optional[Path] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 3) -> "MlflowServer":
        self.root.mkdir(parents=True, exist_ok=True)
        last = ""
        for attempt in range(attempts):
            self.port = free_port()
            self.log = self.root / f"server-{attempt}.log"
            cmd = [
                str(BIN / "mlflow"), "server",
                "--backend-store-uri", f"sqlite:///{self.root / 'db'}",
                "--artifacts-destination", str(self.root / "art"),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            ]
            env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
            env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
            with open(self.log, "wb") as out:
                self.proc = subprocess.Popen(
                    cmd, cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            deadline = time.monotonic() + SERVER_START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    status, body = _get(f"{self.url}/health", timeout=2)
                    if status == 200 and body.strip() == b"OK":
                        return self
                except OSError:
                    pass
                time.sleep(0.25)
            last = self.log.read_text(errors="replace")[-3000:]
            _stop(self.proc)
        raise RuntimeError(f"mlflow server did not become healthy after {attempts} attempts:\n{last}")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if line]


def run(args: list[str], cwd: Path, env: Optional[dict[str, str]] = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    full["PATH"] = f"{BIN}{os.pathsep}{full.get('PATH', '')}"
    full.pop("DVC_EXP_NAME", None)
    proc = subprocess.run(args, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_local(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """:func:`run` against the project's own embedded store (``<cwd>/mlflow.db``)."""
    return run(args, cwd, {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}, check)


# Outputs and local state a fresh clone does not have.
NOT_IN_A_FRESH_CLONE = (
    "dvc.lock", "reports", "mlflow.db", "mlruns", "multirun", "outputs", ".gapline", ".dvc/tmp", ".dvc/cache",
)


def copy_project(root: Path, drop: tuple[str, ...] = ()) -> Path:
    """A fresh copy of the repo under git: its sources as they are in the working tree, no
    outputs, no stores, no DVC cache (plus whatever ``drop`` names). Every test that runs
    the real pipeline works in one of these, never in the repo itself."""
    for rel in tracked_files():
        src = REPO / rel
        if src.is_file():
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    for rel in (*NOT_IN_A_FRESH_CLONE, *drop):
        p = root / rel
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run(["git", "init", "-q"], root)
    run([*git, "add", "-A"], root)
    run([*git, "commit", "-qm", "init"], root)
    return root


@dataclass
class PipelineRun:
    """One ``gapline params experiment=debug ...`` + ``dvc repro`` and what it left behind."""

    project: Path
    uri: str
    overrides: list[str]
    wall_seconds: float
    record: dict[str, Any] = field(default_factory=dict)
    output: str = ""

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    def read(self, rel: str) -> str:
        return (self.project / rel).read_text(encoding="utf-8")

    def json(self, rel: str) -> Any:
        return json.loads(self.read(rel))


def run_pipeline(project: Path, uri: str, overrides: list[str], env: Optional[dict[str, str]] = None) -> PipelineRun:
    env = {"MLFLOW_TRACKING_URI": uri, **(env or {})}
    run(["gapline", "params", "experiment=debug", *overrides], project, env)
    start = time.perf_counter()
    proc = run(["dvc", "repro"], project, env)
    wall = time.perf_counter() - start
    out = PipelineRun(project, uri, overrides, wall, output=proc.stdout + proc.stderr)
    out.record = out.json("reports/mlflow_run.json")
    return out


# --------------------------------------------------------------------------------------
# Chromium, driven over the DevTools protocol (aiohttp's websocket client: MLflow already
# depends on aiohttp, so no browser driver or extra package is needed)
# --------------------------------------------------------------------------------------

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1280,1500", "--remote-debugging-port=0",
)

# Type into the page's search box the way React notices (its own value setter + input event).
SEARCH_JS = """((placeholders, text) => {
  const box = [...document.querySelectorAll('input')].find(e => placeholders.includes(e.placeholder));
  if (!box) return false;
  Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(box, text);
  box.dispatchEvent(new Event('input', {bubbles: true}));
  return true;
})(%s, %s)"""
# The UI opens its assistant side panel on first visit; close it so the run fills the shot.
CLOSE_PANELS_JS = """[...document.querySelectorAll('button[aria-label="Close"]')].map(b => b.click()).length"""


def chromium() -> Optional[str]:
    for path in (os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if path and os.access(path, os.X_OK):
            return path
    return None


@dataclass
class Shot:
    """One page to open, wait for, prepare and screenshot."""

    url: str
    png: Path
    wait_for_text: tuple[str, ...] = ()
    wait_for_js: str = "true"
    search: Optional[str] = None  # typed into the page's metric search box once ready
    settle_js: str = "true"  # waited for after the search, before the screenshot


async def _screenshots(exe: str, shots: list[Shot], timeout: float) -> list[str]:
    import aiohttp

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (port_file.is_file() and port_file.read_text().strip()):
                assert proc.poll() is None and time.monotonic() < deadline, "Chromium did not start"
                await asyncio.sleep(0.1)
            port = port_file.read_text().split()[0]
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    targets = await resp.json()
                page = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                async with http.ws_connect(page, max_msg_size=0) as ws:
                    return [await _shoot(ws, shot, timeout) for shot in shots]
        finally:
            _stop(proc)


_CDP_IDS = itertools.count(1)


async def _shoot(ws: Any, shot: Shot, timeout: float) -> str:
    async def call(method: str, **params: Any) -> dict:
        my_id = next(_CDP_IDS)
        await ws.send_json({"id": my_id, "method": method, "params": params})
        while True:
            msg = await ws.receive_json()
            if msg.get("id") == my_id:
                assert "error" not in msg, msg["error"]
                return msg["result"]

    async def js(expression: str) -> Any:
        result = await call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    async def wait(expression: str, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not await js(expression):
            if time.monotonic() > deadline:
                text = await js("document.body ? document.body.innerText : ''")
                raise AssertionError(f"{shot.url}: {what} never happened in {timeout:.0f}s; page text: {text[:1500]!r}")
            await asyncio.sleep(0.25)

    await call("Page.navigate", url=shot.url)
    texts = json.dumps(list(shot.wait_for_text))
    await wait(f"document.body && {texts}.every(t => document.body.innerText.includes(t))",
               f"showing {list(shot.wait_for_text)}")
    await wait(shot.wait_for_js, shot.wait_for_js)
    await js(CLOSE_PANELS_JS)
    if shot.search is not None:
        placeholders = json.dumps(["Search metrics", "Search metric charts"])
        assert await js(SEARCH_JS % (placeholders, json.dumps(shot.search))), f"{shot.url}: no metric search box"
    await wait(shot.settle_js, shot.settle_js)
    await asyncio.sleep(1.0)  # let the last layout and chart transitions finish
    text = await js("document.body.innerText")
    png = await call("Page.captureScreenshot", format="png")
    shot.png.write_bytes(base64.b64decode(png["data"]))
    return str(text)


def screenshots(shots: list[Shot], timeout: float = 90.0) -> list[str]:
    """Open each page in one headless Chromium, wait until it shows what it must, screenshot
    it. Returns each page's visible text."""
    exe = chromium()
    assert exe, "no Chromium executable"
    return asyncio.run(_screenshots(exe, shots, timeout))


# --------------------------------------------------------------------------------------
# What every logged pipeline run must hold
# --------------------------------------------------------------------------------------


def _history(p: PipelineRun) -> dict[str, list[float]]:
    with open(p.project / "reports/history.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {k: [float(r[k]) for r in rows] for k in rows[0] if k != "epoch"}


def artifact_paths(client: Any, run_id: str, path: Optional[str] = None) -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        out |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def check_logged_run(p: PipelineRun, *, experiment: str, system_metrics: bool) -> dict[str, Any]:
    """Read the pipeline's run back from its store and check everything the run must hold.

    Returns what was read, for further test-specific checks.
    """
    import pytest
    import yaml
    from mlflow import MlflowClient

    import gapline
    from gapline import provenance, tracking
    from gapline.config import from_container
    from gapline.regularization import technique_label

    client = MlflowClient(tracking_uri=p.uri, registry_uri=p.uri)
    run_ = client.get_run(p.run_id)
    data = run_.data
    assert run_.info.status == "FINISHED", run_.info.status
    assert "error" not in data.tags
    assert client.get_experiment(run_.info.experiment_id).name == experiment
    assert p.record["tracking_uri"] == tracking.canonical_uri(p.uri, p.project)

    # Params: the whole resolved config, flattened with dotted keys.
    cfg_dict = yaml.safe_load(p.read("params.yaml"))
    expected_params, cut = tracking.param_values(cfg_dict)
    assert not cut
    assert data.params == expected_params
    assert data.params["train.epochs"] == "3"
    assert data.params["regularization.early_stopping.patience"] == str(
        cfg_dict["regularization"]["early_stopping"]["patience"]
    )

    # Tags.
    meta = p.json("data/prepared/meta.json")
    cfg = from_container(cfg_dict)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=p.project, capture_output=True, text=True).stdout.strip()
    tags = data.tags
    assert tags["git.commit"] == head
    assert tags["git.dirty"] in ("true", "false")
    assert tags["data.fingerprint"] == meta["fingerprint"]
    assert tags["data.source"] == meta["source"]
    assert len(tags["dvc.lock.md5"]) == 32
    final_stages = provenance.dvc_stage_digests(p.project / "dvc.lock", skip=("evaluate",))
    assert set(final_stages) == {"dvc.stage.config", "dvc.stage.prepare", "dvc.stage.augment", "dvc.stage.train"}
    for key, value in final_stages.items():
        assert tags[key] == value, key
    assert tags["keras.backend"] == "tensorflow"
    assert tags["device"] == "CPU" or tags["device"].startswith("GPU: ")
    assert tags["gapline.version"] == gapline.__version__
    assert tags["techniques"] == technique_label(cfg) == "l2+dropout+early_stopping"
    assert tags["diagnosis"] in ("underfitting", "good fit", "overfitting")

    # Per-epoch metrics: every epoch of every curve, equal to reports/history.csv.
    history = _history(p)
    epochs = int(p.json("reports/train.json")["epochs_run"])
    for key in PER_EPOCH:
        points = client.get_metric_history(p.run_id, key)
        assert [m.step for m in points] == list(range(1, epochs + 1)), key
        assert [m.value for m in points] == pytest.approx(history[key], rel=1e-4, abs=1e-6), key

    # Final metrics.
    metrics = p.json("reports/metrics.json")
    for key in FINAL_FROM_METRICS_JSON:
        name = f"final_{key}" if key in history else key  # val_loss/val_accuracy are curves too
        assert data.metrics[name] == pytest.approx(metrics[key], abs=1e-6), key
        assert len(client.get_metric_history(p.run_id, name)) == 1, name
    train_info = p.json("reports/train.json")
    assert data.metrics["param_count"] == train_info["params"] > 0
    assert data.metrics["train_wall_seconds"] > 0
    assert data.metrics["samples_per_second"] > 0
    assert data.metrics["epochs_run"] == epochs == 3

    # Artifacts (the model is a LoggedModel of its own, checked below).
    assert artifact_paths(client, p.run_id) == ARTIFACTS
    with tempfile.TemporaryDirectory() as tmp:
        logged = Path(client.download_artifacts(p.run_id, "config/params.yaml", tmp))
        assert logged.read_text(encoding="utf-8") == tracking.redact(p.read("params.yaml"))

    # Datasets as run inputs.
    inputs = {
        d.dataset.name: (d.dataset.digest, {t.key: t.value for t in d.tags})
        for d in run_.inputs.dataset_inputs
    }
    contexts = {"train": "training", "val": "validation", "test": "test"}
    assert set(inputs) == {f"{meta['source']}-{s}" for s in contexts}
    for split, context in contexts.items():
        digest, input_tags = inputs[f"{meta['source']}-{split}"]
        fingerprint = meta["fingerprints"][split]
        assert digest == fingerprint.removeprefix("sha256:")[:32]
        assert input_tags["mlflow.data.context"] == context
        assert input_tags["fingerprint"] == fingerprint

    # The model: Keras flavor, signature, input example; registered, alias, version tags.
    import mlflow

    name = cfg_dict["tracking"]["registered_model"]
    version = client.get_model_version_by_alias(name, "challenger")
    assert str(version.version) == str(p.record["model_version"])
    assert version.run_id == p.run_id
    for key in VERSION_TAGS:
        assert float(version.tags[key]) == pytest.approx(metrics[key], abs=1e-6), key
    assert [o.model_id for o in run_.outputs.model_outputs] == [version.source.removeprefix("models:/")]
    local = download_registered_model(p, f"models:/{name}@challenger")
    info = mlflow.models.Model.load(local)
    example = info.load_input_example(local)
    assert "keras" in info.flavors and "python_function" in info.flavors
    shape = tuple(meta["input_shape"])
    assert info.signature.inputs.inputs[0].shape == (-1, *shape)
    assert info.signature.outputs.inputs[0].shape == (-1, len(meta["class_names"]))
    assert example is not None and tuple(example.shape[1:]) == shape

    # System metrics: sampled when on, absent when off.
    system = sorted(k for k in data.metrics if k.startswith("system/"))
    if system_metrics:
        assert "system/cpu_utilization_percentage" in system
        assert "system/system_memory_usage_megabytes" in system
    else:
        assert system == []
    return {"run": run_, "client": client, "metrics": metrics, "version": version, "meta": meta}


@contextlib.contextmanager
def mlflow_uri(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking (and so registry) URI set to ``uri`` for a block.

    Resolving ``models:/<name>@<alias>`` always goes through the process-wide registry URI
    (MLflow ignores ``registry_uri=`` there), so tests that load registry models need this.
    """
    import mlflow

    env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # back to $MLFLOW_TRACKING_URI, which this also unset
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env


def download_registered_model(p: PipelineRun, model_uri: str) -> str:
    """A registry model URI resolved through ``p``'s store and downloaded to a temp folder."""
    import mlflow

    dst = tempfile.mkdtemp(prefix="registry-model-", dir=p.project.parent)
    with mlflow_uri(p.uri):
        return mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst)
