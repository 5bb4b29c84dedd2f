"""The layers of the code, as README "Layers" writes them down, read from the import statements
of every product file (any import: at module level, inside a function, under TYPE_CHECKING):

- DAG files and the UI plugin (``dags/``, ``plugins/hms_status_plugin.py``) import Airflow, the
  Airflow edge (``hms_dr.tasks``) and what they need of the engine; never the sandbox.
- The Airflow edge, ``hms_dr.tasks``, adapts: Airflow's context, params and Connections in, one
  engine call, a record out. Nothing below it imports it.
- The development sandbox, ``hms_dr.sandbox``, drives the engine and Airflow for the demo and the
  tests; nothing of the product imports it.
- The engine, every other ``hms_dr`` module: plain Python that never imports Airflow, the edge or
  the sandbox, and whose modules import each other without a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE_ROOT = REPO / "plugins"
ENTRY_POINTS = [*sorted((REPO / "dags").glob("*.py")), PACKAGE_ROOT / "hms_status_plugin.py"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path, module: str | None, modules: frozenset[str] = frozenset()) -> set[str]:
    """Every module a file names in an import: ``from a.b import c`` names a.b.c when that is one
    of ``modules`` (a submodule), else a.b, whose ``c`` it reads (and a.b.c, for names outside)."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else (module or "").rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)] if package else []
                base = ".".join([*anchor, *([base] if base else [])])
            submodules = {f"{base}.{alias.name}" for alias in node.names}
            names.update(submodules)
            if not submodules <= modules:
                names.add(base)
    return names


def engine_graph() -> dict[str, set[str]]:
    """hms_dr module -> the hms_dr modules it imports (package names resolve to their __init__)."""
    files = {module_name(path): path for path in (PACKAGE_ROOT / "hms_dr").rglob("*.py")}
    modules = frozenset(files)
    return {module: {name for name in imported_names(path, module, modules) if name in files and name != module}
            for module, path in files.items()}


def layer(module: str) -> str:
    if module == "hms_dr.tasks" or module.startswith("hms_dr.tasks."):
        return "edge"
    if module == "hms_dr.sandbox" or module.startswith("hms_dr.sandbox."):
        return "sandbox"
    return "engine"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def is_airflow(name: str) -> bool:
    return name == "airflow" or name.startswith("airflow.")


def test_the_engine_never_imports_airflow_the_edge_or_the_sandbox() -> None:
    files = {module_name(path): path for path in (PACKAGE_ROOT / "hms_dr").rglob("*.py")}
    upward = sorted(
        f"{module} imports {name}"
        for module, path in files.items() if layer(module) == "engine"
        for name in imported_names(path, module)
        if is_airflow(name) or (name.startswith("hms_dr.") and layer(name) != "engine")
    )
    assert upward == []


def test_nothing_of_the_product_imports_the_sandbox() -> None:
    files = {module_name(path): path for path in (PACKAGE_ROOT / "hms_dr").rglob("*.py")}
    product = [(module, path) for module, path in files.items() if layer(module) != "sandbox"]
    product += [(None, path) for path in ENTRY_POINTS]
    offending = sorted(f"{module or path.name} imports {name}" for module, path in product
                       for name in imported_names(path, module) if layer(name) == "sandbox" and name.startswith("hms_dr"))
    assert offending == []


def test_no_import_cycle_among_the_modules() -> None:
    assert cycles(engine_graph()) == []


def test_the_cycle_finder_finds_a_cycle_and_a_clean_graph_has_none() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    graph = engine_graph()
    assert "hms_dr.errors" in graph["hms_dr.manifest"]  # the reader sees real imports
