"""What a model was trained from (data, config, code), recorded as version tags, and what
changed since: a retrain trains only when the champion's recorded state differs from now's."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import gapline
from gapline.config.provenance import config_groups, folder_digest, git_state, json_digest
from gapline.config.schema import MODEL_GROUPS, Config
from gapline.data.meta import PreparedMeta
from gapline.data.prepare import write_prepared

# The config groups the DVC pipeline reads to build the model. ``tracking`` (where results
# go), ``retrain`` (how they are judged), ``study``, ``sweep`` and ``meta`` do not change it.
PIPELINE_GROUPS = MODEL_GROUPS

TAG_DATA = "retrain.data_fingerprint"
TAG_CONFIG = "retrain.config_digest"
TAG_CODE = "retrain.code_digest"
TAG_VERSION = "gapline.version"
TAG_COMMIT = "git.commit"

# What is compared, by name: the code counts as changed when its digest or gapline's version does.
COMPARED = {"data": TAG_DATA, "config": TAG_CONFIG, "code": (TAG_CODE, TAG_VERSION)}


def config_digest(cfg: Config) -> str:
    """Digest of the config groups that determine the model (:data:`PIPELINE_GROUPS`), less
    the output-only keys (``data.workers``, ``train.verbose``...): they change no byte of the
    data or the model (and a champion recorded before they existed keeps its digest)."""
    return json_digest(config_groups(cfg, PIPELINE_GROUPS))


def code_dir(root: Path) -> Path:
    """The package sources the pipeline's DVC stages depend on: ``<root>/src/gapline`` when the
    project has it (DVC hashes that folder too), else the installed package."""
    local = root / "src" / "gapline"
    if (local / "__init__.py").is_file():
        return local

    return Path(gapline.__file__).resolve().parent


def code_digest(folder: Path) -> str:
    """Digest of every ``.py`` file under ``folder`` (relative path and bytes, sorted)."""
    return folder_digest(folder, (".py",))


def git_commit(root: Path) -> str:
    """The project's current commit ('' outside git): recorded, never compared."""

    return git_state(root).get("git.commit", "")


@dataclass
class State:
    """What a model is trained from. ``git_commit`` is recorded but not compared: a commit that
    touches neither code nor config (docs, say) does not call for a new model."""

    data_fingerprint: str
    config_digest: str
    code_digest: str
    gapline_version: str
    git_commit: str = ""

    def tags(self) -> dict[str, str]:
        tags = {
            TAG_DATA: self.data_fingerprint,
            TAG_CONFIG: self.config_digest,
            TAG_CODE: self.code_digest,
            TAG_VERSION: self.gapline_version,
        }
        if self.git_commit:
            tags[TAG_COMMIT] = self.git_commit
        return tags


def current_state(
    cfg: Config,
    root: Path,
    fingerprint: str | None = None,
    inspect: Callable[[Path, PreparedMeta], None] | None = None,
) -> State:
    """The state a retrain would train from now. The data fingerprint is recomputed from the
    source (the same value ``prepare`` writes to meta.json) unless given: the splits are
    streamed to a scratch folder and dropped, so a set larger than memory fingerprints too.
    ``inspect(folder, meta)`` sees that prepared folder before it is dropped (the drift check
    samples it)."""

    if fingerprint is None:
        scratch = Path(root).resolve() / ".gapline"
        scratch.mkdir(parents=True, exist_ok=True)
        with contextlib.chdir(root), tempfile.TemporaryDirectory(
            dir=scratch, prefix="retrain-data-", ignore_cleanup_errors=True
        ) as tmp:
            meta = write_prepared(cfg, Path(tmp))
            fingerprint = meta.fingerprint
            if inspect is not None:
                inspect(Path(tmp), meta)
    return State(
        data_fingerprint=str(fingerprint),
        config_digest=config_digest(cfg),
        code_digest=code_digest(code_dir(root)),
        gapline_version=gapline.__version__,
        git_commit=git_commit(root),
    )


def what_changed(champion_tags: Mapping[str, str] | None, state: State) -> dict[str, dict[str, str]]:
    """``{"data"|"config"|"code": {"champion": old, "current": new}}``; ``{"champion": ...}``
    when there is no champion, or it has no recorded state (promoted by hand from a version
    that no retrain produced). Empty: nothing changed."""
    if champion_tags is None:
        return {"champion": {"champion": "none", "current": "no champion yet"}}
    now = state.tags()
    if not all(champion_tags.get(t) for t in (TAG_DATA, TAG_CONFIG, TAG_CODE)):
        return {"champion": {"champion": "no recorded state", "current": "unknown what it was trained from"}}
    changed: dict[str, dict[str, str]] = {}
    for what, keys in COMPARED.items():
        keys = keys if isinstance(keys, tuple) else (keys,)
        old = " ".join(str(champion_tags.get(k, "")) for k in keys)
        new = " ".join(now[k] for k in keys)
        if old != new:
            changed[what] = {"champion": old, "current": new}
    return changed
