"""The callback against an attacker holding one captured query string (security findings 1, 2, 12).

WeChat's plaintext ``signature`` covers (token, timestamp, nonce) and never the body, and the query
string of every push sits in ordinary access logs. So:

- with an AES key, an unencrypted push is refused whatever body it carries (``encrypt_type`` in any
  case is the same mode), unless ``WXMP_ALLOW_PLAINTEXT`` is on for a migration (logged at start);
- in plaintext mode a seen signature is bound to its body: WeChat's retry passes, another body is
  refused, also on another worker sharing the Redis;
- the settings that would reopen these holes are refused, and the handshake's reflected ``echostr``
  is served with ``nosniff``.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from werkzeug.test import Client

from wxmp import ConfigError, Settings
from wxmp.cache import SharedStore, resolve_cache
from wxmp.crypto import MessageCrypto, signature
from wxmp.middleware import Callback
from wxmp.testing import WeChatUser
from wxmp.testing.clock import FakeClock

TOKEN = "secTok42"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx1234567890abcdef"
NOW = 1714036504.0


def body(content: str, sender: str = "oVictim", msg_id: int = 1) -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName>"
        f"<CreateTime>{int(NOW)}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    ).encode()


def captured_safe_push(cb: Callback, clock: FakeClock) -> dict[str, str]:
    """A genuine safe-mode push as WeChat sends it; returns its query string's fields."""
    ts, nonce = str(int(clock())), "8675309"
    encrypt = MessageCrypto(AES_KEY, APPID).encrypt(body("genuine"))
    query = {
        "signature": signature(TOKEN, ts, nonce),
        "timestamp": ts,
        "nonce": nonce,
        "openid": "oVictim",
        "encrypt_type": "aes",
        "msg_signature": signature(TOKEN, ts, nonce, encrypt),
    }
    envelope = f"<xml><ToUserName><![CDATA[gh_x]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    response = Client(cb).post("/wechat?" + urlencode(query), data=envelope.encode())
    assert response.status_code == 200
    return query


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def safe_callback(clock: FakeClock, **kw: Any) -> tuple[Callback, list[str]]:
    runs: list[str] = []
    cb = Callback(TOKEN, AES_KEY, APPID, clock=clock, **kw)
    cb.on("text")(lambda msg: runs.append(f"{msg.from_user_name}:{msg.content}") or "reply to " + msg.content)
    return cb, runs


# -- finding 1: no downgrade to plaintext ----------------------------------------------------------


def test_a_captured_safe_mode_query_cannot_carry_a_plaintext_body(clock):
    cb, runs = safe_callback(clock)
    query = captured_safe_push(cb, clock)
    assert runs == ["oVictim:genuine"]
    client = Client(cb)
    plain = {k: query[k] for k in ("signature", "timestamp", "nonce")}
    for i in range(5):
        forged = body(f"attacker {i}", sender=f"oForged{i}", msg_id=100 + i)
        for variant in (plain, {**plain, "encrypt_type": "raw"}, {**plain, "encrypt_type": "RAW"}):
            response = client.post("/wechat?" + urlencode(variant), data=forged)
            assert response.status_code == 403, variant
            assert b"reply" not in response.data
    assert runs == ["oVictim:genuine"]


def test_the_mode_is_read_case_insensitively(clock):
    cb, runs = safe_callback(clock)
    query = captured_safe_push(cb, clock)
    client = Client(cb)
    # encrypt_type=AES with a plaintext body: it is an encrypted push without Encrypt, refused.
    for mode in ("AES", "Aes"):
        response = client.post("/wechat?" + urlencode({**query, "encrypt_type": mode}), data=body("x"))
        assert response.status_code in (400, 403)
        assert b"reply" not in response.data
    # A genuine encrypted push announced as AES is still understood (and its reply encrypted).
    user = WeChatUser(cb, TOKEN, aes_key=AES_KEY, appid=APPID, clock=clock, openid="oUpper")
    xml = user.message_xml("text", {"Content": "upper"})
    ts, nonce = str(int(clock())), "424242"
    encrypt = MessageCrypto(AES_KEY, APPID).encrypt(xml)
    upper = {
        "signature": signature(TOKEN, ts, nonce),
        "timestamp": ts,
        "nonce": nonce,
        "encrypt_type": "AES",
        "msg_signature": signature(TOKEN, ts, nonce, encrypt),
    }
    response = client.post(
        "/wechat?" + urlencode(upper), data=f"<xml><Encrypt>{encrypt}</Encrypt></xml>".encode()
    )
    assert response.status_code == 200 and response.data.startswith(b"<xml><Encrypt>")
    assert runs == ["oVictim:genuine", "oUpper:upper"]
    unknown = client.post("/wechat?" + urlencode({**query, "encrypt_type": "des"}), data=body("x"))
    assert unknown.status_code == 400


