"""The DVC pipeline as a subprocess of retrain: this interpreter's ``dvc repro`` in its own
process group (stopped with retrain), and the challenger version its train stage registered."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from gapline import tracking
from gapline.config import provenance
from gapline.config.schema import Config
from gapline.core.dvc_command import dvc_executable, tools_env
from gapline.models.saving import MODEL_FILE
from gapline.retrain.outcome import RetrainFailed


def pipeline_env() -> dict[str, str]:
    """This interpreter's tools first; never the MLflow-project run id: the pipeline's train
    stage must open its own run, not resume the one retrain holds."""
    env = tools_env()
    env.pop("MLFLOW_RUN_ID", None)
    return env


def stop_group(proc: subprocess.Popen, grace: float = 60.0) -> None:
    """SIGTERM the pipeline's process group, SIGKILL it if it has not exited after ``grace``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)


def run_pipeline(root: Path, force: bool) -> None:
    """``dvc repro`` (``--force`` reruns every stage); its output goes straight to ours."""
    cmd = [dvc_executable(), "repro", *(["--force"] if force else [])]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        # Its own process group: if retrain is interrupted or terminated, the whole pipeline
        # (dvc and the stage it runs) gets SIGTERM, so the stage closes its MLflow run KILLED.
        proc = subprocess.Popen(cmd, cwd=root, env=pipeline_env(), start_new_session=True)
    except OSError as exc:
        raise RetrainFailed(f"cannot run `{' '.join(cmd)}`: {exc}") from None
    try:
        rc = proc.wait()
    except BaseException:
        stop_group(proc)
        raise
    if rc != 0:
        raise RetrainFailed(f"the pipeline failed: `dvc repro{' --force' if force else ''}` exited {rc} (see its output above)")


def challenger_version(cfg: Config, root: Path) -> str:
    """The version the pipeline's train stage registered (``reports/mlflow_run.json``; where
    that is absent, as in a clone that pulled the model from a DVC remote, the version of the
    store's run that trained this model file)."""

    if not (root / tracking.RUN_FILE).is_file():
        found = tracking.find_record(cfg, provenance.file_md5(root / MODEL_FILE))
        if found is None or not found.model_version:
            raise RetrainFailed(
                f"{tracking.RUN_FILE} does not exist and no run in the store registered {MODEL_FILE} as it is: "
                "the pipeline did not train here (DVC restored the model from its cache or a remote): "
                "rerun with --force to train and register it"
            )
        return str(found.model_version)
    try:
        record = tracking.RunRecord.read(root / tracking.RUN_FILE)
    except Exception as exc:  # noqa: BLE001
        raise RetrainFailed(f"cannot read {tracking.RUN_FILE}: {exc}") from None
    current = tracking.canonical_uri(tracking.resolve_uri(cfg.tracking), root)
    recorded = record.tracking_uri
    version = record.model_version
    if not version or record.registered_model != cfg.tracking.registered_model:
        raise RetrainFailed(
            f"{tracking.RUN_FILE} names no version of {cfg.tracking.registered_model!r}: expected the train "
            "stage to register one (rerun with --force)"
        )
    if recorded and tracking.canonical_uri(str(recorded), root) != current:
        raise RetrainFailed(
            f"{tracking.RUN_FILE} names v{version} in {recorded}, not in {current} (DVC restored a model "
            "trained against another store): rerun with --force to train into this one"
        )
    if record.model_md5 and record.model_md5 != provenance.file_md5(root / MODEL_FILE):
        raise RetrainFailed(
            f"{tracking.RUN_FILE} names v{version}, which is not {MODEL_FILE} (DVC restored that model "
            "from its cache): rerun with --force to train and register it"
        )
    return str(version)
