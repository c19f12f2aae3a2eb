"""Users' secrets and the documented recipes (security findings 9 and 11).

- With the root logger at DEBUG, an OAuth exchange, refresh and userinfo call against FakeWeChat
  leave no OAuth ``code``, ``refresh_token`` or per-user ``access_token`` in any log line (urllib3
  logs every request line at DEBUG).
- The OAuth ``state`` is generated for, and checked against, the user's session: the round trip
  works, a replayed, foreign, expired or missing state is refused; ``redirect_uri`` comes from
  ``WXMP_PUBLIC_URL``, not from the Host header.
- The JS-SDK signs the page URL exactly as the browser has it: a real Chromium computes the
  signature of ``location.href`` for ``/page/%E4%B8%AD%E6%96%87`` and it matches ours.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import flask
import pytest
import requests
from werkzeug.serving import make_server

from wxmp import ConfigError
from wxmp.api.jssdk import page_url, sign
from wxmp.api.oauth import STATE_MAX_AGE, check_state, new_state
from wxmp.testing import FakeWeChat
from wxmp.testing.fake_api.oauth import authorize

PUBLIC = "https://shop.example.com"


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    with FakeWeChat() as fake:
        fake.add_user("oWEB", nickname="小明")
        fake.add_user("oATTACKER", nickname="attacker")
        yield fake


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def debug_logs() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    names = ["", "urllib3", "urllib3.connectionpool", "requests", "wxmp"]
    levels = {name: logging.getLogger(name).level for name in names}
    root.addHandler(handler)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


# -- finding 9 --------------------------------------------------------------------------------------


def test_oauth_exchange_and_refresh_leave_no_user_secret_in_debug_logs(fake, make_app, debug_logs):
    _, wx = make_app(fake, refresher=False)
    code = authorize(fake, "oWEB", scope="snsapi_userinfo")
    grant = wx.oauth.exchange(code)
    renewed = wx.oauth.refresh(grant["refresh_token"])
    assert wx.oauth.userinfo(renewed["access_token"], "oWEB")["nickname"] == "小明"
    assert wx.oauth.check(renewed["access_token"], "oWEB")
    lines = "\n".join(debug_logs.lines)
    # The request lines are there (so this test looks where the leak was)...
    for path in ("/sns/oauth2/access_token", "/sns/oauth2/refresh_token", "/sns/userinfo", "/sns/auth"):
        assert path in lines, path
    # ...without the values.
    for name, secret in {
        "code": code,
        "refresh_token": grant["refresh_token"],
        "web access_token": grant["access_token"],
        "renewed access_token": renewed["access_token"],
        "AppSecret": fake.secret,
    }.items():
        assert secret not in lines, name
    assert "code=***" in lines and "refresh_token=***" in lines


# -- finding 11: OAuth state bound to the session, redirect_uri from the configuration -------------


def oauth_site(make_app: Any, fake: FakeWeChat, **config: Any) -> tuple[flask.Flask, Any]:
    app, wx = make_app(fake, refresher=False, **config)
    app.secret_key = "test-session-key-0123456789"

    @app.get("/login")
    def login() -> Any:
        state = new_state(flask.session)
        return flask.redirect(wx.oauth.authorize_url("/auth/wechat", scope="snsapi_base", state=state))

    @app.get("/auth/wechat")
    def callback() -> Any:
        if not check_state(flask.session, flask.request.args.get("state")):
            flask.abort(400)
        grant = wx.oauth.exchange(flask.request.args["code"])
        flask.session["openid"] = grant["openid"]
        return grant["openid"]

    return app, wx


def test_state_round_trip_and_login_csrf(fake, make_app):
    app, _ = oauth_site(make_app, fake, public_url=PUBLIC)
    spoofed = app.test_client().get("/login", headers={"Host": "evil.example"}).headers["Location"]
    assert dict(parse_qsl(urlsplit(spoofed).query))["redirect_uri"] == PUBLIC + "/auth/wechat"  # not evil
    victim = app.test_client()
    query = dict(parse_qsl(urlsplit(victim.get("/login").headers["Location"]).query))
    assert query["redirect_uri"] == PUBLIC + "/auth/wechat"
    state = query["state"]
    assert len(state) == 32 and state.isalnum()

    # Login CSRF: the attacker's own code, planted in the victim's browser, without their state.
    attacker_code = authorize(fake, "oATTACKER")
    assert victim.get(f"/auth/wechat?code={attacker_code}").status_code == 400
    assert victim.get(f"/auth/wechat?code={attacker_code}&state=0123456789abcdef").status_code == 400
    attacker = app.test_client()
    attacker_state = dict(parse_qsl(urlsplit(attacker.get("/login").headers["Location"]).query))["state"]
    assert victim.get(f"/auth/wechat?code={attacker_code}&state={attacker_state}").status_code == 400

    # The genuine flow, once.
    code = authorize(fake, "oWEB")
    ok = victim.get(f"/auth/wechat?code={code}&state={state}")
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "oWEB"
    assert victim.get(f"/auth/wechat?code={authorize(fake, 'oWEB')}&state={state}").status_code == 400


def test_states_expire_and_stay_few():
    session: dict[str, Any] = {}
    old = new_state(session, now=1000.0)
    assert check_state(session, old, now=1000.0 + STATE_MAX_AGE + 1) is False
    assert check_state(session, old, now=1001.0) is False  # used up by the late attempt
    states = [new_state(session, now=2000.0 + i) for i in range(20)]
    assert len(session["wxmp_oauth_states"]) == 5  # a few tabs, never a growing list
    assert check_state(session, states[-1], now=2030.0)
    assert not check_state(session, states[0], now=2030.0)
    for junk in (None, "", 42, "中文", "x" * 10_000):
        assert check_state(session, junk) is False
    assert check_state({"wxmp_oauth_states": "garbage"}, "abc") is False


def test_a_path_needs_the_public_url(fake, make_app):
    _, wx = make_app(fake, refresher=False)
    with pytest.raises(ConfigError) as info:
        wx.oauth.authorize_url("/auth/wechat", state="abc")
    assert info.value.key == "WXMP_PUBLIC_URL"
    assert "https%3A%2F%2Fe.com%2Fcb" in wx.oauth.authorize_url("https://e.com/cb")  # absolute: as given
    with pytest.raises(ConfigError):
        make_app(fake, refresher=False, public_url="shop.example.com")


# -- finding 11: the JS-SDK signs the URL the browser has ----------------------------------------

PAGE = "/page/%E4%B8%AD%E6%96%87?q=%E4%B8%AD&x=a%20b&y=%2F"

BROWSER_PAGE = """<!doctype html><meta charset="utf-8"><title>pending</title>
<script id="cfg" type="application/json">{cfg}</script>
<script>
const cfg = JSON.parse(document.getElementById("cfg").textContent);
const plain = "jsapi_ticket=" + cfg.ticket + "&noncestr=" + cfg.nonceStr + "&timestamp=" + cfg.timestamp
  + "&url=" + location.href.split("#")[0];
