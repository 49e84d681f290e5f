"""``gapline retrain``: retrain when something changed, and promote only a better model.

One retrain, in order:

1. Compose the config (Hydra overrides recompose params.yaml, as ``gapline repro`` does) and
   take an exclusive lock, so two scheduled runs never train at once.
2. Compare what the ``champion`` was trained from (its version tags) with what would be
   trained now: the data fingerprint, a digest of the config groups the pipeline reads, and
   the code. Nothing changed (and no ``--force``): exit 0, "up to date: nothing to retrain".
3. ``dvc repro`` (cached stages are reused). The train stage registers the challenger.
4. Score the challenger and the champion on the same, current splits; promote the challenger
   to ``champion`` (the old one becomes ``previous-champion``) only if it clears the rule in
   :func:`decide`. The decision goes to ``reports/retrain.json`` and to an MLflow run
   ``retrain``; moving the aliases is the very last step, so a failure never moves them.

Exit codes (see :data:`EXIT_CODES`): 0 promoted or up to date, 3 challenger kept out,
75 another retrain holds the lock, 1 failure, 2 bad input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from .config import Config
from .errors import ConfigError, GaplineError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_KEPT = 3
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later

EXIT_CODES = {
    EXIT_OK: "promoted, or up to date (nothing to retrain)",
    EXIT_FAILED: "failure: the pipeline, the evaluation or the tracking store failed; aliases untouched",
    EXIT_BAD_INPUT: "bad input: an invalid config, override or option; nothing was run",
    EXIT_KEPT: "challenger kept out: the champion is unchanged",
    EXIT_LOCKED: "another retrain (or promote) holds the lock; nothing was run",
}

# The config groups the DVC pipeline reads to build the model. ``tracking`` (where results
# go), ``retrain`` (how they are judged), ``study``, ``sweep`` and ``meta`` do not change it.
PIPELINE_GROUPS = ("data", "augment", "model", "regularization", "train")

TAG_DATA = "retrain.data_fingerprint"
TAG_CONFIG = "retrain.config_digest"
TAG_CODE = "retrain.code_digest"
TAG_VERSION = "gapline.version"
TAG_COMMIT = "git.commit"

SCORE_TOLERANCE = 1e-9  # accuracies are ratios: 0.85 + 0.05 must compare equal to 0.9


class RetrainFailed(GaplineError):
    """The pipeline or the evaluation failed (exit 1); the aliases were not touched."""


class LockHeld(GaplineError):
    """Another retrain or promote holds the lock (exit 75)."""


# --------------------------------------------------------------------------------------
# The lock
# --------------------------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def lock_holder(path: Path) -> dict[str, Any]:
    """What the holder wrote into the lock file (empty if nothing readable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], command: str = "retrain") -> Iterator[dict[str, Any]]:
    """Hold an exclusive ``flock`` on ``path`` for the block, or raise :class:`LockHeld` at once.

    The holder writes its pid, host, command and start time into the file; the lock is the
    kernel's, so it is released when the process dies, whatever happens (no stale locks).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by subprocesses
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = lock_holder(target)
        who = f"pid {holder.get('pid', '?')}"
        if holder.get("host"):
            who += f" on {holder['host']}"
        raise LockHeld(
            f"another gapline {holder.get('command', 'retrain')} is running ({who}, started "
            f"{holder.get('started', '?')}; lock {target}): not starting a second one, try again later"
        ) from None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "started": _now()}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield info
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --------------------------------------------------------------------------------------
# What the champion was trained from, and what would be trained now
# --------------------------------------------------------------------------------------


def config_digest(cfg: Config) -> str:
    """Digest of the config groups that determine the model (:data:`PIPELINE_GROUPS`)."""
    groups = {name: dataclasses.asdict(getattr(cfg, name)) for name in PIPELINE_GROUPS}
    text = json.dumps(groups, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def code_dir(root: Path) -> Path:
    """The package sources the pipeline's DVC stages depend on: ``<root>/src/gapline`` when the
    project has it (DVC hashes that folder too), else the installed package."""
    local = root / "src" / "gapline"
    if (local / "__init__.py").is_file():
        return local
    import gapline

    return Path(gapline.__file__).resolve().parent


def code_digest(folder: Path) -> str:
    """Digest of every ``.py`` file under ``folder`` (relative path and bytes, sorted)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes().replace(b"\r\n", b"\n"))
        h.update(b"\0")
    return h.hexdigest()[:16]


