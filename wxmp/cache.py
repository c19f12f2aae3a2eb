"""The shared cache: ``WXMP_CACHE`` -> a cachelib backend, plus the atomic operations wxmp needs.

Tokens, tickets, refresh locks, counters and callback marks all live in one :class:`SharedStore`.
``SharedStore.cache`` is the cachelib object (it names the backend and holds its connection), but
wxmp's own entries never go through cachelib's get/set: cachelib pickles values, and unpickling
what another tenant of a shared Redis, or anyone who can write to a cache folder, planted there
runs their code in every worker. The store keeps **plain data** instead (JSON bytes) through each
backend's raw client, and a value it cannot decode is a miss.

One backend object is chosen when the store is built:

========== ======================== =================================== ===========================
backend    raw storage              lock                                atomic add / incr
========== ======================== =================================== ===========================
redis      the redis client         ``SET key owner NX PX ttl``         ``SET NX PX`` / ``INCR``
memcached  pymemcache, plain serde  ``add`` (with replies on)           ``add`` / ``incr``
filesystem one small file per key   ``fcntl.flock`` on a lock file      a striped lock, then r/w
simple     a dict (one process)     ``threading.Lock``                  the dict's lock
========== ======================== =================================== ===========================

Every key is made safe for every backend (memcached refuses spaces, control characters and keys
over 250 bytes): a long or unusual key is replaced by its SHA-256. Network backends get short
timeouts (0.5 s) and a backend that timed out is not asked again for a few seconds (a circuit
breaker), so a Redis that drops packets costs one short wait, not one per call; failures are
logged at most once a minute. A cache folder created by wxmp is private (0700), and one that
other users may write to is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import struct
import tempfile
import threading
import time
import uuid
import weakref
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

from cachelib import BaseCache, FileSystemCache, MemcachedCache, RedisCache, SimpleCache

from .errors import CacheUnavailable, ConfigError

__all__ = ["CacheUnavailable", "Lock", "SharedStore", "resolve_cache"]

log = logging.getLogger("wxmp.cache")

_THRESHOLD = 10_000
_DEDUP_THRESHOLD = 50_000
_ADD_STRIPES = 64
#: Network caches answer on a LAN in milliseconds; a callback has 5 s in all (WeChat's 接收普通消息 page,
#: developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html).
_NET_TIMEOUT = 0.5
#: After a failure, the backend is not asked again for this long (calls fail at once).
_COOLDOWN = 5.0
_WARN_EVERY = 60.0
_SAFE_KEY = re.compile(r"[A-Za-z0-9:_.\-]{1,200}")
_MAX_VALUE = 4 << 20


class Lock(Protocol):
    """A non-blocking cross-process lock with an expiry."""

    def acquire(self) -> bool: ...

    def release(self) -> None: ...


# -- resolving WXMP_CACHE -------------------------------------------------------------------------


def local_cache() -> SimpleCache:
    """A cache private to this process, bounded to 10,000 entries (the oldest are pruned first)."""
    return SimpleCache(threshold=_THRESHOLD, default_timeout=0)


def resolve_cache(spec: Any, default_dir: str) -> BaseCache:
    """Turn a ``WXMP_CACHE`` value into a cachelib cache.

    ``None`` gives a filesystem cache under ``default_dir`` (the app's instance path), shared by
    every process of the host with no server to install.
    """
    if isinstance(spec, BaseCache):
        return spec
    if spec is None:
        return private_filesystem_cache(default_dir)
    if not isinstance(spec, str):
        raise ConfigError("WXMP_CACHE", f"must be a cachelib cache or a string, not {type(spec).__name__}")
    if spec == "simple":
        return local_cache()
    if spec.startswith("filesystem:"):
        path = spec[len("filesystem:") :]
        if not path:
            raise ConfigError("WXMP_CACHE", "filesystem: needs a directory, e.g. filesystem:/var/cache/wxmp")
        return private_filesystem_cache(path)
    scheme = urlsplit(spec).scheme
    if scheme in ("redis", "rediss", "unix"):
        try:
            import redis
        except ImportError:
            raise ConfigError(
                "WXMP_CACHE", "redis:// needs the redis package: pip install 'flask-wxmp[redis]'"
            ) from None
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # Short timeouts and no retries: the circuit breaker decides when to ask again.
        try:
            client = redis.Redis.from_url(
                spec,
                socket_timeout=_NET_TIMEOUT,
                socket_connect_timeout=_NET_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:  # redis-py's own words on a malformed URL, without the URL itself
            raise ConfigError(
                "WXMP_CACHE", f"not a valid Redis URL ({exc}); expected redis://[:password@]host:port/db"
            ) from None
        return RedisCache(host=client, default_timeout=0)
    if scheme == "memcached":
        try:
            from pymemcache.client.hash import HashClient
        except ImportError:
            raise ConfigError(
                "WXMP_CACHE", "memcached:// needs pymemcache: pip install 'flask-wxmp[memcached]'"
            ) from None
        servers = []
        for part in spec[len("memcached://") :].split(","):
            host, _, port = part.strip().rstrip("/").rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError("WXMP_CACHE", "memcached:// takes host:port[,host:port...]")
            servers.append((host, int(port)))
        # default_noreply=False: without replies, add() always "succeeds" and locks are not locks.
        client = HashClient(
            servers,
            serde=PlainSerde(),
            default_noreply=False,
            connect_timeout=_NET_TIMEOUT,
            timeout=_NET_TIMEOUT,
            retry_attempts=1,
            dead_timeout=1,
        )
        return MemcachedCache(servers=client, default_timeout=0)
    raise ConfigError(
        "WXMP_CACHE",
        f"unknown cache {_safe(spec)!r}: use filesystem:PATH, redis://..., memcached://host:port, "
        "simple, or a cachelib cache instance",
    )


def private_filesystem_cache(path: str) -> FileSystemCache:
    """A cachelib FileSystemCache on ``path``, created 0700 whatever the umask.

    An existing folder that others may write to is refused: whoever can write there can plant
    entries (and, for caches that unpickle, code) for every worker.
    """
    created = False
    try:
        os.makedirs(path, mode=0o700)
        created = True
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError("WXMP_CACHE", f"cannot create the cache folder {path}: {exc.strerror}") from None
    if created:
        os.chmod(path, 0o700)  # makedirs applies the umask; under umask 000 it would not matter
    check_private_dir(path)
    # threshold=0: cachelib would otherwise write its entry-count file at once (and log a traceback
    # when the folder is read-only). wxmp never stores through cachelib; _FileBackend sweeps.
    return FileSystemCache(path, threshold=0, default_timeout=0)


def check_private_dir(path: str) -> None:
    """Refuse a cache folder that is group- or world-writable (a sticky bit does not help here)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError("WXMP_CACHE", f"cannot use the cache folder {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise ConfigError("WXMP_CACHE", f"{path} is not a folder")
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            "WXMP_CACHE",
            f"the cache folder {path} is writable by other users (mode {stat.S_IMODE(mode):o}); "
            f"anyone who can write there controls the cached tokens: run `chmod 700 {path}`",
        )


def _safe(spec: str) -> str:
    """Drop a password from a cache URL before showing it."""
    parts = urlsplit(spec)
    if parts.password:
        return spec.replace(parts.password, "***")
    return spec


class PlainSerde:
    """A pymemcache serde that never unpickles: bytes, text, integers and JSON only.

    A value written with another serde's pickle flag reads back as ``None`` (a miss).
    """

    _BYTES, _INT, _TEXT, _JSON = 0, 2, 16, 256

    def serialize(self, key: Any, value: Any) -> tuple[bytes, int]:
        if isinstance(value, bytes):
            return value, self._BYTES
        if isinstance(value, str):
            return value.encode("utf-8"), self._TEXT
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value).encode(), self._INT
        return json.dumps(value, ensure_ascii=False).encode("utf-8"), self._JSON

    def deserialize(self, key: Any, value: bytes, flags: int) -> Any:
        try:
            if flags == self._BYTES:
                return value
            if flags == self._TEXT:
                return value.decode("utf-8")
            if flags == self._INT:
                return int(value)
            if flags == self._JSON:
                return json.loads(value)
        except ValueError:
            return None
        return None  # pickled or compressed by some other client: not ours, never loaded


