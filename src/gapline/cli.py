"""The ``gapline`` command: thin argument parsing over the pipeline's pure functions.

Heavy imports (TensorFlow, MLflow) happen inside the commands that need them, so ``--help``,
``params`` and ``check`` answer in well under a second.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import re
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from gapline import tracking
from gapline.config.params import PARAMS_FILE, check_params, compose_config, find_root, load_params, write_params
from gapline.config.tasks import UNIT_SCORES, gap_label, headline_of, higher_is_better
from gapline.core.dvc_command import dvc_executable, tools_env
from gapline.core.errors import ConfigError, DataError, GaplineError, warn
from gapline.core.exit_codes import PROMOTE_MEANINGS, ExitCode, exit_codes_help
from gapline.core.files import write_text
from gapline.experiments.learning_curve import learning_curve, write_learning_curve
from gapline.experiments.study import run_study
from gapline.experiments.study.table import table_markdown
from gapline.experiments.trial_logging import (
    close_tune,
    closed_on_failure,
    log_learning_curve,
    log_study,
    log_tune_trial,
    open_tune,
)
from gapline.experiments.tune import preset_name, quote_space, run_tune, search_space
from gapline.experiments.tune_preset import table_text, trials_csv, write_preset
from gapline.retrain import LockHeld, promote, retrain
from gapline.stages.augment import augment
from gapline.stages.evaluate import evaluate
from gapline.stages.prepare import prepare
from gapline.stages.train import train
from gapline.tracking import TrackingError


def _load(args: argparse.Namespace, check: bool = False):
    return check_params(args.params) if check else load_params(args.params)


def split_overrides(raw: Sequence[str]) -> list[str]:
    """Accept overrides as separate words or as one quoted string (how MLproject passes them):
    split on whitespace outside quotes and brackets, so ``x='interval(0.1, 0.3)'`` and
    ``x=[1, 2]`` stay one override."""
    words: list[str] = []
    for item in raw:
        word, depth, quote = "", 0, ""
        for ch in item:
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth = max(0, depth - 1)
            elif ch.isspace() and depth == 0:
                if word:
                    words.append(word)
                word = ""
                continue
            word += ch
        if word:
            words.append(word)
    return words


def cmd_params(args: argparse.Namespace) -> int:
    overrides = split_overrides(args.overrides)
    target = write_params(overrides)
    print(f"wrote {target.name} from conf/" + (f" with {' '.join(overrides)}" if overrides else ""))
    return 0


def cmd_repro(args: argparse.Namespace) -> int:
    """Compose (when overrides are given) and run ``dvc repro`` with this interpreter's tools."""

    overrides = split_overrides(args.overrides)
    if overrides:
        cmd_params(args)
    return subprocess.call([dvc_executable(), "repro", *args.dvc_args], env=tools_env())


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args, check=True)
    if args.marker:
        # Constant content: downstream stages depend on it for ordering, not for its value.
        write_text(args.marker, "params.yaml is valid and matches conf/\n")
    print(f"{args.params} is valid and matches conf/ (digest {cfg.meta.conf_digest})")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    meta = prepare(_load(args))
    counts = meta.counts
    print(
        f"prepared {meta.source}: train {counts['train']}, val {counts['val']}, "
        f"test {counts['test']} ({meta.fingerprint[:19]})"
    )
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    out = augment(_load(args))
    print(f"augmented training set: {out['samples']} samples")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if args.overrides or args.multirun:
        # A Hydra app over conf/ (not params.yaml): one run, or a sweep with -m.
        from gapline.experiments.sweep import hydra_train  # Hydra at import: lazily, like hydra itself

        quiet = ["train.verbose=quiet"] if args.quiet else []
        return hydra_train([*args.overrides, *quiet], args.multirun, find_root())
    cfg = _load(args)
    if args.quiet:
        cfg = replace(cfg, train=replace(cfg.train, verbose="quiet"))
    text = Path(args.params).read_text(encoding="utf-8")
    out = train(cfg, text, yaml.safe_load(text))
    if "process" in out:  # a multi_worker process other than the chief: it printed its line
        return 0
    print(
        f"trained {out['epochs_run']} epochs in {out['wall_seconds']:.1f}s "
        f"(best epoch {out['best_epoch']}, onset {out['onset_epoch']})"
        + (f"; MLflow run {out['run']['run_id']}" if out["run"].get("run_id") else "")
        + (f"; weights {out['weights']}" if "weights" in out else "")
    )
    return 0


def _value(metric: str, value: float, sign: str = "") -> str:
    """A score in [0, 1] with four decimals; an error in the target's units (RMSE) with four
    significant digits."""

    return format(value, f"{sign}.4f" if metric in UNIT_SCORES else f"{sign}.4g")


