"""prepare: load the configured source, validate it, split it, fingerprint it, write it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gapline.config.schema import Config
from gapline.core.files import atomic_dir, write_json
from gapline.data.prepare import write_prepared
from gapline.stages import PREPARED


def prepare(cfg: Config, out_dir: Path = PREPARED) -> dict[str, Any]:
    """Write ``{train,val,test}/{x,y}.npy`` and ``meta.json``, streamed a chunk at a time;
    returns the meta written. All or nothing: a failure leaves the previous folder as it was."""
    with atomic_dir(out_dir) as tmp:
        meta = write_prepared(cfg, tmp)
        write_json(tmp / "meta.json", meta)
    return meta
