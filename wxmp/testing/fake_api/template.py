"""Fake template messages: send, list and delete private templates.

Templates live in ``fake.state["templates"]`` (seed them with :func:`add_template`); sent
messages in ``fake.state["template_messages"]``. Rules: missing touser/template_id/data -> 40035;
unknown template -> 40037; a ``data`` item that is not ``{"value": ...}`` -> 47001; unknown
openid -> 40003; an unfollowed user -> 43004.
"""

from __future__ import annotations

from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, follower, next_id, state

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
