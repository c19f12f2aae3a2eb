"""Hostile input at the callback: XXE, entity bombs, oversized and truncated bodies. Never a 5xx."""

from __future__ import annotations

import http.server
import io
import itertools
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from wxmp import signals
from wxmp.crypto import signature
from wxmp.middleware import Callback
from wxmp.testing.clock import FakeClock
from wxmp.testing.user import WeChatUser

DATA = Path(__file__).parent / "data"
TOKEN = "tok123"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx1234567890abcdef"
NOW = 1714036504.0


@pytest.fixture
def handled() -> list[Any]:
    return []


@pytest.fixture
def cb(handled: list[Any]) -> Callback:
    # allow_plaintext: the "plain" user below tests the parser, not the mode rule.
    callback = Callback(TOKEN, AES_KEY, APPID, clock=FakeClock(NOW), allow_plaintext=True)
    callback.on()(lambda msg: handled.append(msg) or "handled")
    return callback


@pytest.fixture(params=["plain", "safe"])
def user(request: pytest.FixtureRequest, cb: Callback) -> WeChatUser:
    return WeChatUser(cb, TOKEN, aes_key=AES_KEY, appid=APPID, mode=request.param, clock=FakeClock(NOW))


class Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"SECRET-FROM-NETWORK")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[str]:
    """A local HTTP server on a free port that records any request made to it."""
    Recorder.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_xxe_file_entity(user: WeChatUser, handled: list[Any]) -> None:
    result = user.post((DATA / "hostile_xxe_file.xml").read_bytes())
    assert result.status == 400
    assert b"root:" not in result.body
    assert handled == []


def test_xxe_http_entity_makes_no_request(user: WeChatUser, handled: list[Any], listener: str) -> None:
    xml = (DATA / "hostile_xxe_file.xml").read_text().replace("file:///etc/passwd", f"{listener}/xxe")
    result = user.post(xml)
    assert result.status == 400
    # an external DTD reference too
    dtd = f'<?xml version="1.0"?><!DOCTYPE xml SYSTEM "{listener}/dtd"><xml><MsgType>text</MsgType></xml>'
    assert user.post(dtd).status == 400
    assert Recorder.hits == []
    assert handled == []


def test_billion_laughs(user: WeChatUser, handled: list[Any]) -> None:
    result = user.post((DATA / "hostile_billion_laughs.xml").read_bytes())
    assert 400 <= result.status < 500
    assert handled == []


@pytest.mark.parametrize(
    "body",
    [
        b"<xml><ToUserName>gh</ToUserName><MsgType>text</MsgType><Content>cut",
        b"<xml><MsgType>text</MsgType></xm",
        b"\x00\x01\x02garbage",
        b"<xml><Content>no type</Content></xml>",
    ],
)
def test_truncated_or_malformed(user: WeChatUser, handled: list[Any], body: bytes) -> None:
    assert user.post(body).status == 400
    assert handled == []


def test_truncated_safe_envelope(cb: Callback, handled: list[Any]) -> None:
    user = WeChatUser(cb, TOKEN, aes_key=AES_KEY, appid=APPID, clock=FakeClock(NOW))
    ts, nonce = "1714036504", "1"
    params = {
        "signature": signature(TOKEN, ts, nonce),
        "timestamp": ts,
        "nonce": nonce,
        "encrypt_type": "aes",
    }
    assert user.request("POST", params, b"<xml><Encrypt><![CDATA[abc").status == 400
    assert user.request("POST", params, b"<xml><ToUserName>gh</ToUserName></xml>").status == 400
    assert handled == []


def test_ten_mib_body_is_413(user: WeChatUser, handled: list[Any]) -> None:
    big = b"<xml><MsgType>text</MsgType><Content>" + b"a" * (10 << 20) + b"</Content></xml>"
    result = user.post(big)
    assert result.status == 413
    assert handled == []


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.requested: list[int] = []

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        self.requested.append(-1 if size is None else size)
        return super().read(size)


_NONCES = itertools.count(1)


