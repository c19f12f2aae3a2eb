"""Every public helper of every API group is reachable from the async client, with the same wire.

Each helper runs once on the sync client against one FakeWeChat and once on ``acct.aio`` against a
twin fake in the same state; both must send the same requests (method, path, query, body) and end
the same way (the same value, or the same typed error). A new group or helper fails
``test_every_helper_has_a_sample`` until it gets a sample call here (or a SYNC_ONLY reason).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from typing import Any

import pytest

from wxmp import Account, ApiError
from wxmp.account import GROUPS
from wxmp.testing import FakeWeChat

MENU = {"button": [{"type": "click", "name": "Today", "key": "K1"}]}
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64

#: (group, helper) -> (args, kwargs), run in this order on both fakes.
SAMPLES: dict[tuple[str, str], tuple[tuple[Any, ...], dict[str, Any]]] = {
    ("user", "get"): (("o1",), {}),
    ("user", "get_batch"): ((["o1", "o2"],), {}),
    ("user", "get_followers"): ((), {}),
    ("user", "iter_followers"): ((), {}),
    ("user", "set_remark"): (("o1", "friend"), {}),
    ("user", "blacklist"): ((["o2"],), {}),
    ("user", "get_blacklist"): ((), {}),
    ("user", "iter_blacklist"): ((), {}),
    ("user", "unblacklist"): ((["o2"],), {}),
    ("menu", "create"): ((MENU,), {}),
    ("menu", "get"): ((), {}),
    ("menu", "get_current"): ((), {}),
    ("menu", "add_conditional"): ((MENU, {"tag_id": "2"}), {}),
    ("menu", "try_match"): (("o1",), {}),
    ("menu", "delete_conditional"): (("1",), {}),
    ("menu", "delete"): ((), {}),
    ("message", "send"): (("o1", "text", {"content": "x"}), {}),
    ("message", "send_text"): (("o1", "hi"), {}),
    ("message", "send_image"): (("o1", "m1"), {}),
    ("message", "send_voice"): (("o1", "m1"), {}),
    ("message", "send_video"): (("o1", "m1", "t1", "title"), {}),
    ("message", "send_music"): (("o1", "http://m", "http://hq", "t1"), {}),
    ("message", "send_news"): (("o1", "title", "http://x"), {}),
    ("message", "send_mpnews"): (("o1", "m1"), {}),
    ("message", "send_menu"): (("o1", [("1", "yes"), ("2", "no")]), {}),
    ("message", "send_miniprogram"): (("o1", "wxapp", "pages/i", "t1"), {}),
    ("message", "typing"): (("o1",), {}),
    ("tag", "create"): (("vip",), {}),
    ("tag", "list"): ((), {}),
    ("tag", "update"): ((100, "vip2"), {}),
    ("tag", "tag_users"): ((100, ["o1", "o2"]), {}),
    ("tag", "user_tags"): (("o1",), {}),
    ("tag", "get_users"): ((100,), {}),
    ("tag", "iter_users"): ((100,), {}),
    ("tag", "untag_users"): ((100, ["o2"]), {}),
    ("tag", "delete"): ((100,), {}),
    ("mass", "send"): (("text", {"content": "x"}), {"to_all": True}),
    ("mass", "send_text"): (("hi",), {"openids": ["o1", "o2"]}),
    ("mass", "send_image"): (("m1",), {"tag_id": 2}),
    ("mass", "send_voice"): (("m1",), {"to_all": True}),
    ("mass", "send_mpnews"): (("m1",), {"to_all": True}),
    ("mass", "send_mpvideo"): (("m1",), {"to_all": True}),
    ("mass", "send_wxcard"): (("c1",), {"to_all": True}),
    ("mass", "upload_video"): (("m1", "title"), {}),
    ("mass", "preview"): (("o1",), {"text": "hi"}),
    ("mass", "status"): ((1,), {}),
    ("mass", "delete"): ((1,), {}),
    ("template", "list"): ((), {}),
    ("template", "send"): (("o1", "tpl1", {"first": "x"}), {}),
    ("template", "delete"): (("tpl1",), {}),
    ("media", "upload"): (("image", PNG), {"filename": "a.png"}),
    ("media", "upload_image"): ((PNG,), {"filename": "图.png"}),
    ("media", "get"): (("missing",), {}),
    ("media", "add"): (("image", PNG), {"filename": "b.png"}),
    ("media", "count"): ((), {}),
    ("media", "get_materials"): (("image",), {}),
    ("media", "iter_materials"): (("image",), {}),
    ("media", "get_material"): (("missing",), {}),
    ("media", "delete_material"): (("missing",), {}),
    ("qrcode", "create"): ((7,), {"expire_seconds": 60}),
    ("qrcode", "url"): (("tick et",), {}),
    ("jssdk", "config"): (("http://page/#x",), {"api_list": ["scanQRCode"]}),
    ("oauth", "authorize_url"): (("http://cb",), {"state": "s1"}),
    ("oauth", "exchange"): (("bad-code",), {}),
    ("oauth", "refresh"): (("bad-refresh",), {}),
    ("oauth", "userinfo"): (("bad-token", "o1"), {}),
    ("oauth", "check"): (("bad-token", "o1"), {}),
    ("misc", "get_callback_ip"): ((), {}),
    ("misc", "get_api_domain_ip"): ((), {}),
    ("misc", "get_quota"): (("/cgi-bin/message/custom/send",), {}),
    ("misc", "clear_quota"): ((), {}),
}

#: Public attributes that are not reachable as awaitables, and why.
SYNC_ONLY = {
    ("jssdk", "manager"): "a property: the jsapi_ticket's TokenManager object, no request",
    (
        "jssdk",
        "ticket",
    ): "a blocking property; async code awaits jssdk.config(url), which reads it in a thread",
}

#: Values that differ between two fakes by nature (random nonces, clocks).
VOLATILE = {
    ("jssdk", "config"): ("timestamp", "nonceStr", "signature"),
    ("qrcode", "create"): ("ticket", "url"),
}


def public_helpers() -> list[tuple[str, str]]:
    found = []
    for name, (module, cls) in GROUPS.items():
        group = getattr(importlib.import_module(module), cls)
        for attr, _ in inspect.getmembers(group):
            if not attr.startswith("_") and attr not in ("client", "settings"):
                found.append((name, attr))
    return found


def test_every_helper_has_a_sample():
    missing = [h for h in public_helpers() if h not in SAMPLES and h not in SYNC_ONLY]
    assert missing == [], f"add a sample call to SAMPLES (or a reason to SYNC_ONLY) for {missing}"


def _fake() -> FakeWeChat:
    fake = FakeWeChat().start()
    fake.add_user("o1")
    fake.add_user("o2")
    return fake


def _wire(fake: FakeWeChat, since: int) -> list[tuple[Any, ...]]:
    out = []
    for r in fake.requests[since:]:
        if r.path in ("/cgi-bin/token", "/cgi-bin/stable_token"):
            continue
        args = {k: v for k, v in r.args.items() if k != "access_token"}
        body: Any = r.body
        if r.content_type.startswith("multipart/"):
            # boundaries are random; the parts must match
            boundary = r.content_type.split("boundary=")[1].encode()
            body = r.body.replace(boundary, b"B")
        out.append((r.method, r.path, args, body))
    return out


async def _outcome(value: Any) -> Any:
    if inspect.isawaitable(value):
        value = await value
    elif hasattr(value, "__aiter__"):
        value = [item async for item in value]
    return value


def _shape(key: tuple[str, str], value: Any) -> Any:
    if inspect.isgenerator(value) or (hasattr(value, "__iter__") and hasattr(value, "__next__")):
        value = list(value)
    if isinstance(value, dict):
        value = {k: ("~" if k in VOLATILE.get(key, ()) else v) for k, v in value.items()}
    return value


def test_sync_and_async_helpers_send_the_same_requests_and_end_the_same_way():
    sync_fake, async_fake = _fake(), _fake()
    try:
        sync = Account(appid=sync_fake.appid, secret=sync_fake.secret, api_base=sync_fake.url, cache="simple")
        aio = Account(
            appid=async_fake.appid, secret=async_fake.secret, api_base=async_fake.url, cache="simple"
        )

        def run_sync(key, args, kwargs):
            try:
                return ("ok", _shape(key, getattr(sync.group(key[0]), key[1])(*args, **kwargs)))
            except ApiError as exc:
                return ("error", type(exc).__name__, exc.errcode)

        async def run_async(key, args, kwargs):
            try:
                return (
                    "ok",
                    _shape(key, await _outcome(getattr(aio.aio.group(key[0]), key[1])(*args, **kwargs))),
                )
            except ApiError as exc:
                return ("error", type(exc).__name__, exc.errcode)

        async def main():
            outcomes = {}
            for key, (args, kwargs) in SAMPLES.items():
                s0, a0 = len(sync_fake.requests), len(async_fake.requests)
                expected = run_sync(key, args, kwargs)
                got = await run_async(key, args, kwargs)
                assert got == expected, key
                assert _wire(async_fake, a0) == _wire(sync_fake, s0), key
                outcomes[key] = got[0]
            await aio.aio.aclose()
            return outcomes

        outcomes = asyncio.run(main())
        # The samples exercise the helpers, not only their error paths.
        assert sum(1 for o in outcomes.values() if o == "ok") >= len(SAMPLES) - 12, outcomes
    finally:
        sync_fake.stop()
        async_fake.stop()


@pytest.mark.parametrize("key", sorted(SYNC_ONLY))
def test_sync_only_entries_exist(key):
    assert key in public_helpers()
