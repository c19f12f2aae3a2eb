"""The package's import graph: no cycles, and the core imports neither Flask nor the adapters above it.

Every ``import`` in ``wxmp/`` counts, including those inside functions (a lazy import is still a
dependency); only ``if TYPE_CHECKING:`` blocks are left out, since they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wxmp"

#: Modules above the core: they may import it; nothing in the core may import them.
ADAPTERS = {"wxmp.extension", "wxmp.cli", "wxmp.sandbox", "wxmp.status", "wxmp.pages"}
#: Modules that may import Flask (the adapters, and the testing kit's Flask helpers).
FLASK_OK = ADAPTERS | {"wxmp"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The wxmp modules and the third-party top-level names ``module`` imports at run time."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                name = f"{origin}.{alias.name}"
                targets.add(name if name in modules else origin)
    resolved = set()
    for target in targets:
        if target.split(".")[0] != "wxmp":
            resolved.add(target.split(".")[0])
            continue
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != module:
            resolved.add(target)
    return resolved


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_in_the_package():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_imports_no_adapter():
    graph = _graph()
    offenders = {
        module: sorted(deps & ADAPTERS)
        for module, deps in graph.items()
        if module not in ADAPTERS and module != "wxmp" and deps & ADAPTERS
    }
    assert offenders == {}


@pytest.mark.parametrize("module", ["wxmp.account", "wxmp.middleware", "wxmp.client", "wxmp.token"])
def test_the_core_imports_no_flask(module):
    graph = _graph()
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(d for d in graph.get(current, ()) if d.startswith("wxmp"))
    flask_users = sorted(m for m in seen if "flask" in graph.get(m, set()))
    assert flask_users == []


def test_import_wxmp_and_account_without_flask():
    code = "import sys, wxmp; from wxmp import Account; wxmp.Account; print('flask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
