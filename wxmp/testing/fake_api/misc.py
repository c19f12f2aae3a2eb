"""Fake operations endpoints: IP lists, quotas and their clearing, rid lookup, short keys, callback check.

Quotas: every authenticated call counts in ``fake.quota_used``; ``fake.set_quota(path, n)`` makes a
path answer 45009 after n calls. ``clear_quota`` (token), ``clear_quota/v2`` (appid + appsecret, no
token: it works when the token quota itself is spent) and ``openapi/quota/clear`` (one path) reset
them; the first two share 10 clears (per month, on WeChat), then answer 48006; a wrong appid ->
40013, a wrong appsecret -> 40125 (missing: 41002 / 41004). ``openapi/quota/get`` reports a path's
``quota`` and ``rate_limit`` / ``component_rate_limit``; a path the fake does not serve -> 76021.
``openapi/rid/get`` explains a rid from an earlier error answer (unknown -> 76001).
``shorten/gen`` keeps ``long_data`` (up to 4 KB) for ``expire_seconds`` (up to 30 days) under a
15-character key; ``shorten/fetch`` returns it (unknown or expired -> 40035 (?)).
``callback/check`` resolves and connects to ``fake.state["callback_url"]`` (loopback hosts only: the
fake never reaches further); no URL configured -> 40201.
"""

from __future__ import annotations

import secrets
import socket
import string
import time
from typing import Any
from urllib.parse import urlsplit

from ..fake import _ENDPOINTS, FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, state, utf8_len

__all__ = ["CALLBACK_IPS", "DOMAIN_IPS", "short_keys"]

CALLBACK_IPS = ["101.226.103.0/25", "101.226.62.0/26", "203.205.239.82"]
DOMAIN_IPS = ["101.89.47.18", "101.91.34.103", "101.226.129.166"]
CLEAR_QUOTA_LIMIT = 10
API_CLEAR_LIMIT = 10  # openapi/quota/clear, per account (?)
DAILY_LIMIT = 10_000_000
RATE_LIMIT = {"call_count": 1000, "refresh_second": 60}  # what the fake reports (?)
SHORT_DATA_MAX = 4 * 1024
SHORT_EXPIRE_MAX = 2_592_000
OPERATORS = ("DEFAULT", "CHINANET", "UNICOM", "CAP")
_KEY_CHARS = string.ascii_letters + string.digits


