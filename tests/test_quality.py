"""The code stays lint-clean and type-checks (ruff and mypy over the package)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is part of the test extra: pip install -e '.[test]'")
    lint = run(ruff, "check", ".")
    assert lint.returncode == 0, lint.stdout
    fmt = run(ruff, "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout


def test_package_type_checks():
    result = run(sys.executable, "-m", "mypy", "wxmp", "--ignore-missing-imports")
    assert result.returncode == 0, result.stdout