def call(cb: Callback, environ_extra: dict[str, Any], stream: io.BytesIO) -> tuple[str, bytes]:
    # A fresh nonce per request: one signature reused with another body is refused (403).
    ts, nonce = "1714036504", str(next(_NONCES))
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/wechat",
        "QUERY_STRING": f"signature={signature(TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}",
        "wsgi.input": stream,
        **environ_extra,
    }
    status: list[str] = []
    body = b"".join(cb(environ, lambda s, h: status.append(s)))
    return status[0], body


def test_content_length_checked_before_reading(cb: Callback) -> None:
    stream = CountingStream(b"x" * 100)
    status, _ = call(cb, {"CONTENT_LENGTH": str(10 << 20)}, stream)
    assert status.startswith("413") and stream.requested == []


def test_read_is_capped_without_content_length(cb: Callback) -> None:
    stream = CountingStream(b"<xml>" + b"a" * (3 << 20))
    status, _ = call(cb, {"wsgi.input_terminated": True}, stream)
    assert status.startswith("413")
    assert stream.requested == [cb.max_body + 1]


def test_lying_content_length_reads_only_what_it_said(cb: Callback) -> None:
    xml = b"<xml><MsgType>text</MsgType><MsgId>1</MsgId></xml>"
    stream = CountingStream(xml + b"a" * (5 << 20))
    status, _ = call(cb, {"CONTENT_LENGTH": str(len(xml))}, stream)
    assert status.startswith("200") and stream.requested == [len(xml)]


@pytest.mark.parametrize("length", ["abc", "-5", ""])
def test_bad_or_missing_content_length(cb: Callback, length: str) -> None:
    status, _ = call(cb, {"CONTENT_LENGTH": length}, CountingStream(b""))
    assert status.startswith("400")


def test_never_5xx_on_random_bytes(cb: Callback) -> None:
    import random

    rnd = random.Random(1234)
    for _ in range(200):
        body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 200)))
        status, _ = call(cb, {"CONTENT_LENGTH": str(len(body))}, io.BytesIO(body))
        assert status[:3] in ("200", "400"), status


# -- every refusal: its status, its short body, the reason logged, and who hears of it ----------

XML = b"<xml><ToUserName>gh</ToUserName><FromUserName>oU</FromUserName><CreateTime>1714036504</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>7</MsgId></xml>"


def answer(
    cb: Callback, environ_extra: dict[str, Any], data: bytes = b"", query: str = ""
) -> tuple[str, dict[str, str], bytes]:
    ts, nonce = "1714036504", str(next(_NONCES))
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/wechat",
        "QUERY_STRING": f"signature={signature(TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}{query}",
        "REMOTE_ADDR": "203.0.113.9",
        "wsgi.input": io.BytesIO(data),
        **environ_extra,
    }
    got: list[Any] = []
    body = b"".join(cb(environ, lambda s, h: got.append((s, dict(h)))))
    return got[0][0], got[0][1], body


@pytest.mark.parametrize(
    ("extra", "data", "query", "status", "text", "reason"),
    [
        ({"CONTENT_LENGTH": "abc"}, b"", "", "400 Bad Request", "bad request", "bad Content-Length"),
        ({"CONTENT_LENGTH": "101"}, b"", "", "413 Content Too Large", "body too large", "body of 101 bytes"),
        (
            {"wsgi.input_terminated": True},
            b"x" * 101,
            "",
            "413 Content Too Large",
            "body too large",
            "body over the limit",
        ),
        ({"CONTENT_LENGTH": "0"}, b"<", "", "400 Bad Request", "bad request", "empty body"),
        ({}, b"<xml/>", "", "400 Bad Request", "bad request", "empty body"),
        ({"CONTENT_LENGTH": "1"}, b"<", "", "400 Bad Request", "bad request", "malformed XML"),
        (
            {"CONTENT_LENGTH": "10"},
            b"<xml></xml",
            "&encrypt_type=rsa",
            "400 Bad Request",
            "bad request",
            "unknown encrypt_type",
        ),
        ({"REQUEST_METHOD": "PUT"}, b"", "", "405 Method Not Allowed", "method not allowed", "method PUT"),
    ],
)
def test_each_refusal_is_answered_and_logged(
    extra: dict[str, Any], data: bytes, query: str, status: str, text: str, reason: str, caplog: Any
) -> None:
    cb = Callback(TOKEN, clock=FakeClock(NOW), max_body=100)
    refused: list[Any] = []

    def on_refused(sender: Any, **kw: Any) -> None:
        refused.append(kw)

    signals.signature_refused.connect(on_refused)
    try:
        with caplog.at_level(logging.WARNING, "wxmp.callback"):
            got, headers, body = answer(cb, extra, data, query)
    finally:
        signals.signature_refused.disconnect(on_refused)
    assert (got, body) == (status, text.encode())
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Length"] == str(len(text))
    assert caplog.messages[0].startswith(f"wxmp callback refused ({status[:3]}): {reason}")
    assert caplog.messages[0].endswith(", from 203.0.113.9")
    assert refused == []  # only 403s are signature refusals


