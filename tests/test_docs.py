"""The documentation: every snippet marked to run does run, in both languages, and the generated
parts (the configuration table) stay in step with the code.

A fenced block preceded by ``<!-- test: ID -->`` is run by this module. Blocks of one page sharing
an ID are one program, in page order, as a reader pasting them one after the other would get: the
Python blocks are joined into a script run in a fresh directory; ``<!-- test: ID file=NAME -->``
writes the block to ``NAME`` there instead, and ``<!-- test: ID pytest -->`` runs pytest in that
directory after writing it (the testing page's conftest and test file, as printed).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from wxmp.config import APP_KEYS, DEFAULTS, DOCS

ROOT = Path(__file__).resolve().parent.parent
DOCS_DIR = ROOT / "docs"
LANGS = ("en", "zh")
MARKER = re.compile(r"^<!-- test: (?P<id>[\w-]+)(?P<opts>(?: [\w.=-]+)*) -->$")
FENCE = re.compile(r"^```(?P<lang>\w*)")


@dataclass
class Snippet:
    """The blocks of one page that share an ID."""

    page: str
    id: str
    blocks: list[tuple[dict[str, str], str, int]] = field(default_factory=list)  # (options, code, line)

    @property
    def runs_pytest(self) -> bool:
        return any("pytest" in opts for opts, _, _ in self.blocks)


def _options(text: str) -> dict[str, str]:
    opts = {}
    for word in text.split():
        name, _, value = word.partition("=")
        opts[name] = value
    return opts


def parse(path: Path) -> dict[str, Snippet]:
    """The marked snippets of one Markdown page, by ID."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: dict[str, Snippet] = {}
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if m is None:
            continue
        where = f"{path.relative_to(ROOT)}:{i + 1}"
        assert i + 1 < len(lines) and FENCE.match(lines[i + 1]), (
            f"{where}: a test marker must precede a fence"
        )
        end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
        code = "\n".join(lines[i + 2 : end]) + "\n"
        snippet = found.setdefault(m["id"], Snippet(path.name, m["id"]))
        snippet.blocks.append((_options(m["opts"]), code, i + 1))
    return found


def pages(lang: str) -> list[Path]:
    return sorted((DOCS_DIR / lang).rglob("*.md"))


def all_snippets() -> list[pytest.param]:
    params = []
    for lang in LANGS:
        for page in pages(lang):
            for snippet in parse(page).values():
                rel = page.relative_to(DOCS_DIR / lang).as_posix()
                params.append(pytest.param(lang, snippet, id=f"{lang}/{rel}:{snippet.id}"))
    return params


