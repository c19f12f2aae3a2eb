"""Dedup marks per backend: one atomic operation per message, values as plain bytes.

:class:`~wxmp.dedup.Deduplicator` decides what a claim means; a store here only knows how to claim
a key, read it and record a reply on one backend, at the price of at most one atomic operation of
that backend on the request path:

=========== =================================================== ==========================================
backend     claim (the request path)                            reply (after the handler)
=========== =================================================== ==========================================
filesystem  one ``write`` to the span's file (``O_APPEND``)      queued; rides in the next claim's write
            after a ``pread`` of what others appended
redis       ``SET key PENDING NX PX lease GET`` (one round trip) ``SET PX ttl`` in the next claim's write
memcached   ``add`` (one round trip)                            ``set`` with ``noreply`` (never waited for)
simple      a dict under a lock (one process)                   the same dict
=========== =================================================== ==========================================

Keys are the SHA-256 of the logical key (so any ``EventKey`` is a legal memcached key and a file
name), under the store's namespace. Values are bytes: :data:`PENDING` or the reply's UTF-8; nothing
read from a backend is ever unpickled.
"""

from __future__ import annotations

import atexit
import base64
import collections
import contextlib
import errno
import functools
import hashlib
import os
import shutil
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Callable
from typing import Any, Protocol

from .cache import CacheUnavailable, SharedStore

__all__ = ["CONFLICT", "PENDING", "DedupStore", "open_store"]

#: The value of a claim whose reply is not recorded yet; a rendered reply never starts with NUL.
PENDING = b"\x00pending"
#: A claim lost to a mark that expired before it could be read: answered ``success``, not run twice.
GONE = b"\x00gone"

try:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError
except ImportError:  # redis is optional; without it no RedisDedupStore is made

    class ResponseError(Exception):  # type: ignore[no-redef]
        """Stands in for redis's error answer."""

    class RedisConnectionError(Exception):  # type: ignore[no-redef]
        """Stands in for redis's lost connection."""


class DedupStore(Protocol):
    """One backend's dedup marks. Every method raises :class:`CacheUnavailable` on a backend failure."""

    name: str

    def claim(self, key: str, lease: float) -> bytes | None:
        """Mark ``key`` pending for ``lease`` s if free: None if this call claimed it, else its value."""

    def read(self, key: str) -> bytes | None:
        """The value of ``key`` (:data:`PENDING` or a reply), None if absent or expired."""

    def record(self, key: str, reply: bytes, ttl: float) -> None:
        """Store the reply of a key this process claimed, kept for ``ttl`` s; never waits for the backend."""

    def release(self, key: str) -> None:
        """Give up a claim without a reply (the pending lease then lapses on its own)."""

    def flush(self) -> bool:
        """Write the recorded replies now (tests, shutdown); False if the backend could not take them."""


