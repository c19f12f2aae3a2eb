"""The status page: ``/wxmp/status`` (HTML) and ``/wxmp/status.json``.

Off unless ``WXMP_STATUS`` is true. Access needs an explicit guard in production:

- ``WXMP_STATUS_CHECK``: a callable (called inside the request, so it may read ``flask.request`` or
  ``flask_login.current_user``) returning True to allow;
- ``WXMP_STATUS_SECRET``: a bearer secret (``Authorization: Bearer <secret>``), compared in
  constant time. With both set, both must pass.

Without either, the app must be in debug or testing mode (or run the sandbox, which has no real
credentials; production configurations without a guard are refused at start with ConfigError),
and only *direct local* requests are served: ``REMOTE_ADDR`` is loopback, no proxy header
(``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``) and a ``Host`` of ``localhost``, 127.0.0.1 or
[::1]. ``REMOTE_ADDR`` alone proves nothing behind a proxy that adds no header (every visitor is
"loopback" then), and a foreign ``Host`` on a loopback connection is a DNS-rebinding page. Everything
else gets 403.

It shows the access_token's masked prefix, age, time to expiry and who fetched it (host, pid),
fetches today against the 2000-a-day quota, recent API errors by errcode, callback counters
(messages by type, replies, dedup hits, refused signatures, handler failures) and the cache
backend. Counters are kept per process by receivers on the :mod:`wxmp.signals` (a dict increment
under a lock per event); they start when the app starts. Their keys are bounded: message kinds
wxmp knows (every MsgType and event of :mod:`wxmp.messages`) and ``other`` for the rest, at most
``MAX_ERRCODES`` error codes. No secret, full token or AES key appears.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, abort, current_app, jsonify, render_template, request

from . import signals
from .messages import EVENT_TYPES, MESSAGE_TYPES
from .token import mask

if TYPE_CHECKING:
    from .extension import AppState

__all__ = ["DAILY_TOKEN_QUOTA", "Counters", "allowed", "local_request", "register", "snapshot"]

#: WeChat's daily limit on access_token fetches per account.
DAILY_TOKEN_QUOTA = 2000

_LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
_PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: Message kinds counted by name; anything else (a MsgType or Event wxmp does not know, which an
#: attacker with one captured query string could make up by the thousand) is counted as "other".
KNOWN_KINDS = (
    frozenset(MESSAGE_TYPES)
    | frozenset("location_event" if name == "location" else name for name in EVENT_TYPES)
    | {"event"}
)
MAX_ERRCODES = 64
_OTHER_CODE = -999_999  # shown as "other"


class Counters:
    """Callback and API counters fed by the blinker signals of one sender (the WxMP extension)."""

    def __init__(self) -> None:
        self.started_at = time.time()
        self.messages: Counter[str] = Counter()
        self.replies = 0
        self.no_reply = 0
        self.duplicates = 0
        self.refused = 0
        self.handler_failures = 0
        self.token_refreshes = 0
        self.api_errors: Counter[int] = Counter()
        self.recent_errors: deque[dict[str, Any]] = deque(maxlen=20)
        self._lock = threading.Lock()

    def connect(self, sender: object) -> None:
        """Listen to ``sender``'s signals (strong references: the receivers live as long as the app)."""
        signals.message_received.connect(self._message, sender=sender, weak=False)
        signals.reply_sent.connect(self._reply, sender=sender, weak=False)
        signals.duplicate_message.connect(self._duplicate, sender=sender, weak=False)
        signals.signature_refused.connect(self._refused, sender=sender, weak=False)
        signals.handler_failed.connect(self._failed, sender=sender, weak=False)
        signals.api_error.connect(self._api_error, sender=sender, weak=False)
        signals.token_refreshed.connect(self._refreshed, sender=sender, weak=False)

    def _message(self, sender: object, message: Any, **kw: Any) -> None:
        kind = message.kinds[0]
        with self._lock:
            self.messages[kind if kind in KNOWN_KINDS else "other"] += 1

    def _reply(self, sender: object, reply: Any = None, **kw: Any) -> None:
        with self._lock:
            if reply is None:
                self.no_reply += 1
            else:
                self.replies += 1

    def _duplicate(self, sender: object, **kw: Any) -> None:
        with self._lock:
            self.duplicates += 1

    def _refused(self, sender: object, **kw: Any) -> None:
        with self._lock:
            self.refused += 1

    def _failed(self, sender: object, **kw: Any) -> None:
        with self._lock:
            self.handler_failures += 1

    def _api_error(self, sender: object, errcode: int, errmsg: str = "", path: str = "", **kw: Any) -> None:
        code = int(errcode)
        with self._lock:
            if code not in self.api_errors and len(self.api_errors) >= MAX_ERRCODES:
                code = _OTHER_CODE
            self.api_errors[code] += 1
            self.recent_errors.appendleft(
                {"time": time.time(), "errcode": int(errcode), "errmsg": str(errmsg)[:200], "path": path}
            )

    def _refreshed(self, sender: object, **kw: Any) -> None:
        with self._lock:
            self.token_refreshes += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "since": self.started_at,
                "messages": dict(self.messages),
                "messages_total": sum(self.messages.values()),
                "replies": self.replies,
                "no_reply": self.no_reply,
                "duplicates": self.duplicates,
                "refused_signatures": self.refused,
                "handler_failures": self.handler_failures,
                "token_refreshes": self.token_refreshes,
                "api_errors": {
                    ("other" if code == _OTHER_CODE else str(code)): n
                    for code, n in sorted(self.api_errors.items())
                },
                "recent_api_errors": list(self.recent_errors),
            }


