"""Where a result came from: the git commit, dvc.lock's stage entries, digests of files,
folders and config groups.

Plain facts about the work tree, read without MLflow: training records them as run tags,
retraining as the commit it judged, and either works with tracking off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from gapline.config.schema import OUTPUT_ONLY

CHUNK = 1 << 20


IMAGE_COMMIT = "GAPLINE_GIT_COMMIT"  # set by the Dockerfile from its GIT_COMMIT build argument


def git_state(root: Path) -> dict[str, str]:
    """The commit and whether the work tree differs from it (empty outside git).

    The Docker image's baked-in project is a git work tree without commits (the build context
    has no ``.git``); the commit it was built from comes in ``GAPLINE_GIT_COMMIT``, so that a
    champion trained in a container still names the commit to check out before ``dvc pull``.
    A project mounted over it has commits of its own, and they win.
    """
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
        image = os.environ.get(IMAGE_COMMIT, "").strip()
        return {"git.commit": image, "git.dirty": "false"} if image and _work_tree_without_commits(root) else {}
    return {"git.commit": commit, "git.dirty": str(bool(dirty)).lower()}


def _work_tree_without_commits(root: Path) -> bool:
    """A ``git init`` with nothing committed: the image's project, not a project mounted over it."""
    try:
        subprocess.run(["git", "rev-parse", "--git-dir"], cwd=root, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


def file_md5(path: Path) -> str | None:
    """The md5 DVC would record for a file (read in chunks), or None when there is no file."""
    if not path.is_file():
        return None
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_files(folder: Path, suffixes: tuple[str, ...] | None = None) -> list[tuple[str, Path]]:
    """``(relative POSIX path, path)`` of every file under ``folder`` (with one of
    ``suffixes``, when given), sorted by path; ``__pycache__`` folders do not count."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and (suffixes is None or path.suffix in suffixes):
            found.append((path.relative_to(folder).as_posix(), path))
    return sorted(found)


def folder_digest(folder: Path, suffixes: tuple[str, ...] | None = None) -> str:
    """Digest of a source folder's files with ``suffixes`` (relative path and bytes, line
    endings normalized): whether conf/ or the code changed, whatever the checkout's OS."""
    h = hashlib.sha256()
    for rel, path in folder_files(folder, suffixes):
        h.update(rel.encode())
        h.update(b"\0")
        h.update(path.read_bytes().replace(b"\r\n", b"\n"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def json_digest(value: Any, length: int = 16) -> str:
    """A short, stable digest of a JSON-able value (keys sorted; other values as ``str``)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def config_groups(cfg: Any, names: Iterable[str]) -> dict[str, Any]:
    """The named groups of a config as plain dicts: what a digest of "the config" covers."""
    return without_output_only({name: dataclasses.asdict(getattr(cfg, name)) for name in names})


def without_output_only(groups: dict[str, Any]) -> dict[str, Any]:
    """``groups`` (a config as plain dicts, or some of its groups) less the keys that only
    change what is printed or how fast (:data:`gapline.config.schema.OUTPUT_ONLY`): a digest of
    the config stays the same when they change."""

    out = dict(groups)
    for group, keys in OUTPUT_ONLY.items():
        if isinstance(out.get(group), dict):
            out[group] = {k: v for k, v in out[group].items() if k not in keys}
    return out


def dvc_stage_digests(lock: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """``dvc.stage.<name>``: a short digest of each stage's entry in dvc.lock (its deps,
    params and outs as DVC recorded them), i.e. the version of every stage that ran."""
    if not lock.is_file():
        return {}
    try:
        stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    except yaml.YAMLError:
        return {}
    return {
        f"dvc.stage.{name}": hashlib.md5(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:12]
        for name, entry in sorted(stages.items())
        if name not in skip
    }
