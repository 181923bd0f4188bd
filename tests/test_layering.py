"""The package layering of DESIGN.md, read from the source with ``ast`` (nothing imported):

* ``dicom_io``, ``model`` and ``db`` import nothing from ``worker`` but ``worker.errors``;
  ``worker.errors`` imports nothing of usqa;
* ``db`` never imports torch or ``model`` (the worker passes the defect vocabulary in);
* no SQL in ``worker/``: no SQLAlchemy import and no statement run on a session outside
  ``worker/commands/db.py`` (worker code opens a transaction with ``db.session_scope`` and
  hands the session to ``db`` functions);
* no import cycle between modules (imports run at import time; imports inside functions
  and under ``TYPE_CHECKING`` are deliberate late imports and are not counted).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("worker", "dicom_io", "model", "db")
SESSION_CALLS = {"execute", "scalar", "scalars", "query", "begin_nested", "add", "add_all"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    _module_name(p): p
    for package in PACKAGES
    for p in sorted((ROOT / package).rglob("*.py"))
    if "migrations" not in p.parts
}


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The modules an ``from X import a, b`` names (``X.a`` where that is a module)."""
    if node.level:
        base = module.split(".")
        if MODULES[module].name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    names = [f"{target}.{alias.name}" for alias in node.names]
    return [n for n in names if n in MODULES] or [target]


def _imports(module: str, top_level_only: bool) -> Iterator[tuple[str, int]]:
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    nodes: list[ast.AST] = list(tree.body) if top_level_only else list(ast.walk(tree))
    while nodes:
        node = nodes.pop(0)
        type_checking = isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        if top_level_only and type_checking:
            continue
        if top_level_only and isinstance(node, (ast.If, ast.Try, ast.With)):
            nodes.extend(ast.iter_child_nodes(node))
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            for name in _resolve(module, node):
                yield name, node.lineno


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_lower_packages_import_only_the_error_tree_from_worker() -> None:
    found = [
        f"{module}:{line} imports {name}"
        for module in MODULES
        if not _within(module, "worker")
        for name, line in _imports(module, top_level_only=False)
        if _within(name, "worker") and name != "worker.errors"
    ]
    assert not found, found


def test_the_error_tree_imports_nothing_of_usqa() -> None:
    found = [
        name
        for name, _ in _imports("worker.errors", top_level_only=False)
        if any(_within(name, p) for p in PACKAGES)
    ]
    assert not found, found


def test_db_never_imports_torch_or_the_model() -> None:
    found = [
        f"{module}:{line} imports {name}"
        for module in MODULES
        if _within(module, "db")
        for name, line in _imports(module, top_level_only=False)
        if any(_within(name, p) for p in ("torch", "torchvision", "model"))
    ]
    assert not found, found


def _session_statements(path: Path) -> Iterator[int]:
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SESSION_CALLS
            and isinstance(node.func.value, ast.Name)
            and "session" in node.func.value.id
        ):
            yield node.lineno


def test_no_sql_in_worker() -> None:
    found = []
    for module, path in MODULES.items():
        if not _within(module, "worker") or module == "worker.commands.db":
            continue
        found += [
            f"{module}:{line} imports {name}"
            for name, line in _imports(module, top_level_only=False)
            if _within(name, "sqlalchemy")
        ]
        found += [f"{module}:{line} runs a statement" for line in _session_statements(path)]
    assert not found, found


def test_no_import_cycles() -> None:
    graph = {
        module: {
            name
            for name, _ in _imports(module, top_level_only=True)
            if name in MODULES and name != module and not module.startswith(name + ".")
        }
        for module in MODULES
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, [" -> ".join(c) for c in cycles]
