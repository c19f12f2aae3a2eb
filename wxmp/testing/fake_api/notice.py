"""Fake subscription notices: ``message/subscribe/bizsend`` and the ``wxaapi/newtmpl`` library.

The library is :data:`LIBRARY` (category -> templates -> keywords); a test plays the follower who
accepts a template in the popup with :func:`accept` (and withdraws with :func:`reject`). Rules:
bizsend to a user who has not accepted the template -> 43101; unknown template -> 40037; data keys
that are not the template's keywords, or values breaking the value rules -> 47003; unknown openid
-> 40003. Library: unknown category ids -> 200019; limit outside 1..30 -> 200017; unknown tid ->
200014; a kidList of keywords not in the template, or outside 2..5 -> 200020; sceneDesc over 15
characters -> 200021; more than :data:`MAX_TEMPLATES` templates -> 200012; deleting an unknown
priTmplId -> 20001 (?). Sent notices are kept in ``fake.state["subscribe_messages"]``.
"""

from __future__ import annotations

import re
from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, follower, next_id, state

__all__ = ["LIBRARY", "MAX_TEMPLATES", "accept", "notice_templates", "reject", "sent_notices"]

MAX_TEMPLATES = 50  # (?)
#: category id -> (name, {tid: (title, [(kid, keyword name, key type)])})
LIBRARY: dict[int, tuple[str, dict[int, tuple[str, list[tuple[int, str, str]]]]]] = {
    616: (
        "服装/鞋/箱包",
        {
            99: (
                "发货通知",
                [(1, "商品名称", "thing"), (2, "快递单号", "character_string"), (3, "发货时间", "time")],
            ),
            100: (
                "订单支付成功",
                [(1, "订单编号", "character_string"), (2, "支付金额", "amount"), (3, "状态", "phrase")],
            ),
        },
    ),
    2: (
        "教育",
        {501: ("课程提醒", [(1, "课程名称", "thing"), (2, "上课时间", "time"), (3, "老师", "name")])},
    ),
}
# The fake's own idea of the value rules (it stands in for WeChat: not shared with the client).
_RULES = {
    "thing": (20, None),
    "character_string": (32, re.compile(r"[\x21-\x7e]+")),
    "time": (64, re.compile(r"[0-9年月日:： \-/.~]+")),
    "amount": (16, re.compile(r"[¥￥$€£]?\d{1,10}(\.\d+)?元?")),
    "phrase": (5, re.compile(r"[\u3400-\u9fff]+")),
    "name": (20, None),
}


def check_value(key: str, value: Any, kind: str) -> None:
    """47003 unless ``value`` is a string that fits the rule of its key type (unknown types: any)."""
    limit, pattern = _RULES.get(kind, (None, None))
    if not isinstance(value, str) or "\n" in value or (limit is not None and len(value) > limit):
        raise WeChatFault(47003, f"argument invalid! data.{key}.value")
    if pattern is not None and not pattern.fullmatch(value):
        raise WeChatFault(47003, f"argument invalid! data.{key}.value")