@dataclass
class State:
    """What a model is trained from. ``git_commit`` is recorded but not compared: a commit that
    touches neither code nor config (docs, say) does not call for a new model."""

    data_fingerprint: str
    config_digest: str
    code_digest: str
    gapline_version: str
    git_commit: str = ""

    def tags(self) -> dict[str, str]:
        tags = {
            TAG_DATA: self.data_fingerprint,
            TAG_CONFIG: self.config_digest,
            TAG_CODE: self.code_digest,
            TAG_VERSION: self.gapline_version,
        }
        if self.git_commit:
            tags[TAG_COMMIT] = self.git_commit
        return tags


COMPARED = {"data": TAG_DATA, "config": TAG_CONFIG, "code": (TAG_CODE, TAG_VERSION)}


def current_state(cfg: Config, root: Path, fingerprint: Optional[str] = None) -> State:
    """The state a retrain would train from now. The data fingerprint is recomputed from the
    source (the same value ``prepare`` writes to meta.json) unless given."""
    import gapline

    from . import tracking

    if fingerprint is None:
        from .data.prepare import split_source

        cwd = os.getcwd()
        try:
            os.chdir(root)  # data.path is relative to the project
            fingerprint = split_source(cfg)[1]["fingerprint"]
        finally:
            os.chdir(cwd)
    return State(
        data_fingerprint=str(fingerprint),
        config_digest=config_digest(cfg),
        code_digest=code_digest(code_dir(root)),
        gapline_version=gapline.__version__,
        git_commit=tracking.git_state(root).get("git.commit", ""),
    )


def what_changed(champion_tags: Optional[Mapping[str, str]], state: State) -> dict[str, dict[str, str]]:
    """``{"data"|"config"|"code": {"champion": old, "current": new}}``; ``{"champion": ...}``
    when there is no champion, or it has no recorded state (promoted by hand from a version
    that no retrain produced). Empty: nothing changed."""
    if champion_tags is None:
        return {"champion": {"champion": "none", "current": "no champion yet"}}
    now = state.tags()
    if not all(champion_tags.get(t) for t in (TAG_DATA, TAG_CONFIG, TAG_CODE)):
        return {"champion": {"champion": "no recorded state", "current": "unknown what it was trained from"}}
    changed: dict[str, dict[str, str]] = {}
    for what, keys in COMPARED.items():
        keys = keys if isinstance(keys, tuple) else (keys,)
        old = " ".join(str(champion_tags.get(k, "")) for k in keys)
        new = " ".join(now[k] for k in keys)
        if old != new:
            changed[what] = {"champion": old, "current": new}
    return changed


# --------------------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------------------


def gap_key(metric: str) -> str:
    """The gap that goes with the metric: train accuracy minus that split's accuracy."""
    return "gap_accuracy_" + metric.split("_", 1)[0]


@dataclass
class Scored:
    """A registered version scored on the current splits (``score`` None: it could not be)."""

    version: str
    score: Optional[float]
    gap: Optional[float]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "score": self.score, "gap": self.gap, "metrics": self.metrics}
        if self.error:
            out["error"] = self.error
        return out


