"""The wheel: built with ``python -m build``, it ships the templates and py.typed, and an installed
copy finds its templates through importlib.resources (not through a source checkout)."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ("wxmp_sandbox.html", "wxmp_status.html", "wxmp.css", "wxmp_sandbox.js")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build")
    # Build from a copy: a build in the shared checkout would write build/ and *.egg-info there.
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("wxmp", "templates"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("flask_wxmp-*.whl")
    return wheel


def test_wheel_is_flask_wxmp_importing_as_wxmp(wheel: Path) -> None:
    """`wxmp` on PyPI is an unrelated project: the distribution is flask-wxmp, the import name wxmp."""
    archive = zipfile.ZipFile(wheel)
    (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    headers = archive.read(metadata).decode("utf-8").split("\n\n", 1)[0].splitlines()
    assert "Name: flask-wxmp" in headers
    (top_level,) = {
        n.split("/", 1)[0] for n in archive.namelist() if not n.split("/", 1)[0].endswith(".dist-info")
    }
    assert top_level == "wxmp"


def test_wheel_contains_templates_and_py_typed(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "wxmp/py.typed" in names
    for name in TEMPLATES:
        assert f"wxmp/_templates/{name}" in names
    assert not any(n.startswith("templates/") for n in names)  # not a top-level package
    assert not any("__pycache__" in n for n in names)


def test_installed_wheel_finds_its_templates(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    script = textwrap.dedent(
        """
        import importlib.resources, sys
        from pathlib import Path
        import flask, wxmp
        from wxmp.sandbox import templates_dir

        target = Path(sys.argv[1]).resolve()
        assert Path(wxmp.__file__).resolve().is_relative_to(target), wxmp.__file__
        names = {p.name for p in importlib.resources.files("wxmp._templates").iterdir()}
        assert {"wxmp_sandbox.html", "wxmp_status.html", "wxmp.css", "wxmp_sandbox.js"} <= names, names
        assert templates_dir().resolve().is_relative_to(target), templates_dir()

        app = flask.Flask("wheelcheck", instance_path=sys.argv[2])
        app.testing = True
        app.config.update(WXMP_STATUS=True)
        wx = wxmp.WxMP(app)
        client = app.test_client()
        page = client.get("/wxmp/sandbox")
        assert page.status_code == 200 and b'id="composer"' in page.data, page.status_code
        assert client.get("/wxmp/status").status_code == 200
        assert client.get("/wxmp/assets/wxmp_sandbox.js").status_code == 200
        wx.stop()
        print("ok")
        """
    )
    # -S: no site-packages processing, so the editable install of the checkout cannot answer;
    # dependencies come from this interpreter's site-packages, after the installed wheel.
    path = [str(target), *site.getsitepackages()]
    proc = subprocess.run(
        [sys.executable, "-S", "-c", script, str(target), str(tmp_path / "instance")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