# -- the backends -----------------------------------------------------------------------------------


class _Backend:
    """Raw bytes in and out for one kind of cache; the store adds keys, JSON and the breaker."""

    name = "?"

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def set(self, key: str, data: bytes, ttl: float) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def add(self, key: str, data: bytes, ttl: float) -> bool:
        raise NotImplementedError

    def incr(self, key: str, ttl: float) -> int:
        raise NotImplementedError

    def lock(self, key: str, ttl: float) -> Lock:
        """A raw lock (its errors are the backend's; the store turns them into CacheUnavailable)."""
        raise NotImplementedError

    def for_messages(self) -> BaseCache | None:
        """A separate cache for callback marks, or None to share this one."""
        return None


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


def _ttl(ttl: float) -> int:
    """Whole seconds for memcached, where 0 means forever: round up, never to 0.

    One second more, because memcached counts from whole seconds and would otherwise drop an
    entry up to a second before the expiry it carries.
    """
    if ttl <= 0:
        return 0
    return max(1, int(ttl + 0.999)) + 1


class _RedisBackend(_Backend):
    name = "redis"

    def __init__(self, cache: RedisCache) -> None:
        self.write = cache._write_client  # type: ignore[attr-defined]
        self.read = cache._read_client  # type: ignore[attr-defined]

    def get(self, key: str) -> bytes | None:
        value = self.read.get(key)
        return value if isinstance(value, bytes) else None

    def set(self, key: str, data: bytes, ttl: float) -> None:
        self.write.set(key, data, px=_ms(ttl) if ttl > 0 else None)

    def delete(self, key: str) -> None:
        self.write.delete(key)

    def add(self, key: str, data: bytes, ttl: float) -> bool:
        return bool(self.write.set(key, data, nx=True, px=_ms(ttl)))

    def incr(self, key: str, ttl: float) -> int:
        pipe = self.write.pipeline()
        pipe.incr(key)
        pipe.pexpire(key, _ms(ttl), nx=True)
        return int(pipe.execute()[0])

    def lock(self, key: str, ttl: float) -> Lock:
        return _RedisLock(self.write, key, ttl)


