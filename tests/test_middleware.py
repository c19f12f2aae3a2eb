"""The Callback pipeline: handshake, modes, refusals, handler failures, signals, WSGI wrapping, WxMP."""

from __future__ import annotations

import logging
from typing import Any

import flask
import pytest
from werkzeug.test import Client

from wxmp import signals
from wxmp.crypto import signature
from wxmp.middleware import Callback
from wxmp.replies import ImageReply, TextReply
from wxmp.testing.clock import FakeClock
from wxmp.testing.user import CallbackRefused, WeChatUser

TOKEN = "tok123"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx1234567890abcdef"
NOW = 1714036504.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def cb(clock: FakeClock) -> Callback:
    # These tests drive every mode against one callback; refusing plaintext when an AES key is
    # set (the default) is tested in test_security_callback.py.
    callback = Callback(TOKEN, AES_KEY, APPID, clock=clock, allow_plaintext=True)

    @callback.on("text", match=r"^boom")
    def boom(msg: Any) -> str:
        raise RuntimeError("handler exploded")

    @callback.on("text")
    def echo(msg: Any) -> str:
        return f"echo: {msg.content}"

    @callback.on("image")
    def image(msg: Any) -> ImageReply:
        return ImageReply(msg.media_id)

    return callback


def user_for(cb: Any, clock: FakeClock, mode: str = "plain", **kw: Any) -> WeChatUser:
    return WeChatUser(cb, TOKEN, aes_key=AES_KEY, appid=APPID, mode=mode, clock=clock, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
def test_modes_round_trip(cb: Callback, clock: FakeClock, mode: str) -> None:
    user = user_for(cb, clock, mode)
    assert user.send_text("你好") == TextReply("echo: 你好")
    assert user.send_image(media_id="M1") == ImageReply("M1")
    assert user.send_voice() is None  # unhandled -> success
    assert user.last_result is not None and user.last_result.body == b"success"


def test_safe_reply_is_encrypted_with_its_own_signature(cb: Callback, clock: FakeClock) -> None:
    user = user_for(cb, clock, "safe")
    user.send_text("x")
    assert user.last_result is not None
    body = user.last_result.body
    assert body.startswith(b"<xml><Encrypt>") and b"echo" not in body
    assert b"<MsgSignature>" in body and b"<TimeStamp>1714036504</TimeStamp>" in body


def test_handshake(cb: Callback, clock: FakeClock) -> None:
    assert user_for(cb, clock).verify("hello123") == "hello123"
    client = Client(cb)
    resp = client.get("/wechat?echostr=x")
    assert resp.status_code == 403
    resp = client.get(f"/wechat?signature={'0' * 40}&timestamp=1714036504&nonce=1&echostr=x")
    assert resp.status_code == 403


def test_handshake_known_answer() -> None:
    cb = Callback("AAAAA", clock=lambda: 1714036504)
    resp = Client(cb).get(
        "/wechat?signature=f464b24fc39322e44b38aa78f5edd27bd1441696&timestamp=1714036504"
        "&nonce=1514711492&echostr=4529411234056547329"
    )
    assert resp.status_code == 200 and resp.data == b"4529411234056547329"


def test_bad_signature_403_logs_and_signals(
    cb: Callback, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    refused: list[dict[str, Any]] = []

    def on_refused(sender: Any, **kw: Any) -> None:
        refused.append(kw)

    signals.signature_refused.connect(on_refused)
    try:
        with caplog.at_level(logging.WARNING, "wxmp.callback"):
            resp = Client(cb).post(
                "/wechat?signature=abc&timestamp=1714036504&nonce=1",
                data=b"<xml><MsgType>text</MsgType></xml>",
            )
    finally:
        signals.signature_refused.disconnect(on_refused)
    assert resp.status_code == 403
    assert resp.data == b"signature check failed"
    assert refused and refused[0]["reason"] == "bad signature"
    logged = caplog.text
    assert "bad signature" in logged and TOKEN not in logged and AES_KEY not in logged


def test_stale_and_future_timestamps(cb: Callback, clock: FakeClock) -> None:
    stale = user_for(cb, FakeClock(NOW - 301))
    with pytest.raises(CallbackRefused) as info:
        stale.send_text("late")
    assert info.value.status == 403
    future = user_for(cb, FakeClock(NOW + 301))
    with pytest.raises(CallbackRefused):
        future.send_text("early")
    ok = user_for(cb, FakeClock(NOW - 299))
    assert ok.send_text("in window") == TextReply("echo: in window")


def test_replayed_request_outside_window_is_refused(cb: Callback, clock: FakeClock) -> None:
    user = user_for(cb, clock)
    xml = user.message_xml("text", {"Content": "replay"})
    ts, nonce = "1714036504", "42"
    url = f"/wechat?signature={signature(TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}"
    client = Client(cb)
    assert client.post(url, data=xml).status_code == 200
    clock.advance(301)
    assert client.post(url, data=xml).status_code == 403


def test_custom_window() -> None:
    clock = FakeClock(NOW)
    cb = Callback(TOKEN, timestamp_window=10, clock=clock)
    with pytest.raises(CallbackRefused):
        WeChatUser(cb, TOKEN, clock=FakeClock(NOW - 11)).send_text("x")


def test_safe_mode_checks_msg_signature_before_decrypting(cb: Callback, clock: FakeClock) -> None:
    user = user_for(cb, clock, "safe")
    xml = user.message_xml("text", {"Content": "x"})
    from wxmp.crypto import MessageCrypto

    encrypted = MessageCrypto(AES_KEY, APPID).encrypt(xml)
    ts, nonce = "1714036504", "7"
    body = f"<xml><ToUserName>gh</ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
    base = f"/wechat?signature={signature(TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}&encrypt_type=aes"
    client = Client(cb)
    assert client.post(base + f"&msg_signature={'0' * 40}", data=body).status_code == 403
    assert client.post(base, data=body).status_code == 403  # msg_signature missing
    good = signature(TOKEN, ts, nonce, encrypted)
    assert client.post(base + f"&msg_signature={good}", data=body).status_code == 200
    # the plaintext signature still matters in safe mode
    bad_plain = (
        f"/wechat?signature={'0' * 40}&timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={good}"
    )
    assert client.post(bad_plain, data=body).status_code == 403


def test_wrong_key_or_appid_is_400_and_reaches_no_handler(clock: FakeClock) -> None:
    ran: list[Any] = []
    cb = Callback(TOKEN, AES_KEY, APPID, clock=clock)
    cb.on()(lambda msg: ran.append(msg))
    wrong_key = WeChatUser(cb, TOKEN, aes_key="B" * 43, appid=APPID, clock=clock)
    with pytest.raises(CallbackRefused) as info:
        wrong_key.send_text("x")
    assert info.value.status == 400
    foreign = WeChatUser(cb, TOKEN, aes_key=AES_KEY, appid="wx0000000000000000", clock=clock)
    with pytest.raises(CallbackRefused) as info:
        foreign.send_text("x")
    assert info.value.status == 400
    no_key = Callback(TOKEN, clock=clock)
    with pytest.raises(CallbackRefused) as info:
        WeChatUser(no_key, TOKEN, aes_key=AES_KEY, appid=APPID, clock=clock).send_text("x")
    assert info.value.status == 400
    assert ran == []


def test_handler_exception_is_logged_and_answered_success(
    cb: Callback, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[dict[str, Any]] = []

    def on_failed(sender: Any, **kw: Any) -> None:
        failures.append(kw)

    signals.handler_failed.connect(on_failed)
    try:
        with caplog.at_level(logging.ERROR, "wxmp.callback"):
            assert user_for(cb, clock).send_text("boom now") is None
    finally:
        signals.handler_failed.disconnect(on_failed)
    assert "handler exploded" in caplog.text and "Traceback" in caplog.text
    assert isinstance(failures[0]["exception"], RuntimeError)


def test_bad_return_type_is_a_handler_failure(clock: FakeClock) -> None:
    cb = Callback(TOKEN, clock=clock)
    cb.on()(lambda msg: 42)
    assert WeChatUser(cb, TOKEN, clock=clock).send_text("x") is None


def test_signals_received_sent_duplicate(cb: Callback, clock: FakeClock) -> None:
    seen: list[tuple[str, Any, dict[str, Any]]] = []

    def record(name: str) -> Any:
        def receiver(sender: Any, **kw: Any) -> None:
            seen.append((name, sender, kw))

        return receiver

    receivers = {
        signals.message_received: record("received"),
        signals.reply_sent: record("sent"),
        signals.duplicate_message: record("duplicate"),
    }
    for sig, fn in receivers.items():
        sig.connect(fn)
    try:
        user = user_for(cb, clock)
        user.send_text("a", msg_id=1)
        user.send_text("a", msg_id=1)
    finally:
        for sig, fn in receivers.items():
            sig.disconnect(fn)
    names = [s[0] for s in seen]
    assert names == ["received", "sent", "received", "duplicate"]
    assert all(s[1] is cb for s in seen)
    assert seen[1][2]["reply"] == TextReply("echo: a")
    assert "1" in seen[3][2]["key"]


def test_wraps_another_wsgi_app_and_404s_alone(clock: FakeClock) -> None:
    def other(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"other app"]

    cb = Callback(TOKEN, path="/hook", clock=clock).wrap(other)
    client = Client(cb)
    assert client.get("/").data == b"other app"
    assert client.get("/wechat").data == b"other app"
    assert Client(Callback(TOKEN)).get("/elsewhere").status_code == 404
    assert client.put("/hook").status_code == 405
    cb.on("text")(lambda msg: "hooked")
    assert WeChatUser(cb, TOKEN, path="/hook", clock=clock).send_text("x") == TextReply("hooked")


def test_context_is_entered_around_handlers(clock: FakeClock) -> None:
    import contextlib

    events: list[str] = []

    @contextlib.contextmanager
    def ctx() -> Any:
        events.append("enter")
        yield
        events.append("exit")

    cb = Callback(TOKEN, context=ctx, clock=clock)
    cb.on()(lambda msg: events.append("handler"))
    WeChatUser(cb, TOKEN, clock=clock).send_text("x")
    assert events == ["enter", "handler", "exit"]


def test_bad_configuration() -> None:
    from wxmp.errors import ConfigError

    with pytest.raises(ConfigError):
        Callback("")
    with pytest.raises(ConfigError):
        Callback(TOKEN, AES_KEY)  # no appid
    with pytest.raises(ConfigError) as info:
        Callback(TOKEN, "x" * 10, APPID)
    assert "x" * 10 not in str(info.value)


class TestWithWxMP:
    def make(self, tmp_path: Any, **config: Any) -> tuple[flask.Flask, Any]:
        from wxmp import WxMP

        app = flask.Flask("cbapp", instance_path=str(tmp_path))
        app.config.update({"WXMP_TOKEN": TOKEN, "WXMP_CACHE": "simple", **config})

        @app.get("/")
        def index() -> str:
            return "flask index"

        return app, WxMP(app)

    def test_handlers_run_in_app_context(self, tmp_path: Any) -> None:
        app, wx = self.make(tmp_path)
        app.config["GREETING"] = "hello from config"

        @wx.on("text")
        def handler(msg: Any) -> str:
            return f"{flask.current_app.config['GREETING']}: {msg.content}"

        user = WeChatUser(app, TOKEN)
        assert user.send_text("x") == TextReply("hello from config: x")
        assert app.test_client().get("/").data == b"flask index"
        assert user.verify("e1") == "e1"

    def test_safe_mode_and_filesystem_cache(self, tmp_path: Any) -> None:
        app, wx = self.make(
            tmp_path, WXMP_AES_KEY=AES_KEY, WXMP_APPID=APPID, WXMP_CACHE=f"filesystem:{tmp_path}/c"
        )
        runs: list[str] = []

        @wx.on("click", key="K")
        def click(msg: Any) -> str:
            runs.append(msg.key)
            return "clicked"

        import time

        frozen = FakeClock(time.time())  # the app checks timestamps against the real clock
        user = WeChatUser(app.test_client(), TOKEN, aes_key=AES_KEY, appid=APPID, clock=frozen)
        assert user.click("K") == TextReply("clicked")
        assert user.click("K") == TextReply("clicked")  # same second: a retry
        assert runs == ["K"]

    def test_custom_path(self, tmp_path: Any) -> None:
        app, wx = self.make(tmp_path, WXMP_CALLBACK_PATH="/mp/callback")
        wx.on()(lambda msg: "ok")
        assert WeChatUser(app, TOKEN, path="/mp/callback").send_text("x") == TextReply("ok")


def test_echobot_example(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys
    import time
    from pathlib import Path

    monkeypatch.setenv("WXMP_CACHE", "simple")
    path = Path(__file__).resolve().parent.parent / "examples" / "echobot.py"
    spec = importlib.util.spec_from_file_location("echobot_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "echobot_example", module)
    spec.loader.exec_module(module)

    clock = FakeClock(time.time())
    user = WeChatUser(module.app, "wxmpdemo", clock=clock)
    assert user.verify("ok") == "ok"
    assert "Welcome" in user.subscribe().content  # type: ignore[union-attr]
    clock.advance(1)
    assert "scene 42" in user.subscribe(scene=42).content  # type: ignore[union-attr]
    assert user.send_text("ping") == TextReply("ping")
    assert "echo" in user.send_text("help").content  # type: ignore[union-attr]
    assert user.click("V1001_HELLO") == TextReply("Hello from the menu!")
    assert user.send_image(media_id="MEDIA42") == ImageReply("MEDIA42")
    assert "23.13452, 113.35880" in user.send_location(23.134521, 113.358803, label="天河").content  # type: ignore[union-attr]
    assert module.app.test_client().get("/").status_code == 200


def test_wechat_user_over_real_http(clock: FakeClock) -> None:
    import threading

    from werkzeug.serving import make_server

    cb = Callback(TOKEN, AES_KEY, APPID, clock=clock, allow_plaintext=True)
    cb.on("text")(lambda msg: f"over http: {msg.content}")
    server = make_server("127.0.0.1", 0, cb, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        for mode in ("plain", "safe"):
            user = user_for(base, clock, mode)
            assert user.send_text("中文") == TextReply("over http: 中文")
            assert user.verify("e") == "e"
        with pytest.raises(CallbackRefused) as info:
            user_for(base, FakeClock(NOW - 1000)).send_text("stale")
        assert info.value.status == 403
    finally:
        server.shutdown()
        server.server_close()
