"""A split on disk: ``x.npy`` and ``y.npy`` in one folder, written in chunks and read
memory-mapped, so no stage ever holds a whole split.

Why plain ``.npy``: any process maps it with numpy alone (TensorFlow, JAX and a user's
script read the same bytes), a batch of rows is one fancy index, DVC caches it as an
ordinary file, and a folder of them can sit on shared storage for many machines. ``y`` is
small (one label or target per row) and is read whole; ``x`` is mapped.

Reading a mapped file makes its pages part of this process's resident memory until the kernel
needs them back. :class:`Resident` drops them after every ``budget`` bytes read, so the peak
RSS of a stage streaming a split stays near the budget, not the split's size.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gapline.errors import DataError, flat_message

__all__ = [
    "CHUNK_BYTES",
    "Resident",
    "Split",
    "X_FILE",
    "Y_FILE",
    "open_split",
    "release",
    "row_chunks",
    "write_split",
]

X_FILE = "x.npy"
Y_FILE = "y.npy"
#: Bytes of x a chunked reader or writer handles at once, and the residency budget of a
#: mapped split: the buffer a stage adds to its memory, whatever the dataset's size.
CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Split:
    """One split as stages read it: ``x`` memory-mapped (read-only), ``y`` in memory."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x, self.y


def row_chunks(n: int, row_bytes: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges of about ``chunk_bytes`` each (at least one row)."""
    step = max(1, chunk_bytes // max(1, row_bytes))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def row_bytes(a: np.ndarray) -> int:
    return int(np.prod(a.shape[1:], dtype=np.int64)) * a.dtype.itemsize


def _mapping(a: Any) -> mmap.mmap | None:
    """The mmap behind a (possibly sliced) memory-mapped array, if any."""
    while a is not None:
        if isinstance(a, mmap.mmap):
            return a
        if isinstance(a, np.memmap) and isinstance(getattr(a, "_mmap", None), mmap.mmap):
            return a._mmap
        a = getattr(a, "base", None)
    return None


def release(a: Any) -> None:
    """Drop the pages of ``a``'s file mapping from this process (they stay in the page cache,
    so reading them again costs no disk access); nothing for an in-memory array."""
    mapped = _mapping(a)
    if mapped is not None and not mapped.closed:
        mapped.madvise(mmap.MADV_DONTNEED)


class Resident:
    """Reads rows of ``a`` and releases its mapping after every ``budget`` bytes read: the
    one way stages read a mapped split, so their resident memory stays bounded."""

    def __init__(self, a: np.ndarray, budget: int = CHUNK_BYTES) -> None:
        self.a = a
        self.budget = budget
        self.mapped = _mapping(a) is not None
        self._read = 0

    def _count(self, out: np.ndarray) -> np.ndarray:
        if self.mapped:
            self._read += out.nbytes
            if self._read >= self.budget:
                release(self.a)
                self._read = 0
        return out

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` in that order, as an in-memory array."""
        return self._count(np.asarray(self.a[idx]))

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``: a copy in memory from a mapped array, else a view."""
        if not self.mapped:
            return self.a[start:stop]
        return self._count(np.array(self.a[start:stop]))


def write_split(
    folder: Path,
    x: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Split:
    """Write ``x[rows]`` and ``y[rows]`` (all rows when None) into ``folder`` chunk by chunk
    and return the written split, mapped. ``x`` may itself be mapped: it is read in chunks of
    sorted rows through :class:`Resident`, so neither side is ever whole in memory."""
    folder.mkdir(parents=True, exist_ok=True)
    idx = np.arange(len(y)) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.lib.format.open_memmap(folder / X_FILE, mode="w+", dtype=x.dtype, shape=(len(idx), *x.shape[1:]))
    source = Resident(x, chunk_bytes)
    try:
        for start, stop in row_chunks(len(idx), row_bytes(x), chunk_bytes):
            out[start:stop] = source.take(idx[start:stop])
            out.flush()
            release(out)
    finally:
        out.flush()
        del out
    np.save(folder / Y_FILE, np.ascontiguousarray(np.asarray(y)[idx]), allow_pickle=False)
    return open_split(folder)


def open_split(folder: Path) -> Split:
    """The split in ``folder``: x mapped read-only, y read whole. A missing or unreadable
    file is one line saying which stage writes it."""
    arrays = []
    for name, mode in ((X_FILE, "r"), (Y_FILE, None)):
        path = folder / name
        if not path.is_file():
            raise DataError(
                f"split file {str(path)!r} does not exist: expected a split written by an earlier "
                "stage (run the stages in order, e.g. `dvc repro`)"
            )
        try:
            arrays.append(np.load(path, mmap_mode=mode, allow_pickle=False))
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(
                f"split file {str(path)!r} cannot be read ({flat_message(exc)}): expected a .npy "
                "array written by gapline"
            ) from exc
    x, y = arrays
    if len(x) != len(y):
        raise DataError(
            f"split {str(folder)!r} has {len(x)} rows in {X_FILE} but {len(y)} in {Y_FILE}: "
            "expected one label per row (rerun the stage that wrote it)"
        )
    return Split(x=x, y=y)
