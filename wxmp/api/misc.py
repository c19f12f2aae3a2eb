"""Operations: ``wx.misc`` (IP lists, quotas and their clearing, request ids, short keys, callback check).

``flask wxmp doctor`` (:mod:`wxmp.doctor`) runs these as a checklist. Paths and fields from
developers.weixin.qq.com/doc/offiaccount/openApi/ (get_api_quota, get_rid_info, clear_quota,
clearQuotaByAppSecret, clear_api_quota) and .../Basic_Information/Network_Detection.html.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ._base import ApiGroup

__all__ = ["CHECK_OPERATORS", "MiscAPI"]

SHORT_DATA_MAX = 4 * 1024  # bytes
SHORT_EXPIRE_MAX = 2_592_000  # 30 days
CHECK_OPERATORS = ("DEFAULT", "CHINANET", "UNICOM", "CAP")


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
        """The daily quota and rate limits of one API (e.g. ``/cgi-bin/message/custom/send``).

        ``POST /cgi-bin/openapi/quota/get``. Returns ``{daily_limit, used, remain, rate_limit,
        component_rate_limit}``: the ``quota`` object's fields at the top, and the two rate limits
        (``{call_count, refresh_second}``: calls allowed per that many seconds, for the account and
        for third-party platforms calling on its behalf) as WeChat sends them (``{}`` when absent).
        """
        return self.client.post("/cgi-bin/openapi/quota/get", {"cgi_path": cgi_path}, then=_quota)

    def clear_quota_v2(self) -> dict[str, Any]:
        """Reset every daily quota with the AppSecret, no token: ``POST /cgi-bin/clear_quota/v2``.

        For when the token quota itself is spent (no token, so ``clear_quota`` cannot be called).
        Shares the 10 clears a month with :meth:`clear_quota`. WeChat's example sends appid and
        appsecret in the query string (so does this; wxmp redacts it from logs).
        """
        appid, secret = self.settings.appid, self.settings.secret
        if not appid or not secret:
            raise ConfigError("WXMP_SECRET", "clear_quota/v2 needs the AppID and the AppSecret on this host")
        return self.client.request(
            "POST", "/cgi-bin/clear_quota/v2", params={"appid": appid, "appsecret": secret}, auth=False
        )

    def clear_api_quota(self, cgi_path: str) -> dict[str, Any]:
        """Reset one API's daily quota (e.g. ``/cgi-bin/message/custom/send``):
        ``POST /cgi-bin/openapi/quota/clear``.
        """
        return self.client.post("/cgi-bin/openapi/quota/clear", {"cgi_path": cgi_path})

    def get_rid(self, rid: str) -> dict[str, Any]:
        """What WeChat recorded for a failed request's ``rid`` (``ApiError.rid``): its ``request``
        object (invoke_time, cost_in_ms, request_url, request_body, response_body, client_ip).

        ``POST /cgi-bin/openapi/rid/get``; rids can be looked up for a while only (about a week).
        """
        return self.client.post(
            "/cgi-bin/openapi/rid/get", {"rid": rid}, then=lambda r: dict(r.get("request", {}))
        )

    def shorten(self, long_data: str, expire_seconds: int = SHORT_EXPIRE_MAX) -> str:
        """Store up to 4 KB under a 15-character key for up to 30 days: ``POST /cgi-bin/shorten/gen``.

        The replacement of the retired ``shorturl`` (long2short stopped on 2021-03-15).
        """
        if len(long_data.encode("utf-8")) > SHORT_DATA_MAX:
            raise ValueError(f"long_data: at most {SHORT_DATA_MAX} bytes")
        if not 1 <= expire_seconds <= SHORT_EXPIRE_MAX:
            raise ValueError(f"expire_seconds: 1 to {SHORT_EXPIRE_MAX} (30 days)")
        body = {"long_data": long_data, "expire_seconds": expire_seconds}
        return self.client.post("/cgi-bin/shorten/gen", body, then=lambda r: str(r["short_key"]))

    def fetch_short(self, short_key: str) -> dict[str, Any]:
        """``{long_data, create_time, expire_seconds}`` of a short key: ``POST /cgi-bin/shorten/fetch``."""
        return self.client.post("/cgi-bin/shorten/fetch", {"short_key": short_key})

    def callback_check(self, action: str = "all", operator: str = "DEFAULT") -> dict[str, Any]:
        """Ask WeChat to resolve and ping the account's server URL: ``POST /cgi-bin/callback/check``.

        ``action``: all, dns or ping; ``operator``: DEFAULT, CHINANET, UNICOM or CAP. Returns
        ``{"dns": [{"ip", "real_operator"}], "ping": [{"ip", "from_operator", "package_loss", "time"}]}``.
        """
        if action not in ("all", "dns", "ping"):
            raise ValueError("action: all, dns or ping")
        if operator not in CHECK_OPERATORS:
            raise ValueError(f"operator: one of {', '.join(CHECK_OPERATORS)}")
        return self.client.post("/cgi-bin/callback/check", {"action": action, "check_operator": operator})


def _ip_list(result: dict[str, Any]) -> list[str]:
    return list(result.get("ip_list", []))


def _quota(result: dict[str, Any]) -> dict[str, Any]:
    quota = dict(result.get("quota", {}))
    quota["rate_limit"] = dict(result.get("rate_limit") or {})
    quota["component_rate_limit"] = dict(result.get("component_rate_limit") or {})
    return quota
