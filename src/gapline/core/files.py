"""Atomic file outputs shared by all pipeline stages.

Every stage output goes through :func:`atomic_path`, so a crash or Ctrl-C mid-write never
leaves a truncated file that looks valid to DVC or to the next stage: the target either
holds the old content, the complete new content, or does not exist.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gapline.core.errors import DataError, flat_message

__all__ = [
    "atomic_dir",
    "atomic_path",
    "load_arrays",
    "read_json",
    "save_arrays",
    "write_json",
    "write_text",
]


def _split_name(name: str) -> tuple[str, str]:
    """Split ``model.weights.h5`` into ``("model", ".weights.h5")``.

    All suffixes are kept (not just the last) because some writers check the full ending,
    e.g. Keras insists on ``.weights.h5``. A leading dot (hidden file) is part of the stem.
    """
    lead = len(name) - len(name.lstrip("."))
    dot = name.find(".", lead)
    if dot <= lead:  # no suffix, or a name like ".." / "."
        return name, ""
    return name[:dot], name[dot:]


def _remove(path: Path) -> None:
    """Delete a file or directory if it exists; never raise (used during cleanup)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _fsync_file(path: Path) -> None:
    """Flush a written file to disk so the rename cannot expose unwritten data after a crash."""
    if not path.is_file():
        return
    try:
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    except OSError:
        pass


def _fsync_dir(path: Path) -> None:
    """Persist the directory entry of a rename (best effort; not supported everywhere)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto ``path``.

    The temporary name is ``.<stem>.tmp-<random><suffixes>`` in the same directory (same
    filesystem, so ``os.replace`` is atomic) and keeps the suffix at the end so writers that
    check extensions (numpy, Keras) accept it. Parent directories are created. If the body
    raises (including KeyboardInterrupt) the temporary is deleted, the target is left
    untouched, and the exception propagates.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    stem, suffix = _split_name(target.name)
    if not stem.startswith("."):
        stem = "." + stem
    while True:
        tmp = target.with_name(f"{stem}.tmp-{secrets.token_hex(4)}{suffix}")
        if not tmp.exists():
            break
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` as a whole.

    A stage whose output is a folder (DVC tracks it as one) never leaves a mix of old and new
    files: the old folder is moved aside, the new one renamed in, the old one deleted.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        yield tmp
        old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        _remove(old)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(target.parent)


def save_arrays(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """Write arrays to an uncompressed ``.npz`` atomically (uncompressed: fast, mmap-friendly).

    Written through an open file handle so numpy never appends a second ``.npz`` suffix.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        named: dict[str, Any] = {name: np.asarray(value) for name, value in arrays.items()}  # Any: numpy's stub reads **kwds as its options
        np.savez(fh, **named)


def load_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` into memory (the file is closed before returning).

    Pickled object arrays are refused: stage outputs never contain them, and unpickling
    is unsafe for files from elsewhere.
    """
    p = Path(path)
    if not p.is_file():
        what = "is not a file" if p.exists() else "does not exist"
        raise DataError(
            f"arrays file {str(p)!r} {what}: expected an .npz file written by an earlier "
            "stage (run the stages in order, e.g. `dvc repro`)"
        )
    if not zipfile.is_zipfile(p):
        raise DataError(
            f"arrays file {str(p)!r} is not an .npz archive (not a zip file): expected an .npz "
            "file written by save_arrays"
        )
    try:
        with np.load(p, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(
            f"arrays file {str(p)!r} cannot be read ({flat_message(exc)}): expected an .npz "
            "file of numeric or string arrays"
        ) from exc


def _json_default(obj: Any) -> Any:
    """Serialize the numpy scalars/arrays and paths that metrics and lineage naturally hold."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON with sorted keys, 2-space indent and a trailing newline, atomically.

    Sorted, indented output keeps diffs (``dvc metrics diff``, git) small and stable.
    """
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
    write_text(path, text)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a missing or malformed file is a one-line DataError naming it."""
    p = Path(path)
    if not p.is_file():
        what = "is not a file" if p.exists() else "does not exist"
        raise DataError(f"JSON file {str(p)!r} {what}: expected an existing JSON file")
    try:
        with open(p, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"JSON file {str(p)!r} is not valid JSON ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno}): expected a JSON document"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"JSON file {str(p)!r} cannot be read ({flat_message(exc)}): expected a UTF-8 JSON file"
        ) from exc


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text atomically (newlines written exactly as given)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
