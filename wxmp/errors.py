"""Exceptions raised by wxmp.

The tree::

    WxMPError
    ├── ConfigError                  a WXMP_* setting is missing or wrong (names the key)
    ├── NetworkError                 timeout, refused connection, 5xx: no errcode came back
    ├── TokenUnavailableError        external refresher mode and no valid token in the cache
    ├── CacheUnavailable             the shared cache did not answer (or failed moments ago)
    ├── CallbackError                inbound request refused
    │   ├── SignatureError           bad signature / msg_signature / stale timestamp (HTTP 403)
    │   ├── DecryptError             wrong AES key, bad padding, foreign appid (HTTP 400)
    │   └── ParseError               malformed or hostile XML (HTTP 400)
    └── ApiError(errcode, errmsg, path)
        ├── SystemBusyError          -1
        ├── TokenInvalidError        40001 40014 42001 (recovered once automatically)
        ├── CredentialError          40002 40013 40125: wrong appid or secret
        ├── IPNotWhitelistedError    40164 89503 89506 89507
        ├── QuotaExceededError       45009 (and 45011 frequency limit)
        ├── InvalidOpenIDError       40003
        ├── OutOfWindowError         45015: the 48-hour customer-service window is closed
        ├── NoMenuError              46003
        └── UnauthorizedApiError     48001 48004 50001 50002

No message or repr ever contains the appsecret, a token or the AES key.
"""

from __future__ import annotations

from typing import Any, ClassVar


class WxMPError(Exception):
    """Root of every error wxmp raises."""


class ConfigError(WxMPError, ValueError):
    """A configuration key is missing or invalid; ``key`` names it."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


class NetworkError(WxMPError):
    """The WeChat API could not be reached or answered without a JSON errcode."""

    def __init__(self, path: str, reason: str, status: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.status = status
        super().__init__(f"{path}: {reason}")


class TokenUnavailableError(WxMPError):
    """No valid token could be obtained (external mode, or fetching is backing off)."""


class CacheUnavailable(WxMPError):
    """The shared cache backend did not answer (Redis down, memcached unreachable, folder not writable)."""


class CallbackError(WxMPError):
    """An inbound callback request was refused; ``status`` is the HTTP answer."""

    status: ClassVar[int] = 400


class SignatureError(CallbackError):
    """The request's signature, msg_signature or timestamp does not check out."""

    status = 403


class DecryptError(CallbackError):
    """The encrypted body could not be decrypted with our key, or is not for our appid."""


class ParseError(CallbackError):
    """The body is not acceptable XML (malformed, hostile or too large)."""


class ApiError(WxMPError):
    """WeChat answered with a non-zero ``errcode``.

    ``errmsg`` is WeChat's text (it often ends in ``rid: ...``, which ``openapi/rid/get`` explains);
    ``path`` is the endpoint without its query string.
    """

    codes: ClassVar[frozenset[int]] = frozenset()

    def __init__(self, errcode: int, errmsg: str = "", path: str = "") -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path
        where = f" ({path})" if path else ""
        super().__init__(f"[{errcode}] {errmsg}{where}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errcode, self.errmsg, self.path))

    @staticmethod
    def from_response(errcode: int, errmsg: str = "", path: str = "") -> ApiError:
        """Build the most specific subclass for ``errcode``."""
        cls = _BY_CODE.get(errcode, ApiError)
        return cls(errcode, errmsg, path)


class SystemBusyError(ApiError):
    """WeChat is busy (-1); retry later."""

    codes = frozenset({-1})


class TokenInvalidError(ApiError):
    """The access_token was rejected: invalid, not the latest, or expired."""

    codes = frozenset({40001, 40014, 42001})


class CredentialError(ApiError):
    """The appid or appsecret is wrong; fix WXMP_APPID / WXMP_SECRET."""

    codes = frozenset({40002, 40013, 40125})


class IPNotWhitelistedError(ApiError):
    """This server's IP is not in the account's API IP whitelist."""

    codes = frozenset({40164, 89503, 89506, 89507})


class QuotaExceededError(ApiError):
    """A daily API quota or frequency limit was reached."""

    codes = frozenset({45009, 45011})


class InvalidOpenIDError(ApiError):
    """The openid is not a follower of this account."""

    codes = frozenset({40003})


class OutOfWindowError(ApiError):
    """The user has not interacted within 48 hours; customer-service messages are refused."""

    codes = frozenset({45015})


class NoMenuError(ApiError):
    """The account has no menu."""

    codes = frozenset({46003})


class UnauthorizedApiError(ApiError):
    """The account is not allowed to call this API."""

    codes = frozenset({48001, 48004, 50001, 50002})


_BY_CODE: dict[int, type[ApiError]] = {
    code: cls
    for cls in (
        SystemBusyError,
        TokenInvalidError,
        CredentialError,
        IPNotWhitelistedError,
        QuotaExceededError,
        InvalidOpenIDError,
        OutOfWindowError,
        NoMenuError,
        UnauthorizedApiError,
    )
    for code in cls.codes
}
