"""Users: ``wx.user`` (``/cgi-bin/user/*``)."""

from __future__ import annotations

from typing import Any

from ._base import ApiGroup


class UserAPI(ApiGroup):
    """Follower information, remarks and the follower list."""

    def get(self, openid: str, lang: str = "zh_CN") -> dict[str, Any]:
        """One follower's info: ``GET /cgi-bin/user/info``."""
        return self.client.get("/cgi-bin/user/info", {"openid": openid, "lang": lang})
