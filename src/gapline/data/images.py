"""A folder of images, one subfolder per class, decoded with PIL into a :class:`Dataset` of
uint8 pixels (``pixel_max`` 255).

Files are decoded in chunks (:data:`CHUNK` files, fewer for large images: :func:`chunk_files`)
by a pool of spawned processes for a large folder, straight into one array: in memory, or a
``.npy`` file under a scratch folder (written with ``pwrite``, then memory-mapped read-only)
so that a set larger than memory is never held whole. The result is the
same, byte for byte, for any number of workers. A corrupt or truncated file is one
:class:`~gapline.core.errors.DataError` line naming the first such file in file order (or a warning
and a count with ``on_corrupt="skip"``), never a PIL traceback.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np

from gapline.core.errors import DataError, bad_value, flat_message
from gapline.data.dataset import Dataset
from gapline.data.labels import fixed_task
from gapline.data.sources import PathLike, require_path
from gapline.data.store import MemoryRows, RowWriter, new_rows, write_exactly

__all__ = ["CHUNK", "DECODED_NAME", "IMAGE_SUFFIXES", "load_image_folder"]

#: File endings (compared case-insensitively) that the image-folder loader reads.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")

#: Files decoded per task at most: a worker's unit of work and of memory in flight (a module
#: constant so that tests can make it small).
CHUNK = 256
#: Decoded bytes per task at most: large images come in smaller chunks, so the 2 chunks per
#: worker in flight stay within 2 × data.workers × this.
CHUNK_BYTES = 16 * 2**20


def chunk_files(size: tuple[int, int], color_mode: str) -> int:
    """Files per chunk for images of ``size`` in ``color_mode``: CHUNK, or fewer so that a
    chunk's decoded pixels stay within CHUNK_BYTES (the output never depends on it)."""
    image_bytes = size[0] * size[1] * (1 if color_mode == "grayscale" else 3)
    return max(1, min(CHUNK, CHUNK_BYTES // max(1, image_bytes)))

#: The name of the decoded pixels in a scratch folder.
DECODED_NAME = "decoded.npy"

_EXPECTED = "a folder with one subfolder of .png/.jpg/.jpeg images per class"

#: A chunk's result: its pixels (corrupt files' rows left zero) and each corrupt file's
#: offset in the chunk with the reason, in file order.
ChunkResult = tuple[np.ndarray | None, list[tuple[int, str]]]  # pixels (None: written by the worker), corrupt files


@contextmanager
def _strict_pil() -> Iterator[None]:
    """Make PIL raise on truncated files (restoring the global flag afterwards)."""
    from PIL import ImageFile

    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def _read_image(file: Path, size: tuple[int, int], color_mode: str) -> np.ndarray:
    """Decode, convert and resize one image to uint8 ``(h, w, c)`` pixels in 0..255.

    16-bit and float grayscale is scaled to [0, 1] (by 65535, or a float image's maximum),
    resized as floats and only then rounded to 0..255, so resizing keeps its precision.
    Raises OSError/SyntaxError/ValueError (and PIL's decompression-bomb error) on bad files.
    """
    from PIL import Image

    h, w = size
    with Image.open(file) as im:
        im.load()
        if im.mode in ("I", "F") or im.mode.startswith("I;16"):
            # 16-bit/32-bit grayscale: PIL's convert("L") clips instead of scaling.
            arr = np.asarray(im, dtype=np.float32)
            top = 65535.0 if im.mode != "F" else max(1.0, float(np.nanmax(arr)) if arr.size else 1.0)
            unit = np.nan_to_num(np.clip(arr / top, 0.0, 1.0), nan=0.0).astype(np.float32)
            gray = Image.fromarray(unit, mode="F")
            if gray.size != (w, h):
                gray = gray.resize((w, h), Image.Resampling.BILINEAR)
            scaled = np.clip(np.rint(np.asarray(gray, dtype=np.float32) * 255.0), 0, 255)
            out = scaled.astype(np.uint8)[..., np.newaxis]
            return np.repeat(out, 3, axis=-1) if color_mode == "rgb" else out
        # RGBA first avoids PIL's palette-transparency warning
        source = im.convert("RGBA") if im.mode == "P" and "transparency" in im.info else im
        conv = source.convert("L" if color_mode == "grayscale" else "RGB")
        if conv.size != (w, h):
            conv = conv.resize((w, h), Image.Resampling.BILINEAR)
        arr = np.asarray(conv, dtype=np.uint8)
    return arr[..., np.newaxis] if arr.ndim == 2 else arr


def _decode_chunk(
    files: Sequence[Path], size: tuple[int, int], color_mode: str, into: tuple[str, int] | None = None
) -> ChunkResult:
    """Decode ``files`` (in a worker process or in this one); a corrupt file is reported,
    never raised, so that the caller can name the first in file order. ``into``: (scratch
    file, byte offset of the chunk's first row): a worker writes its pixels there itself
    (``pwrite``) and returns none, so decoded images never travel through a pipe."""
    from PIL import Image

    channels = 1 if color_mode == "grayscale" else 3
    pixels = np.zeros((len(files), *size, channels), dtype=np.uint8)
    bad: list[tuple[int, str]] = []
    with _strict_pil():
        for i, f in enumerate(files):
            try:
                pixels[i] = _read_image(f, size, color_mode)
            except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
                bad.append((i, flat_message(exc)))
    if into is None:
        return pixels, bad
    fd = os.open(into[0], os.O_WRONLY)
    try:
        write_exactly(fd, pixels, into[1], into[0])
    finally:
        os.close(fd)
    return None, bad


def _worker_count(workers: int, n_files: int, chunk: int) -> int:
    """Processes worth starting: 1 (decode here) for a folder under 2 chunks, where starting
    a pool would cost more than it saves; never more than there are chunks."""
    if workers == 0:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if n_files < 2 * chunk:
        return 1
    return min(workers, -(-n_files // chunk))


def _decoded_chunks(
    files: Sequence[Path], size: tuple[int, int], color_mode: str, workers: int, into: tuple[str, int, int] | None = None
) -> Generator[tuple[int, ChunkResult], None, None]:
    """``(start, chunk result)`` for each chunk, always in file order.

    A pool is spawned (not forked: the caller may hold TensorFlow) with at most 2 chunks per
    worker in flight, so memory stays bounded; results are taken in submission order, so a
    slow chunk delays the ones after it but never reorders them.
    """
    chunk = chunk_files(size, color_mode)
    starts = range(0, len(files), chunk)
    n = _worker_count(workers, len(files), chunk)
    if n <= 1:
        for start in starts:
            yield start, _decode_chunk(files[start : start + chunk], size, color_mode)
        return
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx)
    pending: deque[tuple[int, Future[ChunkResult]]] = deque()
    try:
        for start in starts:
            # into a scratch file: the worker writes the rows at (file, offset of row start)
            target = None if into is None else (into[0], into[1] + start * into[2])
            pending.append((start, pool.submit(_decode_chunk, files[start : start + chunk], size, color_mode, target)))
            if len(pending) >= 2 * n:
                first, future = pending.popleft()
                yield first, _result(future, workers)
        while pending:
            first, future = pending.popleft()
            yield first, _result(future, workers)
    finally:  # also when the caller stops early (the first corrupt file with on_corrupt=fail)
        pool.shutdown(wait=True, cancel_futures=True)


def _result(future: Future[ChunkResult], workers: int) -> ChunkResult:
    """A chunk's result; a worker that died is one line, not the pool's traceback."""
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise DataError(
            f"data.workers={workers}: a process decoding images stopped abruptly ({flat_message(exc)}): "
            "expected it to finish (out of memory? a script run without an `if __name__ == '__main__':` "
            "guard?); set data.workers=1 to decode in this process"
        ) from exc


def _corrupt_error(file: Path, reason: str) -> DataError:
    return DataError(
        f"image file {str(file)!r} is corrupt or unreadable ({reason}): "
        "expected a valid PNG/JPEG (set data.on_corrupt='skip' to skip such files)"
    )


def _fill(
    x: RowWriter | MemoryRows, files: Sequence[Path], size: tuple[int, int], color_mode: str, on_corrupt: str, workers: int
) -> list[int]:
    """Decode ``files`` into the rows of ``x`` chunk by chunk; the indices of corrupt files
    (each warned about, in file order), or a DataError naming the first with ``fail``."""
    corrupt: list[int] = []
    into = (str(x.path), x.offset, x.size) if isinstance(x, RowWriter) else None
    with closing(_decoded_chunks(files, size, color_mode, workers, into)) as chunks:  # closing: stops the pool
        for start, (pixels, bad) in chunks:
            if pixels is not None:  # None: a worker wrote them into the scratch file
                x.write(start, pixels)
            for offset, reason in bad:
                i = start + offset
                if on_corrupt == "fail":
                    raise _corrupt_error(files[i], reason)
                # stacklevel: the warning points at load_image_folder's caller
                warnings.warn(f"skipping corrupt image file {str(files[i])!r}: {reason}", UserWarning, stacklevel=4)
                corrupt.append(i)
    return corrupt


def _compact(x: RowWriter | MemoryRows, corrupt: Sequence[int], n: int) -> int:
    """Move the kept rows to the front of ``x`` in order, chunk by chunk; return how many.

    Safe in place: the j-th kept row comes from row ``rows[j] >= j``, and each chunk is read
    (copied) whole before it is written, over rows no later chunk reads.
    """
    if not corrupt:
        return n
    keep = np.ones(n, dtype=bool)
    keep[list(corrupt)] = False
    rows = np.flatnonzero(keep)
    for j0 in range(0, len(rows), CHUNK):
        j1 = min(j0 + CHUNK, len(rows))
        x.write(j0, x.take(rows[j0:j1]))
    return len(rows)


def _check_arguments(image_size: object, color_mode: str, on_corrupt: str, workers: object) -> tuple[int, int]:
    """The loader's own arguments (one line each, as for the config); returns (h, w)."""
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in image_size)
    ):
        raise DataError(bad_value("data.image_size", image_size, "[height, width] of two positive integers"))
    if color_mode not in ("grayscale", "rgb"):
        raise DataError(bad_value("data.color_mode", color_mode, "'grayscale' or 'rgb'"))
    if on_corrupt not in ("skip", "fail"):
        raise DataError(bad_value("data.on_corrupt", on_corrupt, "'skip' or 'fail'"))
    if not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 0:
        raise DataError(bad_value("data.workers", workers, "an integer >= 0 (0: every core this process may use)"))
    return int(image_size[0]), int(image_size[1])


def _class_dirs(root: Path) -> list[Path]:
    """The class folders, sorted by name (hidden folders are not classes)."""
    class_dirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name
    )
    if not class_dirs:
        raise DataError(f"data.path={str(root)!r} has no class subfolders: expected {_EXPECTED}")
    return class_dirs


