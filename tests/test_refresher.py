"""The background refresher: starts with the app, refreshes ahead of expiry, survives fork, stops."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from wxmp import signals
from wxmp.testing import FakeWeChat
from wxmp.testing.servers import free_port, gunicorn_quiet_flags


def refresher_threads():
    return [t for t in threading.enumerate() if t.name == "wxmp-refresher"]


@pytest.fixture
def fake():
    with FakeWeChat(token_lifetime=2) as fake:
        fake.add_user("o1")
        yield fake


def test_refresher_starts_with_the_app_and_refreshes_ahead_of_expiry(fake, make_app):
    refreshed: list[dict] = []
    two = threading.Event()

    def on_refresh(sender, **kw):
        refreshed.append(kw)
        if len(refreshed) >= 2:
            two.set()

    with signals.token_refreshed.connected_to(on_refresh):
        app, wx = make_app(fake)
        assert wx.state().refresher.running
        assert wx.state().access_token.background  # callers leave the early refresh to it
        assert two.wait(10), "the refresher did not refresh twice"
    first, second = refreshed[:2]
    # The second token arrived before the first expired: nobody ever waited on an expired token.
    assert second["expires_at"] - first["expires_at"] < 2
    assert fake.count("/cgi-bin/stable_token") >= 2
    assert fake.count("/cgi-bin/user/info") == 0  # no caller was needed for any of this
    wx.stop()
    assert not wx.state().refresher.running
    assert not wx.state().access_token.background


def test_no_refresher_without_a_secret_or_when_disabled(fake, make_app):
    before = len(refresher_threads())
    app, wx = make_app(None, token="abc123")
    assert wx.state().refresher is None
    app, wx = make_app(fake, refresher=False)
    assert wx.state().refresher is None
    assert wx.user.get("o1")["openid"] == "o1"  # lazy fetch still works
    assert len(refresher_threads()) == before


def test_refresher_is_restarted_in_a_forked_child(fake, tmp_path):
    script = f"""
import json, os, threading, flask
from wxmp import WxMP
app = flask.Flask("f", instance_path={str(tmp_path)!r})
app.config.update(WXMP_APPID={fake.appid!r}, WXMP_SECRET={fake.secret!r}, WXMP_API_BASE={fake.url!r})
wx = WxMP(app)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    state = wx.state()
    names = [t.name for t in threading.enumerate()]
    token = wx.access_token
    os.write(w, json.dumps({{"running": state.refresher.running, "names": names, "pid": os.getpid(),
                             "token": bool(token)}}).encode())
    os._exit(0)
os.close(w)
data = json.loads(os.read(r, 65536))
os.waitpid(pid, 0)
print(json.dumps({{"child": data, "parent_running": wx.state().refresher.running}}))
wx.stop()
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["child"]["running"] is True
    assert "wxmp-refresher" in result["child"]["names"]
    assert result["child"]["token"] is True
    assert result["parent_running"] is True


def test_gunicorn_preload_workers_each_run_a_refresher(fake, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parent),
        "PRELOAD_INSTANCE": str(tmp_path),
        "PRELOAD_CONFIG": json.dumps(
            {"WXMP_APPID": fake.appid, "WXMP_SECRET": fake.secret, "WXMP_API_BASE": fake.url}
        ),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--preload",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "gunicorn_app:app",
            *gunicorn_quiet_flags(),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen: dict[int, dict] = {}
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            try:
                data = requests.get(f"http://127.0.0.1:{port}/_refresher", timeout=2).json()
            except requests.ConnectionError:
                time.sleep(0.1)
                continue
            seen[data["pid"]] = data
        assert len(seen) == 2, seen
        assert all(d["running"] and "wxmp-refresher" in d["threads"] for d in seen.values())
        for _ in range(10):
            assert requests.get(f"http://127.0.0.1:{port}/_user", timeout=5).json()["openid"] == "o1"
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert fake.secret not in stderr


def test_fork_waits_for_a_fetch_in_progress(tmp_path):
    # A child forked while the refresher thread is inside a fetch could inherit locks that thread
    # held (resolver, imports) and hang on its first request; the fork hooks wait for the fetch.
    script = """
import json, os, threading
from cachelib import SimpleCache
from wxmp.cache import SharedStore
from wxmp.refresher import Refresher
from wxmp.token import TokenManager

started, release, done = threading.Event(), threading.Event(), threading.Event()

def fetch(force):
    started.set()
    release.wait(10)
    done.set()
    return "T" * 40, 7200

manager = TokenManager("access_token", fetch, SharedStore(SimpleCache()), appid="wx1")
refresher = Refresher([manager])
refresher.start()
assert started.wait(10)
threading.Timer(0.3, release.set).start()
pid = os.fork()  # must wait until the fetch has finished
if pid == 0:
    os.write(1, json.dumps({"done_at_fork": done.is_set()}).encode() + b"\\n")
    os._exit(0)
os.waitpid(pid, 0)
refresher.stop()
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"done_at_fork": True}


# -- the loop itself, without Flask: a real TokenManager on FakeWeChat and a fake clock ------------


class StopAfter(threading.Event):
    """The refresher's stop event, recording each wait and stopping the loop after ``n`` of them."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if len(self.waits) >= self.n:
            self.set()
        return self.is_set()


