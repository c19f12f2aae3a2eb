"""The background refresher: starts with the app, refreshes ahead of expiry, survives fork, stops."""

from __future__ import annotations

import json
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