def notice_templates(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    """The account's notice templates: priTmplId -> {"tid", "title", "keys": {key: type}, ...}."""
    return state(fake, "notice_templates", dict)


def accept(fake: FakeWeChat, openid: str, template_id: str) -> None:
    """The follower accepts ``template_id`` in the subscription popup."""
    with LOCK:
        state(fake, "notice_accepted", set).add((openid, template_id))


def reject(fake: FakeWeChat, openid: str, template_id: str) -> None:
    """The follower turns the template off (subscribe_msg_change_event)."""
    with LOCK:
        state(fake, "notice_accepted", set).discard((openid, template_id))


def sent_notices(fake: FakeWeChat) -> list[dict[str, Any]]:
    with LOCK:
        return list(state(fake, "subscribe_messages", list))


def _library_template(tid: Any) -> tuple[int, str, list[tuple[int, str, str]]] | None:
    for category, (_, templates) in LIBRARY.items():
        try:
            found = templates.get(int(tid))
        except (TypeError, ValueError):
            return None
        if found is not None:
            return category, found[0], found[1]
    return None


@endpoint("POST", "/cgi-bin/message/subscribe/bizsend")
def _send(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "touser", "template_id", "data")
    template = notice_templates(fake).get(data["template_id"])
    if template is None:
        raise WeChatFault(40037, "invalid template_id")
    follower(fake, data["touser"])
    values = data["data"]
    if not isinstance(values, dict) or set(values) != set(template["keys"]):
        raise WeChatFault(47003, "argument invalid! data keys do not match the template")
    for key, item in values.items():
        check_value(key, item.get("value") if isinstance(item, dict) else None, template["keys"][key])
    if (data["touser"], data["template_id"]) not in state(fake, "notice_accepted", set):
        raise WeChatFault(43101, "user refuse to accept the msg")
    with LOCK:
        state(fake, "subscribe_messages", list).append(data)
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("GET", "/wxaapi/newtmpl/getcategory")
def _category(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    return {"errcode": 0, "errmsg": "ok", "data": [{"id": i, "name": n} for i, (n, _) in LIBRARY.items()]}


@endpoint("GET", "/wxaapi/newtmpl/getpubtemplatetitles")
def _titles(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    try:
        ids = [int(i) for i in req.args.get("ids", "").split(",") if i]
        start, limit = int(req.args.get("start", 0)), int(req.args.get("limit", 0))
    except ValueError:
        raise WeChatFault(200019, "invalid category ids")
    if not ids or any(i not in LIBRARY for i in ids):
        raise WeChatFault(200019, "invalid category ids")
    if not 1 <= limit <= 30:
        raise WeChatFault(200017, "invalid limit")
    rows = [
        {"tid": tid, "title": title, "type": 2, "categoryId": str(cat)}
        for cat in ids
        for tid, (title, _) in LIBRARY[cat][1].items()
    ]
    return {"errcode": 0, "errmsg": "ok", "count": len(rows), "data": rows[start : start + limit]}


@endpoint("GET", "/wxaapi/newtmpl/getpubtemplatekeywords")
def _keywords(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    found = _library_template(req.args.get("tid"))
    if found is None:
        raise WeChatFault(200014, "invalid tid")
    rows = [{"kid": kid, "name": name, "example": "", "rule": rule} for kid, name, rule in found[2]]
    return {"errcode": 0, "errmsg": "ok", "count": len(rows), "data": rows}


@endpoint("POST", "/wxaapi/newtmpl/addtemplate")
def _add(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    found = _library_template(data.get("tid"))
    if found is None:
        raise WeChatFault(200014, "invalid tid")
    _, title, keywords = found
    kids = data.get("kidList")
    by_kid = {kid: (name, rule) for kid, name, rule in keywords}
    if not isinstance(kids, list) or not 2 <= len(kids) <= 5 or any(k not in by_kid for k in kids):
        raise WeChatFault(200020, "invalid kidList")
    if len(str(data.get("sceneDesc", ""))) > 15:
        raise WeChatFault(200021, "invalid sceneDesc")
    with LOCK:
        templates = notice_templates(fake)
        if len(templates) >= MAX_TEMPLATES:
            raise WeChatFault(200012, "the number of private templates reaches the limit")
        keys = {f"{by_kid[k][1]}{i}": by_kid[k][1] for i, k in enumerate(kids, start=1)}
        content = "\n".join(f"{by_kid[k][0]}:{{{{{key}.DATA}}}}" for k, key in zip(kids, keys, strict=True))
        pri_id = f"NTPL{next_id(fake, 'notice'):05d}_fake"
        templates[pri_id] = {"tid": data["tid"], "title": title, "keys": keys, "content": content}
    return {"errcode": 0, "errmsg": "ok", "priTmplId": pri_id}


@endpoint("GET", "/wxaapi/newtmpl/gettemplate")
def _list(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        rows = [
            {"priTmplId": i, "title": t["title"], "content": t["content"], "example": "", "type": 2}
            for i, t in notice_templates(fake).items()
        ]
    return {"errcode": 0, "errmsg": "ok", "data": rows}


@endpoint("POST", "/wxaapi/newtmpl/deltemplate")
def _delete(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "priTmplId")
    with LOCK:
        if notice_templates(fake).pop(data["priTmplId"], None) is None:
            raise WeChatFault(20001, "invalid priTmplId")
    return {"errcode": 0, "errmsg": "ok"}
