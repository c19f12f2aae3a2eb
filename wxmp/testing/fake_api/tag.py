"""Fake tags: create/get/update/delete, batch (un)tagging, a user's tags and a tag's users.

Tags live in ``fake.state["tags"]`` (id -> name; ids from 100, 0..2 are WeChat's reserved system
tags); a user's tags in ``fake.users[openid]["tagid_list"]``. Rules: empty name -> 40035; name over
30 bytes of UTF-8 -> 45158; duplicate name -> 45157; more than 100 tags -> 45056; changing a system
tag -> 45058; unknown tag -> 45159; more than 50 openids per call -> 40032; a user with more than
20 tags -> 45059; unknown openid -> 40003.
"""

from __future__ import annotations

from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, follower, next_id, openid_page, state, utf8_len

__all__ = ["tags"]

SYSTEM_TAGS = {0, 1, 2}


def tags(fake: FakeWeChat) -> dict[int, str]:
    """The account's tags, id -> name."""
    return state(fake, "tags", dict)


def _name(data: dict[str, Any], existing: dict[int, str], own_id: int | None = None) -> str:
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise WeChatFault(40035, "invalid args, missing tag name")
    if utf8_len(name) > 30:  # WeChat counts bytes: 10 Chinese characters fill it
        raise WeChatFault(45158, "tag name too long")
    if any(n == name and i != own_id for i, n in existing.items()):
        raise WeChatFault(45157, "invalid tag name")
    return name


def _tag_id(fake: FakeWeChat, value: Any) -> int:
    try:
        tag_id = int(value)
    except (TypeError, ValueError):
        raise WeChatFault(45159, "invalid tag id")
    if tag_id in SYSTEM_TAGS:
        raise WeChatFault(45058, "can't modify sys tag")
    if tag_id not in tags(fake):
        raise WeChatFault(45159, "invalid tag id")
    return tag_id


def _tag_body(req: FakeRequest) -> dict[str, Any]:
    data = req.json
    tag = data.get("tag")
    if not isinstance(tag, dict):
        raise WeChatFault(40035, "invalid args, missing tag")
    return tag


def _members(fake: FakeWeChat, tag_id: int) -> list[str]:
    return [o for o, u in fake.users.items() if tag_id in u.get("tagid_list", []) and u.get("subscribe")]


@endpoint("POST", "/cgi-bin/tags/create")
def _create(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    tag = _tag_body(req)
    with LOCK:
        existing = tags(fake)
        name = _name(tag, existing)
        if len(existing) >= 100:
            raise WeChatFault(45056, "too many tags")
        tag_id = next_id(fake, "tag", 100)
        existing[tag_id] = name
    return {"tag": {"id": tag_id, "name": name}}


@endpoint("GET", "/cgi-bin/tags/get")
def _list(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        items = [{"id": i, "name": n, "count": len(_members(fake, i))} for i, n in tags(fake).items()]
    return {"tags": items}


@endpoint("POST", "/cgi-bin/tags/update")
def _update(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    tag = _tag_body(req)
    with LOCK:
        tag_id = _tag_id(fake, tag.get("id"))
        tags(fake)[tag_id] = _name(tag, tags(fake), own_id=tag_id)
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/cgi-bin/tags/delete")
def _delete(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    tag = _tag_body(req)
    with LOCK:
        tag_id = _tag_id(fake, tag.get("id"))
        del tags(fake)[tag_id]
        for user in fake.users.values():
            if tag_id in user.get("tagid_list", []):
                user["tagid_list"] = [t for t in user["tagid_list"] if t != tag_id]
    return {"errcode": 0, "errmsg": "ok"}


def _batch(fake: FakeWeChat, req: FakeRequest) -> tuple[int, list[dict[str, Any]]]:
    data = req.json
    req.require(data, "openid_list")
    if data.get("tagid") in (None, ""):
        raise WeChatFault(40035, "invalid args, missing tagid")
    openids = data["openid_list"]
    if not isinstance(openids, list) or len(openids) > 50:
        raise WeChatFault(40032, "invalid openid list size")
    tag_id = _tag_id(fake, data["tagid"])
    return tag_id, [follower(fake, o) for o in openids]


@endpoint("POST", "/cgi-bin/tags/members/batchtagging")
def _tagging(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        tag_id, users = _batch(fake, req)
        for user in users:
            current = list(user.get("tagid_list", []))
            if tag_id not in current and len(current) >= 20:
                raise WeChatFault(45059, "user has too many tags")
        for user in users:
            if tag_id not in user.get("tagid_list", []):
                user["tagid_list"] = [*user.get("tagid_list", []), tag_id]
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/cgi-bin/tags/members/batchuntagging")
def _untagging(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        tag_id, users = _batch(fake, req)
        for user in users:
            user["tagid_list"] = [t for t in user.get("tagid_list", []) if t != tag_id]
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/cgi-bin/tags/getidlist")
def _user_tags(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "openid")
    return {"tagid_list": list(follower(fake, data["openid"]).get("tagid_list", []))}


@endpoint("POST", "/cgi-bin/user/tag/get")
def _tag_users(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    try:
        tag_id = int(data.get("tagid"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WeChatFault(40035, "invalid args, missing tagid")
    if tag_id not in tags(fake) and tag_id not in SYSTEM_TAGS:
        raise WeChatFault(45159, "invalid tag id")
    with LOCK:
        members = _members(fake, tag_id)
    return openid_page(fake, members, data.get("next_openid"), total=False)
