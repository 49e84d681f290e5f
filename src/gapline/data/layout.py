"""Where the prepared and augmented data live, and the meta every later stage reads.

Shared by the stages and by retraining; apart from the loaders so that a stage reading the
prepared data does not depend on how a source is parsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gapline.files import read_json

PREPARED = Path("data/prepared")
AUGMENTED = Path("data/augmented")
SPLITS = ("train", "val", "test")


def split_file(name: str, prepared: Path = PREPARED) -> Path:
    return prepared / f"{name}.npz"


def read_meta(prepared: Path = PREPARED) -> dict[str, Any]:
    return read_json(prepared / "meta.json")
