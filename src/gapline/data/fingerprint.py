"""Content fingerprints for data lineage.

A fingerprint identifies exactly which arrays a model was trained on, independent of file
names, timestamps, compression or pickling details, so two runs can be compared honestly.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gapline.config.provenance import file_md5, folder_files
from gapline.core.errors import DataError
from gapline.data.store import RowReader, row_bytes, row_chunks

__all__ = ["file_digest", "fingerprint", "tree_digest"]

def _frame(h: hashlib._Hash, data: bytes) -> None:
    """Length-prefix each field so that no two different inputs hash the same byte stream."""
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def fingerprint(arrays: Mapping[str, np.ndarray]) -> str:
    """``"sha256:<hex>"`` over each array's name, dtype, shape and C-contiguous bytes.

    Names are visited in sorted order, so dict order does not matter. The dtype string
    includes byte order (``<f4``), so the result is stable across runs, processes and
    machines and changes if any value, dtype, shape or name changes. Object arrays are
    refused because their bytes are memory addresses, not content.

    A memory-mapped array is hashed a chunk of rows at a time (:class:`RowReader`), so a split
    larger than memory fingerprints in bounded memory, to the same digest as in memory.
    """
    h = hashlib.sha256()
    h.update(b"gapline-fingerprint-v1")
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} has object dtype: cannot fingerprint its content")
        _frame(h, str(name).encode("utf-8"))
        _frame(h, a.dtype.str.encode("ascii"))
        _frame(h, repr(tuple(int(d) for d in a.shape)).encode("ascii"))
        h.update(int(a.nbytes).to_bytes(8, "little"))  # _frame's length prefix, then the bytes in chunks
        if a.ndim == 0:
            h.update(np.ascontiguousarray(a).view(np.uint8).data)
            continue
        reader = RowReader(a)
        for start, stop in row_chunks(len(a), row_bytes(a)):
            h.update(np.ascontiguousarray(reader.rows(start, stop)).reshape(-1).view(np.uint8).data)
    return "sha256:" + h.hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """``"md5:<hex>"`` of a file's bytes (md5 to match what DVC records for raw files)."""
    p = Path(path)
    if not p.is_file():
        what = "is not a file" if p.exists() else "does not exist"
        raise DataError(f"data.path={str(p)!r} {what}: expected an existing file to fingerprint")
    return f"md5:{file_md5(p)}"


def tree_digest(path: str | os.PathLike[str]) -> str:
    """``"md5:<hex>"`` over a directory: sorted relative POSIX paths plus each file's md5.

    Depends only on file names and contents (not timestamps, permissions or traversal
    order); empty directories do not count. Not the same value as DVC's ``.dir`` hash.
    """
    root = Path(path)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DataError(f"data.path={str(root)!r} {what}: expected an existing folder to fingerprint")
    h = hashlib.md5(usedforsecurity=False)
    for rel, full in folder_files(root):
        _frame(h, rel.encode("utf-8"))
        _frame(h, str(file_md5(full)).encode("ascii"))
    return "md5:" + h.hexdigest()
