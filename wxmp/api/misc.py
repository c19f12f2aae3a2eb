"""Operations: ``wx.misc`` (callback IPs, API IPs, quotas)."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ._base import ApiGroup

__all__ = ["MiscAPI"]


class MiscAPI(ApiGroup):
    """Network facts and quota management."""

    def get_callback_ip(self) -> list[str]:
        """The IPs WeChat pushes callbacks from (``ip_list``): ``GET /cgi-bin/getcallbackip``."""
        return self.client.get("/cgi-bin/getcallbackip", then=_ip_list)

    def get_api_domain_ip(self) -> list[str]:
        """The IPs behind api.weixin.qq.com (``ip_list``): ``GET /cgi-bin/get_api_domain_ip``."""
        return self.client.get("/cgi-bin/get_api_domain_ip", then=_ip_list)

    def clear_quota(self) -> dict[str, Any]:
        """Reset every daily API quota (10 times a month): ``POST /cgi-bin/clear_quota``."""
        appid = self.settings.appid
        if not appid:
            raise ConfigError("WXMP_APPID", "clear_quota needs the account's AppID")
        return self.client.post("/cgi-bin/clear_quota", {"appid": appid})

    def get_quota(self, cgi_path: str) -> dict[str, Any]:
        """``{daily_limit, used, remain}`` of one API (e.g. ``/cgi-bin/message/custom/send``).

        ``POST /cgi-bin/openapi/quota/get``; returns its ``quota`` object.
        """
        return self.client.post(
            "/cgi-bin/openapi/quota/get", {"cgi_path": cgi_path}, then=lambda r: dict(r.get("quota", {}))
        )


def _ip_list(result: dict[str, Any]) -> list[str]:
    return list(result.get("ip_list", []))
