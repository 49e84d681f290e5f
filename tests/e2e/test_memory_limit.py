"""The memory promise under a real limit: train and evaluate 96x96 images inside a cgroup
smaller than one 1,024-row activation tensor of the model, and see the same stage killed
when the budget is set above the limit (so the limit is real, not a formality)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from helpers.processes import run

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
LIMIT = 1 << 30  # 1 GiB
FILTERS = 64  # 96 x 96 x 64 float32 = 2.25 MiB a row: 1,024 rows of the first conv are 2.25 GiB

pytestmark = pytest.mark.slow


@pytest.fixture
def cgroup():
    """A cgroup v1 memory group with LIMIT (swap included), removed afterwards."""
    if not (CGROUP_ROOT / "cgroup.procs").is_file() or os.geteuid() != 0:
        pytest.skip("needs root and the cgroup v1 memory controller at /sys/fs/cgroup/memory")
    group = CGROUP_ROOT / f"gapline-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a memory cgroup here: {exc}")
    (group / "memory.limit_in_bytes").write_text(str(LIMIT))
    swap = group / "memory.memsw.limit_in_bytes"
    if swap.exists():
        swap.write_text(str(LIMIT))
    yield group
    group.rmdir()


def _oom_kills(group: Path) -> int:
    for line in (group / "memory.oom_control").read_text().splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return 0


def _limited(group: Path, project: Path, *args: str):
    """``gapline <args>`` as a process inside ``group``."""
    script = f'echo $$ > {group / "cgroup.procs"} && exec gapline "$@"'
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return run(["sh", "-c", script, "gapline", *args], project, env, check=False)


def test_96px_images_train_and_evaluate_under_a_limit_below_one_1024_row_activation(cgroup: Path, conf_project: Path) -> None:
    rng = np.random.default_rng(0)
    n = 800
    y = np.arange(n) % 2
    x = rng.integers(0, 100, size=(n, 96, 96, 1), dtype=np.uint8)
    x[y == 1, :48] += 120
    np.savez(conf_project / "images.npz", x=x, y=y)
    run(
        ["gapline", "params", "data=npz", f"data.path={conf_project / 'images.npz'}", "augment=none", "model=cnn",
         f"model.conv_filters=[{FILTERS}]", "train.epochs=1", "train.batch_size=16", "train.resume=false",
         "regularization.early_stopping.enabled=false"],
        conf_project,
    )
    run(["gapline", "prepare"], conf_project)
    run(["gapline", "augment"], conf_project)
    train_rows = int(np.load(conf_project / "data/prepared/train/y.npy").shape[0])
    assert train_rows * 96 * 96 * FILTERS * 4 > LIMIT  # the old 1,024-row call would not fit

    trained = _limited(cgroup, conf_project, "train")
    assert trained.returncode == 0, trained.stderr[-3000:]
    evaluated = _limited(cgroup, conf_project, "evaluate")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert _oom_kills(cgroup) == 0
    assert (conf_project / "reports/metrics.json").is_file()

    # The same stage with a budget above the limit: the kernel kills it at the epoch's end.
    run(["gapline", "params", "data=npz", f"data.path={conf_project / 'images.npz'}", "augment=none", "model=cnn",
         f"model.conv_filters=[{FILTERS}]", "train.epochs=1", "train.batch_size=16", "train.resume=false",
         "regularization.early_stopping.enabled=false", "train.inference_memory=8GiB", "tracking=off"],
        conf_project)
    killed = _limited(cgroup, conf_project, "train")
    assert killed.returncode != 0 and _oom_kills(cgroup) >= 1, killed.stderr[-3000:]