def decide(rc: Any, challenger: Scored, champion: Optional[Scored]) -> tuple[bool, str]:
    """Promote the challenger only if every check passes:

    - its gap (train accuracy minus the metric split's accuracy) is at most ``max_gap``;
    - its score reaches the floor ``min_score``;
    - there is no champion, or the champion cannot be scored on the current splits, or
      ``challenger >= champion + margin`` (greater or equal: with margin 0 a tie promotes the
      newer model).

    Returns ``(promote, reason)``; the reason names every check that failed.
    """
    metric = rc.metric
    assert challenger.score is not None and challenger.gap is not None
    failed: list[str] = []
    passed: list[str] = []
    if challenger.gap > rc.max_gap + SCORE_TOLERANCE:
        failed.append(f"its gap {challenger.gap:+.4f} exceeds retrain.max_gap={rc.max_gap:g}")
    else:
        passed.append(f"gap {challenger.gap:+.4f} <= {rc.max_gap:g}")
    if challenger.score < rc.min_score - SCORE_TOLERANCE:
        failed.append(f"its {metric} {challenger.score:.4f} is below retrain.min_score={rc.min_score:g}")
    else:
        passed.append(f"{metric} {challenger.score:.4f} >= floor {rc.min_score:g}")
    if champion is None:
        passed.append("no champion yet")
    elif champion.score is None:
        passed.append(f"champion v{champion.version} cannot be scored on the current splits ({champion.error})")
    else:
        needed = champion.score + rc.margin
        if challenger.score < needed - SCORE_TOLERANCE:
            failed.append(
                f"its {metric} {challenger.score:.4f} < champion v{champion.version}'s "
                f"{champion.score:.4f} + margin {rc.margin:g}"
            )
        else:
            passed.append(
                f"{metric} {challenger.score:.4f} >= champion v{champion.version}'s "
                f"{champion.score:.4f} + margin {rc.margin:g}"
            )
    if failed:
        return False, f"challenger v{challenger.version} kept out: " + "; ".join(failed)
    return True, f"challenger v{challenger.version} promoted: " + "; ".join(passed)


def score(model: Any, version: str, splits: Mapping[str, Any], num_classes: int, metric: str) -> Scored:
    from .evaluation import evaluate_splits

    metrics = {k: round(float(v), 6) for k, v in evaluate_splits(model, dict(splits), num_classes).items()}
    return Scored(version=str(version), score=metrics[metric], gap=metrics[gap_key(metric)], metrics=metrics)


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    decision: str  # promoted | kept | up-to-date | failed
    exit_code: int
    message: str
    report: dict[str, Any] = field(default_factory=dict)


def _pipeline_env() -> dict[str, str]:
    """This interpreter's tools first; never the MLflow-project run id: the pipeline's train
    stage must open its own run, not resume the one retrain holds."""
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    env.pop("MLFLOW_RUN_ID", None)
    return env


def _stop_group(proc: subprocess.Popen, grace: float = 60.0) -> None:
    """SIGTERM the pipeline's process group, SIGKILL it if it has not exited after ``grace``."""
    import signal

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)


def run_pipeline(root: Path, force: bool) -> None:
    """``dvc repro`` (``--force`` reruns every stage); its output goes straight to ours."""
    bindir = Path(sys.executable).parent
    dvc = bindir / "dvc"
    cmd = [str(dvc) if dvc.exists() else "dvc", "repro", *(["--force"] if force else [])]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        # Its own process group: if retrain is interrupted or terminated, the whole pipeline
        # (dvc and the stage it runs) gets SIGTERM, so the stage closes its MLflow run KILLED.
        proc = subprocess.Popen(cmd, cwd=root, env=_pipeline_env(), start_new_session=True)
    except OSError as exc:
        raise RetrainFailed(f"cannot run `{' '.join(cmd)}`: {exc}") from None
    try:
        rc = proc.wait()
    except BaseException:
        _stop_group(proc)
        raise
    if rc != 0:
        raise RetrainFailed(f"the pipeline failed: `dvc repro{' --force' if force else ''}` exited {rc} (see its output above)")


