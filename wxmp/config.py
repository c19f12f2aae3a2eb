"""Typed settings read once from ``app.config`` (``WXMP_*``) or keyword overrides, validated early."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal
from urllib.parse import urlsplit

from .errors import ConfigError

RefresherMode = Literal["thread", "external", "off"]
SlowStrategy = Literal["auto", "customer_service", "retries"]
SLOW_STRATEGIES: tuple[str, ...] = ("auto", "customer_service", "retries")

_AES_KEY_RE = re.compile(r"^[A-Za-z0-9]{43}$")
_APPID_RE = re.compile(r"wx[0-9A-Za-z]{16}")
#: WeChat waits 5 s per delivery and makes up to four (1 + 3 retries, WeChat's 接收普通消息 page,
#: developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html): a message
#: id must be remembered for at least the ~20 s those span, with margin for slow networks.
MIN_DEDUP_TTL = 30
#: A timestamp window shorter than this refuses genuine pushes from a server whose clock is a few
#: seconds off, and 0 refuses everything.
MIN_TIMESTAMP_WINDOW = 30
_PATH_RE = re.compile(r"^/[^?#\s]*$")

#: Every key with its default; ``init_app`` writes them into ``app.config`` with ``setdefault`` so
#: the effective configuration is visible there. ``WXMP_REFRESHER`` and ``WXMP_SANDBOX`` default to
#: None, meaning "decide from whether a secret is configured" (the sandbox also needs a development
#: app: see :meth:`Settings.from_mapping`).
DEFAULTS: dict[str, Any] = {
    "WXMP_APPID": None,
    "WXMP_SECRET": None,
    "WXMP_TOKEN": None,
    "WXMP_AES_KEY": None,
    "WXMP_API_BASE": "https://api.weixin.qq.com",
    "WXMP_CACHE": None,
    "WXMP_CALLBACK_PATH": "/wechat",
    "WXMP_STABLE_TOKEN": True,
    "WXMP_REFRESHER": None,
    "WXMP_REFRESH_MARGIN": 0.02,
    "WXMP_TIMEOUT": 5.0,
    "WXMP_EXTERNAL_WAIT": 5.0,
    "WXMP_TIMESTAMP_WINDOW": 300,
    "WXMP_MAX_BODY": 1 << 20,
    "WXMP_DEDUP": True,
    "WXMP_DEDUP_TTL": 300,
    "WXMP_SANDBOX": None,
    "WXMP_STATUS": False,
    "WXMP_STATUS_CHECK": None,
    "WXMP_STATUS_SECRET": None,
    "WXMP_ALLOW_PLAINTEXT": False,
    "WXMP_PUBLIC_URL": None,
    # -- slow handlers and sessions (wxmp.slow, wxmp.session) --
    "WXMP_SLOW_STRATEGY": "auto",
    "WXMP_SLOW_HOLDING_TEXT": "答案还在准备中，请稍后发送任意消息查看。",
    "WXMP_SLOW_KEYWORD": None,
    "WXMP_SLOW_WECHAT_TIMEOUT": 5.0,
    "WXMP_SLOW_MARGIN": 0.5,
    "WXMP_SLOW_ATTEMPTS": 3,
    "WXMP_SLOW_LEASE": 4.0,
    "WXMP_SLOW_RESULT_TTL": 172800,
    "WXMP_SLOW_WORKERS": 8,
    "WXMP_SESSION_TTL": 86400,
}


#: Keys read by the Flask adapter itself rather than by one account's settings.
APP_KEYS: tuple[str, ...] = ("WXMP_ACCOUNTS",)

#: WeChat's API; settings pointing elsewhere (a FakeWeChat, a proxy) keep their tokens apart.
WECHAT_API = "https://api.weixin.qq.com"


def check_keys(config: Mapping[str, Any], where: str = "") -> None:
    """Refuse ``WXMP_*`` keys wxmp does not know, with a "did you mean" (a typo must not pass silently)."""
    known = [*DEFAULTS, *APP_KEYS]
    for key in config:
        if isinstance(key, str) and key.startswith("WXMP_") and key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(sorted(known))}"
            raise ConfigError(where + key, "unknown setting" + hint)


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one app. Secrets are excluded from ``repr``."""

    appid: str | None = None
    secret: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    aes_key: str | None = field(default=None, repr=False)
    api_base: str = "https://api.weixin.qq.com"
    cache: Any = field(default=None, repr=False)  # a redis:// URL may carry a password
    callback_path: str = "/wechat"
    stable_token: bool = True
    refresher: RefresherMode = "off"
    refresh_margin: float = 0.02
    timeout: float = 5.0
    external_wait: float = 5.0
    timestamp_window: int = 300
    max_body: int = 1 << 20
    dedup: bool = True
    dedup_ttl: int = 300
    sandbox: bool = False
    status: bool = False
    status_check: Callable[[], bool] | None = field(default=None, repr=False)
    status_secret: str | None = field(default=None, repr=False)
    allow_plaintext: bool = False
    public_url: str | None = None
    # -- slow handlers and sessions (see wxmp.slow, wxmp.session) --
    slow_strategy: SlowStrategy = "auto"
    slow_holding_text: str = DEFAULTS["WXMP_SLOW_HOLDING_TEXT"]
    slow_keyword: str | None = None
    slow_wechat_timeout: float = 5.0
    slow_margin: float = 0.5
    slow_attempts: int = 3
    slow_lease: float = 4.0
    slow_result_ttl: int = 172800
    slow_workers: int = 8
    session_ttl: int = 86400

    @property
    def namespace(self) -> str:
        """The prefix of this account's keys in the shared cache: by appid, and by API host when it is
        not WeChat's (two configurations pointing at different servers must not share tokens)."""
        name = f"wxmp:{self.appid or '-'}"
        if self.api_base != WECHAT_API:
            name += "@" + urlsplit(self.api_base).netloc
        return name

    @property
    def can_fetch(self) -> bool:
        """True when this process may fetch tokens itself (it has the secret, not external)."""
        return bool(self.appid and self.secret) and self.refresher != "external"

    @classmethod
    def from_mapping(
        cls,
        config: Mapping[str, Any],
        overrides: Mapping[str, Any] | None = None,
        *,
        development: bool = False,
    ) -> Settings:
        """Validate ``WXMP_*`` keys of ``config`` (``overrides`` win, by key or lowercase name).

        ``WXMP_SANDBOX`` left unset (None) turns the sandbox on only when no secret is configured
        and ``development`` is true (``init_app`` passes ``app.debug or app.testing``): never by
        default in production.
        """
        check_keys(config)
        values = {**DEFAULTS, **{k: config[k] for k in DEFAULTS if k in config}}
        for name, value in (overrides or {}).items():
            key = name if name.startswith("WXMP_") else "WXMP_" + name.upper()
            if key not in DEFAULTS:
                check_keys({key: None})
                raise ConfigError(key, "unknown setting")
            values[key] = value
        return cls(**_validate(values, development))

    def store_defaults(self, config: MutableMapping[str, Any]) -> None:
        """Make the effective values visible in ``app.config`` without overwriting user keys."""
        for f in fields(self):
            config.setdefault("WXMP_" + f.name.upper(), getattr(self, f.name))


