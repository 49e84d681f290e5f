"""Offline augmentation: a seeded, label-preserving, (1 + copies)× larger training set.

Images get random shifts, small rotations, zoom, optional horizontal flips and pixel noise;
tabular rows get Gaussian feature noise (geometric transforms do not apply and are refused).
The same seed and input always give the same output, byte for byte.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .config import AugmentConfig
from .errors import ConfigError, bad_value


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
    """One augmented copy of every image in ``x`` (n, h, w, c), values kept in [0, 1]."""
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


def augment_tabular(x: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Feature noise scaled by each column's spread."""
    std = x.std(axis=0, keepdims=True)
    std[std == 0] = 1.0
    return (x + rng.normal(0.0, cfg.noise_std, size=x.shape) * std).astype(x.dtype)


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


def augment_dataset(
    x: np.ndarray, y: np.ndarray, cfg: AugmentConfig, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """Originals first, then ``copies`` augmented copies; labels repeated unchanged."""
    check_applicable(cfg, kind)
    if cfg.copies == 0:
        return x, y
    rng = np.random.default_rng(cfg.seed)
    fn = augment_images if kind == "image" else augment_tabular
    xs = [x] + [fn(x, cfg, rng) for _ in range(cfg.copies)]
    return np.concatenate(xs, axis=0), np.concatenate([y] * (cfg.copies + 1), axis=0)
