"""Diagnosing an account: the logic of ``flask wxmp doctor`` (no Flask here).

:func:`diagnose` runs a checklist against the account's API groups and returns one :class:`Check`
per line: the credentials (a ``stable_token`` call, which never invalidates the token in use, even
in classic-token mode: the two kinds are isolated), the API IP whitelist (40164 names the egress IP
to add), the daily quotas of the main APIs, WeChat's view of the callback URL (``callback/check``)
and the IP ranges WeChat pushes from. Each failure carries a hint saying what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import (
    ApiError,
    ConfigError,
    CredentialError,
    IPNotWhitelistedError,
    NetworkError,
    TokenUnavailableError,
    WxMPError,
)

__all__ = ["MAIN_APIS", "Check", "diagnose"]

#: The APIs whose daily quota the doctor reports.
MAIN_APIS: tuple[str, ...] = (
    "/cgi-bin/stable_token",
    "/cgi-bin/token",
    "/cgi-bin/message/custom/send",
    "/cgi-bin/message/template/send",
    "/cgi-bin/message/mass/sendall",
    "/cgi-bin/user/info",
    "/cgi-bin/menu/create",
)
LOW_QUOTA = 0.1  # warn (still a pass) below this share of the daily limit


@dataclass(frozen=True)
class Check:
    """One line of the diagnosis: ``status`` is "pass", "fail" or "skip"."""

    name: str
    status: str
    detail: str
    hint: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "fail"


class Groups(Protocol):
    """What the doctor needs: the account's API groups (``wx`` or an Account)."""

    @property
    def misc(self) -> Any: ...


def _whitelist_hint(exc: IPNotWhitelistedError) -> str:
    where = "mp.weixin.qq.com → 设置与开发 → 基本配置 → IP白名单"
    if exc.ip:
        return f"add this server's egress IP {exc.ip} to the API IP whitelist ({where})"
    return f"add this server's egress IP to the API IP whitelist ({where})"


def _failure(name: str, exc: WxMPError) -> Check:
    """A failed check with the hint that fits the error."""
    if isinstance(exc, IPNotWhitelistedError):
        return Check(name, "fail", f"WeChat refused this server's IP ({exc.errcode})", _whitelist_hint(exc))
    if isinstance(exc, CredentialError):
        key = "WXMP_APPID" if exc.errcode == 40013 else "WXMP_SECRET"
        return Check(
            name,
            "fail",
            f"WeChat refused the credentials ({exc.errcode})",
            f"check {key}: copy it from 设置与开发 → 基本配置",
        )
    if isinstance(exc, NetworkError):
        return Check(
            name,
            "fail",
            f"WeChat could not be reached ({exc.reason})",
            "check the network, the proxy and WXMP_API_BASE",
        )
    if isinstance(exc, TokenUnavailableError):
        return Check(
            name, "fail", "no access_token", "in external mode `flask wxmp refresher` must be running"
        )
    if isinstance(exc, ApiError):
        rid = f"; look it up with wx.misc.get_rid({exc.rid!r})" if exc.rid else ""
        return Check(
            name, "fail", f"errcode {exc.errcode}: {exc.errmsg}", f"see WeChat's global return codes{rid}"
        )
    return Check(name, "fail", str(exc))


def _credentials(api: Groups) -> Check:
    settings = api.misc.settings
    if not settings.appid or not settings.secret:
        return Check(
            "credentials",
            "skip",
            "no WXMP_APPID/WXMP_SECRET here",
            "external mode: run the doctor where the secret is",
        )
    try:
        api.misc.client.fetch_access_token(settings.appid, settings.secret, stable=True, force=False)
    except WxMPError as exc:
        return _failure("credentials", exc)
    return Check("credentials", "pass", f"AppID {settings.appid} and its AppSecret are accepted")


def _api_access(api: Groups) -> Check:
    try:
        ips = api.misc.get_api_domain_ip()
    except WxMPError as exc:
        return _failure("api access", exc)
    return Check("api access", "pass", f"token accepted; api.weixin.qq.com answers from {len(ips)} IPs")


def _quotas(api: Groups, paths: Sequence[str]) -> list[Check]:
    checks = []
    for path in paths:
        name = f"quota {path}"
        try:
            quota = api.misc.get_quota(path)
        except ApiError as exc:
            if exc.errcode == 76021:  # not an API of this account
                continue
            checks.append(_failure(name, exc))
            continue
        except WxMPError as exc:
            checks.append(_failure(name, exc))
            continue
        limit, used, remain = (int(quota.get(k, 0)) for k in ("daily_limit", "used", "remain"))
        rate = quota.get("rate_limit") or {}
        per = f", {rate['call_count']} per {rate['refresh_second']}s" if rate.get("call_count") else ""
        detail = f"{used} of {limit} used today, {remain} left{per}"
        if limit and remain <= 0:
            hint = (
                f"spent until midnight (Beijing): wx.misc.clear_api_quota({path!r}) or wx.misc.clear_quota()"
            )
            checks.append(Check(name, "fail", detail, hint))
        elif limit and remain < limit * LOW_QUOTA:
            checks.append(Check(name, "pass", detail, "running low"))
        else:
            checks.append(Check(name, "pass", detail))
    return checks


def _callback(api: Groups) -> Check:
    try:
        result = api.misc.callback_check()
    except ApiError as exc:
        if exc.errcode == 40201:
            return Check(
                "callback url",
                "fail",
                "no server URL configured",
                "set it in 设置与开发 → 基本配置 → 服务器配置",
            )
        return _failure("callback url", exc)
    except WxMPError as exc:
        return _failure("callback url", exc)
    dns, ping = result.get("dns") or [], result.get("ping") or []
    if not dns:
        return Check(
            "callback url", "fail", "WeChat cannot resolve the server URL's host", "check the DNS record"
        )
    lost = [p for p in ping if str(p.get("package_loss", "")) != "0%"]
    if not ping or lost:
        ip = (lost or dns)[0].get("ip", "?")
        return Check(
            "callback url",
            "fail",
            f"WeChat cannot reach {ip}",
            "open port 80/443 to WeChat's callback IPs and check the server",
        )
    return Check(
        "callback url", "pass", f"WeChat resolves and reaches {', '.join(d.get('ip', '?') for d in dns)}"
    )


def _callback_ips(api: Groups) -> Check:
    try:
        ips = api.misc.get_callback_ip()
    except WxMPError as exc:
        return _failure("callback ips", exc)
    shown = ", ".join(ips[:5]) + (f" (+{len(ips) - 5} more)" if len(ips) > 5 else "")
    return Check(
        "callback ips", "pass", f"WeChat pushes from {len(ips)} ranges: {shown}", "allow them in the firewall"
    )


def diagnose(api: Groups, *, quotas: Sequence[str] = MAIN_APIS) -> list[Check]:
    """Run every check (the later ones still run when an early one fails) and return the lines."""
    try:
        api.misc.settings  # noqa: B018 - fails early without an initialised account
    except (RuntimeError, ConfigError) as exc:
        return [Check("account", "fail", str(exc))]
    checks = [_credentials(api), _api_access(api)]
    if not checks[-1].ok:
        reason = "needs API access (fix the line above first)"
        return checks + [Check(name, "skip", reason) for name in ("quotas", "callback url", "callback ips")]
    checks += _quotas(api, quotas)
    checks.append(_callback(api))
    checks.append(_callback_ips(api))
    return checks
