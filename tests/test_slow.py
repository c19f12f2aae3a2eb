"""Slow handlers with real processes, a real Redis and FakeWeChat (tests/slow_worker.py).

WeChat's 5 s is scaled down to T = 2 s (``WXMP_SLOW_WECHAT_TIMEOUT``, the same value in
``WeChatUser.deliver``); handler durations are given in multiples of it. Assertions count handler
runs (in Redis), deliveries and API requests, never elapsed time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from wxmp.replies import TextReply
from wxmp.testing import FakeWeChat, WeChatUser
from wxmp.testing.fake_api.message import sent_messages

pytestmark = pytest.mark.fleet

WORKER = str(Path(__file__).with_name("slow_worker.py"))
TOKEN = "slowtoken"
T = 2.0
OPENID = "oSlowUser0000000000000000001"


def account_config(redis_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "appid": "wx00000000000slow1",
        "token": TOKEN,
        "cache": redis_url,
        "slow_wechat_timeout": T,
        "slow_margin": 0.5,
        "slow_lease": 1.0,
        "slow_workers": 32,
        **extra,
    }


class Workers:
    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.procs: list[subprocess.Popen[str]] = []
        self.urls: list[str] = []

    def start(self, n: int, **account: Any) -> list[str]:
        cfg = {"account": account_config(self.redis_url, **account), "redis": self.redis_url}
        started = []
        for _ in range(n):
            proc = subprocess.Popen(
                [sys.executable, WORKER, json.dumps(cfg)], stdout=subprocess.PIPE, text=True
            )
            self.procs.append(proc)
            started.append(proc)
        urls = []
        for proc in started:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line, "worker did not start"
            urls.append(f"http://127.0.0.1:{json.loads(line)['port']}")
        self.urls += urls
        return urls

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def workers(redis_url: str) -> Iterator[Workers]:
    w = Workers(redis_url)
    yield w
    w.stop()


@pytest.fixture
def counter(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def runs(counter: redis.Redis, msg_id: int) -> int:
    return int(counter.get(f"runs:{msg_id}") or 0)


def user(target: Any, openid: str = OPENID) -> WeChatUser:
    return WeChatUser(target, TOKEN, openid=openid, timeout=30)


def wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll a condition another process makes true (a bound on waiting, not on the behaviour)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_quick_slow_handler_answers_the_first_delivery(workers: Workers, counter: redis.Redis) -> None:
    (url,) = workers.start(1)
    u = user(url)
    delivery = u.deliver_text(f"{0.2 * T} quick", msg_id=101, timeout=T)
    assert [a.number for a in delivery.attempts] == [1]
    assert delivery.reply == TextReply("done: quick")
    assert runs(counter, 101) == 1


def test_retry_on_another_process_answers_passively(workers: Workers, counter: redis.Redis) -> None:
    urls = workers.start(2, slow_strategy="retries")
    u = user(urls[0])
    delivery = u.deliver_text(f"{1.5 * T} eight", msg_id=102, timeout=T, targets=urls)
    assert [a.timed_out for a in delivery.attempts] == [True, False]
    assert delivery.reply == TextReply("done: eight")  # answered by the second process
    assert runs(counter, 102) == 1


def test_customer_service_strategy_answers_success_and_sends_later(
    workers: Workers, counter: redis.Redis
) -> None:
    with FakeWeChat() as fake:
        fake.add_user(OPENID)
        urls = workers.start(2, secret=fake.secret, appid=fake.appid, api_base=fake.url)
        u = user(urls[0])
        delivery = u.deliver_text(f"{3 * T} twenty " + "长" * 1000, msg_id=103, timeout=T, targets=urls)
        assert not delivery.failed and delivery.reply is None  # "success": WeChat stops retrying
        assert len(delivery.attempts) == 1
        # The reply is split in two sends (3000 bytes of UTF-8): wait for both, not the first.
        sent = wait_for(lambda: (lambda m: m if len(m) >= 2 else None)(sent_messages(fake, OPENID)))
        assert fake.count("/cgi-bin/message/custom/typing") == 1
        assert fake.calls("/cgi-bin/message/custom/typing")[0].json == {"touser": OPENID, "command": "Typing"}
        text = "".join(m["text"]["content"] for m in sent)
        assert text == "done: twenty " + "长" * 1000
        assert len(sent) == 2  # 3000 bytes of UTF-8: two messages under the limit
        assert all(len(m["text"]["content"].encode()) <= 2048 for m in sent)
        assert runs(counter, 103) == 1


def test_without_the_api_the_last_retry_holds_and_the_next_message_gets_it(
    workers: Workers, counter: redis.Redis
) -> None:
    urls = workers.start(2)  # no secret: "auto" means retries
    u = user(urls[0])
    delivery = u.deliver_text(f"{3.5 * T} late", msg_id=104, timeout=T, targets=urls)
    assert [a.timed_out for a in delivery.attempts] == [True, True, False]
    assert delivery.shown == "答案还在准备中，请稍后发送任意消息查看。"
    wait_for(lambda: runs(counter, 104) == 1 and counter.keys("*slow:held:*"))
    nxt = u.deliver_text("hello?", msg_id=105, timeout=T, targets=urls[::-1])
    assert nxt.reply == TextReply("done: late")
    assert runs(counter, 105) == 0  # the pickup answered it; "hello?" itself was not run
    again = u.deliver_text(f"{0.1 * T} fresh", msg_id=106, timeout=T)
    assert again.reply == TextReply("done: fresh")  # handed out once only
    assert runs(counter, 104) == 1


def test_a_worker_killed_mid_job_lets_a_later_delivery_rerun_it(
    workers: Workers, counter: redis.Redis
) -> None:
    first, second = workers.start(2, slow_strategy="retries")
    u = user(first)
    outcome: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: outcome.setdefault(
            "d", u.deliver_text(f"{1.4 * T} phoenix", msg_id=107, timeout=T, targets=[first, second, second])
        )
    )
    thread.start()
    wait_for(lambda: runs(counter, 107) == 1)
    os.kill(workers.procs[0].pid, signal.SIGKILL)  # dies holding the job's lease
    thread.join(60)
    delivery = outcome["d"]
    assert not delivery.attempts[0].answered  # the connection died with the worker
    assert delivery.reply == TextReply("done: phoenix")
    assert runs(counter, 107) == 2  # the killed run, then exactly one rerun


def test_failing_slow_handler_answers_success_and_is_not_rerun(
    workers: Workers, counter: redis.Redis
) -> None:
    urls = workers.start(2, slow_strategy="retries")
    delivery = user(urls[0]).deliver_text("boom", msg_id=108, timeout=T, targets=urls)
    assert delivery.answered is not None and delivery.reply is None
    assert runs(counter, 108) == 1


def test_four_processes_fifty_messages_every_delivery_everywhere(
    workers: Workers, counter: redis.Redis
) -> None:
    urls = workers.start(4, slow_strategy="retries")
    users = [user(url) for url in urls]
    replies: dict[int, list[Any]] = {i: [] for i in range(50)}
    lock = threading.Lock()

    def push(i: int, k: int) -> None:
        # Every process gets the same push at once: harsher than WeChat, which waits between tries.
        u = users[k]
        xml = u.message_xml("text", {"Content": f"{0.1 * T} m{i}"}, msg_id=1000 + i)
        reply = u.send_raw(xml)
        with lock:
            replies[i].append(reply)

    threads = [threading.Thread(target=push, args=(i, k)) for i in range(50) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(runs(counter, 1000 + i) for i in range(50)) == 50
    assert all(runs(counter, 1000 + i) == 1 for i in range(50))
    for i in range(50):
        answers = [r for r in replies[i] if r is not None]
        assert answers == [TextReply(f"done: m{i}")], (i, replies[i])  # handed out once


def test_sessions_persist_across_processes_and_expire(workers: Workers, counter: redis.Redis) -> None:
    a, b = workers.start(2, session_ttl=1)
    assert user(a).send_text("remember the blue door") == TextReply("ok")
    assert user(b).send_text("recall") == TextReply("note: the blue door")
    assert user(b, openid="oSomeoneElse0000000000000001").send_text("recall") == TextReply("note: None")
    wait_for(lambda: not counter.keys("*session:*"), timeout=10)  # Redis expired it
    assert user(a).send_text("recall") == TextReply("note: None")
