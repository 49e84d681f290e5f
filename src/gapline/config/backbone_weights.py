"""Which network a weights file belongs to, told from the file alone, so that a
``model.weights`` file of another network is refused when composing (under a second:
h5py reads the shapes, no Keras, no network built) instead of when ``train`` starts.

A network's signature is the sorted list of its weight shapes (names are not used: Keras
numbers unnamed layers by what the process built before). ``backbone_weights.json`` holds
the signature of every backbone gapline offers, without its top, as ``make_backbone`` builds
it (3 input channels); ``python -m gapline.config.backbone_weights`` writes it again after a Keras
upgrade.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gapline.config.schema import BACKBONES

SIGNATURES = Path(__file__).with_name("backbone_weights.json")


def signature(shapes: Iterable[Iterable[int]]) -> str:
    """Order-free digest of a network's weight shapes, with their count."""
    ordered = sorted(tuple(int(d) for d in s) for s in shapes)
    return f"{len(ordered)}:" + hashlib.sha256(json.dumps(ordered).encode()).hexdigest()[:16]


def file_signature(path: Path) -> str | None:
    """The signature of a ``.weights.h5``/``.h5`` file's arrays; None when it is not HDF5."""
    import h5py

    shapes: list[tuple[int, ...]] = []

    def visit(_: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset) and item.shape:
            shapes.append(tuple(item.shape))

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError:
        return None
    return signature(shapes)


def expected(backbone: str) -> str:
    """What ``model.weights`` must be, in the house style's "expected …"."""
    mobilenet_v3 = ", include_preprocessing=False" if backbone.startswith("MobileNetV3") else ""
    return f"none or a local weights file (.weights.h5 or .h5) of a {backbone} without its top (include_top=False{mobilenet_v3})"


def misfit(path: Path, backbone: str) -> str | None:
    """Why the file at ``path`` does not fit ``backbone`` (naming the network it fits), or
    None when it fits or cannot be told from the file."""
    ok, other = fits(path, backbone)
    if ok:
        return None
    if other:
        return f"this file holds a {other}'s weights (set model.backbone={other})"
    return f"this file's {file_signature(path)} weight arrays match none of {', '.join(known())}"


def known() -> dict[str, str]:
    return dict(json.loads(SIGNATURES.read_text(encoding="utf-8")))


def fits(path: Path, backbone: str) -> tuple[bool, str | None]:
    """Whether the file fits ``backbone`` and, when not, the backbone it does fit (if any).
    A backbone without a recorded signature, or a file that is not HDF5, is left to Keras."""
    table = known()
    mine = file_signature(path)
    if mine is None or backbone not in table:
        return True, None
    if mine == table[backbone]:
        return True, None
    return False, next((name for name, sig in table.items() if sig == mine), None)


def write() -> dict[str, str]:
    """Build every backbone (no top, random weights) and record its signature."""
    import keras

    out = {}
    for name in BACKBONES:
        kwargs: dict[str, Any] = {"include_top": False, "weights": None, "input_shape": (224, 224, 3), "pooling": "avg"}
        if name.startswith("MobileNetV3"):
            kwargs["include_preprocessing"] = False
        model = getattr(keras.applications, name)(**kwargs)
        out[name] = signature(tuple(w.shape) for w in model.weights)
        keras.backend.clear_session()
    SIGNATURES.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    for name, sig in write().items():
        print(f"{name}: {sig}")
