"""Slow handlers in one process: customer-service failures, the split, the seam, WeChatUser.deliver.

Handlers block on events the test sets, so nothing depends on how fast the machine is; WeChat's
timeout is 0.5 s here (the same value in the account and in ``deliver``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from wxmp import Account, signals
from wxmp.errors import ConfigError
from wxmp.replies import TextReply
from wxmp.slow import TEXT_LIMIT, SlowRunner, split_text
from wxmp.testing import FakeWeChat, WeChatUser
from wxmp.testing.fake_api.message import sent_messages
from wxmp.testing.user import SERVICE_FAILURE

TOKEN = "slowtoken"
T = 0.5
OPENID = "oSlowUser0000000000000000002"
SEND = "/cgi-bin/message/custom/send"


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    with FakeWeChat() as fake:
        fake.add_user(OPENID)
        yield fake


def make_account(fake: FakeWeChat | None = None, **settings: Any) -> Account:
    if fake is not None:
        settings = {"appid": fake.appid, "secret": fake.secret, "api_base": fake.url, **settings}
    defaults = {
        "appid": "wx00000000000slow2",
        "slow_wechat_timeout": T,
        "slow_margin": 0.2,
        "slow_lease": 1.0,
    }
    return Account(token=TOKEN, cache="simple", **{**defaults, **settings})


def listen(signal: Any) -> tuple[list[dict[str, Any]], threading.Event]:
    got: list[dict[str, Any]] = []
    event = threading.Event()

    def receiver(sender: object, **kw: Any) -> None:
        got.append(kw)
        event.set()

    signal.connect(receiver, weak=False)
    return got, event


@pytest.fixture(autouse=True)
def _disconnect() -> Iterator[None]:
    yield
    for sig in (
        signals.customer_service_failed,
        signals.slow_result_held,
        signals.handler_failed,
        signals.slow_job_finished,
        signals.slow_result_sent,
    ):
        for receiver in list(sig.receivers.values()):
            sig.disconnect(receiver)


def blocked_handler(acct: Account, answer: str) -> tuple[threading.Event, list[int]]:
    release = threading.Event()
    runs: list[int] = []

    @acct.on("text", slow=True)
    def slow(msg):
        runs.append(msg.msg_id)
        assert release.wait(10)
        return answer

    return release, runs


def test_45047_is_logged_signalled_not_retried_and_kept(fake: FakeWeChat, caplog: Any) -> None:
    acct = make_account(fake)
    release, runs = blocked_handler(acct, "the answer")
    failed, failed_event = listen(signals.customer_service_failed)
    held, held_event = listen(signals.slow_result_held)
    u = WeChatUser(acct.callback, TOKEN, openid=OPENID)

    delivery = u.deliver_text("question", msg_id=1, timeout=T)
    assert len(delivery.attempts) == 1 and delivery.answered and delivery.reply is None  # success

    fake.fail_next(errcode=45047, paths=(SEND,))
    with caplog.at_level(logging.WARNING, logger="wxmp.slow"):
        release.set()
        assert failed_event.wait(10) and held_event.wait(10)
    assert failed[0]["errcode"] == 45047 and failed[0]["sent"] == 0
    assert "too many messages" in caplog.text and "45047" in caplog.text
    assert fake.count(SEND) == 1  # one attempt, no loop
    assert sent_messages(fake, OPENID) == []
    # The user's next message gets the kept answer first, as its passive reply.
    assert u.send_text("anything?") == TextReply("the answer")
    assert runs == [1]
    assert fake.count(SEND) == 1


def test_48001_switches_auto_to_retries_for_the_account(fake: FakeWeChat) -> None:
    acct = make_account(fake)
    release, _ = blocked_handler(acct, "later")
    failed, failed_event = listen(signals.customer_service_failed)
    u = WeChatUser(acct.callback, TOKEN, openid=OPENID)
    u.deliver_text("q1", msg_id=11, timeout=T)
    fake.fail_next(errcode=48001, paths=(SEND,))
    release.set()
    assert failed_event.wait(10) and failed[0]["errcode"] == 48001
    runner = acct.callback.slow
    assert isinstance(runner, SlowRunner)
    route = acct.router.routes[0]
    assert runner._strategy(route) == "retries"


def test_customer_service_long_answers_go_out_in_at_most_five_parts(fake: FakeWeChat) -> None:
    acct = make_account(fake)
    answer = "\n".join(f"第{i}段" + "字" * 600 for i in range(10))  # about 18 KB
    release, _ = blocked_handler(acct, answer)
    sent, sent_event = listen(signals.slow_result_sent)
    held, held_event = listen(signals.slow_result_held)
    u = WeChatUser(acct.callback, TOKEN, openid=OPENID)
    u.deliver_text("tell me everything", msg_id=21, timeout=T)
    release.set()
    assert held_event.wait(10)
    parts = [m["text"]["content"] for m in sent_messages(fake, OPENID)]
    assert len(parts) == 5 and all(len(p.encode()) <= TEXT_LIMIT for p in parts)
    assert held[0]["reason"] == "more than 5 messages"
    rest = u.send_text("more")
    assert isinstance(rest, TextReply)
    assert "".join(parts).replace("\n", "") + rest.content.replace("\n", "") == answer.replace("\n", "")


def test_a_raising_slow_handler_is_logged_and_signalled(fake: FakeWeChat, caplog: Any) -> None:
    acct = make_account(fake, slow_strategy="retries")
    failures, failed_event = listen(signals.handler_failed)

    @acct.on("text", slow=True)
    def broken(msg):
        raise RuntimeError("model down")

    u = WeChatUser(acct.callback, TOKEN, openid=OPENID)
    with caplog.at_level(logging.ERROR, logger="wxmp.slow"):
        delivery = u.deliver_text("q", msg_id=31, timeout=T)
    assert failed_event.wait(10)
    assert isinstance(failures[0]["exception"], RuntimeError)
    assert "model down" in caplog.text
    assert delivery.answered and delivery.reply is None


def test_ordinary_handler_too_slow_means_service_failure() -> None:
    acct = make_account()
    release = threading.Event()

    @acct.on("text")
    def too_slow(msg):
        release.wait(10)
        return "late"

    u = WeChatUser(acct.callback, TOKEN, openid=OPENID)
    delivery = u.deliver_text("hi", msg_id=41, timeout=0.2, attempts=3)
    release.set()
    assert delivery.failed and delivery.shown == SERVICE_FAILURE
    assert [a.timed_out for a in delivery.attempts] == [True, True, True]


def test_keyword_mode_only_the_keyword_fetches_the_result() -> None:
    acct = make_account(slow_keyword="1", slow_attempts=1)

    @acct.on("text", match="^hello$")
    def hello(msg):
        return "hi"

    release, _ = blocked_handler(acct, "deep thought")
    held, held_event = listen(signals.slow_result_held)
    u = WeChatUser(acct.callback, TOKEN, openid=OPENID)
    first = u.deliver_text("question", msg_id=51, timeout=T)
    assert first.shown == acct.settings.slow_holding_text
    release.set()
    assert held_event.wait(10)
    assert u.send_text("hello", msg_id=52) == TextReply("hi")  # not the keyword: handled as usual
    assert u.send_text("1", msg_id=53) == TextReply("deep thought")


class RecordingExecutor:
    """The seam a task queue plugs into: jobs are plain data, run later by ``run_job``."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []

    def submit(self, runner: SlowRunner, job: dict[str, Any]) -> None:
        import json

        self.jobs.append(json.loads(json.dumps(job)))  # what a queue would carry


