"""Web authorisation (网页授权): ``wx.oauth`` (``/sns/*``).

These calls use the *per-user* web access_token that :meth:`OAuthAPI.exchange` returns, never the
account's shared token: the client sends them with ``auth=False``, and ``exchange``/``refresh``
carry the appid (and secret) from the settings.

The flow, safely (login CSRF: without a ``state`` bound to this browser, a code obtained in
someone else's flow would log this session in as them)::

    @app.get("/login")
    def login():
        state = new_state(session)                        # random, remembered in this session
        return redirect(wx.oauth.authorize_url("/auth/wechat", state=state))  # WXMP_PUBLIC_URL + path

    @app.get("/auth/wechat")
    def callback():
        if not check_state(session, request.args.get("state")):   # single use, expires
            abort(400)
        grant = wx.oauth.exchange(request.args["code"])
        session["openid"] = grant["openid"]
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import quote

from ..client import Plan
from ..errors import ConfigError, InvalidOpenIDError, TokenInvalidError
from ._base import ApiGroup, get, plan

__all__ = ["OAuthAPI", "check_state", "new_state"]

AUTHORIZE_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"
SCOPES = ("snsapi_base", "snsapi_userinfo")
_STATE = re.compile(r"[A-Za-z0-9]{0,128}")
#: Where :func:`new_state` keeps a session's pending states: ``[[state, issued_at], ...]``.
STATE_KEY = "wxmp_oauth_states"
#: A state is good for this long (a user who leaves the consent page open longer starts again),
#: and a session keeps at most this many pending (several tabs).
STATE_MAX_AGE = 600
STATE_MAX_PENDING = 5


def new_state(session: MutableMapping[str, Any], *, now: float | None = None) -> str:
    """A fresh random ``state`` for :meth:`OAuthAPI.authorize_url`, remembered in ``session``.

    ``session`` is the user's session (``flask.session`` or any mutable mapping stored per
    browser). 32 hex characters: within WeChat's limit of 128 letters and digits.
    """
    now = time.time() if now is None else now
    state = secrets.token_hex(16)
    pending = [p for p in _pending(session) if now - p[1] < STATE_MAX_AGE][-(STATE_MAX_PENDING - 1) :]
    session[STATE_KEY] = [*pending, [state, now]]
    return state


def check_state(session: MutableMapping[str, Any], state: Any, *, now: float | None = None) -> bool:
    """True if ``state`` (the redirect's ``state`` argument) was issued to this session and is fresh.

    Each state is good once: it is removed whether or not it matched in time.
    """
    now = time.time() if now is None else now
    if not isinstance(state, str) or not state:
        return False
    given = state.encode("utf-8")
    pending = _pending(session)
    for entry in pending:
        if hmac.compare_digest(entry[0].encode("utf-8"), given):
            session[STATE_KEY] = [p for p in pending if p is not entry]  # reassigned: the session saves it
            return now - entry[1] < STATE_MAX_AGE
    return False


def _pending(session: MutableMapping[str, Any]) -> list[list[Any]]:
    """The session's pending states, ignoring anything malformed (a session is user-controlled input
    when it is not signed)."""
    value = session.get(STATE_KEY)
    if not isinstance(value, list):
        return []
    return [
        p
        for p in value
        if isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], (int, float))
    ]


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

    def authorize_url(
        self,
        redirect_uri: str,
        scope: str = "snsapi_base",
        state: str = "",
        *,
        force_popup: bool = False,
        force_snapshot: bool = False,
    ) -> str:
        """The link that starts web authorisation (``open.weixin.qq.com/connect/oauth2/authorize``).

        WeChat checks the link strictly: parameters in this order and the ``#wechat_redirect``
        suffix (developers.weixin.qq.com/doc/offiaccount/OA_Web_Apps/Wechat_webpage_authorization.html).
        ``state`` is up to 128 letters and digits: give the one
        :func:`new_state` made for this session. A ``redirect_uri`` starting with ``/`` is joined
        to ``WXMP_PUBLIC_URL`` (never to the request's Host header, which the client chooses).
        ``force_popup``
        adds ``forcePopup=true`` (ask the user even where WeChat would authorise silently);
        ``force_snapshot`` adds ``forceSnapShot=true`` (show the snapshot page, whose user is
        virtual: see ``is_snapshotuser`` in :meth:`exchange`). Both are documented on
        developers.weixin.qq.com/doc/offiaccount/OA_Web_Apps/Wechat_webpage_authorization.html.
        """
        if redirect_uri.startswith("/"):
            redirect_uri = self.redirect_uri(redirect_uri)
        if scope not in SCOPES:
            raise ValueError(f"scope {scope!r}: one of {', '.join(SCOPES)}")
        if not _STATE.fullmatch(state):
            raise ValueError("state: up to 128 characters from [A-Za-z0-9]")
        extra = "&forcePopup=true" if force_popup else ""
        extra += "&forceSnapShot=true" if force_snapshot else ""
        return (
            f"{AUTHORIZE_URL}?appid={self._appid()}&redirect_uri={quote(redirect_uri, safe='')}"
            f"&response_type=code&scope={scope}&state={state}{extra}#wechat_redirect"
        )

    def redirect_uri(self, path: str) -> str:
        """``WXMP_PUBLIC_URL`` + ``path``: the absolute callback address for :meth:`authorize_url`."""
        base = self.settings.public_url
        if not base:
            raise ConfigError(
                "WXMP_PUBLIC_URL",
                "set it to the site's address as browsers reach it (e.g. https://example.com) to build "
                "redirect_uri from a path; the request's Host header is chosen by the client",
            )
        if not path.startswith("/"):
            raise ValueError("path must start with /")
        return base + path

    def exchange(self, code: str) -> dict[str, Any]:
        """Trade the redirect's ``code`` for a per-user web token: ``GET /sns/oauth2/access_token``.

        Returns ``{access_token, expires_in, refresh_token, openid, scope, unionid?,
        is_snapshotuser}``; uses the appid and secret, not the shared access_token. ``unionid``
        comes only with ``snsapi_userinfo``. ``is_snapshotuser`` is always present here (WeChat
        sends it only when it is 1): 1 means the page was opened as a snapshot (since 2022-07) and
        the openid belongs to a virtual user, not a real follower; ask the user to open the page
        for real before trusting it.
        """
        params = {
            "appid": self._appid(),
            "secret": self._secret(),
            "code": code,
            "grant_type": "authorization_code",
        }
        return self.client.get("/sns/oauth2/access_token", params, auth=False, then=_with_snapshot_flag)

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


def _with_snapshot_flag(grant: dict[str, Any]) -> dict[str, Any]:
    # WeChat sends is_snapshotuser only when it is 1
    # (developers.weixin.qq.com/doc/offiaccount/OA_Web_Apps/Wechat_webpage_authorization.html)
    grant.setdefault("is_snapshotuser", 0)
    return grant
