"""A split on disk: ``x.npy`` and ``y.npy`` in one folder, written and read a chunk of rows
at a time, so no stage ever holds a whole split.

Why plain ``.npy``: any process opens it with numpy alone (TensorFlow, JAX and a user's script
read the same bytes), ``np.load(mmap_mode="r")`` gives its shape and dtype without reading
it, DVC caches it as an ordinary file, and a folder of them can sit on shared storage for
many machines. ``y`` is small (one label or target per row) and is read whole.

Rows of ``x`` are written with ``pwrite`` (:class:`RowWriter`) and read in ways that keep the
file out of the process's resident memory (:class:`RowReader`): ranges of rows with one
``pread``; scattered rows (a batch) gathered through the map a piece at a time, its pages
dropped after each piece. Reading a mapped file makes its pages part of the process's
resident memory, and with the large page-cache folios of current kernels one 4 KiB row read
maps up to 2 MiB (measured: 100 random rows of a 256 MiB file mapped 125 MiB). The data stays
in the kernel's page cache, which it reclaims under a memory limit.
"""

from __future__ import annotations

import mmap
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gapline.core.errors import DataError, flat_message

__all__ = [
    "CHUNK_BYTES",
    "IndexedRows",
    "MemoryRows",
    "RowReader",
    "RowWriter",
    "Split",
    "X_FILE",
    "Y_FILE",
    "map_npy",
    "new_rows",
    "open_split",
    "row_bytes",
    "row_chunks",
    "write_exactly",
    "write_split",
]

