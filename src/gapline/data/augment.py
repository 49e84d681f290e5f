"""Offline augmentation: a seeded, label-preserving, (1 + copies)× larger training set.

Images get random shifts, small rotations, zoom, optional horizontal flips and pixel noise;
tabular rows get Gaussian feature noise (geometric transforms do not apply and are refused).
The same seed and input always give the same output, byte for byte.

Copies are made a block of :data:`BLOCK` rows at a time, each block from its own seed
``(seed, copy, block)``: the output streams to disk in bounded memory, and does not depend on
how much memory or how many chunks a machine uses. uint8 pixels are transformed in [0, 1]
and rounded back to the source's ``pixel_max`` levels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gapline.config.schema import AugmentConfig
from gapline.core.errors import ConfigError, bad_value
from gapline.data.store import CHUNK_BYTES, X_FILE, Y_FILE, MemoryRows, RowReader, RowWriter, Split, link_or_copy, open_split, row_bytes, row_chunks, whole_file


def _affine(img: np.ndarray, angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """Rotate/zoom about the centre and shift (in pixels); ``img`` is (h, w, c)."""
    from scipy import ndimage

    h, w = img.shape[:2]
    theta = math.radians(angle_deg)
    # output coordinate o maps to input coordinate  M @ (o - centre - shift) + centre
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    matrix = rot / scale
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    offset = centre - matrix @ (centre + np.asarray(shift))
    out = np.empty_like(img)
    for c in range(img.shape[2]):
        out[..., c] = ndimage.affine_transform(
            img[..., c], matrix, offset=offset, order=1, mode="constant", cval=0.0
        )
    return out


def augment_images(x: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One augmented copy of every image in ``x`` (n, h, w, c) of floats in [0, 1], kept there."""
    n, h, w = x.shape[:3]
    out = np.empty_like(x)
    for i in range(n):
        angle = rng.uniform(-cfg.rotation, cfg.rotation) if cfg.rotation else 0.0
        scale = rng.uniform(1 - cfg.zoom, 1 + cfg.zoom) if cfg.zoom else 1.0
        dy = rng.uniform(-cfg.shift, cfg.shift) * h if cfg.shift else 0.0
        dx = rng.uniform(-cfg.shift, cfg.shift) * w if cfg.shift else 0.0
        img = _affine(x[i], angle, scale, (dy, dx)) if (angle or scale != 1.0 or dy or dx) else x[i].copy()
        if cfg.flip_horizontal and rng.random() < 0.5:
            img = img[:, ::-1, :]
        out[i] = img
    if cfg.noise_std:
        out = out + rng.normal(0.0, cfg.noise_std, size=out.shape).astype(out.dtype)
    return np.clip(out, 0.0, 1.0).astype(x.dtype)


def augment_tabular(x: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator, std: np.ndarray) -> np.ndarray:
    """Feature noise scaled by each column's spread (``std``, of the whole training split)."""
    return (x + rng.normal(0.0, cfg.noise_std, size=x.shape) * std).astype(x.dtype)


def column_std(x: np.ndarray) -> np.ndarray:
    """Each column's standard deviation (1 where constant), in two passes of chunks (the mean,
    then the squared deviations: exact where one pass of x² − mean² would cancel)."""
    reader = RowReader(x)
    n = max(1, len(x))
    mean = np.zeros(x.shape[1:], dtype="float64")
    for start, stop in row_chunks(len(x), row_bytes(x)):
        mean += reader.rows(start, stop).astype("float64").sum(axis=0)
    mean /= n
    squares = np.zeros(x.shape[1:], dtype="float64")
    for start, stop in row_chunks(len(x), row_bytes(x)):
        squares += ((reader.rows(start, stop).astype("float64") - mean) ** 2).sum(axis=0)
    std = np.sqrt(squares / n)
    std[std == 0] = 1.0
    return std[np.newaxis]


def table_noise_scale(columns: Sequence[dict[str, Any]]) -> np.ndarray:
    """A table's feature noise scale: each numeric column's training std (a missing cell
    stays missing: NaN plus noise), 0 for a categorical column (its cells are indices)."""
    return np.asarray([[c["std"] if c["kind"] == "numeric" else 0.0 for c in columns]], dtype="float64")


