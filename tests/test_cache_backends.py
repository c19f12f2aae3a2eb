"""The shared cache's backends (wxmp.cache): filesystem, Redis, memcached, cachelib and in-process.

Each backend on its real store (files in a temporary folder, a private redis-server and memcached on
free ports), judged by what another process or a second store object would see.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import signal
import socket
import stat
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from cachelib import BaseCache, FileSystemCache, SimpleCache

from wxmp import CacheUnavailable, SharedStore
from wxmp import cache as cache_module
from wxmp.cache import resolve_cache


class FakeTime:
    """Stands in for the ``time`` module inside wxmp.cache: wall-clock ``time()`` is ours to move."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.monotonic = time.monotonic
        self.sleep = time.sleep

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(cache_module, "time", fake)
    return fake


def entry_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".wxmp")


# -- filesystem --------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def fs_store(folder: Path, **kwargs: Any) -> SharedStore:
    return SharedStore(
        resolve_cache(f"filesystem:{folder}", "/unused"), namespace="fs", probe=False, **kwargs
    )


def test_a_file_entry_lives_until_its_ttl_and_one_without_ttl_forever(folder, clock):
    writer, reader = fs_store(folder), fs_store(folder)
    writer.set("forever", "F", ttl=0)
    writer.set("half", "H", ttl=0.5)
    writer.set("token", "T", ttl=30)
    clock.now += 0.49
    assert reader.get("half") == "H"
    clock.now += 0.01
    assert reader.get("half") is None  # gone at its expiry exactly
    clock.now += 29.49
    assert reader.get("token") == "T"
    clock.now += 0.01
    assert reader.get("token") is None
    clock.now += 10 * 365 * 86400
    assert reader.get("forever") == "F"


def test_the_entry_file_layout_is_stable_across_processes_and_versions(folder, clock):
    # Workers of two wxmp versions during a rolling deploy share one folder: the file of a key, its
    # header and its lock file are a format, not an implementation detail.
    store = fs_store(folder)
    store.set("k", {"v": "中"}, ttl=30)
    key = store.key("k")
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    entry = folder / f"{digest}.wxmp"
    assert entry_files(folder) == [entry]
    assert entry.read_bytes() == b"wxmp1\n" + struct.pack("!d", clock.now + 30) + '{"v":"中"}'.encode()
    lock = store.lock("refresh", ttl=10)
    assert lock.acquire()
    lock_digest = hashlib.sha256(store.key("lock:refresh").encode("utf-8")).hexdigest()[:40]
    assert (folder / f"{lock_digest}.lock").is_file()
    lock.release()


def test_a_lock_file_is_private_even_under_umask_000(folder):
    store = fs_store(folder)
    old = os.umask(0)
    try:
        lock = store.lock("refresh", ttl=10)
        assert lock.acquire()
    finally:
        os.umask(old)
    lock.release()
    (lock_file,) = [p for p in folder.iterdir() if p.suffix == ".lock"]
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600


def test_a_write_in_flight_is_a_hidden_temp_file_beside_the_entries(folder, monkeypatch):
    # The new value is written to a temporary file in the cache folder (same filesystem, so the rename
    # is atomic; private folder) and renamed over the entry: a reader sees the old value or the new.
    writer, reader = fs_store(folder), fs_store(folder)
    writer.set("k", "old")
    monkeypatch.setattr(tempfile, "tempdir", str(folder / "no-such-dir"))  # not the system temp dir
    seen: list[tuple[str, Any]] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        seen.append((src, reader.get("k")))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    writer.set("k", "new")
    ((src, during),) = seen
    assert during == "old"
    assert os.path.dirname(src) == str(folder)
    name = os.path.basename(src)
    assert name.startswith(".") and name.endswith(".tmp") and len(name) > len("..tmp")
    assert reader.get("k") == "new"
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in entry_files(folder)]


@pytest.mark.parametrize("gone_first", [False, True])
def test_a_failed_write_leaves_no_temp_file_and_names_its_own_cause(folder, monkeypatch, gone_first):
    store = fs_store(folder)
    store.set("k", "old")

    def replace(src: str, dst: str) -> None:
        if gone_first:  # the temp file is already gone (removed by someone else): still the real cause
            os.unlink(src)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(CacheUnavailable, match="OSError: No space left on device"):
        store.set("k", "new")
    monkeypatch.undo()
    assert [p.name for p in folder.iterdir()] == [p.name for p in entry_files(folder)]
    assert fs_store(folder).get("k") == "old"


