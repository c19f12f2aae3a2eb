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
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from wxmp import Account, ApiError
from wxmp.account import GROUPS
from wxmp.api.datacube import BEIJING
from wxmp.api.draft import article
from wxmp.testing import FakeWeChat
from wxmp.testing.clock import FakeClock
from wxmp.testing.fake_api import kf as fake_kf
from wxmp.testing.fake_api import misc as fake_misc
from wxmp.testing.fake_api import notice as fake_notice
from wxmp.testing.fake_api import publish as fake_publish

MENU = {"button": [{"type": "click", "name": "Today", "key": "K1"}]}
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
# Ids both fakes hand out in the same order (each counter starts afresh per fake).
IMAGE = "P00000001_image"  # media.add, the first permanent material
DRAFT = "D00000001_draft"  # draft.add
PUBLISH = "2247483001"  # freepublish.submit
ARTICLE = f"A{PUBLISH}_000001"  # the article the job publishes
TEMPLATE = "TPL00001_fake"  # template.add
NOTICE = "NTPL00001_fake"  # notice.add_template
KF = "ann@gh_fake"
SHORT_KEY = "A" * 15  # put in place by PREPARE (shorten's own keys are random)
NEWS = article("Title", "<p>body</p>", IMAGE)
DAY = (datetime.now(BEIJING) - timedelta(days=2)).date().isoformat()  # within every range

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
    ("template", "add"): (("TM00015", ["订单编号", "支付金额"]), {}),
    ("template", "list"): ((), {}),
    ("template", "send"): (("o1", TEMPLATE, {"character_string1": "A1", "amount2": "5元"}), {}),
    ("template", "delete"): ((TEMPLATE,), {}),
    ("template", "set_industry"): ((1, 2), {}),
    ("template", "get_industry"): ((), {}),
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
    ("misc", "clear_quota_v2"): ((), {}),
    ("misc", "clear_api_quota"): (("/cgi-bin/message/custom/send",), {}),
    ("misc", "get_rid"): (("unknown-rid",), {}),
    ("misc", "shorten"): (("long data",), {"expire_seconds": 60}),
    ("misc", "fetch_short"): ((SHORT_KEY,), {}),
    ("misc", "callback_check"): (("dns",), {}),
    ("draft", "add"): ((NEWS,), {}),
    ("draft", "get"): ((DRAFT,), {}),
    ("draft", "update"): ((DRAFT, 0, {**NEWS, "title": "Title 2"}), {}),
    ("draft", "count"): ((), {}),
    ("draft", "batchget"): ((), {"no_content": True}),
    ("draft", "iter"): ((), {}),
    ("draft", "switch"): ((), {}),
    ("freepublish", "submit"): ((DRAFT,), {}),
    ("freepublish", "get"): ((PUBLISH,), {}),
    ("freepublish", "get_article"): ((ARTICLE,), {}),
    ("freepublish", "batchget"): ((), {}),
    ("freepublish", "iter"): ((), {"no_content": True}),
    ("message", "send_mpnewsarticle"): (("o1", ARTICLE), {}),
    ("freepublish", "delete"): ((ARTICLE,), {}),
    ("draft", "delete"): ((DRAFT,), {}),
    ("notice", "get_category"): ((), {}),
    ("notice", "get_pub_titles"): (([616],), {}),
    ("notice", "get_pub_keywords"): ((99,), {}),
    ("notice", "add_template"): ((99, [1, 2], "shipping"), {}),
    ("notice", "get_templates"): ((), {}),
    ("notice", "send"): (("o1", NOTICE, {"thing1": "shoes", "character_string2": "SF123"}), {}),
    ("notice", "delete_template"): ((NOTICE,), {}),
    ("kf", "add"): ((KF, "Ann"), {}),
    ("kf", "update"): ((KF, "Ann L"), {}),
    ("kf", "invite"): ((KF, "ann_wx"), {}),
    ("kf", "upload_head_image"): ((KF, PNG), {"filename": "ann.png"}),
    ("kf", "list"): ((), {}),
    ("kf", "online"): ((), {}),
    ("kf", "create_session"): ((KF, "o1"), {}),
    ("kf", "get_session"): (("o1",), {}),
    ("kf", "get_sessions"): ((KF,), {}),
    ("kf", "get_wait_cases"): ((), {}),
    ("kf", "close_session"): ((KF, "o1"), {}),
    ("kf", "delete"): ((KF,), {}),
    ("datacube", "query"): (("getusersummary", DAY, DAY), {}),
    ("datacube", "user_summary"): ((DAY, DAY), {}),
    ("datacube", "user_cumulate"): ((DAY, DAY), {}),
    ("datacube", "biz_summary"): ((DAY, DAY), {}),
    ("datacube", "article_read"): ((DAY, DAY), {}),
    ("datacube", "article_share"): ((DAY, DAY), {}),
    ("datacube", "article_total_detail"): ((DAY, DAY), {}),
    ("datacube", "upstream_msg"): ((DAY, DAY), {"period": "week"}),
    ("datacube", "upstream_msg_dist"): ((DAY, DAY), {}),
    ("datacube", "interface_summary"): ((DAY, DAY), {"hourly": True}),
    # retired: RetiredApiError on both clients, without a request
    ("datacube", "article_summary"): ((DAY, DAY), {}),
    ("datacube", "article_total"): ((DAY, DAY), {}),
    ("datacube", "user_read"): ((DAY, DAY), {}),
    ("datacube", "user_share"): ((DAY, DAY), {"hourly": True}),
}

