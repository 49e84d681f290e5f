"""The generated image set of BENCHMARKS.md §7 and §9, in one place so both measure the same
arrays: each of the classes is a fixed random size x size x 3 pattern, each sample 30 % its
class pattern and 70 % uniform noise (learnable, not trivial). Users can recreate it anywhere:

    python benchmarks/image_set.py N SIZE OUT.npz
"""

from __future__ import annotations

import sys

import numpy as np


def make(n: int, size: int = 32, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: float32 images in [0, 1] and int64 labels, seeded (the same arrays every time)."""
    rng = np.random.default_rng(0)
    templates = rng.uniform(0, 1, (classes, size, size, 3)).astype("float32")
    y = (np.arange(n) % classes).astype("int64")
    rng.shuffle(y)
    x = np.empty((n, size, size, 3), dtype="float32")
    for start in range(0, n, 5000):
        idx = slice(start, start + 5000)
        x[idx] = 0.3 * templates[y[idx]] + 0.7 * rng.uniform(0, 1, (len(y[idx]), size, size, 3)).astype("float32")
    return x, y


if __name__ == "__main__":
    n, size, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    x, y = make(n, size)
    np.savez(path, x=x, y=y)
