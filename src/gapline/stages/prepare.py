"""prepare: load the configured source, validate it, split it, fingerprint it, write it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config
from ..data.prepare import split_source
from ..files import atomic_dir, save_arrays, write_json
from . import PREPARED


def prepare(cfg: Config, out_dir: Path = PREPARED) -> dict[str, Any]:
    """Write ``{train,val,test}.npz`` and ``meta.json``; returns the meta written."""
    splits, meta = split_source(cfg)
    with atomic_dir(out_dir) as tmp:
        for name, arrays in splits.items():
            save_arrays(tmp / f"{name}.npz", **arrays)
        write_json(tmp / "meta.json", meta)
    return meta