class _MemcachedBackend(_Backend):
    name = "memcached"

    def __init__(self, cache: MemcachedCache) -> None:
        self.client = cache._client  # type: ignore[attr-defined]
        serde = getattr(self.client, "serde", None) or getattr(self.client, "default_kwargs", {}).get("serde")
        if not isinstance(serde, PlainSerde):
            log.warning(
                "wxmp: this MemcachedCache's client may unpickle what it reads; give WXMP_CACHE as "
                "'memcached://host:port' so wxmp builds a client that never does"
            )

    def get(self, key: str) -> bytes | None:
        value = self.client.get(key)
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, int):
            return str(value).encode()
        return value if isinstance(value, bytes) else None

    def set(self, key: str, data: bytes, ttl: float) -> None:
        if not self.client.set(key, data, expire=_ttl(ttl), noreply=False):
            raise CacheUnavailable("memcached cache refused a write")

    def delete(self, key: str) -> None:
        self.client.delete(key, noreply=False)

    def add(self, key: str, data: bytes, ttl: float) -> bool:
        return bool(self.client.add(key, data, expire=_ttl(ttl), noreply=False))

    def incr(self, key: str, ttl: float) -> int:
        value = self.client.incr(key, 1, noreply=False)
        if value is None:
            if self.client.add(key, b"1", expire=_ttl(ttl), noreply=False):
                return 1
            value = self.client.incr(key, 1, noreply=False)
        return int(value or 1)

    def lock(self, key: str, ttl: float) -> Lock:
        return _AddLock(self, key, ttl)


_MAGIC = b"wxmp1\n"
_HEADER = struct.Struct("!d")  # the expiry (time.time()), 0 for none
_SWEEP_EVERY = 256