def test_deleting_an_absent_file_entry_is_not_an_error(folder):
    store = fs_store(folder)
    store.delete("never-set")
    assert store.healthy


def test_expired_files_are_swept_every_256_writes(folder, clock):
    store = fs_store(folder)
    store.set("old", "x", ttl=1)  # write 1
    clock.now += 2
    for i in range(254):  # writes 2..255
        store.set(f"k{i}", i, ttl=60)
    assert len(entry_files(folder)) == 255  # the expired entry is still on disk
    store.add("k-add", 1, ttl=60)  # write 256 (add and incr write too)
    assert len(entry_files(folder)) == 255
    assert store.get("old") is None and store.get("k0") == 0
    clock.now += 120
    for i in range(255):
        store.incr(f"c{i}", ttl=0)  # writes 257..511: no sweep yet
    assert len(entry_files(folder)) == 255 + 255
    store.set("last", 1)  # write 512: the 255 expired go, the counters and "last" stay
    assert len(entry_files(folder)) == 256
    assert store.get("c0") == 1 and store.get("last") == 1


def test_a_sweep_removes_only_expired_wxmp_entries_and_counts_them(folder, clock, monkeypatch):
    store = fs_store(folder)
    store.set("a", 1, ttl=5)
    store.set("b", 2, ttl=5)
    store.set("c", 3, ttl=10)
    store.set("d", 4)
    lock = store.lock("refresh", ttl=10)
    assert lock.acquire()
    lock.release()
    (folder / "notes.txt").write_bytes(b"not an entry")  # someone else's files are never touched
    (folder / "foreign.wxmp").write_bytes(b"not wxmp's format")
    cachelib_file = FileSystemCache(str(folder), threshold=0)._get_filename("x")
    Path(cachelib_file).write_bytes(b"\x00\x00\x00\x00cachelib")
    before = {p.name for p in folder.iterdir()}
    clock.now += 5
    monkeypatch.chdir(folder.parent)  # a sweep of the working directory would find nothing there
    backend = store._backend
    assert backend.sweep() == 3  # a, b and the unreadable .wxmp file
    after = {p.name for p in folder.iterdir()}
    assert before - after == {Path(backend.file(store.key(n))).name for n in "ab"} | {"foreign.wxmp"}
    assert store.get("c") == 3 and store.get("d") == 4
    assert backend.sweep() == 0


def test_a_file_removed_by_another_process_during_a_sweep_is_skipped(folder, clock, monkeypatch):
    store = fs_store(folder)
    store.set("a", 1, ttl=1)
    store.set("b", 2, ttl=1)
    clock.now += 2
    real_unlink = os.unlink
    first = Path(store._backend.file(store.key("a")))

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path) == first and first.exists():
            real_unlink(first)  # the other process was quicker
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    assert store._backend.sweep() == 1
    assert entry_files(folder) == []


