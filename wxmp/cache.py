"""The shared cache: ``WXMP_CACHE`` -> a cachelib backend, plus the atomic operations wxmp needs.

Tokens, refresh locks and dedup marks all live in one :class:`SharedStore`. cachelib gives get/set;
what it does not give portably is atomicity across processes, so each backend gets its own:

========== ================================== ======================================
backend    lock                               atomic add (dedup)
========== ================================== ======================================
redis      ``SET key owner NX PX ttl``        ``SET NX EX``
memcached  ``add`` (with replies on)          ``add``
filesystem ``fcntl.flock`` on a lock file     the lock, then get/set
simple     ``threading.Lock`` (one process)   the lock, then get/set
========== ================================== ======================================
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

from cachelib import BaseCache, FileSystemCache, MemcachedCache, RedisCache, SimpleCache

from .errors import ConfigError, WxMPError

__all__ = ["CacheUnavailable", "Lock", "SharedStore", "resolve_cache"]

_THRESHOLD = 10_000
_DEDUP_THRESHOLD = 50_000
_ADD_STRIPES = 64


class CacheUnavailable(WxMPError):
    """The shared cache backend did not answer (Redis down, memcached unreachable...)."""


class Lock(Protocol):
    """A non-blocking cross-process lock with an expiry."""

    def acquire(self) -> bool: ...

    def release(self) -> None: ...


def resolve_cache(spec: Any, default_dir: str) -> BaseCache:
    """Turn a ``WXMP_CACHE`` value into a cachelib cache.

    ``None`` gives a filesystem cache under ``default_dir`` (the app's instance path), shared by
    every process of the host with no server to install.
    """
    if isinstance(spec, BaseCache):
        return spec
    if spec is None:
        return FileSystemCache(default_dir, threshold=_THRESHOLD, default_timeout=0)
    if not isinstance(spec, str):
        raise ConfigError("WXMP_CACHE", f"must be a cachelib cache or a string, not {type(spec).__name__}")
    if spec == "simple":
        return SimpleCache(threshold=_THRESHOLD, default_timeout=0)
    if spec.startswith("filesystem:"):
        path = spec[len("filesystem:") :]
        if not path:
            raise ConfigError("WXMP_CACHE", "filesystem: needs a directory, e.g. filesystem:/var/cache/wxmp")
        return FileSystemCache(path, threshold=_THRESHOLD, default_timeout=0)
    scheme = urlsplit(spec).scheme
    if scheme in ("redis", "rediss", "unix"):
        try:
            import redis
        except ImportError:
            raise ConfigError("WXMP_CACHE", "redis:// needs the redis package: pip install 'wxmp[redis]'")
        client = redis.Redis.from_url(spec, socket_timeout=2.0, socket_connect_timeout=2.0)
        return RedisCache(host=client, default_timeout=0)
    if scheme == "memcached":
        try:
            from pymemcache import serde
            from pymemcache.client.hash import HashClient
        except ImportError:
            raise ConfigError("WXMP_CACHE", "memcached:// needs pymemcache: pip install 'wxmp[memcached]'")
        servers = []
        for part in spec[len("memcached://") :].split(","):
            host, _, port = part.strip().rstrip("/").rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError("WXMP_CACHE", "memcached:// takes host:port[,host:port...]")
            servers.append((host, int(port)))
        # default_noreply=False: without replies, add() always "succeeds" and locks are not locks.
        client = HashClient(
            servers,
            serde=serde.pickle_serde,
            default_noreply=False,
            connect_timeout=2.0,
            timeout=2.0,
            retry_attempts=1,
            dead_timeout=1,
        )
        return MemcachedCache(servers=client, default_timeout=0)
    raise ConfigError(
        "WXMP_CACHE",
        f"unknown cache {_safe(spec)!r}: use filesystem:PATH, redis://..., memcached://host:port, "
        "simple, or a cachelib cache instance",
    )


def _safe(spec: str) -> str:
    """Drop a password from a cache URL before showing it."""
    parts = urlsplit(spec)
    if parts.password:
        return spec.replace(parts.password, "***")
    return spec


def backend_name(cache: BaseCache) -> str:
    if isinstance(cache, RedisCache):
        return "redis"
    if isinstance(cache, MemcachedCache):
        return "memcached"
    if isinstance(cache, FileSystemCache):
        return "filesystem"
    if isinstance(cache, SimpleCache):
        return "simple"
    return type(cache).__name__


class SharedStore:
    """One app's view of the shared cache: namespaced keys, locks, atomic add.

    Every method raises :class:`CacheUnavailable` when the backend cannot be reached, so callers
    handle one exception type whatever the backend.
    """

    def __init__(self, cache: BaseCache, namespace: str = "wxmp") -> None:
        self.cache = cache
        self.namespace = namespace
        self.backend = backend_name(cache)
        self._local_locks: dict[str, threading.Lock] = {}
        self._local_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"<SharedStore {self.backend} {self.namespace!r}>"

    def for_messages(self) -> SharedStore:
        """The store for dedup marks: a separate cache for the local backends.

        The filesystem and simple caches prune entries beyond a threshold; with a flood of
        message ids in the same cache, pruning could evict the token. Redis and memcached
        are shared as they are.
        """
        cache = self.cache
        if self.backend == "filesystem":
            path = os.path.join(cache._path, "messages")  # type: ignore[attr-defined]
            cache = FileSystemCache(path, threshold=_DEDUP_THRESHOLD, default_timeout=0)
        elif self.backend == "simple":
            cache = SimpleCache(threshold=_DEDUP_THRESHOLD, default_timeout=0)
        else:
            return self
        return SharedStore(cache, self.namespace)

    def key(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except CacheUnavailable:
            raise
        except Exception as exc:  # every backend has its own exception types
            raise CacheUnavailable(f"{self.backend} cache unavailable: {type(exc).__name__}") from None

    def get(self, name: str) -> Any:
        with self._errors():
            return self.cache.get(self.key(name))

    def set(self, name: str, value: Any, ttl: float = 0) -> None:
        with self._errors():
            ok = self.cache.set(self.key(name), value, timeout=_ttl(ttl))
        if ok is False and self.backend in ("filesystem", "memcached"):
            raise CacheUnavailable(f"{self.backend} cache refused a write")

    def delete(self, name: str) -> None:
        with self._errors():
            self.cache.delete(self.key(name))

    def incr(self, name: str, ttl: float) -> int:
        """Add one to a counter (statistics: atomic on Redis and memcached, best effort elsewhere)."""
        key = self.key(name)
        with self._errors():
            if self.backend == "redis":
                client = self.cache._write_client  # type: ignore[attr-defined]
                pipe = client.pipeline()
                pipe.incr(key)
                pipe.expire(key, _ttl(ttl), nx=True)
                return int(pipe.execute()[0])
            value = int(self.cache.get(key) or 0) + 1
            self.cache.set(key, value, timeout=_ttl(ttl))
            return value

    def add(self, name: str, value: Any, ttl: float) -> bool:
        """Store ``value`` only if ``name`` is absent (or expired); True if this call stored it."""
        key = self.key(name)
        with self._errors():
            if self.backend == "redis":
                client = self.cache._write_client  # type: ignore[attr-defined]
                dump = self.cache.serializer.dumps(value)  # type: ignore[attr-defined]
                return bool(client.set(key, dump, nx=True, px=max(1, int(ttl * 1000))))
            if self.backend == "memcached":
                return bool(self.cache.add(key, value, timeout=_ttl(ttl)))
        # One of a fixed set of lock stripes: a lock per key would leave a lock file (or a
        # threading.Lock) behind for every message ever deduplicated.
        stripe = zlib.crc32(name.encode("utf-8")) % _ADD_STRIPES
        lock = self.lock(f"add-stripe-{stripe}", ttl=5)
        deadline = time.monotonic() + 5
        while not lock.acquire():
            if time.monotonic() > deadline:
                raise CacheUnavailable(f"{self.backend} cache: add lock timed out")
            time.sleep(0.001)
        try:
            with self._errors():
                if self.cache.get(key) is not None:
                    return False
                self.cache.set(key, value, timeout=_ttl(ttl))
                return True
        finally:
            lock.release()

    def lock(self, name: str, ttl: float) -> Lock:
        """A non-blocking lock named ``name``; it frees itself after ``ttl`` seconds if its holder dies."""
        key = self.key("lock:" + name)
        if self.backend == "redis":
            return _RedisLock(self, key, ttl)
        if self.backend == "memcached":
            return _MemcachedLock(self, key, ttl)
        if self.backend == "filesystem":
            return _FileLock(self, key)
        with self._local_guard:
            lk = self._local_locks.setdefault(key, threading.Lock())
        return _ThreadLock(lk)


def _ttl(ttl: float) -> int:
    """cachelib timeouts are whole seconds and 0 means forever: round up, never to 0.

    One second more, because the filesystem and memcached backends count from ``int(time())``
    and would otherwise drop an entry up to a second before the expiry it carries.
    """
    if ttl <= 0:
        return 0
    return max(1, int(ttl + 0.999)) + 1


_REDIS_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class _RedisLock:
    def __init__(self, store: SharedStore, key: str, ttl: float) -> None:
        self.store, self.key, self.ttl = store, key, ttl
        self.owner = uuid.uuid4().hex.encode()
        self.client = store.cache._write_client  # type: ignore[attr-defined]

    def acquire(self) -> bool:
        with self.store._errors():
            return bool(self.client.set(self.key, self.owner, nx=True, px=max(1, int(self.ttl * 1000))))

    def release(self) -> None:
        # Only the owner deletes: after our ttl lapsed, the lock may already be someone else's.
        with self.store._errors():
            self.client.eval(_REDIS_RELEASE, 1, self.key, self.owner)


class _MemcachedLock:
    def __init__(self, store: SharedStore, key: str, ttl: float) -> None:
        self.store, self.key, self.ttl = store, key, ttl
        self.owner = uuid.uuid4().hex

    def acquire(self) -> bool:
        with self.store._errors():
            return bool(self.store.cache.add(self.key, self.owner, timeout=_ttl(self.ttl)))

    def release(self) -> None:
        with self.store._errors():
            if self.store.cache.get(self.key) == self.owner:
                self.store.cache.delete(self.key)


class _FileLock:
    """``flock`` on a file beside the cache entries; the kernel frees it when the holder dies."""

    def __init__(self, store: SharedStore, key: str) -> None:
        self.store = store
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        self.path = os.path.join(store.cache._path, safe + ".lock")  # type: ignore[attr-defined]
        self.fd: int | None = None

    def acquire(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CacheUnavailable(f"filesystem cache unavailable: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class _ThreadLock:
    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.held = False

    def acquire(self) -> bool:
        self.held = self.lock.acquire(blocking=False)
        return self.held

    def release(self) -> None:
        if self.held:
            self.held = False
            self.lock.release()
