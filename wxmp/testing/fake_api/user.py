"""Fake users: batchget, the follower list, remarks and the blacklist (``user/info`` is in the core).

Followers are ``fake.users`` entries with ``subscribe`` set, in insertion order; pages hold
``fake.state["page_size"]`` openids (default 10,000, WeChat's). Rules: more than 100 openids in a
batchget or 20 in a blacklist call -> 40032; unknown openid -> 40003; remark of 30 bytes (UTF-8) or
more -> 40035.
"""

from __future__ import annotations

from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, follower, openid_page, state, utf8_len

__all__ = ["add_followers", "blacklisted", "followers"]


def add_followers(fake: FakeWeChat, n: int, prefix: str = "oFAKE", **info: Any) -> list[str]:
    """Seed ``n`` followers with openids ``{prefix}000001``...; returns their openids."""
    start = len(fake.users)
    openids = [f"{prefix}{start + i:06d}" for i in range(1, n + 1)]
    for openid in openids:
        fake.add_user(openid, **info)
    return openids


def followers(fake: FakeWeChat) -> list[str]:
    """The openids user/get lists: subscribed users, in the order they followed."""
    with LOCK:
        return [openid for openid, user in fake.users.items() if user.get("subscribe")]


def blacklisted(fake: FakeWeChat) -> list[str]:
    """The blacklist, in the order users were added to it."""
    with LOCK:
        return list(state(fake, "blacklist", list))


def _lang(value: Any) -> str:
    lang = value or "zh_CN"
    if lang not in ("zh_CN", "zh_TW", "en"):
        raise WeChatFault(40005, "invalid lang")
    return str(lang)


@endpoint("POST", "/cgi-bin/user/info/batchget")
def _batchget(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "user_list")
    wanted = data["user_list"]
    if not isinstance(wanted, list) or len(wanted) > 100:
        raise WeChatFault(40032, "invalid openid list size")
    infos = []
    for item in wanted:
        if not isinstance(item, dict):
            raise WeChatFault(47001, "data format error")
        _lang(item.get("lang"))
        user = follower(fake, item.get("openid"))
        infos.append(dict(user) if user.get("subscribe") else {"subscribe": 0, "openid": user["openid"]})
    return {"user_info_list": infos}


@endpoint("GET", "/cgi-bin/user/get")
def _followers(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    return openid_page(fake, followers(fake), req.args.get("next_openid"))


@endpoint("POST", "/cgi-bin/user/info/updateremark")
def _remark(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "openid")
    remark = data.get("remark", "")
    if not isinstance(remark, str) or utf8_len(remark) >= 30:
        # "under 30 bytes" (WeChat counts UTF-8 bytes: 9 Chinese characters fit, 10 do not)
        raise WeChatFault(40035, "invalid args, remark too long")
    user = follower(fake, data["openid"])
    with LOCK:
        user["remark"] = remark
    return {"errcode": 0, "errmsg": "ok"}


def _openid_list(fake: FakeWeChat, req: FakeRequest, limit: int) -> list[str]:
    data = req.json
    req.require(data, "openid_list")
    openids = data["openid_list"]
    if not isinstance(openids, list) or len(openids) > limit:
        raise WeChatFault(40032, "invalid openid list size")
    for openid in openids:
        follower(fake, openid)
    return openids


@endpoint("POST", "/cgi-bin/tags/members/getblacklist")
def _get_blacklist(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    body = req.json if req.body else {}
    return openid_page(fake, blacklisted(fake), body.get("begin_openid"))


@endpoint("POST", "/cgi-bin/tags/members/batchblacklist")
def _blacklist(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    openids = _openid_list(fake, req, 20)
    with LOCK:
        current = state(fake, "blacklist", list)
        current.extend(o for o in openids if o not in current)
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/cgi-bin/tags/members/batchunblacklist")
def _unblacklist(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    openids = _openid_list(fake, req, 20)
    with LOCK:
        current = state(fake, "blacklist", list)
        current[:] = [o for o in current if o not in openids]
    return {"errcode": 0, "errmsg": "ok"}