class _FileBackend(_Backend):
    """One file per key in the cache folder: ``<sha256>.wxmp`` = magic, expiry, JSON bytes.

    Writes go to a temporary file renamed into place, so readers see a whole value or none.
    Expired files are removed every few hundred writes, so nothing grows without bound.
    """

    name = "filesystem"

    def __init__(self, cache: FileSystemCache) -> None:
        self.path: str = cache._path  # type: ignore[attr-defined]
        check_private_dir(self.path)
        self._writes = 0

    def file(self, key: str) -> str:
        return os.path.join(self.path, hashlib.sha256(key.encode("utf-8")).hexdigest()[:40] + ".wxmp")

    def get(self, key: str) -> bytes | None:
        return _read_entry(self.file(key), time.time())

    def set(self, key: str, data: bytes, ttl: float) -> None:
        expires = time.time() + ttl if ttl > 0 else 0.0
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + _HEADER.pack(expires) + data)
            os.replace(tmp, self.file(key))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            self.sweep()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.file(key))

    @contextlib.contextmanager
    def _striped(self, key: str) -> Iterator[None]:
        # One of a fixed set of lock stripes: a lock per key would leave a lock file behind for
        # every message ever deduplicated.
        stripe = zlib.crc32(key.encode("utf-8")) % _ADD_STRIPES
        lock = _FileLock(self.path, f"add-stripe-{stripe}")
        deadline = time.monotonic() + 5
        while not lock.acquire():
            if time.monotonic() > deadline:
                raise CacheUnavailable("filesystem cache: add lock timed out")
            time.sleep(0.001)
        try:
            yield
        finally:
            lock.release()

    def add(self, key: str, data: bytes, ttl: float) -> bool:
        with self._striped(key):
            if self.get(key) is not None:
                return False
            self.set(key, data, ttl)
            return True

    def incr(self, key: str, ttl: float) -> int:
        with self._striped(key):
            value = _load(self.get(key))
            count = (value if isinstance(value, int) and not isinstance(value, bool) else 0) + 1
            self.set(key, _dump(count), ttl)
            return count

    def lock(self, key: str, ttl: float) -> Lock:
        return _FileLock(self.path, key)

    def for_messages(self) -> BaseCache | None:
        return private_filesystem_cache(os.path.join(self.path, "messages"))

    def sweep(self) -> int:
        """Remove expired entries (only wxmp's own ``.wxmp`` files); returns how many."""
        now, removed = time.time(), 0
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.endswith(".wxmp") and _read_entry(entry.path, now) is None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
        return removed


def _read_entry(path: str, now: float) -> bytes | None:
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_VALUE)
    except FileNotFoundError:
        return None
    head = len(_MAGIC) + _HEADER.size
    if len(raw) < head or not raw.startswith(_MAGIC):
        return None  # not an entry wxmp wrote: never interpreted
    (expires,) = _HEADER.unpack_from(raw, len(_MAGIC))
    if expires and now >= expires:
        return None
    return raw[head:]