@endpoint("GET", "/cgi-bin/getcallbackip")
def _callback_ip(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    return {"ip_list": list(fake.state.get("callback_ips", CALLBACK_IPS))}


@endpoint("GET", "/cgi-bin/get_api_domain_ip")
def _domain_ip(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    return {"ip_list": list(fake.state.get("api_domain_ips", DOMAIN_IPS))}


def _clear_all(fake: FakeWeChat) -> None:
    with LOCK:
        used = state(fake, "clear_quota_used", int)
        if used >= CLEAR_QUOTA_LIMIT:
            raise WeChatFault(48006, "forbid to clear quota because of reaching the limit")
        fake.state["clear_quota_used"] = used + 1
        fake.quota_used.clear()


@endpoint("POST", "/cgi-bin/clear_quota")
def _clear_quota(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "appid")
    if data["appid"] != fake.appid:
        raise WeChatFault(40013, "invalid appid")
    _clear_all(fake)
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/cgi-bin/clear_quota/v2", auth=False)
def _clear_quota_v2(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    # WeChat's example puts appid and appsecret in the query string, its newest table in the body:
    # the fake takes either.
    body = req.json if req.body else {}
    appid = req.args.get("appid") or body.get("appid")
    secret = req.args.get("appsecret") or body.get("appsecret")
    if not appid:
        raise WeChatFault(41002, "appid missing")
    if not secret:
        raise WeChatFault(41004, "appsecret missing")
    if appid != fake.appid:
        raise WeChatFault(40013, "invalid appid")
    if secret != fake.secret:
        raise WeChatFault(40125, "invalid appsecret")
    _clear_all(fake)
    return {"errcode": 0, "errmsg": "ok"}


def _known_path(data: dict[str, Any]) -> str:
    path = data["cgi_path"]
    if not any(p == path for _, p in _ENDPOINTS):
        raise WeChatFault(76021, "cgi_path not found")
    return str(path)


@endpoint("POST", "/cgi-bin/openapi/quota/clear")
def _clear_one(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "cgi_path")
    path = _known_path(data)
    with LOCK:
        used = state(fake, "api_clear_used", int)
        if used >= API_CLEAR_LIMIT:
            raise WeChatFault(48006, "forbid to clear quota because of reaching the limit")
        fake.state["api_clear_used"] = used + 1
        fake.quota_used.pop(path, None)
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/cgi-bin/openapi/quota/get")
def _quota(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "cgi_path")
    path = _known_path(data)
    limit = fake.daily_quota if path == "/cgi-bin/token" else fake.api_limits.get(path, DAILY_LIMIT)
    used = fake.quota_used[path]
    return {
        "errcode": 0,
        "errmsg": "ok",
        "quota": {"daily_limit": limit, "used": used, "remain": max(0, limit - used)},
        "rate_limit": dict(RATE_LIMIT),
        "component_rate_limit": dict(RATE_LIMIT),
    }


@endpoint("POST", "/cgi-bin/openapi/rid/get")
def _rid(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "rid")
    record = fake.rids.get(str(data["rid"]))
    if record is None:
        raise WeChatFault(76001, "rid not found")
    return {"errcode": 0, "errmsg": "ok", "request": dict(record)}


def short_keys(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    """shorten/gen's keys: short_key -> {"long_data", "create_time", "expire_seconds", "at"}."""
    return state(fake, "short_keys", dict)


@endpoint("POST", "/cgi-bin/shorten/gen")
def _shorten_gen(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "long_data")
    long_data = data["long_data"]
    if not isinstance(long_data, str) or utf8_len(long_data) > SHORT_DATA_MAX:
        raise WeChatFault(40035, "invalid args, long_data must be a string of at most 4KB")
    expire = data.get("expire_seconds", SHORT_EXPIRE_MAX)
    if isinstance(expire, bool) or not isinstance(expire, int) or not 1 <= expire <= SHORT_EXPIRE_MAX:
        raise WeChatFault(40035, "invalid args, expire_seconds")
    key = "".join(secrets.choice(_KEY_CHARS) for _ in range(15))
    with LOCK:
        short_keys(fake)[key] = {
            "long_data": long_data,
            "create_time": int(fake.clock()),
            "expire_seconds": expire,
            "at": fake.clock(),
        }
    return {"errcode": 0, "errmsg": "ok", "short_key": key}


@endpoint("POST", "/cgi-bin/shorten/fetch")
def _shorten_fetch(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "short_key")
    item = short_keys(fake).get(str(data["short_key"]))
    if item is None or fake.clock() >= item["at"] + item["expire_seconds"]:
        raise WeChatFault(40035, "invalid args, short_key")
    left = round(item["at"] + item["expire_seconds"] - fake.clock())
    return {
        "errcode": 0,
        "errmsg": "ok",
        "long_data": item["long_data"],
        "create_time": item["create_time"],
        "expire_seconds": left,
    }


def _probe(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(dns, ping) answers for a loopback callback URL: resolve it, then try a TCP connection."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ip = socket.gethostbyname(host)
    except OSError:
        return [], []
    if not ip.startswith("127."):
        return [{"ip": ip, "real_operator": "UNKNOWN"}], []  # the fake reaches loopback only
    started = time.perf_counter()
    try:
        with socket.create_connection((ip, port), timeout=2):
            loss = "0%"
    except OSError:
        loss = "100%"
    elapsed = f"{(time.perf_counter() - started) * 1000:.3f}ms"
    dns = [{"ip": ip, "real_operator": "UNICOM"}]
    ping = [{"ip": ip, "from_operator": "UNICOM", "package_loss": loss, "time": elapsed}]
    return dns, ping


@endpoint("POST", "/cgi-bin/callback/check")
def _callback_check(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    action = data.get("action", "all")
    operator = data.get("check_operator", "DEFAULT")
    if action not in ("all", "dns", "ping") or operator not in OPERATORS:
        raise WeChatFault(40035, "invalid args, action or check_operator")
    url = fake.state.get("callback_url")
    if not url:
        raise WeChatFault(40201, "invalid url, no callback url configured")
    dns, ping = _probe(str(url))
    result: dict[str, Any] = {}
    if action in ("all", "dns"):
        result["dns"] = dns
    if action in ("all", "ping"):
        result["ping"] = ping
    return result
