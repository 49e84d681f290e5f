"""gapline's import graph is acyclic, counting every import statement: at module level and
inside functions (a function-local import hides a cycle, it does not remove it). The rules of
docs/architecture.md: ruff (``make lint``) keeps imports at the top except for the modules
that are slow to import; this test keeps the graph a DAG, and the packages in layers: each
imports only the packages below it in ``LAYERS``."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "gapline"

# gapline's packages from the bottom up (docs/architecture.md): a module may import its own
# package and the ones before it, never one after it.
LAYERS = ("core", "config", "data", "layers", "models", "evaluate", "tracking", "train", "experiments", "retrain", "stages", "cli")


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """Module -> the gapline modules it imports anywhere in its file."""
    mods = _modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                hit = resolve(target) if target.startswith(root.name) else None
                # a package's __init__ re-exporting its children is not a cycle
                if hit and hit != module and not hit.startswith(module + ".") and not (
                    path.name == "__init__.py" and hit.startswith(module)
                ):
                    graph[module].add(hit)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_gaplines_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "gapline.stages.train" in graph
    assert cycles(graph) == [], "import cycles (docs/architecture.md: the graph must stay a DAG)"


def test_the_check_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    """The same check on a two-module package whose cycle hides in a function-local import."""
    package = tmp_path / "gapline"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import f\n")
    (package / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    assert cycles(import_graph(package)) == [["gapline.a", "gapline.b"]]
    (package / "b.py").write_text("def f():\n    return 1\n")
    assert cycles(import_graph(package)) == []


def layer(module: str) -> str:
    """The package (or top-level module) of ``gapline.<package>.<...>``."""
    return module.split(".")[1] if "." in module else ""


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a package above the importer's own in ``LAYERS``."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            a, b = layer(module), layer(target)
            if a and b and a != b and LAYERS.index(b) > LAYERS.index(a):
                found.append(f"{module} -> {target}")
    return found


def test_every_package_is_in_a_layer() -> None:
    assert {layer(m) for m in import_graph()} - {""} == set(LAYERS)


def test_packages_import_only_the_layers_below_them() -> None:
    assert upward_imports(import_graph()) == [], "docs/architecture.md: a package imports only the ones below it"


def test_the_check_finds_an_upward_import(tmp_path: Path) -> None:
    package = tmp_path / "gapline"
    for sub in ("core", "stages"):
        (package / sub).mkdir(parents=True)
        (package / sub / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "stages" / "x.py").write_text("")
    (package / "core" / "y.py").write_text("def f():\n    from gapline.stages import x\n")
    assert upward_imports(import_graph(package)) == ["gapline.core.y -> gapline.stages", "gapline.core.y -> gapline.stages.x"]
