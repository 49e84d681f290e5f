"""The code a logged MLflow model ships: gapline's loader, and a custom model's own code.

Keras's loader imports only Keras modules, so a model whose layers live in the user's package
loads only where that package imports; ``mlflow models serve`` and ``mlflow.pyfunc.load_model``
usually run without the user's checkout. So the logged model carries the package under
``code/`` with a loader (``code/_gapline_loader.py``, from :mod:`.shipped_loader`) that imports
it before ``mlflow.keras`` loads the model; the MLmodel's ``python_function`` flavor names
both (``code: code``, ``loader_module: _gapline_loader``).

What ships: the top-level package folder (or lone ``.py`` file) of each module the model's
config names as the home of a registered custom object, unless it is an installed package
(site-packages: it is expected installed where the model is served; a warning says so).
gapline itself does not ship: if the model also uses gapline's layers, ``gapline/layers.py``
(Keras-only) ships as ``code/_gapline_layers.py``, imported only where ``gapline.layers``
does not import (a ``code/gapline/`` folder would shadow an installed gapline). A user layer
that imports gapline itself still needs gapline installed. The user package's own
dependencies are not added to the model's pip requirements.

Every model ships the loader, user modules or not: it holds the input contract's check and
the quiet predict (:mod:`.shipped_loader`). A model naming no user module ships the loader and
an empty manifest; its other files are those ``mlflow.keras`` writes.
"""

from __future__ import annotations

import json
import shutil
import site
import sysconfig
from pathlib import Path
from typing import Any

from gapline.config.user_code import config_modules, module_sources, named_modules
from gapline.core.errors import GaplineError, warn
from gapline.tracking.shipped_loader import MANIFEST
from gapline.tracking.store import TrackingError

CODE_DIR = "code"
LOADER = "_gapline_loader"
# gapline's own layer modules that ship under another name, for a machine without gapline.
GAPLINE_STANDINS = {"gapline.layers": "_gapline_layers"}


def _installed(path: Path) -> bool:
    """Whether ``path`` lies in an installed-packages folder (not the user's own code)."""
    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    roots.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    roots.add(site.getusersitepackages())
    resolved = path.resolve()
    return any(resolved.is_relative_to(Path(root).resolve()) for root in roots if root)


def _copy_source(source: Path, code: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, code / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(source, code / source.name)


def ship_code(model: Any, path: str, mlflow_model: Any | None = None) -> list[str]:
    """Copy the loader and the user modules of ``model`` into the saved MLflow model at
    ``path`` and point its ``python_function`` flavor at them. Returns the user modules."""
    import keras

    config = keras.saving.serialize_keras_object(model)
    user = config_modules(config)
    imports: list[tuple[str, str | None]] = [(module, None) for module in user]
    sources: dict[str, Path] = {}
    for module in user:
        try:
            source = module_sources([module])[module.split(".")[0]]
        except GaplineError:
            warn(f"the logged model needs module {module!r}, whose source cannot be found: it does not ship with the model")
            continue
        if _installed(source):
            warn(f"the logged model needs the installed package {module.split('.')[0]!r} where it is served: it does not ship")
            continue
        sources[source.name] = source
    gapline_layers = Path(__file__).resolve().parents[1] / "layers.py"
    standins = {m: GAPLINE_STANDINS[m] for m in sorted(named_modules(config)) if m in GAPLINE_STANDINS}
    imports += [(module, standin) for module, standin in standins.items()]

    code = Path(path) / CODE_DIR
    try:
        code.mkdir(exist_ok=True)
        for source in sources.values():
            _copy_source(source, code)
        for standin in standins.values():
            shutil.copy2(gapline_layers, code / f"{standin}.py")
        shutil.copy2(Path(__file__).with_name("shipped_loader.py"), code / f"{LOADER}.py")
        (code / MANIFEST).write_text(json.dumps({"imports": imports}, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise TrackingError(f"cannot copy the model's code into {str(code)!r}: {exc}") from None
    _point_pyfunc_at_loader(path, mlflow_model)
    return user


def _point_pyfunc_at_loader(path: str, mlflow_model: Any | None) -> None:
    """``loader_module: _gapline_loader`` and ``code: code`` in the MLmodel file (and in the
    in-memory Model that ``Model.log`` may save again); everything else as it was."""
    from mlflow.models import Model
    from mlflow.pyfunc import FLAVOR_NAME

    mlmodel = Path(path) / "MLmodel"
    # Model.log's Model is the one mlflow.keras.save_model just wrote: edit and save it again
    meta = mlflow_model if mlflow_model is not None else Model.load(str(mlmodel))
    flavor = meta.flavors.get(FLAVOR_NAME)
    if flavor is None:
        raise TrackingError(f"the saved model {path!r} has no {FLAVOR_NAME} flavor to give a loader")
    flavor["loader_module"] = LOADER
    flavor["code"] = CODE_DIR
    if getattr(meta, "model_size_bytes", None):
        from mlflow.utils.file_utils import get_total_file_size

        meta.model_size_bytes = get_total_file_size(path) or meta.model_size_bytes
    meta.save(str(mlmodel))