def _class_files(root: Path, class_dirs: Sequence[Path]) -> list[list[Path]]:
    """Each class folder's image files sorted by name; every folder must hold at least one
    image (else it is not a class), selected by ``data.classes`` or not."""
    files_by_class = [sorted((f for f in d.iterdir() if _is_image_file(f)), key=lambda f: f.name) for d in class_dirs]
    if not any(files_by_class):
        raise DataError(f"data.path={str(root)!r} contains no .png/.jpg/.jpeg images: expected {_EXPECTED}")
    for d, files in zip(class_dirs, files_by_class):
        if not files:
            raise DataError(
                f"class folder {str(d)!r} contains no .png/.jpg/.jpeg images: expected at least "
                "one image per class (remove the folder if it is not a class)"
            )
    return files_by_class


def _is_image_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES


def _pixel_rows(scratch: PathLike | None, shape: tuple[int, ...]) -> RowWriter | MemoryRows:
    """Where the decoded pixels go: a new ``.npy`` file under ``scratch`` (written with
    ``pwrite``, never mapped into this process), or memory. The old file is unlinked first,
    so a Dataset still mapping it keeps its data."""
    if scratch is None or shape[0] == 0:
        return new_rows(None, np.dtype(np.uint8), shape)
    folder = Path(scratch)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DECODED_NAME).unlink(missing_ok=True)
    return new_rows(folder / DECODED_NAME, np.dtype(np.uint8), shape)


