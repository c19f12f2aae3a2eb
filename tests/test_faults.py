"""Faults, short versions of benchmarks/soak.py: each scenario in seconds, with real processes where it matters.

In process (a WxMP app on the session's real Redis, classic tokens, WeChatUser through the WSGI app):
WeChat answering -1 / HTTP 500, the token endpoint failing then recovering, WeChat hanging past the
client timeout, Redis stopped and restarted under the callback.

Under gunicorn (3 sync workers running benchmarks/soak_app.py, the soak's own Rig and analysis, a few
sender threads here): WeChat's retries landing on other workers, SIGKILL of the worker holding the
refresh lock, workers restarted by SIGTERM and SIGHUP, WeChat's clock jumping past every token.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wxmp import NetworkError, SystemBusyError, TokenInvalidError, WxMPError
from wxmp.replies import TextReply
from wxmp.testing import FakeWeChat, WeChatUser

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import soak  # noqa: E402
import soak_load  # noqa: E402

TOKEN = "faulttoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
LIFETIME = 3.0


# -- in process -------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    with FakeWeChat(token_lifetime=60) as fake:  # the in-process tests need no expiry
        fake.add_user("oFault")
        yield fake


@pytest.fixture
def bot(fake, make_app, redis_url):
    """(app, wx, runs, errors): the soak handler in process; ``runs`` counts runs per MsgId."""
    app, wx = make_app(
        fake, token=TOKEN, aes_key=AES_KEY, cache=redis_url, stable_token=False, timeout=0.5, refresher=False,
        allow_plaintext=True,  # the soak alternates plaintext and safe pushes
    )  # fmt: skip
    runs: dict[int, int] = {}
    errors: list[WxMPError] = []

    @wx.on("text")
    def echo(msg):
        runs[msg.msg_id] = runs.get(msg.msg_id, 0) + 1
        try:
            wx.user.get(msg.openid)
            wx.message.send_text(msg.openid, "got it")
        except WxMPError as exc:
            errors.append(exc)
        return msg.content

    return app, wx, runs, errors


def users(app: Any, appid: str) -> list[WeChatUser]:
    common = {"openid": "oFault", "account": "gh_fault"}
    return [
        WeChatUser(app, TOKEN, aes_key=AES_KEY, appid=appid, mode="compatible", **common),
        WeChatUser(app, TOKEN, aes_key=AES_KEY, appid=appid, mode="safe", **common),
    ]


def send_all(app: Any, appid: str, n: int, start: int = 1) -> None:
    """n messages, alternately compatible-mode and safe-mode; each must come back as its echo."""
    pair = users(app, appid)
    for i in range(start, start + n):
        assert pair[i % 2].send_text(f"m{i} ]]>", msg_id=i) == TextReply(f"m{i} ]]>")


def test_wechat_errcode_and_500_reach_the_handler_not_wechat(bot, fake):
    app, wx, runs, errors = bot
    send_all(app, fake.appid, 2)
    fake.fail_next(3, -1, paths=("/cgi-bin/user/info",))
    fake.http_error_next(3, 500, paths=("/cgi-bin/user/info",))
    send_all(app, fake.appid, 6, start=3)
    assert [type(e) for e in errors] == [SystemBusyError] * 3 + [NetworkError] * 3
    assert all(e.status == 500 for e in errors[3:])  # type: ignore[attr-defined]
    errors.clear()
    send_all(app, fake.appid, 4, start=9)  # recovered: no error once the fault is gone
    assert errors == []
    assert set(runs.values()) == {1} and len(runs) == 12
    assert fake.issued["classic"] == 1


def test_token_endpoint_failures_back_off_then_recover(bot, fake):
    app, wx, runs, errors = bot
    fake.fail_next(1, -1, paths=("/cgi-bin/token",))
    fake.http_error_next(1, 500, paths=("/cgi-bin/token",))
    started = time.monotonic()
    send_all(app, fake.appid, 2)
    assert errors == []
    assert fake.count("/cgi-bin/token") == 3  # two failures, backed off, one success
    assert time.monotonic() - started < 2 * 0.5 + 2  # within the wait of one call
    assert fake.issued["classic"] == 1


def test_wechat_hanging_past_the_client_timeout(bot, fake):
    app, wx, runs, errors = bot
    send_all(app, fake.appid, 1)
    fake.hang_next(1, seconds=3, paths=("/cgi-bin/user/info",))
    started = time.monotonic()
    send_all(app, fake.appid, 1, start=2)
    assert time.monotonic() - started < 2.0  # 0.5 s timeout, then the second call
    assert len(errors) == 1 and isinstance(errors[0], NetworkError) and "timed out" in str(errors[0])
    errors.clear()
    send_all(app, fake.appid, 2, start=3)
    assert errors == []


def test_redis_outage_under_the_callback(bot, fake, redis_server):
    app, wx, runs, errors = bot
    send_all(app, fake.appid, 2)
    redis_server.stop()
    try:
        send_all(app, fake.appid, 4, start=3)  # no dedup, this process's token: still answered
    finally:
        redis_server.start()
    send_all(app, fake.appid, 2, start=7)
    pair = users(app, fake.appid)
    assert pair[0].send_text("m8 ]]>", msg_id=8) == TextReply("m8 ]]>")  # a retry: deduped again
    assert errors == []
    assert runs == dict.fromkeys(range(1, 9), 1)
    # The restarted Redis was empty: the still-good token was put back, not fetched again (a
    # classic fetch would have killed it for every other process).
    assert fake.issued["classic"] == 1


# -- under gunicorn ---------------------------------------------------------------------------


class Senders:
    """Threads posting unique messages to the gunicorn URL (soak_load's send, retried like WeChat)."""

    def __init__(self, rig: soak.Rig, threads: int = 3, pause: float = 0.05) -> None:
        self.rig, self.pause = rig, pause
        self.results: list[dict[str, Any]] = []
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self.loop, args=(t,)) for t in range(threads)]

    def loop(self, t: int) -> None:
        openid = f"oSoak01x{t:02d}"
        self.rig.fake.add_user(openid)
        common = {"openid": openid, "account": soak.ACCOUNT, "timeout": 5.0}
        pair = [
            WeChatUser(
                self.rig.gunicorn.url, soak.TOKEN, aes_key=soak.AES_KEY, appid=self.rig.fake.appid,
                mode="compatible", **common,
            ),
            WeChatUser(
                self.rig.gunicorn.url, soak.TOKEN, aes_key=soak.AES_KEY, appid=self.rig.fake.appid, mode="safe",
                **common,
            ),
        ]  # fmt: skip
        for n in range(2000):
            if self.stop_event.is_set():
                break
            msg_id = 1 << 40 | t << 24 | n
            self.results.append(soak_load.send(pair[n % 2], msg_id, f"soak {msg_id} ]]>"))
            time.sleep(self.pause)

    def __enter__(self) -> Senders:
        for th in self.threads:
            th.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)
        self.stop_event.set()
        for th in self.threads:
            th.join(30)


