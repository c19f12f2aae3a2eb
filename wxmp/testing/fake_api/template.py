"""Fake template messages: send, list and delete private templates.

Templates live in ``fake.state["templates"]`` (seed them with :func:`add_template`, or add one
from :data:`LIBRARY` with ``api_add_template``); sent messages in ``fake.state["template_messages"]``.
Rules: missing touser/template_id/data -> 40035; unknown template -> 40037; a ``data`` item that is
not ``{"value": ...}`` -> 47001; a typed key (``thing1``...) whose value breaks the 2023 value rules,
or any value with a line break -> 47003; unknown openid -> 40003; an unfollowed user -> 43004.
``api_add_template``: unknown short id -> 40037; a library template of the new categories without
``keyword_name_list``, or with names it does not have -> 40035 (?); more than 25 templates -> 45026.
``api_set_industry``: ids outside 1..41 or twice the same -> 40102; a second change within 30 days
(of ``fake.clock``) -> 43100 (?).
"""

from __future__ import annotations

import re
from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, follower, next_id, state
from .notice import check_value

#: template_id_short -> (title, [(keyword name, key type)], new category?)
LIBRARY: dict[str, tuple[str, list[tuple[str, str]], bool]] = {
    "TM00015": (
        "订单支付成功",
        [("订单编号", "character_string"), ("支付金额", "amount"), ("商品名称", "thing")],
        True,
    ),
    "OPENTM200001": ("旧版通知", [("内容", "keyword")], False),
}
MAX_TEMPLATES = 25
INDUSTRIES = range(1, 42)
_TYPED = re.compile(r"^([a-z_]+?)\d*$")

__all__ = ["add_template", "sent_templates", "templates"]


def templates(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    """The account's private templates, template_id -> template."""
    return state(fake, "templates", dict)


def add_template(
    fake: FakeWeChat,
    template_id: str | None = None,
    title: str = "订单通知",
    content: str = "{{first.DATA}}\n订单号：{{keyword1.DATA}}\n{{remark.DATA}}",
) -> str:
    """Give the account a private template; returns its id."""
    template_id = template_id or f"TPL{next_id(fake, 'template'):05d}_fake"
    with LOCK:
        templates(fake)[template_id] = {
            "template_id": template_id,
            "title": title,
            "primary_industry": "IT科技",
            "deputy_industry": "互联网|电子商务",
            "content": content,
            "example": "",
        }
    return template_id


def sent_templates(fake: FakeWeChat) -> list[dict[str, Any]]:
    """Template messages accepted so far (the bodies as sent)."""
    with LOCK:
        return list(state(fake, "template_messages", list))


@endpoint("POST", "/cgi-bin/message/template/send")
def _send(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "touser", "template_id", "data")
    if data["template_id"] not in templates(fake):
        raise WeChatFault(40037, "invalid template_id")
    items = data["data"]
    if not isinstance(items, dict) or not all(isinstance(v, dict) and "value" in v for v in items.values()):
        raise WeChatFault(47001, "data format error")
    for key, item in items.items():
        typed = _TYPED.match(key)
        check_value(key, str(item["value"]), typed.group(1) if typed else "")
    user = follower(fake, data["touser"])
    if not user.get("subscribe"):
        raise WeChatFault(43004, "require subscribe")
    with LOCK:
        state(fake, "template_messages", list).append(data)
    return {"errcode": 0, "errmsg": "ok", "msgid": next_id(fake, "template_msg", 200_000_001)}


@endpoint("GET", "/cgi-bin/template/get_all_private_template")
def _list(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        return {"template_list": [dict(t) for t in templates(fake).values()]}


@endpoint("POST", "/cgi-bin/template/del_private_template")
def _delete(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "template_id")
    with LOCK:
        if templates(fake).pop(data["template_id"], None) is None:
            raise WeChatFault(40037, "invalid template_id")
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/cgi-bin/template/api_add_template")
def _api_add(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "template_id_short")
    found = LIBRARY.get(data["template_id_short"])
    if found is None:
        raise WeChatFault(40037, "invalid template_id_short")
    title, keywords, new_category = found
    names = data.get("keyword_name_list")
    types = dict(keywords)
    if new_category:
        if not isinstance(names, list) or not names or any(n not in types for n in names):
            raise WeChatFault(40035, "invalid args, keyword_name_list")
    else:
        names = [n for n, _ in keywords]
    with LOCK:
        if len(templates(fake)) >= MAX_TEMPLATES:
            raise WeChatFault(45026, "template num exceeds limit")
        keys = [f"{types[n]}{i}" for i, n in enumerate(names, start=1)]
        content = "\n".join(f"{n}：{{{{{k}.DATA}}}}" for n, k in zip(names, keys, strict=True))
        template_id = add_template(fake, title=title, content=content)
    return {"errcode": 0, "errmsg": "ok", "template_id": template_id}


@endpoint("POST", "/cgi-bin/template/api_set_industry")
def _set_industry(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    try:
        first, second = int(data.get("industry_id1")), int(data.get("industry_id2"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WeChatFault(40102, "invalid industry id")
    if first not in INDUSTRIES or second not in INDUSTRIES or first == second:
        raise WeChatFault(40102, "invalid industry id")
    with LOCK:
        last = fake.state.get("industry_set_at")
        if last is not None and fake.clock() - last < 30 * 24 * 3600:
            raise WeChatFault(43100, "change template too frequently")
        fake.state["industry"] = (first, second)
        fake.state["industry_set_at"] = fake.clock()
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("GET", "/cgi-bin/template/get_industry")
def _get_industry(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    first, second = fake.state.get("industry", (1, 2))
    return {
        "primary_industry": {"first_class": "IT科技", "second_class": f"行业{first}"},
        "secondary_industry": {"first_class": "IT科技", "second_class": f"行业{second}"},
    }
