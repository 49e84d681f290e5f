"""Save and load Keras models so that the same training gives the same bytes.

A ``.keras`` file is a zip whose entries carry the save time and whose metadata.json holds
``date_saved``; both change on every save. DVC hashes the file, so we rewrite the archive
with fixed timestamps and without ``date_saved``: identical weights, identical file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from gapline.config.user_code import config_modules, import_all
from gapline.core.errors import GaplineError, one_line
from gapline.core.files import atomic_path

# where the pipeline keeps its model: the train stage writes it, evaluate and retrain read it
MODEL_FILE = Path("models/model.keras")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def renumber_shared_objects(config: Any) -> Any:
    """Keras names objects shared between layers by their memory address
    (``shared_object_id``); replace each address with its order of first appearance."""
    ids: dict[Any, int] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "shared_object_id":
                    out[key] = ids.setdefault(value, len(ids) + 1)
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(config)


def canonicalize_keras_archive(src: Path, dst: Path) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in sorted(zin.infolist(), key=lambda i: i.filename):
            data = zin.read(item.filename)
            if item.filename == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta, sort_keys=True).encode()
            elif item.filename == "config.json":
                data = json.dumps(renumber_shared_objects(json.loads(data))).encode()
            info = zipfile.ZipInfo(item.filename, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zout.writestr(info, data)


def save_model(model: Any, path: str | os.PathLike[str]) -> Path:
    """Save atomically as a byte-reproducible ``.keras`` archive."""

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".save-") as tmpdir:
        raw = Path(tmpdir) / "raw.keras"
        model.save(raw)
        with atomic_path(target) as final:
            canonicalize_keras_archive(raw, final)
    return target


def archive_modules(path: Path) -> list[str]:
    """The user modules (a custom model's registered layers) a ``.keras`` archive names."""

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []  # not an archive Keras can read either: it says so, in load_model
    return config_modules(config)


def import_user_modules(path: Path) -> None:
    """Keras imports only its own modules while loading; a custom layer's module must already
    be imported so that its registered class is known. Only modules the archive names as the
    home of a registered class are imported; nothing in the file itself runs."""

    import_all(archive_modules(path), f"model file {str(path)!r}")


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load with ``safe_mode=True``: a model file may not run arbitrary code.

    Whatever Keras refuses (a ``Lambda`` layer holding Python code, an unknown layer, a
    damaged archive) is one line naming the file, not a traceback: the file is the user's.
    The modules of a custom model's registered layers are imported first (from the project
    root or the installed packages).
    """
    import keras

    from gapline import layers  # noqa: F401  (registers gapline's serializable layers)

    p = Path(path)
    if not p.is_file():
        raise GaplineError(f"model file {str(p)!r} does not exist: expected a trained model (run `dvc repro`)")
    import_user_modules(p)
    try:
        return keras.saving.load_model(p, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras refuses with ValueError, TypeError, zip and OS errors
        reason = one_line(exc)[:1000]
        raise GaplineError(
            f"model file {str(p)!r} cannot be loaded in safe mode (safe_mode=True: a model file may not "
            f"run code; only Keras and gapline layers load): {reason}"
        ) from exc