X_FILE = "x.npy"
Y_FILE = "y.npy"
#: Scattered rows gathered through a map between two drops of its pages: one row read maps
#: up to a 2 MiB folio, so at most 32 MiB of the file is resident in the process at once.
PIECE_ROWS = 16
#: Bytes of x a chunked reader or writer handles at once: the buffer a streaming stage adds
#: to its memory, whatever the dataset's size.
CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Split:
    """One split as stages read it: ``x`` a read-only memory map (only its shape and dtype are
    read through it; rows through :class:`RowReader`), ``y`` in memory."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x, self.y


def row_bytes(a: np.ndarray) -> int:
    return int(np.prod(a.shape[1:], dtype=np.int64)) * a.dtype.itemsize


def row_chunks(n: int, size: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges of about ``chunk_bytes`` each (at least one row), for rows
    of ``size`` bytes."""
    step = max(1, chunk_bytes // max(1, size))
    for start in range(0, n, step):
        yield start, min(n, start + step)


@dataclass(frozen=True)
class _FileRows:
    """Where an array's rows lie in its file: row i at ``offset + i * stride``. ``fd``: the
    file the array was mapped from, held open by :func:`map_npy` (-1: open ``path``)."""

    path: str
    offset: int
    stride: int
    size: int
    fd: int = -1


#: The attribute of a :func:`map_npy` array holding its open file.
_FILE_ATTR = "_gapline_file"


def map_npy(path: Path) -> np.ndarray:
    """A read-only memory map of an ``.npy`` file that keeps the file itself open, so rows
    read later (``pread``) come from the very file that was mapped even when the path is
    replaced meanwhile (``dvc repro`` renaming a new ``data/prepared`` into place while a
    sweep still reads the old one): never new rows next to old labels."""
    fh = open(path, "rb")
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        if dtype.hasobject:
            raise ValueError("object arrays cannot be mapped")
        if int(np.prod(shape, dtype=np.int64)) == 0:
            fh.close()
            return np.empty(shape, dtype=dtype)
        x = np.memmap(fh, dtype=dtype, mode="r", offset=fh.tell(), shape=shape, order="F" if fortran else "C")
    except BaseException:
        fh.close()
        raise
    setattr(x, _FILE_ATTR, fh)  # closed with the array
    return x


def _root_mmap(a: np.ndarray) -> mmap.mmap | None:
    """The mmap behind a memory-mapped array or a view of one."""
    node: Any = a
    while node is not None and not isinstance(node, mmap.mmap):
        node = getattr(node, "base", None)
    return node


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides: list[int] = []
    step = itemsize
    for dim in reversed(shape):
        strides.insert(0, step)
        step *= dim
    return tuple(strides)


def _file_rows(a: np.ndarray) -> _FileRows | None:
    """The file layout behind a memory-mapped array or a view of one (a slice, a strided
    share), if its rows are contiguous; None for an array in memory."""
    root: Any = a
    while root is not None and not isinstance(getattr(root, "base", None), mmap.mmap):
        root = getattr(root, "base", None)
    if not isinstance(root, np.memmap) or root.filename is None or a.ndim == 0:
        return None
    size = row_bytes(a)
    if a.strides[1:] != _c_strides(a.shape[1:], a.itemsize):
        return None  # a row is not one run of bytes: let numpy index it
    start = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    held = getattr(root, _FILE_ATTR, None)
    fd = held.fileno() if held is not None and not held.closed else -1
    return _FileRows(str(root.filename), int(root.offset) + start, int(a.strides[0]), size, fd)


class RowReader:
    """Rows of ``a`` as in-memory arrays: read from its file with ``pread`` when ``a`` is
    memory-mapped (nothing is mapped into this process), else indexed in memory.

    A mapped array of at most ``in_memory_below`` bytes (the chunk buffer a stage may hold
    anyway) is read whole once, in one call: a small split (the default digits) is then
    gathered by numpy at full speed, a large one streams."""

    def __init__(self, a: np.ndarray, in_memory_below: int = CHUNK_BYTES) -> None:
        self.a = a
        self.file = _file_rows(a)
        self._fd: int | None = None
        if self.file is not None and a.nbytes <= in_memory_below:
            self.a = self.rows(0, len(a))
            self.close()
            self.file = None

    def _open(self) -> int:
        if self.file is not None and self.file.fd >= 0:
            return self.file.fd  # the mapped file, held open by its array (map_npy)
        if self._fd is None:
            self._fd = os.open(self.file.path, os.O_RDONLY)  # type: ignore[union-attr]
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    def _empty(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty((n, *self.a.shape[1:]), dtype=self.a.dtype)
        return out, out.reshape(n, -1).view(np.uint8) if n else out

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx``, in that order.

        Scattered rows of a mapped array are gathered by numpy through the map, ``PIECE_ROWS``
        at a time, and the map's pages are dropped after each piece (``madvise``): at most a
        piece's folios are resident at once. One ``pread`` per row instead gave up and took
        back the interpreter lock once per row, and cost 27 % of a small MLP's speed
        (BENCHMARKS §10)."""
        if self.file is None:
            return np.asarray(self.a[idx])
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self.a)):
            raise IndexError(f"rows {idx.min()}..{idx.max()} of an array of {len(self.a)} rows")
        mapping = _root_mmap(self.a)
        if mapping is None or mapping.closed:
            out, _ = self._empty(len(idx))
            return _gather_rows(self._open(), idx, self.file.offset, self.file.stride, out)
        out, _ = self._empty(len(idx))
        for start in range(0, len(idx), PIECE_ROWS):
            out[start : start + PIECE_ROWS] = self.a[idx[start : start + PIECE_ROWS]]
            mapping.madvise(mmap.MADV_DONTNEED)
        return out

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``: read in one call when they are adjacent in the file, else a
        view of the array in memory."""
        if self.file is None:
            return self.a[start:stop]
        stop = min(stop, len(self.a))
        if stop <= start:
            return self._empty(0)[0]
        if self.file.stride != self.file.size:
            return self.take(np.arange(start, stop))
        out, _ = self._empty(stop - start)
        _read_exactly(self._open(), out.reshape(-1).view(np.uint8), self.file.offset + start * self.file.stride)
        return out


class IndexedRows:
    """Rows ``index`` of ``a``, read only when asked for: a fixed subset of a mapped split
    (the gap's training rows) stays on disk instead of in memory, where at 224×224 RGB its
    2,048 rows would hold 294 MiB for the whole fit."""

    def __init__(self, a: np.ndarray, index: np.ndarray) -> None:
        self.reader = RowReader(a)
        self.index = np.asarray(index, dtype=np.int64)
        self.shape = (len(self.index), *a.shape[1:])
        self.dtype = a.dtype

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.reader.take(self.index[start:stop])


def _gather_rows(fd: int, idx: np.ndarray, offset: int, stride: int, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` with rows ``idx`` of a file (row i at ``offset + i * stride``), one
    ``pread`` per row; returns ``out``."""
    raw = out.reshape(len(idx), -1).view(np.uint8) if len(idx) else out
    for j, i in enumerate(np.asarray(idx, dtype=np.int64).tolist()):
        _read_exactly(fd, raw[j], offset + i * stride)
    return out


def write_exactly(fd: int, block: np.ndarray, offset: int, path: object) -> None:
    """All of ``block``'s bytes at ``offset`` of the open file ``fd`` (``path`` names it in
    the error), however many ``pwrite`` calls that takes."""
    view = np.ascontiguousarray(block).reshape(-1).view(np.uint8).data if block.size else memoryview(b"")
    done = 0
    while done < len(view):
        wrote = os.pwrite(fd, view[done:], offset + done)
        if wrote <= 0:
            raise OSError(f"could not write {path}: the disk took {wrote} bytes of {len(view) - done}")
        done += wrote


def _read_exactly(fd: int, buffer: np.ndarray, offset: int) -> None:
    view = buffer.data.cast("B")
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise DataError(f"split file ended at byte {offset + done}: expected {len(view) - done} more (rerun the stage that wrote it)")
        done += got


class RowWriter:
    """A new ``.npy`` file of ``shape`` written by rows with ``pwrite`` (the header first):
    rows may come in any order, and nothing is mapped into this process."""

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        header = np.lib.format.open_memmap(self.path, mode="w+", dtype=self.dtype, shape=self.shape)
        self.offset = int(header.offset)
        del header  # only the header and the file's length were written
        self.size = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDWR)

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` as written so far (a compaction reads what it moves)."""
        out = np.empty((len(idx), *self.shape[1:]), dtype=self.dtype)
        return _gather_rows(self._fd, idx, self.offset, self.size, out)

    def write(self, start: int, block: np.ndarray) -> None:
        """Rows ``start : start + len(block)``."""
        data = np.ascontiguousarray(block, dtype=self.dtype)
        if data.shape[1:] != self.shape[1:] or start < 0 or start + len(data) > self.shape[0]:
            raise ValueError(f"rows {start}..{start + len(data)} of shape {data.shape[1:]} do not fit {self.shape}")
        write_exactly(self._fd, data, self.offset + start * self.size, self.path)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None  # type: ignore[assignment]
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mapped(self, rows: int | None = None) -> np.ndarray:
        """The file as a read-only memory map (its first ``rows`` rows), after closing."""
        self.close()
        x = map_npy(self.path)
        return x if rows is None else x[:rows]


class MemoryRows:
    """:class:`RowWriter`'s interface over an array in memory, so one loop fills either."""

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.array = np.empty(shape, dtype=dtype)

    def write(self, start: int, block: np.ndarray) -> None:
        self.array[start : start + len(block)] = block

    def take(self, idx: np.ndarray) -> np.ndarray:
        return self.array[idx]

    def close(self) -> None:
        pass

    def mapped(self, rows: int | None = None) -> np.ndarray:
        return self.array if rows is None else self.array[:rows]


def whole_file(a: np.ndarray) -> Path | None:
    """The ``.npy`` file ``a`` maps as a whole (not a view of part of it), if any."""
    if isinstance(a, np.memmap) and isinstance(a.base, mmap.mmap) and a.filename is not None:
        return Path(a.filename)
    return None


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (no bytes copied), or a copy across devices."""

    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def new_rows(path: Path | None, dtype: np.dtype, shape: tuple[int, ...]) -> RowWriter | MemoryRows:
    """Rows to fill: a new ``.npy`` file at ``path``, or memory when ``path`` is None."""
    return MemoryRows(dtype, shape) if path is None else RowWriter(path, dtype, shape)


def write_split(
    folder: Path,
    x: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Split:
    """Write ``x[rows]`` and ``y[rows]`` (all rows when None) into ``folder`` chunk by chunk
    and return the written split. ``x`` may be memory-mapped: it is read a chunk of rows at a
    time (:class:`RowReader`), so neither side is ever whole in memory."""
    folder.mkdir(parents=True, exist_ok=True)
    idx = np.arange(len(y)) if rows is None else np.asarray(rows, dtype=np.int64)
    source = RowReader(x)
    with RowWriter(folder / X_FILE, x.dtype, (len(idx), *x.shape[1:])) as out:
        for start, stop in row_chunks(len(idx), row_bytes(x), chunk_bytes):
            out.write(start, source.take(idx[start:stop]))
    source.close()
    np.save(folder / Y_FILE, np.ascontiguousarray(np.asarray(y)[idx]), allow_pickle=False)
    return open_split(folder)


def open_split(folder: Path) -> Split:
    """The split in ``folder``: x mapped read-only, y read whole. A missing or unreadable
    file is one line saying which stage writes it."""
    arrays = []
    for name in (X_FILE, Y_FILE):
        path = folder / name
        if not path.is_file():
            raise DataError(
                f"split file {str(path)!r} does not exist: expected a split written by an earlier "
                "stage (run the stages in order, e.g. `dvc repro`)"
            )
        try:
            arrays.append(map_npy(path) if name == X_FILE else np.load(path, allow_pickle=False))
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(
                f"split file {str(path)!r} cannot be read ({flat_message(exc)}): expected a .npy "
                "array written by gapline (rerun the stage that writes it, e.g. `dvc repro`)"
            ) from exc
    x, y = arrays
    if len(x) != len(y):
        raise DataError(
            f"split {str(folder)!r} has {len(x)} rows in {X_FILE} but {len(y)} in {Y_FILE}: "
            "expected one label per row (rerun the stage that wrote it)"
        )
    return Split(x=x, y=y)
