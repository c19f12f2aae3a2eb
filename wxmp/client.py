"""ApiClient: the one request layer under every helper.

One pooled ``requests.Session`` with a default timeout; JSON bodies sent as raw UTF-8 (WeChat
answers 40033 to ``\\uXXXX`` escapes in menus); responses decoded whatever their Content-Type;
a non-zero ``errcode`` raised as :class:`~wxmp.errors.ApiError` (or the subclass for its family);
an invalid-token answer recovered once through the :class:`~wxmp.token.TokenManager`. The token
travels in the query string and never appears in an exception or a log line.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import requests

from . import signals
from .errors import ApiError, NetworkError, TokenInvalidError
from .token import TokenManager

__all__ = ["ApiClient", "Blocking", "Call", "Plan", "Step"]

R = TypeVar("R")

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


class Step:
    """Something a plan yields for its client to perform (a :class:`Call` or a :class:`Blocking`)."""


@dataclass(frozen=True)
class Call(Step):
    """One API request, described: what a helper asks its client (sync or async) to perform.

    ``then`` shapes the decoded result (``then=lambda r: r.get("tags", [])``) so that a helper
    stays one expression whichever client runs it.
    """

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    data: Mapping[str, Any] | None = None
    files: Mapping[str, Any] | None = None
    auth: bool = True
    binary: bool = False
    base: str | None = None
    then: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Blocking(Step):
    """A blocking step (the token manager, a file): called directly, or in a thread by the async client."""

    fn: Callable[[], Any]


#: A helper that makes several calls: a generator yielding steps, receiving each one's result,
#: returning the helper's value. ``ApiClient.drive`` runs it; the async client awaits it.
Plan = Generator[Any, Any, R]


class _Token(Step):
    """The current access_token (the async client may read it without a thread)."""


_TOKEN = _Token()


class _Http(NamedTuple):
    method: str
    path: str
    params: Mapping[str, Any] | None
    payload: Any
    data: Mapping[str, Any] | None
    files: Mapping[str, Any] | None
    token: str | None
    binary: bool
    base: str | None

    @classmethod
    def of(cls, call: Call, token: str | None) -> _Http:
        c = call
        return cls(c.method, c.path, c.params, c.json, c.data, c.files, token, c.binary, c.base)


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

    def request(self, method: str, path: str, **kw: Any) -> Any:
        """Call ``path`` and return the decoded JSON (or bytes when ``binary`` and not JSON).

        Keywords are :class:`Call`'s: ``params``, ``json``, ``data``, ``files``, ``auth``
        (default True: add ``access_token`` from the shared TokenManager; if WeChat rejects it
        (40001/40014/42001) the token is compare-and-refreshed and the call replayed once),
        ``binary``, ``base``, and ``then``, applied to the result before it is returned.
        """
        return self.call(Call(method, path, **kw))

    def call(self, call: Call) -> Any:
        """Perform one :class:`Call` (the async client's ``call`` is a coroutine)."""
        return self.drive(self._exchange(call))

    def drive(self, plan: Plan[R]) -> R:
        """Run a plan: perform each step it yields, send back the result (or throw the error)."""
        value: Any = None
        error: Exception | None = None
        while True:
            try:
                step = plan.throw(error) if error is not None else plan.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            try:
                value = self._step(step)
            except Exception as exc:
                error = exc

    def stream(self, plan: Generator[Any, Any, None]) -> Iterator[Any]:
        """Run a plan that also yields items (pages of openids...): an iterator over the items."""
        value: Any = None
        error: Exception | None = None
        while True:
            try:
                step = plan.throw(error) if error is not None else plan.send(value)
            except StopIteration:
                return
            value, error = None, None
            if not isinstance(step, Step):
                yield step
                continue
            try:
                value = self._step(step)
            except Exception as exc:
                error = exc

    def _step(self, step: Any) -> Any:
        if isinstance(step, Call):
            return self.call(step)
        if isinstance(step, Blocking):
            return step.fn()
        if isinstance(step, _Token):
            return self._token()
        if isinstance(step, _Http):
            return self._call(*step)
        raise TypeError(f"a plan yielded {type(step).__name__}, not a Call or Blocking step")

    def _exchange(self, call: Call) -> Plan[Any]:
        """One API call as a plan: the token, the request, one replay on token-invalid, errors.

        Shared by the sync and the async client; only how each step is performed differs.
        """
        token = (yield _TOKEN) if call.auth and self.token is not None else None
        result = yield _Http.of(call, token)
        errcode = _errcode(result)
        if errcode in TokenInvalidError.codes and token is not None and self.token is not None:
            token = yield Blocking(functools.partial(self.token.invalidate, token))
            result = yield _Http.of(call, token)
            errcode = _errcode(result)
        if errcode:
            errmsg = str(result.get("errmsg", ""))
            if signals.api_error.receivers:
                signals.api_error.send(self.sender, errcode=errcode, errmsg=errmsg, path=call.path)
            raise ApiError.from_response(errcode, errmsg, call.path, result)
        return call.then(result) if call.then is not None else result

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
        url, query, body, headers = self._prepare(path, params, payload, data, token, base)
        try:
            response = self.session.request(
                method, url, params=query, data=body, files=files, headers=headers, timeout=self.timeout
            )
        except requests.Timeout:
            raise NetworkError(path, f"timed out after {self.timeout}s") from None
        except requests.RequestException as exc:
            raise NetworkError(path, f"connection failed ({type(exc).__name__})") from None
        return _decode(response, path, binary)

    def _prepare(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        payload: Any,
        data: Mapping[str, Any] | None,
        token: str | None,
        base: str | None,
    ) -> tuple[str, dict[str, Any], Any, dict[str, str]]:
        """(url, query, body, headers) of a request: the part both HTTP libraries share."""
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
        return (base or self.base) + path, query, body, headers


def _errcode(result: Any) -> int:
    if not isinstance(result, dict):
        return 0
    try:
        return int(result.get("errcode") or 0)
    except (TypeError, ValueError):
        return 0


def _decode(response: Any, path: str, binary: bool) -> Any:
    """A requests or httpx response as JSON (or bytes when ``binary``); NetworkError otherwise."""
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
