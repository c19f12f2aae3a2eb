"""The sandbox switched on in production (security finding 5).

It must not take over the API client of an account that has a secret, never sign (or encrypt) with
the app's real Token and key, answer only direct local requests, and keep bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import flask
import pytest

from wxmp import ConfigError, WxMP
from wxmp.crypto import signature
from wxmp.sandbox import MAX_ITEMS, MAX_RECORDS

TOKEN = "prodToken77"
AES_KEY = "Zq8Lw3Vn5Tb7Rk2Mx4Pc6Hd9Jf1Gs0Ya3Ue5Io7Wp2K"
APPID = "wx1234567890abcdef"


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[Any]:
    made: list[WxMP] = []

    def factory(**config: Any) -> tuple[flask.Flask, WxMP]:
        app = flask.Flask(f"prod{len(made)}", instance_path=str(tmp_path / f"p{len(made)}"))  # no debug
        app.config.update(
            WXMP_SANDBOX=True, WXMP_CACHE="simple", **{"WXMP_" + k: v for k, v in config.items()}
        )
        wx = WxMP(app)
        made.append(wx)
        return app, wx

    yield factory
    for wx in made:
        wx.stop()


def test_refused_beside_a_real_secret(prod):
    with pytest.raises(ConfigError) as info:
        prod(APPID=APPID, SECRET="realAppSecret0123456789abcdef012", TOKEN=TOKEN)
    assert info.value.key == "WXMP_SANDBOX"
    assert "realAppSecret" not in str(info.value)


def test_never_signs_or_encrypts_with_the_real_token_and_key(prod):
    app, wx = prod(APPID=APPID, TOKEN=TOKEN, AES_KEY=AES_KEY)
    runs: list[str] = []
    wx.on("text")(lambda msg: runs.append(msg.content) or "hi")
    client = app.test_client()
    response = client.post("/wxmp/sandbox/api/send", json={"action": "text", "content": "probe"})
    assert response.status_code == 200
    exchange = response.json["items"][0]["exchange"]
    query = dict(parse_qsl(exchange["query"]))
    assert query["signature"] != signature(TOKEN, query["timestamp"], query["nonce"])
    assert TOKEN not in response.get_data(as_text=True) and AES_KEY not in response.get_data(as_text=True)
    # Replaying what the page showed against the real callback gets nowhere.
    replay = client.post("/wechat?" + exchange["query"], data=exchange["request_wire"].encode())
    assert replay.status_code == 403
    assert runs == ["probe"]


@pytest.mark.parametrize(
    "request_kw",
    [
        {"environ_base": {"REMOTE_ADDR": "203.0.113.9"}},
        {"headers": {"X-Forwarded-For": "203.0.113.9"}},
        {"headers": {"Host": "rebind.attacker.example"}},
    ],
    ids=["remote", "proxied", "rebinding-host"],
)
def test_answers_only_direct_local_requests(prod, request_kw):
    app, _ = prod()
    client = app.test_client()
    assert client.get("/wxmp/sandbox").status_code == 200
    assert client.get("/wxmp/sandbox", **request_kw).status_code == 403
    send = client.post("/wxmp/sandbox/api/send", json={"action": "text", "content": "x"}, **request_kw)
    assert send.status_code == 403
    assert client.get("/wxmp/sandbox/api/poll", **request_kw).status_code == 403


def test_memory_is_bounded(prod):
    app, wx = prod()
    wx.on("text")(lambda msg: wx.message.send_text(msg.openid, "cs " + msg.content) and "reply")
    client = app.test_client()
    last = 0
    for i in range(MAX_ITEMS + 50):
        data = client.post("/wxmp/sandbox/api/send", json={"action": "text", "content": f"m{i}"}).json
        ids = [item["id"] for item in data["items"]]
        assert ids == sorted(ids) and ids[0] > last  # ids keep growing after old items are dropped
        last = ids[-1]
    sandbox = app.extensions["wxmp.sandbox"]
    assert len(sandbox.items) <= MAX_ITEMS
    assert len(sandbox.fake.requests) <= MAX_RECORDS
    assert len(sandbox.fake.state.get("custom_messages", [])) <= MAX_RECORDS
    newest = client.get(f"/wxmp/sandbox/api/poll?after={last - 3}").json["items"]
    assert [item["id"] for item in newest] == [last - 2, last - 1, last]
    assert newest[-1]["content"] == "reply"
