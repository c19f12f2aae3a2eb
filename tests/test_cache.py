from __future__ import annotations

import multiprocessing as mp
import os
import signal

import pytest
from cachelib import FileSystemCache, MemcachedCache, RedisCache, SimpleCache

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
