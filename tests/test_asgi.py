"""The ASGI callback (wxmp.asgi): the WSGI pipeline's answers, with async handlers awaited on the loop.

Driven in-process by Starlette's TestClient (a real ASGI server loop in a thread), and mounted in
FastAPI; the cross-process dedup test is in test_asgi_fleet.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import warnings
from typing import Any

import pytest

with warnings.catch_warnings():
    # Starlette 1.x nudges its TestClient toward another HTTP package; this one works as it is.
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

from wxmp import Account, signals
from wxmp.asgi import AsgiCallback, Callback
from wxmp.messages import parse
from wxmp.middleware import Callback as WsgiCallback
from wxmp.replies import TextReply
from wxmp.testing import FakeWeChat, WeChatUser
from wxmp.testing.clock import FakeClock

TOKEN = "asgitoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx1234567890abcdef"


class _Response:
    def __init__(self, response: Any) -> None:
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers

    def get_data(self) -> bytes:
        return self.response.content

    def close(self) -> None:
        pass


class AsgiTestClient:
    """WeChatUser's test-client interface (``open``/``post``) over Starlette's TestClient."""

    def __init__(self, app: Any) -> None:
        self.client = TestClient(app)

    def open(self, path: str, *, method: str, query_string: Any, data: Any, content_type: Any) -> _Response:
        headers = {"Content-Type": content_type} if content_type else {}
        return _Response(
            self.client.request(method, path, params=query_string, content=data, headers=headers)
        )

    post = open


@pytest.fixture
def fake():
    with FakeWeChat() as fake:
        fake.add_user("oAsync", nickname="Ada")
        yield fake


@pytest.fixture
def acct(fake):
    acct = Account(
        appid=fake.appid, secret=fake.secret, api_base=fake.url, token=TOKEN, aes_key=AES_KEY, cache="simple"
    )
    seen: dict[str, Any] = {}
    acct.seen = seen  # type: ignore[attr-defined]

    @acct.on("text", match=r"^sync")
    def plain(msg):
        seen["plain_thread"] = threading.current_thread().name
        try:
            asyncio.get_running_loop()
            seen["plain_on_loop"] = True
        except RuntimeError:
            seen["plain_on_loop"] = False
        return "plain " + msg.content

    @acct.on("text", match=r"^boom")
    async def boom(msg):
        raise RuntimeError("handler bug")

    @acct.on("text")
    async def reply(msg):
        asyncio.get_running_loop()  # on the loop: raises if run in a thread
        seen["runs"] = seen.get("runs", 0) + 1
        seen["current"] = msg.account
        info = await acct.aio.user.get("oAsync")
        return f"hello {info['nickname']}: {msg.content}"

    yield acct
    acct.stop()


@pytest.fixture
def wechat(acct):
    def make(app: Any = None, mode: str = "safe", path: str = "/wechat") -> WeChatUser:
        client = AsgiTestClient(app if app is not None else acct.asgi)
        return WeChatUser(client, TOKEN, aes_key=AES_KEY, appid=acct.settings.appid, mode=mode, path=path)  # type: ignore[arg-type]

    return make


@pytest.mark.parametrize("mode", ["compatible", "safe"])
def test_async_handler_is_awaited_and_calls_the_async_api(acct, wechat, fake, mode):
    u = wechat(mode=mode)
    assert u.send_text("hi") == TextReply("hello Ada: hi")
    assert acct.seen["current"] is acct  # msg.account inside an async handler
    if mode != "plain":
        assert u.last_result.body.startswith(b"<xml><Encrypt>")  # the reply went back encrypted
    assert fake.count("/cgi-bin/user/info") == 1


def test_plain_handler_runs_in_a_thread_not_on_the_loop(acct, wechat):
    assert wechat().send_text("sync me") == TextReply("plain sync me")
    assert acct.seen["plain_on_loop"] is False


def test_handshake_and_its_refusal(wechat):
    u = wechat()
    assert u.verify("echo-42") == "echo-42"
    result = u.request("GET", {"signature": "0" * 40, "timestamp": "1", "nonce": "1", "echostr": "x"})
    assert result.status == 403


def test_async_handler_failure_answers_success_and_logs(acct, wechat, caplog):
    with caplog.at_level(logging.ERROR, logger="wxmp.callback"):
        assert wechat().send_text("boom now") is None
    assert "handler failed" in caplog.text
    assert "handler bug" in caplog.text  # the traceback


def test_retries_are_deduplicated(acct, wechat):
    u = wechat()
    xml = u.message_xml("text", {"Content": "once"}, msg_id=4242)
    first = u.send_raw(xml)
    second = u.send_raw(xml)
    assert first == second == TextReply("hello Ada: once")
    assert acct.seen["runs"] == 1


def test_refusals(acct, wechat, caplog):
    u = wechat()
    signed = u._signed()
    with caplog.at_level(logging.WARNING, logger="wxmp.callback"):
        # unsigned / badly signed: 403, before the body is read
        assert u.request("POST", {"signature": "x", "timestamp": "1", "nonce": "1"}, b"<xml/>").status == 403
        # a plaintext push to an account with an AES key: 403 (no downgrade), as over WSGI
        assert u.post(u.message_xml("text", {"Content": "x"}), encrypt=False).status == 403
        # malformed XML and an empty body: 400
        assert u.post(b"<xml><Content>").status == 400
        assert u.request("POST", dict(signed, encrypt_type="aes"), b"").status == 400
        # a wrong msg_signature on an encrypted push: 403
        bad = dict(u._signed(), encrypt_type="aes", msg_signature="0" * 40)
        assert u.request("POST", bad, b"<xml><Encrypt><![CDATA[abc]]></Encrypt></xml>").status == 403
        # undecryptable ciphertext with a valid msg_signature: 400
        from wxmp.crypto import signature

        params = u._signed()
        params.update(
            encrypt_type="aes", msg_signature=signature(TOKEN, params["timestamp"], params["nonce"], "abc")
        )
        assert u.request("POST", params, b"<xml><Encrypt><![CDATA[abc]]></Encrypt></xml>").status == 400
        # too large: by Content-Length, 413
        big = b"<xml>" + b"x" * (acct.settings.max_body + 1) + b"</xml>"
        assert u.request("POST", u._signed(), big).status == 413
        # other methods: 405
        assert u.request("PUT", u._signed(), b"<xml/>").status == 405
        assert u.request("DELETE", u._signed()).status == 405
    assert "refused (403)" in caplog.text and "refused (413)" in caplog.text
    assert "runs" not in acct.seen  # nothing reached a handler
    assert TOKEN not in caplog.text


def test_a_streamed_body_over_the_limit_is_413_without_reading_it_all(acct):
    app = acct.asgi
    sent: list[dict] = []
    chunk = b"x" * 65536
    budget = acct.settings.max_body // len(chunk) + 50
    reads = 0

    async def receive() -> dict:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": chunk, "more_body": reads < budget}

    async def send(message: dict) -> None:
        sent.append(message)

    u = WeChatUser(acct.callback, TOKEN)  # only for a valid signature
    qs = "&".join(f"{k}={v}" for k, v in u._signed().items()).encode()
    scope = {"type": "http", "method": "POST", "path": "/wechat", "query_string": qs, "headers": []}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert reads <= acct.settings.max_body // len(chunk) + 1


def test_client_gone_before_the_body_gets_no_answer(acct):
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    u = WeChatUser(acct.callback, TOKEN)
    qs = "&".join(f"{k}={v}" for k, v in u._signed().items()).encode()
    scope = {"type": "http", "method": "POST", "path": "/wechat", "query_string": qs, "headers": []}
    asyncio.run(acct.asgi(scope, receive, send))
    assert sent == []


def test_other_paths_404_alone_or_go_to_the_wrapped_app(acct):
    alone = TestClient(acct.asgi)
    assert alone.get("/elsewhere").status_code == 404

    async def other(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"other app"})

    wrapped = AsgiCallback(acct, app=other)
    client = TestClient(wrapped)
    assert client.get("/elsewhere").text == "other app"


def test_mounted_in_fastapi(acct, wechat):
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    app.mount("/wechat", acct.asgi)
    # Starlette's Mount matches "/wechat/..." (a bare "/wechat" is redirected): configure the
    # trailing slash in WeChat's server settings, or wrap the app instead (next test).
    assert wechat(app, path="/wechat/").send_text("mounted") == TextReply("hello Ada: mounted")
    assert wechat(app, path="/wechat/").verify("e") == "e"
    assert TestClient(app).get("/health").json() == {"ok": True}


def test_in_front_of_fastapi_answers_the_exact_path(acct, wechat):
    from fastapi import FastAPI

    api = FastAPI()

    @api.get("/health")
    def health() -> dict:
        return {"ok": True}

    app = Callback(acct).wrap(api)
    assert wechat(app).send_text("front") == TextReply("hello Ada: front")
    assert TestClient(app).get("/health").json() == {"ok": True}


def test_root_path_is_honoured(acct, wechat):
    # Behind a proxy prefix (uvicorn --root-path /bot): the route is the path under the prefix.
    client = TestClient(acct.asgi, root_path="/bot")
    u = wechat()
    response = client.get("/bot/wechat", params={**u._signed(), "echostr": "rp"})
    assert response.text == "rp"


def test_lifespan_alone(acct):
    with TestClient(acct.asgi) as client:  # startup and shutdown complete
        assert client.get("/nope").status_code == 404


def test_from_a_bare_wsgi_callback():
    cb = WsgiCallback(TOKEN)

    @cb.on("text")
    async def shout(msg):
        await asyncio.sleep(0)
        return msg.content.upper()

    u = WeChatUser(AsgiTestClient(AsgiCallback(cb)), TOKEN)  # type: ignore[arg-type]
    assert u.send_text("quiet") == TextReply("QUIET")


def test_acct_asgi_is_one_object(acct):
    assert acct.asgi is acct.asgi
    assert acct.asgi.callback is acct.callback


def test_fastapi_example(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys
    from pathlib import Path

    for key in ("WXMP_TOKEN", "WXMP_APPID", "WXMP_SECRET", "WXMP_AES_KEY", "WXMP_CACHE", "WXMP_API_BASE"):
        monkeypatch.delenv(key, raising=False)
    path = Path(__file__).resolve().parent.parent / "examples" / "fastapi_bot.py"
    spec = importlib.util.spec_from_file_location("fastapi_bot_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fastapi_bot_example", module)
    spec.loader.exec_module(module)
    try:
        module.fake.add_user("oFan", nickname="Fan")
        with TestClient(module.app) as client:  # FastAPI's lifespan runs through the wrapper
            assert client.get("/").json()["bot"] == "running"
        u = WeChatUser(AsgiTestClient(module.app), "wxmpdemo", openid="oFan")  # type: ignore[arg-type]
        assert u.verify("ok") == "ok"
        assert u.send_text("ping") == TextReply("ping")
        assert u.send_text("whoami") == TextReply("You are Fan (subscribed: 1)")
        assert "Welcome" in u.subscribe().content  # type: ignore[union-attr]
    finally:
        module.fake.stop()


def test_slow_handlers_behind_the_asgi_callback(fake):
    """A slow handler (sync or async) answers passively when quick, else through customer service;
    the waiting delivery sleeps on the loop (wxmp.slow's async driver) instead of holding a thread."""
    acct = Account(
        appid=fake.appid, secret=fake.secret, api_base=fake.url, token=TOKEN, aes_key=AES_KEY, cache="simple",
        slow_wechat_timeout=1.0, slow_margin=0.3, slow_strategy="customer_service",
    )  # fmt: skip
    release = threading.Event()
    driven: list[str] = []
    from wxmp.slow import SlowRunner

    original = SlowRunner.process_async

    async def spy(self, msg):
        driven.append(msg.content)
        return await original(self, msg)

    @acct.on("text", match=r"^quick", slow=True)
    async def quick(msg):
        await asyncio.sleep(0.05)
        return "quick " + msg.content

    @acct.on("text", slow=True)
    def later(msg):
        release.wait(10)
        return "later " + msg.content

    try:
        SlowRunner.process_async = spy  # type: ignore[method-assign]
        client = AsgiTestClient(acct.asgi)
        u = WeChatUser(client, TOKEN, aes_key=AES_KEY, appid=fake.appid, openid="oAsync")  # type: ignore[arg-type]
        assert u.send_text("quick one") == TextReply("quick quick one")
        assert u.send_text("think hard") is None  # "success": the answer comes later
        release.set()
        for _ in range(200):
            sent = fake.calls("/cgi-bin/message/custom/send")
            if any(c.json.get("msgtype") == "text" for c in sent):
                break
            threading.Event().wait(0.05)
        texts = [
            c.json["text"]["content"]
            for c in fake.calls("/cgi-bin/message/custom/send")
            if c.json.get("msgtype") == "text"
        ]
        assert texts == ["later think hard"]
        assert driven == ["quick one", "think hard"]  # both went through the async driver
    finally:
        SlowRunner.process_async = original  # type: ignore[method-assign]
        release.set()
        acct.stop()


def test_wechat_user_drives_an_asgi_app_directly(acct, fake):
    """The testing kit takes an ASGI app as its target (one private loop, like a server)."""
    u = WeChatUser(acct.asgi, TOKEN, aes_key=AES_KEY, appid=fake.appid, openid="oAsync")
    assert u.send_text("direct") == TextReply("hello Ada: direct")
    assert u.send_text("sync please").content == "plain sync please"
    assert acct.seen["plain_on_loop"] is False


# -- the ASGI messages themselves, driven by hand (no server in between) -------------------------


class Exchange:
    """One ASGI connection: the messages the app will receive, what it sent, how often it read."""

    def __init__(self, *incoming: dict[str, Any]) -> None:
        self.incoming = list(incoming)
        self.sent: list[dict[str, Any]] = []
        self.reads = 0

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        return self.incoming.pop(0)

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m["body"] for m in self.sent[1:])


