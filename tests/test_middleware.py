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


# -- what WeChat and the operator see, exactly -----------------------------------------------


def safe_push(cb: Callback, clock: FakeClock, body: bytes, **query: str) -> Any:
    """POST ``body`` with a valid plaintext signature and ``encrypt_type=aes`` plus ``query``."""
    ts, nonce = str(int(clock())), "5150"
    params = {
        "signature": signature(TOKEN, ts, nonce),
        "timestamp": ts,
        "nonce": nonce,
        "encrypt_type": "aes",
    }
    params.update(query)
    return Client(cb).post("/wechat", query_string=params, data=body)


def test_handshake_without_echostr_answers_an_empty_body(cb: Callback) -> None:
    ts, nonce = "1714036504", "77"
    resp = Client(cb).get(f"/wechat?signature={signature(TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}")
    assert resp.status_code == 200 and resp.data == b""


def test_reply_content_types(cb: Callback, clock: FakeClock) -> None:
    user = user_for(cb, clock)
    user.send_text("x")
    assert user.last_result is not None
    assert user.last_result.headers["Content-Type"] == "application/xml; charset=utf-8"
    user.send_voice()  # no handler: "success"
    assert user.last_result.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert user.last_result.body == b"success"
    assert user.last_result.headers["X-Content-Type-Options"] == "nosniff"


def test_reply_create_time_is_the_callbacks_clock(cb: Callback, clock: FakeClock) -> None:
    user = user_for(cb, FakeClock(NOW - 100))  # the push is older than our clock
    user.send_text("x")
    assert user.last_result is not None
    assert b"<CreateTime>1714036504</CreateTime>" in user.last_result.body