def test_message_marks_live_in_a_messages_folder_inside_the_cache_folder(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    messages = fs_store(folder).for_messages()
    assert messages.cache._path == str(folder / "messages")
    messages.add("dedup:1", "x", ttl=60)
    assert len(entry_files(folder / "messages")) == 1
    assert not (tmp_path / "messages").exists()


# -- locks on every backend ------------------------------------------------------------------------


@pytest.fixture(params=["simple", "filesystem", "redis", "memcached"])
def any_store(request, tmp_path) -> SharedStore:
    spec = {
        "memcached": lambda: request.getfixturevalue("memcached_server").url,
        "redis": lambda: request.getfixturevalue("redis_url"),
        "filesystem": lambda: f"filesystem:{tmp_path}/c",
        "simple": lambda: "simple",
    }[request.param]()
    return SharedStore(
        resolve_cache(spec, str(tmp_path)), namespace=f"b{os.getpid()}{request.node.name[-12:]}"
    )


def second_store(store: SharedStore) -> SharedStore:
    """Another store object on the same cache (another worker; the same dict for ``simple``)."""
    return SharedStore(store.cache, namespace=store.namespace, probe=False)


def test_a_release_by_a_loser_or_a_second_release_never_frees_the_holders_lock(any_store):
    other = second_store(any_store)
    holder = any_store.lock("refresh", ttl=30)
    loser = other.lock("refresh", ttl=30)
    loser.release()  # never acquired: nothing to release
    assert holder.acquire() is True
    assert loser.acquire() is False
    loser.release()  # lost: the lock stays the holder's
    assert other.lock("refresh", ttl=30).acquire() is False
    holder.release()
    assert loser.acquire() is True
    holder.release()  # a second release: the lock is now the loser's
    assert any_store.lock("refresh", ttl=30).acquire() is False
    loser.release()
    assert any_store.lock("refresh", ttl=30).acquire() is True


def test_locks_of_different_names_are_independent(any_store):
    a = any_store.lock("a", ttl=30)
    b = second_store(any_store).lock("b", ttl=30)
    assert a.acquire() is True
    assert b.acquire() is True
    a.release()
    b.release()


def test_deleting_an_absent_entry_is_not_an_error(any_store):
    any_store.delete("never-set")
    assert any_store.get("never-set") is None


# -- simple (in-process) -----------------------------------------------------------------------------


def simple_store(cache: SimpleCache | None = None) -> SharedStore:
    return SharedStore(cache if cache is not None else SimpleCache(), namespace="s", probe=False)


def test_an_in_process_entry_lives_until_its_ttl_and_one_without_ttl_forever(clock):
    store = simple_store()
    store.set("forever", "F", ttl=0)
    store.set("half", "H", ttl=0.5)
    assert store.add("mark", 1, ttl=30)
    clock.now += 0.49
    assert store.get("half") == "H"
    clock.now += 0.01
    assert store.get("half") is None
    clock.now += 29.49
    assert store.get("mark") == 1
    clock.now += 0.01
    assert store.get("mark") is None
    assert store.add("mark", 2, ttl=30)  # expired: free again
    clock.now += 10 * 365 * 86400
    assert store.get("forever") == "F"


def test_the_in_process_store_is_bounded_and_drops_the_oldest_first(clock):
    store = simple_store(SimpleCache(threshold=3))
    for name in "abc":
        store.set(name, name, ttl=60)
    store.set("c", "c2", ttl=60)  # overwriting at the bound drops nothing
    assert [store.get(n) for n in "abc"] == ["a", "b", "c2"]
    store.set("d", "d", ttl=60)  # a new entry at the bound: the oldest goes
    assert [store.get(n) for n in "abcd"] == [None, "b", "c2", "d"]
    assert store.incr("e", ttl=60) == 1
    assert [store.get(n) for n in "bcde"] == [None, "c2", "d", 1]


def test_expired_entries_are_pruned_before_any_live_one(clock):
    store = simple_store(SimpleCache(threshold=3))
    store.set("a", "a")  # forever, and the oldest
    store.set("b", "b", ttl=5)
    store.set("c", "c")
    clock.now += 5  # b expires now, exactly
    store.set("d", "d")
    assert [store.get(n) for n in "acd"] == ["a", "c", "d"]
    store.set("e", "e", ttl=1)  # full of live entries again: the oldest live one goes
    assert [store.get(n) for n in "acde"] == [None, "c", "d", "e"]


def test_two_stores_on_one_simple_cache_share_entries_and_locks():
    cache = SimpleCache()
    one, two = simple_store(cache), simple_store(cache)
    one.set("k", "v")
    assert two.get("k") == "v"
    assert one.lock("refresh", ttl=10).acquire()
    assert two.lock("refresh", ttl=10).acquire() is False
    assert simple_store(SimpleCache()).get("k") is None  # another cache object: its own entries


def test_a_simple_cache_without_a_threshold_gets_the_default_bound():
    class Bare(SimpleCache):
        def __init__(self) -> None:  # a subclass that never set cachelib's _threshold
            BaseCache.__init__(self, default_timeout=0)

    store = simple_store(Bare())
    for i in range(600):  # beyond cachelib's default of 500
        store.set(f"k{i}", i)
    assert store.get("k0") == 0 and store.get("k599") == 599


def test_message_marks_of_the_simple_cache_keep_more_than_cachelib_s_default_500():
    messages = simple_store().for_messages()
    for i in range(600):
        assert messages.add(f"dedup:{i}", "x", ttl=60)
    assert messages.add("dedup:0", "again", ttl=60) is False


# -- any other cachelib cache ------------------------------------------------------------------------


class TableCache(BaseCache):
    """A cachelib cache of the user's own (not one wxmp knows): a table with expiries on a clock."""

    def __init__(self, clock: FakeTime, default_timeout: int = 300) -> None:
        super().__init__(default_timeout=default_timeout)
        self.clock = clock
        self.table: dict[Any, tuple[float, Any]] = {}
        self.refuse = False

    def _live(self, key: Any) -> bool:
        found = self.table.get(key)
        return found is not None and (not found[0] or self.clock.now < found[0])

    def get(self, key: str) -> Any:
        return self.table[key][1] if self._live(key) else None

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        if self.refuse:
            return False
        timeout = self._normalize_timeout(timeout)
        self.table[key] = (self.clock.now + timeout if timeout else 0.0, value)
        return True

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        if self._live(key):
            return False
        return self.set(key, value, timeout)

    def delete(self, key: str) -> bool:
        return self.table.pop(key, None) is not None


@pytest.fixture
def table(clock: FakeTime) -> TableCache:
    return TableCache(clock)


def test_a_foreign_cachelib_cache_is_named_and_warned_about(table, caplog):
    with caplog.at_level(logging.WARNING, logger="wxmp.cache"):
        store = SharedStore(table, namespace="f")
    assert store.backend == "TableCache"
    assert [r.getMessage() for r in caplog.records if r.name == "wxmp.cache"] == [
        "wxmp: TableCache is not one of wxmp's backends; values go through its own serialisation, "
        "which may unpickle what others write there"
    ]
    assert store.healthy  # the probe wrote, read back and deleted through it
    assert table.table == {}


def test_a_foreign_cache_stores_plain_values_with_the_ttl_rounded_up(table, clock):
    store = SharedStore(table, namespace="f", probe=False)
    store.set("k", {"a": "中"}, ttl=30)
    store.set("forever", 1)
    assert table.table[store.key("k")] == (clock.now + 31, '{"a":"中"}'.encode())  # whole seconds, +1
    assert store.get("k") == {"a": "中"}
    clock.now += 30.9
    assert store.get("k") == {"a": "中"}
    clock.now += 0.1
    assert store.get("k") is None
    clock.now += 10 * 365 * 86400
    assert store.get("forever") == 1
    store.delete("forever")
    assert store.get("forever") is None and table.table == {store.key("k"): table.table[store.key("k")]}


def test_a_foreign_cache_add_is_first_writer_wins_until_the_ttl(table, clock):
    store, other = (
        SharedStore(table, namespace="f", probe=False),
        SharedStore(table, namespace="f", probe=False),
    )
    assert store.add("m", "first", ttl=10) is True
    assert other.add("m", "second", ttl=10) is False
    assert other.get("m") == "first"
    clock.now += 12
    assert other.add("m", "third", ttl=10) is True
    assert store.get("m") == "third"


def test_a_foreign_cache_counts_from_one_and_the_count_expires(table, clock):
    store = SharedStore(table, namespace="f", probe=False)
    assert [store.incr("c", ttl=10) for _ in range(3)] == [1, 2, 3]
    assert SharedStore(table, namespace="f", probe=False).get("c") == 3
    clock.now += 12
    assert store.incr("c", ttl=10) == 1
    table.set(store.key("flag"), b"true")  # not a count: counting starts over
    assert store.incr("flag", ttl=10) == 1


def test_a_foreign_value_that_is_not_bytes_is_a_miss(table):
    store = SharedStore(table, namespace="f", probe=False)
    table.set(store.key("k"), '"planted text"')
    assert store.get("k") is None


def test_a_foreign_cache_lock_is_exclusive_per_name_and_expires(table, clock):
    one, two = SharedStore(table, namespace="f", probe=False), SharedStore(table, namespace="f", probe=False)
    a = one.lock("refresh", ttl=10)
    assert a.acquire() is True
    assert two.lock("refresh", ttl=10).acquire() is False
    assert two.lock("other", ttl=10).acquire() is True
    clock.now += 12  # the holder died: its lock lapses
    b = two.lock("refresh", ttl=10)
    assert b.acquire() is True
    a.release()  # no longer a's
    assert one.lock("refresh", ttl=10).acquire() is False
    b.release()
    assert one.lock("refresh", ttl=10).acquire() is True


def test_a_refused_write_is_reported_and_a_lock_write_restores_health(table):
    store = SharedStore(table, namespace="f", probe=False)
    lock = store.lock("refresh", ttl=10)
    table.refuse = True
    with pytest.raises(CacheUnavailable, match=r"^TableCache cache refused a write$"):
        store.set("k", 1)
    assert not store.healthy
    table.refuse = False
    assert lock.acquire()  # a lock is a write: it proves the cache writable again
    assert store.healthy
    table.refuse = True
    with pytest.raises(CacheUnavailable):
        store.set("k", 1)
    lock.release()
    assert store.healthy


# -- redis -------------------------------------------------------------------------------------------


@pytest.fixture
def redis_pair(redis_url) -> tuple[SharedStore, Any]:
    import redis

    return SharedStore(resolve_cache(redis_url, "/unused"), namespace="r"), redis.Redis.from_url(redis_url)


def test_redis_entries_carry_their_ttl_on_the_server(redis_pair):
    store, raw = redis_pair
    store.set("forever", 1, ttl=0)
    store.set("half", 1, ttl=0.5)
    store.set("token", 1, ttl=30)
    assert raw.pttl(store.key("forever")) == -1
    assert 0 < raw.pttl(store.key("half")) <= 500
    assert 29_000 < raw.pttl(store.key("token")) <= 30_000
    assert store.add("mark", 1, ttl=10)
    assert 9_000 < raw.pttl(store.key("mark")) <= 10_000


def test_a_redis_counter_keeps_the_window_of_its_first_count(redis_pair):
    store, raw = redis_pair
    assert store.incr("c", ttl=60) == 1
    assert store.incr("c", ttl=10) == 2  # a later count does not move the window's end
    assert 59_000 < raw.pttl(store.key("c")) <= 60_000


def test_a_redis_client_that_decodes_to_text_is_reported_at_start(redis_url, caplog):
    import redis
    from cachelib import RedisCache

    client = redis.Redis.from_url(redis_url, decode_responses=True)  # cachelib needs bytes too
    with caplog.at_level(logging.WARNING, logger="wxmp.cache"):
        store = SharedStore(RedisCache(host=client), namespace="r")
    assert not store.healthy
    assert any("could not be read back" in r.getMessage() for r in caplog.records)


# -- memcached ---------------------------------------------------------------------------------------


def address(url: str) -> tuple[str, int]:
    host, port = url[len("memcached://") :].rsplit(":", 1)
    return host, int(port)


def server_ttl(url: str, key: str) -> int:
    """The seconds memcached has left on ``key`` (-1: none), asked with the meta command ``mg``."""
    with socket.create_connection(address(url), timeout=2) as conn:
        conn.sendall(f"mg {key} t\r\n".encode())
        reply = conn.recv(256).decode()
    assert reply.startswith("HD t"), reply
    return int(reply.split()[1][1:])


def plain_client(url: str, **kwargs: Any) -> Any:
    """pymemcache's own Client with wxmp's serde: its default is noreply (no answer awaited)."""
    from pymemcache.client.base import Client

    return Client(address(url), serde=cache_module.PlainSerde(), timeout=0.5, connect_timeout=0.5, **kwargs)


def mc_store(client: Any, **kwargs: Any) -> SharedStore:
    from cachelib import MemcachedCache

    return SharedStore(MemcachedCache(servers=client), namespace=f"mc{os.getpid()}", **kwargs)


def test_memcached_entries_carry_their_ttl_rounded_up_on_the_server(memcached_server):
    url = memcached_server.url
    store = SharedStore(resolve_cache(url, "/unused"), namespace=f"ttl{os.getpid()}")
    store.delete("c")
    store.delete("mark")
    store.set("forever", 1, ttl=0)
    store.set("token", 1, ttl=30)
    assert store.add("mark", 1, ttl=10)
    assert store.incr("c", ttl=60) == 1
    assert server_ttl(url, store.key("forever")) == -1
    assert server_ttl(url, store.key("token")) in (30, 31)  # whole seconds, one more
    assert server_ttl(url, store.key("mark")) in (10, 11)
    assert server_ttl(url, store.key("c")) in (60, 61)


def test_a_client_built_from_a_memcached_url_is_not_warned_about(memcached_server, caplog):
    with caplog.at_level(logging.WARNING, logger="wxmp.cache"):
        store = SharedStore(resolve_cache(memcached_server.url, "/unused"))
        mc_store(plain_client(memcached_server.url), probe=False)  # pymemcache's Client with PlainSerde
    assert store.healthy
    assert [r for r in caplog.records if r.name == "wxmp.cache"] == []


class OtherLibraryClient:
    """A client of another memcache library (cachelib takes any): no pymemcache serde setting at all."""


@pytest.mark.parametrize("client", ["pickling", "other library"])
def test_a_client_that_may_unpickle_is_warned_about(memcached_server, caplog, client):
    from pymemcache.client.base import Client

    raw = Client(address(memcached_server.url)) if client == "pickling" else OtherLibraryClient()
    with caplog.at_level(logging.WARNING, logger="wxmp.cache"):
        mc_store(raw, probe=False)
    assert [r.getMessage() for r in caplog.records if r.name == "wxmp.cache"] == [
        "wxmp: this MemcachedCache's client may unpickle what it reads; give WXMP_CACHE as "
        "'memcached://host:port' so wxmp builds a client that never does"
    ]


def test_memcached_values_written_as_text_or_integer_read_back(memcached_server):
    store = SharedStore(resolve_cache(memcached_server.url, "/unused"), namespace=f"v{os.getpid()}")
    raw = plain_client(memcached_server.url, default_noreply=False)
    raw.set(store.key("text"), '{"a":"中"}')  # the text flag
    raw.set(store.key("int"), 7)  # the integer flag
    raw.set(store.key("json"), {"a": 1})  # a JSON flag wxmp never writes: not its value
    assert store.get("text") == {"a": "中"}
    assert store.get("int") == 7
    assert store.get("json") is None


def test_a_client_that_defaults_to_noreply_still_gets_answers(memcached_server):
    store = mc_store(plain_client(memcached_server.url), probe=False)
    store.delete("m")
    assert store.add("m", "first", ttl=30) is True
    assert store.add("m", "second", ttl=30) is False
    lock = store.lock("refresh", ttl=30)
    assert lock.acquire()
    assert store.lock("refresh", ttl=30).acquire() is False
    lock.release()
    store.delete("c")
    assert [store.incr("c", ttl=30) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(CacheUnavailable):  # the server's refusal is heard, not lost
        store.set("big", "x" * (2 << 20))


def test_an_existing_memcached_counter_costs_one_command(memcached_server):
    store = mc_store(plain_client(memcached_server.url), probe=False)
    stats = plain_client(memcached_server.url, default_noreply=False)
    store.delete("c")
    assert store.incr("c", ttl=30) == 1
    before = stats.stats()
    assert store.incr("c", ttl=30) == 2
    after = stats.stats()
    assert after[b"cmd_set"] == before[b"cmd_set"]  # no add tried
    assert after[b"incr_hits"] == before[b"incr_hits"] + 1


class RacingClient:
    """Wraps a pymemcache client: another process creates (or removes) the counter between our
    ``incr`` that found nothing and our ``add``."""

    def __init__(self, client: Any, rival: Any, then_gone: bool) -> None:
        self.client, self.rival, self.then_gone = client, rival, then_gone
        self.serde = client.serde

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def add(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        assert self.rival.add(key, b"5", noreply=False)
        stored = self.client.add(key, value, *args, **kwargs)
        if self.then_gone:
            self.rival.delete(key, noreply=False)
        return stored


@pytest.mark.parametrize(("then_gone", "count"), [(False, 6), (True, 1)])
def test_a_memcached_counter_created_by_another_process_meanwhile(memcached_server, then_gone, count):
    url = memcached_server.url
    rival = plain_client(url, default_noreply=False)
    store = mc_store(RacingClient(plain_client(url), rival, then_gone), probe=False)
    store.delete("c")
    # Created meanwhile: counted on from the other's value; removed again: counting starts over.
    assert store.incr("c", ttl=30) == count


def test_a_memcached_delete_the_server_never_confirmed_is_reported():
    from wxmp.testing.servers import memcached_process

    try:
        cm = memcached_process()
        server = cm.__enter__()
    except FileNotFoundError:
        pytest.skip("memcached is not installed")
    try:
        store = mc_store(plain_client(server.url), probe=False)
        store.set("k", 1)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)  # the server stops answering
        try:
            with pytest.raises(CacheUnavailable):
                store.delete("k")
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
    finally:
        cm.__exit__(None, None, None)


def test_a_memcached_client_that_swallows_errors_is_reported_as_refusing_writes():
    from pymemcache.client.hash import HashClient

    from wxmp.testing.servers import free_port

    client = HashClient(  # a user's client that answers False instead of raising
        [("127.0.0.1", free_port())], serde=cache_module.PlainSerde(), ignore_exc=True, default_noreply=False
    )
    store = mc_store(client, probe=False)
    with pytest.raises(CacheUnavailable, match=r"^memcached cache refused a write$"):
        store.set("k", 1)
    assert not store.healthy