def test_executor_seam_hands_out_plain_jobs() -> None:
    acct = make_account(slow_strategy="retries", slow_attempts=1)

    @acct.on("text", slow=True)
    def slow(msg):
        return "queued answer"

    runner = SlowRunner(acct.callback, account=acct, executor=(executor := RecordingExecutor()))
    acct.callback.slow = runner
    u = WeChatUser(acct.callback, TOKEN, openid=OPENID)
    first = u.deliver_text("q", msg_id=61, timeout=T)
    assert first.shown == acct.settings.slow_holding_text  # nobody ran the job yet
    assert len(executor.jobs) == 1 and executor.jobs[0]["message"]["MsgId"] == "61"
    runner.run_job(executor.jobs[0])  # e.g. inside a Celery task
    assert u.send_text("and?") == TextReply("queued answer")


def test_split_text_by_bytes_prefers_line_breaks() -> None:
    text = "第一行\n" + "字" * 700 + "\nend"
    parts = split_text(text, limit=2000)
    assert parts == ["第一行\n" + "字" * 700 + "\nend"] or all(len(p.encode()) <= 2000 for p in parts)
    long = ("word " * 1000).strip()
    parts = split_text(long, limit=100)
    assert all(len(p.encode()) <= 100 for p in parts)
    assert " ".join(parts) == long
    assert split_text("") == [""]


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="WXMP_SLOW_STRATEGY"):
        make_account(slow_strategy="sometimes")
    with pytest.raises(ConfigError, match="WXMP_SLOW_MARGIN"):
        make_account(slow_margin=T)
    with pytest.raises(ConfigError, match="slow"):
        acct = make_account()
        acct.on("text", slow="maybe")
    assert make_account(slow_strategy="customer-service").settings.slow_strategy == "customer_service"