def http_scope(
    method: str = "POST",
    path: str = "/wechat",
    query: dict[str, str] | None = None,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    qs = "&".join(f"{k}={v}" for k, v in (query or {}).items()).encode()
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": qs,
        "headers": list(headers),
        **extra,
    }


def run(app: Any, scope: dict[str, Any], *incoming: dict[str, Any]) -> Exchange:
    exchange = Exchange(*incoming)
    asyncio.run(app(scope, exchange.receive, exchange.send))
    return exchange


def body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1714036504.0)


def test_answers_are_exact_asgi_messages(clock):
    cb = WsgiCallback(TOKEN, clock=clock)
    cb.on("text")(lambda msg: "got " + msg.content)
    u = WeChatUser(cb, TOKEN, clock=clock)
    app = AsgiCallback(cb)
    echo = run(app, http_scope("GET", query={**u._signed(), "echostr": "e-1"}))
    assert echo.sent == [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"3")],
        },
        {"type": "http.response.body", "body": b"e-1"},
    ]
    push = run(app, http_scope(query=u._signed()), body(u.message_xml("text", {"Content": "hi"})))
    assert push.status == 200
    assert push.sent[0]["headers"] == [
        (b"content-type", b"application/xml; charset=utf-8"),
        (b"content-length", str(len(push.body)).encode()),
    ]
    assert b"<Content><![CDATA[got hi]]></Content>" in push.body


