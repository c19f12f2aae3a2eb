"""Fake customer-service messages: ``message/custom/send`` and ``message/custom/typing``.

Rules: unknown openid -> 40003; an unfollowed user -> 43004; a closed 48-hour window (see
:func:`close_window`) -> 45015; unknown msgtype -> 40008; a missing payload field -> 40035; more
than one news article -> 45008; typing commands other than Typing/CancelTyping -> 45072;
``mpnewsarticle`` with an article that was never published -> 40007. Accepted messages are kept in
``fake.state["custom_messages"]`` (the bodies as sent).

Quotas since 2023-06 (developers.weixin.qq.com/doc/offiaccount/Message_Management/
Service_Center_messages.html): once a test records an interaction with :func:`interact`, a user
message allows 5 sends within 48 hours and a menu click, follow or QR scan 3 sends within a minute
(of ``fake.clock``); beyond them -> 45047, after them -> 45015. A user with no recorded
interaction keeps an open, unlimited window (the fake's default, so simple tests need no set-up).
"""

from __future__ import annotations

from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, follower, message_payload, state

__all__ = ["INTERACTIONS", "close_window", "interact", "open_window", "sent_messages"]

#: Interaction kind -> (sends allowed, seconds they stay allowed).
INTERACTIONS: dict[str, tuple[int, float]] = {
    "message": (5, 48 * 3600),
    "click": (3, 60),
    "subscribe": (3, 60),
    "scan": (3, 60),
}

_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("content",),
    "image": ("media_id",),
    "voice": ("media_id",),
    "video": ("media_id",),
    "music": ("musicurl", "hqmusicurl", "thumb_media_id"),
    "news": ("articles",),
    "mpnews": ("media_id",),
    "mpnewsarticle": ("article_id",),
    "msgmenu": ("list",),
    "wxcard": ("card_id",),
    "miniprogrampage": ("appid", "pagepath", "thumb_media_id"),
}


def close_window(fake: FakeWeChat, openid: str) -> None:
    """The user has not interacted for 48 hours: customer-service sends answer 45015."""
    with LOCK:
        state(fake, "closed_windows", set).add(openid)


def open_window(fake: FakeWeChat, openid: str) -> None:
    """The user interacted again: the window is open (the default for every user)."""
    with LOCK:
        state(fake, "closed_windows", set).discard(openid)


def interact(fake: FakeWeChat, openid: str, kind: str = "message") -> None:
    """Record that ``openid`` just sent a message (``"message"``) or tapped a menu, followed or
    scanned (``"click"``, ``"subscribe"``, ``"scan"``): from now on its sends are counted.

    A new interaction of a kind replaces the earlier allowance of that kind.
    """
    if kind not in INTERACTIONS:
        raise ValueError(f"interaction {kind!r}: one of {', '.join(INTERACTIONS)}")
    limit, lifetime = INTERACTIONS[kind]
    group = "message" if kind == "message" else "event"
    with LOCK:
        grants = state(fake, "kf_grants", dict).setdefault(openid, {})
        grants[group] = {"left": limit, "until": fake.clock() + lifetime}
        state(fake, "closed_windows", set).discard(openid)


def _consume(fake: FakeWeChat, openid: str) -> None:
    """Use one send of the user's allowances (the sooner-expiring first); 45047 / 45015 beyond."""
    with LOCK:
        grants = state(fake, "kf_grants", dict).get(openid)
        if grants is None:
            return  # no interaction recorded: the fake's open default
        now = fake.clock()
        live = sorted((g for g in grants.values() if g["until"] > now), key=lambda g: g["until"])
        if not live:
            raise WeChatFault(45015, "response out of time limit or subscription is canceled")
        for grant in live:
            if grant["left"] > 0:
                grant["left"] -= 1
                return
        raise WeChatFault(45047, "out of response count limit")


def sent_messages(fake: FakeWeChat, openid: str | None = None) -> list[dict[str, Any]]:
    """The customer-service messages accepted so far (for one user, or all)."""
    with LOCK:
        sent = list(state(fake, "custom_messages", list))
    return [m for m in sent if openid is None or m["touser"] == openid]


def _reachable(fake: FakeWeChat, openid: Any) -> None:
    user = follower(fake, openid)
    if not user.get("subscribe"):
        raise WeChatFault(43004, "require subscribe")
    if openid in state(fake, "closed_windows", set):
        raise WeChatFault(45015, "response out of time limit or subscription is canceled")


@endpoint("POST", "/cgi-bin/message/custom/send")
def _send(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "touser", "msgtype")
    msgtype = data["msgtype"]
    payload = message_payload(req, data, _FIELDS)
    if msgtype == "news" and len(payload["articles"]) > 1:
        raise WeChatFault(45008, "article size out of limit")
    if msgtype == "mpnewsarticle":
        from .publish import published_article

        if published_article(fake, payload["article_id"]) is None:
            raise WeChatFault(40007, "invalid article_id")
    _reachable(fake, data["touser"])
    _consume(fake, data["touser"])
    with LOCK:
        state(fake, "custom_messages", list).append(data)
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/cgi-bin/message/custom/typing")
def _typing(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "touser", "command")
    if data["command"] not in ("Typing", "CancelTyping"):
        raise WeChatFault(45072, "command field invalid")
    _reachable(fake, data["touser"])
    with LOCK:
        typing = state(fake, "typing", set)
        if data["command"] == "Typing":
            if data["touser"] in typing:
                raise WeChatFault(45081, "already typing")
            typing.add(data["touser"])
        else:
            typing.discard(data["touser"])
    return {"errcode": 0, "errmsg": "ok"}
