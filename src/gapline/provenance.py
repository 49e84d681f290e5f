"""Where a result came from: the git commit, dvc.lock's stage entries, file digests.

Plain facts about the work tree, read without MLflow: training records them as run tags,
retraining as the commit it judged, and either works with tracking off.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Optional


def git_state(root: Path) -> dict[str, str]:
    """The commit and whether the work tree differs from it (empty outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"git.commit": commit, "git.dirty": str(bool(dirty)).lower()}


def file_md5(path: Path) -> Optional[str]:
    return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else None


def dvc_stage_digests(lock: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """``dvc.stage.<name>``: a short digest of each stage's entry in dvc.lock (its deps,
    params and outs as DVC recorded them), i.e. the version of every stage that ran."""
    if not lock.is_file():
        return {}
    import yaml

    try:
        stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    except yaml.YAMLError:
        return {}
    return {
        f"dvc.stage.{name}": hashlib.md5(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:12]
        for name, entry in sorted(stages.items())
        if name not in skip
    }
