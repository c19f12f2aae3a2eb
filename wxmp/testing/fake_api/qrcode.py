"""Fake QR codes: ``qrcode/create`` with WeChat's ranges.

Rules: unknown action_name -> 40035; expire_seconds beyond 2,592,000 -> 40035; temporary scene_id
outside 1..2**32-1 or permanent outside 1..100,000 -> 40035; scene_str outside 1..64 chars ->
40035; more than 100,000 permanent codes -> 40035. Tickets are kept in
``fake.state["qrcodes"]`` (ticket -> body, expiry) so tests can resolve a scan.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, state

__all__ = ["qrcodes"]

_TEMPORARY = {"QR_SCENE": "scene_id", "QR_STR_SCENE": "scene_str"}
_PERMANENT = {"QR_LIMIT_SCENE": "scene_id", "QR_LIMIT_STR_SCENE": "scene_str"}


def qrcodes(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    """Issued tickets: ticket -> {"action_name", "scene", "expires_at" (None: permanent)}."""
    return state(fake, "qrcodes", dict)


def _scene(data: dict[str, Any], field: str, temporary: bool) -> Any:
    info = data.get("action_info")
    scene = info.get("scene") if isinstance(info, dict) else None
    value = scene.get(field) if isinstance(scene, dict) else None
    if field == "scene_id":
        top = 2**32 - 1 if temporary else 100_000
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise WeChatFault(40035, "invalid args, scene_id out of range")
    elif not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise WeChatFault(40035, "invalid args, scene_str must be 1 to 64 chars")
    return value


@endpoint("POST", "/cgi-bin/qrcode/create")
def _create(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "action_name")
    action = data["action_name"]
    temporary = action in _TEMPORARY
    field = _TEMPORARY.get(action) or _PERMANENT.get(action)
    if field is None:
        raise WeChatFault(40035, "invalid args, action_name")
    scene = _scene(data, field, temporary)
    result: dict[str, Any] = {}
    expires_at = None
    if temporary:
        expire = data.get("expire_seconds", 60)  # WeChat's default when omitted
        if not isinstance(expire, int) or not 1 <= expire <= 2_592_000:
            raise WeChatFault(40035, "invalid args, expire_seconds")
        result["expire_seconds"] = expire
        expires_at = fake.clock() + expire
    ticket = "gQ" + secrets.token_urlsafe(30) + "=="
    with LOCK:
        codes = qrcodes(fake)
        if not temporary and sum(1 for c in codes.values() if c["expires_at"] is None) >= 100_000:
            raise WeChatFault(40035, "invalid args, permanent qrcode limit reached")
        codes[ticket] = {"action_name": action, "scene": {field: scene}, "expires_at": expires_at}
    return {"ticket": ticket, **result, "url": f"http://weixin.qq.com/q/{secrets.token_urlsafe(16)}"}