def test_other_paths_and_websockets_without_a_wrapped_app():
    app = AsgiCallback(WsgiCallback(TOKEN))
    other = run(app, http_scope("GET", path="/elsewhere"))
    assert (other.status, other.body) == (404, b"not found")
    ws = run(app, {"type": "websocket", "path": "/wechat", "query_string": b"", "headers": []})
    assert ws.sent == [{"type": "websocket.close", "code": 1000}]


def test_lifespan_of_a_bare_callback():
    lifespan = run(
        AsgiCallback(WsgiCallback(TOKEN)),
        {"type": "lifespan"},
        {"type": "lifespan.startup"},
        {"type": "lifespan.shutdown"},
    )
    assert lifespan.sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


def test_lifespan_shutdown_closes_the_loops_api_connections(acct):
    async def serve() -> tuple[Any, Exchange]:
        assert (await acct.aio.user.get("oAsync"))["nickname"] == "Ada"
        pool = acct.aio.client._http()  # this loop's httpx pool, opened by the call
        lifespan = Exchange({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})
        await acct.asgi({"type": "lifespan"}, lifespan.receive, lifespan.send)
        return pool, lifespan

    pool, lifespan = asyncio.run(serve())
    assert lifespan.sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert pool.is_closed


def test_refusals_log_the_reason_and_the_client_address(caplog):
    app = AsgiCallback(WsgiCallback(TOKEN))
    unsigned = {"signature": "0" * 40, "timestamp": "1", "nonce": "1"}
    with caplog.at_level(logging.WARNING, logger="wxmp.callback"):
        put = run(app, http_scope("PUT", client=("203.0.113.7", 4242)))
        anonymous = run(app, http_scope("GET", query=unsigned))  # an ASGI scope may omit the client
    assert (put.status, put.body) == (405, b"method not allowed")
    assert (anonymous.status, anonymous.body) == (403, b"signature check failed")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "wxmp callback refused (405): method PUT, from 203.0.113.7"
    assert lines[1].startswith("wxmp callback refused (403): timestamp") and lines[1].endswith(", from ?")