def token_manager(fake, clock, fetch=None, store=None, kind="access_token", **kw):
    from cachelib import SimpleCache

    from wxmp import ApiClient, SharedStore, TokenManager

    client = ApiClient(fake.url, timeout=5)

    def fetcher(force):
        return client.fetch_access_token(fake.appid, fake.secret, stable=True, force=force)

    return TokenManager(
        kind,
        fetch or fetcher,
        store or SharedStore(SimpleCache()),
        appid=fake.appid,
        clock=clock,
        sleep=clock.sleep,
        **kw,
    )


@pytest.fixture
def clocked():
    from wxmp.testing.clock import FakeClock

    clock = FakeClock()
    with FakeWeChat(token_lifetime=100, clock=clock) as fake:
        yield fake, clock


def test_run_sleeps_until_the_next_refresh_at_most_max_sleep(clocked, caplog):
    from wxmp.refresher import Refresher

    fake, clock = clocked
    caplog.set_level(logging.DEBUG, "wxmp.refresher")
    r = Refresher([token_manager(fake, clock, margin=0.1)])
    r._stop = StopAfter(1)
    r.run()
    assert r._stop.waits == [60.0]  # due in 90 s, but at most a minute between looks
    longer = Refresher(r.managers, max_sleep=120)
    longer._stop = StopAfter(1)
    longer.run()
    assert longer._stop.waits == [90.0]
    assert fake.count("/cgi-bin/stable_token") == 1
    pid = os.getpid()
    assert [m.getMessage() for m in caplog.records] == [
        f"refresher started in pid {pid}",
        f"refresher stopped in pid {pid}",
    ] * 2


def test_a_failing_step_is_logged_and_retried_after_five_seconds(clocked, caplog):
    from wxmp.refresher import Refresher

    fake, clock = clocked

    def broken(force):
        raise RuntimeError("a bug in a custom fetcher")

    caplog.set_level(logging.ERROR, "wxmp.refresher")
    r = Refresher([token_manager(fake, clock, fetch=broken)])
    r._stop = StopAfter(2)
    r.run()  # the loop survives the exception
    assert r._stop.waits == [5.0, 5.0]
    assert [m.getMessage() for m in caplog.records] == ["access_token refresher step failed"] * 2
    assert all(m.exc_info and m.exc_info[0] is RuntimeError for m in caplog.records)


def test_while_another_process_refreshes_the_loop_looks_again_shortly(clocked):
    from cachelib import SimpleCache

    from wxmp import SharedStore
    from wxmp.refresher import Refresher

    fake, clock = clocked
    store = SharedStore(SimpleCache())
    tm = token_manager(fake, clock, store=store, margin=0.1)
    tm.get()
    clock.advance(91)
    holder = store.lock(f"{fake.appid}:access_token", ttl=60)
    assert holder.acquire()
    r = Refresher([tm])
    r._stop = StopAfter(1)
    r.run()
    assert r._stop.waits == [0.2]
    holder.release()


def test_start_add_stop_and_repr(clocked):
    from wxmp.refresher import Refresher

    fake, clock = clocked
    tm = token_manager(fake, clock)
    r = Refresher([tm])
    assert repr(r) == "<Refresher ['access_token'] stopped>"
    r.stop()  # stopping a refresher that never started is harmless
    r.start()
    try:
        thread = r._thread
        assert thread is not None and thread.name == "wxmp-refresher" and thread.daemon is True
        assert repr(r) == "<Refresher ['access_token'] running>"
        assert tm.background is True
        ticket = token_manager(fake, clock, kind="jsapi_ticket")
        r.add(ticket)
        r.add(ticket)
        assert [m.kind for m in r.managers] == ["access_token", "jsapi_ticket"]
        assert ticket.background is True  # joins a running refresher: callers leave refreshing to it
    finally:
        r.stop()
    assert not thread.is_alive()  # joined
    assert (tm.background, ticket.background) == (False, False)
    idle = Refresher([])
    idle.add(tm)
    assert idle.managers == [tm] and tm.background is False


def test_interpreter_exit_stops_a_running_refresher(clocked):
    fake, _ = clocked
    script = f"""
import logging, sys, threading
from cachelib import SimpleCache
from wxmp import ApiClient, SharedStore, TokenManager, signals
from wxmp.refresher import Refresher
logging.basicConfig(stream=sys.stderr, level=logging.DEBUG, format="%(name)s %(message)s")
client = ApiClient({fake.url!r})
tm = TokenManager(
    "access_token", lambda force: client.fetch_access_token({fake.appid!r}, {fake.secret!r}, stable=True, force=force),
    SharedStore(SimpleCache()), appid={fake.appid!r},
)
fetched = threading.Event()
signals.token_refreshed.connect(lambda sender, **kw: fetched.set(), weak=False)
Refresher([tm]).start()
assert fetched.wait(30)  # the thread is now waiting for its next step
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "wxmp.refresher refresher stopped in pid" in out.stderr  # stopped by the atexit hook
    assert "Traceback" not in out.stderr