def digest(key: str) -> str:
    """The backend name of a logical key: fixed length, legal everywhere (memcached, file names)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def open_store(
    store: SharedStore,
    ttl: float,
    *,
    clock: Callable[[], float] = time.time,
    bind_ttl: float = 0.0,
) -> DedupStore:
    """The dedup store for ``store``'s backend (its cachelib object and namespace).

    ``clock`` is wall time (file leases and spans of the local stores). ``bind_ttl``: how long a
    store that can bind signatures to bodies (``binds``: filesystem, Redis) keeps a binding.
    """
    cache = store.cache
    backend = store.backend
    try:
        if backend == "filesystem":
            return FileDedupStore(cache._path, store.namespace, max(ttl, bind_ttl), clock=clock)  # type: ignore[attr-defined]
        if backend == "redis":
            prefix = _key_prefix(cache) + store.namespace
            return RedisDedupStore(cache._write_client, prefix, bind_ttl=bind_ttl)  # type: ignore[attr-defined]
        if backend == "memcached":
            prefix = _key_prefix(cache) + store.namespace
            return MemcachedDedupStore(cache._client, prefix)  # type: ignore[attr-defined]
        if backend == "simple":
            return MemoryDedupStore(clock=clock)
    except AttributeError:  # a cachelib subclass without the attribute we build on
        pass
    return CacheDedupStore(store)


def _key_prefix(cache: Any) -> str:
    """The cache's own key prefix when it is a string; cachelib also takes a callable, evaluated
    per call, which is not applied (the namespace keeps accounts apart)."""
    prefix = getattr(cache, "key_prefix", None)
    return prefix if isinstance(prefix, str) else ""


# -- filesystem ---------------------------------------------------------------------------------

#: Files are named by a span of at least this many seconds (and a multiple of it).
SPAN_STEP = 60
#: Bytes one file may hold; beyond it, messages run without dedup (with the usual warning) until
#: the next file starts, rather than fill the disk: about 140,000 messages with 300-byte replies, so
#: a span of the default 660 s holds some 200 messages a second (past that, dedup on Redis).
MAX_BYTES = 64 << 20
#: After a write failed (a folder that cannot be written, a full disk), claims say "unavailable" this long.
RETRY_AFTER = 5.0
#: Seconds after a file's span ended during which it is still read: a process that read the clock
#: just before the switch may append to it a moment after.
GRACE = 5.0
#: What a claim answers when its push's (timestamp, nonce, signature) came earlier with another body.
CONFLICT = b"\x00conflict"

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_LOG = os.O_RDWR | os.O_APPEND | os.O_CREAT | _CLOEXEC
#: A record: magic, kind, key, bound name, body digest, claimed at, lease until, owner, payload
#: size; then the payload and a CRC-32 of all of it. Keys and names are 20 bytes of a SHA-256
#: (zeros: none), a body digest 16.
_HEAD = struct.Struct(">BB20s20s16sddQI")
_CRC = struct.Struct(">I")
_SIZE = struct.Struct(">I")  # the payload size, the header's last field
_MAGIC = 0xA7
_CLAIM = 0x43  # "C": a claim of a key, a binding of a name to a body, or both
_REPLY = 0x52  # "R": the reply of a claim
_NONE = bytes(20)
_NOBODY = bytes(16)
_CHUNK = 1 << 16


class _Log:
    """One file as this process knows it: its descriptor, how far it was read, what it says.

    ``marks``: key -> ``[lease until, owner, payload offset (-1: pending), payload size]``;
    ``bound``: name -> body digest.
    """

    __slots__ = ("bound", "end", "fd", "marks", "offset")

    def __init__(self, fd: int, end: float) -> None:
        self.fd = fd
        self.end = end  # when its span ends
        self.offset = 0  # every byte before it is applied
        self.marks: dict[bytes, list[Any]] = {}
        self.bound: dict[bytes, bytes] = {}


class FileDedupStore:
    """Marks as records appended to one file per span: ``<cache dir>/dedup/<namespace>/<span>-<start>.log``.

    A claim is one ``write`` to the current file, opened ``O_APPEND`` (an atomic operation: the
    kernel puts each write whole at the end of the file, whichever process makes it), between two
    ``pread``\\s of what other processes appended since this one last looked. Every process applies
    the same records in the same order with the same rule (the first claim of a key wins; a claim
    made after a pending claim's lease ran out takes it over; the first reply to a pending claim is
    its reply), so all agree on who runs a message without any lock. No rename, no lock file, no
    file per message. The reply is queued and rides in the next claim's write (one ``write`` per
    message in all), or a flusher thread writes it ``flush_after`` s later if no claim comes
    first; until then a retry in this process finds it in memory and one in another process waits
    for it, as for a handler still running. A process that dies with replies still queued loses
    them: their pending marks lapse after the lease, as if it had died before answering.

    The same record can also bind a plaintext push's (timestamp, nonce, signature) to its body
    (:meth:`claim`'s ``bind``): the claim then counts only if the triple was not bound to another
    body first, so the signature-to-body check costs nothing more.

    A span lasts ``ttl`` seconds (rounded up to a minute); a lookup reads the current and the
    previous span's files, so a mark is found for at least ``ttl`` s and at most twice that. Older
    files are deleted whole, so expiry is O(1) per message and the disk holds at most three files
    per namespace, each at most ``max_bytes``. Each process keeps what the two live files say in
    memory (about 150 bytes per message; replies stay on disk). A record torn by a full disk is
    skipped by its CRC. Every process of a namespace must use the same ``ttl``.
    """

    name = "filesystem"
    #: :meth:`claim` can bind a push's signature to its body in the same write.
    binds = True
    #: The longest a recorded reply waits for a claim to ride with before it is written on its own.
    flush_after = 0.05

    def __init__(
        self,
        cache_dir: str,
        namespace: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.time,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in namespace)[:100] or "_"
        self.base = cache_dir
        self.root = os.path.join(cache_dir, "dedup", safe)
        self.span = max(1, -(-int(ttl) // SPAN_STEP)) * SPAN_STEP
        self.ttl = ttl
        self.clock = clock
        self.max_bytes = max_bytes
        self._logs: dict[int, _Log] = {}  # span start -> file
        self._current = _Log(-1, 0.0)  # replaced by the first claim's span
        self._current_start = -1
        self._previous: _Log | None = None
        self._reset()
        self._broken = ""  # why the last write failed
        self._broken_until = 0.0
        #: Set after each pass of the flusher thread (tests wait on it).
        self.flushed = threading.Event()
        try:
            self._folders(self.root)
        except CacheUnavailable as exc:  # a folder we cannot write: claims say so
            self._failed(str(exc))
        _FILE_STORES.add(self)

    def _reset(self) -> None:
        """Fresh per-process state (also in a forked child; the files and what was read stay valid)."""
        self._lock = threading.Lock()
        self._claimed: dict[str, tuple[_Log, bytes, int]] = {}  # key -> its claim made here
        self._unsent: list[tuple[_Log, bytes, bytes]] = []  # replies to write: (file, key, record)
        self._unsent_replies: dict[bytes, bytes] = {}
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        self._owner = int.from_bytes(os.urandom(8), "big")  # claims of this process: _owner + n

    def __repr__(self) -> str:
        return f"<FileDedupStore {self.root!r}>"

    def _folders(self, path: str) -> None:
        """Make ``path`` and the folders between it and the cache folder, each private (0700)."""
        parent = os.path.dirname(path)
        if parent != self.base and not os.path.isdir(parent):
            self._folders(parent)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise CacheUnavailable(f"filesystem dedup folder: {exc.strerror}") from None
        else:
            os.chmod(path, 0o700)  # whatever the umask

    def _failed(self, reason: str) -> None:
        self._broken = reason
        self._broken_until = self.clock() + RETRY_AFTER

    # -- the request path --

    def claim(self, key: str, lease: float, bind: tuple[str, bytes] | None = None) -> bytes | None:
        """None: run the message (claimed here); else its reply, :data:`PENDING` or :data:`CONFLICT`.

        ``bind``: (a push's timestamp:nonce:signature, a digest of its body), checked and recorded
        in the same write; :data:`CONFLICT` when the triple came before with another body.
        """
        return self._claim(key, lease, bind)

    def bind(self, triple: str, body: bytes) -> bool:
        """Bind ``triple`` to ``body``'s digest unless it is bound: False if bound to another body."""
        return self._claim(None, 0.0, (triple, body)) != CONFLICT

    def _claim(self, key: str | None, lease: float, bind: tuple[str, bytes] | None) -> bytes | None:
        # On every push: written for speed (one lock, lookups inline), see the class docstring.
        now = self.clock()
        if self._broken_until and now < self._broken_until:
            raise CacheUnavailable(self._broken)
        name = _NONE if key is None else _name(key)
        if bind is None:
            bound, body = _NONE, _NOBODY
        else:
            bound, body = _name(bind[0]), hashlib.sha256(bind[1]).digest()[:16]
        with self._lock:
            try:
                if now // self.span * self.span != self._current_start:
                    self._switch(int(now // self.span) * self.span)
                log = self._current
                self._sync(log)
                previous = self._previous
                if previous is not None and now < previous.end + GRACE:
                    self._sync(previous)
                if bound is not _NONE:
                    seen = log.bound.get(bound)
                    if seen is None and previous is not None:
                        seen = previous.bound.get(bound)
                    if seen is not None:
                        if seen != body:
                            return CONFLICT
                        if name is _NONE:
                            return None  # bound already, to this body
                if name is not _NONE:
                    found, mark = log, log.marks.get(name)
                    if mark is None and previous is not None:
                        found, mark = previous, previous.marks.get(name)
                    if mark is not None and (mark[2] >= 0 or mark[0] > now):
                        return self._value(found, mark, name)  # a reply, or a live claim: no write
                self._owner = owner = (self._owner + 1) & 0xFFFF_FFFF_FFFF_FFFF
                if self._append(log, _CLAIM, name, bound, body, now, now + lease, owner, b""):
                    # Nothing of others' came before it: what _apply would make of it, unread.
                    if bound is not _NONE and bound not in log.bound:
                        log.bound[bound] = body
                    if name is not _NONE:
                        mark = log.marks.get(name)
                        if mark is None or (mark[2] < 0 and mark[0] <= now):
                            log.marks[name] = [now + lease, owner, -1, 0]
                else:
                    self._sync(log)
                if bound is not _NONE and log.bound.get(bound) != body:
                    return CONFLICT  # another body's binding came first: our claim is void
                if key is None:
                    return None
                mark = log.marks.get(name)
                if mark is None:
                    raise CacheUnavailable("filesystem dedup store: a claim did not read back")
                if mark[1] != owner:
                    return self._value(log, mark, name)  # another process's claim came first
                self._claimed[key] = (log, name, owner)
            except OSError as exc:
                self._failed(f"filesystem dedup store: {exc.strerror or exc}")
                raise CacheUnavailable(self._broken) from None
            return None

    def read(self, key: str) -> bytes | None:
        name = _name(key)
        with self._lock:
            try:
                now = self.clock()
                if now // self.span * self.span != self._current_start:
                    self._switch(int(now // self.span) * self.span)
                for log in (self._current, self._previous):
                    if log is not None:
                        self._sync(log)
                        mark = log.marks.get(name)
                        if mark is not None:
                            return self._value(log, mark, name)
                return None
            except OSError as exc:
                raise CacheUnavailable(f"filesystem dedup store: {exc.strerror or exc}") from None

    def record(self, key: str, reply: bytes, ttl: float) -> None:
        """Queue the reply: it rides in this process's next claim's write, or a thread writes it
        ``flush_after`` s later if no claim comes first (a retry here finds it in memory)."""
        with self._lock:
            claimed = self._claimed.pop(key, None)
            if claimed is None:
                return
            log, name, owner = claimed
            if log.fd < 0:  # its file expired meanwhile
                return
            self._unsent.append((log, name, _record(_REPLY, name, _NONE, _NOBODY, 0.0, 0.0, owner, reply)))
            self._unsent_replies[name] = reply
            if self._flusher is None:
                self._flusher = _start_flusher(_flusher, self, self._wake)
        if not self._wake.is_set():
            self._wake.set()

    def release(self, key: str) -> None:
        with self._lock:
            self._claimed.pop(key, None)  # the lease lapses

    def _flush_queued(self) -> None:
        self.flush()  # a failure is remembered (claims say "unavailable" for a while)

    def flush(self) -> bool:
        """Write the queued replies now; False if a write failed."""
        with self._lock:
            try:
                for log in {id(log): log for log, _, _ in self._unsent}.values():
                    self._append_raw(log, b"")
            except OSError as exc:
                self._failed(f"filesystem dedup store: {exc.strerror or exc}")
                return False
        return True

    # -- the files --

    def _switch(self, start: int) -> None:
        """A new span: read the old file once more, open the new one, retire what no lookup reads."""
        for old in [s for s in self._logs if s < start - self.span]:  # out of every lookup
            log = self._logs.pop(old)
            if any(item[0] is log for item in self._unsent):
                self._append_raw(log, b"")  # replies still queued for it go first
            os.close(log.fd)
            log.fd = -1
            log.marks.clear()
            log.bound.clear()
        if self._current.fd >= 0:  # our replies queued for it, then what was appended since we looked
            if any(item[0] is self._current for item in self._unsent):
                self._append_raw(self._current, b"")
            self._sync(self._current)
        previous = start - self.span
        if previous not in self._logs:  # a new process: what the previous span's file says, if any
            try:
                fd = os.open(f"{self.root}/{self.span}-{previous}.log", _O_LOG & ~os.O_CREAT)
            except FileNotFoundError:
                pass
            else:
                self._logs[previous] = _Log(fd, start)
                self._sync(self._logs[previous])
        path = f"{self.root}/{self.span}-{start}.log"
        try:
            fd = os.open(path, _O_LOG, 0o600)
        except FileNotFoundError:  # the folder was removed under us: make it again
            self._folders(self.root)
            fd = os.open(path, _O_LOG, 0o600)
        self._logs[start] = _Log(fd, start + self.span)
        self._current, self._current_start = self._logs[start], start
        self._previous = self._logs.get(previous)
        self._delete_old(start)

    def _delete_old(self, start: int) -> None:
        """Delete the files no lookup reads any more (a listing of a few names, once a span)."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return
        for name in names:
            path = f"{self.root}/{name}"
            if name.isdigit():  # a minute folder of wxmp < 0.3 (a file per message)
                if int(name) < start - 2 * self.span:
                    shutil.rmtree(path, ignore_errors=True)
                continue
            span, _, rest = name.partition("-")
            stem = rest.removesuffix(".log")
            if stem.isdigit() and span.isdigit() and int(stem) + int(span) <= start - self.span:
                with contextlib.suppress(OSError):  # another process got there first
                    os.unlink(path)

    def _append(
        self,
        log: _Log,
        kind: int,
        name: bytes,
        bound: bytes,
        body: bytes,
        at: float,
        until: float,
        owner: int,
        payload: bytes,
    ) -> bool:
        """Append one record (after this process's queued replies to ``log``, in the same write);
        True if it landed right after what was read, with nothing of others' before it."""
        return self._append_raw(log, _record(kind, name, bound, body, at, until, owner, payload))

    def _append_raw(self, log: _Log, record: bytes) -> bool:
        unsent = self._unsent
        if not unsent:
            replies: list[tuple[_Log, bytes, bytes]] = []
            data = record
        else:
            if len(unsent) == 1 and unsent[0][0] is log:  # the usual case: the last push's reply
                replies, rest = unsent, []
            else:
                replies = [item for item in unsent if item[0] is log]
                rest = [item for item in unsent if item[0] is not log]
            data = b"".join([r for _, _, r in replies] + [record])
        if not data:
            return True
        if record and log.offset + len(data) > self.max_bytes:  # replies are owed whatever the size
            if replies:
                self._append_raw(log, b"")
            raise CacheUnavailable(f"filesystem dedup store: a file is over {self.max_bytes} bytes")
        if os.write(log.fd, data) != len(data):  # a full disk: the CRC makes readers skip what is torn
            raise OSError(errno.ENOSPC, "short write")
        start = log.offset
        if replies:
            self._unsent = rest
            for _, name, _ in replies:
                self._unsent_replies.pop(name, None)
        # O_APPEND leaves the descriptor's offset at the end of this write (or, if a forked process
        # shares the descriptor, of a later one): ending exactly one write past what was read means
        # it landed right there, with nothing before it to read.
        if os.lseek(log.fd, 0, os.SEEK_CUR) != start + len(data):
            return False
        log.offset = start + len(data)
        pos = start
        for _, name, r in replies:  # what _apply would do with our replies
            pos += len(r)
            mark = log.marks.get(name)
            size = len(r) - _HEAD.size - _CRC.size
            if mark is not None and mark[2] < 0:
                mark[2], mark[3] = pos - _CRC.size - size, size
        return True

    def _sync(self, log: _Log) -> None:
        """Apply the records appended since this process last read ``log``."""
        data = os.pread(log.fd, _CHUNK, log.offset)
        if not data:
            return
        if len(data) == _CHUNK:  # more than one read's worth
            chunks = [data]
            while chunk := os.pread(log.fd, _CHUNK, log.offset + sum(map(len, chunks))):
                chunks.append(chunk)
            data = b"".join(chunks)
        log.offset += _apply(log, data, log.offset)

    def _value(self, log: _Log, mark: list[Any], name: bytes = _NONE) -> bytes:
        if mark[2] < 0:
            return self._unsent_replies.get(name, PENDING)  # ours, not written yet; or pending
        if not mark[3]:
            return b""
        return os.pread(log.fd, mark[3], mark[2])

    def files(self) -> int:
        """Files this process has open (for tests and the flood benchmark)."""
        return len(self._logs)

    @staticmethod
    def record_size(payload: int) -> int:
        """Bytes one record with a payload of ``payload`` bytes takes on disk."""
        return _HEAD.size + payload + _CRC.size


def _name(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:20]


def _record(
    kind: int, name: bytes, bound: bytes, body: bytes, at: float, until: float, owner: int, payload: bytes
) -> bytes:
    record = _HEAD.pack(_MAGIC, kind, name, bound, body, at, until, owner, len(payload)) + payload
    return record + _CRC.pack(zlib.crc32(record))


def _start_flusher(target: Callable[[Any], None], store: Any, wake: threading.Event) -> threading.Thread:
    """A daemon thread running ``target`` on a weak reference to ``store``.

    ``wake`` is set when there is work, and also when the store is collected, so the thread ends
    at once instead of outliving its store.
    """
    thread = threading.Thread(target=target, args=(weakref.ref(store, lambda _: wake.set()),), daemon=True)
    thread.name = "wxmp-dedup-flusher"
    thread.start()
    return thread


def _flusher(ref: weakref.ref[Any]) -> None:
    """A store's flusher thread: writes (sends) the replies no claim took along within
    ``flush_after`` s (the store's ``_flush_queued``); holds its store weakly."""
    while (store := ref()) is not None:
        wake, delay = store._wake, store.flush_after
        del store
        wake.wait()
        time.sleep(delay)
        wake.clear()
        store = ref()
        if store is None:
            return
        store._flush_queued()
        store.flushed.set()
        del store


def _apply(log: _Log, data: bytes, base: int) -> int:
    """Apply the complete records at the start of ``data`` (read at file offset ``base``) to ``log``.

    Returns the bytes used; an incomplete record at the end waits for the next read. A record that
    fails its check (a write torn by a full disk) is skipped up to the next record's magic byte.
    """
    head, crc = _HEAD.size, _CRC.size
    marks, bound = log.marks, log.bound
    pos, end = 0, len(data)
    while end - pos >= head:
        magic, kind, name, binds, body, at, until, owner, size = _HEAD.unpack_from(data, pos)
        stop = pos + head + size + crc
        if magic != _MAGIC or size > MAX_BYTES:
            pos = _resync(data, pos)
            continue
        if stop > end:
            # A record still being written, unless a whole record follows: writes land whole and in
            # order, so this is what a torn write left (its size may be any bytes), not a record.
            after = _next_record(data, pos)
            if after >= 0:
                pos = after
                continue
            if end - pos > MAX_BYTES:  # cannot be a record still being written
                pos = _resync(data, pos)
                continue
            break
        if zlib.crc32(data[pos : stop - crc]) != _CRC.unpack_from(data, stop - crc)[0]:
            pos = _resync(data, pos)
            continue
        pos = stop
        if kind == _CLAIM:
            if binds != _NONE:
                seen = bound.get(binds)
                if seen is None:
                    bound[binds] = body
                elif seen != body:
                    continue  # the triple came first with another body: this claim is void
            if name != _NONE:
                mark = marks.get(name)
                if mark is None or (mark[2] < 0 and mark[0] <= at):  # new, or a lapsed lease taken over
                    marks[name] = [until, owner, -1, 0]
        elif kind == _REPLY:
            mark = marks.get(name)
            if mark is not None and mark[2] < 0:
                mark[2], mark[3] = base + stop - crc - size, size
    return pos


def _resync(data: bytes, pos: int) -> int:
    found = data.find(_MAGIC, pos + 1)
    return len(data) if found < 0 else found


def _next_record(data: bytes, pos: int) -> int:
    """Where the first whole record with a good checksum after ``pos`` starts; -1 if there is none."""
    head, crc, end = _HEAD.size, _CRC.size, len(data)
    at = data.find(_MAGIC, pos + 1)
    while 0 <= at <= end - head - crc:
        stop = at + head + _SIZE.unpack_from(data, at + head - _SIZE.size)[0] + crc
        if stop <= end and zlib.crc32(data[at : stop - crc]) == _CRC.unpack_from(data, stop - crc)[0]:
            return at
        at = data.find(_MAGIC, at + 1)
    return -1


_FILE_STORES: weakref.WeakSet[FileDedupStore] = weakref.WeakSet()


@atexit.register
def _flush_files_at_exit() -> None:
    """A clean exit writes the replies still queued (a crash loses them; see FileDedupStore)."""
    for store in list(_FILE_STORES):
        with contextlib.suppress(Exception):
            store.flush()


def _before_fork() -> None:
    for store in list(_FILE_STORES):
        store._lock.acquire()  # no fork while a thread is between a write and its read-back


def _after_fork_in_parent() -> None:
    for store in list(_FILE_STORES):
        store._lock.release()


def _after_fork_in_child() -> None:
    # The parent's claims in flight are the parent's: the child records none of them, and its own
    # claims get owners of their own. What was read of the files stays valid.
    for store in list(_FILE_STORES):
        store._reset()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


# -- redis --------------------------------------------------------------------------------------


class _Pipe:
    """A connection of our own: replies recorded but not sent yet, and answers not read yet."""

    __slots__ = ("conn", "pending", "replies", "unread", "used")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.pending: list[bytes] = []  # packed SETs of replies, sent with the next command
        self.replies = 0  # how many SETs are in pending
        self.unread = 0  # replies sent whose answers are still in the socket
        self.used = False

    def add(self, *args: Any) -> None:
        self.pending.extend(self.conn.pack_command(*args))
        self.replies += 1

    def send(self, *args: Any) -> None:
        """Send the pending replies and (if given) one command, in one write."""
        self.send_all((args,) if args else ())

    def send_all(self, commands: tuple[tuple[Any, ...], ...]) -> None:
        """Send the pending replies and ``commands``, in one write."""
        replies, sent = b"".join(self.pending), self.replies
        data = replies + b"".join(c for args in commands for c in self.conn.pack_command(*args))
        self.pending, self.replies = [], 0
        if data:
            try:
                self.conn.send_packed_command([data])
            except BaseException:  # not sent: the replies wait for the next attempt
                self.pending, self.replies = ([replies] if replies else []), sent
                raise
            self.unread += sent

    def drain(self) -> None:
        while self.unread:  # the answers to replies sent earlier on this connection
            self.unread -= 1
            with contextlib.suppress(ResponseError):
                self.conn.read_response()


class RedisDedupStore:
    """``SET NX PX GET`` claims: one round trip, one write, per message; replies ride along.

    The store keeps connections of its own (one per concurrent request, reused). ``record`` packs
    ``SET key reply PX ttl`` and leaves it on the connection; it is sent in the same write as the
    next claim on that connection, or by a flusher thread ``flush_after`` s later if no claim comes
    first, and its ``+OK`` is read during a later claim's round trip. So a message costs one
    blocking round trip, one write and two commands. A process that dies with replies not yet sent
    loses them: their pending marks lapse after the lease, as if it had died before answering.
    """

    name = "redis"
    #: The longest a recorded reply waits for a claim to ride with before it is sent on its own.
    flush_after = 0.05
    #: :meth:`claim` can bind a push's signature to its body in the same round trip.
    binds = True

    def __init__(self, client: Any, prefix: str, *, bind_ttl: float = 0.0) -> None:
        self.client = client
        self.prefix = prefix + ":dedup:"
        self.bind_ttl = bind_ttl
        self._set_get = True  # SET ... NX GET needs Redis 7.0
        self._pipes: collections.deque[_Pipe] = collections.deque()
        self._pid = os.getpid()
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        #: Set after each pass of the flusher thread (tests wait on it).
        self.flushed = threading.Event()

    def __repr__(self) -> str:
        return f"<RedisDedupStore {self.prefix!r}>"

    def _key(self, key: str) -> str:
        return self.prefix + digest(key)

    def _take(self) -> _Pipe:
        if self._pid != os.getpid():  # forked: the parent's sockets and thread are not ours
            self._pid = os.getpid()
            self._pipes = collections.deque()
            self._flusher = None
        try:
            return self._pipes.pop()
        except IndexError:
            return _Pipe(self.client.connection_pool.make_connection())

    def _use(self, op: Callable[[_Pipe], Any]) -> Any:
        """Run ``op`` on a connection; one retry when a reused connection turns out closed."""
        pipe = self._take()
        for retry in (False, True):
            try:
                result = op(pipe)
            except Exception as exc:
                pipe.unread = 0
                with contextlib.suppress(Exception):
                    pipe.conn.disconnect()  # the next command reconnects
                # A server or proxy may close an idle connection; that is no outage.
                if retry or not pipe.used or not isinstance(exc, (ConnectionError, RedisConnectionError)):
                    raise CacheUnavailable(f"redis dedup store: {type(exc).__name__}") from None
                continue
            pipe.used = True
            self._pipes.append(pipe)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def claim(self, key: str, lease: float, bind: tuple[str, bytes] | None = None) -> bytes | None:
        """None: run the message; else its reply, :data:`PENDING`, :data:`GONE` or :data:`CONFLICT`.

        ``bind``: (a push's timestamp:nonce:signature, its body): ``SET NX PX GET`` of the binding
        goes in the claim's write and its answer comes in the same round trip; :data:`CONFLICT`
        when the triple came before with another body (the claim, if it was won, is deleted).
        """
        name = self._key(key)
        px = max(1, int(lease * 1000))
        if bind is not None and self._set_get:
            claim_bound = functools.partial(self._claim_bound, name=name.encode(), px=b"%d" % px, bind=bind)
            value = self._use(claim_bound)
            if self._set_get:
                return value  # type: ignore[no-any-return]
            # Redis < 7.0 refused SET ... NX GET: the binding on its own, then the claim (below)

        def op(pipe: _Pipe) -> Any:
            conn = pipe.conn
            if self._set_get:
                pipe.send(b"SET", name.encode(), PENDING, b"NX", b"PX", b"%d" % px, b"GET")
                pipe.drain()
                try:
                    return conn.read_response()
                except ResponseError as exc:
                    if "syntax" not in str(exc).lower():
                        raise
                    self._set_get = False  # Redis < 7.0: claim, then read on a duplicate
            pipe.send("SET", name, PENDING, "NX", "PX", px)
            pipe.drain()
            if conn.read_response():
                return None
            pipe.send("GET", name)
            return conn.read_response() or GONE

        if bind is not None and not self.bind(*bind):  # Redis < 7.0: the binding on its own first
            return CONFLICT
        return self._use(op)  # type: ignore[no-any-return]

    def _claim_bound(self, pipe: _Pipe, name: bytes, px: bytes, bind: tuple[str, bytes]) -> bytes | None:
        # On every plaintext push: arguments as bytes, which redis-py packs without converting.
        bound, body = self._bound(bind)
        conn = pipe.conn
        pipe.send_all(
            (
                (
                    b"SET",
                    bound.encode(),
                    body,
                    b"NX",
                    b"PX",
                    b"%d" % max(1, int(self.bind_ttl * 1000)),
                    b"GET",
                ),
                (b"SET", name, PENDING, b"NX", b"PX", px, b"GET"),
            )
        )
        pipe.drain()
        try:
            seen = conn.read_response()
        except ResponseError as exc:
            with contextlib.suppress(ResponseError):
                conn.read_response()  # the claim's answer: the same refusal
            if "syntax" not in str(exc).lower():
                raise
            self._set_get = False  # Redis < 7.0: claim() goes on without GET
            return None
        value: bytes | None = conn.read_response()
        if seen is not None and seen != body:
            if value is None:  # this push won the claim: give it back (only an attacker gets here)
                pipe.send("DEL", name)
                conn.read_response()
            return CONFLICT
        return value

    def bind(self, triple: str, body: bytes) -> bool:
        """Bind ``triple`` to ``body``'s digest unless it is bound: False if bound to another body."""
        bound, digest = self._bound((triple, body))
        ttl = max(1, int(self.bind_ttl * 1000))

        def op(pipe: _Pipe) -> Any:
            if self._set_get:
                pipe.send("SET", bound, digest, "NX", "PX", ttl, "GET")
                pipe.drain()
                try:
                    seen = pipe.conn.read_response()
                except ResponseError as exc:
                    if "syntax" not in str(exc).lower():
                        raise
                    self._set_get = False
                else:
                    return seen is None or seen == digest
            pipe.send("SET", bound, digest, "NX", "PX", ttl)
            pipe.drain()
            if pipe.conn.read_response():
                return True
            pipe.send("GET", bound)
            return pipe.conn.read_response() in (None, digest)

        return self._use(op)  # type: ignore[no-any-return]

    def _bound(self, bind: tuple[str, bytes]) -> tuple[str, bytes]:
        return self.prefix + "bind:" + digest(bind[0]), hashlib.sha256(bind[1]).hexdigest()[:32].encode()

    def read(self, key: str) -> bytes | None:
        try:
            return self.client.get(self._key(key))  # type: ignore[no-any-return]
        except Exception as exc:
            raise CacheUnavailable(f"redis dedup store: {type(exc).__name__}") from None

    def record(self, key: str, reply: bytes, ttl: float) -> None:
        pipe = self._take()
        pipe.add(b"SET", self._key(key).encode(), reply, b"PX", b"%d" % max(1, int(ttl * 1000)))
        self._pipes.append(pipe)
        if self._flusher is None:
            self._flusher = _start_flusher(_flusher, self, self._wake)
            _UNFLUSHED.add(self)
        self._wake.set()

    def release(self, key: str) -> None:
        pass

    def _flush_queued(self) -> None:
        """Send the replies waiting on each connection; their answers are read by later claims."""
        pipes = []
        while self._pipes:
            pipe = self._pipes.pop()
            if pipe.pending:
                with contextlib.suppress(Exception):  # the next claim on it reports an outage
                    pipe.send()
            pipes.append(pipe)
        self._pipes.extend(pipes)

    def flush(self) -> bool:
        """Send every recorded reply now and read the answers; False if Redis could not be reached."""
        pipes = []
        while self._pipes:
            pipes.append(self._pipes.pop())
        ok = True
        try:
            for pipe in pipes:
                try:
                    pipe.send()
                    pipe.drain()
                except Exception:
                    ok = False
                    pipe.unread = 0
                    with contextlib.suppress(Exception):
                        pipe.conn.disconnect()
        finally:
            self._pipes.extend(pipes)
        return ok


_UNFLUSHED: weakref.WeakSet[RedisDedupStore] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """A clean exit sends the replies still waiting (a crash loses them; see RedisDedupStore)."""
    for store in list(_UNFLUSHED):
        store.flush()


# -- memcached ----------------------------------------------------------------------------------


class _RawSerde:
    """Bytes in, bytes out; a value stored with any other flags (e.g. pickled) is not ours: ignored."""

    def serialize(self, key: Any, value: Any) -> tuple[bytes, int]:
        return value, 0

    def deserialize(self, key: Any, value: bytes, flags: int) -> bytes | None:
        return value if flags == 0 else GONE


class MemcachedDedupStore:
    """``add`` claims (one round trip); replies ``set`` with ``noreply`` (sent, never waited for)."""

    name = "memcached"

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = _raw_client(client)
        safe = "".join(c if "!" <= c <= "~" else "_" for c in prefix)
        if len(safe) > 150:
            safe = digest(prefix)
        self.prefix = safe + ":dedup:"

    def __repr__(self) -> str:
        return f"<MemcachedDedupStore {self.prefix!r}>"

    def _key(self, key: str) -> str:
        return self.prefix + digest(key)

    def claim(self, key: str, lease: float) -> bytes | None:
        name = self._key(key)
        try:
            if self.client.add(name, PENDING, expire=_seconds(lease)):  # waits: default_noreply=False
                return None
            return self.client.get(name) or GONE  # type: ignore[no-any-return]
        except Exception as exc:
            raise CacheUnavailable(f"memcached dedup store: {type(exc).__name__}") from None

    def read(self, key: str) -> bytes | None:
        try:
            return self.client.get(self._key(key))  # type: ignore[no-any-return]
        except Exception as exc:
            raise CacheUnavailable(f"memcached dedup store: {type(exc).__name__}") from None

    def record(self, key: str, reply: bytes, ttl: float) -> None:
        try:
            self.client.set(self._key(key), reply, expire=_seconds(ttl), noreply=True)
        except Exception as exc:
            raise CacheUnavailable(f"memcached dedup store: {type(exc).__name__}") from None

    def release(self, key: str) -> None:
        pass

    def flush(self) -> bool:
        return True


def _seconds(ttl: float) -> int:
    return max(1, int(ttl + 0.999))


def _raw_client(client: Any) -> Any:
    """A pymemcache client to the same servers as ``client`` that never (un)pickles.

    cachelib's memcached client may carry a pickling serde; ours stores and returns raw bytes, with
    replies on (an ``add`` without a reply always "succeeds"), TCP_NODELAY (a noreply ``set`` then an
    ``add`` would otherwise meet Nagle and delayed ACK: 40 ms each) and a connection pool, so threads
    may share it. One server: a plain pooled client (a hashing client costs more per call).
    """
    from pymemcache.client.base import Client, PooledClient
    from pymemcache.client.hash import HashClient

    if isinstance(client, HashClient):
        kw = client.default_kwargs
        servers = [c.server for c in client.clients.values()]
    elif isinstance(client, (Client, PooledClient)):
        kw = {"connect_timeout": client.connect_timeout, "timeout": client.timeout}
        servers = [client.server]
    else:
        raise AttributeError("not a pymemcache client")
    options = {
        "serde": _RawSerde(),
        "connect_timeout": kw.get("connect_timeout"),
        "timeout": kw.get("timeout"),
        "default_noreply": False,
        "no_delay": True,
    }
    if len(servers) == 1:
        return PooledClient(servers[0], **options)
    return HashClient(servers, use_pooling=True, retry_attempts=1, dead_timeout=1, **options)


# -- one process --------------------------------------------------------------------------------


class MemoryDedupStore:
    """A bounded dict for one process: expired entries leave from the front, O(1) per claim."""

    name = "simple"

    def __init__(self, *, clock: Callable[[], float] = time.time, max_entries: int = 50_000) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self._data: collections.OrderedDict[str, tuple[float, bytes]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryDedupStore {len(self._data)} entries>"

    def __len__(self) -> int:
        return len(self._data)

    def claim(self, key: str, lease: float) -> bytes | None:
        now = self.clock()
        data = self._data
        with self._lock:
            for _ in range(2):  # two out per claim in: expired entries never pile up
                if not data:
                    break
                first = next(iter(data))
                if data[first][0] > now:
                    break
                del data[first]
            found = data.get(key)
            if found is not None and found[0] > now:
                return found[1]
            data[key] = (now + lease, PENDING)
            data.move_to_end(key)
            if len(data) > self.max_entries:
                data.popitem(last=False)
            return None

    def read(self, key: str) -> bytes | None:
        found = self._data.get(key)
        if found is None or found[0] <= self.clock():
            return None
        return found[1]

    def record(self, key: str, reply: bytes, ttl: float) -> None:
        with self._lock:
            self._data[key] = (self.clock() + ttl, reply)
            self._data.move_to_end(key)

    def release(self, key: str) -> None:
        pass

    def flush(self) -> bool:
        return True


# -- any other cachelib cache -------------------------------------------------------------------


def _text(data: bytes) -> str:
    """Bytes as the plain text a :class:`SharedStore` keeps (it stores JSON values only)."""
    return base64.b64encode(data).decode("ascii")


def _bytes(value: object) -> bytes:
    """The bytes of a value :func:`_text` stored; anything else is not ours (:data:`GONE`)."""
    if not isinstance(value, str):
        return GONE
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return GONE


class CacheDedupStore:
    """Through :class:`SharedStore`'s own ``add``/``get``/``set``, for caches wxmp has no fast path for."""

    name = "cache"

    def __init__(self, store: SharedStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"<CacheDedupStore {self.store!r}>"

    def claim(self, key: str, lease: float) -> bytes | None:
        name = "dedup:" + digest(key)
        if self.store.add(name, _text(PENDING), lease):
            return None
        return _bytes(self.store.get(name))

    def read(self, key: str) -> bytes | None:
        value = self.store.get("dedup:" + digest(key))
        return None if value is None else _bytes(value)

    def record(self, key: str, reply: bytes, ttl: float) -> None:
        self.store.set("dedup:" + digest(key), _text(reply), ttl)

    def release(self, key: str) -> None:
        pass

    def flush(self) -> bool:
        return True