@pytest.fixture
def rig(redis_server, tmp_path) -> Iterator[soak.Rig]:
    if redis_server.process is None:
        redis_server.start()
    with soak.SoakWeChat(token_lifetime=LIFETIME, clock=soak.JumpClock()) as fake:
        rig = soak.Rig(fake, redis_server, tmp_path / "rig", workers=3, lifetime=LIFETIME)
        rig.start()
        try:
            yield rig
        finally:
            rig.stop()


def passed(rig: soak.Rig, results: list[dict[str, Any]]) -> dict[str, Any]:
    report = rig.analyse(results)
    failed = {k for k, ok in report["checks"].items() if not ok}
    failed |= {f"{w.name}: {k}" for w in report["windows"] for k, ok in w.checks.items() if not ok}
    assert not failed, (failed, {k: v for k, v in report.items() if k != "windows"}, report["windows"])
    assert report["messages sent (unique MsgIds)"] > 10
    return report


@pytest.mark.fleet
def test_retries_on_other_workers_run_the_handler_once(rig):
    with Senders(rig) as senders:
        rig.retries(6, settle=0)
    passed(rig, senders.results)
    assert len(rig.retry_records) == 6
    assert all(v == ["verified"] * 3 for v in rig.retry_records.values())


@pytest.mark.fleet
def test_sigkill_of_the_refresh_lock_holder(rig):
    with Senders(rig) as senders:
        w = rig.kill_lock_holder(settle=0.5)
    report = passed(rig, senders.results)
    assert w.notes["lock_held_at_kill"] and w.notes["gunicorn replaced it"]
    assert w.notes["lock freed after (s)"] < 2 * 1.0 + 1 + 1  # its ttl: 2 x WXMP_TIMEOUT + 1
    assert report["API errors seen by handlers"] == {}


@pytest.mark.fleet
def test_workers_restarted_by_sigterm_and_sighup(rig):
    with Senders(rig) as senders:
        w = rig.restart_workers(settle=0.5)
    report = passed(rig, senders.results)
    assert w.notes["sigterm_replaced"] and w.notes["sighup_replaced_all"]
    assert report["API errors seen by handlers"] == {}
    assert report["answered 'success' (first run's worker died)"] == 0  # graceful: nothing cut off


@pytest.mark.fleet
def test_wechat_clock_jump_expires_every_token(rig):
    with Senders(rig) as senders:
        w = rig.clock_jump(settle=1.5)
    report = passed(rig, senders.results)
    assert report["API errors seen by handlers"] == {}
    assert w.notes["token fetches"] <= 2  # the recovery: compare-and-refresh, one fetch
    assert not [e for e in report["API errors seen by handlers"] if e.startswith(TokenInvalidError.__name__)]