def _run(argv: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("FLASK_APP", None)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("lang", "snippet"), all_snippets())
def test_snippet_runs(lang: str, snippet: Snippet, tmp_path: Path) -> None:
    script: list[str] = []
    for opts, code, line in snippet.blocks:
        if "file" in opts:
            target = tmp_path / opts["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code, encoding="utf-8")
        else:
            script.append(f"# {snippet.page}:{line}\n{code}")
    if script:
        (tmp_path / "snippet.py").write_text("\n".join(script), encoding="utf-8")
        proc = _run([sys.executable, "snippet.py"], tmp_path)
        assert proc.returncode == 0, (
            f"{lang}/{snippet.page} {snippet.id}:\n{proc.stdout[-3000:]}{proc.stderr[-5000:]}"
        )
    if snippet.runs_pytest:
        proc = _run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"], tmp_path
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{lang}/{snippet.page} {snippet.id}:\n{out[-5000:]}"
        assert re.search(r"\b\d+ passed\b", out) and " failed" not in out, out[-2000:]


def test_there_are_snippets_to_run() -> None:
    assert len(all_snippets()) >= 10


def test_both_languages_have_the_same_pages_and_snippets() -> None:
    en = {p.relative_to(DOCS_DIR / "en").as_posix(): p for p in pages("en")}
    zh = {p.relative_to(DOCS_DIR / "zh").as_posix(): p for p in pages("zh")}
    assert sorted(en) == sorted(zh)
    for name in en:
        en_ids = {k: len(v.blocks) for k, v in parse(en[name]).items()}
        zh_ids = {k: len(v.blocks) for k, v in parse(zh[name]).items()}
        assert en_ids == zh_ids, f"{name}: the runnable snippets differ between the languages"


def _hook():
    spec = importlib.util.spec_from_file_location("config_table", DOCS_DIR / "hooks" / "config_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_is_documented_in_both_languages() -> None:
    assert set(DOCS) == set(DEFAULTS) | set(APP_KEYS)
    assert set(_hook().ZH) == set(DEFAULTS) | set(APP_KEYS)
    assert all(text.strip() for text in (*DOCS.values(), *_hook().ZH.values()))


@pytest.mark.parametrize("lang", LANGS)
def test_configuration_table_is_rendered_from_the_settings(lang: str) -> None:
    hook = _hook()
    table = hook.render_table(lang)
    rows = [line for line in table.splitlines()[2:]]
    assert [row.split("`")[1] for row in rows] == [*DEFAULTS, *APP_KEYS]
    assert "| `WXMP_MAX_BODY` | `1048576` |" in table
    page = (DOCS_DIR / lang / "configuration.md").read_text(encoding="utf-8")
    assert hook.MARKER in page
    assert hook.page_language(f"{lang}/configuration.md") == lang


def test_hook_refuses_a_setting_without_a_description(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook()
    monkeypatch.setitem(hook.DEFAULTS, "WXMP_NEW_KNOB", 1)
    for lang in LANGS:
        with pytest.raises(ValueError, match="WXMP_NEW_KNOB"):
            hook.render_table(lang)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = "pip install -e '.[test]' && python -m pytest"
    assert f"\n{command}\n" in readme or f"\n{command} " in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in ci
    assert any(line.startswith("pip install -e '.[docs]'") and "mkdocs build --strict" in line for line in ci)


# -- python -m wxmp.testing: the fake in its own process (documented on the testing page) ------------


def _start_fake(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "wxmp.testing", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    banner = proc.stdout.readline()  # the process prints four lines at once, then serves
    assert banner.startswith("FakeWeChat serving on http://127.0.0.1:"), banner + proc.stderr.read()
    values = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(3))
    return proc, values


@pytest.mark.parametrize("stop_signal", ["SIGINT", "SIGTERM"])
def test_fake_in_its_own_process_serves_tokens_until_stopped(stop_signal: str) -> None:
    import signal

    import requests

    proc, env = _start_fake("--port", "0", "--follower", "oDocsFollower", "--token-lifetime", "60")
    try:
        base = env["WXMP_API_BASE"]
        assert env["WXMP_APPID"] == "wx0000000000000001" and env["WXMP_SECRET"]
        token = requests.get(
            f"{base}/cgi-bin/token",
            params={
                "grant_type": "client_credential",
                "appid": env["WXMP_APPID"],
                "secret": env["WXMP_SECRET"],
            },
            timeout=10,
        ).json()
        assert token["expires_in"] == 60
        info = requests.get(
            f"{base}/cgi-bin/user/info",
            params={"access_token": token["access_token"], "openid": "oDocsFollower"},
            timeout=10,
        ).json()
        assert info["subscribe"] == 1
        wrong = requests.get(
            f"{base}/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": env["WXMP_APPID"], "secret": "nope"},
            timeout=10,
        ).json()
        assert wrong["errcode"] == 40125
    finally:
        proc.send_signal(getattr(signal, stop_signal))
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "FakeWeChat stopped" in out and "Traceback" not in err


def test_fake_process_reports_a_busy_port() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _run([sys.executable, "-m", "wxmp.testing", "--port", str(port)], ROOT, timeout=60)
    assert proc.returncode == 1
    assert f"{port} is in use" in proc.stderr and "Traceback" not in proc.stderr  # werkzeug's words


def test_readme_links_point_at_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(((?!https?:|#)[^)]+)\)", readme)
    assert len(links) >= 20
    missing = [link for link in links if not (ROOT / link.split("#")[0]).is_file()]
    assert not missing, missing


def test_wechat_user_fixture_without_an_app_fixture_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["wxmp.testing.pytest_plugin"]\n')
    (tmp_path / "test_x.py").write_text("def test_x(wechat_user):\n    pass\n")
    proc = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"], tmp_path
    )
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "needs an `app` fixture" in proc.stdout and "Traceback" not in proc.stdout
