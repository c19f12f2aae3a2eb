"""FakeWeChat: a real HTTP server that speaks the WeChat API with WeChat's rules.

It runs on 127.0.0.1 on a free port in a background thread, so clients talk to it over a real
socket exactly as they would talk to ``api.weixin.qq.com``::

    with FakeWeChat(token_lifetime=3) as fake:
        app.config["WXMP_API_BASE"] = fake.url
        ...
        assert fake.count("/cgi-bin/token") == 1

Rules it enforces: tokens expire after ``token_lifetime`` seconds; a new ``/cgi-bin/token`` fetch
invalidates the previous classic token (after ``classic_grace`` seconds, default 0: at once);
``stable_token`` returns the same token while more than ``stable_rotate_window`` seconds remain and
never invalidates another token unless ``force_refresh`` is set; classic and stable tokens are
isolated; a daily quota on ``/cgi-bin/token`` answers 45009 beyond it; wrong credentials answer
40013/40125; every request is recorded. Every other API call counts against its daily quota
(``quota_used``; :meth:`set_quota` gives a path a limit, beyond which it answers 45009 until
``clear_quota``); every error answer carries a ``rid`` that ``openapi/rid/get`` explains. Fault
knobs: :meth:`fail_next`, :meth:`http_error_next`, :meth:`hang_next`.

Endpoints live in a registry (:func:`endpoint`); modules under ``wxmp.testing`` add theirs.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import FileStorage
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

__all__ = ["FakeRequest", "FakeWeChat", "RecordedRequest", "endpoint"]

Handler = Callable[["FakeWeChat", "FakeRequest"], Any]


@dataclass(frozen=True)
class _Endpoint:
    handler: Handler
    auth: bool


_ENDPOINTS: dict[tuple[str, str], _Endpoint] = {}


def endpoint(method: str, path: str, *, auth: bool = True) -> Callable[[Handler], Handler]:
    """Register a fake endpoint. ``auth`` endpoints get the access_token checked first.

    The handler returns a dict (sent as JSON; ``errcode`` 0 is not added for you), bytes, or a
    werkzeug ``Response``. Raise :class:`WeChatFault` to answer an errcode.
    """

    def register(fn: Handler) -> Handler:
        _ENDPOINTS[(method.upper(), path)] = _Endpoint(fn, auth)
        return fn

    return register


class _QuietHandler(WSGIRequestHandler):
    """No access log: request lines carry tokens and secrets in their query strings."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class WeChatFault(Exception):
    """Raised by fake handlers to answer ``{"errcode": code, "errmsg": msg, **extra}``."""

    def __init__(self, errcode: int, errmsg: str, **extra: Any) -> None:
        super().__init__(errcode, errmsg)
        self.errcode = errcode
        self.errmsg = errmsg
        self.extra = extra


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it on the wire."""

    method: str
    path: str
    args: dict[str, str]
    body: bytes
    content_type: str
    time: float

    @property
    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    @property
    def token(self) -> str | None:
        return self.args.get("access_token")


@dataclass
class FakeRequest:
    """What a fake endpoint handler receives."""

    method: str
    path: str
    args: dict[str, str]
    body: bytes
    files: dict[str, FileStorage]
    form: dict[str, str]
    token: str | None = None

    @property
    def json(self) -> dict[str, Any]:
        """The JSON body; malformed or empty bodies answer 47001 / 44002 like WeChat."""
        if not self.body:
            raise WeChatFault(44002, "empty post data")
        try:
            data = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise WeChatFault(47001, "data format error")
        if not isinstance(data, dict):
            raise WeChatFault(47001, "data format error")
        return data

    def require(self, data: dict[str, Any], *names: str) -> None:
        """Answer 40035 (invalid args) when a required JSON field is missing or empty."""
        for name in names:
            if data.get(name) in (None, "", [], {}):
                raise WeChatFault(40035, f"invalid args, missing {name}")


@dataclass
class _Token:
    value: str
    expires_at: float
    kind: str  # "classic" | "stable"
    issued_at: float


@dataclass
class _Fault:
    remaining: int
    kind: str  # "errcode" | "http" | "hang"
    value: float
    paths: tuple[str, ...] | None

    def applies(self, path: str) -> bool:
        return self.paths is None or any(path.startswith(p) for p in self.paths)


class FakeWeChat:
    """A local WeChat API server (see the module docstring)."""

    def __init__(
        self,
        appid: str = "wx0000000000000001",
        secret: str = "fake-secret-0123456789abcdef0123",  # noqa: S107 (a fake's credential)
        *,
        token_lifetime: float = 7200,
        daily_quota: int = 2000,
        stable_rotate_window: float | None = None,
        classic_grace: float = 0.0,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.appid = appid
        self.secret = secret
        self.token_lifetime = token_lifetime
        self.daily_quota = daily_quota
        self.stable_rotate_window = (
            stable_rotate_window if stable_rotate_window is not None else min(300.0, token_lifetime / 4)
        )
        self.classic_grace = classic_grace
        self.clock = clock
        self._host, self._port = host, port
        self._lock = threading.RLock()
        self._tokens: dict[str, _Token] = {}
        self._classic: str | None = None
        self._stable: str | None = None
        self._faults: list[_Fault] = []
        self._seq = itertools.count(1)
        self._stop_hang = threading.Event()
        self.requests: list[RecordedRequest] = []
        self.quota_used: Counter[str] = Counter()
        #: Daily limits per API path (:meth:`set_quota`); paths not here are unlimited.
        self.api_limits: dict[str, int] = {}
        #: The API IP whitelist (None: none configured) and the IP the fake believes callers have
        #: (everything arrives from 127.0.0.1 on loopback): see :meth:`set_ip_whitelist`.
        self.ip_whitelist: set[str] | None = None
        self.caller_ip = "127.0.0.1"
        #: rid -> what ``openapi/rid/get`` reports about the failed request (the newest 1000).
        self.rids: OrderedDict[str, dict[str, Any]] = OrderedDict()
        #: Tokens issued, by kind ("classic", "stable").
        self.issued: Counter[str] = Counter()
        self.users: dict[str, dict[str, Any]] = {}
        #: Per-feature state of the endpoint modules (menus, tags, materials...).
        self.state: dict[str, Any] = {}
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> FakeWeChat:
        """Bind a free port and serve in a daemon thread."""
        _load_endpoint_modules()
        self._server = make_server(
            self._host, self._port, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="FakeWeChat", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop_hang.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeWeChat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeWeChat is not started"
        return f"http://{self._host}:{self._server.server_port}"

    def __repr__(self) -> str:
        where = self.url if self._server else "stopped"
        return f"<FakeWeChat {self.appid} {where}>"

    # -- knobs ----------------------------------------------------------------------------------

    def fail_next(self, n: int = 1, errcode: int = -1, *, paths: tuple[str, ...] | None = None) -> None:
        """The next ``n`` matching requests answer ``errcode`` (default -1, system busy)."""
        with self._lock:
            self._faults.append(_Fault(n, "errcode", errcode, paths))

    def http_error_next(self, n: int = 1, status: int = 500, *, paths: tuple[str, ...] | None = None) -> None:
        """The next ``n`` matching requests answer HTTP ``status`` with an HTML body."""
        with self._lock:
            self._faults.append(_Fault(n, "http", status, paths))

    def hang_next(self, n: int = 1, seconds: float = 10.0, *, paths: tuple[str, ...] | None = None) -> None:
        """The next ``n`` matching requests wait ``seconds`` before being served normally."""
        with self._lock:
            self._faults.append(_Fault(n, "hang", seconds, paths))

    def set_quota(self, path: str, daily_limit: int) -> None:
        """Give ``path`` a daily limit: calls beyond it answer 45009 until a quota clear."""
        with self._lock:
            self.api_limits[path] = daily_limit

    def set_ip_whitelist(self, ips: list[str] | None, caller_ip: str | None = None) -> None:
        """Configure the account's API IP whitelist; calls from an IP not on it answer 40164.

        ``caller_ip`` is the address WeChat would see (the server's egress IP); default 127.0.0.1.
        """
        with self._lock:
            self.ip_whitelist = set(ips) if ips is not None else None
            if caller_ip is not None:
                self.caller_ip = caller_ip

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def revoke_tokens(self) -> None:
        """Invalidate every token at once, as if someone else forced a refresh."""
        with self._lock:
            self._tokens.clear()
            self._classic = self._stable = None

    def add_user(self, openid: str, **info: Any) -> dict[str, Any]:
        """Make ``openid`` a follower; ``info`` overrides the user/info fields."""
        user = {
            "subscribe": 1,
            "openid": openid,
            "language": "zh_CN",
            "subscribe_time": int(self.clock()),
            "remark": "",
            "groupid": 0,
            "tagid_list": [],
            "subscribe_scene": "ADD_SCENE_QR_CODE",
            "qr_scene": 0,
            "qr_scene_str": "",
        }
        user.update(info)
        with self._lock:
            self.users[openid] = user
        return user

    # -- observations ---------------------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        """Requests seen, for one path or in all."""
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def calls(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    @property
    def tokens_issued(self) -> int:
        """Distinct tokens handed out by both token endpoints."""
        with self._lock:
            return sum(self.issued.values())

    def is_valid(self, token: str) -> bool:
        with self._lock:
            tok = self._tokens.get(token)
            return tok is not None and tok.expires_at > self.clock()

    # -- token rules ----------------------------------------------------------------------------

    def _issue(self, kind: str) -> _Token:
        now = self.clock()
        value = f"{kind[0].upper()}{next(self._seq):05d}_" + secrets.token_urlsafe(60)
        tok = _Token(value, now + self.token_lifetime, kind, now)
        self.issued[kind] += 1
        self._tokens[value] = tok
        return tok

    def _purge(self, now: float) -> None:
        for value in [v for v, t in self._tokens.items() if t.expires_at <= now]:
            del self._tokens[value]

    def _check_credentials(self, appid: str | None, secret: str | None) -> None:
        if appid != self.appid:
            raise WeChatFault(40013, "invalid appid")
        if secret != self.secret:
            raise WeChatFault(40125, "invalid appsecret")

    def classic_token(self, req: FakeRequest) -> dict[str, Any]:
        if req.args.get("grant_type") != "client_credential":
            raise WeChatFault(40002, "invalid grant_type")
        self._check_credentials(req.args.get("appid"), req.args.get("secret"))
        with self._lock:
            if self.quota_used["/cgi-bin/token"] >= self.daily_quota:
                raise WeChatFault(45009, "reach max api daily quota limit")
            self.quota_used["/cgi-bin/token"] += 1
            now = self.clock()
            self._purge(now)
            old = self._tokens.get(self._classic) if self._classic else None
            if old is not None:
                # A new classic fetch kills the previous token (after the grace, if any).
                old.expires_at = min(old.expires_at, now + self.classic_grace)
                if old.expires_at <= now:
                    del self._tokens[old.value]
            tok = self._issue("classic")
            self._classic = tok.value
            return {"access_token": tok.value, "expires_in": int(self.token_lifetime + 0.5)}

    def stable_token(self, req: FakeRequest) -> dict[str, Any]:
        data = req.json
        if data.get("grant_type") != "client_credential":
            raise WeChatFault(40002, "invalid grant_type")
        self._check_credentials(data.get("appid"), data.get("secret"))
        with self._lock:
            self.quota_used["/cgi-bin/stable_token"] += 1
            now = self.clock()
            self._purge(now)
            current = self._tokens.get(self._stable) if self._stable else None
            if data.get("force_refresh"):
                if current is not None:
                    del self._tokens[current.value]
                current = None
            elif current is not None and current.expires_at - now <= self.stable_rotate_window:
                current = None  # rotation window: a new token, the old one stays valid until expiry
            if current is None:
                current = self._issue("stable")
                self._stable = current.value
            remaining = max(1, round(current.expires_at - now))
            return {"access_token": current.value, "expires_in": remaining}

    def check_token(self, token: str | None) -> None:
        if not token:
            raise WeChatFault(41001, "access_token missing")
        with self._lock:
            tok = self._tokens.get(token)
            if tok is None:
                raise WeChatFault(40001, "invalid credential, access_token is invalid or not latest")
            if tok.expires_at <= self.clock():
                raise WeChatFault(42001, "access_token expired")

    def _count_call(self, path: str) -> None:
        with self._lock:
            limit = self.api_limits.get(path)
            if limit is not None and self.quota_used[path] >= limit:
                raise WeChatFault(45009, "reach max api daily quota limit")
            self.quota_used[path] += 1

    def _remember_rid(self, req: FakeRequest, fault: WeChatFault) -> str:
        """A rid like WeChat's (``6617a2b4-1c2d3e4f-5a6b7c8d``) and the record rid/get returns."""
        rid = "-".join(secrets.token_hex(4) for _ in range(3))
        hidden = ("access_token", "secret", "appsecret", "refresh_token", "code")
        query = "&".join(f"{k}={v}" for k, v in req.args.items() if k not in hidden)
        body = req.body.decode("utf-8", "replace") if not req.files else "(multipart)"
        with self._lock:
            self.rids[rid] = {
                "invoke_time": int(self.clock()),
                "cost_in_ms": 1,
                "request_url": f"{req.path}?{query}" if query else req.path,
                "request_body": "" if "secret" in body else body[:2048],
                "response_body": json.dumps(
                    {"errcode": fault.errcode, "errmsg": f"{fault.errmsg} rid: {rid}"}, ensure_ascii=False
                ),
                "client_ip": "127.0.0.1",
            }
            while len(self.rids) > 1000:
                self.rids.popitem(last=False)
        return rid

    # -- WSGI -----------------------------------------------------------------------------------

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.applies(path):
                    fault.remaining -= 1
                    return fault
            self._faults = [f for f in self._faults if f.remaining > 0]
        return None

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        body = request.get_data(cache=True)
        args = {k: v for k, v in request.args.items()}
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    request.method, request.path, args, body, request.content_type or "", self.clock()
                )
            )
        response = self._respond(request, args, body)
        return response(environ, start_response)

    def _respond(self, request: Request, args: dict[str, str], body: bytes) -> Response:
        fault = self._take_fault(request.path)
        if fault is not None:
            if fault.kind == "hang":
                self._stop_hang.wait(fault.value)
            elif fault.kind == "http":
                return Response("<html>upstream error</html>", status=int(fault.value), mimetype="text/html")
            else:
                return _json({"errcode": int(fault.value), "errmsg": "system error (fake fault)"})
        ep = _ENDPOINTS.get((request.method, request.path))
        if ep is None:
            if any(path == request.path for _, path in _ENDPOINTS):
                return _json({"errcode": 43002, "errmsg": "require POST method"})
            return _json({"errcode": 48001, "errmsg": f"api unauthorized (fake has no {request.path})"})
        files = {k: v for k, v in request.files.items()} if request.files else {}
        form = {k: v for k, v in request.form.items()} if request.form else {}
        req = FakeRequest(request.method, request.path, args, body, files, form, args.get("access_token"))
        try:
            if self.ip_whitelist is not None and self.caller_ip not in self.ip_whitelist:
                ip = self.caller_ip
                raise WeChatFault(40164, f"invalid ip {ip} ipv6 ::ffff:{ip}, not in whitelist")
            if ep.auth:
                self.check_token(req.token)
                self._count_call(request.path)
            result = ep.handler(self, req)
        except WeChatFault as fault_:
            rid = self._remember_rid(req, fault_)
            return _json({"errcode": fault_.errcode, "errmsg": f"{fault_.errmsg} rid: {rid}", **fault_.extra})
        if isinstance(result, Response):
            return result
        if isinstance(result, bytes):
            return Response(result, mimetype="application/octet-stream")
        return _json(result)


