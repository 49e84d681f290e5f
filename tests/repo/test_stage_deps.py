"""dvc.yaml's code dependencies equal each stage's import closure, so `dvc repro` reacts to
every code change that can change a stage's result, and to nothing else (the CLI's help text,
retraining, the study).

The closure is derived from the code: every ``import``/``from ... import`` of a gapline module,
including the lazy ones inside functions, followed transitively from the module that runs the
stage. Adding an import to a stage's code without declaring the file in dvc.yaml fails here;
``python tests/repo/test_stage_deps.py`` prints each stage's closure to paste into dvc.yaml.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

# What `gapline <stage>` runs besides cli.py: loading params.yaml, then the stage's module.
STAGE_ROOTS = {
    "config": ("gapline.config.params", "gapline.core.files"),
    "prepare": ("gapline.config.params", "gapline.stages.prepare"),
    "augment": ("gapline.config.params", "gapline.stages.augment"),
    "train": ("gapline.config.params", "gapline.stages.train"),
    "evaluate": ("gapline.config.params", "gapline.stages.evaluate"),
}


def module_file(name: str) -> Path | None:
    """The source file of a gapline module or package, or None when ``name`` is not one."""
    base = SRC.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """gapline modules ``path`` imports anywhere in its body (parent packages included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)  # submodules
    modules = set()
    for mod in found:
        if not mod.startswith("gapline"):
            continue
        parts = mod.split(".")
        modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # parents run too
    return {m for m in modules if module_file(m) is not None}


def closure(roots: tuple[str, ...]) -> set[Path]:
    todo = [m for root in roots for m in imported_modules(module_file(root)) | {root}]
    seen: set[str] = set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(imported_modules(module_file(mod)) - seen)
    return {module_file(m).relative_to(ROOT) for m in seen}


def declared(stage: dict) -> set[Path]:
    """The .py files under src/ that a dvc.yaml stage lists as deps (folders expanded)."""
    files: set[Path] = set()
    for dep in stage.get("deps", []):
        path = ROOT / dep
        if not dep.startswith("src/"):
            continue
        assert path.exists(), f"dvc.yaml lists {dep}, which does not exist"
        files.update(p.relative_to(ROOT) for p in (path.rglob("*.py") if path.is_dir() else [path]))
    return files


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def test_every_stage_has_roots() -> None:
    assert set(stages()) == set(STAGE_ROOTS)


@pytest.mark.parametrize("name", sorted(STAGE_ROOTS))
def test_stage_code_deps_equal_its_import_closure(name: str) -> None:
    needed = closure(STAGE_ROOTS[name])
    listed = declared(stages()[name])
    assert not needed - listed, f"dvc.yaml stage {name!r} misses {sorted(map(str, needed - listed))}"
    assert not listed - needed, f"dvc.yaml stage {name!r} lists code it never imports: {sorted(map(str, listed - needed))}"


def test_closure_follows_lazy_and_relative_imports() -> None:
    """The derivation itself: the train stage imports resume/layers only inside functions."""
    train = closure(STAGE_ROOTS["train"])
    assert Path("src/gapline/layers.py") in train
    assert Path("src/gapline/cli.py") not in train
    assert Path("src/gapline/stages/__init__.py") in train


def test_train_params_are_every_train_key_but_the_output_only_ones() -> None:
    """Editing any train key that can change the model reruns train; train.verbose does not."""
    import dataclasses

    from gapline.config.schema import OUTPUT_ONLY, TrainConfig

    listed = [p for p in stages()["train"]["params"] if isinstance(p, str)]
    assert "train" not in listed  # the whole group would include the output-only keys
    keys = {p.split(".", 1)[1] for p in listed if p.startswith("train.")}
    expected = {f.name for f in dataclasses.fields(TrainConfig)} - set(OUTPUT_ONLY["train"])
    assert keys == expected, f"dvc.yaml train params: missing {sorted(expected - keys)}, extra {sorted(keys - expected)}"


def as_deps(files: set[Path]) -> list[str]:
    """``files`` written the way dvc.yaml lists them: a package folder wherever the stage
    imports every module under it, single files elsewhere."""
    deps: list[str] = []

    def walk(folder: Path) -> None:
        for child in sorted((ROOT / folder).iterdir()):
            rel = child.relative_to(ROOT)
            if child.is_dir() and child.name != "__pycache__":
                inside = {p.relative_to(ROOT) for p in child.rglob("*.py")}
                if inside and inside <= files:
                    deps.append(str(rel))
                elif inside & files:
                    walk(rel)
            elif rel in files:
                deps.append(str(rel))

    walk(Path("src/gapline"))
    return deps


def test_deps_are_folders_wherever_a_stage_imports_a_whole_package() -> None:
    """dvc.yaml stays readable: a package the stage imports whole is one folder entry."""
    for name, roots in STAGE_ROOTS.items():
        listed = [d for d in stages()[name]["deps"] if d.startswith("src/")]
        assert listed == as_deps(closure(roots)), f"dvc.yaml stage {name!r}: write its code deps as {as_deps(closure(roots))}"


if __name__ == "__main__":
    for stage_name, roots in STAGE_ROOTS.items():
        print(f"{stage_name}:")
        for dep in as_deps(closure(roots)):
            print(f"      - {dep}")


def test_prepare_depends_on_data_path_only_for_sources_read_from_files(conf_project: Path) -> None:
    """A CSV put under data/raw/ (as the README says) is no dependency of the built-in
    digits: their prepare depends on the loader's module instead (issue #27)."""
    from gapline.config.params import BUILTIN_DATA_DEP, compose
    from gapline.config.schema import BUILTIN_SOURCES
    from gapline.data.prepare import BUNDLED

    assert set(BUILTIN_SOURCES) == set(BUNDLED) and (ROOT / BUILTIN_DATA_DEP).is_file()
    assert "${data.dep}" in stages()["prepare"]["deps"] and "${data.path}" not in stages()["prepare"]["deps"]
    for source in BUILTIN_SOURCES:
        assert compose([f"data={source}"], conf_project).data.dep == BUILTIN_DATA_DEP
    assert compose(["data=csv", "data.path=data/raw/houses.csv"], conf_project).data.dep == "data/raw/houses.csv"
    assert compose(["data=image_folder"], conf_project).data.dep == "data/raw/images"
