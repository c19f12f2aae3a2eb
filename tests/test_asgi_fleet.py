"""Async and sync workers of one fleet, as real processes on the tests' Redis.

- WeChat's retry of a push lands on another server: an ASGI process (uvicorn) and a WSGI process
  (gunicorn) share the dedup store, so the handler runs once and both answer the same reply.
- A mixed fleet (2 sync processes x 4 threads, 2 async processes x 4 tasks) shares one classic
  token that lives 3 s: zero caller errors, at most one fetch per lifetime (+1).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from wxmp.replies import TextReply
from wxmp.testing import FakeWeChat, WeChatUser
from wxmp.testing.servers import free_port, gunicorn_quiet_flags

pytestmark = pytest.mark.fleet

TESTS = Path(__file__).parent
TOKEN = "fleettoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx00000000000000aa"
LIFETIME = 3.0
TOKEN_PATHS = ("/cgi-bin/token", "/cgi-bin/stable_token")


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def _serve(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _user(port: int) -> WeChatUser:
    return WeChatUser(f"http://127.0.0.1:{port}", TOKEN, aes_key=AES_KEY, appid=APPID)


def _wait_ready(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
        try:
            _user(port).verify()
            return
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)


def test_a_retry_on_the_other_server_does_not_run_the_handler_again(redis_url):
    settings = {"token": TOKEN, "aes_key": AES_KEY, "appid": APPID, "cache": redis_url}
    common = {"ASGI_APP_SETTINGS": json.dumps(settings), "ASGI_APP_DELAY": "0.8"}
    asgi_port, wsgi_port = free_port(), free_port()
    asgi = _serve(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "asgi_app:asgi",
            "--port",
            str(asgi_port),
            "--log-level",
            "warning",
        ],
        _env(ASGI_APP_MODE="asgi", **common),
    )
    gunicorn = ["gunicorn", "-w", "1", "--threads", "4", "-b", f"127.0.0.1:{wsgi_port}", "asgi_app:wsgi"]
    wsgi = _serve(
        [sys.executable, "-m", *gunicorn, *gunicorn_quiet_flags()], _env(ASGI_APP_MODE="wsgi", **common)
    )
    runs = redis.Redis.from_url(redis_url)
    try:
        _wait_ready(asgi_port, asgi)
        _wait_ready(wsgi_port, wsgi)

        def deliver_twice(first: int, second: int, content: str) -> list[Any]:
            xml = _user(first).message_xml("text", {"Content": content}, msg_id=7_000_000 + first)
            answers: list[Any] = [None, None]

            def deliver(i: int, port: int) -> None:
                answers[i] = _user(port).send_raw(xml)

            t = threading.Thread(target=deliver, args=(0, first))
            t.start()
            while runs.get("runs:" + content) is None:  # the first server is running the handler
                time.sleep(0.01)
            deliver(1, second)  # WeChat's retry, on the other server, while the first still runs
            t.join()
            deliver(1, second)  # and once more after the reply was recorded
            return answers

        assert deliver_twice(asgi_port, wsgi_port, "a1") == [TextReply("asgi ran a1")] * 2
        assert deliver_twice(wsgi_port, asgi_port, "w1") == [TextReply("wsgi ran w1")] * 2
        assert int(runs.get("runs:a1")) == 1
        assert int(runs.get("runs:w1")) == 1
    finally:
        for proc in (asgi, wsgi):
            proc.terminate()
            proc.communicate(timeout=30)


def _start(script: str, cfg: dict[str, Any]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / script), json.dumps(cfg)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline()) == {"ready": True}
    return proc


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, _ = proc.communicate(timeout=120)
    return json.loads(stdout.strip().splitlines()[-1])


def test_a_mixed_fleet_shares_one_token(redis_url):
    with FakeWeChat(token_lifetime=LIFETIME) as fake:
        fake.add_user("o1")
        settings = {
            "appid": fake.appid,
            "secret": fake.secret,
            "api_base": fake.url,
            "cache": redis_url,
            "stable_token": False,  # classic: every extra fetch kills the token the others hold
            "timeout": 2.0,
        }
        base = {"accounts": {"main": settings}, "duration": 12}
        procs = [_start("account_worker.py", {**base, "threads": 4}) for _ in range(2)]
        procs += [_start("aio_worker.py", {**base, "tasks": 4}) for _ in range(2)]
        results = [_result(p) for p in procs]

    errors = {k: v for r in results for k, v in r["errors"].items()}
    assert errors == {}, errors
    sync_calls = sum(r["calls"]["main"] for r in results[:2])
    async_calls = sum(r["calls"]["main"] for r in results[2:])
    assert sync_calls > 100 and async_calls > 100, (sync_calls, async_calls)
    fetches = sorted(r.time for r in fake.requests if r.path in TOKEN_PATHS)
    infos = [r.time for r in fake.requests if r.path == "/cgi-bin/user/info"]
    lifetimes = math.ceil((max(infos) - fetches[0]) / LIFETIME)
    assert len(fetches) <= lifetimes + 1, (len(fetches), lifetimes)
    assert len(fetches) >= lifetimes  # it did refresh as the tokens expired
