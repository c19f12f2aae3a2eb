"""TokenManager: one access_token (or jsapi_ticket) for a whole fleet of processes and hosts.

The token lives in the shared cache as ``{value, expires_at, refresh_at, fetched_at, host, pid}``.
Every process reads it from there. When it is due (``refresh_at``, a fraction of the lifetime
before expiry) or missing, one process takes the cross-process lock, re-reads the cache (someone
may have refreshed while it waited) and only then fetches; the others keep using the still-valid
token, or wait and read the winner's. A token WeChat calls invalid is refreshed only if the cache
still holds that very token (compare-and-refresh), so a storm of 40001 answers costs one fetch.

Failures back off exponentially with jitter; errors that retrying cannot fix (quota, IP whitelist,
bad credentials) are raised at once, logged once, and not retried for a cool-down. A dead cache
degrades to a process-local copy with one warning a minute.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from . import signals
from .cache import CacheUnavailable, Lock, SharedStore
from .deadline import remaining
from .errors import (
    ApiError,
    CredentialError,
    IPNotWhitelistedError,
    QuotaExceededError,
    TokenUnavailableError,
    WxMPError,
)

__all__ = ["Backoff", "TokenEntry", "TokenManager", "mask"]

log = logging.getLogger("wxmp.token")

#: ``fetch(force)`` returns ``(value, expires_in)``; ``force`` asks for a new value even if the
#: current one looks valid to WeChat (stable_token's force_refresh).
Fetcher = Callable[[bool], tuple[str, int]]

_FATAL = (CredentialError, IPNotWhitelistedError, QuotaExceededError)
_FATAL_COOLDOWN = 300.0
_CACHE_WARN_EVERY = 60.0
_HOST = socket.gethostname()
_MANAGERS: weakref.WeakSet[TokenManager] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for manager in list(_MANAGERS):
        manager._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


def mask(value: str | None) -> str:
    """What logs and pages show of a token: its first 6 characters and its length."""
    if not value:
        return "<none>"
    return f"{value[:6]}…({len(value)})"


@dataclass(frozen=True)
class TokenEntry:
    """A token as stored in the shared cache."""

    value: str
    expires_at: float
    refresh_at: float
    fetched_at: float
    host: str
    pid: int

    def __repr__(self) -> str:
        return f"<TokenEntry {mask(self.value)} expires_at={self.expires_at:.0f} by {self.host}:{self.pid}>"

    @classmethod
    def from_cache(cls, data: Any) -> TokenEntry | None:
        """The entry in a cached JSON object, or None when it is not one (a miss, never an error)."""
        if not isinstance(data, dict):
            return None
        try:
            entry = cls(**data)
        except TypeError:
            return None
        numbers = (entry.expires_at, entry.refresh_at, entry.fetched_at)
        if not (
            isinstance(entry.value, str)
            and entry.value
            and isinstance(entry.host, str)
            and isinstance(entry.pid, int)
            and all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers)
        ):
            return None
        return entry

    def valid(self, now: float, reject: str | None = None) -> bool:
        return now < self.expires_at and self.value != reject


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: ``base * 2**(n-1)``, at most ``cap``, times 0.5..1."""

    base: float = 0.5
    cap: float = 60.0
    rng: Callable[[], float] = random.random
    failures: int = 0
    retry_at: float = 0.0

    def failed(self, now: float) -> float:
        self.failures += 1
        delay = min(self.cap, self.base * 2 ** (self.failures - 1)) * (0.5 + self.rng() / 2)
        self.retry_at = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0

    def waiting(self, now: float) -> float:
        """Seconds left before the next attempt is allowed (0 when it may go now)."""
        return max(0.0, self.retry_at - now)