class _LocalData:
    """The entries of a ``simple`` cache: a dict of (expiry, bytes) under a lock, pruned at a threshold."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.entries: dict[str, tuple[float, bytes]] = {}
        self.lock = threading.Lock()
        self.locks: dict[str, threading.Lock] = {}

    def get(self, key: str, now: float) -> bytes | None:
        found = self.entries.get(key)
        if found is None or (found[0] and now >= found[0]):
            return None
        return found[1]

    def put(self, key: str, data: bytes, ttl: float, now: float) -> None:
        if key not in self.entries and len(self.entries) >= self.threshold:
            self.prune(now)
        self.entries[key] = (now + ttl if ttl > 0 else 0.0, data)

    def prune(self, now: float) -> None:
        for key in [k for k, (exp, _) in self.entries.items() if exp and now >= exp]:
            del self.entries[key]
        excess = len(self.entries) - self.threshold + 1
        for key in list(self.entries)[: max(0, excess)]:  # oldest first (dicts keep insertion order)
            del self.entries[key]


_LOCAL: weakref.WeakKeyDictionary[BaseCache, _LocalData] = weakref.WeakKeyDictionary()
_LOCAL_GUARD = threading.Lock()


class _SimpleBackend(_Backend):
    """A process-local dict per SimpleCache object (two stores on one SimpleCache share it)."""

    name = "simple"

    def __init__(self, cache: SimpleCache) -> None:
        with _LOCAL_GUARD:
            data = _LOCAL.get(cache)
            if data is None:
                data = _LOCAL[cache] = _LocalData(int(getattr(cache, "_threshold", _THRESHOLD) or _THRESHOLD))
        self.data = data

    def get(self, key: str) -> bytes | None:
        with self.data.lock:
            return self.data.get(key, time.time())

    def set(self, key: str, data: bytes, ttl: float) -> None:
        with self.data.lock:
            self.data.put(key, data, ttl, time.time())

    def delete(self, key: str) -> None:
        with self.data.lock:
            self.data.entries.pop(key, None)

    def add(self, key: str, data: bytes, ttl: float) -> bool:
        with self.data.lock:
            now = time.time()
            if self.data.get(key, now) is not None:
                return False
            self.data.put(key, data, ttl, now)
            return True

    def incr(self, key: str, ttl: float) -> int:
        with self.data.lock:
            now = time.time()
            value = _load(self.data.get(key, now))
            count = (value if isinstance(value, int) and not isinstance(value, bool) else 0) + 1
            self.data.put(key, _dump(count), ttl, now)
            return count

    def lock(self, key: str, ttl: float) -> Lock:
        with self.data.lock:
            lk = self.data.locks.setdefault(key, threading.Lock())
        return _ThreadLock(lk)

    def for_messages(self) -> BaseCache | None:
        return SimpleCache(threshold=_DEDUP_THRESHOLD, default_timeout=0)


class _CachelibBackend(_Backend):
    """Any other cachelib cache: wxmp stores bytes through its API (its own serialisation applies)."""

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache
        self.name = type(cache).__name__
        log.warning(
            "wxmp: %s is not one of wxmp's backends; values go through its own serialisation, "
            "which may unpickle what others write there",
            self.name,
        )

    def get(self, key: str) -> bytes | None:
        value = self.cache.get(key)
        return value if isinstance(value, bytes) else None

    def set(self, key: str, data: bytes, ttl: float) -> None:
        if self.cache.set(key, data, timeout=_ttl(ttl)) is False:
            raise CacheUnavailable(f"{self.name} cache refused a write")

    def delete(self, key: str) -> None:
        self.cache.delete(key)

    def add(self, key: str, data: bytes, ttl: float) -> bool:
        return bool(self.cache.add(key, data, timeout=_ttl(ttl)))

    def incr(self, key: str, ttl: float) -> int:
        value = _load(self.get(key))
        count = (value if isinstance(value, int) and not isinstance(value, bool) else 0) + 1
        self.set(key, _dump(count), ttl)
        return count

    def lock(self, key: str, ttl: float) -> Lock:
        return _AddLock(self, key, ttl)


def _backend_for(cache: BaseCache) -> _Backend:
    if isinstance(cache, RedisCache):
        return _RedisBackend(cache)
    if isinstance(cache, MemcachedCache):
        return _MemcachedBackend(cache)
    if isinstance(cache, FileSystemCache):
        return _FileBackend(cache)
    if isinstance(cache, SimpleCache):
        return _SimpleBackend(cache)
    return _CachelibBackend(cache)


# -- plain data -------------------------------------------------------------------------------------


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _load(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:  # UnicodeDecodeError included
        raise _Foreign from None


class _Foreign(Exception):
    """A value that is not wxmp's plain data."""


