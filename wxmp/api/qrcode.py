"""Parameterised QR codes: ``wx.qrcode`` (``POST /cgi-bin/qrcode/create``, image on mp.weixin.qq.com)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ._base import ApiGroup

__all__ = ["QRCodeAPI"]

SHOW_URL = "https://mp.weixin.qq.com/cgi-bin/showqrcode"
MAX_EXPIRE = 2_592_000  # 30 days
MAX_TEMP_SCENE_ID = 2**32 - 1  # "a 32-bit non-zero int"
MAX_LIMIT_SCENE_ID = 100_000
MAX_SCENE_STR = 64


def _action(scene: int | str, expire_seconds: int | None) -> tuple[str, dict[str, Any]]:
    temporary = expire_seconds is not None
    if isinstance(scene, bool) or not isinstance(scene, (int, str)):
        raise ValueError(f"scene: an int (scene_id) or a str (scene_str), not {type(scene).__name__}")
    if isinstance(scene, int):
        top = MAX_TEMP_SCENE_ID if temporary else MAX_LIMIT_SCENE_ID
        if not 1 <= scene <= top:
            kind = "temporary" if temporary else "permanent"
            raise ValueError(f"scene_id {scene}: a {kind} code takes 1 to {top}")
        return ("QR_SCENE" if temporary else "QR_LIMIT_SCENE"), {"scene_id": scene}
    if not 1 <= len(scene) <= MAX_SCENE_STR:
        raise ValueError(f"scene_str: 1 to {MAX_SCENE_STR} characters, got {len(scene)}")
    return ("QR_STR_SCENE" if temporary else "QR_LIMIT_STR_SCENE"), {"scene_str": scene}


class QRCodeAPI(ApiGroup):
    """QR codes that tell the callback which scene a follower came from."""

    def create(self, scene: int | str, expire_seconds: int | None = None) -> dict[str, Any]:
        """A QR code ticket; ``{"ticket", "expire_seconds"?, "url"}``: ``POST /cgi-bin/qrcode/create``.

        An int scene is a ``scene_id``, a str a ``scene_str``. With ``expire_seconds`` (1 to
        2,592,000) the code is temporary (``QR_SCENE``/``QR_STR_SCENE``); without, permanent
        (``QR_LIMIT_*``, at most 100,000 per account, scene_id 1 to 100,000).
        """
        if expire_seconds is not None and not 1 <= expire_seconds <= MAX_EXPIRE:
            raise ValueError(f"expire_seconds {expire_seconds}: 1 to {MAX_EXPIRE} (30 days)")
        action, info = _action(scene, expire_seconds)
        body: dict[str, Any] = {"action_name": action, "action_info": {"scene": info}}
        if expire_seconds is not None:
            body["expire_seconds"] = expire_seconds
        return self.client.post("/cgi-bin/qrcode/create", body)

    def url(self, ticket: str) -> str:
        """The QR code image for ``ticket`` (no request, no token): ``GET /cgi-bin/showqrcode``."""
        return f"{SHOW_URL}?ticket={quote(ticket, safe='')}"