def snapshot(app: Flask) -> dict[str, Any]:
    """Everything the status page shows, as JSON-ready data (nothing secret)."""
    ext = app.extensions["wxmp"]
    state: AppState = ext.state(app)
    counters: Counters | None = app.extensions.get("wxmp.status")
    now = time.time()
    entry = state.access_token.peek()
    token: dict[str, Any] | None = None
    if entry is not None:
        token = {
            "masked": mask(entry.value),
            "fetched_at": entry.fetched_at,
            "age": round(now - entry.fetched_at, 1),
            "expires_at": entry.expires_at,
            "expires_in": round(entry.expires_at - now, 1),
            "valid": now < entry.expires_at,
            "host": entry.host,
            "pid": entry.pid,
        }
    settings = state.settings
    return {
        "appid": settings.appid,
        "time": now,
        "cache": state.store.backend,
        "cache_ok": state.access_token.cache_ok,
        "refresher": settings.refresher,
        "stable_token": settings.stable_token,
        "callback": settings.callback_path if state.callback is not None else None,
        "sandbox": settings.sandbox,
        "token": token,
        "fetches_today": state.access_token.fetches_today(),
        "fetch_quota": DAILY_TOKEN_QUOTA,
        "counters": counters.snapshot() if counters is not None else None,
    }


def local_request() -> bool:
    """A direct request from this host: loopback address, no proxy header, a local Host header."""
    if request.remote_addr not in _LOOPBACK:
        return False
    if any(h in request.headers for h in _PROXY_HEADERS):
        return False
    host = request.host.lower()
    host = host.partition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]
    return host in _LOCAL_HOSTS


def _bearer(secret: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), secret.encode())


def allowed() -> bool:
    """The access rule described in the module docstring, for the current request."""
    settings = current_app.extensions["wxmp"].state(current_app).settings
    check, secret = settings.status_check, settings.status_secret
    if check is not None or secret is not None:
        return (secret is None or _bearer(secret)) and (check is None or check() is True)
    if current_app.debug or current_app.testing or settings.sandbox:
        return local_request()
    return False


def register(app: Flask, state: AppState) -> None:
    """Start the counters and mount ``/wxmp/status`` and ``/wxmp/status.json`` on ``app``."""
    counters = Counters()
    counters.connect(state.sender)
    app.extensions["wxmp.status"] = counters
    from .sandbox import templates_dir

    bp = Blueprint("wxmp_status", __name__, url_prefix="/wxmp", template_folder=str(templates_dir()))

    @bp.before_request
    def guard() -> None:
        if not allowed():
            abort(403)

    @bp.get("/status")
    def page() -> Any:
        data = snapshot(current_app._get_current_object())  # type: ignore[attr-defined]
        response = current_app.make_response(render_template("wxmp_status.html", s=data))
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.get("/status.json")
    def as_json() -> Any:
        response = jsonify(snapshot(current_app._get_current_object()))  # type: ignore[attr-defined]
        response.headers["Cache-Control"] = "no-store"
        return response

    app.register_blueprint(bp)
