"""Conversations: ``msg.session``, a small mapping per (account, user) kept in the shared cache.

Inside a handler of an :class:`~wxmp.account.Account` (or the Flask extension)::

    @wx.on("text", slow=True)
    def chat(msg):
        history = msg.session.setdefault("history", [])
        history.append({"role": "user", "content": msg.content})
        answer = model(history)
        history.append({"role": "assistant", "content": answer})
        return answer

The mapping is read from the shared cache on first use (a handler that never touches it costs
nothing), and written back when the handler returns, only if its content changed (nested changes
such as ``history.append`` included: the content is compared, not the assignments). Each save keeps
it for ``WXMP_SESSION_TTL`` seconds more; a session emptied by the handler is deleted. A handler
that raises saves nothing. Values must be JSON data (str, int, float, bool, None, lists and dicts
with str keys): the cache holds plain data, never pickles.

Concurrency: when two messages of one user are handled at the same time (a quick second message
while a slow handler still runs), each handler works on its own copy and **the last one to finish
wins**: the other's changes to the session are lost. Keep what must not be lost elsewhere (a
database), or keep the session small and append-only per message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .cache import CacheUnavailable, SharedStore
from .errors import loggable

if TYPE_CHECKING:
    from .account import Account
    from .messages import Message

__all__ = ["Session", "current_session", "open_session", "session_scope"]

log = logging.getLogger("wxmp.session")

#: Longest OpenID accepted as a session key (WeChat's are 28 characters).
MAX_OPENID = 64


def _dump(data: Any) -> str:
    try:
        return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"session values must be JSON data (str, int, float, bool, None, list, dict): {exc}")


class Session(MutableMapping[str, Any]):
    """One user's conversation state: loaded lazily, saved by :meth:`save` only when changed."""

    def __init__(self, store: SharedStore, openid: str, ttl: float) -> None:
        if not openid or len(openid) > MAX_OPENID:
            raise ValueError("a session needs the user's OpenID")
        self.store = store
        self.openid = openid
        self.ttl = ttl
        self._data: dict[str, Any] | None = None
        self._snapshot = "{}"

    def __repr__(self) -> str:
        state = "not loaded" if self._data is None else f"{len(self._data)} keys"
        return f"<Session {self.openid} {state}>"

    @property
    def key(self) -> str:
        return "session:" + self.openid

    @property
    def data(self) -> dict[str, Any]:
        """The mapping itself, read from the cache on first use."""
        if self._data is None:
            try:
                value = self.store.get(self.key)
            except CacheUnavailable as exc:
                log.warning("wxmp session of %s not loaded (%s); starting empty", loggable(self.openid), exc)
                value = None
            self._data = value if isinstance(value, dict) else {}
            self._snapshot = _dump(self._data)
        return self._data

    @property
    def loaded(self) -> bool:
        return self._data is not None

    @property
    def modified(self) -> bool:
        """True when the content differs from what was loaded (or last saved)."""
        return self._data is not None and _dump(self._data) != self._snapshot

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def __setitem__(self, name: str, value: Any) -> None:
        if not isinstance(name, str):
            raise TypeError("session keys are strings")
        _dump(value)  # refuse what the cache could not hold, here rather than at the save
        self.data[name] = value

    def __delitem__(self, name: str) -> None:
        del self.data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def save(self) -> bool:
        """Write the session back if it changed (delete it when empty); True if written."""
        if self._data is None:
            return False
        dump = _dump(self._data)
        if dump == self._snapshot:
            return False
        if self._data:
            self.store.set(self.key, json.loads(dump), self.ttl)
        else:
            self.store.delete(self.key)
        self._snapshot = dump
        return True


class _Scope:
    """The sessions opened while one handler runs (normally one: the sender's)."""

    def __init__(self, store: SharedStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self.sessions: dict[str, Session] = {}

    def get(self, openid: str) -> Session:
        session = self.sessions.get(openid)
        if session is None:
            session = self.sessions[openid] = Session(self.store, openid, self.ttl)
        return session

    def save(self) -> None:
        for session in self.sessions.values():
            try:
                session.save()
            except (CacheUnavailable, TypeError) as exc:
                log.warning("wxmp session of %s not saved: %s", loggable(session.openid), exc)


_current: ContextVar[session_scope | None] = ContextVar("wxmp_sessions", default=None)


def _store(account: Account) -> SharedStore:
    # The message store: on the local backends it is a separate cache, so a crowd of sessions
    # cannot push the access_token out when the cache prunes itself.
    store: SharedStore | None = account.__dict__.get("_wxmp_session_store")
    if store is None:
        store = account.__dict__.setdefault("_wxmp_session_store", account.store.for_messages())
    return store


def open_session(account: Account, openid: str) -> Session:
    """The session of ``openid`` on ``account`` outside a handler (call ``save()`` yourself)."""
    return Session(_store(account), openid, account.settings.session_ttl)


class session_scope:
    """Around a handler: ``msg.session`` works, and changed sessions are saved on a normal exit.

    A class rather than a generator-based context manager: it wraps every handler call.
    """

    __slots__ = ("_account", "_scope", "_token")

    def __init__(self, account: Account) -> None:
        self._account = account
        self._scope: _Scope | None = None  # made when a handler first reads msg.session

    def __enter__(self) -> None:
        self._token = _current.set(self)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: Any) -> None:
        try:
            if exc_type is None and self._scope is not None:
                self._scope.save()
        finally:
            _current.reset(self._token)

    def scope(self) -> _Scope:
        if self._scope is None:
            self._scope = _Scope(_store(self._account), self._account.settings.session_ttl)
        return self._scope


def current_session(msg: Message) -> Session:
    """The session of ``msg``'s sender (what ``msg.session`` returns)."""
    scope = _current.get()
    if scope is None:
        raise RuntimeError(
            "msg.session works inside a handler of an Account or WxMP app "
            "(elsewhere use wxmp.session.open_session(account, openid))"
        )
    return scope.scope().get(msg.from_user_name)
