"""Small helpers shared by the fake endpoint modules."""

from __future__ import annotations

import threading
from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault

#: Serialises state changes of the endpoint modules (the fake serves each request in a thread).
LOCK = threading.RLock()


def state(fake: FakeWeChat, name: str, factory: Any) -> Any:
    """``fake.state[name]``, created with ``factory()`` on first use."""
    with LOCK:
        if name not in fake.state:
            fake.state[name] = factory()
        return fake.state[name]


def next_id(fake: FakeWeChat, name: str, start: int = 1) -> int:
    """A per-fake counter for ids (menu ids, msg ids, tag ids...)."""
    with LOCK:
        counters = fake.state.setdefault("_ids", {})
        value = counters.get(name, start)
        counters[name] = value + 1
        return value


def follower(fake: FakeWeChat, openid: Any) -> dict[str, Any]:
    """The user record for ``openid``; 40003 when unknown (WeChat's "invalid openid")."""
    user = fake.users.get(openid) if isinstance(openid, str) else None
    if user is None:
        raise WeChatFault(40003, "invalid openid")
    return user


def utf8_len(value: Any) -> int:
    return len(str(value).encode("utf-8"))


def page_size(fake: FakeWeChat) -> int:
    """Openids per page of user/get, user/tag/get and getblacklist (WeChat: 10,000).

    Tests set ``fake.state["page_size"]`` to paginate without seeding 30,000 users.
    """
    return int(fake.state.get("page_size", 10_000))


def openid_page(
    fake: FakeWeChat, openids: list[str], cursor: str | None, *, total: bool = True
) -> dict[str, Any]:
    """A page of ``openids`` after ``cursor``, shaped like user/get (no ``data`` when empty)."""
    start = 0
    if cursor:
        try:
            start = openids.index(cursor) + 1
        except ValueError:
            raise WeChatFault(40003, "invalid next_openid")
    chunk = openids[start : start + page_size(fake)]
    page: dict[str, Any] = {"count": len(chunk)}
    if total:
        page = {"total": len(openids), **page}
    if chunk:
        page["data"] = {"openid": chunk}
    # Like WeChat, the last page still names its last openid as next_openid.
    page["next_openid"] = chunk[-1] if chunk else ""
    return page


def message_payload(
    req: FakeRequest, data: dict[str, Any], fields: dict[str, tuple[str, ...]]
) -> dict[str, Any]:
    """The ``data[msgtype]`` payload of a message body, checked as WeChat checks it.

    Unknown msgtype: 40008; missing payload or one of ``fields[msgtype]``: 40035.
    """
    msgtype = data["msgtype"]
    if msgtype not in fields:
        raise WeChatFault(40008, "invalid message type")
    payload = data.get(msgtype)
    if not isinstance(payload, dict):
        raise WeChatFault(40035, f"invalid args, missing {msgtype}")
    req.require(payload, *fields[msgtype])
    return payload