#: Samples that end in an ApiError on both clients (the error path is what they compare).
ERROR_SAMPLES = {
    ("menu", "delete_conditional"),  # no such menu
    ("mass", "send_mpnews"),  # media ids that do not exist
    ("mass", "upload_video"),
    ("mass", "status"),  # no such job
    ("mass", "delete"),
    ("media", "get"),
    ("media", "get_material"),
    ("media", "delete_material"),
    ("oauth", "exchange"),  # codes and per-user tokens the fake never issued
    ("oauth", "refresh"),
    ("oauth", "userinfo"),
    ("misc", "get_rid"),  # rids are random per fake
    ("datacube", "article_summary"),  # retired: RetiredApiError, no request
    ("datacube", "article_total"),
    ("datacube", "user_read"),
    ("datacube", "user_share"),
}

#: Fake-side state a sample needs (what a follower or an agent does), set on both fakes before it.
PREPARE: dict[tuple[str, str], Callable[[FakeWeChat], None]] = {
    ("misc", "fetch_short"): lambda fake: fake_misc.short_keys(fake).update(
        {
            SHORT_KEY: {
                "long_data": "x",
                "create_time": int(fake.clock()),
                "expire_seconds": 60,
                "at": fake.clock(),
            }
        }
    ),
    ("misc", "callback_check"): lambda fake: fake.state.update(callback_url=fake.url),
    ("freepublish", "submit"): lambda fake: fake_publish.set_publish_outcome(fake, polls=0),
    ("notice", "send"): lambda fake: fake_notice.accept(fake, "o1", NOTICE),
    ("kf", "list"): lambda fake: fake_kf.bind(fake, KF),
    ("kf", "online"): lambda fake: fake_kf.set_online(fake, KF),
    ("kf", "get_wait_cases"): lambda fake: fake_kf.wait(fake, "o2"),
}

#: Public attributes that are not reachable as awaitables, and why.
SYNC_ONLY = {
    ("jssdk", "manager"): "a property: the jsapi_ticket's TokenManager object, no request",
    (
        "jssdk",
        "ticket",
    ): "a blocking property; async code awaits jssdk.config(url), which reads it in a thread",
    ("jssdk", "page_url"): "no request: the page's URL from a WSGI request, a str on either client",
    ("oauth", "redirect_uri"): "no request: WXMP_PUBLIC_URL + path, a str on either client",
}

#: Values that differ between two fakes by nature (random nonces, keys): these keys of a dict,
#: or (None) the whole value.
VOLATILE: dict[tuple[str, str], tuple[str, ...] | None] = {
    ("jssdk", "config"): ("timestamp", "nonceStr", "signature"),
    ("qrcode", "create"): ("ticket", "url"),
    ("misc", "shorten"): None,  # the whole value: a random key
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


def _fake(clock: FakeClock) -> FakeWeChat:
    fake = FakeWeChat(clock=clock).start()
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
    if key in VOLATILE and VOLATILE[key] is None:
        return "~"
    if isinstance(value, dict):
        value = {k: ("~" if k in (VOLATILE.get(key) or ()) else v) for k, v in value.items()}
    return value


def test_sync_and_async_helpers_send_the_same_requests_and_end_the_same_way():
    clock = FakeClock(time.time())  # one frozen clock: both fakes stamp the same times
    sync_fake, async_fake = _fake(clock), _fake(clock)
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
                if key in PREPARE:
                    PREPARE[key](sync_fake)
                    PREPARE[key](async_fake)
                s0, a0 = len(sync_fake.requests), len(async_fake.requests)
                expected = run_sync(key, args, kwargs)
                got = await run_async(key, args, kwargs)
                assert got == expected, key
                assert _wire(async_fake, a0) == _wire(sync_fake, s0), key
                outcomes[key] = got[0]
            await aio.aio.aclose()
            return outcomes

        outcomes = asyncio.run(main())
        # The samples exercise the helpers, not only their error paths: only these end in an error.
        assert {k for k, o in outcomes.items() if o != "ok"} == set(ERROR_SAMPLES), outcomes
    finally:
        sync_fake.stop()
        async_fake.stop()


@pytest.mark.parametrize("key", sorted(SYNC_ONLY))
def test_sync_only_entries_exist(key):
    assert key in public_helpers()
