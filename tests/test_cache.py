from __future__ import annotations

import errno
import multiprocessing as mp
import os
import shutil
import signal

import pytest
from cachelib import BaseCache, FileSystemCache, MemcachedCache, RedisCache, SimpleCache

from wxmp import CacheUnavailable, ConfigError, SharedStore
from wxmp.cache import resolve_cache


def test_resolve_strings(tmp_path):
    assert isinstance(resolve_cache("simple", str(tmp_path)), SimpleCache)
    fs = resolve_cache(f"filesystem:{tmp_path}/c", str(tmp_path))
    assert isinstance(fs, FileSystemCache)
    assert isinstance(resolve_cache("redis://127.0.0.1:1/0", str(tmp_path)), RedisCache)
    assert isinstance(resolve_cache("memcached://127.0.0.1:1", str(tmp_path)), MemcachedCache)
    default = resolve_cache(None, str(tmp_path / "instance"))
    assert isinstance(default, FileSystemCache)
    assert (tmp_path / "instance").is_dir()
    mine = SimpleCache()
    assert resolve_cache(mine, str(tmp_path)) is mine


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("mongodb://x", "unknown cache"),
        ("filesystem:", "needs a directory"),
        ("memcached://nohost", "host:port"),
        (42, "cachelib cache or a string"),
    ],
)
def test_resolve_errors_name_the_key(tmp_path, spec, words):
    with pytest.raises(ConfigError, match=words) as info:
        resolve_cache(spec, str(tmp_path))
    assert info.value.key == "WXMP_CACHE"


def test_unknown_cache_error_hides_a_password(tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve_cache("weird://user:hunter2@host", str(tmp_path))
    assert "hunter2" not in str(info.value)


@pytest.fixture(params=["simple", "filesystem", "redis", "memcached"])
def store(request, tmp_path):
    kind = request.param
    if kind == "simple":
        spec = "simple"
    elif kind == "filesystem":
        spec = f"filesystem:{tmp_path}/cache"
    elif kind == "redis":
        spec = request.getfixturevalue("redis_url")
    else:
        spec = request.getfixturevalue("memcached_server").url
    return SharedStore(resolve_cache(spec, str(tmp_path)), namespace=f"t{os.getpid()}")


def test_get_set_delete_roundtrip(store):
    store.set("k", {"value": "中文", "n": 1}, ttl=30)
    assert store.get("k") == {"value": "中文", "n": 1}
    store.delete("k")
    assert store.get("k") is None


def test_add_is_first_writer_wins(store):
    assert store.add("m", "first", ttl=30) is True
    assert store.add("m", "second", ttl=30) is False
    assert store.get("m") == "first"


def test_lock_is_exclusive_and_released(store):
    a = store.lock("refresh", ttl=10)
    b = store.lock("refresh", ttl=10)
    assert a.acquire() is True
    assert b.acquire() is False
    a.release()
    assert b.acquire() is True
    b.release()


def test_incr_counts(store):
    assert store.incr("c", ttl=60) == 1
    assert store.incr("c", ttl=60) == 2


def _hold_lock_forever(spec, tmp, namespace, ready):
    store = SharedStore(resolve_cache(spec, tmp), namespace=namespace)
    lock = store.lock("refresh", ttl=1)
    assert lock.acquire()
    ready.set()
    signal.pause()


@pytest.mark.parametrize("kind", ["filesystem", "redis"])
def test_lock_of_a_killed_holder_frees_itself(kind, tmp_path, request):
    spec = f"filesystem:{tmp_path}/cache" if kind == "filesystem" else request.getfixturevalue("redis_url")
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_lock_forever, args=(spec, str(tmp_path), "kill", ready))
    proc.start()
    try:
        assert ready.wait(20)
        store = SharedStore(resolve_cache(spec, str(tmp_path)), namespace="kill")
        assert store.lock("refresh", ttl=1).acquire() is False  # really held across processes
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        # flock is freed by the kernel at once; the Redis lock when its 1 s ttl lapses.
        lock = store.lock("refresh", ttl=1)
        import time

        deadline = time.monotonic() + 5
        while not lock.acquire():
            assert time.monotonic() < deadline, "lock never freed after its holder died"
            time.sleep(0.05)
    finally:
        if proc.is_alive():
            proc.kill()


