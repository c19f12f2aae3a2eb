"""The sandbox in a real browser: Debian's headless Chromium driven by Playwright, echobot served live.

Never downloads a browser: it uses /usr/bin/chromium (``apt-get install chromium``; .ci/run installs
it). Waits on DOM conditions only. Leaves a screenshot in test-artifacts/sandbox.png.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def echobot(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """examples/echobot.py imported with no WXMP_* configuration: sandbox mode, as a newcomer runs it."""
    for key in list(os.environ):
        if key.startswith("WXMP_") or key.startswith("FLASK_"):
            monkeypatch.delenv(key)
    spec = importlib.util.spec_from_file_location("echobot_browser", ROOT / "examples" / "echobot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "echobot_browser", module)
    spec.loader.exec_module(module)
    yield module
    module.wx.stop()


@pytest.fixture
def live_url(echobot: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, echobot.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and shutil.which("chromium")):
        if os.environ.get("WXMP_REQUIRE_SERVICES") == "1":
            pytest.fail("chromium is not installed and WXMP_REQUIRE_SERVICES=1")
        pytest.skip("apt-get install chromium (the browser test never downloads one)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        # A persistent context is how Playwright takes a fresh --user-data-dir of our choosing.
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 860},
        )
        context.set_default_timeout(15_000)
        try:
            yield context.new_page()
        finally:
            context.close()


def test_chat_with_echobot_in_the_browser(page: Any, live_url: str, echobot: Any) -> None:
    from playwright.sync_api import expect

    page.goto(live_url + "/wxmp/sandbox")
    # The example pushed its menu at start-up; the page renders it from the fake.
    hello = page.locator(".menu-button", has_text="打个招呼")
    expect(hello).to_be_visible()

    page.fill("#text", "hello from chromium")
    page.press("#text", "Enter")
    mine = page.locator('.row.me[data-kind="text"] .text', has_text="hello from chromium")
    expect(mine).to_be_visible()
    echo = page.locator('.row.bot[data-via="reply"] .text', has_text="hello from chromium")
    expect(echo).to_be_visible()

    hello.click()
    expect(page.locator(".system.event", has_text="Tapped 打个招呼")).to_be_visible()
    expect(page.locator(".row.bot .text", has_text="Hello from the menu!")).to_be_visible()

    page.click(".menu-button:has-text('更多')")
    scan = page.locator(".submenu-button", has_text="扫一扫")
    expect(scan).to_be_visible()
    scan.click()
    expect(page.locator(".system.event", has_text="Scanned with 扫一扫")).to_be_visible()

    page.click("#toggle-extras")
    page.fill("#lat", "23.134521")
    page.fill("#lng", "113.358803")
    page.fill("#label", "天河")
    page.click("#send-location")
    expect(page.locator('.row.me[data-kind="location"]', has_text="天河")).to_be_visible()
    expect(page.locator(".row.bot .text", has_text="You are at 23.13452, 113.35880 (天河)")).to_be_visible()

    # A customer-service message sent outside any exchange arrives through the poll.
    from wxmp.sandbox import SANDBOX_OPENID

    with echobot.app.app_context():
        echobot.wx.message.send_text(SANDBOX_OPENID, "a message from customer service")
    pushed = page.locator('.row.bot[data-via="customer service"] .text', has_text="from customer service")
    expect(pushed).to_be_visible()

    # The raw XML panel shows both directions of the text exchange.
    panel = page.locator(".exchange", has_text="hello from chromium")
    expect(panel.locator(".xml-in")).to_contain_text("<Content><![CDATA[hello from chromium]]></Content>")
    expect(panel.locator(".xml-out")).to_contain_text("<MsgType><![CDATA[text]]></MsgType>")
    expect(page.locator(".system.error")).to_have_count(0)

    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "sandbox.png"), full_page=True)

    # The status page (echobot turns it on in sandbox mode) counted the traffic.
    page.goto(live_url + "/wxmp/status")
    expect(page.locator("#messages-total")).to_have_text("4")  # text, click, scancode, location