def _json(data: Any) -> Response:
    # WeChat's own Content-Type, non-standard parameter included.
    return Response(
        json.dumps(data, ensure_ascii=False).encode("utf-8"),
        content_type="application/json; encoding=utf-8",
    )


_loaded = False


def _load_endpoint_modules() -> None:
    """Import the modules that register the API endpoints (menus, messages, ...)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    import pkgutil

    from . import fake_api

    for info in pkgutil.iter_modules(fake_api.__path__):
        importlib.import_module(f"{fake_api.__name__}.{info.name}")


# -- the endpoints of the foundation: tokens and user info ------------------------------------------


@endpoint("GET", "/cgi-bin/token", auth=False)
def _token(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    return fake.classic_token(req)


@endpoint("POST", "/cgi-bin/stable_token", auth=False)
def _stable_token(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    return fake.stable_token(req)


@endpoint("GET", "/cgi-bin/user/info")
def _user_info(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    openid = req.args.get("openid")
    if not openid:
        raise WeChatFault(40003, "invalid openid")
    lang = req.args.get("lang", "zh_CN")
    if lang not in ("zh_CN", "zh_TW", "en"):
        raise WeChatFault(40005, "invalid lang")
    user = fake.users.get(openid)
    if user is None:
        raise WeChatFault(40003, "invalid openid")
    if not user.get("subscribe"):
        return {"subscribe": 0, "openid": openid}
    return dict(user)