def headline_line(m: Mapping[str, float]) -> str:
    """The task's headline on test and its gaps, e.g. ``test rmse 54.2, gap on rmse (val vs
    train) +10.1, (test vs train) +5.03`` (gaps: positive = overfitting)."""

    head = headline_of(m)
    order = (lambda o: f"train vs {o}") if higher_is_better(head) else (lambda o: f"{o} vs train")
    return (
        f"test {head} {_value(head, m[f'test_{head}'])}, gap on {head} ({order('val')}) "
        f"{_value(head, m[f'gap_{head}_val'], '+')}, ({order('test')}) {_value(head, m[f'gap_{head}_test'], '+')}"
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    print(headline_line(evaluate(_load(args))))
    return 0


def cmd_learning_curve(args: argparse.Namespace) -> int:
    """Train the composed config at several training fractions; CSV + plot + one MLflow run."""

    cfg = compose_config(split_overrides(args.overrides))
    rows = learning_curve(cfg, args.fractions)
    files = write_learning_curve(rows, Path(args.out))
    log_learning_curve(cfg, rows, files)

    for row in rows:
        head = headline_of(row)
        print(
            f"fraction {row['train_fraction']:.2f} ({row['train_samples']} samples): "
            f"test {head} {_value(head, row[f'test_{head}'])}, "
            f"gap ({gap_label(head)}) {_value(head, row[f'gap_{head}_test'], '+')}"
        )
    print(f"wrote {', '.join(str(p) for p in files)}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    """Every technique side by side on the same split and seeds; finishes only what is missing."""

    overrides = split_overrides(args.overrides)
    root = find_root()
    cfg = compose_config(overrides, root)
    result = run_study(cfg, overrides, root, progress=not args.no_progress)
    run_id = log_study(cfg, result)
    print(table_markdown(result.table, cfg.study.baseline, cfg.study.alpha), end="")
    print(
        f"{result.trained} jobs trained, {result.reused} reused, in {result.seconds:.0f}s; "
        f"wrote {', '.join(str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in result.files)}"
        + (f"; MLflow parent run {run_id}" if run_id else "")
    )
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """Search the toolkit on validation; write the winner as conf/experiment/tuned_<name>.yaml."""

    overrides = [quote_space(o) for o in split_overrides(args.overrides)]
    root = find_root()
    cfg = compose_config(overrides, root)
    search_space(cfg)  # a bad key or range: one line before any run opens
    name = preset_name(cfg)
    parent = open_tune(cfg, name, overrides)

    def on_trial(trial: Any) -> None:
        log_tune_trial(parent, cfg, name, trial)
        label = "defaults" if trial.number == 0 else f"trial {trial.number}/{cfg.tune.trials}"
        how = "cached" if trial.cached else f"{trial.seconds:.0f}s"
        print(f"{label}: {cfg.tune.objective} {trial.objective:.4f} ({how}) {' '.join(trial.point)}".rstrip(), flush=True)

    with closed_on_failure(parent):  # KILLED or FAILED with the reason, never RUNNING
        result = run_tune(cfg, overrides, root, on_trial)
        command = " ".join(["gapline", "tune", *overrides])
        files = [trials_csv(result, result.out_dir / "trials.csv"), write_preset(result, overrides, root, command)]
        close_tune(parent, result, files)
    print(table_text(result), end="")
    rel = files[1].relative_to(root)
    print(
        f"{len(result.trials)} trials ({sum(not t.cached for t in result.trials)} trained, the rest cached), "
        f"stopped by tune.{result.stopped_by}, in {result.seconds:.0f}s; wrote {rel} and "
        f"{files[0].relative_to(root) if files[0].is_relative_to(root) else files[0]}"
        + (f"; MLflow parent run {parent}" if parent else "")
    )
    print(f"Use it: gapline params experiment={rel.stem} && dvc repro")
    return 0


_FORCE_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False, "": False}


def _retrain_words(args: argparse.Namespace) -> tuple[list[str], bool]:
    """Overrides and --force. ``--force`` takes an optional true/false (how MLproject passes
    it); any other word after it is an override that argparse took for its value."""
    overrides = split_overrides(args.overrides)
    if args.force is None:
        return overrides, False
    word = str(args.force).strip().lower()
    if word in _FORCE_WORDS:
        return overrides, _FORCE_WORDS[word]
    return split_overrides([args.force]) + overrides, True


def cmd_retrain(args: argparse.Namespace) -> int:
    """Retrain when data, config or code changed; promote the challenger only if it wins."""

    overrides, force = _retrain_words(args)
    try:
        return retrain(overrides, force=force, params=args.params).exit_code
    except LockHeld as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.LOCKED
    except (ConfigError, DataError):
        raise  # bad input: exit 2
    except GaplineError as exc:  # the pipeline, the evaluation or the tracking store
        refused = _refused(exc)
        if refused is not None:
            return refused
        print(f"error: retrain failed: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except Exception as exc:  # noqa: BLE001 - a scheduler needs the distinct exit code, not a crash
        refused = _refused(exc)
        if refused is not None:
            return refused
        traceback.print_exc()
        print(f"error: retrain failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitCode.FAILED


def cmd_promote(args: argparse.Namespace) -> int:
    """Point the champion alias at a version (or roll back to previous-champion)."""

    try:
        return promote(
            args.version, rollback=args.rollback, reason=args.reason,
            overrides=split_overrides(args.overrides), params=args.params,
        ).exit_code
    except LockHeld as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.LOCKED
    except TrackingError as exc:
        refused = _refused(exc)
        if refused is not None:
            return refused
        print(f"error: promote failed: {exc}", file=sys.stderr)
        return ExitCode.FAILED


MLPROJECT_COMMANDS = ("repro", "study", "retrain")


def cmd_mlproject(args: argparse.Namespace) -> int:
    """Run a gapline command as an MLflow project entry point (MLproject calls this).

    ``mlflow run`` opens a run in the experiment it was given and passes it down as
    ``$MLFLOW_RUN_ID``; gapline's stages adopt that run, so they are told to log into that
    experiment (``tracking.experiment=<its name>``), whatever the config says. ``retrain``'s
    exit 3 (challenger kept out) becomes 0 here: to MLflow any non-zero exit is a failed run.
    """

    words = list(args.args)
    if words[:1] == ["--"]:
        words = words[1:]
    extra: list[str] = []
    experiment = tracking.project_run_experiment()
    if experiment is not None:
        if re.fullmatch(r"[A-Za-z0-9_./:@-]+", experiment):
            extra = [f"tracking.experiment={experiment}"]
        else:
            warn(
                f"MLflow experiment {experiment!r} cannot be passed as a Hydra override; gapline logs to "
                "its own run in tracking.experiment instead of the project run"
            )
            os.environ.pop("MLFLOW_RUN_ID", None)
    rc = main([args.entry, *extra, *words])
    if args.entry == "retrain" and rc == ExitCode.KEPT:
        # `mlflow run` knows only success and failure: a kept-out challenger is a successful
        # run whose decision is in its `retrain.decision` tag and in the report.
        print(f"mlproject: challenger kept out (exit {ExitCode.KEPT}), reported to MLflow as a successful run")
        return ExitCode.OK
    return rc


RETRAIN_REPORT_HELP = """
The decision, both scores and the reason are written to retrain.report (default
reports/retrain.json) and to an MLflow run named "retrain". See docs/retraining.md.
"""


def _exit_codes_epilog(
    p: argparse.ArgumentParser, codes: Iterable[ExitCode], more: str = "", meanings: Mapping[str, str] | None = None
) -> None:
    """List ``codes`` under the command's help, read from the one table (:class:`ExitCode`).
    The epilog keeps its layout, so a one-line description is wrapped here instead."""

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    if p.description and "\n" not in p.description:
        p.description = textwrap.fill(p.description, 94)
    p.epilog = exit_codes_help(codes, meanings) + more


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gapline",
        description="Reproducible, regularized Keras training that makes the generalization gap visible.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str, params: bool = True):
        p = sub.add_parser(name, help=help_, description=help_)
        if params:
            p.add_argument("--params", default=PARAMS_FILE, help="composed config (default: %(default)s)")
        p.set_defaults(func=fn)
        return p

    p = add("params", cmd_params, "compose conf/ (+ Hydra overrides) into params.yaml", params=False)
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. regularization=dropout train.epochs=20")
    p = add("repro", cmd_repro, "compose params.yaml from conf/ + overrides, then run `dvc repro`", params=False)
    p.add_argument("overrides", nargs="*", help="Hydra overrides; none keeps params.yaml as it is")
    p.add_argument("--dvc-args", nargs=argparse.REMAINDER, default=[], help="passed on to dvc repro")
    p = add("check", cmd_check, "validate params.yaml and check it still matches conf/")
    p.add_argument("--marker", help="file to write when the check passes (the DVC stage's output)")
    add("prepare", cmd_prepare, "DVC stage: load, validate, split and fingerprint the data")
    add("augment", cmd_augment, "DVC stage: seeded offline augmentation of the training split")
    p = add(
        "train",
        cmd_train,
        "DVC stage: train on params.yaml; with Hydra overrides (and -m), train from conf/ "
        "in memory, e.g. `gapline train -m regularization=none,l2 train.seed=0,1`",
    )
    p.add_argument("-m", "--multirun", action="store_true", help="Hydra multirun: sweep every combination")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress while training (train.verbose=quiet)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides (sweeps with -m: a=1,2)")
    add("evaluate", cmd_evaluate, "DVC stage: metrics, gaps, plots and diagnosis")
    p = add("study", cmd_study, "the regularization study: every technique on the same split and seeds", params=False)
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=study or study.seeds=5")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = add(
        "tune", cmd_tune,
        "search the regularization toolkit and training keys on validation (Optuna); write the "
        "winner as conf/experiment/tuned_<name>.yaml", params=False,
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides: your data and model, tune.trials=, tune.minutes=, tune.name=")
    p = add("learning-curve", cmd_learning_curve, "train at several data.train_fraction values (more training data)", params=False)
    p.add_argument("overrides", nargs="*", help="Hydra overrides applied to conf/ for every point")
    p.add_argument("--fractions", nargs="+", type=float, default=[0.1, 0.2, 0.4, 0.7, 1.0])
    p.add_argument("--out", default="reports/learning_curve", help="output folder (default: %(default)s)")
    p = add(
        "retrain",
        cmd_retrain,
        "retrain when data, config or code changed since the champion; promote the challenger "
        "to alias `champion` only if it beats it (locked; safe to schedule)",
    )
    p.description = (
        "Retrain when data, config or code changed since the champion (or with --force): run the\n"
        "DVC pipeline, score challenger and champion on the same current test split, and promote\n"
        "the challenger to alias `champion` only if it wins by retrain.margin on retrain.metric,\n"
        "reaches retrain.min_score and keeps its gap within retrain.max_gap. Locked: safe to schedule."
    )
    _exit_codes_epilog(p, ExitCode, RETRAIN_REPORT_HELP)
    p.add_argument("overrides", nargs="*", help="Hydra overrides: recompose params.yaml first (none: keep it)")
    p.add_argument(
        "--force", nargs="?", const="true", default=None, metavar="BOOL",
        help="retrain even if nothing changed (`--force`, or `--force true|false`)",
    )
    p = add(
        "promote",
        cmd_promote,
        "point alias `champion` at a model version (the old one becomes `previous-champion`); "
        "`--rollback` restores `previous-champion`",
    )
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--version", help="registered model version to make the champion")
    group.add_argument("--rollback", action="store_true", help="make `previous-champion` the champion again")
    p.add_argument("--reason", default="", help="why (recorded in MLflow)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides (e.g. tracking.registered_model=...); none: params.yaml")
    promote_codes = (code for code in ExitCode if code is not ExitCode.KEPT)  # promote never keeps out
    _exit_codes_epilog(p, promote_codes, meanings=PROMOTE_MEANINGS)
    p = add(
        "mlproject",
        cmd_mlproject,
        "run a command as an MLflow project entry point, logging into the `mlflow run` run (used by MLproject)",
        params=False,
    )
    p.add_argument("entry", choices=MLPROJECT_COMMANDS, help="the gapline command to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return parser


def skip_exit_collection() -> None:
    """At exit, after the other exit handlers, freeze the objects the garbage collector tracks.

    Registered when a command starts, before TensorFlow and MLflow are imported, so it runs
    after their exit handlers. Tearing down an interpreter that imported TensorFlow, Keras
    and MLflow took 1.4-2.7 s here, nearly all of it the final collections walking every
    module's objects for reference cycles; frozen objects are not walked (the operating
    system frees the memory). Every other exit step still runs: ``atexit`` handlers,
    ``weakref.finalize`` callbacks, objects freed by reference counting, the flushing of
    stdout and stderr. Nothing of gapline's relies on a cycle being collected at exit: its
    files are written and closed, and its MLflow run ended, before a command returns
    (BENCHMARKS.md, section 11).
    """
    if not _EXIT_FREEZE:
        _EXIT_FREEZE.append(atexit.register(gc.freeze))


_EXIT_FREEZE: list = []  # registered once per process, however often main() runs in it


def main(argv: Sequence[str] | None = None) -> int:
    skip_exit_collection()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GaplineError as exc:
        refused = _refused(exc)
        if refused is not None:
            return refused
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:
        refused = _refused(exc)
        if refused is not None:
            return refused
        raise


def _refused(exc: BaseException) -> int | None:
    """A tracking server that refused this caller, behind ``exc``: one line, exit 77."""
    denied = tracking.denial(exc, tracking.server_uri())
    if denied is None:
        return None
    print(f"error: {denied}", file=sys.stderr)
    return ExitCode.DENIED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
