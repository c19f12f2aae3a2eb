"""The ASGI callback (wxmp.asgi): the WSGI pipeline's answers, with async handlers awaited on the loop.

Driven in-process by Starlette's TestClient (a real ASGI server loop in a thread), and mounted in
FastAPI; the cross-process dedup test is in test_asgi_fleet.py.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from typing import Any

import pytest

with warnings.catch_warnings():
    # Starlette 1.x nudges its TestClient toward another HTTP package; this one works as it is.
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

from wxmp import Account
from wxmp.asgi import AsgiCallback, Callback
from wxmp.middleware import Callback as WsgiCallback
from wxmp.replies import TextReply
from wxmp.testing import FakeWeChat, WeChatUser

TOKEN = "asgitoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


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
