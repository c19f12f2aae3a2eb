"""The shared cache under attack and under failure (security review findings 6, 8 and 10).

- A pickle planted in a real Redis or in a cache folder is never loaded: it reads as a miss and the
  token is fetched again; no code runs (the payload would create a file).
- A cache folder wxmp creates is 0700 even under umask 000; a group/world-writable one is refused.
- Real event keys (a 211-character VIEW URL, ``qrscene_春节活动``, spaces and tabs) work on memcached,
  and a retry of such an event is still deduplicated.
- A read-only cache folder and a Redis address that never answers: bounded waits (counted as
  contacts with the server), bounded warnings, no false "reachable again", no traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import shutil
import socket
import stat
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cachelib import FileSystemCache

from wxmp import CacheUnavailable, ConfigError, SharedStore
from wxmp import cache as cache_module
from wxmp.cache import resolve_cache
from wxmp.testing import FakeWeChat, WeChatUser

TOKEN = "cacheTok9"


class Planted:
    """Unpickling this creates ``marker``: proof that code from the cache ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    with FakeWeChat(token_lifetime=7200) as fake:
        fake.add_user("o1")
        yield fake


# -- finding 6: cache content is never code -------------------------------------------------------


def test_a_pickle_planted_in_redis_is_a_miss_and_runs_nothing(fake, make_app, redis_url, tmp_path):
    import redis

    marker = tmp_path / "pwned"
    app, wx = make_app(fake, cache=redis_url, refresher=False)
    state = wx.state(app)
    key = state.store.key(state.access_token.key)
    payload = pickle.dumps(Planted(marker))
    raw = redis.Redis.from_url(redis_url)
    raw.set(key, b"!" + payload)  # cachelib's RedisCache format
    with app.app_context():
        token = wx.access_token
    assert not marker.exists()
    assert fake.is_valid(token) and fake.tokens_issued == 1  # a miss: fetched, not taken from the plant
    raw.set(key, payload)  # a bare pickle
    assert state.store.get(state.access_token.key) is None
    assert not marker.exists()
    # What wxmp itself wrote is plain JSON, readable by anyone and loadable by no one.
    raw.set(key, b"")
    with app.app_context():
        wx.access_token  # noqa: B018
    assert raw.get(key).startswith(b"{")


