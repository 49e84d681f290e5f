"""A folder of images, one subfolder per class, decoded with PIL into a :class:`Dataset`.

A corrupt or truncated file is one :class:`~gapline.errors.DataError` line naming it (or a
warning and a count with ``on_corrupt="skip"``), never a PIL traceback.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from gapline.data.dataset import Dataset
from gapline.data.labels import fixed_task
from gapline.data.sources import PathLike, require_path
from gapline.errors import DataError, bad_value, flat_message

__all__ = ["IMAGE_SUFFIXES", "load_image_folder"]

#: File endings (compared case-insensitively) that the image-folder loader reads.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")


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
    """Decode, convert and resize one image to float32 ``(h, w, c)`` in [0, 1].

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
            gray = Image.fromarray(np.clip(arr / top, 0.0, 1.0).astype(np.float32), mode="F")
            if gray.size != (w, h):
                gray = gray.resize((w, h), Image.Resampling.BILINEAR)
            out = np.asarray(gray, dtype=np.float32)[..., np.newaxis]
            return np.repeat(out, 3, axis=-1) if color_mode == "rgb" else out
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")  # avoids PIL's palette-transparency warning
        conv = im.convert("L" if color_mode == "grayscale" else "RGB")
        if conv.size != (w, h):
            conv = conv.resize((w, h), Image.Resampling.BILINEAR)
        arr = np.asarray(conv, dtype=np.float32) / np.float32(255.0)
    return arr[..., np.newaxis] if arr.ndim == 2 else arr


def _is_image_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES


def load_image_folder(
    path: PathLike,
    image_size: tuple[int, int],
    color_mode: str,
    on_corrupt: str,
    task: str = "auto",
) -> Dataset:
    """Load ``path/<class>/<image>`` files; each subfolder (sorted by name) is one class.

    Only ``.png``/``.jpg``/``.jpeg`` files (any case) are read; other files, hidden files and
    hidden folders (``.DS_Store``, ``.ipynb_checkpoints``) are ignored. Every image is
    converted to ``color_mode`` ("grayscale" -> 1 channel, "rgb" -> 3; alpha is dropped) and
    resized to ``image_size`` = (height, width), so mixed sizes and channel counts are fine.
    A corrupt or truncated file raises (``on_corrupt="fail"``) or is skipped with a warning
    and counted in ``Dataset.skipped`` (``on_corrupt="skip"``).

    The folder is one label per image: ``task`` auto is multiclass; binary needs exactly 2
    class folders; multilabel and regression do not fit.
    """
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in image_size)
    ):
        raise DataError(bad_value("data.image_size", image_size, "[height, width] of two positive integers"))
    size = (int(image_size[0]), int(image_size[1]))
    if color_mode not in ("grayscale", "rgb"):
        raise DataError(bad_value("data.color_mode", color_mode, "'grayscale' or 'rgb'"))
    if on_corrupt not in ("skip", "fail"):
        raise DataError(bad_value("data.on_corrupt", on_corrupt, "'skip' or 'fail'"))

    expected = "a folder with one subfolder of .png/.jpg/.jpeg images per class"
    root = require_path(path, expected, want_dir=True)
    class_dirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name
    )
    if not class_dirs:
        raise DataError(f"data.path={str(root)!r} has no class subfolders: expected {expected}")
    where = f"data.path={str(root)!r}"
    shown = ", ".join(d.name for d in class_dirs[:5]) + (", ..." if len(class_dirs) > 5 else "")
    folders = f"{len(class_dirs)} class folder{'s' if len(class_dirs) != 1 else ''} ({shown})"
    allowed = ("multiclass", "binary") if len(class_dirs) == 2 else ("multiclass",)
    task = fixed_task(task, where, allowed, f"one class per image in {folders}")
    files_by_class = [sorted((f for f in d.iterdir() if _is_image_file(f)), key=lambda f: f.name) for d in class_dirs]
    if not any(files_by_class):
        raise DataError(f"data.path={str(root)!r} contains no .png/.jpg/.jpeg images: expected {expected}")
    for d, files in zip(class_dirs, files_by_class):
        if not files:
            raise DataError(
                f"class folder {str(d)!r} contains no .png/.jpg/.jpeg images: expected at least "
                "one image per class (remove the folder if it is not a class)"
            )

    from PIL import Image

    images: list[np.ndarray] = []
    labels: list[int] = []
    skipped = 0
    with _strict_pil():
        for label, (d, files) in enumerate(zip(class_dirs, files_by_class)):
            kept = 0
            for f in files:
                try:
                    arr = _read_image(f, size, color_mode)
                except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
                    if on_corrupt == "fail":
                        raise DataError(
                            f"image file {str(f)!r} is corrupt or unreadable ({flat_message(exc)}): "
                            "expected a valid PNG/JPEG (set data.on_corrupt='skip' to skip such files)"
                        ) from exc
                    warnings.warn(
                        f"skipping corrupt image file {str(f)!r}: {flat_message(exc)}",
                        UserWarning,
                        stacklevel=2,
                    )
                    skipped += 1
                    continue
                images.append(arr)
                labels.append(label)
                kept += 1
            if kept == 0:
                raise DataError(
                    f"class folder {str(d)!r} has no readable images ({len(files)} corrupt files "
                    "skipped): expected at least one valid image per class"
                )
    x = np.stack(images).astype(np.float32, copy=False)
    y = np.asarray(labels, dtype=np.int64)
    names = tuple(d.name for d in class_dirs)
    return Dataset(x=x, y=y, class_names=names, kind="image", skipped=skipped, task=task)
