"""Where a result came from: the commit of a work tree, or of the image's baked-in project."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gapline.config import provenance


def _git(args: list[str], cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_a_work_tree_names_its_commit_and_whether_it_is_dirty(tmp_path: Path) -> None:
    _git(["init", "-q", "."], tmp_path)
    (tmp_path / "f.txt").write_text("a")
    _git(["add", "f.txt"], tmp_path)
    _git(["commit", "-q", "-m", "one"], tmp_path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert provenance.git_state(tmp_path) == {"git.commit": head, "git.dirty": "false"}
    (tmp_path / "f.txt").write_text("b")
    assert provenance.git_state(tmp_path) == {"git.commit": head, "git.dirty": "true"}


def test_the_image_commit_names_only_a_work_tree_without_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Dockerfile's GIT_COMMIT reaches the runs of its baked-in project (``git init``, no
    commit), never a project with commits of its own, nor a folder outside git."""
    monkeypatch.setenv(provenance.IMAGE_COMMIT, "0123abcd" * 5)
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert provenance.git_state(outside) == {}
    baked = tmp_path / "baked"
    baked.mkdir()
    _git(["init", "-q", "."], baked)
    assert provenance.git_state(baked) == {"git.commit": "0123abcd" * 5, "git.dirty": "false"}
    monkeypatch.delenv(provenance.IMAGE_COMMIT)
    assert provenance.git_state(baked) == {}
    monkeypatch.setenv(provenance.IMAGE_COMMIT, "0123abcd" * 5)
    (baked / "f.txt").write_text("a")
    _git(["add", "f.txt"], baked)
    _git(["commit", "-q", "-m", "own"], baked)
    assert provenance.git_state(baked)["git.commit"] != "0123abcd" * 5
