"""Fake operations endpoints: callback and API IPs, clear_quota, openapi/quota/get.

``clear_quota`` resets ``fake.quota_used`` (the daily /cgi-bin/token quota among them); it works 10
times (per month, on WeChat) and then answers 48006; an appid other than the fake's -> 40013.
``openapi/quota/get`` reports a path's calls so far; a path the fake does not serve -> 76021.
"""

from __future__ import annotations

from typing import Any

from ..fake import _ENDPOINTS, FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, state

__all__ = ["CALLBACK_IPS", "DOMAIN_IPS"]

CALLBACK_IPS = ["101.226.103.0/25", "101.226.62.0/26", "203.205.239.82"]
DOMAIN_IPS = ["101.89.47.18", "101.91.34.103", "101.226.129.166"]
CLEAR_QUOTA_LIMIT = 10
DAILY_LIMIT = 10_000_000


@endpoint("GET", "/cgi-bin/getcallbackip")
def _callback_ip(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    return {"ip_list": list(fake.state.get("callback_ips", CALLBACK_IPS))}


@endpoint("GET", "/cgi-bin/get_api_domain_ip")
def _domain_ip(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    return {"ip_list": list(fake.state.get("api_domain_ips", DOMAIN_IPS))}


@endpoint("POST", "/cgi-bin/clear_quota")
def _clear_quota(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "appid")
    if data["appid"] != fake.appid:
        raise WeChatFault(40013, "invalid appid")
    with LOCK:
        used = state(fake, "clear_quota_used", int)
        if used >= CLEAR_QUOTA_LIMIT:
            raise WeChatFault(48006, "forbid to clear quota because of reaching the limit")
        fake.state["clear_quota_used"] = used + 1
        fake.quota_used.clear()
        fake.state["quota_cleared_at"] = len(fake.requests)
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/cgi-bin/openapi/quota/get")
def _quota(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "cgi_path")
    path = data["cgi_path"]
    if not any(p == path for _, p in _ENDPOINTS):
        raise WeChatFault(76021, "cgi_path not found")
    limit = fake.daily_quota if path == "/cgi-bin/token" else DAILY_LIMIT
    if path in fake.quota_used:
        used = fake.quota_used[path]
    else:  # calls since the last clear_quota
        since = fake.state.get("quota_cleared_at", 0)
        used = sum(1 for r in fake.requests[since:] if r.path == path)
    return {
        "errcode": 0,
        "errmsg": "ok",
        "quota": {"daily_limit": limit, "used": used, "remain": limit - used},
    }
