"""Fake web authorisation (``/sns/*``): code exchange, refresh, userinfo and token check.

A test plays the user who approves the authorisation page with :func:`authorize`, which returns
the ``code`` WeChat would append to the redirect. Rules: wrong appid/secret -> 40013/40125; bad
grant_type -> 40002; unknown or expired (5 min) code -> 40029; a code used twice -> 40163; unknown
refresh_token -> 40030, expired (30 days) -> 42002; unknown web token -> 40001, expired (7200 s)
-> 42001; openid not the token's -> 40003; userinfo with an snsapi_base token -> 48001. ``unionid``
comes only with snsapi_userinfo; a snapshot-page user gets ``is_snapshotuser: 1``. These
endpoints take the per-user web token, never the account's access_token.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, state

__all__ = ["authorize", "expire_web_tokens"]

CODE_LIFETIME = 300
WEB_TOKEN_LIFETIME = 7200
REFRESH_LIFETIME = 30 * 24 * 3600


def _store(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    return state(fake, "oauth", lambda: {"codes": {}, "tokens": {}, "refresh": {}})


def authorize(fake: FakeWeChat, openid: str, scope: str = "snsapi_base", *, snapshot: bool = False) -> str:
    """The user ``openid`` approves the authorisation page: return the redirect's ``code``.

    ``snapshot``: the page was opened as a snapshot (朋友圈 preview), so the openid is a virtual
    user's and the exchange answers ``is_snapshotuser: 1``.
    """
    if scope not in ("snsapi_base", "snsapi_userinfo"):
        raise ValueError(f"scope {scope!r}")
    code = secrets.token_hex(16)
    with LOCK:
        _store(fake)["codes"][code] = {
            "openid": openid,
            "scope": scope,
            "at": fake.clock(),
            "used": False,
            "snapshot": snapshot,
        }
    return code


def _credentials(fake: FakeWeChat, req: FakeRequest, *, secret: bool) -> None:
    if req.args.get("appid") != fake.appid:
        raise WeChatFault(40013, "invalid appid")
    if secret and req.args.get("secret") != fake.secret:
        raise WeChatFault(40125, "invalid appsecret")


def _grant(
    fake: FakeWeChat, openid: str, scope: str, refresh_token: str | None = None, snapshot: bool = False
) -> dict[str, Any]:
    now = fake.clock()
    store = _store(fake)
    token = "W" + secrets.token_urlsafe(40)
    store["tokens"][token] = {"openid": openid, "scope": scope, "expires_at": now + WEB_TOKEN_LIFETIME}
    if refresh_token is None:
        refresh_token = "R" + secrets.token_urlsafe(40)
        store["refresh"][refresh_token] = {
            "openid": openid,
            "scope": scope,
            "expires_at": now + REFRESH_LIFETIME,
        }
    result = {
        "access_token": token,
        "expires_in": WEB_TOKEN_LIFETIME,
        "refresh_token": refresh_token,
        "openid": openid,
        "scope": scope,
    }
    unionid = fake.users.get(openid, {}).get("unionid")
    if unionid and scope == "snsapi_userinfo":  # WeChat: unionid only with snsapi_userinfo
        result["unionid"] = unionid
    if snapshot:
        result["is_snapshotuser"] = 1
    return result


@endpoint("GET", "/sns/oauth2/access_token", auth=False)
def _exchange(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    _credentials(fake, req, secret=True)
    if req.args.get("grant_type") != "authorization_code":
        raise WeChatFault(40002, "invalid grant_type")
    with LOCK:
        grant = _store(fake)["codes"].get(req.args.get("code", ""))
        if grant is None or fake.clock() - grant["at"] > CODE_LIFETIME:
            raise WeChatFault(40029, "invalid code")
        if grant["used"]:
            raise WeChatFault(40163, "code been used")
        grant["used"] = True
        return _grant(fake, grant["openid"], grant["scope"], snapshot=grant.get("snapshot", False))


@endpoint("GET", "/sns/oauth2/refresh_token", auth=False)
def _refresh(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    _credentials(fake, req, secret=False)
    if req.args.get("grant_type") != "refresh_token":
        raise WeChatFault(40002, "invalid grant_type")
    with LOCK:
        refresh_token = req.args.get("refresh_token", "")
        grant = _store(fake)["refresh"].get(refresh_token)
        if grant is None:
            raise WeChatFault(40030, "invalid refresh_token")
        if grant["expires_at"] <= fake.clock():
            raise WeChatFault(42002, "refresh_token expired")
        return _grant(fake, grant["openid"], grant["scope"], refresh_token)


def _web_token(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    token = req.args.get("access_token")
    if not token:
        raise WeChatFault(41001, "access_token missing")
    grant = _store(fake)["tokens"].get(token)
    if grant is None:
        raise WeChatFault(40001, "invalid credential, access_token is invalid or not latest")
    if grant["expires_at"] <= fake.clock():
        raise WeChatFault(42001, "access_token expired")
    if req.args.get("openid") != grant["openid"]:
        raise WeChatFault(40003, "invalid openid")
    return grant


@endpoint("GET", "/sns/userinfo", auth=False)
def _userinfo(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    grant = _web_token(fake, req)
    if grant["scope"] != "snsapi_userinfo":
        raise WeChatFault(48001, "api unauthorized")
    user = fake.users.get(grant["openid"], {})
    info = {
        "openid": grant["openid"],
        "nickname": user.get("nickname", "微信用户"),
        "sex": user.get("sex", 0),
        "province": user.get("province", ""),
        "city": user.get("city", ""),
        "country": user.get("country", ""),
        "headimgurl": user.get("headimgurl", ""),
        "privilege": [],
    }
    if user.get("unionid"):
        info["unionid"] = user["unionid"]
    return info


@endpoint("GET", "/sns/auth", auth=False)
def _check(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    _web_token(fake, req)
    return {"errcode": 0, "errmsg": "ok"}


def expire_web_tokens(fake: FakeWeChat) -> None:
    """Every per-user web token expires now (refresh tokens still work)."""
    with LOCK:
        for grant in _store(fake)["tokens"].values():
            grant["expires_at"] = fake.clock()