def _discard(x: RowWriter | MemoryRows) -> None:
    """Remove a scratch file left half written by an error."""
    x.close()
    if isinstance(x, RowWriter):
        x.path.unlink(missing_ok=True)


def _decode_all(
    files: Sequence[Path],
    size: tuple[int, int],
    color_mode: str,
    on_corrupt: str,
    scratch: PathLike | None,
    workers: int,
) -> tuple[np.ndarray, list[int]]:
    """Every file decoded into one array, kept rows first (see :func:`_compact`), and the
    indices of corrupt files; a half-written scratch file is removed on error."""
    channels = 1 if color_mode == "grayscale" else 3
    x = _pixel_rows(scratch, (len(files), *size, channels))
    try:
        corrupt = _fill(x, files, size, color_mode, on_corrupt, workers)
        kept = _compact(x, corrupt, len(files))
    except BaseException:
        _discard(x)
        raise
    return x.mapped(kept), corrupt  # read-only memory map of the scratch file, or memory


def load_image_folder(
    path: PathLike,
    image_size: tuple[int, int],
    color_mode: str,
    on_corrupt: str,
    task: str = "auto",
    classes: Sequence[str] = (),
    scratch: PathLike | None = None,
    workers: int = 0,
) -> Dataset:
    """Load ``path/<class>/<image>`` files; each subfolder (sorted by name) is one class.

    Only ``.png``/``.jpg``/``.jpeg`` files (any case) are read; other files, hidden files and
    hidden folders (``.DS_Store``, ``.ipynb_checkpoints``) are ignored. Every image is
    converted to ``color_mode`` ("grayscale" -> 1 channel, "rgb" -> 3; alpha is dropped) and
    resized to ``image_size`` = (height, width), so mixed sizes and channel counts are fine;
    ``x`` is uint8 ``(n, h, w, c)`` with ``pixel_max`` 255, rows in file order (class folders,
    then files, each sorted by name). A corrupt or truncated file raises, naming the first in
    file order (``on_corrupt="fail"``), or is skipped with a warning and counted in
    ``Dataset.skipped`` (``on_corrupt="skip"``).

    ``classes`` (``data.classes``; empty: all): only those folders' files are decoded, but
    ``class_names`` stays every folder's name and ``y`` indexes it (the caller's
    ``select_classes`` relabels; it also reports names that are not folders). ``scratch``: a
    folder for the decoded pixels (``decoded.npy``), so ``x`` is a read-only memory map of it
    rather than memory. ``workers``: decoding processes (0: every core this process may use;
    1: this process only); any number gives the same bytes.

    The folder is one label per image: ``task`` auto is multiclass; binary needs exactly 2
    class folders; multilabel and regression do not fit.
    """
    size = _check_arguments(image_size, color_mode, on_corrupt, workers)
    root = require_path(path, _EXPECTED, want_dir=True)
    class_dirs = _class_dirs(root)
    shown = ", ".join(d.name for d in class_dirs[:5]) + (", ..." if len(class_dirs) > 5 else "")
    folders = f"{len(class_dirs)} class folder{'s' if len(class_dirs) != 1 else ''} ({shown})"
    allowed = ("multiclass", "binary") if len(class_dirs) == 2 else ("multiclass",)
    task = fixed_task(task, f"data.path={str(root)!r}", allowed, f"one class per image in {folders}")
    files_by_class = _class_files(root, class_dirs)

    wanted = {str(c) for c in classes}
    picked = [k for k, d in enumerate(class_dirs) if not wanted or d.name in wanted]
    files = [f for k in picked for f in files_by_class[k]]
    labels = np.concatenate(
        [np.full(len(files_by_class[k]), k, dtype=np.int64) for k in picked] or [np.zeros(0, dtype=np.int64)]
    )
    x, corrupt = _decode_all(files, size, color_mode, on_corrupt, scratch, int(workers))
    y = np.delete(labels, corrupt)
    readable = np.bincount(y, minlength=len(class_dirs))
    for k in picked:
        if readable[k] == 0:
            raise DataError(
                f"class folder {str(class_dirs[k])!r} has no readable images ({len(files_by_class[k])} "
                "corrupt files skipped): expected at least one valid image per class"
            )
    names = tuple(d.name for d in class_dirs)
    return Dataset(x=x, y=y, class_names=names, kind="image", skipped=len(corrupt), task=task, pixel_max=255)
