"""wxmp: WeChat Official Account (微信公众号) servers, on Flask or without it.

One access_token for a whole fleet of processes and hosts, a hardened callback endpoint, and
typed helpers for the API a real account uses. :class:`Account` is the framework-free core;
:class:`WxMP` (imported lazily, so ``import wxmp`` does not import Flask) is the Flask adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import signals
from .account import Account
from .cache import CacheUnavailable, SharedStore
from .client import ApiClient
from .config import Settings
from .dispatch import Router
from .errors import (
    ApiError,
    CallbackError,
    ConfigError,
    CredentialError,
    DecryptError,
    DuplicateClientMsgIdError,
    InvalidOpenIDError,
    IPNotWhitelistedError,
    MatchRuleRefusedError,
    NetworkError,
    NoMenuError,
    OutOfWindowError,
    ParseError,
    PublishUnauthorizedError,
    QuotaExceededError,
    ReplyLimitError,
    RetiredApiError,
    RetryTooSoonError,
    SignatureError,
    SystemBusyError,
    TemplateDataError,
    TokenInvalidError,
    TokenUnavailableError,
    UnauthorizedApiError,
    WxMPError,
)
from .messages import Event, Message
from .middleware import Callback
from .replies import (
    Article,
    EmptyReply,
    ImageReply,
    MusicReply,
    NewsReply,
    Reply,
    SuccessReply,
    TextReply,
    TransferCustomerServiceReply,
    VideoReply,
    VoiceReply,
)
from .token import TokenManager, mask

if TYPE_CHECKING:
    from .extension import AppState, WxMP

__version__ = "0.1.0"

__all__ = [
    "Account",
    "ApiClient",
    "ApiError",
    "AppState",
    "Article",
    "CacheUnavailable",
    "Callback",
    "CallbackError",
    "ConfigError",
    "CredentialError",
    "DecryptError",
    "DuplicateClientMsgIdError",
    "EmptyReply",
    "Event",
    "IPNotWhitelistedError",
    "ImageReply",
    "InvalidOpenIDError",
    "MatchRuleRefusedError",
    "Message",
    "MusicReply",
    "NetworkError",
    "NewsReply",
    "NoMenuError",
    "OutOfWindowError",
    "ParseError",
    "PublishUnauthorizedError",
    "QuotaExceededError",
    "Reply",
    "ReplyLimitError",
    "RetiredApiError",
    "RetryTooSoonError",
    "Router",
    "Settings",
    "SharedStore",
    "SignatureError",
    "SuccessReply",
    "SystemBusyError",
    "TemplateDataError",
    "TextReply",
    "TokenInvalidError",
    "TokenManager",
    "TokenUnavailableError",
    "TransferCustomerServiceReply",
    "UnauthorizedApiError",
    "VideoReply",
    "VoiceReply",
    "WxMP",
    "WxMPError",
    "__version__",
    "mask",
    "signals",
]


def __getattr__(name: str) -> Any:
    # The Flask adapter is imported on first use: scripts, Celery tasks and ASGI apps that only
    # need Account never import Flask.
    if name in ("WxMP", "AppState"):
        from . import extension

        return getattr(extension, name)
    raise AttributeError(f"module 'wxmp' has no attribute {name!r}")