class _Breaker:
    """Stop asking a backend that just failed, for ``cooldown`` seconds; warn at most once a minute."""

    def __init__(
        self, name: str, clock: Callable[[], float], cooldown: float, warned: list[float] | None = None
    ) -> None:
        self.name = name
        self.clock = clock
        self.cooldown = cooldown
        self.open_until: float | None = None
        self.reason = ""
        #: When the last warning was logged; shared with the store's message store (one cause,
        #: one warning a minute).
        self.warned: list[float] = warned if warned is not None else []
        #: False from a failure until a write succeeds again: reads alone do not prove recovery
        #: (a read-only folder answers reads and refuses every write).
        self.writable = True
        self.lock = threading.Lock()

    def check(self) -> None:
        until = self.open_until
        if until is not None and self.clock() < until:
            raise CacheUnavailable(
                f"{self.name} cache unavailable: {self.reason} (not asked again for a few seconds)"
            )

    def failed(self, reason: str, slow: bool) -> None:
        """Record a failure; only a slow one (a timeout) opens the breaker: a refusal costs nothing."""
        with self.lock:
            now = self.clock()
            if slow:
                self.open_until = now + self.cooldown
            self.reason = reason
            self.writable = False
            if self.warned and now - self.warned[0] < _WARN_EVERY:
                return
            self.warned[:] = [now]
        log.warning(
            "wxmp: the shared %s cache failed (%s); each process keeps its own token copy and WeChat's "
            "retries are not deduplicated until it works again%s",
            self.name, reason, f"; not asking it again for {self.cooldown:.0f}s" if slow else "",
        )  # fmt: skip

    def succeeded(self, write: bool) -> None:
        self.open_until = None
        if write:
            self.writable = True


# -- the store ----------------------------------------------------------------------------------------


class SharedStore:
    """One app's view of the shared cache: namespaced safe keys, plain values, locks, atomic add.

    Every method raises :class:`CacheUnavailable` when the backend cannot be reached (or failed
    within the last few seconds), so callers handle one exception type whatever the backend.
    ``probe`` writes, reads and deletes one entry at once, so a cache that cannot be written is
    reported by one warning at start rather than discovered on the first message.
    """

    def __init__(
        self,
        cache: BaseCache,
        namespace: str = "wxmp",
        *,
        probe: bool = True,
        clock: Callable[[], float] = time.monotonic,
        cooldown: float | None = None,
        _warned: list[float] | None = None,
    ) -> None:
        self.cache = cache
        self.namespace = namespace
        self._backend = _backend_for(cache)
        self.backend = self._backend.name
        self._clock = clock
        self._breaker = _Breaker(self.backend, clock, _COOLDOWN if cooldown is None else cooldown, _warned)
        self._foreign_warned_at: float | None = None
        if probe:
            self.probe()

    def __repr__(self) -> str:
        return f"<SharedStore {self.backend} {self.namespace!r}>"

    @property
    def healthy(self) -> bool:
        """False after a failure until a write succeeds again."""
        return self._breaker.writable

    def resting(self) -> bool:
        """True while the breaker is open (the backend just timed out): callers should not ask it now."""
        until = self._breaker.open_until
        return until is not None and self._breaker.clock() < until

    def probe(self) -> bool:
        """Write, read back and delete one entry; False (and one warning) if the cache cannot."""
        name = f"probe:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        try:
            self.set(name, 1, ttl=30)
            ok = self.get(name) == 1
            self.delete(name)
        except CacheUnavailable:
            return False
        if not ok:
            self._breaker.failed("a value written could not be read back", slow=False)
        return ok

    def for_messages(self) -> SharedStore:
        """The store for callback marks: a separate cache for the local backends.

        The filesystem and simple caches prune entries beyond a threshold; with a flood of
        message ids in the same cache, pruning could evict the token. Redis and memcached
        are shared as they are.
        """
        cache = self._backend.for_messages()
        if cache is None:
            return self
        return SharedStore(
            cache,
            self.namespace,
            probe=False,
            clock=self._clock,
            cooldown=self._breaker.cooldown,
            _warned=self._breaker.warned,
        )

    def key(self, name: str) -> str:
        """The backend key of ``name``: namespaced, and hashed when it is long or has unusual characters."""
        full = f"{self.namespace}:{name}"
        if _SAFE_KEY.fullmatch(full):
            return full
        digest = hashlib.sha256(full.encode("utf-8")).hexdigest()
        if _SAFE_KEY.fullmatch(self.namespace) and len(self.namespace) <= 100:
            return f"{self.namespace}:#{digest}"  # '#' never appears in an unhashed key
        return f"wxmp:#{digest}"

    @contextlib.contextmanager
    def _guard(self, write: bool = False) -> Iterator[None]:
        self._breaker.check()
        try:
            yield
        except CacheUnavailable as exc:
            self._breaker.failed(str(exc), slow=False)
            raise
        except Exception as exc:  # every backend has its own exception types
            reason = type(exc).__name__
            if isinstance(exc, OSError) and exc.strerror:
                reason = f"{reason}: {exc.strerror}"
            # redis-py's TimeoutError is not the builtin one; both mean "we waited".
            slow = isinstance(exc, TimeoutError) or "Timeout" in reason
            self._breaker.failed(reason, slow)
            raise CacheUnavailable(f"{self.backend} cache unavailable: {reason}") from None
        else:
            self._breaker.succeeded(write)

    def _decode(self, name: str, data: bytes | None) -> Any:
        try:
            return _load(data)
        except _Foreign:
            now = self._clock()
            if self._foreign_warned_at is None or now - self._foreign_warned_at >= _WARN_EVERY:
                self._foreign_warned_at = now
                log.warning(
                    "wxmp: ignored a value under %r that wxmp did not write (not plain data); "
                    "is another program writing to this cache?",
                    name[:80],
                )
            return None

    def get(self, name: str) -> Any:
        with self._guard():
            data = self._backend.get(self.key(name))
        return self._decode(name, data)

    def set(self, name: str, value: Any, ttl: float = 0) -> None:
        data = _dump(value)
        with self._guard(write=True):
            self._backend.set(self.key(name), data, ttl)

    def delete(self, name: str) -> None:
        with self._guard(write=True):
            self._backend.delete(self.key(name))

    def incr(self, name: str, ttl: float) -> int:
        """Add one to a counter (atomic on every backend but a foreign cachelib cache)."""
        with self._guard(write=True):
            return self._backend.incr(self.key(name), ttl)

    def add(self, name: str, value: Any, ttl: float) -> bool:
        """Store ``value`` only if ``name`` is absent (or expired); True if this call stored it."""
        data = _dump(value)
        with self._guard(write=True):
            return self._backend.add(self.key(name), data, ttl)

    def lock(self, name: str, ttl: float) -> Lock:
        """A non-blocking lock named ``name``; it frees itself after ``ttl`` seconds if its holder dies."""
        return _GuardedLock(self, self._backend.lock(self.key("lock:" + name), ttl))


