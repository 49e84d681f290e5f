"""conf/ → params.yaml, and the drift check that keeps ``dvc repro`` honest about conf/ edits.

DVC composes params.yaml from conf/ only on ``dvc exp run -S``; plain ``dvc repro`` reads
params.yaml as it is. So params.yaml carries ``meta.conf_digest``, a digest of conf/ taken
when it was composed (by ``gapline params`` or by DVC, through the resolver registered from
``hydra_plugins.gapline_schema``). Every stage compares it with conf/ as it is now and stops
with one line when they differ: an edit under conf/ is never silently ignored.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from gapline.config.checks import from_container, omegaconf_error_line
from gapline.config.provenance import folder_digest
from gapline.config.schema import BUILTIN_SOURCES, Config, register_schema
from gapline.config.user_code import builder_source, dep_path, weights_dep
from gapline.core.errors import ConfigError, GaplineError
from gapline.core.files import write_text

CONF_DIR = "conf"
CONFIG_NAME = "config"
PARAMS_FILE = "params.yaml"
# The last params.yaml this workspace composed (`gapline params`) or checked (the config
# stage): what a failed `dvc exp run -S`, which composes from conf/ anew, is rolled back to.
LAST_PARAMS = Path(".gapline/params.last.yaml")
DIGEST_RESOLVER = "gapline_conf_digest"
BUILDER_RESOLVER = "gapline_builder_source"
DEP_RESOLVER = "gapline_dep_path"
DATA_DEP_RESOLVER = "gapline_data_dep"
WEIGHTS_RESOLVER = "gapline_weights_dep"
# The built-in sets' loader: what prepare depends on for them instead of data.path.
BUILTIN_DATA_DEP = "src/gapline/data/bundled.py"


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The project root: the nearest folder up from ``start`` holding ``conf/config.yaml``."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONF_DIR / f"{CONFIG_NAME}.yaml").is_file():
            return folder
    raise ConfigError(
        f"no {CONF_DIR}/{CONFIG_NAME}.yaml found in {here} or its parents: "
        "expected to run inside a gapline project"
    )


def conf_digest(conf_dir: str | os.PathLike[str]) -> str:
    """Digest of every YAML file under conf/ (relative path and bytes, sorted)."""
    return folder_digest(Path(conf_dir), (".yaml", ".yml"))


def _resolve_digest() -> str:
    return conf_digest(find_root() / CONF_DIR)


def data_dep(source: str, path: str) -> str:
    """``data.dep``: ``path`` for a source read from files, the loader for a built-in set."""
    return BUILTIN_DATA_DEP if source in BUILTIN_SOURCES else path


def register_resolver() -> None:
    """Register ``${gapline_conf_digest:}`` so composition stamps params.yaml with conf/'s
    digest, and the ``model.deps`` resolvers that name the model's files for dvc.yaml."""
    from omegaconf import OmegaConf

    resolvers: dict[str, Callable[..., Any]] = {
        DIGEST_RESOLVER: _resolve_digest, BUILDER_RESOLVER: builder_source, DEP_RESOLVER: dep_path, DATA_DEP_RESOLVER: data_dep,
        WEIGHTS_RESOLVER: weights_dep,
    }
    for name, func in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, func)


