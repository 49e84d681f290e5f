"""Loaders that turn raw inputs into one in-memory :class:`Dataset`.

Every problem a user can cause (missing file, wrong keys, corrupt image, text in a numeric
column, ...) becomes a one-line :class:`~gapline.errors.DataError` naming the file or field,
the bad value and what is allowed, so the CLI never shows a numpy/PIL/pandas traceback.
pandas, PIL and scikit-learn are imported lazily to keep ``import gapline`` fast.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
import numpy as np

from gapline.errors import DataError, flat_message, bad_value

__all__ = [
    "IMAGE_SUFFIXES",
    "Dataset",
    "load_csv",
    "load_digits",
    "load_image_folder",
    "load_npz",
    "validate_dataset",
]

#: File endings (compared case-insensitively) that the image-folder loader reads.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset in the one layout every later stage expects.

    ``x`` is float32: images are ``(n, h, w, c)`` scaled to [0, 1]; tabular data is ``(n, d)``.
    ``y`` holds int64 class indices ``0..k-1`` into ``class_names``. ``skipped`` counts corrupt
    image files that were skipped (``on_corrupt="skip"``), so it can be reported in lineage.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    kind: str
    skipped: int = 0

    @property
    def n_classes(self) -> int:
        """Number of classes named (equals the number of distinct labels for our loaders)."""
        return len(self.class_names)


# --------------------------------------------------------------------------- helpers


def _require_path(path: PathLike, expected: str, *, want_dir: bool = False) -> Path:
    """Return ``path`` as a Path, or raise the house-style 'does not exist' error."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data.path={str(p)!r} does not exist: expected {expected}")
    if want_dir and not p.is_dir():
        raise DataError(f"data.path={str(p)!r} is not a directory: expected {expected}")
    if not want_dir and not p.is_file():
        raise DataError(f"data.path={str(p)!r} is not a file: expected {expected}")
    return p


