"""wxmp: WeChat Official Account (微信公众号) servers on Flask.

One access_token for a whole fleet of processes and hosts, a hardened callback endpoint, and
typed helpers for the API a real account uses.
"""

from __future__ import annotations

from .cache import CacheUnavailable, SharedStore
from .client import ApiClient
from .config import Settings
from .errors import (
    ApiError,
    CallbackError,
    ConfigError,
    CredentialError,
    DecryptError,
    InvalidOpenIDError,
    IPNotWhitelistedError,
    NetworkError,
    NoMenuError,
    OutOfWindowError,
    ParseError,
    QuotaExceededError,
    SignatureError,
    SystemBusyError,
    TokenInvalidError,
    TokenUnavailableError,
    UnauthorizedApiError,
    WxMPError,
)
from .extension import AppState, WxMP
from .token import TokenManager, mask

__version__ = "0.1.0"

__all__ = [
    "ApiClient",
    "ApiError",
    "AppState",
    "CacheUnavailable",
    "CallbackError",
    "ConfigError",
    "CredentialError",
    "DecryptError",
    "IPNotWhitelistedError",
    "InvalidOpenIDError",
    "NetworkError",
    "NoMenuError",
    "OutOfWindowError",
    "ParseError",
    "QuotaExceededError",
    "Settings",
    "SharedStore",
    "SignatureError",
    "SystemBusyError",
    "TokenInvalidError",
    "TokenManager",
    "TokenUnavailableError",
    "UnauthorizedApiError",
    "WxMP",
    "WxMPError",
    "__version__",
    "mask",
]

# --- callback exports ---
from .dispatch import Router
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

__all__ += [
    "Article",
    "Callback",
    "EmptyReply",
    "Event",
    "ImageReply",
    "Message",
    "MusicReply",
    "NewsReply",
    "Reply",
    "Router",
    "SuccessReply",
    "TextReply",
    "TransferCustomerServiceReply",
    "VideoReply",
    "VoiceReply",
]
__all__.sort()
# --- end callback exports ---