def refuse_geometric(cfg: Any, prefix: str) -> None:
    """Shifts, rotations, zoom and flips have no meaning for tabular rows: one clear line.

    Shared by offline (``augment.*``) and online (``augment.online.*``) augmentation.
    """
    for key in ("shift", "rotation", "zoom"):
        if getattr(cfg, key):
            raise ConfigError(bad_value(f"{prefix}.{key}", getattr(cfg, key), "0 for tabular data (not applicable)"))
    if cfg.flip_horizontal:
        raise ConfigError(bad_value(f"{prefix}.flip_horizontal", True, "false for tabular data (not applicable)"))


def check_applicable(cfg: AugmentConfig, kind: str) -> None:
    if cfg.copies == 0 or kind == "image":
        return
    refuse_geometric(cfg, "augment")
    if not cfg.noise_std:
        raise ConfigError(
            bad_value("augment.noise_std", cfg.noise_std, "> 0 for tabular data, the only augmentation that applies")
        )


#: Rows per seeded block of an augmented copy (fixed: the output must not depend on memory).
BLOCK = 256


def augment_block(
    x: np.ndarray, cfg: AugmentConfig, kind: str, pixel_max: int, rng: np.random.Generator, std: np.ndarray | None
) -> np.ndarray:
    """One augmented copy of a block of rows, in ``x``'s dtype."""
    if kind != "image":
        return augment_tabular(x, cfg, rng, std)  # type: ignore[arg-type]
    if not pixel_max:
        return augment_images(x, cfg, rng)
    unit = augment_images(x.astype(np.float32) / np.float32(pixel_max), cfg, rng)
    return np.rint(unit * np.float32(pixel_max)).astype(x.dtype)


def augment_rows(
    x: np.ndarray, y: np.ndarray, cfg: AugmentConfig, kind: str, pixel_max: int, out: Any,
    columns: Sequence[dict[str, Any]] | None = None,
) -> np.ndarray:
    """Write the originals, then each copy, a block at a time, through ``out.write(start,
    rows)`` ((1 + copies) × len(x) rows: an array in memory or a file); returns the labels,
    repeated unchanged."""
    n = len(x)
    reader = RowReader(x)
    std = table_noise_scale(columns) if columns else column_std(x) if kind != "image" else None
    per_chunk = max(BLOCK, CHUNK_BYTES // max(1, row_bytes(x)) // BLOCK * BLOCK)
    for copy in range(cfg.copies + 1):
        for start in range(0, n, per_chunk):
            stop = min(n, start + per_chunk)
            chunk = reader.rows(start, stop)
            if copy:
                chunk = np.concatenate(
                    [
                        augment_block(
                            chunk[b - start : min(stop, b + BLOCK) - start],
                            cfg,
                            kind,
                            pixel_max,
                            np.random.default_rng([cfg.seed, copy, b // BLOCK]),
                            std,
                        )
                        for b in range(start, stop, BLOCK)
                    ]
                )
            out.write(copy * n + start, chunk)
    return np.concatenate([np.asarray(y)] * (cfg.copies + 1), axis=0)


def augment_dataset(
    x: np.ndarray, y: np.ndarray, cfg: AugmentConfig, kind: str, pixel_max: int = 0,
    columns: Sequence[dict[str, Any]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Originals first, then ``copies`` augmented copies, in memory (in-memory trials); the
    augment stage streams the same rows to disk (:func:`augment_to`)."""
    check_applicable(cfg, kind)
    if cfg.copies == 0:
        return x, y
    out = MemoryRows(x.dtype, (len(x) * (cfg.copies + 1), *x.shape[1:]))
    return out.array, augment_rows(x, y, cfg, kind, pixel_max, out, columns)


def augment_to(
    folder: Path, x: np.ndarray, y: np.ndarray, cfg: AugmentConfig, kind: str, pixel_max: int = 0,
    columns: Sequence[dict[str, Any]] | None = None,
) -> Split:
    """The same rows as :func:`augment_dataset`, written to ``folder/{x,y}.npy`` a chunk at a
    time (``x`` may be mapped): the augmented set is never whole in memory."""
    check_applicable(cfg, kind)
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.copies == 0 and whole_file(x) is not None:
        # the training split as it is: a hard link to the prepared file costs no disk (DVC
        # caches both outputs as one object anyway); a copy where links are not possible
        link_or_copy(whole_file(x), folder / X_FILE)  # type: ignore[arg-type]
        np.save(folder / Y_FILE, np.asarray(y), allow_pickle=False)
        return open_split(folder)
    with RowWriter(folder / X_FILE, x.dtype, (len(x) * (cfg.copies + 1), *x.shape[1:])) as out:
        labels = augment_rows(x, y, cfg, kind, pixel_max, out, columns)
    np.save(folder / Y_FILE, labels, allow_pickle=False)
    return open_split(folder)
