"""Fingerprints: stable across processes, sensitive to any change."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gapline.core.errors import DataError
from gapline.data.fingerprint import file_digest, fingerprint, tree_digest


def _arrays() -> dict[str, np.ndarray]:
    return {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "y": np.array([0, 1, 2], dtype=np.int64)}


def test_fingerprint_format_and_order_independent() -> None:
    a = _arrays()
    fp = fingerprint(a)
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 64
    assert fingerprint(dict(reversed(list(a.items())))) == fp
    # Non-contiguous views hash like their contiguous copies.
    assert fingerprint({"x": np.asfortranarray(a["x"]), "y": a["y"]}) == fp


def test_fingerprint_stable_across_processes() -> None:
    code = (
        "import numpy as np; from gapline.data.fingerprint import fingerprint;"
        "print(fingerprint({'x': np.arange(12, dtype=np.float32).reshape(3, 4),"
        " 'y': np.array([0, 1, 2], dtype=np.int64)}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == fingerprint(_arrays())


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a.update(x=a["x"] + np.float32(1e-6) * (np.arange(12).reshape(3, 4) == 5)),
        lambda a: a.update(x=a["x"].astype(np.float64)),
        lambda a: a.update(x=a["x"].reshape(4, 3)),
        lambda a: a.update(z=a.pop("y")),
        lambda a: a.update(extra=np.zeros(0)),
        lambda a: a.update(y=a["y"].astype(">i8")),
    ],
)
def test_fingerprint_sensitive(change) -> None:
    a = _arrays()
    before = fingerprint(a)
    change(a)
    assert fingerprint(a) != before


def test_fingerprint_name_boundary_not_ambiguous() -> None:
    assert fingerprint({"ab": np.zeros(1), "c": np.zeros(1)}) != fingerprint({"a": np.zeros(1), "bc": np.zeros(1)})


def test_file_digest(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"hello")
    assert file_digest(p) == "md5:" + hashlib.md5(b"hello").hexdigest()
    with pytest.raises(DataError, match="does not exist"):
        file_digest(tmp_path / "missing")


def test_tree_digest(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / "b").mkdir(parents=True)
    (root / "a.txt").write_text("1")
    (root / "b" / "c.txt").write_text("2")
    d1 = tree_digest(root)
    assert d1.startswith("md5:") and tree_digest(root) == d1
    (root / "empty").mkdir()
    assert tree_digest(root) == d1  # empty dirs do not count
    (root / "b" / "c.txt").write_text("3")
    d2 = tree_digest(root)
    assert d2 != d1
    (root / "b" / "c.txt").rename(root / "b" / "d.txt")
    assert tree_digest(root) != d2
    with pytest.raises(DataError, match="is not a directory"):
        tree_digest(root / "a.txt")