class TokenManager:
    """Get, refresh and recover one kind of token on the shared cache.

    ``fetch`` is None in external mode: this process only reads what a central refresher keeps.
    """

    def __init__(
        self,
        kind: str,
        fetch: Fetcher | None,
        store: SharedStore,
        *,
        appid: str,
        margin: float = 0.02,
        exclusive: bool = False,
        lock_ttl: float = 15.0,
        wait: float = 10.0,
        external_wait: float = 5.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        backoff: Backoff | None = None,
        sender: object | None = None,
        no_fetch_reason: str | None = None,
    ) -> None:
        self.kind = kind
        #: Why this process does not fetch (shown when no token is found); external mode by default.
        self.no_fetch_reason = no_fetch_reason or (
            "this process is in external mode (WXMP_REFRESHER='external'): is `flask wxmp refresher` "
            "running against the same WXMP_CACHE?"
        )
        self._fetch = fetch
        self.store = store
        self.key = f"{appid}:{kind}"
        self.margin = margin
        self.exclusive = exclusive
        self.lock_ttl = lock_ttl
        self.wait = wait
        self.external_wait = external_wait
        self.clock = clock
        self.sleep = sleep
        self.backoff = backoff or Backoff()
        self.sender = sender
        self._local: TokenEntry | None = None
        self._local_lock = threading.Lock()
        self._fatal: tuple[ApiError, float] | None = None
        self._last_error: WxMPError | None = None
        self._cache_warned_at = -_CACHE_WARN_EVERY
        self.cache_ok = True
        #: Set by a running Refresher: refreshing ahead of expiry is its job, not the callers'.
        self.background = False
        _MANAGERS.add(self)

    def __repr__(self) -> str:
        return f"<TokenManager {self.kind} {self.store.backend}>"

    @property
    def external(self) -> bool:
        return self._fetch is None

    # -- public -------------------------------------------------------------------------------

    def get(self) -> str:
        """A valid token: from the cache, refreshed ahead of expiry, fetched when missing."""
        now = self.clock()
        entry = self._read()
        if entry is not None and now < entry.refresh_at:
            return entry.value
        if entry is not None and now < entry.expires_at:
            # Still valid: with a refresher thread running, callers never pay for the refresh.
            if not self.external and not self.background and self._allowed(now):
                refreshed = self._try_refresh()
                if refreshed is not None:
                    return refreshed.value
            return entry.value
        return self._obtain(reject=None).value

    def invalidate(self, failed: str) -> str:
        """WeChat rejected ``failed``: return a different valid token, refreshing only if needed."""
        log.info("%s %s was rejected by WeChat; recovering", self.kind, mask(failed))
        return self._obtain(reject=failed).value

    def peek(self) -> TokenEntry | None:
        """The cached entry, without fetching (for status pages and the CLI)."""
        return self._read()

    def refresh(self) -> TokenEntry:
        """Fetch now under the lock (``flask wxmp token --refresh``); force a new value if unchanged."""
        if self.external:
            raise TokenUnavailableError(f"{self.kind}: cannot fetch here; {self.no_fetch_reason}")
        current = self._read()
        return self._obtain(reject=current.value if current else "", force=True)

    def tick(self) -> float:
        """One refresher step: refresh if due; return the seconds until the next step."""
        now = self.clock()
        entry = self._read()
        if entry is not None and now < entry.refresh_at:
            return entry.refresh_at - now
        waiting = self.backoff.waiting(now)
        if waiting:
            return waiting
        if self._fatal is not None and now < self._fatal[1]:
            return self._fatal[1] - now
        try:
            refreshed = self._try_refresh() if entry is not None and now < entry.expires_at else None
            if refreshed is None and (entry is None or now >= entry.expires_at):
                refreshed = self._obtain(reject=None)
        except WxMPError as exc:
            log.warning("%s refresh failed (%s); next attempt in %.1fs", self.kind, exc, self._retry_in())
            return max(0.05, self._retry_in())
        if refreshed is None:
            return 0.2  # another process holds the lock: look again shortly
        return max(0.05, refreshed.refresh_at - self.clock())

    # -- the shared cache, with a process-local fallback ------------------------------------------

    def _read(self) -> TokenEntry | None:
        try:
            entry = TokenEntry.from_cache(self.store.get(self.key))
        except CacheUnavailable as exc:
            self._cache_down(exc)
            return self._local
        self._cache_up()
        if entry is not None:
            self._local = entry
        return entry

    def _write(self, entry: TokenEntry) -> None:
        self._local = entry
        try:
            self.store.set(self.key, asdict(entry), ttl=max(1.0, entry.expires_at - self.clock()))
        except CacheUnavailable as exc:
            self._cache_down(exc)
            return
        self._cache_up()

    def _cache_down(self, exc: CacheUnavailable) -> None:
        self.cache_ok = False
        now = self.clock()
        if now - self._cache_warned_at >= _CACHE_WARN_EVERY:
            self._cache_warned_at = now
            log.warning("%s: %s; using this process's copy until it is back", self.kind, exc)

    def _cache_up(self) -> None:
        # A successful read proves little (a read-only folder answers reads and refuses every
        # write): announce a recovery only once the store has written again.
        if not self.cache_ok and self.store.healthy:
            self.cache_ok = True
            log.warning("%s: the shared cache is reachable again", self.kind)

    def _lock(self) -> _FallbackLock:
        return _FallbackLock(self.store.lock(self.key, ttl=self.lock_ttl), self._local_lock, self)

    def _after_fork(self) -> None:
        # A thread of the parent may have held the local lock at fork time; the child starts clean.
        self._local_lock = threading.Lock()

    # -- fetching -------------------------------------------------------------------------------

    def _allowed(self, now: float) -> bool:
        if self._fatal is not None and now < self._fatal[1]:
            return False
        return not self.backoff.waiting(now)

    def _retry_in(self) -> float:
        now = self.clock()
        if self._fatal is not None and now < self._fatal[1]:
            return self._fatal[1] - now
        return self.backoff.waiting(now)

    def _try_refresh(self) -> TokenEntry | None:
        """Refresh ahead of expiry if the lock is free; None if another process has it."""
        lock = self._lock()
        if not lock.acquire():
            return None
        try:
            now = self.clock()
            entry = self._read()
            if entry is not None and now < entry.refresh_at:
                return entry  # someone refreshed while we looked
            try:
                return self._fetch_and_store(previous=entry, force=False)
            except WxMPError:
                if entry is not None and now < entry.expires_at:
                    return entry  # failure is logged and backed off; the old token still works
                raise
        finally:
            lock.release()

    def _obtain(self, reject: str | None, force: bool = False) -> TokenEntry:
        """Block (bounded) until a valid token other than ``reject`` is in hand."""
        # Deadlines follow the injected clock so that tests drive them with a fake one. Inside a
        # callback handler the wait is also cut to what is left of WeChat's 5 s (wxmp.deadline).
        budget = self.external_wait if self.external else self.wait
        left = remaining()
        if left is not None:
            budget = min(budget, max(0.2, left))
        deadline = self.clock() + budget
        while True:
            now = self.clock()
            entry = self._read()
            if entry is not None and entry.valid(now, reject) and not force:
                return entry
            if self.external:
                if now >= deadline:
                    raise TokenUnavailableError(
                        f"no valid {self.kind} in the shared {self.store.backend} cache; "
                        + self.no_fetch_reason
                    )
                self.sleep(0.05)
                continue
            if self._fatal is not None and now < self._fatal[1]:
                raise self._fatal[0]
            waiting = self.backoff.waiting(now)
            if waiting:
                if now + waiting > deadline:
                    raise TokenUnavailableError(
                        f"{self.kind} unavailable: fetching failed ({self._last_error}); "
                        f"next attempt in {waiting:.1f}s"
                    ) from self._last_error
                self.sleep(waiting)
                continue
            lock = self._lock()
            if lock.acquire():
                try:
                    entry = self._read()
                    now = self.clock()
                    if entry is not None and entry.valid(now, reject) and not force:
                        return entry
                    if entry is None and reject is None and self._local is not None:
                        # The cache lost our entry (flushed, restarted): put the still-good copy back
                        # rather than fetching, which on the classic endpoint would kill it for all.
                        local = self._local
                        if now < local.refresh_at:
                            self._write(local)
                            return local
                    try:
                        return self._fetch_and_store(previous=entry, force=force, reject=reject)
                    except _FATAL:
                        raise
                    except (ApiError, WxMPError):
                        continue  # the backoff now decides whether to wait or give up
                finally:
                    lock.release()
                    force = False
            if self.clock() >= deadline:
                raise TokenUnavailableError(
                    f"{self.kind}: timed out waiting for another process to refresh the token"
                )
            self.sleep(0.02 + random.random() * 0.03)

    def _fetch_and_store(
        self, previous: TokenEntry | None, force: bool, reject: str | None = None
    ) -> TokenEntry:
        assert self._fetch is not None
        self._guard_degraded_fetch()
        # The lifetime counts from when WeChat issued the token, i.e. before its answer reached us.
        started = self.clock()
        try:
            value, expires_in = self._fetch(False)
            # stable_token hands back the same token while it is valid: ask for a new one when the
            # one we have was rejected or a refresh was forced.
            if value == reject or (force and previous is not None and value == previous.value):
                value, expires_in = self._fetch(True)
        except _FATAL as exc:
            self._last_error = exc
            first = self._fatal is None or self._fatal[0].errcode != exc.errcode
            self._fatal = (exc, self.clock() + _FATAL_COOLDOWN)
            if first:
                log.error(
                    "%s fetch refused with errcode %s (%s); not retrying for %.0fs: %s",
                    self.kind, exc.errcode, type(exc).__name__, _FATAL_COOLDOWN, exc.errmsg,
                )  # fmt: skip
            raise
        except WxMPError as exc:
            self._last_error = exc
            delay = self.backoff.failed(self.clock())
            log.warning("%s fetch failed (%s); retrying in %.1fs", self.kind, exc, delay)
            raise
        self.backoff.succeeded()
        self._fatal = None
        self._last_error = None
        now = self.clock()
        expires_at = started + expires_in
        if previous is not None and value == previous.value:
            # Same token back (stable_token before its rotation window): look again halfway.
            refresh_at = now + max(0.5, (expires_at - now) / 2)
        else:
            refresh_at = started + expires_in * (1 - self.margin)
        entry = TokenEntry(value, expires_at, refresh_at, now, _HOST, os.getpid())
        self._write(entry)
        self._count_fetch()
        if value != (previous.value if previous else None):
            log.info(
                "%s refreshed: %s, expires in %ds (host %s pid %d)",
                self.kind, mask(value), expires_in, entry.host, entry.pid,
            )  # fmt: skip
            if signals.token_refreshed.receivers:
                signals.token_refreshed.send(
                    self.sender, kind=self.kind, masked=mask(value), expires_at=expires_at,
                    host=entry.host, pid=entry.pid,
                )  # fmt: skip
        return entry

    def _guard_degraded_fetch(self) -> None:
        """Without the shared cache, processes cannot coordinate. When each fetch kills the previous
        token (the classic endpoint), they would kill each other's tokens in a loop that burns the
        daily quota, so a process then fetches at most once per quarter lifetime."""
        local = self._local
        if self.cache_ok or not self.exclusive or local is None:
            return
        now = self.clock()
        if now - local.fetched_at < (local.expires_at - local.fetched_at) / 4:
            self.backoff.failed(now)
            # the reason a caller that gives up is told ("fetching failed (...)")
            self._last_error = TokenUnavailableError(
                f"{self.kind}: the shared cache is down and a classic token was fetched "
                f"{now - local.fetched_at:.0f}s ago; not fetching again yet to protect the daily quota"
            )
            raise self._last_error

    def _count_fetch(self) -> None:
        day = time.strftime("%Y%m%d", time.gmtime(self.clock() + 8 * 3600))  # WeChat's day is Beijing's
        try:
            self.store.incr(f"{self.key}:fetches:{day}", ttl=2 * 86400)
        except CacheUnavailable:
            pass

    def fetches_today(self) -> int | None:
        day = time.strftime("%Y%m%d", time.gmtime(self.clock() + 8 * 3600))
        try:
            return int(self.store.get(f"{self.key}:fetches:{day}") or 0)
        except CacheUnavailable:
            return None


class _FallbackLock:
    """The shared lock, with a process-local lock inside it (and alone when the cache is down)."""

    def __init__(self, shared: Lock, local: threading.Lock, manager: TokenManager) -> None:
        self.shared, self.local, self.manager = shared, local, manager
        self.held_local = False
        self.held_shared = False

    def acquire(self) -> bool:
        if not self.local.acquire(blocking=False):
            return False
        self.held_local = True
        try:
            self.held_shared = self.shared.acquire()
        except CacheUnavailable as exc:
            self.manager._cache_down(exc)
            return True  # degraded: this process's lock is all there is
        if not self.held_shared:
            self.local.release()
            self.held_local = False
        return self.held_shared

    def release(self) -> None:
        if self.held_shared:
            self.held_shared = False
            try:
                self.shared.release()
            except CacheUnavailable:
                pass  # its ttl frees it
        if self.held_local:
            self.held_local = False
            self.local.release()
