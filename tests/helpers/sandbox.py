"""A throwaway copy of the repo under git, as a fresh clone has it: every test that runs the
real pipeline works in one of these, never in the repo itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from helpers.processes import run

REPO = Path(__file__).resolve().parents[2]


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if line]


# The committed outputs of the default pipeline (a fresh clone has them)...
PIPELINE_OUTPUTS = ("dvc.lock", "reports", "dvclive")
# ...and local state no clone has.
LOCAL_STATE = ("mlflow.db", "mlruns", "multirun", "outputs", ".gapline", ".dvc/tmp", ".dvc/cache")


def copy_project(root: Path, drop: tuple[str, ...] = (), keep_outputs: bool = False) -> Path:
    """A fresh copy of the repo under git: its sources as they are in the working tree, no
    stores, no DVC cache, and no pipeline outputs unless ``keep_outputs`` (then it is what
    ``git clone`` gives), minus whatever ``drop`` names. Every test that runs the real
    pipeline works in one of these, never in the repo itself."""
    for rel in tracked_files():
        src = REPO / rel
        if src.is_file():
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    for rel in (*LOCAL_STATE, *(() if keep_outputs else PIPELINE_OUTPUTS), *drop):
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
