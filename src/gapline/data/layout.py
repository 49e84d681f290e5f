"""Where the prepared and augmented data live, and the meta every later stage reads.

Shared by the stages and by retraining; apart from the loaders so that a stage reading the
prepared data does not depend on how a source is parsed.

The layout (documented in the README for users who put it on shared storage)::

    data/prepared/meta.json                     task, classes, counts, fingerprints, pixel_max
    data/prepared/{train,val,test}/x.npy        features: uint8 pixels or float32 columns
    data/prepared/{train,val,test}/y.npy        one label, label row or target per sample
    data/augmented/train/{x,y}.npy              the originals first, then each augmented copy
"""

from __future__ import annotations

from pathlib import Path

from gapline.data.meta import PreparedMeta
from gapline.data.store import Split, open_split

PREPARED = Path("data/prepared")
AUGMENTED = Path("data/augmented")
SPLITS = ("train", "val", "test")
META_FILE = "meta.json"  # in a prepared folder: its PreparedMeta


def split_dir(name: str, root: Path = PREPARED) -> Path:
    return root / name


def read_split(name: str, root: Path = PREPARED) -> Split:
    """A split of ``root`` (prepared by default): x memory-mapped, y in memory."""
    return open_split(split_dir(name, root))


def read_meta(prepared: Path = PREPARED) -> PreparedMeta:
    """The meta of the prepared folder ``prepared`` (a one-line DataError when malformed)."""
    return PreparedMeta.read(prepared / META_FILE)