def sized_callback(clock: FakeClock) -> tuple[WsgiCallback, WeChatUser, bytes]:
    """A callback whose body limit is exactly the size of one push."""
    u = WeChatUser(WsgiCallback(TOKEN), TOKEN, clock=clock)
    xml = u.message_xml("text", {"Content": "fits"}, msg_id=1)
    cb = WsgiCallback(TOKEN, clock=clock, max_body=len(xml))
    cb.on("text")(lambda msg: "read " + msg.content)
    return cb, WeChatUser(cb, TOKEN, clock=clock), xml


def test_a_body_of_exactly_the_limit_is_read(clock):
    cb, u, xml = sized_callback(clock)
    app = AsgiCallback(cb)
    length = ((b"content-length", str(len(xml)).encode()),)
    declared = run(app, http_scope(query=u._signed(), headers=length), body(xml[:9], True), body(xml[9:]))
    assert declared.status == 200 and b"<![CDATA[read fits]]>" in declared.body
    # no Content-Length (chunked), and the last message has no "body" key (ASGI: empty by default)
    chunked = run(app, http_scope(query=u._signed()), body(xml, True), {"type": "http.request"})
    assert chunked.status == 200 and b"<![CDATA[read fits]]>" in chunked.body


def test_a_body_over_the_limit_is_413_as_soon_as_it_shows(clock, caplog):
    cb, u, xml = sized_callback(clock)
    app = AsgiCallback(cb)
    too_long = ((b"content-length", str(len(xml) + 1).encode()),)
    with caplog.at_level(logging.WARNING, logger="wxmp.callback"):
        declared = run(app, http_scope(query=u._signed(), headers=too_long), body(xml + b" "))
        streamed = run(
            app, http_scope(query=u._signed()), body(xml, True), body(b" ", True), body(b"never read")
        )
        bad = run(app, http_scope(query=u._signed(), headers=((b"content-length", b"12x"),)), body(xml))
    assert (declared.status, declared.body, declared.reads) == (413, b"body too large", 0)
    assert (streamed.status, streamed.body, streamed.reads) == (413, b"body too large", 2)
    assert (bad.status, bad.body, bad.reads) == (400, b"bad request", 0)
    reasons = [r.getMessage().split(": ", 1)[1] for r in caplog.records]
    assert reasons == [
        f"body of {len(xml) + 1} bytes, from ?",
        "body over the limit, from ?",
        "bad Content-Length, from ?",
    ]


