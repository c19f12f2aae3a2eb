"""The mutation tool's config names real modules, real tests and real code (the run itself is slow)."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_tool():
    spec = importlib.util.spec_from_file_location("wxmp_mutation_tool", ROOT / "tools" / "mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def functions_of(path: Path) -> set[str]:
    """Top-level functions and methods (``async def`` too) as the tool names them: ``f`` and ``Class.method``."""
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    names = set()
    for node in ast.parse(path.read_text("utf-8")).body:
        if isinstance(node, functions):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(f"{node.name}.{n.name}" for n in node.body if isinstance(n, functions))
    return names


def test_modules_and_their_tests_exist():
    config = tool.load_config()
    assert "wxmp/token.py" in config.modules
    for module, tests in config.modules.items():
        assert (ROOT / module).is_file(), module
        for test in tests:  # a test file, or a pytest option naming one (--deselect=FILE::TEST)
            assert (ROOT / test.split("=", 1)[-1].split("::")[0]).is_file(), f"{module}: {test}"


def test_every_equivalent_points_at_live_code():
    config = tool.load_config()
    for eq in config.equivalents:
        path = ROOT / eq.module
        assert eq.function in functions_of(path), f"{eq.module}: no function {eq.function}"
        lines = {line.strip() for line in path.read_text("utf-8").splitlines()}
        for piece in eq.before.split(" ⏎ "):
            assert piece in lines, f"{eq.module} {eq.function}: {piece!r} is not in the source any more"
        assert eq.after != eq.before


def test_entries_without_a_reason_are_refused(tmp_path):
    bad = tmp_path / "mutation.toml"
    bad.write_text(
        '[modules]\n"wxmp/token.py" = ["tests/test_token.py"]\n'
        '[[equivalent]]\nmodule = "wxmp/token.py"\nfunction = "f"\nbefore = "a"\nafter = "b"\nreason = " "\n'
    )
    with pytest.raises(ValueError, match="one-line reason"):
        tool.load_config(bad)
    bad.write_text('[modules]\n"wxmp/token.py" = []\n')
    with pytest.raises(ValueError, match="non-empty list of test files"):
        tool.load_config(bad)


def test_changed_lines_reads_a_unified_diff():
    diff = "--- a.py\n+++ a.py\n@@ -1,2 +1,2 @@\n def f():\n-    return x > 1\n+    return x >= 1"
    assert tool.changed_lines(diff) == ("return x > 1", "return x >= 1")
