"""A prepared folder's meta for tests that need one without preparing data: the required
fields filled with placeholders, any field given as a keyword."""

from __future__ import annotations

from typing import Any

from gapline.data.meta import PreparedMeta

SPLIT_NAMES = ("train", "val", "test")


def make_meta(**fields: Any) -> PreparedMeta:
    """A digits-like multiclass meta unless ``fields`` say otherwise."""
    base: dict[str, Any] = {
        "source": "digits",
        "source_digest": "sklearn.datasets.load_digits",
        "data_key": "0" * 16,
        "kind": "image",
        "task": "multiclass",
        "class_names": [str(c) for c in range(10)],
        "input_shape": [8, 8, 1],
        "counts": {name: 0 for name in SPLIT_NAMES},
        "skipped_corrupt": 0,
        "fingerprints": {name: "sha256:0" for name in SPLIT_NAMES},
        "fingerprint": "sha256:0",
    }
    return PreparedMeta(**{**base, **fields})