def _opt_str(values: Mapping[str, Any], key: str) -> str | None:
    value = values[key]
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, not {type(value).__name__}")
    # Pasted from the admin console or an .env file: surrounding blanks are never part of a value.
    return value.strip() or None


def _number(values: Mapping[str, Any], key: str, low: float, high: float) -> float:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be a number, not {type(value).__name__}")
    if not low <= value <= high:
        raise ConfigError(key, f"must be between {low} and {high}")
    return value


def _flag(value: Any) -> bool:
    """A boolean setting, also from an environment variable string ("0", "false", "off" are False)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _validate(values: Mapping[str, Any], development: bool = False) -> dict[str, Any]:
    appid = _opt_str(values, "WXMP_APPID")
    secret = _opt_str(values, "WXMP_SECRET")
    token = _opt_str(values, "WXMP_TOKEN")
    aes_key = _opt_str(values, "WXMP_AES_KEY")
    if token is not None and not re.fullmatch(r"[A-Za-z0-9]{3,32}", token):
        raise ConfigError("WXMP_TOKEN", "must be 3 to 32 letters or digits (as WeChat requires)")
    if aes_key is not None:
        if not _AES_KEY_RE.match(aes_key):
            odd = sorted({c for c in aes_key if not c.isascii() or not c.isalnum()})
            if odd:
                shown = " ".join(repr(c) for c in odd[:5])
                problem = f"may hold only letters and digits, found {shown}"
                if "=" in odd:
                    problem += " (WeChat's key has no '=' padding: copy the 43 characters as shown)"
            else:
                problem = f"must be 43 characters long, got {len(aes_key)} characters"
            raise ConfigError("WXMP_AES_KEY", problem)
        if appid is None:
            raise ConfigError("WXMP_APPID", "is required when WXMP_AES_KEY is set")
    if appid is not None and not _APPID_RE.fullmatch(appid):
        raise ConfigError("WXMP_APPID", "must be 'wx' followed by 16 letters or digits (开发 > 基本配置)")
    if secret is not None and appid is None:
        raise ConfigError("WXMP_APPID", "is required when WXMP_SECRET is set")
    api_base = _opt_str(values, "WXMP_API_BASE") or DEFAULTS["WXMP_API_BASE"]
    if not api_base.startswith(("http://", "https://")):
        raise ConfigError("WXMP_API_BASE", "must start with http:// or https://")
    path = _opt_str(values, "WXMP_CALLBACK_PATH") or "/wechat"
    if not _PATH_RE.match(path):
        raise ConfigError("WXMP_CALLBACK_PATH", "must be a path starting with /")

    mode = values["WXMP_REFRESHER"]
    if mode is None:
        mode = "thread" if secret else "off"
    elif mode is False or mode == "off":
        mode = "off"
    elif mode is True:
        mode = "thread"
    if mode not in ("thread", "external", "off"):
        raise ConfigError("WXMP_REFRESHER", f"must be 'thread', 'external' or False, not {mode!r}")
    if mode == "thread" and not secret:
        raise ConfigError("WXMP_REFRESHER", "'thread' needs WXMP_SECRET (or use 'external')")
    if mode == "external" and appid is None:
        raise ConfigError("WXMP_APPID", "is required when WXMP_REFRESHER is 'external'")

    sandbox = values["WXMP_SANDBOX"]
    if sandbox is None:
        sandbox = development and secret is None
    elif isinstance(sandbox, str):  # from an environment variable
        sandbox = sandbox.strip().lower() in ("1", "true", "yes", "on")
    check = values["WXMP_STATUS_CHECK"]
    if check is not None and not callable(check):
        raise ConfigError("WXMP_STATUS_CHECK", "must be a callable returning True to allow access")
    status_secret = _opt_str(values, "WXMP_STATUS_SECRET")
    if status_secret is not None and len(status_secret) < 16:
        raise ConfigError("WXMP_STATUS_SECRET", "must be at least 16 characters (a random bearer secret)")
    status = _flag(values["WXMP_STATUS"])
    if status and not (development or sandbox) and check is None and status_secret is None:
        raise ConfigError(
            "WXMP_STATUS",
            "outside debug/testing the status page needs a guard: WXMP_STATUS_CHECK (a callable) or "
            "WXMP_STATUS_SECRET (a bearer secret); behind a proxy every visitor looks like loopback",
        )
    if sandbox and secret is not None:
        raise ConfigError(
            "WXMP_SANDBOX",
            "the sandbox answers API calls with a local fake WeChat and cannot run beside a real "
            "WXMP_SECRET: unset WXMP_SECRET (or WXMP_SANDBOX) in this configuration",
        )
    public_url = _opt_str(values, "WXMP_PUBLIC_URL")
    if public_url is not None and not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", public_url):
        raise ConfigError("WXMP_PUBLIC_URL", "must be the site's base URL, e.g. https://example.com")

    return {
        "appid": appid,
        "secret": secret,
        "token": token,
        "aes_key": aes_key,
        "api_base": api_base.rstrip("/"),
        "cache": values["WXMP_CACHE"],
        "callback_path": path,
        "stable_token": bool(values["WXMP_STABLE_TOKEN"]),
        "refresher": mode,
        "refresh_margin": _number(values, "WXMP_REFRESH_MARGIN", 0.0, 0.5),
        "timeout": _number(values, "WXMP_TIMEOUT", 0.1, 120),
        "external_wait": _number(values, "WXMP_EXTERNAL_WAIT", 0, 600),
        "timestamp_window": int(_number(values, "WXMP_TIMESTAMP_WINDOW", MIN_TIMESTAMP_WINDOW, 86400 * 365)),
        "max_body": int(_number(values, "WXMP_MAX_BODY", 1024, 1 << 30)),
        "dedup": bool(values["WXMP_DEDUP"]),
        "dedup_ttl": int(_number(values, "WXMP_DEDUP_TTL", MIN_DEDUP_TTL, 86400)),
        "sandbox": bool(sandbox),
        "status": status,
        "status_check": check,
        "status_secret": status_secret,
        "allow_plaintext": _flag(values["WXMP_ALLOW_PLAINTEXT"]),
        "public_url": public_url.rstrip("/") if public_url else None,
        **_validate_slow(values),
    }


def slow_strategy(key: str, value: Any) -> SlowStrategy:
    """A slow-handler strategy name (``"customer-service"`` is accepted for ``"customer_service"``)."""
    name = value.strip().lower().replace("-", "_") if isinstance(value, str) else value
    if name not in SLOW_STRATEGIES:
        raise ConfigError(key, f"must be one of {', '.join(SLOW_STRATEGIES)}, not {value!r}")
    return name  # type: ignore[return-value]


def _validate_slow(values: Mapping[str, Any]) -> dict[str, Any]:
    """The slow-handler and session keys (wxmp.slow, wxmp.session)."""
    holding = values["WXMP_SLOW_HOLDING_TEXT"]
    if not isinstance(holding, str) or not holding.strip():
        raise ConfigError("WXMP_SLOW_HOLDING_TEXT", "must be a non-empty text")
    keyword = _opt_str(values, "WXMP_SLOW_KEYWORD")
    timeout = _number(values, "WXMP_SLOW_WECHAT_TIMEOUT", 0.2, 60)
    margin = _number(values, "WXMP_SLOW_MARGIN", 0.0, 10)
    if margin >= timeout:
        raise ConfigError("WXMP_SLOW_MARGIN", "must be smaller than WXMP_SLOW_WECHAT_TIMEOUT")
    return {
        "slow_strategy": slow_strategy("WXMP_SLOW_STRATEGY", values["WXMP_SLOW_STRATEGY"]),
        "slow_holding_text": holding,
        "slow_keyword": keyword,
        "slow_wechat_timeout": timeout,
        "slow_margin": margin,
        "slow_attempts": int(_number(values, "WXMP_SLOW_ATTEMPTS", 1, 10)),
        "slow_lease": _number(values, "WXMP_SLOW_LEASE", 0.2, 600),
        "slow_result_ttl": int(_number(values, "WXMP_SLOW_RESULT_TTL", 10, 30 * 86400)),
        "slow_workers": int(_number(values, "WXMP_SLOW_WORKERS", 1, 256)),
        "session_ttl": int(_number(values, "WXMP_SESSION_TTL", 1, 365 * 86400)),
    }


#: One line per key of :data:`DEFAULTS` saying what it does; the documentation's configuration table
#: is rendered from ``DEFAULTS`` and this mapping (``docs/hooks/config_table.py``), so they cannot drift.
DOCS: dict[str, str] = {
    "WXMP_APPID": "The account's AppID (`wx` + 16 characters).",
    "WXMP_SECRET": "The AppSecret. Without it the callback still works, but no token is fetched in this "
    "process and no refresher starts.",
    "WXMP_TOKEN": "The server-configuration Token (3 to 32 letters or digits) that signs WeChat's pushes; "
    "required for the callback.",
    "WXMP_AES_KEY": "The 43-character EncodingAESKey: enables compatible and safe mode (needs `WXMP_APPID`).",
    "WXMP_API_BASE": "Where API calls go; tests point it at a `FakeWeChat`.",
    "WXMP_CACHE": "Where the token, the refresh lock and the dedup marks live: a cachelib cache, "
    '`"filesystem:PATH"`, `"redis://..."`, `"memcached://host:port[,host:port]"` or `"simple"` (one '
    "process). Unset: a filesystem cache in the instance folder, shared by one host's processes.",
    "WXMP_CALLBACK_PATH": "The path WeChat posts to.",
    "WXMP_STABLE_TOKEN": "`True`: `POST /cgi-bin/stable_token`; `False`: the classic `GET /cgi-bin/token`.",
    "WXMP_REFRESHER": '`"thread"` (the default with a secret): a refresher thread per process; '
    '`"external"`: never fetch, read what `flask wxmp refresher` keeps in the cache; `False`: lazy only.',
    "WXMP_REFRESH_MARGIN": "Fraction of the token's lifetime refreshed ahead of expiry (144 s of 2 hours).",
    "WXMP_TIMEOUT": "HTTP timeout for calls to WeChat, in seconds.",
    "WXMP_EXTERNAL_WAIT": "Seconds an external-mode worker waits for the refresher's token.",
    "WXMP_TIMESTAMP_WINDOW": "Seconds a signed timestamp may be off, either way, before the push is refused.",
    "WXMP_MAX_BODY": "Callback body cap in bytes (413 beyond it).",
    "WXMP_DEDUP": "Deduplicate WeChat's retries on the shared cache.",
    "WXMP_DEDUP_TTL": "Seconds a message id and its reply are remembered for dedup.",
    "WXMP_SANDBOX": "The local sandbox chat page. Unset: on only without a secret, in a debug or testing "
    "app.",
    "WXMP_STATUS": "The status page at `/wxmp/status`.",
    "WXMP_STATUS_CHECK": "A callable returning `True` to allow the status page; unset: direct loopback only.",
    "WXMP_STATUS_SECRET": "A bearer secret (16+ characters) that opens the status page "
    "(`Authorization: Bearer ...`); outside debug/testing the page needs it or `WXMP_STATUS_CHECK`.",
    "WXMP_ALLOW_PLAINTEXT": "With an AES key set, also accept unencrypted pushes (only while migrating "
    "from plaintext mode; logs a warning at start). Off: such pushes are refused.",
    "WXMP_PUBLIC_URL": "The site's public base URL (`https://example.com`), used for OAuth redirect URIs "
    "instead of the request's Host header.",
    "WXMP_SLOW_STRATEGY": "What a slow handler (`@wx.on(..., slow=True)`) does when it misses "
    "WeChat's deadline: `auto` (customer service when the account can call that"
    " API, else retries), `customer_service` or `retries`.",
    "WXMP_SLOW_HOLDING_TEXT": "The answer to WeChat's last expected delivery when a slow handler's "
    "result is not ready (strategy `retries`); the result is kept for the "
    "user's next message.",
    "WXMP_SLOW_KEYWORD": "Only this text fetches a kept slow result (None: the user's next message, "
    "whatever it says).",
    "WXMP_SLOW_WECHAT_TIMEOUT": "How long WeChat waits for an answer per delivery (5 s; tests use a "
    "shorter one).",
    "WXMP_SLOW_MARGIN": "A slow handler's result is answered passively if ready this many seconds "
    "before WeChat's deadline.",
    "WXMP_SLOW_ATTEMPTS": "How many deliveries WeChat is expected to make for one message (3).",
    "WXMP_SLOW_LEASE": "Seconds a slow job's claim lasts without renewal: a killed worker's job can "
    "be rerun after it.",
    "WXMP_SLOW_RESULT_TTL": "How long slow results (and results kept for the next message) live in "
    "the shared cache.",
    "WXMP_SLOW_WORKERS": "Threads of the default in-process pool that runs slow handlers, per process.",
    "WXMP_SESSION_TTL": "Lifetime of a conversation (`msg.session`) since its last change, in seconds.",
    "WXMP_ACCOUNTS": 'More accounts: `{"shop": {"appid": ..., "token": ...}}`. Each has its own callback '
    "path (default `/wechat/<name>`), handlers and appid-namespaced token, and inherits the other, "
    "non-credential keys.",
}
