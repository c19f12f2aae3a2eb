"""Dedup marks per backend: one atomic operation per message, values as plain bytes.

:class:`~wxmp.dedup.Deduplicator` decides what a claim means; a store here only knows how to claim
a key, read it and record a reply on one backend, at the price of at most one atomic operation of
that backend on the request path (the filesystem's costs none: its writes are done by a thread):

=========== =================================================== ==========================================
backend     claim (the request path)                            reply (after the handler)
=========== =================================================== ==========================================
filesystem  a dict lookup and one ``open(O_RDONLY)``; a writer   the writer thread writes it into the file
            thread creates the file (``O_CREAT|O_EXCL``) 50 ms
            later, in a per-minute folder
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
import fcntl
import hashlib
import os
import struct
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from .cache import CacheUnavailable, SharedStore

__all__ = ["PENDING", "DedupStore", "open_store"]

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

    def claim(self, key: str, lease: float, created: float | None = None) -> bytes | None:
        """Mark ``key`` pending for ``lease`` s if it is free: None if this call claimed it, else its value.

        ``created`` (the message's CreateTime) lets the filesystem store find every delivery of one
        message in the same folder.
        """

    def read(self, key: str, created: float | None = None) -> bytes | None:
        """The value of ``key`` (:data:`PENDING` or a reply), None if absent or expired."""

    def record(self, key: str, reply: bytes, ttl: float) -> None:
        """Store the reply of a key this process claimed, kept for ``ttl`` s; never waits for the backend."""

    def release(self, key: str) -> None:
        """Give up a claim without a reply (the pending lease then lapses on its own)."""

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the recorded replies are written (tests, shutdown); False on timeout."""


def digest(key: str) -> str:
    """The backend name of a logical key: fixed length, legal everywhere (memcached, file names)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def open_store(
    store: SharedStore,
    ttl: float,
    *,
    clock: Callable[[], float] = time.time,
) -> DedupStore:
    """The dedup store for ``store``'s backend (its cachelib object and namespace).

    ``clock`` is wall time (file leases and time folders of the local stores).
    """
    cache = store.cache
    backend = store.backend
    try:
        if backend == "filesystem":
            return FileDedupStore(cache._path, store.namespace, ttl, clock=clock)  # type: ignore[attr-defined]
        if backend == "redis":
            prefix = (getattr(cache, "key_prefix", None) or "") + store.namespace
            return RedisDedupStore(cache._write_client, prefix)  # type: ignore[attr-defined]
        if backend == "memcached":
            prefix = (getattr(cache, "key_prefix", None) or "") + store.namespace
            return MemcachedDedupStore(cache._client, prefix)  # type: ignore[attr-defined]
        if backend == "simple":
            return MemoryDedupStore(clock=clock)
    except AttributeError:  # a cachelib subclass without the attribute we build on
        pass
    return CacheDedupStore(store)


# -- filesystem ---------------------------------------------------------------------------------

#: Width of a time folder, seconds.
BUCKET = 60
#: A message's CreateTime picks its folder, so every delivery of a message lands in the same one,
#: when it lies between ttl seconds ago and this many seconds ahead of our clock (clock skew).
#: Otherwise (a skewed or forged CreateTime) our clock picks the folder.
SLACK = 60
#: Deletions done per file written while an expired folder is being removed: more than the one
#: file each message creates, so removal keeps up with any flood.
DELETES_PER_CLAIM = 2
#: Files one process may hold in the live folders; beyond it, messages run without dedup (with the
#: usual warning) rather than filling the disk.
MAX_FILES = 200_000
#: After a write failed (a folder that cannot be written), claims say "unavailable" this long.
RETRY_AFTER = 5.0

_REPLY = struct.Struct(">cI")  # b"R", length: a reader tells a reply from a half-written one
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_CLAIM = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC


class _Mark:
    """One message this process claimed: its file, its value, and whether the writer owes it a write."""

    __slots__ = ("lost", "made", "on_disk", "path", "queued", "start", "value")

    def __init__(self, path: str, start: int, made: float, on_disk: bool = False) -> None:
        self.path = path
        self.start = start  # its time folder
        self.value = PENDING
        self.made = made  # when the lease started
        self.queued = False
        self.on_disk = on_disk  # the file exists on our behalf: the reply goes into it
        self.lost = False  # another process created the file first: we write nothing


class FileDedupStore:
    """Marks as small files under ``<cache dir>/dedup/<namespace>/<minute>/<sha256>``, written later.

    The request path only *reads*: a claim looks in this process's unwritten marks (a dict), then
    opens the mark file other processes may have written (``open(O_RDONLY)``; usually ``ENOENT``).
    The new mark and, later, the reply are handed to one writer thread per store and process, which
    creates the files (``O_CREAT|O_EXCL``, 0600) in batches ``flush_after`` s after the first
    change, well before WeChat's next attempt (5 s after a delivery). Until then the mark exists
    only in this process: a process that dies before its writer ran loses those marks, and a retry
    of such a message runs the handler again (see :mod:`wxmp.dedup`); two processes that get the
    same message within ``flush_after`` s of each other both run it (WeChat never does that).

    A mark lives ``ttl`` s past its message's CreateTime and at least a minute past its claim. The
    writer removes whole expired minute folders, two files per file it writes, so nothing scans a
    folder per message and the number of files stays bounded by the messages of ``ttl`` + 3 minutes.
    """

    name = "filesystem"
    #: Seconds from the first unwritten change to the writer's pass (batches the writes).
    flush_after = 0.05

    def __init__(
        self,
        cache_dir: str,
        namespace: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.time,
        max_files: int = MAX_FILES,
    ) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in namespace)[:100] or "_"
        self.base = cache_dir
        self.root = os.path.join(cache_dir, "dedup", safe)
        self.ttl = ttl
        self.clock = clock
        self.max_files = max_files
        self._reset()
        #: Set after each pass of the writer (tests wait on it).
        self.flushed = threading.Event()
        self._broken = ""  # why the last write failed
        self._broken_until = 0.0
        try:
            self._folders(self.root)
        except CacheUnavailable as exc:  # a folder we cannot write: claims say so
            self._failed(str(exc))
        _FILE_STORES.add(self)

    def _reset(self) -> None:
        """Fresh per-process state (also in a forked child: the parent writes its own marks)."""
        self._lock = threading.Lock()  # guards the dicts and the queue; never held across I/O
        self._writing = threading.Lock()  # one writer pass at a time
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._local: dict[str, _Mark] = {}  # path -> a mark not (completely) written yet
        self._claimed: dict[str, _Mark] = {}  # key -> a mark claimed here, reply not recorded yet
        self._queue: list[_Mark] = []
        self._swept = -1  # the minute of the last look for expired folders
        self._doomed: list[str] = []  # expired folders being removed
        self._scan: Any = None  # os.scandir iterator of _doomed[0]
        self._made: dict[int, int] = {}  # files this process created, per live folder
        self._files = 0

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

    def _folder(self, created: float | None, now: float) -> int:
        t = created if created is not None and now - self.ttl <= created <= now + SLACK else now
        return int(t // BUCKET) * BUCKET

    def _path(self, key: str, created: float | None, now: float) -> tuple[int, str]:
        start = self._folder(created, now)
        return start, f"{self.root}/{start}/{digest(key)}"

    # -- the request path: reads only --

    def claim(self, key: str, lease: float, created: float | None = None) -> bytes | None:
        now = self.clock()
        if self._broken_until and now < self._broken_until:
            raise CacheUnavailable(self._broken)
        start, path = self._path(key, created, now)
        with self._lock:
            mark = self._local.get(path)
            if mark is not None:
                if mark.value is not PENDING or mark.made + lease > now:
                    return mark.value
                mark.made = now  # this process's own claim lapsed (released or too slow): run again
                self._claimed[key] = mark
                return None
        value = self._read_file(path, lease, now)
        if value is not None:
            if value is _TAKEN:
                with self._lock:
                    self._claimed[key] = _Mark(path, start, now, on_disk=True)
                return None
            return value
        if self._files >= self.max_files:
            raise CacheUnavailable(f"filesystem dedup store holds {self._files} files, over its limit")
        mark = _Mark(path, start, now)
        with self._lock:
            if path in self._local:  # another thread of this process claimed it meanwhile
                return self._local[path].value
            self._local[path] = mark
            self._claimed[key] = mark
            self._made[start] = self._made.get(start, 0) + 1
            self._files += 1
            self._enqueue(mark)
        return None

    def _read_file(self, path: str, lease: float, now: float) -> bytes | None:
        """The value another process wrote (None: no file); :data:`_TAKEN` if we took its lapsed lease."""
        try:
            fd = os.open(path, os.O_RDONLY | _CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheUnavailable(f"filesystem dedup store: {exc.strerror}") from None
        try:
            value = _read_value(fd)
            if value is not PENDING or os.fstat(fd).st_mtime + lease > now:
                return value
            # The claimer died (or is slower than the lease): take the claim over, one taker at a
            # time. Only after a crash, so the one write on the request path that remains.
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                value = _read_value(fd)
                if value is not PENDING or os.fstat(fd).st_mtime + lease > self.clock():
                    return value
                now = self.clock()
                os.utime(path, (now, now))
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            return _TAKEN
        except OSError as exc:
            raise CacheUnavailable(f"filesystem dedup store: {exc.strerror}") from None
        finally:
            os.close(fd)

    def read(self, key: str, created: float | None = None) -> bytes | None:
        now = self.clock()
        paths = [self._path(key, created, now)[1]]
        if created is not None:  # created drifted out of SLACK while we waited
            paths.append(self._path(key, None, now)[1])
        for path in paths:
            mark = self._local.get(path)
            if mark is not None:
                return mark.value
            value = self._read_path(path)
            if value is not None:
                return value
        return None

    def _read_path(self, path: str) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | _CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheUnavailable(f"filesystem dedup store: {exc.strerror}") from None
        try:
            return _read_value(fd)
        finally:
            os.close(fd)

    def record(self, key: str, reply: bytes, ttl: float) -> None:
        with self._lock:
            mark = self._claimed.pop(key, None)
            if mark is None:
                return
            mark.value = reply
            self._local[mark.path] = mark
            self._enqueue(mark)

    def release(self, key: str) -> None:
        with self._lock:
            self._claimed.pop(key, None)  # its pending mark stays (and is written): the lease lapses

    def _enqueue(self, mark: _Mark) -> None:
        """Queue ``mark`` for the writer (under ``_lock``); starts the writer in this process if needed."""
        if not mark.queued:
            mark.queued = True
            self._queue.append(mark)
        if self._writer is None:
            self._writer = threading.Thread(target=_file_writer, args=(weakref.ref(self),), daemon=True)
            self._writer.name = "wxmp-dedup-writer"
            self._writer.start()
        if not self._wake.is_set():
            self._wake.set()

    # -- the writer --

    def flush(self, timeout: float = 5.0) -> bool:
        """Write every queued mark now (tests, exit); False if a write failed or another pass held on."""
        if not self._writing.acquire(timeout=timeout):
            return False
        try:
            return self._write_queued()
        finally:
            self._writing.release()

    def _write_queued(self) -> bool:
        """One pass: write the queued marks, then remove some expired files. False if a write failed."""
        with self._lock:
            batch, self._queue = self._queue, []
        ok = True
        created = 0
        for mark in batch:
            with self._lock:
                mark.queued = False
                value = mark.value
            try:
                created += self._write(mark, value)
            except (OSError, CacheUnavailable) as exc:
                ok = False
                self._failed(f"filesystem dedup store: {getattr(exc, 'strerror', None) or exc}")
            with self._lock:
                if not mark.queued and self._local.get(mark.path) is mark:
                    del self._local[mark.path]  # written: other processes and retries read the file
        self._expire(self.clock(), max(1, created) * DELETES_PER_CLAIM)
        return ok

    def _write(self, mark: _Mark, value: bytes) -> int:
        """Write one mark; 1 if it created a file."""
        if mark.lost:
            return 0
        data = b"" if value is PENDING else _REPLY.pack(b"R", len(value)) + value
        if mark.on_disk:
            if data:
                fd = os.open(mark.path, os.O_WRONLY | _CLOEXEC)
                try:
                    os.pwrite(fd, data, 0)
                finally:
                    os.close(fd)
            return 0
        try:
            fd = os.open(mark.path, _O_CLAIM, 0o600)
        except FileNotFoundError:
            self._folders(mark.path[: mark.path.rfind("/")])
            fd = os.open(mark.path, _O_CLAIM, 0o600)
        except FileExistsError:
            # Another process claimed the same message within our flush delay: its mark stays.
            mark.lost = True
            return 0
        try:
            if data:
                os.write(fd, data)
        finally:
            os.close(fd)
        mark.on_disk = True
        return 1

    # -- expiry: O(1) per file written, in the writer --

    def _expire(self, now: float, budget: int) -> None:
        minute = int(now // BUCKET)
        if minute != self._swept:
            self._swept = minute
            self._find_expired(now)
        if self._doomed:
            self._delete_some(budget)

    def _find_expired(self, now: float) -> None:
        """Once a minute: folders whose every mark is older than ttl (a listing of a few names)."""
        horizon = now - self.ttl - SLACK - BUCKET
        try:
            names = os.listdir(self.root)
        except OSError:
            return
        for name in names:
            if name.isdigit() and int(name) <= horizon:
                path = f"{self.root}/{name}"
                if path not in self._doomed:
                    self._doomed.append(path)
        with self._lock:
            for start in [s for s in self._made if s <= horizon]:
                self._files -= self._made.pop(start)

    def _delete_some(self, budget: int) -> None:
        done = 0
        while self._doomed and done < budget:
            folder = self._doomed[0]
            if self._scan is None:
                try:
                    self._scan = os.scandir(folder)
                except OSError:
                    self._doomed.pop(0)
                    continue
            entry = next(self._scan, None)
            if entry is None:
                self._scan.close()
                self._scan = None
                self._doomed.pop(0)
                try:
                    os.rmdir(folder)
                except OSError:
                    pass  # another process got there first, or is still deleting
                continue
            try:
                os.unlink(entry.path)
            except OSError:
                pass  # another process removed it
            done += 1

    def pending_deletions(self) -> int:
        """Expired folders not yet removed (for tests and the flood benchmark)."""
        return len(self._doomed)

    def pending_writes(self) -> int:
        """Marks queued for the writer (for tests)."""
        return len(self._queue)


#: Returned by ``_read_file`` when this process took over a lapsed claim.
_TAKEN = b"\x00taken"

_FILE_STORES: weakref.WeakSet[FileDedupStore] = weakref.WeakSet()


def _file_writer(ref: weakref.ref[FileDedupStore]) -> None:
    """The writer thread of one store: a pass ``flush_after`` s after each wake; holds its store weakly."""
    while (store := ref()) is not None:
        wake = store._wake
        del store
        if not wake.wait(30):
            continue
        store = ref()
        delay = store.flush_after if store is not None else 0.0
        del store
        time.sleep(delay)  # let a batch gather
        store = ref()
        if store is None or store._wake is not wake:
            return  # gone, or forked: the child has a writer of its own
        wake.clear()
        with contextlib.suppress(Exception):  # a failure is recorded; never let the thread die
            store.flush(timeout=30)
        store.flushed.set()
        del store


def _flush_files_at_exit() -> None:
    """A clean exit writes the marks still queued (a crash loses them; see FileDedupStore)."""
    for store in list(_FILE_STORES):
        with contextlib.suppress(Exception):
            store.flush(timeout=2.0)


def _before_fork() -> None:
    for store in list(_FILE_STORES):
        store._lock.acquire()  # no fork while a thread is inside the dicts


def _after_fork_in_parent() -> None:
    for store in list(_FILE_STORES):
        store._lock.release()


def _after_fork_in_child() -> None:
    # The writer did not survive the fork and the parent writes its own queued marks: the child
    # starts empty, with fresh locks, and gets its own writer with its first claim.
    for store in list(_FILE_STORES):
        store._reset()


atexit.register(_flush_files_at_exit)
os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


def _read_value(fd: int) -> bytes:
    """A file's value: a complete reply, or PENDING (empty, or a reply still being written)."""
    data = os.pread(fd, 65536, 0)
    if len(data) == 65536:
        chunks = [data]
        while chunk := os.pread(fd, 1 << 20, sum(len(c) for c in chunks)):
            chunks.append(chunk)
        data = b"".join(chunks)
    if len(data) >= _REPLY.size:
        tag, size = _REPLY.unpack_from(data)
        if tag == b"R" and len(data) >= _REPLY.size + size:
            return data[_REPLY.size : _REPLY.size + size]
    return PENDING


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
        replies, sent = b"".join(self.pending), self.replies
        data = replies + b"".join(self.conn.pack_command(*args)) if args else replies
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

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix + ":dedup:"
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

    def claim(self, key: str, lease: float, created: float | None = None) -> bytes | None:
        name = self._key(key)
        px = max(1, int(lease * 1000))

        def op(pipe: _Pipe) -> Any:
            conn = pipe.conn
            if self._set_get:
                pipe.send("SET", name, PENDING, "NX", "PX", px, "GET")
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

        return self._use(op)  # type: ignore[no-any-return]

    def read(self, key: str, created: float | None = None) -> bytes | None:
        try:
            return self.client.get(self._key(key))  # type: ignore[no-any-return]
        except Exception as exc:
            raise CacheUnavailable(f"redis dedup store: {type(exc).__name__}") from None

    def record(self, key: str, reply: bytes, ttl: float) -> None:
        pipe = self._take()
        pipe.add("SET", self._key(key), reply, "PX", max(1, int(ttl * 1000)))
        self._pipes.append(pipe)
        if self._flusher is None:
            self._flusher = threading.Thread(target=_flusher, args=(weakref.ref(self),), daemon=True)
            self._flusher.name = "wxmp-dedup-flusher"
            self._flusher.start()
            _UNFLUSHED.add(self)
        self._wake.set()

    def release(self, key: str) -> None:
        pass

    def flush(self, timeout: float = 5.0) -> bool:
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


def _flusher(ref: weakref.ref[RedisDedupStore]) -> None:
    """Sends replies no claim took along within ``flush_after`` s; holds its store weakly."""
    while (store := ref()) is not None:
        wake, delay = store._wake, store.flush_after
        del store
        if not wake.wait(30):
            continue
        time.sleep(delay)
        wake.clear()
        store = ref()
        if store is None:
            return
        pipes = []
        while store._pipes:
            pipe = store._pipes.pop()
            if pipe.pending:
                with contextlib.suppress(Exception):  # the next claim on it reports an outage
                    pipe.send()
            pipes.append(pipe)
        store._pipes.extend(pipes)
        store.flushed.set()
        del store


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

    def claim(self, key: str, lease: float, created: float | None = None) -> bytes | None:
        name = self._key(key)
        try:
            if self.client.add(name, PENDING, expire=_seconds(lease), noreply=False):
                return None
            return self.client.get(name) or GONE  # type: ignore[no-any-return]
        except Exception as exc:
            raise CacheUnavailable(f"memcached dedup store: {type(exc).__name__}") from None

    def read(self, key: str, created: float | None = None) -> bytes | None:
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

    def flush(self, timeout: float = 5.0) -> bool:
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

    def claim(self, key: str, lease: float, created: float | None = None) -> bytes | None:
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

    def read(self, key: str, created: float | None = None) -> bytes | None:
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

    def flush(self, timeout: float = 5.0) -> bool:
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

    def claim(self, key: str, lease: float, created: float | None = None) -> bytes | None:
        name = "dedup:" + digest(key)
        if self.store.add(name, _text(PENDING), lease):
            return None
        return _bytes(self.store.get(name))

    def read(self, key: str, created: float | None = None) -> bytes | None:
        value = self.store.get("dedup:" + digest(key))
        return None if value is None else _bytes(value)

    def record(self, key: str, reply: bytes, ttl: float) -> None:
        self.store.set("dedup:" + digest(key), _text(reply), ttl)

    def release(self, key: str) -> None:
        pass

    def flush(self, timeout: float = 5.0) -> bool:
        return True
