"""prepare: load the configured source, validate it, split it, fingerprint it, write it."""

from __future__ import annotations

from pathlib import Path

from gapline.config.schema import Config
from gapline.core.files import atomic_dir
from gapline.data.layout import META_FILE
from gapline.data.meta import PreparedMeta
from gapline.data.prepare import write_prepared
from gapline.stages import PREPARED


def prepare(cfg: Config, out_dir: Path = PREPARED) -> PreparedMeta:
    """Write ``{train,val,test}/{x,y}.npy`` and ``meta.json``, streamed a chunk at a time;
    returns the meta written. All or nothing: a failure leaves the previous folder as it was."""
    with atomic_dir(out_dir) as tmp:
        meta = write_prepared(cfg, tmp)
        meta.write(tmp / META_FILE)
    return meta
