"""The fleet guarantees, with real processes: 4 workers x 4 threads share one token.

Tokens live 3 s. Callers must see zero errors and the fleet must fetch at most once per lifetime
(+1), on the default filesystem cache and on a real Redis, with both token endpoints; a worker
killed while holding the refresh lock, a Redis outage and the central refresher are covered too.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wxmp.cache import SharedStore, resolve_cache
from wxmp.config import Settings
from wxmp.testing import FakeWeChat

pytestmark = pytest.mark.fleet

WORKER = str(Path(__file__).with_name("fleet_worker.py"))
LIFETIME = 3.0
TOKEN_PATHS = ("/cgi-bin/token", "/cgi-bin/stable_token")


class Fleet:
    def __init__(self, fake: FakeWeChat, tmp_path: Path, cache: str, **config):
        self.fake = fake
        self.tmp_path = tmp_path
        self.config = {
            "WXMP_APPID": fake.appid,
            "WXMP_SECRET": fake.secret,
            "WXMP_API_BASE": fake.url,
            "WXMP_CACHE": cache,
            "WXMP_TIMEOUT": 2.0,
            **config,
        }
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, n: int = 4, threads: int = 4, duration: float = 15.0, **config) -> None:
        for i in range(n):
            cfg = {
                "index": i,
                "instance_path": str(self.tmp_path / f"instance{i}"),
                "config": {**self.config, **config},
                "threads": threads,
                "duration": duration,
            }
            proc = subprocess.Popen(
                [sys.executable, WORKER, json.dumps(cfg)], stdout=subprocess.PIPE, text=True
            )
            self.procs.append(proc)
        for proc in self.procs[-n:]:
            assert json.loads(proc.stdout.readline()) == {"ready": True}

    def results(self) -> list[dict]:
        out = []
        for proc in self.procs:
            stdout, _ = proc.communicate(timeout=120)
            lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
            out.append(lines[-1])
        return out

    def fetches(self) -> list[float]:
        return sorted(r.time for r in self.fake.requests if r.path in TOKEN_PATHS)

    def check(self, results: list[dict]) -> None:
        errors = {k: v for r in results for k, v in r["errors"].items()}
        assert errors == {}, errors
        calls = sum(r["calls"] for r in results)
        assert calls > 200, calls
        fetch_times = self.fetches()
        infos = [r.time for r in self.fake.requests if r.path == "/cgi-bin/user/info"]
        span = max(infos) - fetch_times[0]
        lifetimes = math.ceil(span / LIFETIME)
        assert len(fetch_times) <= lifetimes + 1, (len(fetch_times), span)
        assert len(fetch_times) >= lifetimes  # it did refresh as the tokens expired


def _namespace(fake: FakeWeChat) -> str:
    """The cache namespace of an account on ``fake`` (by appid and, off WeChat, the API host)."""
    return Settings(appid=fake.appid, api_base=fake.url).namespace


@pytest.fixture
def fake():
    with FakeWeChat(token_lifetime=LIFETIME) as fake:
        fake.add_user("o1")
        yield fake


@pytest.mark.parametrize("stable", [False, True], ids=["classic", "stable"])
def test_fleet_on_the_default_filesystem_cache(fake, tmp_path, stable):
    # The default cache is the instance folder's; the workers share one instance folder here as
    # the processes of one app on one host do.
    fleet = Fleet(fake, tmp_path, f"filesystem:{tmp_path / 'shared-instance' / 'wxmp-cache'}")
    fleet.start(WXMP_STABLE_TOKEN=stable)
    fleet.check(fleet.results())


@pytest.mark.parametrize("stable", [False, True], ids=["classic", "stable"])
def test_fleet_on_redis(fake, tmp_path, redis_url, stable):
    fleet = Fleet(fake, tmp_path, redis_url)
    fleet.start(WXMP_STABLE_TOKEN=stable)
    fleet.check(fleet.results())


def _holder(cache: str, tmp_path: Path, fake: FakeWeChat, ttl: float) -> subprocess.Popen[str]:
    appid = fake.appid
    code = f"""