def test_redis_lock_release_only_by_owner(redis_url, tmp_path):
    store = SharedStore(resolve_cache(redis_url, str(tmp_path)), namespace="own")
    a = store.lock("x", ttl=0.2)
    assert a.acquire()
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete("own:lock:x")  # a's ttl "lapsed"; b takes the lock
    b = store.lock("x", ttl=10)
    assert b.acquire()
    a.release()  # must not free b's lock
    assert store.lock("x", ttl=10).acquire() is False


def test_dead_backend_raises_one_exception_type(tmp_path):
    from wxmp.testing.servers import free_port

    store = SharedStore(resolve_cache(f"redis://127.0.0.1:{free_port()}/0", str(tmp_path)))
    with pytest.raises(CacheUnavailable, match="redis cache unavailable"):
        store.get("k")
    with pytest.raises(CacheUnavailable):
        store.lock("k", ttl=1).acquire()


def test_add_leaves_no_file_or_lock_per_key(tmp_path):
    store = SharedStore(resolve_cache(f"filesystem:{tmp_path}/c", str(tmp_path)))
    for i in range(300):
        assert store.add(f"dedup:{i}", "x", ttl=60)
    lock_files = [p for p in (tmp_path / "c").iterdir() if p.suffix == ".lock"]
    assert len(lock_files) <= 64
    simple = SharedStore(SimpleCache())
    for i in range(300):
        simple.add(f"dedup:{i}", "x", ttl=60)
    assert len(simple._backend.data.locks) <= 64


@pytest.mark.parametrize("kind", ["filesystem", "simple"])
def test_message_marks_live_apart_from_the_token(kind, tmp_path):
    # The local caches prune beyond a threshold; a flood of message ids in the token's cache
    # could evict the token, so dedup marks get a cache of their own.
    spec = f"filesystem:{tmp_path}/c" if kind == "filesystem" else "simple"
    store = SharedStore(resolve_cache(spec, str(tmp_path)))
    messages = store.for_messages()
    assert messages.cache is not store.cache
    store.set("token", "T", ttl=7200)

    def token_cache_entries():
        if kind == "simple":
            return len(store._backend.data.entries)
        return sum(1 for p in (tmp_path / "c").iterdir() if p.is_file() and p.suffix != ".lock")

    before = token_cache_entries()
    for i in range(200):
        assert messages.add(f"dedup:{i}", "x", ttl=300)
    assert token_cache_entries() == before
    assert store.get("token") == "T"


def test_shared_servers_keep_one_store(redis_url, tmp_path):
    store = SharedStore(resolve_cache(redis_url, str(tmp_path)))
    assert store.for_messages() is store


# -- what a WXMP_CACHE value resolves to, and its refusals ----------------------------------------


