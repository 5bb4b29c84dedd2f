"""The policy is one package: its sections import only the reader (no import cycle), the
encryption code does not depend on it, every section of Policy is required, and every name the
repository imports from ``hms_dr.policy`` is there."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import hms_dr.policy
from hms_dr.policy import Policy

REPO_ROOT = Path(__file__).resolve().parents[3]
PLUGINS = REPO_ROOT / "plugins"
POLICY_PACKAGE = PLUGINS / "hms_dr" / "policy"
SECTION_MODULES = sorted(path for path in POLICY_PACKAGE.glob("*.py") if path.name != "__init__.py")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at top level, under TYPE_CHECKING or inside a function;
    ``from a import b`` counts as ``a.b`` when that is a module, else as ``a``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path.name} uses a relative import"
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                is_module = (PLUGINS / Path(*dotted.split("."))).with_suffix(".py").exists() or (
                    PLUGINS / Path(*dotted.split(".")) / "__init__.py"
                ).exists()
                found.add(dotted if is_module else node.module)
    return found


def module_path(name: str) -> Path | None:
    base = PLUGINS / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def reachable_engine_modules(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        path = module_path(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        todo.extend(m for m in imported_modules(path) if m.startswith("hms_dr"))
    return seen


@pytest.mark.parametrize("section", SECTION_MODULES, ids=lambda path: path.stem)
def test_a_section_module_takes_only_the_reader_from_the_policy_package(section: Path) -> None:
    from_policy = {m for m in imported_modules(section) if m == "hms_dr.policy" or m.startswith("hms_dr.policy.")}
    allowed = set() if section.stem == "reader" else {"hms_dr.policy.reader"}
    assert from_policy <= allowed, (
        f"{section.name} imports {sorted(from_policy - allowed)}: an import cycle in the making"
    )


@pytest.mark.parametrize("module", ["hms_dr.crypto", "hms_dr.encryption_mode"])
def test_the_encryption_code_does_not_depend_on_the_policy(module: str) -> None:
    policy_modules = {
        m for m in reachable_engine_modules(module) if m == "hms_dr.policy" or m.startswith("hms_dr.policy.")
    }
    assert policy_modules == set()


def test_every_section_of_the_policy_is_required() -> None:
    optional = [f.name for f in dataclasses.fields(Policy) if "None" in str(f.type) or "Optional" in str(f.type)]
    defaulted = [
        f.name
        for f in dataclasses.fields(Policy)
        if f.name != "raw" and (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
    ]
    assert (optional, defaulted) == ([], [])


def test_every_name_imported_from_the_policy_anywhere_in_the_repository_exists() -> None:
    wanted: dict[str, str] = {}
    for folder in ("plugins", "dags", "tests", "bench"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module == "hms_dr.policy":
                    wanted.update({alias.name: str(path.relative_to(REPO_ROOT)) for alias in node.names})
    assert len(wanted) > 10, "the scan found the repository's imports"
    missing = {name: where for name, where in wanted.items() if not hasattr(hms_dr.policy, name)}
    assert missing == {}
