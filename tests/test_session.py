"""msg.session: loaded lazily, saved only when changed, plain JSON data, per (account, user).

Across processes and expiry on a real Redis: tests/test_slow.py::test_sessions_persist_across_processes_and_expire.
"""

from __future__ import annotations

from typing import Any

import pytest
from cachelib import SimpleCache

from wxmp import Account
from wxmp.cache import SharedStore
from wxmp.replies import TextReply
from wxmp.session import Session, open_session
from wxmp.testing import WeChatUser

TOKEN = "sessiontoken"


class CountingStore(SharedStore):
    """The account's session store, counting what sessions read and write through it."""

    def __init__(self, namespace: str) -> None:
        super().__init__(SimpleCache(threshold=1000, default_timeout=0), namespace, probe=False)
        self.reads = 0
        self.writes: list[tuple[str, Any, float]] = []

    def get(self, name: str) -> Any:
        self.reads += 1
        return super().get(name)

    def set(self, name: str, value: Any, ttl: float = 0) -> None:
        self.writes.append((name, value, ttl))
        super().set(name, value, ttl)


def make(**settings: Any) -> tuple[Account, CountingStore]:
    acct = Account(appid="wx000000000session", token=TOKEN, cache="simple", **settings)
    store = CountingStore(acct.store.namespace)
    acct.__dict__["_wxmp_session_store"] = store
    return acct, store


def session_writes(store: CountingStore) -> list[tuple[str, Any, float]]:
    return [w for w in store.writes if w[0].startswith("session:")]


def test_untouched_session_costs_nothing_and_changes_are_saved_once() -> None:
    acct, cache = make(session_ttl=600, dedup=False)

    @acct.on("text", match="^count$")
    def count(msg):
        msg.session["n"] = msg.session.get("n", 0) + 1
        return str(msg.session["n"])

    @acct.on("text", match="^peek$")
    def peek(msg):
        return str(msg.session.get("n"))

    @acct.on("text")
    def other(msg):
        return "no session"

    u = WeChatUser(acct.callback, TOKEN)
    reads = cache.reads
    assert u.send_text("hello") == TextReply("no session")
    assert cache.reads == reads and session_writes(cache) == []  # never loaded

    assert u.send_text("count") == TextReply("1")
    assert u.send_text("count") == TextReply("2")
    writes = session_writes(cache)
    assert [w[1] for w in writes] == [{"n": 1}, {"n": 2}]
    assert all(w[2] == 600 for w in writes)  # WXMP_SESSION_TTL
    assert u.send_text("peek") == TextReply("2")
    assert len(session_writes(cache)) == 2  # read only: not saved


def test_nested_changes_are_saved_and_users_are_apart() -> None:
    acct, cache = make(dedup=False)

    @acct.on("text")
    def chat(msg):
        msg.session.setdefault("history", []).append(msg.content)
        return " | ".join(msg.session["history"])

    alice = WeChatUser(acct.callback, TOKEN, openid="oAlice000000000000000000000a")
    bob = WeChatUser(acct.callback, TOKEN, openid="oBob00000000000000000000000b")
    assert alice.send_text("hi") == TextReply("hi")
    assert alice.send_text("again") == TextReply("hi | again")
    assert bob.send_text("yo") == TextReply("yo")
    assert open_session(acct, "oAlice000000000000000000000a")["history"] == ["hi", "again"]


def test_raising_handler_saves_nothing_and_empty_session_is_deleted() -> None:
    acct, cache = make(dedup=False)

    @acct.on("text", match="^set$")
    def set_(msg):
        msg.session["k"] = "v"

    @acct.on("text", match="^fail$")
    def fail(msg):
        msg.session["k"] = "changed"
        raise RuntimeError("boom")

    @acct.on("text", match="^clear$")
    def clear(msg):
        msg.session.clear()

    u = WeChatUser(acct.callback, TOKEN)
    u.send_text("set")
    u.send_text("fail")
    assert open_session(acct, u.openid)["k"] == "v"
    u.send_text("clear")
    assert dict(open_session(acct, u.openid)) == {}
    assert acct.__dict__["_wxmp_session_store"].get("session:" + u.openid) is None


def test_values_must_be_json_data() -> None:
    store = SharedStore(SimpleCache())
    session = Session(store, "oUser", 60)
    with pytest.raises(TypeError, match="JSON"):
        session["when"] = object()
    session["ok"] = {"a": [1, 2.5, None, True]}
    assert session.save() and store.get("session:oUser") == {"ok": {"a": [1, 2.5, None, True]}}
    assert not session.save()  # unchanged


def test_msg_session_outside_a_handler_says_where_it_works() -> None:
    from wxmp.messages import parse

    msg = parse(b"<xml><FromUserName>o1</FromUserName><MsgType>text</MsgType></xml>")
    with pytest.raises(RuntimeError, match="inside a handler"):
        _ = msg.session


def test_hostile_openid_is_refused() -> None:
    with pytest.raises(ValueError):
        Session(SharedStore(SimpleCache()), "o" * 500, 60)