@pytest.mark.parametrize("kind", ["async", "plain"])
def test_a_plaintext_and_an_encrypted_push_of_one_message_are_not_duplicates(clock, kind):
    cb = WsgiCallback(TOKEN, AES_KEY, APPID, clock=clock, allow_plaintext=True)
    runs: list[str] = []

    def answer(msg: Any) -> str:
        runs.append(msg.content)
        return f"run {len(runs)}"

    async def answer_async(msg: Any) -> str:
        return answer(msg)

    cb.on("text")(answer_async if kind == "async" else answer)
    app = AsgiCallback(cb)
    plain = WeChatUser(app, TOKEN, aes_key=AES_KEY, appid=APPID, mode="plain", clock=clock)
    safe = WeChatUser(app, TOKEN, aes_key=AES_KEY, appid=APPID, mode="safe", clock=clock)
    xml = plain.message_xml("text", {"Content": "twice"}, msg_id=7)
    assert plain.send_raw(xml) == TextReply("run 1")
    assert safe.send_raw(xml) == TextReply("run 2")  # another mode: its own run, its own reply
    assert plain.send_raw(xml) == TextReply("run 1")  # WeChat's retries, each answered in its mode
    assert safe.send_raw(xml) == TextReply("run 2")
    assert runs == ["twice", "twice"]