_REDIS_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class _GuardedLock:
    """A backend's raw lock behind the store's breaker and error translation."""

    def __init__(self, store: SharedStore, raw: Lock) -> None:
        self.store, self.raw = store, raw

    def acquire(self) -> bool:
        with self.store._guard(write=True):
            return self.raw.acquire()

    def release(self) -> None:
        with self.store._guard(write=True):
            self.raw.release()


class _RedisLock:
    def __init__(self, client: Any, key: str, ttl: float) -> None:
        self.client, self.key, self.ttl = client, key, ttl
        self.owner = uuid.uuid4().hex.encode()

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.owner, nx=True, px=_ms(self.ttl)))

    def release(self) -> None:
        # Only the owner deletes: after our ttl lapsed, the lock may already be someone else's.
        self.client.eval(_REDIS_RELEASE, 1, self.key, self.owner)


class _AddLock:
    """A lock made of ``add`` with an expiry (memcached and foreign caches)."""

    def __init__(self, backend: _Backend, key: str, ttl: float) -> None:
        self.backend, self.key, self.ttl = backend, key, ttl
        self.owner = uuid.uuid4().hex.encode()

    def acquire(self) -> bool:
        return self.backend.add(self.key, self.owner, self.ttl)

    def release(self) -> None:
        if self.backend.get(self.key) == self.owner:
            self.backend.delete(self.key)


class _FileLock:
    """``flock`` on a file beside the cache entries; the kernel frees it when the holder dies."""

    def __init__(self, folder: str, key: str) -> None:
        self.path = os.path.join(folder, hashlib.sha256(key.encode("utf-8")).hexdigest()[:40] + ".lock")
        self.fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
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
