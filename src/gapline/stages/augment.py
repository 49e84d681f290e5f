"""augment: the training split → a seeded, (1 + copies)× larger training set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..augment import augment_dataset
from ..config import Config
from ..data.layout import read_meta
from ..data.fingerprint import fingerprint
from ..files import atomic_dir, load_arrays, save_arrays
from . import AUGMENTED, PREPARED


def augment(cfg: Config, prepared: Path = PREPARED, out_dir: Path = AUGMENTED) -> dict[str, Any]:
    meta = read_meta(prepared)
    arrays = load_arrays(prepared / "train.npz")
    x, y = augment_dataset(arrays["x"], arrays["y"], cfg.augment, meta["kind"])
    with atomic_dir(out_dir) as tmp:
        save_arrays(tmp / "train.npz", x=x, y=y)
    return {"samples": int(len(y)), "fingerprint": fingerprint({"x": x, "y": y})}