def test_plaintext_is_allowed_only_when_asked_and_then_said_loudly(clock, caplog):
    with caplog.at_level(logging.WARNING, "wxmp.callback"):
        cb, runs = safe_callback(clock, allow_plaintext=True)
    assert "WXMP_ALLOW_PLAINTEXT is on" in caplog.text and AES_KEY not in caplog.text
    WeChatUser(cb, TOKEN, clock=clock, openid="oMigrating").send_text("still plain")
    assert runs == ["oMigrating:still plain"]


def test_allow_plaintext_setting(make_app):
    base = {"WXMP_TOKEN": TOKEN, "WXMP_AES_KEY": AES_KEY, "WXMP_APPID": APPID}
    assert Settings.from_mapping(base).allow_plaintext is False
    assert Settings.from_mapping({**base, "WXMP_ALLOW_PLAINTEXT": "0"}).allow_plaintext is False
    assert Settings.from_mapping({**base, "WXMP_ALLOW_PLAINTEXT": "true"}).allow_plaintext is True
    app, wx = make_app(token=TOKEN, aes_key=AES_KEY, appid=APPID)
    wx.on("text")(lambda msg: "ran")
    with pytest.raises(AssertionError, match="403"):
        WeChatUser(app, TOKEN).send_text("downgrade")
    app2, wx2 = make_app(token=TOKEN, aes_key=AES_KEY, appid=APPID, allow_plaintext=True)
    wx2.on("text")(lambda msg: "ran")
    assert WeChatUser(app2, TOKEN).send_text("migrating").content == "ran"


# -- finding 2: a seen signature is bound to its body ------------------------------------------------


def plain_callback(clock: FakeClock, store: SharedStore | None = None) -> tuple[Callback, list[str]]:
    runs: list[str] = []
    cb = Callback(TOKEN, clock=clock, store=store)
    cb.on("text")(lambda msg: runs.append(msg.content) or "ok " + msg.content)
    return cb, runs


