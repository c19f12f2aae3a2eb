"""The sandbox: when it turns on, its fake WeChat wiring, and its JSON API over the real callback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest

from wxmp import Article, MusicReply, NewsReply, WxMP
from wxmp.sandbox import SANDBOX_OPENID, SANDBOX_TOKEN, templates_dir

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[WxMP] = []

    def factory(*, testing: bool = True, debug: bool = False, **config: Any) -> tuple[flask.Flask, WxMP]:
        app = flask.Flask(f"sandbox{len(made)}", instance_path=str(tmp_path / f"i{len(made)}"))
        app.testing = testing
        app.debug = debug
        app.config.update({"WXMP_" + k: v for k, v in config.items()})
        wx = WxMP(app)
        made.append(wx)
        return app, wx

    yield factory
    for wx in made:
        wx.stop()


def send(app: flask.Flask, **action: Any) -> dict[str, Any]:
    response = app.test_client().post("/wxmp/sandbox/api/send", json=action)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


# -- when it is on ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("testing", "debug", "config", "on"),
    [
        (True, False, {}, True),  # a test app without a secret
        (False, True, {}, True),  # flask run --debug
        (False, False, {}, False),  # production: never by default
        (
            True,
            False,
            {"APPID": "wx1234567890abcdef", "SECRET": "s3cret", "REFRESHER": False},
            False,
        ),  # a real account
        (False, False, {"SANDBOX": True}, True),  # explicit
        (True, False, {"SANDBOX": False}, False),
        (True, False, {"SANDBOX": "0"}, False),  # from an environment variable
        (False, False, {"SANDBOX": "1"}, True),
    ],
)
def test_default_rule(make: Any, testing: bool, debug: bool, config: dict[str, Any], on: bool) -> None:
    app, wx = make(testing=testing, debug=debug, **config)
    assert wx.state(app).settings.sandbox is on
    assert ("wxmp.sandbox" in app.extensions) is on
    assert (app.test_client().get("/wxmp/sandbox").status_code == 200) is on


def test_flask_debug_env_turns_it_on(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = flask.Flask("envdebug")  # reads FLASK_DEBUG at construction, like `flask run --debug`
    wx = WxMP(app, cache="simple")
    try:
        assert wx.state(app).settings.sandbox
    finally:
        wx.stop()


def test_api_goes_to_the_fake_without_credentials(make: Any) -> None:
    app, wx = make()
    sandbox = app.extensions["wxmp.sandbox"]
    settings = wx.state(app).settings
    assert settings.api_base == sandbox.fake.url == app.config["WXMP_API_BASE"]
    assert settings.secret == sandbox.fake.secret
    assert settings.token is None  # the sandbox talks to its own callback with SANDBOX_TOKEN
    assert sandbox.callback.token == SANDBOX_TOKEN
    assert settings.refresher == "off"  # lazy: no thread for a local try-out
    with app.app_context():
        wx.menu.create({"button": [{"type": "click", "name": "Hi", "key": "HI"}]})
    assert sandbox.fake.count("/cgi-bin/menu/create") == 1
    wx.stop()
    assert sandbox.fake._server is None  # stop() stops the fake too


def test_explicit_sandbox_keeps_the_appid_for_aes(make: Any) -> None:
    app, wx = make(SANDBOX=True, APPID="wx1234567890abcdef", TOKEN="tok123", AES_KEY=AES_KEY)
    settings = wx.state(app).settings
    assert settings.appid == "wx1234567890abcdef"
    assert settings.token == "tok123"  # the app's own callback keeps its Token...
    callback = app.extensions["wxmp.sandbox"].callback
    assert callback.token == SANDBOX_TOKEN and callback.crypto is not None  # ...the sandbox never uses it


def test_templates_are_found() -> None:
    folder = templates_dir()
    for name in ("wxmp_sandbox.html", "wxmp_status.html", "wxmp.css", "wxmp_sandbox.js"):
        assert (folder / name).is_file()


# -- the conversation -------------------------------------------------------------------------


def test_text_goes_through_the_signed_callback(make: Any) -> None:
    app, wx = make()
    seen: list[Any] = []

    @wx.on("text")
    def echo(msg: Any) -> str:
        seen.append(msg)
        return f"echo: {msg.content}"

    data = send(app, action="text", content="你好 <b>&")
    mine, reply = data["items"]
    assert mine["side"] == "user" and mine["content"] == "你好 <b>&"
    assert reply == {**reply, "side": "bot", "kind": "text", "content": "echo: 你好 <b>&", "via": "reply"}
    assert seen[0].from_user_name == SANDBOX_OPENID
    x = mine["exchange"]
    assert x["status"] == 200 and "signature=" in x["query"]
    assert "<Content><![CDATA[你好 <b>&]]></Content>" in x["request_xml"]
    assert "<Content><![CDATA[echo: 你好 <b>&]]></Content>" in x["response_xml"]
    assert not x["encrypted"]


def test_safe_mode_encrypts_both_ways(make: Any) -> None:
    app, wx = make(APPID="wx1234567890abcdef", AES_KEY=AES_KEY)
    wx.on("text")(lambda msg: "secret answer")
    data = send(app, action="text", content="psst")
    x = data["items"][0]["exchange"]
    assert x["encrypted"] and "msg_signature=" in x["query"] and "encrypt_type=aes" in x["query"]
    assert "<Encrypt>" in x["request_wire"] and "psst" not in x["request_wire"]
    assert "<Encrypt>" in x["response_wire"] and "secret answer" not in x["response_wire"]
    assert "secret answer" in x["response_xml"]
    assert data["items"][1]["content"] == "secret answer"


def test_menu_location_follow_and_rich_replies(make: Any) -> None:
    app, wx = make()
    wx.on("click", key="NEWS")(
        lambda msg: NewsReply(Article("Title", "Desc", "http://img/p.jpg", "http://example.com/a"))
    )
    wx.on("click", key="MUSIC")(lambda msg: MusicReply("http://m/song.mp3", "THUMB", "Song", "Artist"))
    wx.on("view")(lambda msg: f"opened {msg.event_key}")
    wx.on("location")(lambda msg: f"at {msg.latitude:.2f},{msg.longitude:.2f} {msg.label}")
    wx.on("subscribe")(lambda msg: "welcome")
    with app.app_context():
        wx.menu.create(
            {
                "button": [
                    {"type": "click", "name": "News", "key": "NEWS"},
                    {"name": "More", "sub_button": [{"type": "click", "name": "Music", "key": "MUSIC"}]},
                ]
            }
        )
    poll = app.test_client().get("/wxmp/sandbox/api/poll").json
    assert [b["name"] for b in poll["menu"]] == ["News", "More"]
    assert poll["menu"][1]["sub_button"][0]["key"] == "MUSIC"

    news = send(app, action="click", key="NEWS", name="News")["items"]
    assert (
        news[0]["content"] == "Tapped News"
        and "<EventKey><![CDATA[NEWS]]>" in news[0]["exchange"]["request_xml"]
    )
    assert news[1]["kind"] == "news"
    assert news[1]["articles"] == [
        {
            "title": "Title",
            "description": "Desc",
            "pic_url": "http://img/p.jpg",
            "url": "http://example.com/a",
        }
    ]
    music = send(app, action="click", key="MUSIC", name="Music")["items"][1]
    assert music["kind"] == "music" and music["title"] == "Song" and music["music_url"] == "http://m/song.mp3"
    view = send(app, action="view", key="http://example.com/x", name="X")["items"][1]
    assert view["content"] == "opened http://example.com/x"

    loc = send(app, action="location", lat=23.1, lng=113.3, label="天河")["items"]
    assert (
        loc[0]["kind"] == "location" and "<Location_X>23.1</Location_X>" in loc[0]["exchange"]["request_xml"]
    )
    assert loc[1]["content"] == "at 23.10,113.30 天河"

    fake = app.extensions["wxmp.sandbox"].fake
    out = send(app, action="unsubscribe")
    assert not out["subscribed"] and fake.users[SANDBOX_OPENID]["subscribe"] == 0
    back = send(app, action="subscribe")
    assert back["subscribed"] and back["items"][1]["content"] == "welcome"


def test_image_reply_is_served_from_the_fake(make: Any) -> None:
    app, wx = make()
    wx.on("image")(lambda msg: __import__("wxmp").ImageReply(msg.media_id))
    items = send(app, action="image")["items"]
    assert items[1]["kind"] == "image"
    media = app.test_client().get(items[1]["src"])
    assert media.status_code == 200 and media.mimetype == "image/svg+xml" and media.data.startswith(b"<svg")
    assert app.test_client().get("/wxmp/sandbox/media/NOPE").status_code == 404


def test_customer_service_and_mass_sends_join_the_conversation(make: Any) -> None:
    app, wx = make()
    other = "oSomebodyElse00000000000000"

    @wx.on("text", match="^push")
    def push(msg: Any) -> str:
        wx.message.send_text(msg.from_user_name, "typed by an agent")
        wx.message.send_news(msg.from_user_name, "CS news", "http://e/x")
        return "reply after the pushes"

    items = send(app, action="text", content="push please")["items"]
    assert [(i["via"], i["kind"]) for i in items[1:]] == [
        ("customer service", "text"),
        ("customer service", "news"),
        ("reply", "text"),
    ]
    assert items[1]["content"] == "typed by an agent"
    assert items[2]["articles"][0]["title"] == "CS news"

    # Sends made outside any exchange (a background job) show up through the poll endpoint.
    fake = app.extensions["wxmp.sandbox"].fake
    fake.add_user(other)
    last = items[-1]["id"]
    with app.app_context():
        wx.mass.send_text("to everyone", to_all=True)
        wx.mass.preview(SANDBOX_OPENID, text="a preview")
        wx.message.send_text(other, "not for the sandbox user")
    polled = app.test_client().get(f"/wxmp/sandbox/api/poll?after={last}").json["items"]
    assert [(i["via"], i["content"]) for i in polled] == [
        ("mass preview", "a preview"),
        ("mass", "to everyone"),
    ]
    assert app.test_client().get(f"/wxmp/sandbox/api/poll?after={polled[-1]['id']}").json["items"] == []


def test_handler_failure_and_bad_requests(make: Any) -> None:
    app, wx = make()

    @wx.on("text")
    def broken(msg: Any) -> str:
        raise RuntimeError("boom")

    items = send(app, action="text", content="x")["items"]
    assert items[0]["exchange"]["response_xml"] == "success"  # WeChat shows nothing...
    assert [i["kind"] for i in items[1:]] == ["error"]  # ...the sandbox tells the developer why
    assert "RuntimeError: boom" in items[1]["content"]
    client = app.test_client()
    assert client.post("/wxmp/sandbox/api/send", data={"action": "text", "content": "x"}).status_code == 400
    assert client.post("/wxmp/sandbox/api/send", json={"action": "nope"}).status_code == 400
    assert client.post("/wxmp/sandbox/api/send", json={"action": "text", "content": "  "}).status_code == 400
    assert (
        client.post("/wxmp/sandbox/api/send", json={"action": "location", "lat": "north"}).status_code == 400
    )


def test_page_renders_with_assets(make: Any) -> None:
    app, _ = make(STATUS=True)
    client = app.test_client()
    page = client.get("/wxmp/sandbox").get_data(as_text=True)
    assert 'id="composer"' in page and 'id="menu"' in page and "/wxmp/assets/wxmp_sandbox.js" in page
    assert "/wxmp/status" in page  # linked when the status page is on
    js = client.get("/wxmp/assets/wxmp_sandbox.js")
    assert js.status_code == 200 and js.mimetype == "text/javascript"
    assert client.get("/wxmp/assets/wxmp.css").mimetype == "text/css"
    assert client.get("/wxmp/assets/..%2Fpyproject.toml").status_code == 404


def test_poll_never_shows_an_exchange_in_flight(make: Any) -> None:
    import threading

    app, wx = make()
    started, release = threading.Event(), threading.Event()

    @wx.on("text")
    def slow(msg: Any) -> str:
        wx.message.send_text(msg.from_user_name, "pushed while handling")
        started.set()
        assert release.wait(10)
        return "done"

    before = send(app, action="subscribe")["items"][-1]["id"]
    worker = threading.Thread(target=send, args=(app,), kwargs={"action": "text", "content": "slow"})
    worker.start()
    assert started.wait(10)
    assert app.test_client().get(f"/wxmp/sandbox/api/poll?after={before}").json["items"] == []
    release.set()
    worker.join(10)
    items = app.test_client().get(f"/wxmp/sandbox/api/poll?after={before}").json["items"]
    assert [i.get("content") for i in items] == ["slow", "pushed while handling", "done"]
    assert items[0]["exchange"]["status"] == 200 and "pending" not in items[0]


def test_echobot_says_when_its_configuration_turns_the_sandbox_off(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    echobot = Path(__file__).resolve().parent.parent / "examples" / "echobot.py"
    code = f"import runpy, sys; sys.argv = ['echobot.py']; runpy.run_path({str(echobot)!r})"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXMP_")}
    configured = subprocess.run(
        [sys.executable, "-c", code], env={**env, "WXMP_TOKEN": "abc123"}, cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert configured.returncode == 0, configured.stderr
    assert "wxmp sandbox off: WXMP_TOKEN/WXMP_APPID/WXMP_SECRET are set" in configured.stderr
    try_out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert try_out.returncode == 0, try_out.stderr
    assert "wxmp sandbox: chat with echobot at http://127.0.0.1:5000/wxmp/sandbox" in try_out.stderr
    assert "sandbox off" not in try_out.stderr


def test_the_sandbox_lets_you_pick_the_account_to_chat_with(tmp_path: Path) -> None:
    app = flask.Flask("multisandbox", instance_path=str(tmp_path))
    app.testing = True
    app.config["WXMP_ACCOUNTS"] = {
        "main": {"token": "maintoken"},
        "shop": {"token": "shoptoken", "appid": "wx00000000000000b2"},
    }
    wx = WxMP(app)

    @wx.on("text")
    def main_echo(msg: Any) -> str:
        wx.message.send_text(msg.openid, "main via customer service")
        return f"main: {msg.content}"

    @wx.on("text", account="shop")
    def shop_echo(msg: Any) -> str:
        return f"shop ({msg.account.settings.appid}): {msg.content}"

    try:
        client = app.test_client()
        page = client.get("/wxmp/sandbox?account=shop").get_data(as_text=True)
        assert 'data-account="main"' in page and 'data-account="shop"' in page
        assert 'aria-current="page" class="current">shop<' in page
        assert "/wechat/shop" in page

        def send(account: str | None, text: str) -> list[dict[str, Any]]:
            url = "/wxmp/sandbox/api/send" + (f"?account={account}" if account else "")
            response = client.post(url, json={"action": "text", "content": text})
            assert response.status_code == 200, response.get_data(as_text=True)
            return response.json["items"]

        shop_items = send("shop", "hi shop")
        assert [i.get("content") for i in shop_items if i["side"] == "bot"] == [
            "shop (wx00000000000000b2): hi shop"
        ]
        main_items = send(None, "hi main")  # no account: the default (first) account
        assert "main: hi main" in [i.get("content") for i in main_items if i["side"] == "bot"]
        sandboxes = app.extensions["wxmp.sandboxes"]
        assert set(sandboxes) == {"main", "shop"}
        assert sandboxes["main"].fake is not sandboxes["shop"].fake  # one fake WeChat per account
        assert sandboxes["shop"].fake.appid == "wx00000000000000b2"
        shop_log = client.get("/wxmp/sandbox/api/poll?after=0&account=shop").json["items"]
        assert all("main" not in (i.get("content") or "") for i in shop_log)
        assert (
            client.post(
                "/wxmp/sandbox/api/send?account=nope", json={"action": "text", "content": "x"}
            ).status_code
            == 404
        )
    finally:
        wx.stop()