def test_a_body_of_exactly_max_body_is_read(caplog: Any) -> None:
    cb = Callback(TOKEN, clock=FakeClock(NOW), max_body=len(XML))
    cb.on()(lambda msg: "read")
    for extra in ({"CONTENT_LENGTH": str(len(XML))}, {"wsgi.input_terminated": True}):
        got, headers, body = answer(cb, extra, XML)
        assert got == "200 OK" and b"read" in body
        assert headers["Content-Length"] == str(len(body))


def test_a_plaintext_push_to_an_aes_account_names_the_rule(caplog: Any) -> None:
    cb = Callback(TOKEN, AES_KEY, APPID, clock=FakeClock(NOW))
    refused: list[tuple[Any, dict[str, Any]]] = []

    def on_refused(sender: Any, **kw: Any) -> None:
        refused.append((sender, kw))

    signals.signature_refused.connect(on_refused)
    try:
        with caplog.at_level(logging.WARNING, "wxmp.callback"):
            got, _, body = answer(cb, {"CONTENT_LENGTH": str(len(XML))}, XML)
    finally:
        signals.signature_refused.disconnect(on_refused)
    assert (got, body) == ("403 Forbidden", b"encrypted push required")
    reason = "plaintext push to an account with an AES key"
    assert caplog.messages == [f"wxmp callback refused (403): {reason}, from 203.0.113.9"]
    assert refused == [(cb, {"reason": reason, "remote_addr": "203.0.113.9"})]


def test_a_request_without_remote_addr_is_logged_as_unknown(caplog: Any) -> None:
    cb = Callback(TOKEN, clock=FakeClock(NOW))
    environ = {"REQUEST_METHOD": "DELETE", "PATH_INFO": "/wechat", "wsgi.input": io.BytesIO()}
    handshake = {"REQUEST_METHOD": "GET", "PATH_INFO": "/wechat"}  # no QUERY_STRING at all
    got: list[str] = []
    with caplog.at_level(logging.WARNING, "wxmp.callback"):
        b"".join(cb(environ, lambda s, h: None))
        assert b"".join(cb(handshake, lambda s, h: got.append(s))) == b"signature check failed"
    assert got == ["403 Forbidden"]
    assert caplog.messages == [
        "wxmp callback refused (405): method DELETE, from ?",
        "wxmp callback refused (403): missing signature, timestamp or nonce, from ?",
    ]


def test_query_values_and_names_are_unquoted(cb: Callback) -> None:
    ts, nonce = "1714036504", "8"
    sig = f"signature={signature(TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}"
    for query, echoed in [
        ("echostr=a+b%2Bc", b"a b+c"),
        ("echostr=x+y", b"x y"),
        ("echo%73tr=plain", b"plain"),
        ("echostr=abc==", b"abc=="),
        ("", b""),
    ]:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/wechat", "QUERY_STRING": f"{sig}&{query}"}
        got: list[str] = []
        assert b"".join(cb(environ, lambda s, h, got=got: got.append(s))) == echoed
        assert got == ["200 OK"]