def refusal(spec, tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve_cache(spec, str(tmp_path))
    assert info.value.key == "WXMP_CACHE"
    return info.value.problem


def test_refusals_say_what_to_write_instead(tmp_path):
    assert refusal(42, tmp_path) == "must be a cachelib cache or a string, not int"
    assert refusal(b"simple", tmp_path) == "must be a cachelib cache or a string, not bytes"
    assert (
        refusal("filesystem:", tmp_path) == "filesystem: needs a directory, e.g. filesystem:/var/cache/wxmp"
    )
    assert refusal("mongodb://db:27017", tmp_path) == (
        "unknown cache 'mongodb://db:27017': use filesystem:PATH, redis://..., memcached://host:port, "
        "simple, or a cachelib cache instance"
    )
    assert refusal("weird://user:hunter2@host", tmp_path).startswith(
        "unknown cache 'weird://user:***@host': "
    )
    problem = refusal("redis://host:notaport/0", tmp_path)  # redis-py's own words in the middle
    assert problem.startswith("not a valid Redis URL (") and "notaport" in problem
    assert problem.endswith("); expected redis://[:password@]host:port/db")
    malformed = ("memcached://nohost", "memcached://:11211", "memcached://host:", "memcached://h:1,h2")
    for spec in (*malformed, "memcached://h:1121X", "memcached://h:11211X/"):  # a port is digits
        assert refusal(spec, tmp_path) == "memcached:// takes host:port[,host:port...]", spec


def test_a_missing_client_package_names_the_extra_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ImportError
    monkeypatch.setitem(sys.modules, "pymemcache.client.hash", None)
    assert refusal("redis://127.0.0.1:6379/0", tmp_path) == (
        "redis:// needs the redis package: pip install 'flask-wxmp[redis]'"
    )
    assert refusal("memcached://127.0.0.1:11211", tmp_path) == (
        "memcached:// needs pymemcache: pip install 'flask-wxmp[memcached]'"
    )


def test_every_redis_scheme_gives_a_redis_cache_with_short_timeouts(tmp_path):
    for spec in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "unix:///tmp/wxmp-none.sock"):
        cache = resolve_cache(spec, str(tmp_path))
        assert isinstance(cache, RedisCache), spec
        assert cache.default_timeout == 0  # cachelib's own set() keeps entries, like wxmp's
        kwargs = cache._write_client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 0.5 and kwargs["socket_connect_timeout"] == 0.5


def test_memcached_spec_gives_every_server_and_a_client_that_never_unpickles(tmp_path):
    from wxmp.cache import PlainSerde

    cache = resolve_cache("memcached://10.0.0.1:11211, 10.0.0.2:11212/,::1:11213", str(tmp_path))
    assert isinstance(cache, MemcachedCache) and cache.default_timeout == 0
    client = cache._client
    assert sorted(client.clients) == ["10.0.0.1:11211", "10.0.0.2:11212", "::1:11213"]
    kwargs = client.default_kwargs
    assert isinstance(kwargs["serde"], PlainSerde)
    assert kwargs["default_noreply"] is False  # add() must answer, or locks are not locks
    assert kwargs["connect_timeout"] == 0.5 and kwargs["timeout"] == 0.5
    assert client.retry_attempts == 1 and client.dead_timeout == 1


def test_simple_and_filesystem_caches_keep_entries_until_told(tmp_path):
    from wxmp.cache import local_cache

    for cache in (local_cache(), resolve_cache("simple", str(tmp_path))):
        assert isinstance(cache, SimpleCache) and cache.default_timeout == 0
    fs = resolve_cache(f"filesystem:{tmp_path}/c", str(tmp_path))
    assert fs.default_timeout == 0
    # The in-process cache holds 10,000 entries before pruning (cachelib's default would be 500).
    store = SharedStore(local_cache(), probe=False)
    for i in range(600):
        store.set(f"k{i}", i)
    assert store.get("k0") == 0


def test_a_cache_folder_is_never_open_to_others_even_for_a_moment(tmp_path, monkeypatch):
    seen = []
    chmod = os.chmod

    def watching_chmod(path, mode, **kw):
        seen.append(oct(os.stat(path).st_mode & 0o777))
        chmod(path, mode, **kw)

    monkeypatch.setattr(os, "chmod", watching_chmod)
    old = os.umask(0)
    try:
        resolve_cache(f"filesystem:{tmp_path}/a", str(tmp_path))
    finally:
        os.umask(old)
    assert seen == ["0o700"]  # created 0700, not 0777 then narrowed


