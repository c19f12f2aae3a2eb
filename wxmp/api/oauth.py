"""Web authorisation (网页授权): ``wx.oauth`` (``/sns/*``).

These calls use the *per-user* web access_token that :meth:`OAuthAPI.exchange` returns, never the
account's shared token: the client sends them with ``auth=False``, and ``exchange``/``refresh``
carry the appid (and secret) from the settings.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from ..client import Plan
from ..errors import ConfigError, InvalidOpenIDError, TokenInvalidError
from ._base import ApiGroup, get, plan

__all__ = ["OAuthAPI"]

AUTHORIZE_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"
SCOPES = ("snsapi_base", "snsapi_userinfo")
_STATE = re.compile(r"[A-Za-z0-9]{0,128}")


class OAuthAPI(ApiGroup):
    """The web authorisation flow: link, code exchange, refresh, user info, token check."""

    def _appid(self) -> str:
        appid = self.settings.appid
        if not appid:
            raise ConfigError("WXMP_APPID", "web authorisation needs the account's AppID")
        return appid

    def _secret(self) -> str:
        secret = self.settings.secret
        if not secret:
            raise ConfigError("WXMP_SECRET", "exchanging an OAuth code needs the AppSecret on this host")
        return secret

    def authorize_url(self, redirect_uri: str, scope: str = "snsapi_base", state: str = "") -> str:
        """The link that starts web authorisation (``open.weixin.qq.com/connect/oauth2/authorize``).

        WeChat checks the link strictly: parameters in this order and the ``#wechat_redirect``
        suffix (wechat-api.md §5.8). ``state`` is up to 128 letters and digits.
        """
        if scope not in SCOPES:
            raise ValueError(f"scope {scope!r}: one of {', '.join(SCOPES)}")
        if not _STATE.fullmatch(state):
            raise ValueError("state: up to 128 characters from [A-Za-z0-9]")
        return (
            f"{AUTHORIZE_URL}?appid={self._appid()}&redirect_uri={quote(redirect_uri, safe='')}"
            f"&response_type=code&scope={scope}&state={state}#wechat_redirect"
        )

    def exchange(self, code: str) -> dict[str, Any]:
        """Trade the redirect's ``code`` for a per-user web token: ``GET /sns/oauth2/access_token``.

        Returns ``{access_token, expires_in, refresh_token, openid, scope, unionid?}``; uses the
        appid and secret, not the shared access_token.
        """
        params = {
            "appid": self._appid(),
            "secret": self._secret(),
            "code": code,
            "grant_type": "authorization_code",
        }
        return self.client.get("/sns/oauth2/access_token", params, auth=False)

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        """Renew a per-user web token (30-day refresh_token): ``GET /sns/oauth2/refresh_token``."""
        params = {"appid": self._appid(), "grant_type": "refresh_token", "refresh_token": refresh_token}
        return self.client.get("/sns/oauth2/refresh_token", params, auth=False)

    def userinfo(self, access_token: str, openid: str, lang: str = "zh_CN") -> dict[str, Any]:
        """Profile of a user who granted snsapi_userinfo: ``GET /sns/userinfo`` with the per-user token."""
        params = {"access_token": access_token, "openid": openid, "lang": lang}
        return self.client.get("/sns/userinfo", params, auth=False)

    @plan
    def check(self, access_token: str, openid: str) -> Plan[bool]:
        """Whether a per-user web token is still valid for ``openid``: ``GET /sns/auth``.

        False when WeChat calls the token or openid invalid; other errors still raise.
        """
        try:
            yield get("/sns/auth", {"access_token": access_token, "openid": openid}, auth=False)
        except (TokenInvalidError, InvalidOpenIDError):
            return False
        return True
