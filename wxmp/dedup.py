"""Deduplication of WeChat's retries on the shared cache (wechat-api.md §2.3).

WeChat retries a push it got no answer for within 5 s, possibly onto another worker or host. The
first request *claims* the message with the store's atomic ``add`` (a "pending" mark), runs the
handler and then ``set``\\s the rendered reply; a retry finds the mark and answers that reply
without running the handler. A retry that arrives while the first run is still going polls for the
reply for ``wait`` seconds, then answers ``success``.

The pending mark is a *lease* of ``lease`` seconds (10): if the worker that claimed a message dies
before recording its reply, WeChat's third attempt (about 10 s after the first) runs the handler
again instead of the message being lost. The price: a handler that takes longer than the lease
may run twice; such a handler has missed WeChat's 5 s anyway and should answer at once and send
its result through the customer-service API.

When the cache is down (:class:`~wxmp.cache.CacheUnavailable`) messages are processed without dedup
and a warning is logged at most once a minute: a dead cache must never turn into a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from .cache import CacheUnavailable, SharedStore

__all__ = ["Claim", "Deduplicator"]

log = logging.getLogger("wxmp.callback")

#: Stored while the first run is in progress; a rendered reply never starts with NUL.
PENDING = "\x00pending"
SUCCESS = "success"


class Claim(NamedTuple):
    """What to do with a message: run its handler (and ``record`` the reply), or answer ``reply``."""

    run: bool
    record: bool
    reply: str


_RUN_AND_RECORD = Claim(True, True, "")
_RUN_ONLY = Claim(True, False, "")


class Deduplicator:
    """Claims messages on a :class:`~wxmp.cache.SharedStore` and remembers their replies for ``ttl`` s.

    ``clock`` and ``sleep`` drive the wait for a reply still being computed; tests inject fakes.
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
        warn_every: float = 60.0,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.lease = min(lease, ttl)
        self.wait = wait
        self.poll = poll
        self.clock = clock
        self.sleep = sleep
        self.warn_every = warn_every
        self._last_warning: float | None = None

    def __repr__(self) -> str:
        return f"<Deduplicator {self.store!r} ttl={self.ttl}>"

    def _warn(self, what: str, exc: Exception) -> None:
        now = self.clock()
        if self._last_warning is None or now - self._last_warning >= self.warn_every:
            self._last_warning = now
            log.warning("wxmp dedup: %s (%s); processing messages without dedup", what, exc)

    def claim(self, key: str) -> Claim:
        """Claim ``key``; a duplicate gets the first run's reply (or ``success``)."""
        name = "dedup:" + key
        try:
            if self.store.add(name, PENDING, self.lease):
                return _RUN_AND_RECORD
            value = self.store.get(name)
        except CacheUnavailable as exc:
            self._warn("cache unavailable", exc)
            return _RUN_ONLY
        if value is None:
            # The mark expired between add and get: answer quietly rather than run twice.
            return Claim(False, False, SUCCESS)
        if value == PENDING:
            value = self._wait_for(name)
        return Claim(False, False, value if isinstance(value, str) else SUCCESS)

    def _wait_for(self, name: str) -> str:
        deadline = self.clock() + self.wait
        while self.clock() < deadline:
            self.sleep(self.poll)
            try:
                value = self.store.get(name)
            except CacheUnavailable as exc:
                self._warn("cache unavailable", exc)
                return SUCCESS
            if value != PENDING:
                return value if isinstance(value, str) else SUCCESS
        return SUCCESS

    def record(self, key: str, reply: str) -> None:
        """Remember the rendered (unencrypted) reply so retries get the same answer."""
        try:
            self.store.set("dedup:" + key, reply, self.ttl)
        except CacheUnavailable as exc:
            self._warn("could not store a reply", exc)
