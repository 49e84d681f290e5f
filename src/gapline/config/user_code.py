"""The user's own code: where a ``model.builder`` lives, importing it, and the modules a saved
model needs imported before Keras can load it.

A builder is found from the project root (the folder holding ``conf/``) or any installed
package. Its *source* is what ``dvc repro`` watches and what an MLflow model ships: the
top-level package folder when the module is inside a package (a builder's helpers change
results too), else the single ``.py`` file.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gapline.config import backbone_weights
from gapline.config.checks import builder_parts
from gapline.config.provenance import file_md5, folder_digest
from gapline.config.schema import MODELS_SCHEME
from gapline.core.errors import ConfigError, GaplineError, bad_value, one_line

# The stand-in dependency when a model config names no file: train and evaluate import it.
STAND_IN = "src/gapline/models/saving.py"
# Modules Keras resolves itself; anything else named in a model config is the user's.
KERAS_OWN = ("keras", "gapline", "builtins", "tensorflow", "jax", "torch", "numpy")


def project_on_path(root: str | os.PathLike[str] | None = None) -> Path:
    """Put the project root first on ``sys.path`` (a console script starts from its bin/)."""
    here = Path(root or os.getcwd()).resolve()
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    return here


def module_origin(module: str, key: str = "model.builder", shown: str = "") -> tuple[Path, bool]:
    """``(path, is_package)`` of the top-level package (or lone module) holding ``module``,
    found without running any of its code."""
    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError) as exc:
        spec, reason = None, str(exc)
    else:
        reason = "not found"
    if spec is None or not (spec.origin or spec.submodule_search_locations):
        raise ConfigError(
            bad_value(key, shown or module, f"an importable module: {top!r} {reason} from {os.getcwd()} or the installed packages")
        )
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]), True
    return Path(str(spec.origin)), False


def builder_source(builder: str, root: str | os.PathLike[str] | None = None) -> str:
    """``model.deps.builder``: the builder's package folder or file, relative to the project when
    inside it (what dvc.yaml names as a train dependency)."""
    if not builder.strip():
        return STAND_IN
    here = project_on_path(root)
    module, func = builder_parts(builder)
    path, is_package = module_origin(module, shown=builder)
    check_defined(builder, module, func, path, is_package)
    try:
        return path.resolve().relative_to(here).as_posix()
    except ValueError:
        return str(path.resolve())


def _module_file(module: str, top: Path, is_package: bool) -> Path | None:
    """The source file of ``module`` inside its top-level package ``top`` (None when it is
    not a plain ``.py`` file there: a namespace or compiled module)."""
    parts = module.split(".")[1:]
    if not is_package:
        return top if not parts and top.suffix == ".py" else None
    base = top.joinpath(*parts)
    for candidate in (base.with_suffix(".py") if parts else None, base / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def check_defined(builder: str, module: str, func: str, top: Path, is_package: bool) -> None:
    """A typo in ``model.builder``'s module or function, found by reading the module's source
    (no code of the user's runs): when composing, not minutes later when ``train`` starts."""
    source = _module_file(module, top, is_package)
    inner = module.split(".")[1:]
    if source is None:
        base = top.joinpath(*inner)
        if is_package and inner and not base.exists() and not any(base.parent.glob(base.name + ".*")):
            raise ConfigError(bad_value("model.builder", builder, f"an importable module: {module!r} is not in {top}"))
        return
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return  # importing it says what is wrong, with the file and line, when train starts
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(alias.name == "*" for alias in node.names):
                return  # what a star import brings is known only by running it
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        else:  # assignments, and whatever an if/try/with block may define (generously)
            for inner_node in ast.walk(node):
                if isinstance(inner_node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(inner_node.name)
                elif isinstance(inner_node, ast.Name) and isinstance(inner_node.ctx, ast.Store):
                    names.add(inner_node.id)
                elif isinstance(inner_node, (ast.Import, ast.ImportFrom)):
                    names.update((alias.asname or alias.name).split(".")[0] for alias in inner_node.names)
    if func not in names:
        defined = sorted(n for n in names if not n.startswith("_"))
        raise ConfigError(
            bad_value("model.builder", builder, f"a function that {module} ({source}) defines: "
                      f"{', '.join(defined) if defined else 'it defines none'}; no {func!r}")
        )


def weights_dep(value: str, backbone: str) -> str:
    """``model.deps.weights``: as :func:`dep_path`; a weights file of another network than
    ``model.backbone`` is refused here, when composing (read from the file, under a second)."""
    path = dep_path(value)
    if path != STAND_IN and Path(path).is_file():
        why = backbone_weights.misfit(Path(path), backbone)
        if why:
            raise ConfigError(bad_value("model.weights", value, f"{backbone_weights.expected(backbone)}; {why}"))
    return path


def dep_path(value: str) -> str:
    """``model.deps.weights``/``init_from``: a local file the train stage reads, or the stand-in
    when there is none (``none``, empty, or a registry URI that DVC cannot hash)."""
    if not value.strip() or value == "none" or value.startswith(MODELS_SCHEME):
        return STAND_IN
    return value


def import_module(module: str, key: str, shown: str = "") -> Any:
    """Import one of the user's modules; its failure is one line naming the config key and
    the value as configured (``shown``)."""
    project_on_path()
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's module may raise anything at import
        raise ConfigError(
            bad_value(key, shown or module, f"a module {module!r} that imports cleanly ({one_line(exc)[:300]})")
        ) from None


def import_builder(builder: str) -> Callable[..., Any]:
    """The builder function named by ``model.builder``."""
    module, func = builder_parts(builder)
    target = getattr(import_module(module, "model.builder", builder), func, None)
    if not callable(target):
        raise ConfigError(bad_value("model.builder", builder, f"a function {func!r} defined in module {module!r}"))
    return target


def named_modules(config: Any) -> set[str]:
    """Every module a serialized Keras config names as the home of a registered object."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("module"), str) and "registered_name" in node:
                found.add(node["module"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def config_modules(config: Any) -> list[str]:
    """The user modules a Keras model config names (its registered custom objects), sorted."""
    return sorted(m for m in named_modules(config) if m.split(".")[0] not in KERAS_OWN)


def import_all(modules: Iterable[str], what: str) -> None:
    """Import the modules a saved model names, so their registered layers exist before loading."""
    for module in modules:
        project_on_path()
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - same as import_module, worded for a model file
            raise GaplineError(
                f"{what} needs module {module!r} (it defines the model's custom layers), which does not import "
                f"here ({one_line(exc)[:300]}): run from the project that defines it, or install it"
            ) from None


def module_sources(modules: Iterable[str]) -> dict[str, Path]:
    """Top-level name → package folder or file, for shipping the user's code with a model."""
    out: dict[str, Path] = {}
    for module in modules:
        path, _ = module_origin(module, "model code")
        out[module.split(".")[0]] = path
    return out


def model_files_digest(deps: dict[str, str], init_from: str = "") -> dict[str, str]:
    """What the files behind a model config hold (``model.deps``: the builder's package, a
    weights file, a warm-start model): a saved training state or a cached study job is valid
    only for the same bytes. A registry ``init_from`` counts by its URI (DVC cannot hash it
    either)."""

    out: dict[str, str] = {}
    for key, value in sorted(deps.items()):
        path = Path(value)
        if value == STAND_IN:
            continue
        if path.is_dir():
            out[key] = folder_digest(path)  # every file, as DVC hashes the folder
        elif (digest := file_md5(path)) is not None:
            out[key] = digest
    if init_from.startswith(MODELS_SCHEME):
        out["init_from"] = init_from
    return out
