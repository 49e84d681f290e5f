"""Offline augmentation: seeded, label-preserving, (1 + copies)x, pixels kept in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest

from gapline.config.schema import AugmentConfig
from gapline.core.errors import ConfigError
from gapline.data.augment import augment_dataset


def _images(n: int = 12, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.uniform(0.0, 0.4, size=(n, size, size, 1)).astype(np.float32)
    y = (np.arange(n) % 3).astype(np.int64)
    # A bright off-centre square so that shifts and rotations visibly move content.
    x[:, 1:4, 1:5, 0] = 0.95
    return x, y


def _tabular(n: int = 20, d: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.normal(size=(n, d)).astype(np.float32) * 3 + 10, (np.arange(n) % 2).astype(np.int64)


CONFIGS = {
    "shift": AugmentConfig(copies=2, shift=0.25, seed=1),
    "rotation": AugmentConfig(copies=2, rotation=30.0, seed=1),
    "noise": AugmentConfig(copies=2, noise_std=0.2, seed=1),
    "zoom": AugmentConfig(copies=2, zoom=0.3, seed=1),
    "all": AugmentConfig(copies=3, shift=0.1, rotation=10, zoom=0.1, flip_horizontal=True, noise_std=0.05, seed=4),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_size_labels_and_originals_first(name: str) -> None:
    cfg = CONFIGS[name]
    x, y = _images()
    x_before, y_before = x.copy(), y.copy()
    xa, ya = augment_dataset(x, y, cfg, "image")
    n = len(x)
    assert xa.shape == ((1 + cfg.copies) * n, *x.shape[1:])
    assert ya.shape == ((1 + cfg.copies) * n,)
    assert xa.dtype == x.dtype and ya.dtype == y.dtype
    np.testing.assert_array_equal(xa[:n], x)  # originals first, untouched
    for c in range(cfg.copies + 1):
        np.testing.assert_array_equal(ya[c * n : (c + 1) * n], y)
    np.testing.assert_array_equal(x, x_before)  # input not modified in place
    np.testing.assert_array_equal(y, y_before)


@pytest.mark.parametrize("name", ["shift", "rotation", "noise", "zoom", "all"])
def test_pixels_change_and_stay_in_unit_range(name: str) -> None:
    cfg = CONFIGS[name]
    x, y = _images()
    xa, _ = augment_dataset(x, y, cfg, "image")
    n = len(x)
    assert xa.min() >= 0.0 and xa.max() <= 1.0
    for c in range(1, cfg.copies + 1):
        copy = xa[c * n : (c + 1) * n]
        changed = [not np.array_equal(copy[i], x[i]) for i in range(n)]
        assert sum(changed) >= n - 1, f"copy {c}: only {sum(changed)} of {n} images changed"
    # Two copies are different random draws, not the same transform twice.
    assert not np.array_equal(xa[n : 2 * n], xa[2 * n : 3 * n])


def test_shift_moves_content_rather_than_just_adding_noise() -> None:
    x = np.zeros((1, 8, 8, 1), dtype=np.float32)
    x[0, 3:5, 3:5, 0] = 1.0
    xa, _ = augment_dataset(x, np.array([0]), AugmentConfig(copies=5, shift=0.3, seed=2), "image")
    centres = []
    for img in xa[1:]:
        mass = img[..., 0]
        rows, cols = np.indices(mass.shape)
        centres.append((float((rows * mass).sum() / mass.sum()), float((cols * mass).sum() / mass.sum())))
    assert any(abs(r - 3.5) > 0.5 or abs(c - 3.5) > 0.5 for r, c in centres), centres


def test_same_seed_is_byte_identical_and_different_seed_differs() -> None:
    x, y = _images()
    cfg = CONFIGS["all"]
    a, ya = augment_dataset(x, y, cfg, "image")
    b, yb = augment_dataset(x.copy(), y.copy(), AugmentConfig(**{**cfg.__dict__}), "image")
    assert a.tobytes() == b.tobytes()
    assert ya.tobytes() == yb.tobytes()
    c, _ = augment_dataset(x, y, AugmentConfig(**{**cfg.__dict__, "seed": cfg.seed + 1}), "image")
    assert a.tobytes() != c.tobytes()
    np.testing.assert_array_equal(a[: len(x)], c[: len(x)])  # only the copies differ


def test_copies_zero_returns_input_unchanged() -> None:
    x, y = _images()
    cfg = AugmentConfig(copies=0, shift=0.2, rotation=20, noise_std=0.1)
    xa, ya = augment_dataset(x, y, cfg, "image")
    assert xa.shape == x.shape and ya.shape == y.shape
    np.testing.assert_array_equal(xa, x)
    np.testing.assert_array_equal(ya, y)


@pytest.mark.parametrize(
    ("field", "value"),
    [("rotation", 10.0), ("shift", 0.1), ("zoom", 0.1), ("flip_horizontal", True)],
)
def test_geometric_augmentation_of_tabular_data_is_refused(field: str, value: object) -> None:
    x, y = _tabular()
    cfg = AugmentConfig(copies=1, noise_std=0.1, **{field: value})
    with pytest.raises(ConfigError) as info:
        augment_dataset(x, y, cfg, "tabular")
    msg = str(info.value)
    assert "not applicable" in msg and f"augment.{field}" in msg and "\n" not in msg


def test_tabular_without_noise_is_refused() -> None:
    x, y = _tabular()
    with pytest.raises(ConfigError, match="augment.noise_std"):
        augment_dataset(x, y, AugmentConfig(copies=1), "tabular")


def test_tabular_noise_works() -> None:
    x, y = _tabular()
    cfg = AugmentConfig(copies=2, noise_std=0.1, seed=9)
    xa, ya = augment_dataset(x, y, cfg, "tabular")
    n = len(x)
    assert xa.shape == (3 * n, x.shape[1]) and xa.dtype == x.dtype
    np.testing.assert_array_equal(xa[:n], x)
    np.testing.assert_array_equal(ya, np.concatenate([y, y, y]))
    noise = xa[n:2 * n] - x
    assert np.all(noise != 0)
    # Noise is scaled by each column's spread (std 3 here): about 0.1 * 3.
    assert 0.15 < float(noise.std()) < 0.6
    # Tabular features are not clipped to [0, 1].
    assert xa.min() > 1.0
    again, _ = augment_dataset(x, y, cfg, "tabular")
    assert again.tobytes() == xa.tobytes()