def _encode_labels(values: np.ndarray, source: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map labels of any dtype to indices via their sorted unique values.

    Integer-valued float labels (``1.0``) are named like ints (``"1"``) because CSV/npz
    round-trips often turn int labels into floats; bytes labels are decoded as UTF-8.
    """
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise DataError(
            f"labels in {source} have shape {values.shape}: expected a 1-d array with one "
            "class label per sample (not one-hot)"
        )
    kind = values.dtype.kind
    if kind == "S":
        values = np.char.decode(values, "utf-8", errors="replace")
        kind = "U"
    elif kind == "O":
        values = values.astype(str)
        kind = "U"
    elif kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"labels in {source} contain {int(bad.sum())} missing/non-finite values "
                f"(first at index {first}: {values[first]!r}): expected a label for every sample"
            )
        if np.all(values == np.round(values)):
            values = values.astype(np.int64)
            kind = "i"
    elif kind not in "biuU":
        raise DataError(
            f"labels in {source} have dtype {values.dtype.str!r}: expected integer or string labels"
        )
    uniques, inverse = np.unique(values, return_inverse=True)
    names = tuple(str(v) for v in uniques.tolist())
    return inverse.reshape(-1).astype(np.int64), names


def _to_float32(x: np.ndarray, source: str) -> np.ndarray:
    """Cast numeric features to float32, refusing strings/objects with a clear message."""
    if x.dtype.kind not in "biuf":
        raise DataError(
            f"x in {source} has dtype {x.dtype.str!r}: expected a numeric (int, uint, float "
            "or bool) array"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(np.float32)


def _scale_images(x: np.ndarray, source: str) -> np.ndarray:
    """Scale images to float32 in [0, 1] (see :func:`load_npz` for the rule)."""
    xf = _to_float32(x, source)
    if x.dtype.kind == "b":
        return xf  # True/False masks are already 1/0
    integer = x.dtype.kind in "iu"
    finite = xf[np.isfinite(xf)]  # NaN/inf are reported later by validate_dataset
    if finite.size == 0:
        return xf
    lo, hi = float(finite.min()), float(finite.max())
    if integer or hi > 1.0:
        if lo < 0 or hi > 255:
            raise DataError(
                f"image values in {source} range from {lo:g} to {hi:g}: expected floats in "
                "[0, 1] or integers/floats in [0, 255]"
            )
        xf = xf / np.float32(255.0)
    elif lo < 0:
        raise DataError(
            f"image values in {source} range from {lo:g} to {hi:g}: expected floats in [0, 1] "
            "or integers/floats in [0, 255]"
        )
    return xf


# --------------------------------------------------------------------------- loaders


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits (no download), as ``(1797, 8, 8, 1)`` images in [0, 1].

    Pixels are 0..16 in the source, so they are divided by 16 (not 255).
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[..., np.newaxis]
    y = np.asarray(bunch.target, dtype=np.int64)
    names = tuple(str(n) for n in bunch.target_names)
    return Dataset(x=x, y=y, class_names=names, kind="image")


def load_npz(path: PathLike) -> Dataset:
    """Load arrays ``x`` (features/images) and ``y`` (labels) from an ``.npz`` file.

    Layout by ``x.ndim``: 2 -> tabular ``(n, d)``; 3 -> grayscale images ``(n, h, w)`` (a
    channel axis is added); 4 -> images ``(n, h, w, c)``.

    Image scaling rule: if ``x`` has an integer dtype, or is float with a maximum above 1,
    it is treated as 0..255 pixels and divided by 255; otherwise floats already in [0, 1]
    are kept. Values outside [0, 255] (or negative) are an error. Tabular ``x`` is only cast
    to float32, never scaled. Labels of any dtype (ints or strings) map to class indices in
    sorted order of their unique values; ``class_names`` are those values as strings.
    Pickled object arrays are refused (unsafe); save string labels as a unicode array.
    """
    expected = "an .npz file with arrays 'x' (features) and 'y' (labels)"
    p = _require_path(path, expected)
    source = f"data file {str(p)!r}"
    if not zipfile.is_zipfile(p):
        raise DataError(f"{source} is not an .npz archive (not a zip file): expected {expected}")
    try:
        with np.load(p, allow_pickle=False) as npz:
            found = sorted(npz.files)
            for key in ("x", "y"):
                if key not in found:
                    raise DataError(
                        f"{source} has no array {key!r}: found arrays {found}; expected "
                        "arrays 'x' (features) and 'y' (labels)"
                    )
            x_raw = npz["x"]
            y_raw = npz["y"]
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        hint = " (save string labels as a unicode array, not dtype=object)" if "allow_pickle" in str(exc) else ""
        raise DataError(
            f"{source} cannot be read as .npz ({flat_message(exc)}): expected {expected}{hint}"
        ) from exc

    if x_raw.ndim == 0 or y_raw.ndim == 0:
        raise DataError(f"{source} holds a scalar 'x' or 'y': expected one row/label per sample")
    if len(x_raw) != len(y_raw):
        raise DataError(
            f"{source} has len(x)={len(x_raw)} but len(y)={len(y_raw)}: expected one label per sample"
        )
    if len(x_raw) == 0:
        raise DataError(f"{source} contains 0 samples: expected at least one sample per class")
    if x_raw.ndim == 2:
        kind = "tabular"
        x = _to_float32(x_raw, source)
    elif x_raw.ndim in (3, 4):
        kind = "image"
        x = _scale_images(x_raw, source)
        if x.ndim == 3:
            x = x[..., np.newaxis]
    else:
        raise DataError(
            f"x in {source} has ndim={x_raw.ndim} (shape {x_raw.shape}): expected 2 (tabular "
            "n x d), 3 (grayscale images n x h x w) or 4 (images n x h x w x c)"
        )
    y, names = _encode_labels(y_raw, source)
    return Dataset(x=np.ascontiguousarray(x), y=y, class_names=names, kind=kind)


def load_csv(path: PathLike, label_column: str) -> Dataset:
    """Load a CSV with a header row: ``label_column`` holds labels, every other column a feature.

    Feature columns must be numeric (empty cells become NaN and are reported by
    :func:`validate_dataset`); labels are mapped like :func:`load_npz`.
    """
    import pandas as pd

    p = _require_path(path, f"a CSV file with a header row and a label column {label_column!r}")
    source = f"data file {str(p)!r}"
    if not isinstance(label_column, str) or not label_column:
        raise DataError(bad_value("data.label_column", label_column, "a non-empty column name"))
    try:
        frame = pd.read_csv(p)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{source} is empty: expected a CSV file with a header row") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(
            f"{source} cannot be parsed as CSV ({flat_message(exc)}): expected a comma-separated "
            "file with a header row"
        ) from exc

    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if label_column not in columns:
        raise DataError(
            f"data.label_column={label_column!r} is not a column of {source}: expected one of {columns}"
        )
    if len(frame) == 0:
        raise DataError(f"{source} has a header but 0 rows: expected at least one sample per class")
    features = [c for c in columns if c != label_column]
    if not features:
        raise DataError(
            f"{source} has only the label column {label_column!r}: expected at least one feature column"
        )
    for col in features:
        series = frame[col]
        if pd.api.types.is_numeric_dtype(series):
            continue
        coerced = pd.to_numeric(series, errors="coerce")
        bad = coerced.isna() & series.notna()
        pos = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
        raise DataError(
            f"column {col!r} of {source} is not numeric: found {series.iloc[pos]!r} on line "
            f"{pos + 2}; expected numbers in every feature column (only {label_column!r} may hold text)"
        )
    labels = frame[label_column]
    missing = labels.isna().to_numpy()
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"label column {label_column!r} of {source} has {int(missing.sum())} empty cells "
            f"(first on line {first + 2}): expected a label in every row"
        )
    label_values = labels.to_numpy()
    if label_values.dtype.kind == "O":
        label_values = label_values.astype(str)
    x = _to_float32(frame[features].to_numpy(), source)
    y, names = _encode_labels(label_values, source)
    return Dataset(x=np.ascontiguousarray(x), y=y, class_names=names, kind="tabular")


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
) -> Dataset:
    """Load ``path/<class>/<image>`` files; each subfolder (sorted by name) is one class.

    Only ``.png``/``.jpg``/``.jpeg`` files (any case) are read; other files, hidden files and
    hidden folders (``.DS_Store``, ``.ipynb_checkpoints``) are ignored. Every image is
    converted to ``color_mode`` ("grayscale" -> 1 channel, "rgb" -> 3; alpha is dropped) and
    resized to ``image_size`` = (height, width), so mixed sizes and channel counts are fine.
    A corrupt or truncated file raises (``on_corrupt="fail"``) or is skipped with a warning
    and counted in ``Dataset.skipped`` (``on_corrupt="skip"``).
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
    root = _require_path(path, expected, want_dir=True)
    class_dirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name
    )
    if not class_dirs:
        raise DataError(f"data.path={str(root)!r} has no class subfolders: expected {expected}")
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
    return Dataset(x=x, y=y, class_names=names, kind="image", skipped=skipped)


