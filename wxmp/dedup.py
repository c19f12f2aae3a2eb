"""Deduplication of WeChat's retries on the shared cache (WeChat's 接收普通消息 page,
developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html).

WeChat retries a push it got no answer for within 5 s, possibly onto another worker or host. The
first request *claims* the message with one atomic operation of the backend (a "pending" mark, see
:mod:`wxmp.dedupstore`), runs the handler and then records the rendered reply; a retry finds the
mark and answers that reply without running the handler. A retry that arrives while the first run
is still going polls for the reply for ``wait`` seconds, then answers ``success``.

The pending mark is a *lease* of ``lease`` seconds (10): if the worker that claimed a message dies
before recording its reply, WeChat's third attempt (about 10 s after the first) runs the handler
again instead of the message being lost. The price: a handler that takes longer than the lease
may run twice; such a handler has missed WeChat's 5 s anyway and should answer at once and send
its result through the customer-service API.

Keys name the sender and the mode (see :meth:`wxmp.middleware.Callback.process`): a reply recorded
for one user, or for an encrypted push, is never answered to another user or in plaintext.

When the cache is down (:class:`~wxmp.cache.CacheUnavailable`) messages are processed without dedup
and a warning is logged at most once a minute: a dead cache must never turn into a 500. After a
claim that failed by timing out, the backend is left alone for ``retry_after`` seconds, so a cache
that does not answer costs one timeout, not one per message; a refused connection costs nothing,
so dedup resumes with the first message after the cache is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from .cache import CacheUnavailable, SharedStore
from .dedupstore import CONFLICT, PENDING, DedupStore, open_store
from .replies import SUCCESS

__all__ = ["Claim", "Deduplicator", "SignatureReused"]

log = logging.getLogger("wxmp.callback")

#: A failed claim that took this long (a timeout, not a refused connection) keeps the next claims
#: off the backend for ``retry_after`` seconds.
SLOW_FAILURE = 0.25


class SignatureReused(Exception):
    """A plaintext push's (timestamp, nonce, signature) came before with another body."""


class Claim(NamedTuple):
    """What to do with a message: run its handler (and ``record`` the reply), or answer ``reply``."""

    run: bool
    record: bool
    reply: str


_RUN_AND_RECORD = Claim(True, True, "")
_RUN_ONLY = Claim(True, False, "")


class Deduplicator:
    """Claims messages on a :class:`~wxmp.cache.SharedStore`'s backend and remembers replies for ``ttl`` s.

    ``clock`` and ``sleep`` drive the wait for a reply still being computed; ``wall_clock`` dates the
    filesystem and in-process marks. Tests inject fakes. ``bind_ttl``: how long the backend must
    keep a signature-to-body binding when it can check one with the claim (:attr:`binds`).
    """

    def __init__(
        self,
        store: SharedStore,
        ttl: float = 300,
        *,
        lease: float = 10.0,
        wait: float = 2.0,
        poll: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
        warn_every: float = 60.0,
        retry_after: float = 5.0,
        bind_ttl: float = 0.0,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.lease = min(lease, ttl)
        self.wait = wait
        self.poll = poll
        self.clock = clock
        self.sleep = sleep
        self.warn_every = warn_every
        self.retry_after = retry_after
        self._last_warning: float | None = None
        self._down_until = 0.0
        self.backend: DedupStore = open_store(store, ttl, clock=wall_clock, bind_ttl=bind_ttl)
        #: The backend checks a plaintext push's signature-to-body binding in the claim's own write
        #: (filesystem, Redis), and can bind one on its own (``backend.bind``).
        self.binds = bool(bind_ttl) and getattr(self.backend, "binds", False)

    def __repr__(self) -> str:
        return f"<Deduplicator {self.store!r} ttl={self.ttl}>"

    def _warn(self, what: str, exc: Exception) -> None:
        now = self.clock()
        if self._last_warning is None or now - self._last_warning >= self.warn_every:
            self._last_warning = now
            log.warning("wxmp dedup: %s (%s); processing messages without dedup", what, exc)

    def claim(self, key: str, *, bind: tuple[str, bytes] | None = None) -> Claim:
        """Claim ``key``; a duplicate gets the first run's reply (or ``success``).

        ``bind`` (only when :attr:`binds`): a plaintext
        push's ``timestamp:nonce:signature`` and body, bound in the same write; raises
        :class:`SignatureReused` if that triple came before with another body.
        """
        start = self.clock()
        if (self._down_until and start < self._down_until) or self.store.resting():
            return _RUN_ONLY  # the cache just timed out (here or for the store): do not wait on it
        try:
            if bind is not None:
                value = self.backend.claim(key, self.lease, bind)  # type: ignore[call-arg]
                if value == CONFLICT:
                    raise SignatureReused
            else:
                value = self.backend.claim(key, self.lease)
        except CacheUnavailable as exc:
            if self.clock() - start >= SLOW_FAILURE:  # it failed by timing out: spare the next ones
                self._down_until = self.clock() + self.retry_after
            self._warn("cache unavailable", exc)
            return _RUN_ONLY
        if value is None:
            return _RUN_AND_RECORD
        if value == PENDING:
            value = self._wait_for(key)
        return Claim(False, False, _decode(value))

    def _wait_for(self, key: str) -> bytes | None:
        deadline = self.clock() + self.wait
        while self.clock() < deadline:
            self.sleep(self.poll)
            try:
                value = self.backend.read(key)
            except CacheUnavailable as exc:
                self._warn("cache unavailable", exc)
                return None
            if value != PENDING:
                return value
        return None

    def record(self, key: str, reply: str) -> None:
        """Remember the rendered (unencrypted) reply so retries get the same answer."""
        try:
            self.backend.record(key, reply.encode("utf-8", "surrogatepass"), self.ttl)
        except CacheUnavailable as exc:
            self._warn("could not store a reply", exc)

    def release(self, key: str) -> None:
        """Give up a claim without a reply (the handler was interrupted); its lease then lapses."""
        try:
            self.backend.release(key)
        except CacheUnavailable:  # pragma: no cover - releasing never talks to a server
            pass


def _decode(value: bytes | None) -> str:
    """A stored reply as text; anything else (absent, foreign, undecodable) answers ``success``."""
    if not value or value[:1] == b"\x00":
        return SUCCESS
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return SUCCESS
