"""ApiClient: the one request layer under every helper.

One pooled ``requests.Session`` with a default timeout; JSON bodies sent as raw UTF-8 (WeChat
answers 40033 to ``\\uXXXX`` escapes in menus); responses decoded whatever their Content-Type;
a non-zero ``errcode`` raised as :class:`~wxmp.errors.ApiError` (or the subclass for its family);
an invalid-token answer recovered once through the :class:`~wxmp.token.TokenManager`. The token
travels in the query string and never appears in an exception or a log line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import requests

from . import signals
from .errors import ApiError, NetworkError, TokenInvalidError
from .token import TokenManager

__all__ = ["ApiClient"]

log = logging.getLogger("wxmp.api")

#: Query parameters whose values are secrets: the account's token, secret and tickets, and a user's
#: OAuth ``code`` and ``refresh_token`` (30 days, usable with only the public appid) — a per-user
#: web access_token is an ``access_token`` too. Only whole parameter names match (not ``errcode=``).
_SECRET_QUERY = re.compile(
    r"(?<![A-Za-z0-9_])((?:access_token|refresh_token|secret|appsecret|ticket|jsapi_ticket|code)=)[^&\s\"']+"
)


def redact(text: str) -> str:
    """Replace token, secret and OAuth code values in URLs with ``***``."""
    return _SECRET_QUERY.sub(r"\1***", text)


class _RedactFilter(logging.Filter):
    """urllib3 logs request URLs at DEBUG; ours carry the token (and, for /token, the secret)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactFilter())

_CLIENTS: weakref.WeakSet[ApiClient] = weakref.WeakSet()


def _reset_sessions_after_fork() -> None:
    # Pooled sockets copied from the parent must not be shared with it.
    for client in list(_CLIENTS):
        client._session_local = threading.local()


os.register_at_fork(after_in_child=_reset_sessions_after_fork)


class ApiClient:
    """HTTP, JSON, errors and the token for every WeChat API call."""

    def __init__(
        self,
        base: str,
        *,
        timeout: float = 5.0,
        token: TokenManager | None = None,
        sender: object | None = None,
        user_agent: str = "wxmp",
    ) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.token = token
        self.sender = sender
        self.user_agent = user_agent
        self._session_local = threading.local()
        _CLIENTS.add(self)

    def __repr__(self) -> str:
        return f"<ApiClient {self.base}>"

    @property
    def session(self) -> requests.Session:
        """A pooled session (one per thread: requests.Session is not documented thread-safe)."""
        session = getattr(self._session_local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = self.user_agent
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._session_local.session = session
        return session

    # -- verbs --------------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.request("GET", path, params=params, **kw)

    def post(self, path: str, json: Any = None, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.request("POST", path, params=params, json=json, **kw)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        auth: bool = True,
        binary: bool = False,
        base: str | None = None,
    ) -> Any:
        """Call ``path`` and return the decoded JSON (or bytes when ``binary`` and not JSON).

        ``auth`` adds ``access_token`` from the shared TokenManager; if WeChat rejects it
        (40001/40014/42001) the token is compare-and-refreshed and the call replayed once.
        """
        token = self._token() if auth else None
        result = self._call(method, path, params, json, data, files, token, binary, base)
        errcode = _errcode(result)
        if errcode in TokenInvalidError.codes and token is not None and self.token is not None:
            token = self.token.invalidate(token)
            result = self._call(method, path, params, json, data, files, token, binary, base)
            errcode = _errcode(result)
        if errcode:
            errmsg = str(result.get("errmsg", ""))
            if signals.api_error.receivers:
                signals.api_error.send(self.sender, errcode=errcode, errmsg=errmsg, path=path)
            raise ApiError.from_response(errcode, errmsg, path, result)
        return result

    # -- tokens -------------------------------------------------------------------------------

    def fetch_access_token(self, appid: str, secret: str, *, stable: bool, force: bool) -> tuple[str, int]:
        """Fetch a token from ``/cgi-bin/stable_token`` (POST JSON) or ``/cgi-bin/token`` (GET)."""
        if stable:
            body: dict[str, Any] = {"grant_type": "client_credential", "appid": appid, "secret": secret}
            if force:
                body["force_refresh"] = True
            result = self.request("POST", "/cgi-bin/stable_token", json=body, auth=False)
        else:
            params = {"grant_type": "client_credential", "appid": appid, "secret": secret}
            result = self.request("GET", "/cgi-bin/token", params=params, auth=False)
        try:
            return str(result["access_token"]), int(result["expires_in"])
        except (KeyError, TypeError, ValueError):
            raise NetworkError("/cgi-bin/token", "answer without access_token/expires_in")

    # -- internals ----------------------------------------------------------------------------

    def _token(self) -> str | None:
        if self.token is None:
            return None
        return self.token.get()

    def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        payload: Any,
        data: Mapping[str, Any] | None,
        files: Mapping[str, Any] | None,
        token: str | None,
        binary: bool,
        base: str | None,
    ) -> Any:
        query: dict[str, Any] = {}
        if token is not None:
            query["access_token"] = token
        if params:
            query.update({k: v for k, v in params.items() if v is not None})
        headers = {}
        body: Any = data
        if payload is not None:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json; charset=utf-8"
        url = (base or self.base) + path
        try:
            response = self.session.request(
                method, url, params=query, data=body, files=files, headers=headers, timeout=self.timeout
            )
        except requests.Timeout:
            raise NetworkError(path, f"timed out after {self.timeout}s") from None
        except requests.RequestException as exc:
            raise NetworkError(path, f"connection failed ({type(exc).__name__})") from None
        return _decode(response, path, binary)


def _errcode(result: Any) -> int:
    if not isinstance(result, dict):
        return 0
    try:
        return int(result.get("errcode") or 0)
    except (TypeError, ValueError):
        return 0


def _decode(response: requests.Response, path: str, binary: bool) -> Any:
    content = response.content
    head = content.lstrip()[:1]
    if head in (b"{", b"["):
        try:
            # strict=False: WeChat sometimes puts raw control characters inside strings.
            return json.loads(content.decode("utf-8", "replace"), strict=False)
        except ValueError:
            if not binary:
                raise NetworkError(path, "malformed JSON answer", response.status_code) from None
    if response.status_code >= 400:
        raise NetworkError(path, f"HTTP {response.status_code}", response.status_code)
    if binary:
        return content
    raise NetworkError(
        path, f"unexpected non-JSON answer (HTTP {response.status_code})", response.status_code
    )