def compose(overrides: Sequence[str] = (), root: str | os.PathLike[str] | None = None) -> Any:
    """Compose conf/ with Hydra overrides into a resolved DictConfig (not yet range-checked)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    project = Path(root).resolve() if root else find_root()
    register_schema()
    register_resolver()
    check_group_choices(overrides, project / CONF_DIR)
    overrides = [free_key(o) for o in overrides]
    try:
        # the digest resolver looks for conf/ from the working directory
        with contextlib.chdir(project), initialize_config_dir(str(project / CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))
            OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        # ValueError: Hydra's defaults list refuses e.g. `experiment=null` that way
        raise ConfigError(hydra_error_line(exc)) from None
    return cfg


# Free-form dicts: their keys are the user's (a builder's keyword arguments), not the schema's.
FREE_DICTS = ("model.kwargs.",)


def free_key(override: str) -> str:
    """``model.kwargs.depth=3`` adds the key (Hydra's ``++``) instead of refusing a key the
    empty dict lacks; with ``dvc exp run -S`` write ``++model.kwargs.depth=3`` yourself."""
    if override.startswith(FREE_DICTS) and "=" in override:
        return "++" + override
    return override


def check_group_choices(overrides: Sequence[str], conf_dir: Path) -> None:
    """``group=null`` is not a choice (Hydra answers with a bare ValueError): name the group."""
    for override in overrides:
        key, sep, value = override.partition("=")
        group = conf_dir / key.lstrip("+~")
        if sep and value.strip() in ("null", "None", "") and group.is_dir():
            options = sorted(p.stem for p in group.glob("*.yaml"))
            shown = value.strip() or "''"
            raise ConfigError(f"{key}={shown} is not allowed: expected one of {', '.join(options)}")


def hydra_error_line(exc: BaseException) -> str:
    """Hydra wraps OmegaConf errors in several lines; keep the part that names key and value."""
    from omegaconf.errors import OmegaConfBaseException

    chain = [exc]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    if isinstance(chain[-1].__context__, ConfigError):  # one of our resolvers: already one line
        return str(chain[-1].__context__)
    # The outermost OmegaConf error is the formatted one (key, value). Under a tracer (a
    # debugger, coverage) OmegaConf also chains the raw error it formatted, message template
    # and all, as its __cause__: never report that one.
    formatted = next((e for e in chain if isinstance(e, OmegaConfBaseException)), None)
    if formatted is not None:
        return omegaconf_error_line(formatted)
    raw = [ln for ln in str(exc).splitlines() if ln.strip()]
    if not raw:
        return type(exc).__name__
    # "In 'config': Could not find 'regularization/foo'", "Available options in ...:",
    # then one tab-indented option a line, then the search path (dropped).
    text = raw[0].strip()
    if len(raw) > 1 and raw[1].startswith("Available options"):
        opts = []
        for ln in raw[2:]:
            if not ln.startswith("\t"):
                break
            opts.append(ln.strip())
        text += "; expected one of: " + ", ".join(opts)
    return text


def compose_config(overrides: Sequence[str] = (), root: str | os.PathLike[str] | None = None) -> Config:
    """Compose and fully validate: what ``gapline params`` and the CLI entry points use."""
    return from_container(_plain(compose(overrides, root)))


def _plain(cfg: Any) -> Any:
    """A plain dict: Hydra's ``+key=value`` can slip an unknown key into a DictConfig that a
    structured merge then drops silently; from a plain dict it is refused."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def write_params(
    overrides: Sequence[str] = (), root: str | os.PathLike[str] | None = None
) -> Path:
    """Compose conf/ (+ overrides), validate, and write params.yaml atomically."""
    from omegaconf import OmegaConf

    project = Path(root).resolve() if root else find_root()
    cfg = compose(overrides, project)
    from_container(_plain(cfg))  # check types, keys and ranges before anything is written
    target = project / PARAMS_FILE
    write_text(target, OmegaConf.to_yaml(cfg))
    remember(target)
    return target


def remember(params: Path) -> None:
    """Keep ``params`` as the last good params.yaml of its project."""
    write_text(params.resolve().parent / LAST_PARAMS, params.read_text(encoding="utf-8"))


def check_params(path: str | os.PathLike[str] = PARAMS_FILE) -> Config:
    """:func:`load_params` for the config stage: a params.yaml that passes is remembered as the
    last good one; one that fails under ``dvc exp run`` is rolled back (:func:`undo_experiment`)
    and the error says why."""
    params = Path(path)
    try:
        cfg = load_params(params)
    except GaplineError as exc:
        why = undo_experiment(params)
        raise type(exc)(f"{exc} ({why})" if why else str(exc)) from None
    remember(params)
    return cfg


def undo_experiment(params: Path) -> str:
    """Under ``dvc exp run`` (DVC sets ``DVC_EXP_NAME``), a params.yaml that failed its check
    was composed by DVC from conf/ and the ``-S`` overrides alone: put back the last good
    one and say why it failed. Outside an experiment: nothing ("")."""
    if not os.environ.get("DVC_EXP_NAME"):
        return ""
    why = (
        "dvc exp run -S composed params.yaml from conf/ and its -S overrides alone, without the choices "
        "of an earlier `gapline params` (pass those as -S too, e.g. -S model=custom)"
    )
    last = params.resolve().parent / LAST_PARAMS
    if last.is_file() and (not params.is_file() or last.read_bytes() != params.read_bytes()):
        write_text(params, last.read_text(encoding="utf-8"))
        why += f"; {params.name} is back as it was before the experiment"
    return why


def load_params(
    path: str | os.PathLike[str] = PARAMS_FILE, *, check_drift: bool = True
) -> Config:
    """Read params.yaml, validate it, and refuse it if conf/ changed since it was composed."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"{p} does not exist: expected the composed config; run `gapline params` to create it"
        )
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_line(p, exc)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p} holds {type(raw).__name__}: expected a mapping of config groups")
    cfg = from_container(raw)
    if check_drift:
        check_conf_drift(cfg, p.resolve().parent)
    return cfg


def yaml_error_line(path: Path, exc: Exception) -> str:
    """PyYAML explains a syntax error in five lines with a caret; keep file, line and column."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or type(exc).__name__
    return f"{where}: invalid YAML ({problem}): expected the mapping `gapline params` writes"


def check_conf_drift(cfg: Config, root: str | os.PathLike[str]) -> None:
    """Stop when params.yaml was composed from a different conf/ than the one on disk."""
    conf_dir = Path(root) / CONF_DIR
    if not conf_dir.is_dir():
        return  # params.yaml used outside a project (e.g. a copied run): nothing to compare
    now = conf_digest(conf_dir)
    if cfg.meta.conf_digest != now:
        raise ConfigError(
            f"meta.conf_digest={cfg.meta.conf_digest!r} in params.yaml does not match conf/ "
            f"({now!r}): conf/ was edited after params.yaml was composed; expected "
            "`gapline params [overrides]` (or `dvc exp run -S ...`) to recompose it"
        )