# --------------------------------------------------------------------------- validation


def validate_dataset(ds: Dataset, source: str) -> None:
    """Refuse data that would train silently wrong: NaN/inf features or fewer than 2 classes.

    ``source`` names where the data came from (a path or "digits") for the message.
    """
    x, y = ds.x, ds.y
    if len(x) != len(y):
        raise DataError(f"data source {source!r} has {len(x)} samples but {len(y)} labels: expected one label per sample")
    if len(y) == 0:
        raise DataError(f"data source {source!r} contains 0 samples: expected at least one sample per class")
    if ds.kind not in ("image", "tabular"):
        raise DataError(bad_value("Dataset.kind", ds.kind, "'image' or 'tabular'"))
    xf = np.asarray(x)
    if xf.dtype.kind in "fc":
        finite = np.isfinite(xf)
        if not finite.all():
            n_nan = int(np.isnan(xf).sum())
            n_inf = int(xf.size - finite.sum()) - n_nan
            first_sample = int(np.argwhere(~finite)[0][0])
            raise DataError(
                f"data source {source!r} has {n_nan} NaN and {n_inf} infinite values in x "
                f"(first in sample {first_sample}): expected only finite numbers (fill or drop "
                "missing values)"
            )
    yi = np.asarray(y)
    k = len(ds.class_names)
    if yi.dtype.kind not in "iu":
        raise DataError(
            f"labels of data source {source!r} have dtype {yi.dtype.str!r}: expected integer "
            f"class indices in [0, {k})"
        )
    if yi.min() < 0 or yi.max() >= k:
        raise DataError(
            f"labels of data source {source!r} range over [{yi.min()}, {yi.max()}]: expected "
            f"class indices in [0, {k}) for {k} class names"
        )
    present = np.unique(yi)
    if len(present) < 2:
        only = ds.class_names[int(present[0])]
        raise DataError(
            f"a single-class dataset cannot be classified: found only class {only!r} in "
            f"data source {source!r}; expected at least 2 classes"
        )
