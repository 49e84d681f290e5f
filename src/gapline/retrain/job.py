"""One ``gapline retrain``: compare, train, judge, and only then move the aliases.

In order:

1. Compose the config (Hydra overrides recompose params.yaml, as ``gapline repro`` does) and
   take an exclusive lock, so two scheduled runs never train at once.
2. Compare what the ``champion`` was trained from (its version tags) with what would be
   trained now: the data fingerprint, a digest of the config groups the pipeline reads, and
   the code. Nothing changed (and no ``--force``): exit 0, "up to date: nothing to retrain".
3. The drift check (:mod:`.drift`): the current data against the champion's stored reference,
   reported in ``reports/drift/`` and the MLflow run. Under ``retrain.drift=require`` a
   data-only change that neither drifted nor grew stops here (exit 0); under ``block`` data
   that drifted beyond ``retrain.max_drift`` stops here (exit 3). Nothing was trained.
   With ``retrain.pull``, ``dvc pull`` from the team's remote comes first (:mod:`.remote`).
4. ``dvc repro`` (cached stages are reused). The train stage registers the challenger, and
   the run stores the summary of its training data as the reference of the next check.
5. Score the challenger and the champion on the same, current splits; promote the challenger
   to ``champion`` (the old one becomes ``previous-champion``) only if it clears the rule in
   :func:`~gapline.retrain.decision.decide`. The decision goes to ``reports/retrain.json`` and
   to an MLflow run ``retrain``; moving the aliases is the very last step, so a failure never
   moves them. With ``retrain.push``, ``dvc push`` of the new champion's outputs comes just
   before it: a champion is never a model that only this machine holds.

Steps 2-5 are a :class:`RetrainJob`: it holds what they share, learns the rest as it goes
(the run, the challenger, the verdict, a failure), and builds the report from that in one
place, so every path (success, failure, interruption) writes the same fields.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapline import tracking
from gapline.config.params import compose_config, find_root, load_params, write_params
from gapline.config.schema import Config
from gapline.config.tasks import retrain_metric, retrain_metrics
from gapline.core.errors import ConfigError, GaplineError, bad_value
from gapline.data.layout import PREPARED
from gapline.data.meta import PreparedMeta
from gapline.models import memory, runtime
from gapline.retrain import drift_gate, remote
from gapline.retrain.decision import Scored, decide, load_splits, reads_table, score, takes_pixels
from gapline.retrain.drift import Drift, Summary, summarize
from gapline.retrain.lock import exclusive_lock
from gapline.retrain.outcome import ExitCode, Outcome
from gapline.retrain.pipeline import challenger_version, run_pipeline
from gapline.retrain.records import aliases_moved, decision_tags, run_config, utc_now, write_report
from gapline.retrain.state import State, current_state, what_changed


def retrain(
    overrides: Sequence[str] = (),
    *,
    force: bool = False,
    params: str = "params.yaml",
    root: Path | None = None,
    echo: Callable[[str], None] = print,
) -> Outcome:
    """Run one retrain in project ``root`` (default: the project around the working directory).

    Runs in the project root, as DVC's stages do: relative store URIs (``sqlite:///mlflow.db``)
    and paths then name the same files in retrain and in the pipeline.

    Raises :class:`~gapline.retrain.lock.LockHeld` (exit 75), :class:`ConfigError` and other
    input errors (exit 2); every other failure is recorded (report, FAILED MLflow run) and
    re-raised (exit 1).
    """

    root = (root or find_root()).resolve()
    with contextlib.chdir(root):
        cfg = load_config(overrides, params, root)
        with exclusive_lock(root / cfg.retrain.lock_file, "retrain"):
            if overrides:
                write_params(overrides, root)
            if cfg.retrain.pull:  # an empty clone: what the remote holds for this commit, before comparing
                remote.sync("pull", root, cfg.retrain.remote, echo)
            return RetrainJob.start(cfg, root, force, echo).run()


def load_config(overrides: Sequence[str], params: str, root: Path) -> Config:
    """The config a retrain runs with; it needs tracking and a registered model to hold the champion."""

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


@dataclass(frozen=True)
class Champion:
    """The registry before the retrain: the champion, the alias behind it, and what it was
    trained from (``tags`` None: there is no champion yet)."""

    client: Any
    version: str | None
    previous: str | None
    tags: Mapping[str, str] | None

    @classmethod
    def look_up(cls, cfg: Config, root: Path) -> Champion:
        """Read the aliases; a store that cannot be read is reported as ``failed`` and re-raised."""

        name = cfg.tracking.registered_model
        try:
            client = tracking.registry(cfg.tracking)
            aliases = tracking.registry_aliases(client, name)
            version = aliases.get(tracking.CHAMPION)
            model_version = tracking.registry_version(client, name, version) if version else None
        except tracking.TrackingError as exc:
            with contextlib.suppress(Exception):
                write_report(root, cfg, {"decision": "failed", "exit_code": ExitCode.FAILED, "reason": str(exc),
                                         "registered_model": name, "finished": utc_now()})
            raise
        tags = model_version.tags if model_version is not None else None
        return cls(client, version, aliases.get(tracking.PREVIOUS_CHAMPION), tags)


@dataclass(frozen=True)
class Verdict:
    """What the retrain decided about the challenger, before any alias moves."""

    decision: str  # promoted | kept | up-to-date | skipped (drift: require) | blocked (drift: block) | superseded
    exit_code: ExitCode
    reason: str
    challenger: dict[str, Any] | None  # None: nothing was trained (skipped, blocked)
    champion: dict[str, Any] | None
    champion_after: str | None
    previous_champion_after: str | None = None  # promoted only

    def report(self) -> dict[str, Any]:
        fields = {"decision": self.decision, "exit_code": self.exit_code, "reason": self.reason,
                  "challenger": self.challenger, "champion": self.champion, "champion_after": self.champion_after}
        if self.decision == "promoted":
            fields["previous_champion_after"] = self.previous_champion_after
        return fields


@dataclass
class RetrainJob:
    """One retrain, from the comparison to the alias move (the lock is held around it)."""

    cfg: Config
    root: Path
    force: bool
    echo: Callable[[str], None]
    state: State  # what it trains from; the data fingerprint is the prepared one once the pipeline ran
    champion: Champion
    changed: dict[str, dict[str, str]]
    tracking_uri: str
    current: Summary | None = None  # the current data's summary (when the champion has a reference)
    # What the MLflow run learns, in order; :meth:`report` is built from these.
    started: float = 0.0
    started_at: str = ""
    run_id: str = ""
    challenger: str = ""  # the version the pipeline registered
    judged_on: str = ""  # retrain.metric with auto resolved for the prepared data's task
    drift: Drift | None = None  # the drift check, before training
    verdict: Verdict | None = None
    failure: tuple[ExitCode, str] | None = None
    finished_at: str = ""
    seconds: float = 0.0

    @classmethod
    def start(cls, cfg: Config, root: Path, force: bool, echo: Callable[[str], None]) -> RetrainJob:
        """Compare what the champion was trained from with what would be trained now."""

        champion = Champion.look_up(cfg, root)
        current: list[Summary] = []

        def sample(folder: Path, meta: PreparedMeta) -> None:
            """The current data's summary for the drift check, while its prepared scratch copy exists."""
            if drift_gate.wants_current(champion.tags, meta.fingerprint):
                current.append(summarize(folder, meta))

        state = current_state(cfg, root, inspect=sample)
        changed = what_changed(champion.tags, state)
        uri = tracking.canonical_uri(tracking.resolve_uri(cfg.tracking), root)
        return cls(cfg, root, force, echo, state, champion, changed, uri, current[0] if current else None)

    @property
    def name(self) -> str:
        return self.cfg.tracking.registered_model

    def run(self) -> Outcome:
        """Up to date (nothing changed, no ``--force``), or challenge the champion."""
        if not self.changed and not self.force:
            return self._up_to_date()
        what = ", ".join(f"{k} ({v['champion'][:19]} -> {v['current'][:19]})" for k, v in self.changed.items())
        self.echo(f"retrain: {'forced; ' if self.force else ''}changed since the champion: {what or 'nothing'}")
        return self._challenge()

    # ----------------------------------------------------------------------------------
    # The report
    # ----------------------------------------------------------------------------------

    def _compared(self) -> dict[str, Any]:
        """What every report after the comparison says: the rule, and what changed since when."""
        rc = self.cfg.retrain
        return {
            "registered_model": self.name,
            "tracking_uri": self.tracking_uri,
            "metric": self.judged_on or rc.metric,
            "margin": rc.margin,
            "max_gap": rc.max_gap,
            "max_relative_gap": rc.max_relative_gap,
            "min_score": rc.min_score,
            "max_error": rc.max_error,
            "drift_policy": rc.drift,
            "max_drift": rc.max_drift,
            "forced": self.force,
            "changed": sorted(self.changed),
            "changes": self.changed,
            "state": self.state.tags(),
            "champion_before": self.champion.version,
            "previous_champion_before": self.champion.previous,
        }

    def report(self) -> dict[str, Any]:
        """The report of the challenge so far: what was compared, then what the run learnt."""
        report: dict[str, Any] = {"decision": "failed", "exit_code": ExitCode.FAILED, **self._compared(),
                                  "started": self.started_at}
        if self.run_id:
            report["mlflow_run_id"] = self.run_id
        if self.challenger:
            report["challenger_version"] = self.challenger
        if self.drift is not None:
            report["drift"] = self.drift.summary()
        if self.verdict is not None:
            report.update(self.verdict.report())
        if self.failure is not None:
            exit_code, reason = self.failure
            report.update(decision="failed", exit_code=exit_code, reason=reason)
            report.setdefault("champion_after", self.champion.version)
        if self.finished_at:
            report.update(finished=self.finished_at, seconds=self.seconds)
        return report

    def _write_report(self) -> Path:
        return write_report(self.root, self.cfg, self.report())

    def _stop_clock(self) -> None:
        self.finished_at, self.seconds = utc_now(), round(time.time() - self.started, 1)

    # ----------------------------------------------------------------------------------
    # The steps
    # ----------------------------------------------------------------------------------

    def _up_to_date(self) -> Outcome:
        version = self.champion.version
        message = (
            f"up to date: nothing to retrain (champion {self.name} v{version} was trained from this "
            "data, config and code; --force retrains anyway)"
        )
        report = {"decision": "up-to-date", "exit_code": ExitCode.OK, "reason": message, **self._compared(),
                  "champion": {"version": version}, "challenger": None, "champion_after": version,
                  "finished": utc_now()}
        write_report(self.root, self.cfg, report)
        self.echo(message)
        return Outcome("up-to-date", ExitCode.OK, message, report)

    def _challenge(self) -> Outcome:
        """Pipeline, scores, verdict and (last) the alias move, inside one MLflow run ``retrain``.

        Any exception ends that run FAILED (tracking.run), reports it and tags the version
        ``failed``, and leaves ``champion``/``previous-champion`` as they were."""

        self.started, self.started_at = time.time(), utc_now()
        try:
            with tracking.run(run_config(self.cfg), run_name="retrain") as active:
                assert active is not None  # load_config refused tracking.enabled=false
                self.run_id = active.info.run_id
                try:
                    self._train_judge_promote()
                except BaseException as exc:
                    self._fail(exc)
                    self._tag_failure()
                    raise
        except BaseException as exc:
            if self.failure is None:  # the run could not open, or not close
                self._fail(exc)
            with contextlib.suppress(Exception):
                self._write_report()
            raise
        assert self.verdict is not None
        message = self._message()
        self.echo(message)
        return Outcome(self.verdict.decision, self.verdict.exit_code, message, self.report())

    def _train_judge_promote(self) -> None:
        rc = self.cfg.retrain
        tracking.log_params(
            {"retrain.metric": rc.metric, "retrain.margin": rc.margin, "retrain.max_gap": rc.max_gap, "retrain.max_relative_gap": rc.max_relative_gap,
             "retrain.min_score": rc.min_score, "retrain.max_error": rc.max_error, "retrain.force": self.force, "registered_model": self.name,
             "retrain.drift": rc.drift, "retrain.max_drift": rc.max_drift}
        )
        tracking.log_tags(
            {"gapline.mode": "retrain", "retrain.changed": ",".join(sorted(self.changed)) or "none",
             "retrain.champion_before": self.champion.version or "none", **self.state.tags()}
        )
        gate = self._check_drift()
        if gate is not None:  # the drift policy stops the retrain before anything is trained
            self.verdict = gate
            self._stop_clock()
            self._record_verdict()
            return
        splits, meta = self._train()
        if self.challenger == self.champion.version:
            self.verdict = self._reproduced()
        else:
            self.verdict, metrics = self._judge(splits, meta)
            tracking.log_metrics({k: v for k, v in metrics.items() if v is not None})  # an unscored champion has none
        self._stop_clock()
        self._record_verdict()
        if self.verdict.decision == "promoted":
            if self.cfg.retrain.push:  # the champion's outputs on the remote before its alias names it
                remote.sync("push", self.root, self.cfg.retrain.remote, self.echo)
                tracking.log_tags({"retrain.pushed": self.cfg.retrain.remote or "default remote"})
            # Another machine's retrain may have promoted meanwhile (the file lock is one
            # machine's): the challenger beat the champion it was scored against, not
            # necessarily this one. Read and move under the registry's lock, across machines.
            with tracking.promotion_lock(self.champion.client, self.name):
                now = tracking.registry_aliases(self.champion.client, self.name).get(tracking.CHAMPION)
                if now != self.champion.version:
                    self.verdict = self._superseded(now)
                else:
                    moved = tracking.move_champion(self.champion.client, self.name, self.challenger)  # the very last registry write
                    self.verdict = dataclasses.replace(self.verdict, previous_champion_after=moved["previous_champion"])
            if self.verdict.decision == "superseded":
                self._record_verdict()
                return
            self._write_report()

    def _train(self) -> tuple[dict[str, Any], PreparedMeta]:
        """Run the pipeline; tag the version it registered with what it was trained from (the
        next retrain compares against it). Returns the prepared splits and their meta."""

        run_pipeline(self.root, self.force)
        version = challenger_version(self.cfg, self.root)
        splits, meta = load_splits(self.root)
        self.state = dataclasses.replace(self.state, data_fingerprint=meta.fingerprint)
        self.challenger = version

        reference = drift_gate.store_reference(self.root, self.root / PREPARED, meta, self.run_id)
        tracking.tag_version(self.champion.client, self.name, version, {**self.state.tags(), **reference})
        tracking.log_tags({"retrain.challenger_version": version})
        return splits, meta

    def _check_drift(self) -> Verdict | None:
        """The drift check (:mod:`.drift_gate`): measured, reported (``reports/drift/``, the
        run), then ``retrain.drift`` applied: a verdict when it stops the retrain, None to train."""
        version = self.champion.version
        self.drift, reference = drift_gate.measure(
            self.cfg, self.root, self.champion.client, version, self.champion.tags,
            self.state.data_fingerprint, self.current,
        )
        self.echo(f"retrain: drift check: {self.drift.describe()}")
        folder = drift_gate.report_folder(self.cfg, self.root)
        html = folder / "drift.html"
        stop = drift_gate.stop(self.drift, self.cfg.retrain.drift, self.force, self.changed,
                               str(html.relative_to(self.root) if html.is_relative_to(self.root) else html))
        drift_gate.record(folder, self.drift, reference, self.current, "train" if stop is None else stop.decision)
        if stop is None:
            return None
        return Verdict(stop.decision, stop.exit_code, stop.reason, None, {"version": version}, version)

    def _superseded(self, now: str | None) -> Verdict:
        """The champion moved while this retrain ran: nothing moves, and the next run
        challenges the new champion."""
        assert self.verdict is not None
        before = f"v{self.champion.version}" if self.champion.version else "none"
        after = f"v{now}" if now else "none (the alias was removed)"
        reason = (
            f"challenger v{self.challenger} not promoted: {self.name}@champion moved from {before} to {after} while "
            f"this retrain ran (another machine promoted it); it was scored against {before} only. Run again to "
            f"challenge {after}"
        )
        return dataclasses.replace(self.verdict, decision="superseded", exit_code=ExitCode.LOCKED, reason=reason,
                                   champion_after=now, previous_champion_after=None)

    def _version_task(self, version: str) -> str:
        """The task a registered version was trained for: its run's ``task`` tag (versions
        trained before tasks existed were multiclass)."""

        found = tracking.registry_version(self.champion.client, self.name, version)
        run_id = getattr(found, "run_id", None)
        if not run_id:
            return "multiclass"
        return str(self.champion.client.get_run(run_id).data.tags.get("task", "multiclass"))

    def _reproduced(self) -> Verdict:
        """DVC restored the champion's own outputs (what changed does not reach the model)."""
        version = self.champion.version
        reason = (
            f"up to date: nothing to retrain (the pipeline reproduced champion {self.name} v{version}; "
            "its recorded state is updated)"
        )
        return Verdict("up-to-date", ExitCode.OK, reason, {"version": self.challenger}, {"version": version}, version)

    def _judge(self, splits: dict[str, Any], meta: PreparedMeta) -> tuple[Verdict, dict[str, float | None]]:
        """Score both on the same splits and apply the rule; returns the verdict and the
        scores to log (the verdict is kept even if logging them fails)."""

        rc, t, champion_v = self.cfg.retrain, self.cfg.train, self.champion.version
        task = meta.task_spec()
        rc = dataclasses.replace(rc, metric=retrain_metric(rc.metric, task.name))
        if rc.metric not in retrain_metrics(task.name):  # auto resolved the task only now
            raise ConfigError(
                bad_value("retrain.metric", self.cfg.retrain.metric, f"one of {', '.join(retrain_metrics(task.name))} for task {task.name}")
            )
        self.judged_on = rc.metric
        tracking.log_params({"retrain.judged_on": rc.metric})
        runtime.configure(t.seed, t.deterministic, t.accelerator, t.precision)
        budget = memory.train_budget(t)
        challenger = score(
            tracking.load_registered_keras(self.name, self.challenger), self.challenger, splits, task, rc.metric, self.cfg.task, budget
        )
        champion: Scored | None = None
        if champion_v is not None:
            # cannot load: a failure; registered before images were pixels: scaled in front
            model = takes_pixels(tracking.load_registered_keras(self.name, champion_v), meta)
            trained_for = self._version_task(champion_v)
            if trained_for != task.name:  # its outputs would be read as another task's: absent
                champion = Scored(champion_v, None, None, error=f"it was trained for task {trained_for}, not {task.name}")
            else:
                try:
                    model = reads_table(model, meta)  # another version of a table numbers its categories otherwise
                    champion = score(model, champion_v, splits, task, rc.metric, self.cfg.task, budget)
                except Exception as exc:  # noqa: BLE001 - e.g. another input shape or class count
                    champion = Scored(champion_v, None, None, error=tracking.error_text(exc))
        promote, reason = decide(rc, challenger, champion)
        metrics = {"challenger_score": challenger.score, "challenger_gap": challenger.gap}
        metrics.update({f"challenger.{key}": v for key, v in challenger.metrics.items()})
        if champion is not None and champion.score is not None:
            metrics.update({"champion_score": champion.score, "champion_gap": champion.gap})
            metrics.update({f"champion.{key}": v for key, v in champion.metrics.items()})
        verdict = Verdict(
            "promoted" if promote else "kept", ExitCode.OK if promote else ExitCode.KEPT, reason,
            challenger.as_dict(), champion.as_dict() if champion else None,
            self.challenger if promote else champion_v,
            previous_champion_after=(champion_v or self.champion.previous) if promote else None,
        )
        return verdict, metrics

    def _record_verdict(self) -> None:
        """The verdict into the run's tags, the version's tags and the report (an artifact)."""

        verdict = self.verdict
        assert verdict is not None
        tracking.log_tags(
            {"retrain.decision": verdict.decision, "retrain.reason": verdict.reason,
             "retrain.champion_after": verdict.champion_after or "none"}
        )
        if verdict.decision not in ("up-to-date", "skipped", "blocked"):  # those trained no challenger
            promoted_at = self.finished_at if verdict.decision == "promoted" else ""
            tags = decision_tags(verdict.decision, verdict.reason, self.run_id, promoted_at)
            tracking.tag_version(self.champion.client, self.name, self.challenger, tags)
        tracking.log_artifact(self._write_report(), "retrain")
        tracking.flush()

    def _fail(self, exc: BaseException) -> None:
        interrupted = isinstance(exc, KeyboardInterrupt)
        reason = str(exc) if isinstance(exc, GaplineError) else tracking.error_text(exc)
        self.failure = (ExitCode.INTERRUPTED if interrupted else ExitCode.FAILED, reason)
        self._stop_clock()

    def _tag_failure(self) -> None:
        """Best effort: the run and the challenger (if registered) say ``failed`` and why."""

        assert self.failure is not None
        reason = self.failure[1]
        with contextlib.suppress(Exception):
            tracking.log_tags({"retrain.decision": "failed", "retrain.reason": reason})
        if self.challenger:
            with contextlib.suppress(Exception):
                tracking.tag_version(self.champion.client, self.name, self.challenger,
                                     decision_tags("failed", reason, self.run_id))

    def _message(self) -> str:
        verdict = self.verdict
        assert verdict is not None
        if verdict.decision == "promoted":
            moved = aliases_moved(self.name, str(verdict.champion_after), verdict.previous_champion_after)
            return f"{verdict.reason}. {moved}"
        if verdict.decision in ("kept", "blocked"):
            return f"{verdict.reason}. {self.name}@champion stays v{self.champion.version}"
        return verdict.reason
