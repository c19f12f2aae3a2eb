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
        ├── ReplyLimitError          45047: customer-service sends after one interaction are used up
        ├── DuplicateClientMsgIdError 45065: a mass send with this clientmsgid exists (``.msg_id``)
        ├── RetryTooSoonError        45066: the same clientmsgid again within a minute
        ├── RetiredApiError          45103: WeChat retired the API (``.replacement`` names the new one)
        ├── TemplateDataError        47003: a template / notice value breaks WeChat's rules (also raised
        │                            locally, before the call; it is a ValueError too)
        ├── NoMenuError              46003
        ├── MatchRuleRefusedError    65320: a conditional menu rule uses a retired privacy field
        └── UnauthorizedApiError     48001 48004 50001 50002
            └── PublishUnauthorizedError  48001 from /cgi-bin/freepublish/*: publishing rights lost

Every ApiError carries ``errcode``, ``errmsg``, ``path``, the ``rid`` WeChat appends to errmsg (look it
up with ``wx.misc.get_rid``) and ``data``, the whole answer. The class for an answer comes from one table
(:data:`ERRORS`): each class lists its ``codes`` and, for a code that means something more precise on
some endpoints, the ``paths`` it applies to.

No message or repr ever contains the appsecret, a token or the AES key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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


_IP = re.compile(r"invalid ip\s+([0-9A-Fa-f.:]+)")
_RID = re.compile(r"rid:\s*([0-9A-Za-z-]+)")


class ApiError(WxMPError):
    """WeChat answered with a non-zero ``errcode``.

    ``errmsg`` is WeChat's text; ``rid`` the request id it usually ends with (``openapi/rid/get``
    explains it: ``wx.misc.get_rid(err.rid)``); ``path`` the endpoint without its query string;
    ``data`` the whole JSON answer (some errors carry more, e.g. 45065's ``msg_id``).
    """

    codes: ClassVar[frozenset[int]] = frozenset()
    #: Path prefixes this class is limited to (empty: any path).
    paths: ClassVar[tuple[str, ...]] = ()
    #: A sentence appended to the message, saying what to do.
    advice: ClassVar[str] = ""

    def __init__(
        self, errcode: int, errmsg: str = "", path: str = "", data: Mapping[str, Any] | None = None
    ) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path
        self.data: dict[str, Any] = dict(data) if data else {}
        where = f" ({path})" if path else ""
        advice = f": {self.advice}" if self.advice else ""
        super().__init__(f"[{errcode}] {errmsg}{where}{advice}")

    @property
    def rid(self) -> str | None:
        """The request id at the end of ``errmsg`` (``... rid: 6617a2b4-...``), if any."""
        found = _RID.search(self.errmsg)
        return found.group(1) if found else None

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errcode, self.errmsg, self.path, self.data))

    @staticmethod
    def from_response(
        errcode: int, errmsg: str = "", path: str = "", data: Mapping[str, Any] | None = None
    ) -> ApiError:
        """Build the most specific class of :data:`ERRORS` for ``errcode`` on ``path``."""
        for cls in ERRORS:
            if errcode in cls.codes and (not cls.paths or path.startswith(cls.paths)):
                return cls(errcode, errmsg, path, data)
        return ApiError(errcode, errmsg, path, data)


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
    """This server's IP is not in the account's API IP whitelist; ``ip`` is the one WeChat saw."""

    codes = frozenset({40164, 89503, 89506, 89507})

    @property
    def ip(self) -> str | None:
        """The caller IP WeChat names in errmsg (``invalid ip 203.0.113.7 ipv6 ..., not in whitelist``)."""
        found = _IP.search(self.errmsg)
        return found.group(1) if found else None


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


class PublishUnauthorizedError(UnauthorizedApiError):
    """``freepublish`` answered 48001: this account may not publish through the API.

    WeChat withdrew the publishing API from accounts that are not verified (and from some that were
    restricted); such an account can still create drafts, then publish them on mp.weixin.qq.com.
    """

    codes = frozenset({48001})
    paths = ("/cgi-bin/freepublish/",)
    advice = (
        "this account has no right to publish through the API (unverified or restricted accounts lost it); "
        "the draft exists: publish it by hand on mp.weixin.qq.com (内容管理 → 草稿箱)"
    )


class ReplyLimitError(ApiError):
    """45047: the customer-service sends one user interaction allows are used up.

    Since 2023-06 a user message allows 5 sends within 48 hours; a menu click, a follow or a QR
    scan allows 3 within a minute (developers.weixin.qq.com/doc/offiaccount/Message_Management/
    Service_Center_messages.html). Wait for the user's next message.
    """

    codes = frozenset({45047})


class DuplicateClientMsgIdError(ApiError):
    """45065: a mass job with this ``clientmsgid`` exists already; ``msg_id`` is that job's id.

    An idempotent retry can treat this as success and follow the existing job.
    """

    codes = frozenset({45065})

    @property
    def msg_id(self) -> int | None:
        """The existing job's msg_id (WeChat puts it next to errcode)."""
        try:
            return int(self.data["msg_id"])
        except (KeyError, TypeError, ValueError):
            return None


class RetryTooSoonError(ApiError):
    """45066: the same ``clientmsgid`` was sent again within a minute; wait and retry."""

    codes = frozenset({45066})


class RetiredApiError(ApiError):
    """45103: WeChat retired this API. ``replacement`` names its successor when there is one.

    wxmp raises it locally (no request) for endpoints it knows are gone, with the same errcode.
    """

    codes = frozenset({45103})

    def __init__(
        self,
        errcode: int = 45103,
        errmsg: str = "This API has been unsupported",
        path: str = "",
        data: Mapping[str, Any] | None = None,
        replacement: str | None = None,
    ) -> None:
        self.replacement = replacement if replacement is not None else (data or {}).get("replacement")
        if self.replacement and "replacement" not in (data or {}):
            data = {**(data or {}), "replacement": self.replacement}
        super().__init__(errcode, errmsg, path, data)


class TemplateDataError(ApiError, ValueError):
    """47003: a template-message or subscription-notice value breaks WeChat's rules.

    wxmp checks values before the call (``thing`` at most 20 characters, ``character_string`` 32,
    no line breaks...) and raises this with errcode 47003 and the field named, so the local and the
    remote refusal are caught alike.
    """

    codes = frozenset({47003})


class MatchRuleRefusedError(ApiError):
    """65320: a conditional menu's ``matchrule`` uses a field WeChat no longer accepts.

    Since the 2021-12 privacy changes only ``tag_id`` and ``client_platform_type`` remain; ``sex``,
    ``country``, ``province``, ``city`` and ``language`` are refused.
    """

    codes = frozenset({65320})


#: The one table: errcode (and path) -> class, most specific first.
ERRORS: tuple[type[ApiError], ...] = (
    PublishUnauthorizedError,
    SystemBusyError,
    TokenInvalidError,
    CredentialError,
    IPNotWhitelistedError,
    QuotaExceededError,
    InvalidOpenIDError,
    OutOfWindowError,
    ReplyLimitError,
    DuplicateClientMsgIdError,
    RetryTooSoonError,
    RetiredApiError,
    TemplateDataError,
    NoMenuError,
    MatchRuleRefusedError,
    UnauthorizedApiError,
)


def loggable(value: object, limit: int = 64) -> str:
    """A field from a push as a log line may show it: quoted (no raw newlines to forge lines with)
    and cut to ``limit`` characters (a signed push can still carry a megabyte in FromUserName)."""
    text = value if isinstance(value, str) else str(value)
    return repr(text[:limit]) + ("…" if len(text) > limit else "")