def challenger_version(cfg: Config, root: Path) -> str:
    """The version the pipeline's train stage registered (``reports/mlflow_run.json``)."""
    from . import tracking
    from .files import read_json

    path = root / tracking.RUN_FILE
    try:
        record = read_json(path)
    except Exception as exc:  # noqa: BLE001
        raise RetrainFailed(f"cannot read {tracking.RUN_FILE}: {exc}") from None
    current = tracking.canonical_uri(tracking.resolve_uri(cfg.tracking), root)
    recorded = record.get("tracking_uri")
    version = record.get("model_version")
    if not version or record.get("registered_model") != cfg.tracking.registered_model:
        raise RetrainFailed(
            f"{tracking.RUN_FILE} names no version of {cfg.tracking.registered_model!r}: expected the train "
            "stage to register one (rerun with --force)"
        )
    if recorded and tracking.canonical_uri(str(recorded), root) != current:
        raise RetrainFailed(
            f"{tracking.RUN_FILE} names v{version} in {recorded}, not in {current} (DVC restored a model "
            "trained against another store): rerun with --force to train into this one"
        )
    return str(version)


def _load_splits(root: Path) -> tuple[dict[str, tuple[Any, Any]], dict[str, Any]]:
    from .files import load_arrays
    from .data.layout import PREPARED, SPLITS
    from .data.layout import read_meta

    meta = read_meta(root / PREPARED)
    splits = {}
    for name in SPLITS:
        arrays = load_arrays(root / PREPARED / f"{name}.npz")
        splits[name] = (arrays["x"], arrays["y"])
    return splits, meta


def _git_commit(root: Path) -> str:
    from . import tracking

    return tracking.git_state(root).get("git.commit", "")


def _write_report(root: Path, cfg: Config, report: dict[str, Any]) -> Path:
    from .files import write_json

    path = root / cfg.retrain.report
    write_json(path, report)
    return path