crypto.subtle.digest("SHA-1", new TextEncoder().encode(plain)).then(buf => {{
  const hex = Array.from(new Uint8Array(buf)).map(b => b.toString(16).padStart(2, "0")).join("");
  document.title = hex === cfg.signature ? "match" : "mismatch " + location.href;
}});
</script>"""


@pytest.fixture
def jssdk_site(fake: FakeWeChat, make_app: Any) -> Iterator[tuple[str, Any]]:
    app, wx = make_app(fake, refresher=False)
    seen: dict[str, str] = {}

    @app.get("/page/<name>")
    def page(name: str) -> Any:
        url = wx.jssdk.page_url(flask.request)
        seen["url"], seen["flask_url"] = url, flask.request.url
        config = wx.jssdk.config(url)
        config["ticket"] = wx.jssdk.ticket  # for the browser's own computation in this test only
        return BROWSER_PAGE.format(cfg=json.dumps(config))

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


def test_the_signed_url_is_the_raw_one_over_http(jssdk_site):
    base, seen = jssdk_site
    html = requests.get(base + PAGE + "#frag", timeout=10).text
    config = json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0])
    browser_url = base + PAGE  # what location.href.split('#')[0] is for this link
    assert seen["url"] == browser_url
    assert config["signature"] == sign(config["ticket"], config["nonceStr"], config["timestamp"], browser_url)
    assert seen["flask_url"] != browser_url  # request.url decoded it: signing it was the bug


def test_page_url_without_a_raw_request_line():
    environ = {
        "wsgi.url_scheme": "https",
        "HTTP_HOST": "shop.example.com",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/page/中文".encode().decode("latin-1"),  # how WSGI hands over a decoded path
        "QUERY_STRING": "q=%E4%B8%AD",
    }
    assert page_url(environ) == "https://shop.example.com/page/%E4%B8%AD%E6%96%87?q=%E4%B8%AD"
    assert page_url({**environ, "RAW_URI": "/page/%e4%b8%ad%e6%96%87"}, base="https://m.example.com") == (
        "https://m.example.com/page/%e4%b8%ad%e6%96%87"
    )


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
def test_a_real_browser_computes_the_same_signature(jssdk_site, tmp_path: Path):
    if not (os.path.exists(CHROMIUM) and shutil.which("chromium")):
        if os.environ.get("WXMP_REQUIRE_SERVICES") == "1":
            pytest.fail("chromium is not installed and WXMP_REQUIRE_SERVICES=1")
        pytest.skip("apt-get install chromium (the browser test never downloads one)")
    sync_api = pytest.importorskip("playwright.sync_api")
    base, seen = jssdk_site
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
            ],
        )
        context.set_default_timeout(15_000)
        try:
            page = context.new_page()
            page.goto(base + PAGE + "#section")
            page.wait_for_function("document.title !== 'pending'")
            assert page.title() == "match", page.title()
        finally:
            context.close()
    assert seen["url"] == base + PAGE
