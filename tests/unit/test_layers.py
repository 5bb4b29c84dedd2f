"""The layers of the code, as README "Layers" writes them down, read from the import statements
of every file of the product and of the sandbox (any import: at module level, inside a function,
under TYPE_CHECKING):

- DAG files and the UI plugin (``dags/``, ``plugins/hms_status_plugin.py``) import Airflow, the
  Airflow edge (``hms_dr.tasks``) and what they need of the engine; never the sandbox.
- The Airflow edge, ``hms_dr.tasks``, adapts: Airflow's context, params and Connections in, one
  engine call, a record out. Nothing below it imports it.
- The development sandbox, ``hms_sandbox`` (``sandbox/``, beside ``plugins/``, never mounted into
  production), drives the engine and Airflow for the demo and the tests; it may import ``hms_dr``,
  and nothing of the product (``plugins/``, ``dags/``) imports it.
- The engine, every other ``hms_dr`` module: plain Python that never imports Airflow, the edge or
  the sandbox, and whose modules import each other without a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE_ROOT = REPO / "plugins"  # the product: what production mounts
SANDBOX_ROOT = REPO / "sandbox"  # the development sandbox, beside it
ENTRY_POINTS = [*sorted((REPO / "dags").glob("*.py")), PACKAGE_ROOT / "hms_status_plugin.py"]


def module_name(path: Path) -> str:
    root = SANDBOX_ROOT if path.is_relative_to(SANDBOX_ROOT) else PACKAGE_ROOT
    parts = list(path.relative_to(root).with_suffix("").parts)
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


def product_files() -> dict[str, Path]:
    """Every module of the hms_dr package (plugins/hms_dr), by name."""
    return {module_name(path): path for path in (PACKAGE_ROOT / "hms_dr").rglob("*.py")}


def sandbox_files() -> dict[str, Path]:
    """Every module of the hms_sandbox package (sandbox/hms_sandbox), by name."""
    return {module_name(path): path for path in (SANDBOX_ROOT / "hms_sandbox").rglob("*.py")}


def engine_graph() -> dict[str, set[str]]:
    """hms_dr and hms_sandbox module -> the modules of the two it imports (package names resolve
    to their __init__)."""
    files = {**product_files(), **sandbox_files()}
    modules = frozenset(files)
    return {
        module: {name for name in imported_names(path, module, modules) if name in files and name != module}
        for module, path in files.items()
    }


def layer(module: str) -> str:
    if module == "hms_dr.tasks" or module.startswith("hms_dr.tasks."):
        return "edge"
    if module == "hms_sandbox" or module.startswith("hms_sandbox."):
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
    files = product_files()
    upward = sorted(
        f"{module} imports {name}"
        for module, path in files.items()
        if layer(module) == "engine"
        for name in imported_names(path, module)
        if is_airflow(name) or (name.startswith(("hms_dr.", "hms_sandbox")) and layer(name) != "engine")
    )
    assert upward == []


def test_the_sandbox_lives_outside_the_product() -> None:
    # plugins/ is what production mounts: the sandbox package is beside it, not in it.
    assert sandbox_files(), "no sandbox package found under sandbox/hms_sandbox"
    assert all(layer(module) == "sandbox" for module in sandbox_files())
    assert [layer(module) for module in product_files() if layer(module) == "sandbox"] == []
    inside = [path.relative_to(REPO).as_posix() for path in PACKAGE_ROOT.rglob("*.py")]
    assert [path for path in inside if "sandbox" in path] == []


def test_nothing_of_the_product_imports_the_sandbox() -> None:
    product: list[tuple[str | None, Path]] = list(product_files().items())
    product += [(None, path) for path in sorted({*ENTRY_POINTS, *PACKAGE_ROOT.glob("*.py")})]
    offending = sorted(
        f"{module or path.name} imports {name}"
        for module, path in product
        for name in imported_names(path, module)
        if layer(name) == "sandbox"
    )
    assert offending == []


def test_the_sandbox_may_import_the_engine() -> None:
    # The sandbox drives the engine; the tests above keep the product from importing it back,
    # and the cycle check below reads both packages together.
    assert "hms_dr.files" in engine_graph()["hms_sandbox.lifecycle"]


def test_no_import_cycle_among_the_modules() -> None:
    assert cycles(engine_graph()) == []


def test_the_cycle_finder_finds_a_cycle_and_a_clean_graph_has_none() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    graph = engine_graph()
    assert "hms_dr.errors" in graph["hms_dr.manifest"]  # the reader sees real imports
    assert "hms_sandbox.state" in graph["hms_sandbox.lifecycle"]  # of the sandbox too