@pytest.mark.parametrize("kind", ["async", "plain"])
def test_process_called_directly_is_a_plaintext_delivery(clock, kind):
    cb = WsgiCallback(TOKEN, AES_KEY, APPID, clock=clock, allow_plaintext=True)
    runs: list[str] = []

    def answer(msg: Any) -> str:
        runs.append(msg.content)
        return "once"

    async def answer_async(msg: Any) -> str:
        return answer(msg)

    cb.on("text")(answer_async if kind == "async" else answer)
    app = AsgiCallback(cb)
    u = WeChatUser(app, TOKEN, mode="plain", clock=clock)
    xml = u.message_xml("text", {"Content": "direct"}, msg_id=8)
    assert "<Content><![CDATA[once]]></Content>" in asyncio.run(app.process(parse(xml)))
    assert u.send_raw(xml) == TextReply("once")  # the plaintext retry finds that reply
    assert runs == ["direct"]


def test_coroutine_handlers_are_awaited_on_the_servers_loop(clock):
    cb = WsgiCallback(TOKEN, clock=clock)
    where: dict[str, str] = {}

    async def tagged(tag: str, msg: Any) -> str:
        where[tag] = threading.current_thread().name
        return tag

    class Greeter:
        async def __call__(self, msg: Any) -> str:
            return await tagged("object", msg)

    cb.on("text", match="^partial")(functools.partial(tagged, "partial"))
    cb.on("text", match="^object")(Greeter())
    cb.on("text", match="^coroutine")(lambda msg: tagged("coroutine", msg))  # returns a coroutine
    cb.on("text", match="^native")(functools.partial(functools.partial(tagged), "native"))

    @cb.on("text")
    def plain(msg: Any) -> str:
        where["plain"] = threading.current_thread().name
        return "plain"

    u = WeChatUser(AsgiCallback(cb), TOKEN, clock=clock)  # serves on the thread "WeChatUser-asgi"
    for text in ("partial", "object", "coroutine", "native", "plain"):
        assert u.send_text(text) == TextReply(text)
    loop = "WeChatUser-asgi"
    assert (where["partial"], where["object"], where["native"]) == (loop, loop, loop)
    # a plain function (even one returning a coroutine) runs in a worker thread, as under WSGI
    assert where["coroutine"] != loop and where["plain"] != loop


def test_without_dedup_every_delivery_runs_the_coroutine_handler(clock):
    cb = WsgiCallback(TOKEN, clock=clock, dedup=False)
    runs: list[str] = []

    @cb.on("text", match=r"^(\w+)")
    async def first_word(msg: Any) -> str:
        runs.append(msg.match.group(1))
        return f"run {len(runs)}: {msg.match.group(1)}"

    u = WeChatUser(AsgiCallback(cb), TOKEN, clock=clock)
    xml = u.message_xml("text", {"Content": "again and again"}, msg_id=5)
    assert u.send_raw(xml) == TextReply("run 1: again")
    assert u.send_raw(xml) == TextReply("run 2: again")


