"""The Docker image, built and run: deploy/docker-check.sh builds it from this checkout and runs
`--help`, the passwd lookups of uids the image does not know, `gapline repro` in a mounted
fresh clone as the host user, `gapline retrain` against an `mlflow server` on this host, and
a retrain from nothing against the team's stack (PostgreSQL, accounts, a WebDAV remote).
Skips with one line where no Docker engine is reachable (CI has none, and skips in
a second), or where no base image is here or can be pulled (trying a pull can take minutes).
BASE_IMAGE, GAPLINE_IMAGE and GAPLINE_BUILD=0 pass through to the script (see its header)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "deploy" / "docker-check.sh"


def _engine() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


DEFAULT_BASE = "python:3.11-slim-bookworm"  # the Dockerfile's BASE_IMAGE
LOCAL_BASE = "gapline-base:bookworm-py311"  # what ../shared/tools/docker-base.sh builds


def _base_image() -> str | None:
    """BASE_IMAGE if set; else the Dockerfile's default when it is here or can be pulled; else
    a locally built Debian base; None when there is no base to build on."""
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]

    def present(image: str) -> bool:
        return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0

    if present(DEFAULT_BASE):
        return DEFAULT_BASE
    try:
        pulled = subprocess.run(["docker", "pull", DEFAULT_BASE], capture_output=True, timeout=300).returncode == 0
    except subprocess.TimeoutExpired:
        pulled = False
    if pulled:
        return DEFAULT_BASE
    return LOCAL_BASE if present(LOCAL_BASE) else None


@pytest.mark.slow
def test_docker_image_builds_and_runs_the_pipeline_and_retrain() -> None:
    if not _engine():
        pytest.skip("no Docker engine is reachable")
    base = _base_image()
    if base is None:
        pytest.skip(f"no base image: {DEFAULT_BASE} cannot be pulled and {LOCAL_BASE} is not built (set BASE_IMAGE)")
    env = {**os.environ, "BASE_IMAGE": base}
    env.setdefault("MLFLOW", str(Path(sys.executable).parent / "mlflow"))
    env.setdefault("PYTHON", sys.executable)  # step 6 starts the team's stack with the test helpers
    env.pop("MLFLOW_TRACKING_URI", None)  # the script sets it for each container
    proc = subprocess.run(["bash", str(CHECK)], env=env, capture_output=True, text=True, timeout=3600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "ALL PASSED" in proc.stdout, out[-6000:]
