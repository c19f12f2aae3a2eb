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
        return list(self.client.get("/cgi-bin/getcallbackip").get("ip_list", []))

    def get_api_domain_ip(self) -> list[str]:
        """The IPs behind api.weixin.qq.com (``ip_list``): ``GET /cgi-bin/get_api_domain_ip``."""
        return list(self.client.get("/cgi-bin/get_api_domain_ip").get("ip_list", []))

    def clear_quota(self) -> dict[str, Any]:
        """Reset every daily API quota (10 times a month): ``POST /cgi-bin/clear_quota``."""
        appid = self.settings.appid
        if not appid:
            raise ConfigError("WXMP_APPID", "clear_quota needs the account's AppID")
        return self.client.post("/cgi-bin/clear_quota", {"appid": appid})

    def get_quota(self, cgi_path: str) -> dict[str, Any]:
        """The daily quota and rate limits of one API (e.g. ``/cgi-bin/message/custom/send``).

        ``POST /cgi-bin/openapi/quota/get``. Returns ``{daily_limit, used, remain, rate_limit,
        component_rate_limit}``: the ``quota`` object's fields at the top, and the two rate limits
        (``{call_count, refresh_second}``: calls allowed per that many seconds, for the account and
        for third-party platforms calling on its behalf) as WeChat sends them (``{}`` when absent).
        """
        result = self.client.post("/cgi-bin/openapi/quota/get", {"cgi_path": cgi_path})
        quota = dict(result.get("quota", {}))
        quota["rate_limit"] = dict(result.get("rate_limit") or {})
        quota["component_rate_limit"] = dict(result.get("component_rate_limit") or {})
        return quota
