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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
import numpy as np

from gapline.data.labels import fixed_task, read_labels
from gapline.errors import DataError, flat_message, bad_value
from gapline.tasks import TASK_NAMES

__all__ = [
    "IMAGE_SUFFIXES",
    "Dataset",
    "load_breast_cancer",
    "load_csv",
    "load_diabetes",
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
    ``y`` and ``class_names`` follow ``task`` (:mod:`gapline.data.labels`): multiclass and
    binary int64 class indices ``(n,)`` into ``class_names`` (binary: 2 names, negative first);
    multilabel int64 0/1 ``(n, L)`` with the L label names; regression float32 ``(n,)`` with
    the target's name. ``skipped`` counts corrupt image files that were skipped
    (``on_corrupt="skip"``), so it can be reported in lineage.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    kind: str
    skipped: int = 0
    task: str = "multiclass"

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


def load_digits(task: str = "auto") -> Dataset:
    """scikit-learn's bundled 8x8 digits (no download), as ``(1797, 8, 8, 1)`` images in [0, 1].

    Pixels are 0..16 in the source, so they are divided by 16 (not 255). Multiclass only.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    task = fixed_task(task, "data.source='digits'", ("multiclass",), "10 classes of digit images")
    bunch = _sk_load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[..., np.newaxis]
    y = np.asarray(bunch.target, dtype=np.int64)
    names = tuple(str(n) for n in bunch.target_names)
    return Dataset(x=x, y=y, class_names=names, kind="image", task=task)


def load_breast_cancer(task: str = "auto") -> Dataset:
    """scikit-learn's bundled Wisconsin breast cancer set (no download): 569 tabular rows of
    30 float32 features; binary, ``class_names = ("benign", "malignant")`` so that malignant is
    the positive class (scikit-learn codes it 0). ``task`` may also be multiclass (2 classes).
    """
    from sklearn.datasets import load_breast_cancer as _sk_load

    task = fixed_task(
        task, "data.source='breast_cancer'", ("binary", "multiclass"), "2 classes (benign, malignant)"
    )
    bunch = _sk_load()
    x = np.ascontiguousarray(bunch.data, dtype=np.float32)
    malignant = np.asarray(bunch.target_names).tolist().index("malignant")
    y = (np.asarray(bunch.target) == malignant).astype(np.int64)
    return Dataset(x=x, y=y, class_names=("benign", "malignant"), kind="tabular", task=task)


def load_diabetes(task: str = "auto") -> Dataset:
    """scikit-learn's bundled diabetes set (no download), unscaled: 442 tabular rows of 10
    float32 features (age, sex, bmi, bp, s1..s6); regression of ``disease_progression`` one
    year after baseline (float32, 25..346)."""
    from sklearn.datasets import load_diabetes as _sk_load

    task = fixed_task(task, "data.source='diabetes'", ("regression",), "a numeric target (disease progression)")
    bunch = _sk_load(scaled=False)
    x = np.ascontiguousarray(bunch.data, dtype=np.float32)
    y = np.ascontiguousarray(bunch.target, dtype=np.float32)
    return Dataset(x=x, y=y, class_names=("disease_progression",), kind="tabular", task=task)


def load_npz(path: PathLike, task: str = "auto") -> Dataset:
    """Load arrays ``x`` (features/images) and ``y`` (labels) from an ``.npz`` file.

    Layout by ``x.ndim``: 2 -> tabular ``(n, d)``; 3 -> grayscale images ``(n, h, w)`` (a
    channel axis is added); 4 -> images ``(n, h, w, c)``.

    Image scaling rule: if ``x`` has an integer dtype, or is float with a maximum above 1,
    it is treated as 0..255 pixels and divided by 255; otherwise floats already in [0, 1]
    are kept. Values outside [0, 255] (or negative) are an error. Tabular ``x`` is only cast
    to float32, never scaled.

    ``y`` is read for ``task`` by :func:`gapline.data.labels.read_labels`: one label per sample
    (ints or strings map to class indices in sorted order of their unique values and
    ``class_names`` are those values as strings; numbers are a regression target named "y"),
    or a 2-d 0/1 array ``(n, L)`` for a multilabel task whose columns are named by an optional
    unicode array ``label_names`` (else ``label_0`` .. ``label_{L-1}``). Pickled object arrays
    are refused (unsafe); save string labels as a unicode array.
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
            names_raw = npz["label_names"] if "label_names" in found else None
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
    label_names = _label_names(names_raw, y_raw, source)
    labels = read_labels(y_raw, task, source=source, field="array 'y'", names=label_names)
    return Dataset(x=np.ascontiguousarray(x), y=labels.y, class_names=labels.names, kind=kind, task=labels.task)


def _label_names(raw: np.ndarray | None, y: np.ndarray, source: str) -> tuple[str, ...] | None:
    """An npz's optional ``label_names``: 1-d text naming the columns of a 2-d ``y``."""
    if raw is None:
        return None
    if raw.dtype.kind == "S":
        raw = np.char.decode(raw, "utf-8", errors="replace")
    if y.ndim != 2 or y.shape[1] < 2:
        raise DataError(
            f"{source} has an array 'label_names' but y has shape {y.shape}: expected label_names "
            "only with a 2-d multilabel y of shape (n, L), one name per column (remove it)"
        )
    names = raw.tolist() if raw.ndim == 1 and raw.dtype.kind == "U" else []
    if len(names) != y.shape[1] or len(set(names)) != len(names) or not all(names):
        raise DataError(
            f"array 'label_names' of {source} has shape {raw.shape} and dtype {raw.dtype.str!r}: "
            f"expected {y.shape[1]} distinct non-empty names (a 1-d unicode array), one per column of y"
        )
    return tuple(raw.tolist())


def load_csv(
    path: PathLike, label_column: str, task: str = "auto", label_columns: Sequence[str] = ()
) -> Dataset:
    """Load a CSV with a header row: ``label_column`` holds the target, every other column a
    feature; or, when ``label_columns`` names several 0/1 columns (multilabel), those are the
    targets and ``label_column`` is not read.

    Feature columns must be numeric (empty cells become NaN and are reported by
    :func:`validate_dataset`); targets are read for ``task`` like :func:`load_npz` (a
    regression target is named after its column).
    """
    import pandas as pd

    targets = [str(c) for c in label_columns]
    p = _require_path(
        path,
        f"a CSV file with a header row and label columns {targets}"
        if targets
        else f"a CSV file with a header row and a label column {label_column!r}",
    )
    source = f"data file {str(p)!r}"
    if targets:
        field = f"data.label_columns={targets}"
        if len(targets) < 2:
            raise DataError(
                bad_value(
                    "data.label_columns",
                    targets,
                    "at least 2 columns of 0/1 labels for a multilabel task (name a single target "
                    "with data.label_column)",
                )
            )
    else:
        if not isinstance(label_column, str) or not label_column:
            raise DataError(bad_value("data.label_column", label_column, "a non-empty column name"))
        field = f"data.label_column={label_column!r}"
        targets = [label_column]
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
    absent = [c for c in targets if c not in columns]
    if absent:
        what = "is not a column" if len(absent) == 1 else f"names {', '.join(map(repr, absent))}, not columns"
        raise DataError(f"{field} {what} of {source}: expected one of {columns}")
    if len(frame) == 0:
        raise DataError(f"{source} has a header but 0 rows: expected at least one sample per class")
    features = [c for c in columns if c not in targets]
    if not features:
        raise DataError(
            f"{source} has only the label column{'s' if len(targets) > 1 else ''} "
            f"{', '.join(map(repr, targets))}: expected at least one feature column"
        )
    for col in features:
        series = frame[col]
        if pd.api.types.is_numeric_dtype(series):
            continue
        coerced = pd.to_numeric(series, errors="coerce")
        bad = coerced.isna() & series.notna()
        pos = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
        only = ", ".join(map(repr, targets))
        raise DataError(
            f"column {col!r} of {source} is not numeric: found {series.iloc[pos]!r} on line "
            f"{pos + 2}; expected numbers in every feature column (only {only} may hold text)"
        )
    for col in targets:
        missing = frame[col].isna().to_numpy()
        if missing.any():
            first = int(np.flatnonzero(missing)[0])
            raise DataError(
                f"{field} of {source}: column {col!r} has {int(missing.sum())} empty or NaN cells "
                f"(first on line {first + 2}): expected a label or target value in every row"
            )
    label_values = frame[targets].to_numpy() if len(targets) > 1 else frame[targets[0]].to_numpy()
    if label_values.dtype.kind == "O":
        label_values = label_values.astype(str)
    # float64 first: a bool column beside numbers would make an object array
    x = _to_float32(frame[features].to_numpy(dtype=np.float64), source)
    labels = read_labels(
        label_values,
        task,
        source=source,
        field=field,
        names=targets if len(targets) > 1 else None,
        target_name=targets[0],
        first_line=2,
    )
    return Dataset(x=np.ascontiguousarray(x), y=labels.y, class_names=labels.names, kind="tabular", task=labels.task)


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
    root = _require_path(path, expected, want_dir=True)
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


# --------------------------------------------------------------------------- validation


def validate_dataset(ds: Dataset, source: str) -> None:
    """Refuse data that would train silently wrong, per ``ds.task``.

    Every task: finite features, one target per sample. Multiclass and binary: int class
    indices into ``class_names`` and at least 2 classes present (binary: exactly 2 names).
    Multilabel: int 0/1 ``(n, L)`` with ``L >= 2`` names, and every label both present and
    absent somewhere (a label that is always 0 or always 1 has nothing to learn and no AUC:
    drop it from the label columns). Regression: a finite float ``(n,)`` target with at least
    2 distinct values. ``source`` names where the data came from (a path or "digits").
    """
    x, y = ds.x, ds.y
    if len(x) != len(y):
        raise DataError(f"data source {source!r} has {len(x)} samples but {len(y)} labels: expected one label per sample")
    if len(y) == 0:
        raise DataError(f"data source {source!r} contains 0 samples: expected at least one sample per class")
    if ds.kind not in ("image", "tabular"):
        raise DataError(bad_value("Dataset.kind", ds.kind, "'image' or 'tabular'"))
    if ds.task not in TASK_NAMES:
        raise DataError(bad_value("Dataset.task", ds.task, "one of " + ", ".join(TASK_NAMES)))
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
    if ds.task == "regression":
        _validate_regression(yi, ds.class_names, source)
    elif ds.task == "multilabel":
        _validate_multilabel(yi, ds.class_names, source)
    else:
        _validate_classes(yi, ds.class_names, ds.task, source)


def _validate_classes(yi: np.ndarray, names: tuple[str, ...], task: str, source: str) -> None:
    k = len(names)
    if yi.ndim != 1 or yi.dtype.kind not in "iu":
        raise DataError(
            f"labels of data source {source!r} have dtype {yi.dtype.str!r} and shape {yi.shape}: "
            f"expected integer class indices in [0, {k}), one per sample, for task {task}"
        )
    if yi.min() < 0 or yi.max() >= k:
        raise DataError(
            f"labels of data source {source!r} range over [{yi.min()}, {yi.max()}]: expected "
            f"class indices in [0, {k}) for {k} class names"
        )
    present = np.unique(yi)
    if len(present) < 2:
        only = names[int(present[0])]
        raise DataError(
            f"a single-class dataset cannot be classified: found only class {only!r} in "
            f"data source {source!r}; expected at least 2 classes"
        )
    if task == "binary" and k != 2:
        raise DataError(
            f"data source {source!r} has {k} class names for task binary: expected exactly 2 "
            "(negative first)"
        )


def _validate_multilabel(yi: np.ndarray, names: tuple[str, ...], source: str) -> None:
    if yi.ndim != 2 or yi.dtype.kind not in "iu" or yi.shape[1] != len(names) or len(names) < 2:
        raise DataError(
            f"labels of data source {source!r} have dtype {yi.dtype.str!r} and shape {yi.shape}: "
            f"expected int 0/1 label columns (n, {len(names)}) for {len(names)} label names, at "
            "least 2, for task multilabel"
        )
    if not np.isin(yi, (0, 1)).all():
        raise DataError(f"labels of data source {source!r} hold values other than 0 and 1: expected 0/1 labels")
    positives = yi.sum(axis=0)
    for name, pos in zip(names, positives.tolist()):
        if pos == 0 or pos == len(yi):
            value = 1 if pos else 0
            raise DataError(
                f"label {name!r} of data source {source!r} is {value} in every one of its "
                f"{len(yi)} rows: expected each label to be 1 in some rows and 0 in others "
                "(drop it from the label columns)"
            )


def _validate_regression(yi: np.ndarray, names: tuple[str, ...], source: str) -> None:
    name = names[0] if names else "y"
    if yi.ndim != 1 or yi.dtype.kind != "f":
        raise DataError(
            f"target {name!r} of data source {source!r} has dtype {yi.dtype.str!r} and shape "
            f"{yi.shape}: expected float numbers, one per sample, for task regression"
        )
    bad = ~np.isfinite(yi)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"target {name!r} of data source {source!r} has {int(bad.sum())} NaN/infinite values "
            f"(first in sample {first}): expected a finite number for every sample"
        )
    if len(np.unique(yi)) < 2:
        raise DataError(
            f"target {name!r} of data source {source!r} is {float(yi[0])!r} in every sample: "
            "expected at least 2 distinct values to regress on"
        )