def signed_query(clock: FakeClock, nonce: str = "1234") -> str:
    ts = str(int(clock()))
    return "/wechat?" + urlencode({"signature": signature(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce})


def test_a_seen_signature_with_another_body_is_refused(clock):
    cb, runs = plain_callback(clock)
    url = signed_query(clock)
    client = Client(cb)
    first = client.post(url, data=body("genuine"))
    assert first.status_code == 200 and first.data.find(b"ok genuine") > 0
    retry = client.post(url, data=body("genuine"))  # WeChat's retry: same query, same body
    assert retry.status_code == 200 and retry.data == first.data
    for i in range(5):
        swapped = client.post(url, data=body(f"swapped {i}", sender="oAttacker", msg_id=50 + i))
        assert swapped.status_code == 403
    assert runs == ["genuine"]


def test_the_binding_holds_across_workers_on_a_shared_redis(clock, redis_url, tmp_path):
    def store() -> SharedStore:
        return SharedStore(resolve_cache(redis_url, str(tmp_path)), namespace="wxmp:bind")

    worker1, runs1 = plain_callback(clock, store())
    worker2, runs2 = plain_callback(clock, store())
    url = signed_query(clock, nonce="99")
    assert Client(worker1).post(url, data=body("genuine")).status_code == 200
    assert Client(worker2).post(url, data=body("swapped", msg_id=2)).status_code == 403
    assert Client(worker2).post(url, data=body("genuine")).status_code == 200  # a retry elsewhere
    assert runs1 == ["genuine"] and runs2 == []
    import redis

    raw = redis.Redis.from_url(redis_url)
    marks = [k for k in raw.scan_iter("wxmp:bind:dedup:bind:*")]  # beside the dedup marks, raw bytes
    assert len(marks) == 1 and len(raw.get(marks[0])) == 32
    assert (
        (2 * 300) * 1000 < raw.pttl(marks[0]) <= (2 * 300 + 5) * 1000
    )  # expires with the signature's window


@pytest.mark.parametrize("cache", ["filesystem", "redis"])
def test_every_path_checks_the_bindings_of_every_other(clock, cache, redis_url, tmp_path):
    """A worker with slow handlers binds on its own (no dedup claim), one without binds in its claim:
    both in the same store, so a body swapped from one to the other is still refused."""
    spec = f"filesystem:{tmp_path}" if cache == "filesystem" else redis_url
    runs: list[str] = []

    def worker(slow: bool) -> Callback:
        store = SharedStore(resolve_cache(spec, str(tmp_path)), namespace="wxmp:paths")
        cb = Callback(TOKEN, clock=clock, store=store)
        if slow:
            cb.on("text", match="^slow", slow=True)(lambda msg: runs.append("slow") or "done")
        cb.on("text")(lambda msg: runs.append(msg.content) or "ok")
        return cb

    with_slow, plain = worker(True), worker(False)
    url = signed_query(clock, nonce="77")
    assert Client(plain).post(url, data=body("genuine", msg_id=1)).status_code == 200
    swapped = Client(with_slow).post(
        url, data=body("slow: transfer everything", sender="oAttacker", msg_id=2)
    )
    assert swapped.status_code == 403
    url = signed_query(clock, nonce="78")
    assert Client(with_slow).post(url, data=body("genuine 2", msg_id=3)).status_code == 200
    assert Client(plain).post(url, data=body("swapped", sender="oAttacker", msg_id=4)).status_code == 403
    assert runs == ["genuine", "genuine 2"]


def test_binding_marks_expire_with_the_window(clock):
    store = SharedStore(resolve_cache("simple", "/unused"), probe=False)
    cb, runs = plain_callback(clock, store)
    client = Client(cb)
    for i in range(50):
        assert client.post(signed_query(clock, nonce=str(i)), data=body(f"m{i}", msg_id=i)).status_code == 200
    marks = [exp for key, (exp, _) in store._backend.data.entries.items() if ":body:" in key]
    assert len(marks) == 50
    assert all(0 < exp - time.time() <= 2 * 300 + 5 for exp in marks)  # nothing kept forever


# -- finding 12: settings that would reopen the holes, and the handshake --------------------------


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"WXMP_DEDUP_TTL": 5}, "WXMP_DEDUP_TTL"),
        ({"WXMP_DEDUP_TTL": 29}, "WXMP_DEDUP_TTL"),
        ({"WXMP_TIMESTAMP_WINDOW": 0}, "WXMP_TIMESTAMP_WINDOW"),
        ({"WXMP_TIMESTAMP_WINDOW": 5}, "WXMP_TIMESTAMP_WINDOW"),
        ({"WXMP_APPID": "wx123"}, "WXMP_APPID"),
        ({"WXMP_APPID": "wx1234567890abcdef0"}, "WXMP_APPID"),
        ({"WXMP_APPID": "gh_1234567890abcd"}, "WXMP_APPID"),
        ({"WXMP_APPID": "wx1234567890abcd f"}, "WXMP_APPID"),
    ],
)
def test_settings_that_weaken_the_callback_are_refused(config, key):
    with pytest.raises(ConfigError) as info:
        Settings.from_mapping({"WXMP_TOKEN": TOKEN, **config})
    assert info.value.key == key


def test_the_lowest_accepted_values():
    s = Settings.from_mapping(
        {"WXMP_TOKEN": TOKEN, "WXMP_DEDUP_TTL": 30, "WXMP_TIMESTAMP_WINDOW": 30, "WXMP_APPID": APPID}
    )
    assert (s.dedup_ttl, s.timestamp_window, s.appid) == (30, 30, APPID)