def test_signals_of_the_coroutine_path(clock):
    sender = object()
    cb = WsgiCallback(TOKEN, clock=clock, sender=sender)

    @cb.on("text", match="^boom")
    async def boom(msg: Any) -> str:
        raise RuntimeError("async bug")

    @cb.on("text")
    async def fine(msg: Any) -> str:
        return "fine"

    got: list[tuple[str, dict[str, Any]]] = []
    receivers = {}
    for name in ("reply_sent", "duplicate_message", "handler_failed"):
        receivers[name] = functools.partial(lambda name, _sender, **kw: got.append((name, kw)), name)
        getattr(signals, name).connect(receivers[name], sender=sender, weak=False)
    try:
        u = WeChatUser(AsgiCallback(cb), TOKEN, clock=clock)
        xml = u.message_xml("text", {"Content": "hello"}, msg_id=21)
        assert u.send_raw(xml) == u.send_raw(xml) == TextReply("fine")
        assert u.send_text("boom", msg_id=22) is None
    finally:
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver)
    assert [name for name, _ in got] == ["reply_sent", "duplicate_message", "handler_failed"]
    sent, duplicate, failed = (kw for _, kw in got)
    assert (sent["message"].msg_id, sent["reply"]) == (21, TextReply("fine"))
    assert duplicate == {"key": parse(xml).dedup_key}
    assert failed["message"].msg_id == 22
    assert isinstance(failed["exception"], RuntimeError) and str(failed["exception"]) == "async bug"