def test_a_cache_folder_is_usable_by_its_owner_under_a_strict_umask(tmp_path):
    import stat

    old = os.umask(0o277)
    try:
        cache = resolve_cache(f"filesystem:{tmp_path}/strict", str(tmp_path))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(cache._path).st_mode) == 0o700
    store = SharedStore(cache)
    assert store.healthy
    store.set("k", "v")
    assert SharedStore(resolve_cache(f"filesystem:{tmp_path}/strict", str(tmp_path))).get("k") == "v"


def test_cache_folder_refusals_name_the_path_and_the_cause(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert refusal(f"filesystem:{afile}/sub", tmp_path) == (
        f"cannot create the cache folder {afile}/sub: Not a directory"
    )
    assert refusal(f"filesystem:{afile}", tmp_path) == f"{afile} is not a folder"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    assert refusal(f"filesystem:{dangling}", tmp_path) == (
        f"cannot use the cache folder {dangling}: No such file or directory"
    )
    folder = tmp_path / "later-removed"
    cache = resolve_cache(f"filesystem:{folder}", str(tmp_path))
    folder.rmdir()
    with pytest.raises(ConfigError) as info:
        SharedStore(cache)
    assert (info.value.key, info.value.problem) == (
        "WXMP_CACHE",
        f"cannot use the cache folder {folder}: No such file or directory",
    )


# -- what the store sends a real Redis ---------------------------------------------------------------


def redis_commands(url, action):
    """The commands ``action`` sends to the Redis at ``url``, as MONITOR shows them to anyone."""
    import redis

    client = redis.Redis.from_url(url)
    seen = []
    with client.monitor() as monitor:
        action()
        client.echo("wxmp-test-end")
        while True:
            command = monitor.next_command()["command"]
            if "wxmp-test-end" in command:
                return seen
            if command.split(" ", 1)[0] not in ("HELLO", "CLIENT", "SELECT"):  # connection set-up
                seen.append(command)


def test_the_probe_writes_one_short_lived_entry_of_its_own_and_removes_it(redis_url, tmp_path):
    import re

    store = SharedStore(resolve_cache(redis_url, str(tmp_path)), namespace="pr", probe=False)
    results = []
    sent = redis_commands(redis_url, lambda: results.append(store.probe()))
    assert results == [True] and store.healthy
    name = re.fullmatch(rf"SET pr:probe:{os.getpid()}:([0-9a-f]{{8}}) 1 PX 30000", sent[0])
    assert name, sent
    key = f"pr:probe:{os.getpid()}:{name.group(1)}"
    assert sent[1:] == [f"GET {key}", f"DEL {key}"]
    import redis

    assert redis.Redis.from_url(redis_url).dbsize() == 0


def test_redis_expiries_are_whole_milliseconds_and_never_zero(redis_url, tmp_path):
    store = SharedStore(resolve_cache(redis_url, str(tmp_path)), namespace="ms", probe=False)
    sent = redis_commands(
        redis_url,
        lambda: (store.set("a", 1, ttl=30), store.set("b", 1, ttl=0.0004), store.set("c", 1)),
    )
    assert sent == ["SET ms:a 1 PX 30000", "SET ms:b 1 PX 1", "SET ms:c 1"]  # no ttl: kept


def test_values_are_compact_utf8_json_for_any_reader(redis_url, tmp_path):
    import redis

    store = SharedStore(resolve_cache(redis_url, str(tmp_path)), namespace="js", probe=False)
    store.set("k", {"text": "中文", "list": [1, 2]})
    raw = redis.Redis.from_url(redis_url).get("js:k")
    assert raw == '{"text":"中文","list":[1,2]}'.encode()


def test_the_default_namespace_and_hashed_keys(tmp_path):
    import hashlib

    def digest(full):
        return hashlib.sha256(full.encode()).hexdigest()

    cache = SimpleCache()
    assert SharedStore(cache, probe=False).key("token") == "wxmp:token"
    # An unsafe namespace is hashed in with the name, under wxmp's own prefix.
    assert SharedStore(cache, "my app", probe=False).key("x") == f"wxmp:#{digest('my app:x')}"
    # A safe namespace keeps its prefix up to 100 characters.
    ns100, ns101 = "n" * 100, "n" * 101
    assert SharedStore(cache, ns100, probe=False).key("a b") == f"{ns100}:#{digest(ns100 + ':a b')}"
    assert SharedStore(cache, ns101, probe=False).key("a b") == f"wxmp:#{digest(ns101 + ':a b')}"


# -- the breaker, warnings and recovery on a fake clock ----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted(BaseCache):
    """A user's own cachelib cache (a dict) that fails with ``error`` while it is set, counting calls."""

    def __init__(self) -> None:
        super().__init__(default_timeout=0)
        self.data: dict = {}
        self.error: BaseException | None = None
        self.calls = 0

    def _call(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error

    def get(self, key):
        self._call()
        return self.data.get(key)

    def set(self, key, value, timeout=None):
        self._call()
        self.data[key] = value
        return True

    def add(self, key, value, timeout=None):
        self._call()
        return self.data.setdefault(key, value) is value

    def delete(self, key):
        self._call()
        return self.data.pop(key, None) is not None


def failures(caplog):
    return [r.getMessage() for r in caplog.records if "cache failed" in r.getMessage()]


FAILED = (
    "wxmp: the shared {} cache failed ({}); each process keeps its own token copy and WeChat's retries "
    "are not deduplicated until it works again"
)
TIMED_OUT = TimeoutError(errno.ETIMEDOUT, "Connection timed out")
REFUSED = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")


def test_a_timeout_rests_the_backend_for_its_cooldown(caplog):
    clock, cache = Clock(), Scripted()
    store = SharedStore(cache, "b", probe=False, clock=clock, cooldown=7)
    assert store.healthy is True and store.resting() is False
    cache.error = TIMED_OUT
    with pytest.raises(CacheUnavailable) as info:
        store.get("k")
    assert str(info.value) == "Scripted cache unavailable: TimeoutError: Connection timed out"
    assert store.healthy is False and store.resting() is True
    cache.error, calls = None, cache.calls
    clock.now = 1006.9
    with pytest.raises(CacheUnavailable) as info:
        store.get("k")
    assert str(info.value) == (
        "Scripted cache unavailable: TimeoutError: Connection timed out (not asked again for a few seconds)"
    )
    assert cache.calls == calls  # resting: not asked at all
    clock.now = 1007.0
    assert store.resting() is False
    assert store.get("k") is None and cache.calls == calls + 1
    assert store.healthy is False  # a read alone does not prove it takes writes again
    store.set("k", 1)
    assert store.healthy is True and cache.data == {"b:k": b"1"}
    assert failures(caplog) == [
        FAILED.format("Scripted", "TimeoutError: Connection timed out") + "; not asking it again for 7s"
    ]


def test_a_refusal_costs_no_rest_and_warns_once_a_minute(caplog):
    clock, cache = Clock(), Scripted()
    store = SharedStore(cache, "b", probe=False, clock=clock)
    cache.error = REFUSED
    for now in (1000.0, 1059.9, 1060.0):
        clock.now = now
        with pytest.raises(CacheUnavailable, match=r"^Scripted cache unavailable: ConnectionRefusedError"):
            store.get("k")
        assert store.resting() is False
    assert failures(caplog) == [FAILED.format("Scripted", "ConnectionRefusedError: Connection refused")] * 2


@pytest.mark.parametrize("write", ["set", "add", "delete", "incr"])
def test_any_successful_write_marks_the_store_healthy_again(write):
    cache = Scripted()
    store = SharedStore(cache, "b", probe=False, clock=Clock())
    cache.error = REFUSED
    with pytest.raises(CacheUnavailable):
        store.get("k")
    cache.error = None
    store.get("k")
    assert store.healthy is False
    {"set": lambda: store.set("k", 1), "add": lambda: store.add("k", 1, ttl=5),
     "delete": lambda: store.delete("k"), "incr": lambda: store.incr("k", ttl=5)}[write]()  # fmt: skip
    assert store.healthy is True


def test_a_cache_that_loses_what_is_written_fails_its_probe(caplog):
    from cachelib import NullCache

    store = SharedStore(NullCache(), clock=Clock())
    assert store.healthy is False and store.resting() is False
    assert failures(caplog) == [FAILED.format("NullCache", "a value written could not be read back")]
    assert store.probe() is False
    down = Scripted()
    store = SharedStore(down, probe=False, clock=Clock())
    down.error = REFUSED
    assert store.probe() is False


def test_a_foreign_value_is_a_miss_with_one_warning_a_minute(caplog):
    clock, cache = Clock(), Scripted()
    store = SharedStore(cache, "f", probe=False, clock=clock)
    name = "n" * 100
    cache.data[store.key(name)] = b"\x80 not json"
    for now in (1000.0, 1059.9, 1060.0):
        clock.now = now
        assert store.get(name) is None
    expected = (
        f"wxmp: ignored a value under {'n' * 80!r} that wxmp did not write (not plain data); "
        "is another program writing to this cache?"
    )
    assert [r.getMessage() for r in caplog.records if "did not write" in r.getMessage()] == [expected] * 2


def test_message_marks_share_the_stores_clock_rest_and_warnings(tmp_path, monkeypatch, caplog):
    clock = Clock()
    (tmp_path / "c" / "messages").mkdir(parents=True, mode=0o700)
    os.chmod(tmp_path / "c", 0o700)
    store = SharedStore(
        resolve_cache(f"filesystem:{tmp_path}/c", str(tmp_path)), "ns", clock=clock, cooldown=7
    )
    os.utime(tmp_path / "c" / "messages", ns=(0, 0))
    messages = store.for_messages()
    assert os.stat(tmp_path / "c" / "messages").st_mtime_ns == 0  # no probe: nothing written yet
    assert messages.key("m") == "ns:m"
    replace = os.replace

    def timing_out(*args, **kwargs):
        raise TIMED_OUT

    monkeypatch.setattr(os, "replace", timing_out)  # a folder on a network mount that stops answering
    with pytest.raises(CacheUnavailable):
        messages.add("m", 1, ttl=60)
    monkeypatch.setattr(os, "replace", replace)
    clock.now = 1006.9
    with pytest.raises(CacheUnavailable, match="not asked again"):
        messages.add("m", 1, ttl=60)
    clock.now = 1007.0
    assert messages.add("m", 1, ttl=60) is True
    shutil.rmtree(tmp_path / "c" / "messages")
    shutil.rmtree(tmp_path / "c")
    with pytest.raises(CacheUnavailable):
        store.set("token", "T")  # another failure within the minute: the same warning is not repeated
    assert failures(caplog) == [
        FAILED.format("filesystem", "TimeoutError: Connection timed out") + "; not asking it again for 7s"
    ]


# -- what other clients read on memcached, and how long entries live there ---------------------------


def memcached_ask(url, command, end=b"END\r\n"):
    """Send one text-protocol command to the memcached at ``url``; its raw answer, up to ``end``."""
    import socket

    host, port = url[len("memcached://") :].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall((command.encode() if isinstance(command, str) else command) + b"\r\n")
        answer = b""
        while not answer.endswith(end):
            answer += sock.recv(65536)
    return answer


def test_memcached_values_are_plain_for_any_client_and_never_unpickled(memcached_server, tmp_path):
    url = memcached_server.url
    cache = resolve_cache(url, str(tmp_path))
    values = {"t": "中文", "n": 42, "b": b"\x00raw", "flag": True, "j": {"a": "中", "l": [1]}}
    for name, value in values.items():
        assert cache.set(f"serde-{name}", value)
    for name, value in values.items():
        read = cache.get(f"serde-{name}")
        assert read == value and type(read) is type(value), name
    # What any other client (or a person with telnet) reads: flags and plain bytes.
    assert memcached_ask(url, "get serde-t") == b"VALUE serde-t 16 6\r\n" + "中文".encode() + b"\r\nEND\r\n"
    assert memcached_ask(url, "get serde-n") == b"VALUE serde-n 2 2\r\n42\r\nEND\r\n"
    assert memcached_ask(url, "get serde-b") == b"VALUE serde-b 0 4\r\n\x00raw\r\nEND\r\n"
    assert memcached_ask(url, "get serde-flag") == b"VALUE serde-flag 256 4\r\ntrue\r\nEND\r\n"
    body = '{"a": "中", "l": [1]}'.encode()
    assert memcached_ask(url, "get serde-j") == b"VALUE serde-j 256 %d\r\n%s\r\nEND\r\n" % (len(body), body)
    # Malformed values under wxmp's flags are misses, not errors.
    for flags, data in ((2, b"x"), (16, b"\xff\xfe"), (256, b"{"), (1, b"\x80\x04K\x01.")):
        command = f"set planted {flags} 0 {len(data)}\r\n".encode() + data
        assert memcached_ask(url, command, end=b"\r\n") == b"STORED\r\n"
        assert cache.get("planted") is None, flags


def remaining_seconds(url, key):
    """The entry's remaining life as memcached reports it, read within one tick of its clock."""
    import re

    answer = memcached_ask(url, f"mg {key} t", end=b"\r\n").decode()
    return int(re.search(r" t(-?\d+)", answer).group(1))


def memcached_time(url):
    import re

    return int(re.search(rb"STAT time (\d+)", memcached_ask(url, "stats")).group(1))


@pytest.mark.parametrize(("ttl", "expected"), [(30, 31), (2.5, 4), (1, 2), (0.5, 2), (0, -1)])
def test_memcached_entries_live_at_least_their_ttl_in_whole_seconds(
    memcached_server, tmp_path, ttl, expected
):
    url = memcached_server.url
    store = SharedStore(resolve_cache(url, str(tmp_path)), namespace="ttl", probe=False)
    for _ in range(5):  # retried only when memcached's one-second clock ticked in between
        before = memcached_time(url)
        store.set("k", 1, ttl=ttl)
        left = remaining_seconds(url, "ttl:k")
        if memcached_time(url) == before:
            break
    assert left == expected


# -- entries in a cache folder that wxmp did not write whole -----------------------------------------


def test_planted_or_truncated_files_are_misses(tmp_path, monkeypatch, caplog):
    import struct
    import time

    folder = tmp_path / "c"
    store = SharedStore(resolve_cache(f"filesystem:{folder}", str(tmp_path)), namespace="p", probe=False)
    path = store._backend.file(store.key("k"))

    def plant(data):
        with open(path, "wb") as f:
            f.write(data)

    header = b"wxmp1\n"
    plant(header + b"\x00\x00\x00")  # cut inside the expiry
    assert store.get("k") is None
    plant(header + struct.pack("!d", time.time() - 1) + b'"old"')
    assert store.get("k") is None
    plant(header + struct.pack("!d", 0) + b'"' + b"a" * (5 << 20) + b'"')  # over 4 MiB: never read whole
    assert store.get("k") is None
    plant(header + struct.pack("!d", 5000.0) + b'"x"')
    monkeypatch.setattr(time, "time", lambda: 5000.0)
    assert store.get("k") is None  # expired at its very instant
    monkeypatch.undo()
    caplog.clear()
    plant(header + struct.pack("!d", 0))  # a header with no value: not plain data either
    assert SharedStore(store.cache, namespace="p", probe=False).get("k") is None
    assert any("did not write" in r.getMessage() for r in caplog.records)