def test_a_pickle_planted_in_the_cache_folder_is_a_miss_and_runs_nothing(fake, make_app, tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cache"
    app, wx = make_app(fake, cache=f"filesystem:{folder}", refresher=False)
    state = wx.state(app)
    name = state.access_token.key
    key = state.store.key(name)
    payload = pickle.dumps(Planted(marker))
    cachelib = FileSystemCache(str(folder))
    # Plant in cachelib's own layout (expiry + pickle) and in wxmp's file for the same key.
    Path(cachelib._get_filename(key)).write_bytes(struct.pack("I", 0) + payload)
    wxmp_file = Path(state.store._backend.file(key))
    wxmp_file.write_bytes(payload)
    with app.app_context():
        token = wx.access_token
    assert fake.is_valid(token) and fake.tokens_issued == 1
    assert not marker.exists()
    assert wxmp_file.read_bytes().startswith(b"wxmp1\n")  # replaced by plain data
    # Even with wxmp's header in front, a pickle is not JSON: a miss.
    wxmp_file.write_bytes(b"wxmp1\n" + struct.pack("!d", 0) + payload)
    assert state.store.get(name) is None
    assert not marker.exists()


def test_planted_values_of_the_wrong_shape_are_misses(fake, make_app, redis_url):
    import redis

    app, wx = make_app(fake, cache=redis_url, refresher=False)
    state = wx.state(app)
    key = state.store.key(state.access_token.key)
    raw = redis.Redis.from_url(redis_url)
    for planted in (b'{"value": 1}', b'{"value":"x","expires_at":"soon","refresh_at":0,"fetched_at":0,'
                    b'"host":"h","pid":1}', b"[1,2]", b"\xff\xfe"):  # fmt: skip
        raw.set(key, planted)
        with app.app_context():
            assert fake.is_valid(wx.access_token)


def test_a_cache_folder_is_created_private_even_under_umask_000(tmp_path):
    old = os.umask(0)
    try:
        cache = resolve_cache(f"filesystem:{tmp_path}/deep/cache", str(tmp_path))
        messages = SharedStore(cache).for_messages()
        default = resolve_cache(None, str(tmp_path / "instance" / "wxmp-cache"))
    finally:
        os.umask(old)
    for path in (cache._path, messages.cache._path, default._path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
    store = SharedStore(cache)
    store.set("k", {"a": 1}, ttl=30)
    for entry in Path(cache._path).iterdir():
        if entry.is_file():
            assert stat.S_IMODE(entry.stat().st_mode) & 0o077 == 0, entry


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_cache_folder_others_can_write_is_refused(tmp_path, mode):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 700") as info:
        resolve_cache(f"filesystem:{folder}", str(tmp_path))
    assert info.value.key == "WXMP_CACHE"
    with pytest.raises(ConfigError):
        SharedStore(FileSystemCache(str(folder)))


def test_memcached_values_are_never_unpickled(memcached_server):
    from pymemcache.client.base import Client

    host, port = memcached_server.url[len("memcached://") :].split(":")
    store = SharedStore(resolve_cache(memcached_server.url, "/unused"), namespace="mc")
    marker = Path(f"/tmp/wxmp-mc-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()
    raw = Client((host, int(port)))
    assert raw.set(store.key("k"), pickle.dumps(Planted(marker)), flags=1, noreply=False)  # pickle flag
    assert store.get("k") is None
    assert not marker.exists()


# -- finding 8: keys that are safe for every backend ---------------------------------------------

VIEW_URL = "https://example.com/activity/spring?" + "&".join(f"p{i}=value{i}" for i in range(17))
EVENT_KEYS = [VIEW_URL, "qrscene_春节活动", "key with space", "key\twith\ttab", "a" * 300]


@pytest.fixture(params=["memcached", "redis", "filesystem", "simple"])
def any_store(request, tmp_path) -> SharedStore:
    spec = {
        "memcached": lambda: request.getfixturevalue("memcached_server").url,
        "redis": lambda: request.getfixturevalue("redis_url"),
        "filesystem": lambda: f"filesystem:{tmp_path}/c",
        "simple": lambda: "simple",
    }[request.param]()
    return SharedStore(resolve_cache(spec, str(tmp_path)), namespace=f"k{os.getpid()}")


def test_real_event_keys_work_on_every_backend(any_store):
    assert len(VIEW_URL) >= 200
    for i, event_key in enumerate(EVENT_KEYS):
        name = f"dedup:gh_x:e:oUser:1700000000:VIEW:{event_key}"
        assert any_store.add(name, f"reply {i}", ttl=30) is True
        assert any_store.add(name, "again", ttl=30) is False
        assert any_store.get(name) == f"reply {i}"
        assert any_store.incr("count:" + event_key, ttl=30) == 1
        lock = any_store.lock(event_key, ttl=5)
        assert lock.acquire()
        lock.release()
    keys = [any_store.key(f"x:{k}") for k in EVENT_KEYS]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert len(key.encode()) <= 250 and not any(c.isspace() or ord(c) < 33 for c in key)


def test_a_retried_event_with_a_long_key_runs_once_on_memcached(fake, make_app, memcached_server):
    app, wx = make_app(fake, cache=memcached_server.url, token=TOKEN, refresher=False)
    runs: list[str] = []
    wx.on("view")(lambda msg: runs.append(msg.event_key))
    wx.on("subscribe")(lambda msg: runs.append(msg.event_key))
    user = WeChatUser(app, TOKEN, openid="oLongKeys")
    for xml in (
        user.message_xml("event", {"Event": "VIEW", "EventKey": VIEW_URL}),
        user.message_xml("event", {"Event": "subscribe", "EventKey": "qrscene_春节活动"}),
        user.message_xml("event", {"Event": "VIEW", "EventKey": "a key\twith space"}),
    ):
        assert user.post(xml).status == 200
        assert user.post(xml).status == 200  # WeChat's retry of the same push
    assert runs == [VIEW_URL, "qrscene_春节活动", "a key\twith space"]


# -- finding 10: a cache that cannot be written, or does not answer --------------------------------


class WarningCount(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.WARNING]


@pytest.fixture
def logs() -> Iterator[WarningCount]:
    handler = WarningCount()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` refuse writes, also for root (which ignores permission bits)."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root without chattr +i: cannot make a read-only folder")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


def test_a_read_only_cache_folder_gives_one_clear_warning_and_keeps_working(fake, make_app, tmp_path, logs):
    folder = tmp_path / "ro"
    resolve_cache(f"filesystem:{folder}", str(tmp_path))  # created 0700, then frozen
    (folder / "messages").mkdir(mode=0o700)
    with read_only(folder), read_only(folder / "messages"):
        app, wx = make_app(fake, cache=f"filesystem:{folder}", token=TOKEN, refresher=False)
        start = [m for m in logs.warnings() if "cache" in m]
        assert len(start) == 1 and "filesystem" in start[0]  # the probe at start
        runs: list[int] = []
        wx.on("text")(lambda msg: runs.append(msg.msg_id) or "ok")
        user = WeChatUser(app, TOKEN)
        with app.app_context():
            for i in range(30):
                wx.user.get("o1")
                assert user.send_text("hi", msg_id=1000 + i) is not None
    assert fake.count("/cgi-bin/stable_token") == 1  # this process's copy, no fetch loop
    assert len(runs) == 30
    warnings = logs.warnings()
    assert not any("reachable again" in m for m in warnings), warnings
    # One per cause and consumer, not one per call: the store's (start), the token's fallback to its
    # own copy, dedup off, body binding off (plaintext mode).
    assert len(warnings) <= 4, warnings
    assert len(set(warnings)) == len(warnings), warnings
    assert not any(r.exc_info for r in logs.records), "no traceback for an expected failure"


class BlackHole:
    """A loopback TCP server that accepts and reads but never answers (a host that drops packets)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.held.append(conn)  # never read back, never answered, never closed

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_silent_redis_is_asked_once_per_cooldown(black_hole, logs):
    clock = Clock()
    store = SharedStore(
        resolve_cache(f"redis://127.0.0.1:{black_hole.port}/0", "/unused"), probe=False, clock=clock
    )
    for _ in range(20):
        with pytest.raises(CacheUnavailable):
            store.get("token")
    assert black_hole.connections == 1  # one short timeout, then no waiting on it
    clock.now += 6  # after the cooldown it is asked again, once
    for _ in range(20):
        with pytest.raises(CacheUnavailable):
            store.set("token", "x", ttl=10)
    assert black_hole.connections == 2
    assert len(logs.warnings()) == 1
    client = store.cache._write_client.connection_pool.connection_kwargs
    assert client["socket_timeout"] <= 0.5 and client["socket_connect_timeout"] <= 0.5


def test_a_silent_redis_costs_one_timeout_not_one_per_call(fake, make_app, black_hole, logs, monkeypatch):
    monkeypatch.setattr(cache_module, "_COOLDOWN", 3600.0)  # "a few seconds" that outlast the test
    app, wx = make_app(fake, cache=f"redis://127.0.0.1:{black_hole.port}/0", token=TOKEN, refresher=False)
    assert black_hole.connections == 1  # the probe at start
    wx.on("text")(lambda msg: wx.user.get("o1") and wx.user.get("o1") and "done")
    user = WeChatUser(app, TOKEN)
    with app.app_context():
        for i in range(10):
            assert user.send_text("hi", msg_id=i + 1) == __import__("wxmp").TextReply("done")
    assert black_hole.connections == 1  # the callback and its 20 API calls never waited on it
    assert fake.count("/cgi-bin/stable_token") == 1
    warnings = logs.warnings()  # the store's, the token's copy, dedup off, body binding off
    assert len(warnings) <= 4 and len(set(warnings)) == len(warnings), warnings
    assert not any(r.exc_info for r in logs.records)