import signal, sys
from wxmp.cache import SharedStore, resolve_cache
store = SharedStore(resolve_cache({cache!r}, {str(tmp_path)!r}), namespace={_namespace(fake)!r})
lock = store.lock("{appid}:access_token", ttl={ttl})
assert lock.acquire()
print("locked", flush=True)
signal.pause()
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("backend", ["filesystem", "redis"])
def test_worker_killed_while_holding_the_lock(fake, tmp_path, request, backend):
    cache = (
        f"filesystem:{tmp_path / 'cache'}"
        if backend == "filesystem"
        else request.getfixturevalue("redis_url")
    )
    fleet = Fleet(fake, tmp_path, cache, WXMP_STABLE_TOKEN=False)
    fleet.start(n=3, duration=8)
    while not fleet.fetches():
        time.sleep(0.05)
    holder = _holder(cache, tmp_path, fake, ttl=2 * 2.0 + 1)  # the ttl wxmp itself uses
    fake.revoke_tokens()  # every worker now needs the lock the holder has
    time.sleep(0.5)
    killed_at = fake.clock()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    results = fleet.results()
    assert {k: v for r in results for k, v in r["errors"].items()} == {}
    after = [t for t in fleet.fetches() if t > killed_at]
    assert after, "nobody fetched after the lock holder died"


def test_redis_outage_mid_run(fake, tmp_path, redis_server, redis_url):
    fleet = Fleet(fake, tmp_path, redis_url)
    fleet.start(duration=10)
    time.sleep(3)
    redis_server.stop()
    time.sleep(3)
    redis_server.start()
    results = fleet.results()
    assert {k: v for r in results for k, v in r["errors"].items()} == {}
    assert sum(r["calls"] for r in results) > 200


def test_central_refresher_feeds_external_workers(fake, tmp_path, redis_url):
    env = {
        **os.environ,
        "FLASK_APP": "fleet_app:app",
        "PYTHONPATH": str(Path(__file__).parent),
        "FLEET_CONFIG": json.dumps(
            {
                "WXMP_APPID": fake.appid,
                "WXMP_SECRET": fake.secret,
                "WXMP_API_BASE": fake.url,
                "WXMP_CACHE": redis_url,
                "WXMP_STABLE_TOKEN": False,
            }
        ),
        "FLEET_INSTANCE": str(tmp_path / "central"),
    }
    central = subprocess.Popen(
        [sys.executable, "-m", "flask", "wxmp", "refresher", "--jsapi-ticket"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Workers have no secret at all: they can only read what the refresher keeps.
        fleet = Fleet(fake, tmp_path, redis_url, WXMP_REFRESHER="external", WXMP_STABLE_TOKEN=False)
        fleet.config.pop("WXMP_SECRET")
        fleet.start(duration=10)
        results = fleet.results()
        store = SharedStore(resolve_cache(redis_url, str(tmp_path)), namespace=_namespace(fake))
        entry = store.get(f"{fake.appid}:access_token")
        ticket = store.get(f"{fake.appid}:jsapi_ticket")
    finally:
        central.send_signal(signal.SIGTERM)
        output, _ = central.communicate(timeout=20)
    assert central.returncode == 0, output
    assert "wxmp refresher stopped" in output
    assert "access_token refreshed" in output
    assert fake.secret not in output
    assert {k: v for r in results for k, v in r["errors"].items()} == {}
    fetch_times = fleet.fetches()
    span = fake.requests[-1].time - fetch_times[0]
    assert len(fetch_times) <= math.ceil(span / LIFETIME) + 1
    assert entry["pid"] == central.pid  # the central process did every fetch
    assert ticket is not None and ticket["pid"] == central.pid  # --jsapi-ticket keeps it too
