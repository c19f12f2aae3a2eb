"""Fake ``ticket/getticket`` (jsapi and wx_card): tickets follow the stable token's rules.

A ticket lives ``fake.token_lifetime`` seconds of ``fake.clock``. While more than
``fake.stable_rotate_window`` seconds remain, every call returns the same ticket with the time
left; inside that window a new ticket is issued (the old one keeps working until it expires).
``fake.state["tickets_issued"]`` counts new tickets per type; ``fake.count(PATH)`` the calls.
Unknown ``type`` -> 40097.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, state

__all__ = ["PATH", "current_ticket", "ticket_valid", "tickets_issued"]

PATH = "/cgi-bin/ticket/getticket"
TYPES = ("jsapi", "wx_card")


def _tickets(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    """type -> {"value", "expires_at"} of the newest ticket; older ones in "_old" until expiry."""
    return state(fake, "tickets", dict)


def current_ticket(fake: FakeWeChat, kind: str = "jsapi") -> str | None:
    """The newest ticket of ``kind`` if it is still valid."""
    with LOCK:
        ticket = _tickets(fake).get(kind)
        if ticket is None or ticket["expires_at"] <= fake.clock():
            return None
        return str(ticket["value"])


def ticket_valid(fake: FakeWeChat, value: str, kind: str = "jsapi") -> bool:
    """Whether ``value`` is a ticket of ``kind`` that has not expired (rotated ones count)."""
    with LOCK:
        expires_at = state(fake, "ticket_expiry", dict).get((kind, value))
        return expires_at is not None and expires_at > fake.clock()


def tickets_issued(fake: FakeWeChat, kind: str = "jsapi") -> int:
    """How many distinct tickets of ``kind`` were handed out."""
    with LOCK:
        return int(state(fake, "tickets_issued", dict).get(kind, 0))


@endpoint("GET", PATH)
def _getticket(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    kind = req.args.get("type", "")
    if kind not in TYPES:
        raise WeChatFault(40097, "invalid args, type")
    with LOCK:
        now = fake.clock()
        tickets = _tickets(fake)
        ticket = tickets.get(kind)
        if ticket is None or ticket["expires_at"] - now <= fake.stable_rotate_window:
            value = f"{kind[:2].upper()}{secrets.token_urlsafe(60)}"
            ticket = tickets[kind] = {"value": value, "expires_at": now + fake.token_lifetime}
            state(fake, "ticket_expiry", dict)[(kind, value)] = ticket["expires_at"]
            issued = state(fake, "tickets_issued", dict)
            issued[kind] = issued.get(kind, 0) + 1
        remaining = max(1, round(ticket["expires_at"] - now))
        return {"errcode": 0, "errmsg": "ok", "ticket": ticket["value"], "expires_in": remaining}