@contextlib.contextmanager
def _working_dir(folder: Path) -> Iterator[None]:
    """Run in the project root, as DVC's stages do: relative store URIs (``sqlite:///mlflow.db``)
    and paths then name the same files in retrain and in the pipeline."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)


def load_config(overrides: Sequence[str], params: str, root: Path) -> Config:
    from .params import compose_config, load_params

    cfg = compose_config(overrides, root) if overrides else load_params(root / params)
    if not cfg.tracking.enabled:
        raise ConfigError(
            "tracking.enabled=false is not allowed for retrain: expected tracking on, since the champion "
            "lives in the MLflow model registry"
        )
    if not cfg.tracking.registered_model:
        raise ConfigError(
            "tracking.registered_model='' is not allowed for retrain: expected the registered model that "
            "holds the champion"
        )
    return cfg


def retrain(
    overrides: Sequence[str] = (),
    *,
    force: bool = False,
    params: str = "params.yaml",
    root: Optional[Path] = None,
    echo: Callable[[str], None] = print,
) -> Outcome:
    """Run one retrain in project ``root`` (default: the project around the working directory).

    Raises :class:`LockHeld` (exit 75), :class:`ConfigError` and other input errors (exit 2);
    every other failure is recorded (report, FAILED MLflow run) and re-raised (exit 1).
    """
    from .params import find_root

    root = (root or find_root()).resolve()
    with _working_dir(root):
        return _retrain(overrides, force, params, root, echo)


def _retrain(overrides: Sequence[str], force: bool, params: str, root: Path, echo: Callable[[str], None]) -> Outcome:
    from . import tracking
    from .params import write_params

    cfg = load_config(overrides, params, root)
    with exclusive_lock(root / cfg.retrain.lock_file, "retrain"):
        if overrides:
            write_params(overrides, root)
        state = current_state(cfg, root)
        name = cfg.tracking.registered_model
        try:
            client = tracking.registry(cfg.tracking)
            aliases = tracking.registry_aliases(client, name)
            champion_v = aliases.get(tracking.CHAMPION)
            champion_mv = tracking.registry_version(client, name, champion_v) if champion_v else None
        except tracking.TrackingError as exc:
            with contextlib.suppress(Exception):
                _write_report(root, cfg, {"decision": "failed", "exit_code": EXIT_FAILED, "reason": str(exc),
                                          "registered_model": name, "finished": _now()})
            raise
        changed = what_changed(champion_mv.tags if champion_mv is not None else None, state)
        base = {
            "registered_model": name,
            "tracking_uri": tracking.canonical_uri(tracking.resolve_uri(cfg.tracking), root),
            "metric": cfg.retrain.metric,
            "margin": cfg.retrain.margin,
            "max_gap": cfg.retrain.max_gap,
            "min_score": cfg.retrain.min_score,
            "forced": force,
            "changed": sorted(changed),
            "changes": changed,
            "state": state.tags(),
            "champion_before": champion_v,
            "previous_champion_before": aliases.get(tracking.PREVIOUS_CHAMPION),
        }
        if not changed and not force:
            message = (
                f"up to date: nothing to retrain (champion {name} v{champion_v} was trained from this "
                "data, config and code; --force retrains anyway)"
            )
            report = {"decision": "up-to-date", "exit_code": EXIT_OK, "reason": message, **base,
                      "champion": {"version": champion_v}, "challenger": None, "champion_after": champion_v,
                      "finished": _now()}
            _write_report(root, cfg, report)
            echo(message)
            return Outcome("up-to-date", EXIT_OK, message, report)
        what = ", ".join(f"{k} ({v['champion'][:19]} -> {v['current'][:19]})" for k, v in changed.items())
        echo(f"retrain: {'forced; ' if force else ''}changed since the champion: {what or 'nothing'}")
        return _retrain_run(cfg, root, force, state, client, champion_v, base, echo)


def _retrain_run(
    cfg: Config,
    root: Path,
    force: bool,
    state: State,
    client: Any,
    champion_v: Optional[str],
    base: dict[str, Any],
    echo: Callable[[str], None],
) -> Outcome:
    """Pipeline, scores, decision and (last) the alias move, inside one MLflow run ``retrain``.

    Any exception ends that run FAILED (tracking.run), rewrites the report and the version's
    decision tag as ``failed``, and leaves ``champion``/``previous-champion`` as they were."""
    from . import tracking

    name = cfg.tracking.registered_model
    started = time.time()
    report: dict[str, Any] = {"decision": "failed", "exit_code": EXIT_FAILED, **base, "started": _now()}
    # The retrain run mostly waits on the pipeline: no system metrics of its own.
    run_cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, system_metrics=False))
    try:
        with tracking.run(run_cfg, run_name="retrain") as active:
            report["mlflow_run_id"] = active.info.run_id
            try:
                _decide_and_promote(cfg, root, force, state, client, champion_v, report, started)
            except BaseException as exc:
                _mark_failed(report, exc, started)
                with contextlib.suppress(Exception):
                    tracking.log_tags({"retrain.decision": "failed", "retrain.reason": report["reason"]})
                if report.get("challenger_version"):
                    with contextlib.suppress(Exception):
                        tracking.tag_version(
                            client, name, report["challenger_version"],
                            {"retrain.decision": "failed", "retrain.reason": report["reason"],
                             "retrain.run_id": report["mlflow_run_id"]},
                        )
                raise
    except BaseException as exc:
        if report["decision"] != "failed" or "finished" not in report:  # the run could not open or close
            _mark_failed(report, exc, started)
        report.setdefault("champion_after", champion_v)
        with contextlib.suppress(Exception):
            _write_report(root, cfg, report)
        raise
    message = str(report["reason"])
    if report["decision"] == "promoted":
        prev = report.get("previous_champion_after")
        message += f". {name}@champion -> v{report['champion_after']}" + (f", @previous-champion -> v{prev}" if prev else "")
    elif report["decision"] == "kept":
        message += f". {name}@champion stays v{champion_v}"
    echo(message)
    return Outcome(report["decision"], report["exit_code"], message, report)


def _mark_failed(report: dict[str, Any], exc: BaseException, started: float) -> None:
    from . import tracking

    interrupted = isinstance(exc, KeyboardInterrupt)
    report.update(
        decision="failed",
        exit_code=130 if interrupted else EXIT_FAILED,
        reason=str(exc) if isinstance(exc, GaplineError) else tracking.one_line(exc),
        finished=_now(),
        seconds=round(time.time() - started, 1),
    )


def _decide_and_promote(
    cfg: Config,
    root: Path,
    force: bool,
    state: State,
    client: Any,
    champion_v: Optional[str],
    report: dict[str, Any],
    started: float,
) -> None:
    from . import runtime, tracking

    name = cfg.tracking.registered_model
    rc = cfg.retrain
    tracking.log_params(
        {"retrain.metric": rc.metric, "retrain.margin": rc.margin, "retrain.max_gap": rc.max_gap,
         "retrain.min_score": rc.min_score, "retrain.force": force, "registered_model": name}
    )
    tracking.log_tags(
        {"gapline.mode": "retrain", "retrain.changed": ",".join(report["changed"]) or "none",
         "retrain.champion_before": champion_v or "none", **state.tags()}
    )
    run_pipeline(root, force)

    challenger_v = challenger_version(cfg, root)
    splits, meta = _load_splits(root)
    state = dataclasses.replace(state, data_fingerprint=str(meta["fingerprint"]))
    report["state"] = state.tags()
    report["challenger_version"] = challenger_v
    # What the challenger was trained from: the next retrain compares against it.
    tracking.tag_version(client, name, challenger_v, state.tags())
    tracking.log_tags({"retrain.challenger_version": challenger_v})

    if challenger_v == champion_v:
        # DVC restored the champion's own outputs (what changed does not reach the model).
        reason = (
            f"up to date: nothing to retrain (the pipeline reproduced champion {name} v{champion_v}; "
            "its recorded state is updated)"
        )
        report.update(decision="up-to-date", exit_code=EXIT_OK, reason=reason,
                      challenger={"version": challenger_v}, champion={"version": champion_v},
                      champion_after=champion_v)
    else:
        t = cfg.train
        runtime.configure(t.seed, t.deterministic, t.accelerator, t.precision)
        k = len(meta["class_names"])
        challenger = score(tracking.load_registered_keras(name, challenger_v), challenger_v, splits, k, rc.metric)
        champion: Optional[Scored] = None
        if champion_v is not None:
            model = tracking.load_registered_keras(name, champion_v)  # cannot load: a failure
            try:
                champion = score(model, champion_v, splits, k, rc.metric)
            except Exception as exc:  # noqa: BLE001 - e.g. another input shape or class count
                champion = Scored(champion_v, None, None, error=tracking.one_line(exc))
        promote, reason = decide(rc, challenger, champion)
        report.update(
            decision="promoted" if promote else "kept",
            exit_code=EXIT_OK if promote else EXIT_KEPT,
            reason=reason,
            challenger=challenger.as_dict(),
            champion=champion.as_dict() if champion else None,
            champion_after=challenger_v if promote else champion_v,
        )
        metrics = {"challenger_score": challenger.score, "challenger_gap": challenger.gap}
        metrics.update({f"challenger.{key}": v for key, v in challenger.metrics.items()})
        if champion is not None and champion.score is not None:
            metrics.update({"champion_score": champion.score, "champion_gap": champion.gap})
            metrics.update({f"champion.{key}": v for key, v in champion.metrics.items()})
        tracking.log_metrics(metrics)

    decision = report["decision"]
    if decision == "promoted":
        report["previous_champion_after"] = champion_v or report.get("previous_champion_before")
    report.update(finished=_now(), seconds=round(time.time() - started, 1))
    tracking.log_tags(
        {"retrain.decision": decision, "retrain.reason": report["reason"],
         "retrain.champion_after": report.get("champion_after") or "none"}
    )
    if decision != "up-to-date":
        version_tags = {"retrain.decision": decision, "retrain.reason": report["reason"],
                        "retrain.run_id": report["mlflow_run_id"]}
        if decision == "promoted":
            version_tags["retrain.promoted_at"] = report["finished"]
        tracking.tag_version(client, name, challenger_v, version_tags)
    tracking.log_artifact(_write_report(root, cfg, report), "retrain")
    tracking.flush()
    if decision == "promoted":
        moved = tracking.move_champion(client, name, challenger_v)  # the very last registry write
        report["previous_champion_after"] = moved["previous_champion"]
        _write_report(root, cfg, report)


# --------------------------------------------------------------------------------------
# Manual promotion and rollback
# --------------------------------------------------------------------------------------


def promote(
    version: Optional[str] = None,
    *,
    rollback: bool = False,
    reason: str = "",
    overrides: Sequence[str] = (),
    params: str = "params.yaml",
    root: Optional[Path] = None,
    echo: Callable[[str], None] = print,
) -> Outcome:
    """Point ``champion`` at ``version`` (or, with ``rollback``, at ``previous-champion``); the
    replaced champion becomes ``previous-champion``. Recorded as an MLflow run ``promote`` and
    as tags on the version. Takes the retrain lock."""
    from .params import find_root

    root = (root or find_root()).resolve()
    with _working_dir(root):
        return _promote(version, rollback, reason, overrides, params, root, echo)


def _promote(
    version: Optional[str],
    rollback: bool,
    reason: str,
    overrides: Sequence[str],
    params: str,
    root: Path,
    echo: Callable[[str], None],
) -> Outcome:
    from . import tracking
    from .params import compose_config, load_params

    cfg = compose_config(overrides, root) if overrides else load_params(root / params, check_drift=False)
    if not cfg.tracking.enabled or not cfg.tracking.registered_model:
        raise ConfigError(
            "tracking.enabled=false is not allowed for promote: expected tracking on and a "
            "tracking.registered_model, since aliases live in the MLflow model registry"
        )
    name = cfg.tracking.registered_model
    with exclusive_lock(root / cfg.retrain.lock_file, "promote"):
        client = tracking.registry(cfg.tracking)
        aliases = tracking.registry_aliases(client, name)
        old = aliases.get(tracking.CHAMPION)
        if rollback:
            version = aliases.get(tracking.PREVIOUS_CHAMPION)
            if version is None:
                raise GaplineError(f"{name} has no alias {tracking.PREVIOUS_CHAMPION!r}: expected an earlier promotion to roll back")
        assert version is not None
        version = str(version).lstrip("v")
        if not version.isdigit() or tracking.registry_version(client, name, version) is None:
            raise GaplineError(f"--version={version!r} is not allowed: expected a registered version of {name!r}")
        if old == version:
            message = f"{name} v{version} is already the champion: nothing to do"
            echo(message)
            return Outcome("up-to-date", EXIT_OK, message)
        why = reason or ("rollback" if rollback else "manual promotion")
        with tracking.run(dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, system_metrics=False)),
                          run_name="promote") as active:
            tracking.log_params({"registered_model": name, "promote.version": version, "promote.rollback": rollback})
            tracking.log_tags(
                {"gapline.mode": "promote", "promote.from": old or "none", "promote.to": version, "promote.reason": why,
                 "promote.git_commit": _git_commit(root)}
            )
            tracking.tag_version(
                client, name, version,
                {"retrain.decision": "promoted", "retrain.reason": f"{why} (gapline promote)", "retrain.promoted_at": _now(),
                 "retrain.run_id": active.info.run_id},
            )
            tracking.flush()
            moved = tracking.move_champion(client, name, version)
        prev = moved["previous_champion"]
        message = f"{name}@champion -> v{version}" + (f", @previous-champion -> v{prev}" if prev else "") + f" ({why})"
        echo(message)
        return Outcome("promoted", EXIT_OK, message)