def test_a_retry_in_the_next_minute_finds_the_filesystem_mark(tmp_path):
    from cachelib import FileSystemCache

    from wxmp.cache import SharedStore

    # The filesystem store files a message under its CreateTime's minute: the coroutine path must
    # hand the claim that CreateTime, or a retry after the minute turned looks in another folder.
    clock = FakeClock(60 * (1714036504 // 60) + 58)
    cb = WsgiCallback(TOKEN, clock=clock, store=SharedStore(FileSystemCache(str(tmp_path)), probe=False))
    seen: list[str] = []

    @cb.on("text")
    async def once(msg: Any) -> str:
        seen.append(msg.content)
        return "once"

    u = WeChatUser(AsgiCallback(cb), TOKEN, clock=clock)
    xml = u.message_xml("text", {"Content": "tick"}, msg_id=11)
    assert u.send_raw(xml) == TextReply("once")
    clock.advance(5)  # WeChat's retry, in the next minute, with the same CreateTime
    assert u.send_raw(xml) == TextReply("once")
    assert seen == ["tick"]


def test_a_cancelled_coroutine_handler_gives_its_claim_up(clock):
    cb = WsgiCallback(TOKEN, clock=clock)
    app = AsgiCallback(cb)
    assert cb.dedup is not None
    released: list[str] = []
    backend = cb.dedup.backend

    class Recording:
        """The dedup store, noting which claims are given up (then left to lapse)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(backend, name)

        def release(self, key: str) -> None:
            released.append(key)
            backend.release(key)

    cb.dedup.backend = Recording()  # type: ignore[assignment]
    runs: list[str] = []

    async def deliver(msg: Any) -> None:
        started = asyncio.Event()

        @cb.on("text")
        async def hangs(msg: Any) -> str:
            runs.append(msg.content)
            started.set()
            await asyncio.Event().wait()  # until cancelled (the client went away, shutdown)
            return "never"

        task = asyncio.create_task(app.process(msg))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    msg = parse(WeChatUser(cb, TOKEN, clock=clock).message_xml("text", {"Content": "hang"}, msg_id=9))
    asyncio.run(deliver(msg))
    assert runs == ["hang"]
    assert released == ["raw:" + msg.dedup_key]  # WeChat's retry after the lease runs it again


def test_slow_and_ordinary_coroutine_handlers_on_a_bare_callback():
    # A bare Callback makes its slow-handler runner on first use, behind ASGI as behind WSGI: the
    # slow handler runs as a slow job (a wxmp-slow worker), the ordinary one on the loop, each once.
    cb = WsgiCallback(TOKEN)
    runs: list[tuple[str, str]] = []

    @cb.on("text", match="^slow", slow=True)
    async def slow(msg: Any) -> str:
        runs.append(("slow", threading.current_thread().name))
        return "slow done"

    @cb.on("text")
    async def ordinary(msg: Any) -> str:
        runs.append(("ordinary", threading.current_thread().name))
        return "ordinary"

    u = WeChatUser(AsgiCallback(cb), TOKEN)
    assert u.send_text("slow one") == TextReply("slow done")
    assert u.send_text("hello") == TextReply("ordinary")
    assert [what for what, _ in runs] == ["slow", "ordinary"]
    assert runs[0][1].startswith("wxmp-slow") and runs[1][1] == "WeChatUser-asgi"


def test_the_callback_path_under_a_root_path(clock):
    cb = WsgiCallback(TOKEN, clock=clock)
    u = WeChatUser(cb, TOKEN, clock=clock)

    async def other(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"other app"})

    def get(app: Any, path: str, **root: str) -> bytes:
        return run(app, http_scope("GET", path=path, query={**u._signed(), "echostr": "ours"}, **root)).body

    alone, wrapped = AsgiCallback(cb), AsgiCallback(cb, app=other)
    assert get(alone, "/bot/wechat", root_path="/bot") == b"ours"  # Starlette's Mount: the full path
    assert get(alone, "/wechat", root_path="/bot") == b"ours"  # a server that strips the prefix
    assert get(alone, "/bot", root_path="/bot") == b"ours"  # the mount point itself
    assert get(alone, "/bot/", root_path="/bot") == b"ours"
    assert get(alone, "/") == b"not found"  # no root_path: "/" is just another path
    assert get(wrapped, "/bot/", root_path="/bot") == b"other app"  # wrapping: the exact path only
    assert get(wrapped, "/bot/wechat", root_path="/bot") == b"ours"


@pytest.mark.parametrize("cache", ["filesystem", "simple"])
@pytest.mark.parametrize("handler", ["async", "plain"])
def test_a_captured_plaintext_query_cannot_carry_another_body(cache, handler, tmp_path):
    """Security finding 2 behind ASGI: a seen (timestamp, nonce, signature) is bound to its body,
    whether the binding rides in the dedup claim (filesystem) or is checked on its own (in-process),
    and whether the handler is awaited on the loop or run in a thread."""
    from urllib.parse import urlencode

    from wxmp.cache import SharedStore, resolve_cache
    from wxmp.crypto import signature

    clock = FakeClock(1714036504.0)
    spec = f"filesystem:{tmp_path}" if cache == "filesystem" else "simple"
    cb = WsgiCallback(TOKEN, clock=clock, store=SharedStore(resolve_cache(spec, str(tmp_path))))
    runs: list[str] = []
    if handler == "async":

        @cb.on("text")
        async def on_text(msg):
            runs.append(msg.content)
            return "ok"
    else:
        cb.on("text")(lambda msg: runs.append(msg.content) or "ok")
    user = WeChatUser(cb, TOKEN, clock=clock)
    client = TestClient(AsgiCallback(cb))
    ts, nonce = str(int(clock())), "8080"
    url = "/wechat?" + urlencode({"signature": signature(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce})
    genuine = user.message_xml("text", {"Content": "genuine"}, msg_id=1)
    assert client.post(url, content=genuine).status_code == 200
    swapped = user.message_xml("text", {"Content": "transfer everything"}, msg_id=2)
    refused = client.post(url, content=swapped)
    assert (refused.status_code, refused.content) == (403, b"signature check failed")
    assert client.post(url, content=genuine).status_code == 200  # WeChat's retry: same body
    assert runs == ["genuine"]
