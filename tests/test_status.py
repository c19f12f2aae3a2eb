"""The status page: off by default, guarded, its numbers move with traffic, nothing secret in it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import flask
import pytest

from wxmp import ConfigError, WxMP
from wxmp.errors import QuotaExceededError
from wxmp.testing import FakeWeChat, WeChatUser
from wxmp.testing.clock import FakeClock
from wxmp.testing.user import CallbackRefused

MakeApp = Callable[..., tuple[flask.Flask, WxMP]]

TOKEN = "statustoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SECRET = "status-bearer-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {SECRET}"}


def status(app: flask.Flask, **environ: Any) -> Any:
    return app.test_client().get("/wxmp/status.json", environ_base=environ, headers=BEARER)


@pytest.fixture
def dev_app(fake_wechat: FakeWeChat, tmp_path: Any) -> Any:
    """A debug/testing app (the only kind where the page may go without a guard), with a secret."""
    made: list[WxMP] = []

    def factory(**config: Any) -> flask.Flask:
        app = flask.Flask(f"dev{len(made)}", instance_path=str(tmp_path / f"dev{len(made)}"))
        app.testing = True
        app.config.update(
            WXMP_APPID=fake_wechat.appid, WXMP_SECRET=fake_wechat.secret, WXMP_API_BASE=fake_wechat.url,
            WXMP_CACHE="simple", WXMP_REFRESHER=False, WXMP_STATUS=True,
        )  # fmt: skip
        app.config.update({"WXMP_" + k: v for k, v in config.items()})
        made.append(WxMP(app))
        return app

    yield factory
    for wx in made:
        wx.stop()


def test_off_by_default(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    app, _ = make_app(fake_wechat, REFRESHER=False)
    assert app.test_client().get("/wxmp/status").status_code == 404
    assert app.test_client().get("/wxmp/status.json").status_code == 404


def test_without_a_guard_only_direct_local_requests_are_allowed(dev_app: Any) -> None:
    app = dev_app()
    client = app.test_client()
    assert client.get("/wxmp/status.json").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/wxmp/status.json", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    assert client.get("/wxmp/status.json", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    assert client.get("/wxmp/status", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 403
    # A reverse proxy on the same host: loopback address, but a proxied (outside) request.
    for header in ("X-Forwarded-For", "X-Real-IP", "Forwarded"):
        assert client.get("/wxmp/status", headers={header: "203.0.113.9"}).status_code == 403
    # DNS rebinding: a page on rebind.attacker.example resolved to 127.0.0.1 reads the page.
    for host in ("rebind.attacker.example", "rebind.attacker.example:5000", "127.0.0.1.nip.io"):
        assert client.get("/wxmp/status.json", headers={"Host": host}).status_code == 403, host
    for host in ("localhost:5000", "127.0.0.1", "[::1]:8000"):
        assert client.get("/wxmp/status.json", headers={"Host": host}).status_code == 200, host


def test_production_needs_an_explicit_guard(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    # Behind a proxy that adds no forwarding header, every visitor arrives from loopback: outside
    # debug/testing, REMOTE_ADDR decides nothing.
    with pytest.raises(ConfigError) as info:
        make_app(fake_wechat, REFRESHER=False, STATUS=True)
    assert info.value.key == "WXMP_STATUS"
    app, _ = make_app(fake_wechat, REFRESHER=False, STATUS=True, STATUS_SECRET=SECRET)
    client = app.test_client()
    assert client.get("/wxmp/status.json").status_code == 403  # a loopback proxy, no header
    assert client.get("/wxmp/status.json", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/wxmp/status.json", headers={"Authorization": SECRET}).status_code == 403
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/wxmp/status.json", headers=BEARER, environ_base=remote).status_code == 200
    with pytest.raises(ConfigError, match="16"):
        make_app(fake_wechat, REFRESHER=False, STATUS=True, STATUS_SECRET="short")


def test_counters_keep_a_bounded_key_set_under_junk_types(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    app, wx = make_app(fake_wechat, REFRESHER=False, STATUS=True, STATUS_SECRET=SECRET, TOKEN=TOKEN)
    user = WeChatUser(app, TOKEN)
    for i in range(300):
        user.send_message(f"junk{i}" + "x" * 2000, msg_id=i + 1)
        user.send_event(f"junkevent{i}" + "y" * 2000)
    user.send_text("hi", msg_id=9999)
    counters = app.extensions["wxmp.status"]
    assert dict(counters.messages) == {"other": 600, "text": 1}
    for i in range(200):
        counters._api_error(None, errcode=10_000 + i)
    assert len(counters.api_errors) == 64 + 1  # 64 codes and "other"
    assert status(app).json["counters"]["api_errors"]["other"] == 200 - 64
    assert len(status(app).get_data()) < 20_000


def test_a_configured_check_decides(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    def check() -> bool:
        return flask.request.headers.get("X-Admin-Key") == "letmein"

    app, _ = make_app(fake_wechat, REFRESHER=False, STATUS=True, STATUS_CHECK=check)
    client = app.test_client()
    assert client.get("/wxmp/status").status_code == 403  # loopback alone is not enough now
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    assert (
        client.get("/wxmp/status", headers={"X-Admin-Key": "letmein"}, environ_base=remote).status_code == 200
    )
    assert client.get("/wxmp/status.json", headers={"X-Admin-Key": "nope"}).status_code == 403

    app2, _ = make_app(fake_wechat, REFRESHER=False, STATUS=True, STATUS_CHECK=lambda: "yes")
    assert app2.test_client().get("/wxmp/status").status_code == 403  # only True allows


def test_numbers_move_with_traffic(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    app, wx = make_app(fake_wechat, REFRESHER=False, STATUS=True, STATUS_SECRET=SECRET, TOKEN=TOKEN)
    wx.on("text", match="^quiet")(lambda msg: None)
    wx.on("text")(lambda msg: msg.content)
    wx.on("subscribe")(lambda msg: "welcome")

    before = status(app).json
    assert before["token"] is None
    assert before["fetches_today"] == 0 and before["fetch_quota"] == 2000
    assert before["counters"]["messages_total"] == 0
    assert before["cache"] == "simple"

    clock = FakeClock(time.time())
    user = WeChatUser(app, TOKEN, clock=clock)
    user.send_text("one")
    user.send_text("two")
    user.send_text("quiet please")
    user.subscribe()
    user.send_text("again", msg_id=777)
    user.send_text("again", msg_id=777)  # WeChat's retry: answered from dedup
    with pytest.raises(CallbackRefused):
        WeChatUser(app, "wrongtoken").send_text("forged")
    with app.app_context():
        wx.menu.create({"button": [{"type": "click", "name": "A", "key": "A"}]})
        fake_wechat.fail_next(errcode=45009, paths=("/cgi-bin/menu/get",))
        with pytest.raises(QuotaExceededError):
            wx.menu.get()
        fake_wechat.fail_next(errcode=45009, paths=("/cgi-bin/menu/get",))
        with pytest.raises(QuotaExceededError):
            wx.menu.get()

    after = status(app).json
    c = after["counters"]
    assert c["messages"] == {"text": 5, "subscribe": 1}
    assert c["replies"] == 4  # one, two, subscribe, again
    assert c["no_reply"] == 1  # quiet
    assert c["duplicates"] == 1
    assert c["refused_signatures"] == 1
    assert c["api_errors"] == {"45009": 2}
    assert c["recent_api_errors"][0]["path"] == "/cgi-bin/menu/get"
    assert after["fetches_today"] == 1
    token = after["token"]
    entry = app.extensions["wxmp"].state(app).access_token.peek()
    assert token["masked"].startswith(entry.value[:6])
    assert 0 < token["expires_in"] <= 7200 and token["valid"]
    assert token["pid"] == entry.pid and token["host"] == entry.host

    html = app.test_client().get("/wxmp/status", headers=BEARER).get_data(as_text=True)
    assert entry.value[:6] in html
    assert '<td id="messages-total">6</td>' in html
    assert '<td id="duplicates">1</td>' in html
    assert '<td id="refused">1</td>' in html
    assert "errcode 45009" in html
    assert '<td id="fetches">1 / 2000</td>' in html


def test_nothing_secret_appears(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    app, wx = make_app(
        fake_wechat, REFRESHER=False, STATUS=True, STATUS_SECRET=SECRET, TOKEN=TOKEN, AES_KEY=AES_KEY
    )
    wx.on("text")(lambda msg: "ok")
    WeChatUser(app, TOKEN, aes_key=AES_KEY, appid=fake_wechat.appid).send_text("hello")
    with app.app_context():
        wx.menu.create({"button": [{"type": "click", "name": "A", "key": "A"}]})
    token = app.extensions["wxmp"].state(app).access_token.peek().value
    for path in ("/wxmp/status", "/wxmp/status.json"):
        body = app.test_client().get(path, headers=BEARER).get_data(as_text=True)
        assert SECRET not in body
        assert token[:6] in body
        for secret in (token, token[:12], fake_wechat.secret, AES_KEY, TOKEN):
            assert secret not in body, (path, secret)


def test_counters_are_per_extension(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    app1, wx1 = make_app(fake_wechat, REFRESHER=False, STATUS=True, STATUS_SECRET=SECRET, TOKEN=TOKEN)
    app2, wx2 = make_app(fake_wechat, REFRESHER=False, STATUS=True, STATUS_SECRET=SECRET, TOKEN=TOKEN)
    wx1.on("text")(lambda msg: "1")
    WeChatUser(app1, TOKEN).send_text("x")
    assert status(app1).json["counters"]["messages_total"] == 1
    assert status(app2).json["counters"]["messages_total"] == 0


def test_every_account_is_shown(fake_wechat: FakeWeChat, tmp_path: Any) -> None:
    with FakeWeChat(appid="wx00000000000000b2", secret="secret-of-account-b-0123456789ab") as shop_fake:
        app = flask.Flask("multistatus", instance_path=str(tmp_path))
        app.config.update(
            WXMP_CACHE="simple", WXMP_REFRESHER=False, WXMP_STATUS=True, WXMP_STATUS_SECRET=SECRET,
            WXMP_ACCOUNTS={
                "main": {"appid": fake_wechat.appid, "secret": fake_wechat.secret,
                         "api_base": fake_wechat.url, "token": "maintoken"},
                "shop": {"appid": shop_fake.appid, "secret": shop_fake.secret, "api_base": shop_fake.url},
            },
        )  # fmt: skip
        wx = WxMP(app)
        try:
            with app.app_context():
                wx.accounts["shop"].access_token.get()
            data = status(app).get_json()
            assert data["account"] == "main" and data["appid"] == fake_wechat.appid
            by_name = {a["name"]: a for a in data["accounts"]}
            assert set(by_name) == {"main", "shop"}
            assert by_name["main"]["callback"] == "/wechat/main" and by_name["shop"]["callback"] is None
            assert by_name["main"]["token"] is None
            assert by_name["shop"]["token"]["valid"] and by_name["shop"]["fetches_today"] == 1
            page = app.test_client().get("/wxmp/status", headers=BEARER).get_data(as_text=True)
            assert 'data-account="shop"' in page and shop_fake.appid in page
            assert shop_fake.secret not in page and fake_wechat.secret not in page
        finally:
            wx.stop()
