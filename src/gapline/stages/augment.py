"""augment: the training split → a seeded, (1 + copies)× larger training set, streamed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gapline.config.schema import Config
from gapline.core.files import atomic_dir
from gapline.data.augment import augment_to
from gapline.data.fingerprint import fingerprint
from gapline.data.layout import read_meta, read_split
from gapline.stages import AUGMENTED, PREPARED


def augment(cfg: Config, prepared: Path = PREPARED, out_dir: Path = AUGMENTED) -> dict[str, Any]:
    meta = read_meta(prepared)
    train = read_split("train", prepared)
    with atomic_dir(out_dir) as tmp:
        out = augment_to(tmp / "train", train.x, train.y, cfg.augment, meta.kind, meta.pixel_max, meta.columns)
        digest = fingerprint({"x": out.x, "y": out.y})
    return {"samples": len(out), "fingerprint": digest}