def test_encrypted_push_without_a_key_names_the_reason(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    plain_only = Callback(TOKEN, clock=clock)
    with caplog.at_level(logging.WARNING, "wxmp.callback"):
        resp = safe_push(plain_only, clock, b"<xml><Encrypt>abc</Encrypt></xml>", msg_signature="0" * 40)
    assert resp.status_code == 400 and resp.data == b"bad request"
    assert "refused (400): encrypted push but no AES key is configured, from" in caplog.text


@pytest.mark.parametrize(
    "body", [b"<xml><ToUserName>gh</ToUserName></xml>", b"<xml><Encrypt></Encrypt></xml>"]
)
def test_encrypted_push_without_ciphertext_is_400(
    cb: Callback, clock: FakeClock, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    with caplog.at_level(logging.WARNING, "wxmp.callback"):
        resp = safe_push(cb, clock, body, msg_signature="0" * 40)
    assert resp.status_code == 400 and resp.data == b"bad request"
    assert "refused (400): encrypted push without Encrypt, from" in caplog.text


def test_bad_msg_signature_names_msg_signature(
    cb: Callback, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    refused: list[dict[str, Any]] = []

    def on_refused(sender: Any, **kw: Any) -> None:
        refused.append(kw)

    signals.signature_refused.connect(on_refused)
    try:
        with caplog.at_level(logging.WARNING, "wxmp.callback"):
            bad = safe_push(cb, clock, b"<xml><Encrypt>abc</Encrypt></xml>", msg_signature="0" * 40)
            missing = safe_push(cb, clock, b"<xml><Encrypt>abc</Encrypt></xml>")
    finally:
        signals.signature_refused.disconnect(on_refused)
    assert bad.status_code == missing.status_code == 403
    assert bad.data == missing.data == b"signature check failed"
    assert [r["reason"] for r in refused] == [
        "bad msg_signature",
        "missing msg_signature, timestamp or nonce",
    ]
    assert "refused (403): bad msg_signature, from" in caplog.text


def test_process_keeps_modes_apart_and_defaults_to_plaintext(clock: FakeClock) -> None:
    from wxmp.messages import parse

    cb = Callback(TOKEN, AES_KEY, APPID, clock=clock)
    runs: list[str] = []
    cb.on("text")(lambda msg: runs.append(msg.content) or "counted")
    msg = parse(user_for(cb, clock).message_xml("text", {"Content": "count"}, msg_id=9))
    assert cb.process(msg) == cb.process(msg, encrypted=True)
    assert runs == ["count", "count"]  # one run per mode
    assert "counted" in cb.process(msg, encrypted=False)  # the first call was the plaintext one
    assert runs == ["count", "count"]


def test_mode_dedup_keys_are_a_fleet_wide_contract(cb: Callback, clock: FakeClock) -> None:
    from wxmp.messages import parse
    from wxmp.middleware import mode_dedup_key

    msg = parse(user_for(cb, clock).message_xml("text", {"Content": "x"}, msg_id=9))
    # Workers of two releases (and the WSGI and ASGI callbacks) share these keys on one store.
    assert mode_dedup_key(msg, True) == "aes:" + msg.dedup_key
    assert mode_dedup_key(msg, False) == "raw:" + msg.dedup_key
    cb.on("text")(lambda msg: "first run")
    for encrypted in (True, False):  # process() records each reply under that key
        reply = cb.process(msg, encrypted=encrypted)
        assert cb.dedup.claim(mode_dedup_key(msg, encrypted)) == (False, False, reply)  # type: ignore[union-attr]


def test_without_dedup_every_delivery_runs(clock: FakeClock) -> None:
    cb = Callback(TOKEN, clock=clock, dedup=False)
    seen: list[str] = []
    cb.on("text")(lambda msg: seen.append(msg.content) or f"got {msg.content}")
    user = WeChatUser(cb, TOKEN, clock=clock)
    assert user.send_text("a", msg_id=3) == TextReply("got a")
    assert user.send_text("a", msg_id=3) == TextReply("got a")
    assert seen == ["a", "a"]


def test_a_dead_cache_still_hands_the_message_to_the_handler(clock: FakeClock) -> None:
    from cachelib import BaseCache

    from wxmp.cache import SharedStore

    class Dead(BaseCache):
        def get(self, key: str) -> Any:
            raise ConnectionError("down")

        def set(self, key: str, value: Any, timeout: int | None = None) -> Any:
            raise ConnectionError("down")

        def add(self, key: str, value: Any, timeout: int | None = None) -> Any:
            raise ConnectionError("down")

    cb = Callback(TOKEN, clock=clock, store=SharedStore(Dead(), probe=False))
    cb.on("text")(lambda msg: f"got {msg.content}")
    assert WeChatUser(cb, TOKEN, clock=clock).send_text("still here") == TextReply("got still here")


def test_a_retry_in_the_next_span_finds_the_filesystem_mark(clock: FakeClock, tmp_path: Any) -> None:
    from cachelib import FileSystemCache

    from wxmp.cache import SharedStore

    # The filesystem store appends to one file per span of our clock; a retry that arrives after
    # the span turned must still find the mark in the previous file.
    store = SharedStore(FileSystemCache(str(tmp_path)), probe=False)
    span = Callback(TOKEN, store=store).dedup.backend.span  # type: ignore[union-attr]
    start = FakeClock(span * (int(NOW) // span) + span - 2)
    cb = Callback(TOKEN, clock=start, store=store)
    seen: list[str] = []
    cb.on("text")(lambda msg: seen.append(msg.content) or "once")
    user = WeChatUser(cb, TOKEN, clock=start)
    xml = user.message_xml("text", {"Content": "tick"}, msg_id=11)
    assert user.send_raw(xml) == TextReply("once")
    start.advance(5)  # WeChat's retry, in the next minute, with the same CreateTime
    assert user.send_raw(xml) == TextReply("once")
    assert seen == ["tick"]


class WorkerTimeout(BaseException):
    """What a worker's timeout raises inside a handler (gunicorn raises SystemExit)."""


def test_an_interrupted_handler_leaves_no_claim_file_open(clock: FakeClock, tmp_path: Any) -> None:
    import os

    from cachelib import FileSystemCache

    from wxmp.cache import SharedStore

    cb = Callback(TOKEN, clock=clock, store=SharedStore(FileSystemCache(str(tmp_path)), probe=False))
    attempts: list[int] = []

    @cb.on("text")
    def handler(msg: Any) -> str:
        if msg.content == "warm-up":
            return "warm"
        attempts.append(msg.msg_id)
        raise WorkerTimeout

    user = WeChatUser(cb, TOKEN, clock=clock)
    xml = user.message_xml("text", {"Content": "x"}, msg_id=12)
    assert user.send_raw(user.message_xml("text", {"Content": "warm-up"})) == TextReply(
        "warm"
    )  # folders made
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(WorkerTimeout):
        user.send_raw(xml)
    assert len(os.listdir("/proc/self/fd")) == open_before  # the claim's file was closed
    assert cb.dedup.backend._claimed == {}  # type: ignore[union-attr]  # nor held in memory
    assert attempts == [12]  # (the lease lapsing is tested in test_dedup.py)


def test_slow_and_quick_handlers_side_by_side(clock: FakeClock) -> None:
    cb = Callback(TOKEN, clock=clock)
    cb.on("text")(lambda msg: f"quick {msg.content}")
    cb.on("click", slow=True)(lambda msg: f"slow {msg.key}")
    user = WeChatUser(cb, TOKEN, clock=clock)
    assert user.send_text("a") == TextReply("quick a")
    assert user.click("K1") == TextReply("slow K1")


def test_handler_failure_log_and_signal_name_the_message(
    cb: Callback, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[tuple[Any, dict[str, Any]]] = []

    def on_failed(sender: Any, **kw: Any) -> None:
        failures.append((sender, kw))

    signals.handler_failed.connect(on_failed)
    try:
        with caplog.at_level(logging.ERROR, "wxmp.callback"):
            user_for(cb, clock).send_text("boom", msg_id=21)
    finally:
        signals.handler_failed.disconnect(on_failed)
    assert "wxmp handler failed for 'text' from 'oWxmpTestUser000000000000000'" in caplog.messages
    [(sender, kw)] = failures
    assert sender is cb and kw["message"].msg_id == 21 and str(kw["exception"]) == "handler exploded"


def test_reply_sent_carries_the_message(cb: Callback, clock: FakeClock) -> None:
    sent: list[dict[str, Any]] = []

    def on_sent(sender: Any, **kw: Any) -> None:
        sent.append(kw)

    signals.reply_sent.connect(on_sent)
    try:
        user_for(cb, clock).send_text("hi", msg_id=22)
    finally:
        signals.reply_sent.disconnect(on_sent)
    assert sent[0]["message"].msg_id == 22 and sent[0]["reply"] == TextReply("echo: hi")


def test_configuration_errors_name_the_setting() -> None:
    from wxmp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^WXMP_TOKEN: is required for the callback$") as info:
        Callback("")
    assert info.value.key == "WXMP_TOKEN"
    with pytest.raises(ConfigError, match=r"^WXMP_APPID: is required when WXMP_AES_KEY is set$") as info:
        Callback(TOKEN, AES_KEY)
    assert info.value.key == "WXMP_APPID"
    with pytest.raises(ConfigError, match=r"^WXMP_AES_KEY: EncodingAESKey must be 43 characters$") as info:
        Callback(TOKEN, "x" * 10, APPID)
    assert info.value.key == "WXMP_AES_KEY"


def test_repr_and_the_wrapped_app(clock: FakeClock) -> None:
    def other(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"other app"]

    safe = Callback(TOKEN, AES_KEY, APPID, clock=clock, app=other)
    assert repr(safe) == "<Callback /wechat aes appid='wx1234567890abcdef'>"
    assert Client(safe).get("/").data == b"other app"
    assert repr(Callback(TOKEN)) == "<Callback /wechat plaintext appid=None>"
    alone = Client(Callback(TOKEN)).get("/")
    assert (alone.status_code, alone.data) == (404, b"not found")
    assert alone.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_allow_plaintext_warns_only_with_an_aes_key(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "wxmp.callback"):
        Callback(TOKEN, allow_plaintext=True)
        Callback(TOKEN, AES_KEY, APPID)
        assert caplog.messages == []
        Callback(TOKEN, AES_KEY, APPID, allow_plaintext=True)
    assert caplog.messages == [
        "WXMP_ALLOW_PLAINTEXT is on: /wechat accepts unencrypted pushes although an AES key is set; "
        "anyone holding one logged query string can post bodies of their choice. Turn it off "
        "once the account is in safe mode."
    ]


def test_signals_come_from_the_given_sender(clock: FakeClock) -> None:
    owner = object()
    cb = Callback(TOKEN, clock=clock, sender=owner)
    cb.on()(lambda msg: "x")
    senders: list[Any] = []

    def on_received(sender: Any, **kw: Any) -> None:
        senders.append(sender)

    signals.message_received.connect(on_received)
    try:
        WeChatUser(cb, TOKEN, clock=clock).send_text("x")
    finally:
        signals.message_received.disconnect(on_received)
    assert senders == [owner]


def test_dedup_ttl_bounds_how_long_a_reply_is_kept(clock: FakeClock) -> None:
    cb = Callback(TOKEN, clock=clock, dedup_ttl=60)
    seen: list[str] = []
    cb.on("text")(lambda msg: seen.append(msg.content) or "kept")
    user = WeChatUser(cb, TOKEN, clock=clock)
    xml = user.message_xml("text", {"Content": "q"}, msg_id=31)
    user.send_raw(xml)
    clock.advance(59)
    user.send_raw(xml)
    assert seen == ["q"]
    clock.advance(2)  # past the 60 s ttl: the same message is new again
    user.send_raw(xml)
    assert seen == ["q", "q"]


def test_the_default_store_keeps_marks_through_a_burst(clock: FakeClock) -> None:
    cb = Callback(TOKEN, clock=clock)
    seen: list[int] = []
    cb.on("text")(lambda msg: seen.append(msg.msg_id) or "ok")
    user = WeChatUser(cb, TOKEN, clock=clock)
    first = user.message_xml("text", {"Content": "first"}, msg_id=1)
    ts, nonce = "1714036504", "4242"
    url = f"/wechat?signature={signature(TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}"
    assert Client(cb).post(url, data=first).status_code == 200
    for i in range(2, 1200):  # beyond cachelib's default threshold of 500 entries
        user.send_text("burst", msg_id=i)
    user.send_raw(first)  # WeChat's retry of the first message
    assert seen.count(1) == 1
    swapped = user.message_xml("text", {"Content": "swapped"}, msg_id=5000)
    assert Client(cb).post(url, data=swapped).status_code == 403  # the first signature is still bound


def test_replies_are_kept_for_five_minutes_by_default(clock: FakeClock) -> None:
    cb = Callback(TOKEN, clock=clock)
    seen: list[str] = []
    cb.on("text")(lambda msg: seen.append(msg.content) or "kept")
    user = WeChatUser(cb, TOKEN, clock=clock)
    xml = user.message_xml("text", {"Content": "q"}, msg_id=32)
    user.send_raw(xml)
    clock.advance(299)
    user.send_raw(xml)
    assert seen == ["q"]
    clock.advance(1.5)
    user.send_raw(xml)
    assert seen == ["q", "q"]


def test_an_async_handler_works_behind_the_wsgi_callback_too() -> None:
    import asyncio

    from wxmp import Account

    acct = Account(token="tok123", cache="simple")

    @acct.on("text")
    async def answer(msg):
        await asyncio.sleep(0)
        return f"awaited {msg.content}"

    assert WeChatUser(acct.callback, "tok123").send_text("hi") == TextReply("awaited hi")


def test_a_failing_event_handler_is_logged_with_its_kinds(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cb = Callback(TOKEN, clock=clock)
    cb.on("click")(lambda msg: 1 / 0)
    with caplog.at_level(logging.ERROR, "wxmp.callback"):
        assert WeChatUser(cb, TOKEN, clock=clock).click("K") is None
    assert caplog.messages == ["wxmp handler failed for 'click/event' from 'oWxmpTestUser000000000000000'"]


def test_a_push_in_each_mode_is_its_own_delivery(clock: FakeClock) -> None:
    cb = Callback(TOKEN, AES_KEY, APPID, clock=clock, allow_plaintext=True)
    runs: list[str] = []
    cb.on("text")(lambda msg: runs.append(msg.content) or "ran")
    plain, safe = user_for(cb, clock, "plain"), user_for(cb, clock, "safe")
    xml = plain.message_xml("text", {"Content": "twice"}, msg_id=41)
    assert plain.send_raw(xml) == safe.send_raw(xml)
    assert runs == ["twice", "twice"]  # a plaintext reply is never answered to an encrypted push


def test_request_fields_in_log_lines_are_quoted_and_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """A signed push's FromUserName may hold newlines (to forge log lines) or a megabyte: the handler's
    failure line shows it quoted and cut."""
    from wxmp import Account
    from wxmp.errors import loggable

    acct = Account(token="tok123", cache="simple")

    @acct.on("text")
    def broken(msg):
        raise RuntimeError("boom")

    forged = "o1\nERROR forged line " + "x" * 5000
    with caplog.at_level(logging.ERROR, logger="wxmp.callback"):
        assert WeChatUser(acct.callback, "tok123", openid=forged).send_text("hi") is None
    [record] = [r for r in caplog.records if r.getMessage().startswith("wxmp handler failed")]
    line = record.getMessage()
    assert "\n" not in line and len(line) < 200
    assert line == "wxmp handler failed for 'text' from " + loggable(forged)
    assert loggable("x" * 70) == repr("x" * 64) + "…" and loggable("ok") == "'ok'"