def test_echostr_is_answered_with_nosniff(clock):
    cb, _ = plain_callback(clock)
    ts, nonce = str(int(clock())), "5"
    query = {"signature": signature(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce}
    html = "<script>alert(document.domain)</script>"
    response = Client(cb).get("/wechat?" + urlencode({**query, "echostr": html}))
    assert response.status_code == 200 and response.data == html.encode()
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Type"].startswith("text/plain")
    refused = Client(cb).get("/wechat?echostr=x")
    assert refused.status_code == 403 and refused.headers["X-Content-Type-Options"] == "nosniff"


def test_accounts_sharing_a_store_keep_their_marks_apart(clock):
    # Same timestamp and nonce, different tokens: the signatures differ, so do the marks.
    store = SharedStore(resolve_cache("simple", "/unused"), probe=False)
    cb, runs = plain_callback(clock, store)
    other = Callback("otherTok9", clock=clock, store=store)
    other.on("text")(lambda msg: runs.append("other " + msg.content) or "other")
    ts, nonce = str(int(clock())), "31337"
    assert Client(cb).post(signed_query(clock, nonce), data=body("mine")).status_code == 200
    query = urlencode({"signature": signature("otherTok9", ts, nonce), "timestamp": ts, "nonce": nonce})
    assert Client(other).post("/wechat?" + query, data=body("theirs", msg_id=2)).status_code == 200
    assert runs == ["mine", "other theirs"]


def test_a_dead_store_lets_pushes_through_and_says_so_once_a_minute(clock, caplog):
    from cachelib import BaseCache

    class Down(BaseCache):
        def get(self, key: str) -> Any:
            raise ConnectionError("down")

        def set(self, key: str, value: Any, timeout: int | None = None) -> Any:
            raise ConnectionError("down")

        def add(self, key: str, value: Any, timeout: int | None = None) -> Any:
            raise ConnectionError("down")

    cb, runs = plain_callback(clock, SharedStore(Down(), probe=False, cooldown=0))
    cb.dedup = None  # only the binding talks to the store here
    client = Client(cb)

    def push(i: int) -> int:
        return client.post(signed_query(clock, nonce=f"7{i}"), data=body(f"m{i}", msg_id=i)).status_code

    warning = "wxmp callback: cannot bind signatures to bodies"
    with caplog.at_level(logging.WARNING, "wxmp.callback"):
        assert push(1) == 200
        clock.advance(59)
        assert push(2) == 200
        assert sum(warning in m for m in caplog.messages) == 1
        clock.advance(1)  # a minute after the first warning
        assert push(3) == 200
        assert sum(warning in m for m in caplog.messages) == 2
        clock.advance(30)
        assert push(4) == 200
    assert sum(warning in m for m in caplog.messages) == 2
    assert f"{warning} (Down cache unavailable: ConnectionError); accepting pushes" in caplog.messages
    assert runs == ["m1", "m2", "m3", "m4"]


@pytest.mark.parametrize("where", ["in the claim", "on its own"])
def test_a_swapped_body_is_refused_whatever_parameters_are_added(clock, caplog, where, tmp_path):
    # On the filesystem the binding is checked in the dedup claim; in-process, by add/get beside it.
    store = SharedStore(resolve_cache(f"filesystem:{tmp_path}" if where == "in the claim" else "simple", ""))
    cb, runs = plain_callback(clock, store)
    assert cb._binds_with_claim() == (where == "in the claim")
    url = signed_query(clock, nonce="555")
    client = Client(cb)
    assert client.post(url, data=body("genuine")).status_code == 200
    # An attacker replaying the logged query may add parameters; wxmp reads only the real ones.
    with caplog.at_level(logging.WARNING, "wxmp.callback"):
        lookalikes = ["&=1", "&TIMESTAMP=1", "&NONCE=1", "&Signature=1", "&timestamp2=1"]
        lookalikes += ["&XXtimestampXX=1", "&XXnonceXX=1", "&XXsignatureXX=1"]  # names a typo would read
        for i, extra in enumerate(lookalikes):
            swapped = client.post(url + extra, data=body(f"swapped {i}", msg_id=60 + i))
            assert (swapped.status_code, swapped.data) == (403, b"signature check failed")
    assert runs == ["genuine"]
    assert caplog.messages[0].startswith(
        "wxmp callback refused (403): a seen signature with another body, from "
    )


@pytest.mark.parametrize("cache", ["filesystem", "redis", "simple"])
def test_with_dedup_off_bindings_keep_a_store_of_their_own(clock, cache, redis_url, tmp_path):
    """No dedup claim to ride in: on the filesystem and Redis the bindings get a dedup-style store of
    their own (one record or one command per push, beside the account's other keys); elsewhere they
    are plain cache entries."""
    spec = {"filesystem": f"filesystem:{tmp_path}", "redis": redis_url, "simple": "simple"}[cache]
    store = SharedStore(resolve_cache(spec, str(tmp_path)), namespace="wxmp:own")
    cb = Callback(TOKEN, clock=clock, store=store, dedup=False)
    runs: list[str] = []
    cb.on("text")(lambda msg: runs.append(msg.content) or "ok")
    url = signed_query(clock, nonce="4242")
    assert Client(cb).post(url, data=body("genuine")).status_code == 200
    assert Client(cb).post(url, data=body("swapped", msg_id=2)).status_code == 403
    assert runs == ["genuine"]
    binder = cb.marks.binder
    if cache == "simple":
        assert binder is None
        entries = store._backend.data.entries
        assert [k for k in entries if ":body:" in k] != []
    else:
        assert binder is not None and binder.binds and binder.name == cache
        if cache == "filesystem":
            logs = list((tmp_path / "dedup").rglob("*.log"))
            assert len(logs) == 1 and logs[0].parent.name == "wxmp_own_body"
        else:
            import redis

            keys = list(redis.Redis.from_url(redis_url).scan_iter("wxmp:own:body:*"))
            assert len(keys) == 1
