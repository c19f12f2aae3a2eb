"""Slow handlers in one process, on fake time: what WeChat and the user see, at which instant.

Every runner here gets the clocks and the ``wait`` of a :class:`Timeline` (tests/slow_timeline.py):
WeChat's deliveries run as threads, the handler's duration is a delay of the executor, and time moves
only when every delivery waits. So "the handler takes 7 s" is stated, not slept, and the tests check
the exact instant each delivery answered and the exact reply body. The settings are WeChat's own
(5 s, three attempts, a 0.5 s margin, a 4 s lease). Real processes, a real Redis and real time:
tests/test_slow.py.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from slow_timeline import (
    ACCOUNT,
    HOLDING,
    OPENID,
    SEND,
    T0,
    TOKEN,
    TYPING,
    Timeline,
    finished,
    join_typing,
    listen,
    logged,
    make,
    push,
    xml_at,
)

from wxmp import Account, signals
from wxmp.errors import ConfigError
from wxmp.replies import ImageReply, TextReply, render
from wxmp.testing import FakeWeChat, WeChatUser
from wxmp.testing.fake_api.message import close_window, sent_messages
from wxmp.testing.user import SERVICE_FAILURE


@pytest.fixture
def tl() -> Iterator[Timeline]:
    timeline = Timeline()
    yield timeline
    timeline.close()


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    with FakeWeChat() as fake:
        fake.add_user(OPENID)
        yield fake
        join_typing()  # before WeChat goes: a late "typing" request must not log into the next test


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


# -- passive answers ---------------------------------------------------------------------------


def test_a_result_ready_in_time_is_the_passive_answer_of_the_first_delivery(tl: Timeline) -> None:
    s = make(tl, seconds=1.2)
    p = push(tl, s.user, s.text("quick", 1))
    tl.run()
    assert len(p.tries) == 1
    assert finished(p) == [T0 + 1.2]  # the instant the job finished, not the next poll
    assert p.tries[0].body == xml_at(TextReply("answer to quick"), T0 + 1.2, tl)
    assert s.runs == ["quick"]
    assert {pause[2] for pause in tl.pauses} == {0.05}  # polled every 0.05 s meanwhile
    (claimed_at, job) = s.executor.jobs[0]
    assert claimed_at == T0
    assert json.loads(json.dumps(job)) == job  # plain data, as a task queue carries it
    assert job["key"] == f"{ACCOUNT}:m:{OPENID}:1"  # as the dedup knows it
    assert job["strategy"] == "retries"  # auto, and no secret: no customer-service API
    assert job["claimed_at"] == tl.wall(T0)
    assert job["message"]["Content"] == "quick" and job["message"]["MsgId"] == "1"
    # The delivery took the result's one hand-out: a plain mark, for the result's lifetime.
    assert s.store.log(f"slow:sent:{ACCOUNT}:m:{OPENID}:1") == [(T0 + 1.2, "add", 1, 172800)]


def test_retries_a_retry_answers_the_result_ready_after_the_first_deadline(tl: Timeline) -> None:
    s = make(tl, seconds=7.0, slow_strategy="retries")
    p = push(tl, s.user, s.text("seven", 2))
    tl.run()
    assert [t.started for t in p.tries] == [T0, T0 + 5.0]
    # The first delivery is kept unanswered past WeChat's 5 s (deadline + margin), so WeChat retries.
    assert finished(p) == [pytest.approx(T0 + 5.5), T0 + 7.0]
    assert p.tries[0].body == b"success" and not p.in_time(p.tries[0])
    assert p.answered is p.tries[1]
    assert p.tries[1].body == xml_at(TextReply("answer to seven"), T0 + 7.0, tl)
    assert s.runs == ["seven"] and len(s.executor.jobs) == 1
    # While held, the first delivery only watches the lease: a pause of a quarter lease (1 s).
    held = [(at, seconds) for name, at, seconds in tl.pauses if name == "delivery-1" and seconds > 0.05]
    assert held == [(pytest.approx(T0 + 4.5), pytest.approx(1.0))]


def test_retries_the_third_delivery_answers_a_result_ready_before_its_deadline(tl: Timeline) -> None:
    s = make(tl, seconds=12.0, slow_strategy="retries")
    p = push(tl, s.user, s.text("twelve", 3))
    tl.run()
    assert [t.started for t in p.tries] == [T0, T0 + 5.0, T0 + 10.0]
    assert finished(p) == [pytest.approx(T0 + 5.5), pytest.approx(T0 + 10.5), T0 + 12.0]
    assert p.reply == TextReply("answer to twelve")
    assert s.runs == ["twelve"]


def test_retries_the_last_delivery_holds_and_the_next_message_gets_the_result(tl: Timeline) -> None:
    s = make(tl, seconds=[20.0, 1.0], slow_strategy="retries")
    held = listen(signals.slow_result_held)
    p = push(tl, s.user, s.text("twenty", 4))
    tl.run()
    assert finished(p) == [pytest.approx(T0 + 5.5), pytest.approx(T0 + 10.5), pytest.approx(T0 + 14.5)]
    assert p.shown == HOLDING  # in time, before WeChat's last deadline
    assert p.tries[2].body == xml_at(TextReply(HOLDING), T0 + 14.5, tl)
    assert s.runs == ["twenty"]  # the job finished at T0 + 20
    assert [h["reason"] for h in held] == ["no delivery answered yet"]
    assert held[0]["message"].content == "twenty" and held[0]["sender"] is s.acct.callback.sender

    nxt = push(tl, s.user, s.text("anything?", 5), at=T0 + 30)
    tl.run()
    # The kept result, rendered when the job finished, is the passive answer to the next message.
    assert nxt.tries[0].body == xml_at(TextReply("answer to twenty"), T0 + 20.0, tl)
    assert finished(nxt) == [T0 + 30]
    assert s.runs == ["twenty"]  # "anything?" itself did not run

    again = push(tl, s.user, s.text("and now?", 6), at=T0 + 40)
    tl.run()
    assert again.reply == TextReply("answer to and now?")  # handed out once only
    assert finished(again) == [T0 + 41.0]


def test_a_kept_result_waits_while_wechat_may_still_retry_the_earlier_message(tl: Timeline) -> None:
    """Between the job's end and WeChat's last retry, another message is answered as usual and the
    retry gets the result; after that window (or once the last retry answered the holding text) the
    next message gets it."""
    s = make(tl, seconds=[9.8, 0.5, 0.5], slow_strategy="retries")
    p = push(tl, s.user, s.text("first", 7))
    other = push(tl, s.user, s.text("second", 8), at=T0 + 9.9)
    tl.run()
    # The job ended at 9.8 while the second delivery was held (past its 9.5 s answer time):
    # the third delivery (at 10) answers it; the message sent at 9.9 got its own answer.
    assert finished(p) == [pytest.approx(T0 + 5.5), pytest.approx(T0 + 10.5), T0 + 10.0]
    assert p.reply == TextReply("answer to first")
    assert other.reply == TextReply("answer to second")
    assert finished(other) == [T0 + 10.4]
    assert s.runs == ["first", "second"]


def test_a_kept_result_is_not_given_twice_after_the_passive_answer(tl: Timeline) -> None:
    s = make(tl, seconds=[2.0, 1.0], slow_strategy="retries")
    held = listen(signals.slow_result_held)
    p = push(tl, s.user, s.text("quick", 9))
    tl.run()
    assert p.reply == TextReply("answer to quick") and finished(p) == [T0 + 2.0]
    assert len(held) == 1  # kept in case no delivery had answered...
    later = push(tl, s.user, s.text("later", 10), at=T0 + 60)  # ...past the retry window
    tl.run()
    assert later.reply == TextReply("answer to later")  # not the earlier answer a second time
    assert s.runs == ["quick", "later"]


def test_a_retry_after_the_answer_gets_success_at_once_and_runs_nothing(tl: Timeline) -> None:
    s = make(tl, seconds=1.0, slow_strategy="retries")
    first = push(tl, s.user, s.text("q", 11), attempts=1)
    tl.run()
    assert first.reply == TextReply("answer to q")
    # WeChat did not get the answer (network) and pushes the same message again.
    retry = push(tl, s.user, s.text("q", 11), attempts=1, at=T0 + 5.0)
    tl.run()
    assert retry.tries[0].body == b"success" and finished(retry) == [T0 + 5.0]
    assert s.runs == ["q"] and len(s.executor.jobs) == 1


def test_the_last_delivery_answers_a_result_stored_just_before_it_looked(tl: Timeline) -> None:
    """The job can finish between the last delivery's deadline and its holding answer: the result
    then goes out passively instead of the holding text."""
    s = make(tl, seconds=[None], slow_strategy="retries", slow_attempts=1)
    store = s.store
    original = store.set

    def set_and_finish(name: str, value: Any, ttl: float = 0) -> None:
        if name == f"slow:gave-up:{ACCOUNT}:m:{OPENID}:12":
            s.runner.run_job(s.executor.jobs[0][1])  # the job ends in that very moment
        original(name, value, ttl)

    store.set = set_and_finish  # type: ignore[method-assign]
    p = push(tl, s.user, s.text("photo finish", 12), attempts=1)
    tl.run()
    assert p.reply == TextReply("answer to photo finish")
    assert finished(p) == [pytest.approx(T0 + 4.5)]
    nxt = push(tl, s.user, s.text("next", 13), attempts=1, at=T0 + 100)
    tl.run()
    assert nxt.shown == HOLDING  # its own job has not run (the executor holds it): not the old answer


# -- customer service ---------------------------------------------------------------------------


def test_customer_service_answers_success_in_time_then_sends_the_result(
    tl: Timeline, fake: FakeWeChat
) -> None:
    s = make(tl, fake, seconds=8.0)
    sent = listen(signals.slow_result_sent)
    finished_jobs = listen(signals.slow_job_finished)
    p = push(tl, s.user, s.text("deep", 21))
    tl.run(until=T0 + 6.0)
    assert len(p.tries) == 1 and finished(p) == [pytest.approx(T0 + 4.5)]
    assert p.answered is p.tries[0] and p.tries[0].body == b"success"  # WeChat stops retrying
    join_typing()
    assert [c.json for c in fake.calls(TYPING)] == [{"touser": OPENID, "command": "Typing"}]
    assert fake.count(SEND) == 0
    # A retry WeChat makes anyway (the success was lost) is answered success at once.
    late = push(tl, s.user, s.text("deep", 21), attempts=1)
    tl.run()
    assert late.tries[0].body == b"success" and finished(late) == [T0 + 6.0]
    assert [c.json for c in fake.calls(SEND)] == [
        {"touser": OPENID, "msgtype": "text", "text": {"content": "answer to deep"}}
    ]
    assert fake.calls(SEND)[0].time >= 0
    assert [x["messages"] for x in sent] == [1]
    assert sent[0]["sender"] is s.acct.callback.sender is not None and sent[0]["message"].content == "deep"
    assert [x["ok"] for x in finished_jobs] == [True]
    assert (
        finished_jobs[0]["sender"] is s.acct.callback.sender and finished_jobs[0]["message"].content == "deep"
    )
    assert s.runs == ["deep"] and len(s.executor.jobs) == 1
    join_typing()
    assert fake.count(TYPING) == 1  # no "cancel typing" after a sent answer


def test_customer_service_quick_result_is_still_the_passive_answer(tl: Timeline, fake: FakeWeChat) -> None:
    s = make(tl, fake, seconds=3.0)
    held = listen(signals.slow_result_held)
    p = push(tl, s.user, s.text("fast", 22))
    tl.run()
    assert p.reply == TextReply("answer to fast") and finished(p) == [T0 + 3.0]
    assert held == []  # nothing kept "in case": under customer service the job knows who delivers
    join_typing()
    assert fake.count(SEND) == 0 and fake.count(TYPING) == 0


def test_customer_service_result_stored_as_the_delivery_gives_up_is_answered_passively(
    tl: Timeline, fake: FakeWeChat
) -> None:
    """The job may end just before the delivery marks the message for customer service: the job
    saw no mark and sent nothing, so the delivery answers the result itself."""
    s = make(tl, fake, seconds=[None])
    original = s.store.set

    def set_and_finish(name: str, value: Any, ttl: float = 0) -> None:
        if name.startswith("slow:cs:"):
            s.runner.run_job(s.executor.jobs[0][1])
        original(name, value, ttl)

    s.store.set = set_and_finish  # type: ignore[method-assign]
    p = push(tl, s.user, s.text("just in time", 23))
    tl.run()
    assert p.reply == TextReply("answer to just in time") and finished(p) == [pytest.approx(T0 + 4.5)]
    join_typing()
    assert fake.count(SEND) == 0 and fake.count(TYPING) == 0


def test_customer_service_result_stored_after_the_mark_is_sent_not_answered(
    tl: Timeline, fake: FakeWeChat
) -> None:
    s = make(tl, fake, seconds=[None])
    original = s.store.set

    def set_then_finish(name: str, value: Any, ttl: float = 0) -> None:
        original(name, value, ttl)
        if name.startswith("slow:cs:"):
            s.runner.run_job(s.executor.jobs[0][1])

    s.store.set = set_then_finish  # type: ignore[method-assign]
    p = push(tl, s.user, s.text("close call", 24))
    tl.run()
    assert p.tries[0].body == b"success" and finished(p) == [pytest.approx(T0 + 4.5)]
    assert [m["text"]["content"] for m in sent_messages(fake, OPENID)] == ["answer to close call"]
    join_typing()
    assert fake.count(TYPING) == 0  # the delivery saw the result already handed to the API


def test_customer_service_a_retry_between_the_result_and_its_send_answers_it(
    tl: Timeline, fake: FakeWeChat
) -> None:
    """WeChat retries once more (the success was lost) just as the job stores its result, before the
    job sends it: the retry wins the one hand-out and answers it passively; nothing is sent."""
    s = make(tl, fake, seconds=8.0)
    xml = s.text("race", 51)
    original = s.store.set
    answers: list[Any] = []

    def set_then_retry(name: str, value: Any, ttl: float = 0) -> None:
        original(name, value, ttl)
        if name.startswith("slow:done:"):
            answers.append(s.user.post(xml))  # the retry, in that very moment

    s.store.set = set_then_retry  # type: ignore[method-assign]
    p = push(tl, s.user, xml)
    tl.run()
    assert p.tries[0].body == b"success" and finished(p) == [pytest.approx(T0 + 4.5)]
    assert [bytes(a.body) for a in answers] == [xml_at(TextReply("answer to race"), T0 + 8.0, tl)]
    join_typing()
    assert fake.count(SEND) == 0


def test_customer_service_failed_handler_cancels_typing(tl: Timeline, fake: FakeWeChat, caplog: Any) -> None:
    def broken(msg: Any) -> Any:
        raise RuntimeError("model down")

    s = make(tl, fake, seconds=8.0, answer=broken)
    failures = listen(signals.handler_failed)
    finished_jobs = listen(signals.slow_job_finished)
    with caplog.at_level(logging.ERROR, logger="wxmp.slow"):
        p = push(tl, s.user, s.text("q", 25))
        tl.at(T0 + 6, join_typing)  # the Typing request reached WeChat before the job ends
        tl.run()
    assert p.tries[0].body == b"success"
    join_typing()
    assert [c.json["command"] for c in fake.calls(TYPING)] == ["Typing", "CancelTyping"]
    assert fake.count(SEND) == 0
    assert [type(f["exception"]) for f in failures] == [RuntimeError]
    assert [x["ok"] for x in finished_jobs] == [False]
    assert logged(caplog, logging.ERROR) == [f"wxmp slow handler failed for 'text' from '{OPENID}'"]
    assert "RuntimeError: model down" in caplog.text  # with its traceback
    assert failures[0]["sender"] is s.acct.callback.sender is not None
    assert finished_jobs[0]["sender"] is s.acct.callback.sender
    assert failures[0]["message"].content == "q" and finished_jobs[0]["message"].content == "q"


def test_customer_service_long_answer_goes_out_in_five_parts_and_the_rest_is_kept(
    tl: Timeline, fake: FakeWeChat
) -> None:
    answer = "\n".join(f"第{i}段" + "字" * 600 for i in range(10))  # 10 lines of 1810 bytes
    s = make(tl, fake, seconds=[8.0, 1.0], answer=lambda msg: answer if msg.content == "long" else "short")
    held = listen(signals.slow_result_held)
    sent = listen(signals.slow_result_sent)
    push(tl, s.user, s.text("long", 26))
    tl.run()
    parts = [m["text"]["content"] for m in sent_messages(fake, OPENID)]
    lines = answer.split("\n")
    assert parts == lines[:5]
    assert [h["reason"] for h in held] == ["more than 5 messages"] and sent == []
    rest = push(tl, s.user, s.text("more", 27), at=T0 + 20)
    tl.run()
    # The rest as one passive text, rendered when it was kept (the job's end, T0 + 8).
    assert rest.tries[0].body == xml_at(TextReply("\n".join(lines[5:])), T0 + 8.0, tl)
    assert s.runs == ["long"]


@pytest.mark.parametrize(
    ("arrange", "errcode", "reason"),
    [
        (lambda fake: close_window(fake, OPENID), 45015, "the 48-hour window is closed"),
        (lambda fake: fake.fail_next(errcode=45047, paths=(SEND,)), 45047, "too many messages"),
        (lambda fake: fake.fail_next(errcode=48001, paths=(SEND,)), 48001, "no API access"),
        (lambda fake: fake.fail_next(errcode=40003, paths=(SEND,)), 40003, "customer-service send failed"),
    ],
)
def test_customer_service_errors_are_logged_signalled_not_retried_and_kept(
    tl: Timeline, fake: FakeWeChat, caplog: Any, arrange: Any, errcode: int, reason: str
) -> None:
    s = make(tl, fake, seconds=[8.0, 1.0], answer=lambda msg: "one\ntwo" if msg.content == "q" else "x")
    failed = listen(signals.customer_service_failed)
    held = listen(signals.slow_result_held)
    arrange(fake)
    with caplog.at_level(logging.WARNING, logger="wxmp.slow"):
        push(tl, s.user, s.text("q", 30))
        tl.run()
    assert [(f["errcode"], f["sent"]) for f in failed] == [(errcode, 0)]
    assert failed[0]["errmsg"] and failed[0]["message"].content == "q"
    assert [h["reason"] for h in held] == [reason]
    assert fake.count(SEND) == 1  # one attempt, no loop
    assert sent_messages(fake, OPENID) == []
    assert logged(caplog, logging.WARNING) == [
        f"wxmp slow: customer-service message to '{OPENID}' not sent: {reason} ({errcode}); "
        "kept for the next message"
    ]
    assert failed[0]["sender"] is s.acct.callback.sender is not None
    # The user's next message gets the kept answer first, as its passive reply, at once.
    nxt = push(tl, s.user, s.text("anything?", 31), at=T0 + 20)
    tl.run()
    assert nxt.tries[0].body == xml_at(TextReply("one\ntwo"), T0 + 8.0, tl)
    assert finished(nxt) == [T0 + 20]
    assert s.runs == ["q"] and fake.count(SEND) == 1


def test_a_send_failing_midway_keeps_the_unsent_part(tl: Timeline, fake: FakeWeChat) -> None:
    answer = "\n".join(c * 1500 for c in "abc")
    s = make(tl, fake, seconds=[8.0, 1.0], answer=lambda msg: answer if msg.content == "q" else "x")
    failed = listen(signals.customer_service_failed)
    original = s.acct.message.send
    calls: list[str] = []

    def second_fails(openid: str, msgtype: str, payload: Any, **kw: Any) -> Any:
        calls.append(payload["content"][0])
        if len(calls) == 2:
            fake.fail_next(errcode=45047, paths=(SEND,))
        return original(openid, msgtype, payload, **kw)

    s.acct.message.send = second_fails  # type: ignore[method-assign]
    push(tl, s.user, s.text("q", 32))
    tl.run()
    assert calls == ["a", "b"]
    assert [f["sent"] for f in failed] == [1]
    assert [m["text"]["content"] for m in sent_messages(fake, OPENID)] == ["a" * 1500]
    nxt = push(tl, s.user, s.text("rest?", 33), at=T0 + 20)
    tl.run()
    assert nxt.reply == TextReply("b" * 1500 + "\n" + "c" * 1500)


def test_a_network_failure_of_the_send_is_logged_and_the_result_kept(
    tl: Timeline, fake: FakeWeChat, caplog: Any
) -> None:
    s = make(tl, fake, seconds=[8.0, 1.0], answer=lambda msg: "kept" if msg.content == "q" else "x")
    failed = listen(signals.customer_service_failed)
    held = listen(signals.slow_result_held)
    fake.http_error_next(1, 502, paths=(SEND,))
    with caplog.at_level(logging.WARNING, logger="wxmp.slow"):
        push(tl, s.user, s.text("q", 34))
        tl.run()
    assert [(f["errcode"], f["sent"]) for f in failed] == [(None, 0)]
    assert "502" in failed[0]["errmsg"]
    assert [h["reason"] for h in held] == ["customer-service send failed"]
    assert logged(caplog, logging.WARNING) == [
        f"wxmp slow: customer-service message to '{OPENID}' not sent ({failed[0]['errmsg']})"
    ]
    assert failed[0]["message"].content == "q" and failed[0]["sender"] is s.acct.callback.sender
    nxt = push(tl, s.user, s.text("?", 35), at=T0 + 20)
    tl.run()
    assert nxt.reply == TextReply("kept")


def test_a_result_customer_service_cannot_send_is_kept_for_the_next_message(
    tl: Timeline, fake: FakeWeChat
) -> None:
    from wxmp.replies import TransferCustomerServiceReply

    s = make(
        tl,
        fake,
        seconds=[8.0, 1.0],
        answer=lambda msg: TransferCustomerServiceReply() if msg.content == "human" else "x",
    )
    held = listen(signals.slow_result_held)
    push(tl, s.user, s.text("human", 36))
    tl.at(T0 + 6, join_typing)  # the Typing request reached WeChat before the job ends
    tl.run()
    join_typing()
    assert [c.json["command"] for c in fake.calls(TYPING)] == ["Typing", "CancelTyping"]
    assert fake.count(SEND) == 0
    assert [h["reason"] for h in held] == ["not sendable through customer service"]
    nxt = push(tl, s.user, s.text("hello?", 37), at=T0 + 20)
    tl.run()
    assert nxt.tries[0].body == xml_at(TransferCustomerServiceReply(), T0 + 8.0, tl)


@pytest.mark.parametrize(
    "arrange",
    [lambda fake: close_window(fake, OPENID), lambda fake: fake.http_error_next(1, 502, paths=(SEND,))],
    ids=["45015", "network"],
)
def test_an_unsent_image_is_kept_as_its_passive_reply(tl: Timeline, fake: FakeWeChat, arrange: Any) -> None:
    s = make(
        tl, fake, seconds=[8.0, 1.0], answer=lambda msg: ImageReply("MEDIA_9") if msg.content == "q" else "x"
    )
    arrange(fake)
    push(tl, s.user, s.text("q", 43))
    nxt = push(tl, s.user, s.text("picture?", 44), at=T0 + 20)
    tl.run()
    assert nxt.tries[0].body == xml_at(ImageReply("MEDIA_9"), T0 + 8.0, tl)


def test_unsendable_results_of_two_users_are_each_kept_for_their_user(tl: Timeline, fake: FakeWeChat) -> None:
    from wxmp.replies import TransferCustomerServiceReply

    other_id = "oSlowUser0000000000000000003"
    fake.add_user(other_id)
    s = make(
        tl,
        fake,
        seconds=[8.0, 8.0, 1.0, 1.0],
        answer=lambda msg: TransferCustomerServiceReply() if msg.content == "human" else "x",
    )
    other = WeChatUser(s.acct.callback, TOKEN, openid=other_id)
    push(tl, s.user, s.text("human", 45))
    push(tl, other, other.message_xml("text", {"Content": "human"}, msg_id=46), at=T0 + 1)
    mine = push(tl, s.user, s.text("hello?", 47), at=T0 + 20)
    theirs = push(tl, other, other.message_xml("text", {"Content": "hello?"}, msg_id=48), at=T0 + 21)
    tl.run()
    assert mine.tries[0].body == xml_at(TransferCustomerServiceReply(), T0 + 8.0, tl)
    assert (
        theirs.tries[0].body
        == render(TransferCustomerServiceReply(), other_id, ACCOUNT, int(tl.wall(T0 + 9))).encode()
    )


def test_a_handler_answering_an_empty_body_keeps_nothing(tl: Timeline) -> None:
    from wxmp.replies import EmptyReply

    s = make(
        tl,
        seconds=[20.0, 1.0],
        slow_strategy="retries",
        answer=lambda m: EmptyReply() if m.content == "q" else "y",
    )
    held = listen(signals.slow_result_held)
    push(tl, s.user, s.text("q", 49))
    nxt = push(tl, s.user, s.text("next", 50), at=T0 + 60)
    tl.run()
    assert [h["message"].content for h in held] == ["next"]  # only the next message's, in case
    assert nxt.reply == TextReply("y")


def test_a_handler_answering_nothing_sends_nothing_and_keeps_nothing(tl: Timeline, fake: FakeWeChat) -> None:
    s = make(tl, fake, seconds=[8.0, 1.0], answer=lambda msg: None if msg.content == "quiet" else "spoken")
    held = listen(signals.slow_result_held)
    push(tl, s.user, s.text("quiet", 38))
    tl.at(T0 + 6, join_typing)  # the Typing request reached WeChat before the job ends
    tl.run()
    join_typing()
    assert fake.count(SEND) == 0 and held == []
    assert [c.json["command"] for c in fake.calls(TYPING)] == ["Typing", "CancelTyping"]
    nxt = push(tl, s.user, s.text("hello?", 39), at=T0 + 20)
    tl.run()
    assert nxt.reply == TextReply("spoken")  # the next message is answered, not swallowed


def test_retries_a_handler_answering_nothing_keeps_nothing(tl: Timeline) -> None:
    s = make(
        tl, seconds=[20.0, 1.0], slow_strategy="retries", answer=lambda m: None if m.content == "q" else "y"
    )
    held = listen(signals.slow_result_held)
    p = push(tl, s.user, s.text("q", 40))
    tl.run()
    assert p.shown == HOLDING and held == []
    nxt = push(tl, s.user, s.text("next", 41), at=T0 + 60)
    tl.run()
    assert nxt.reply == TextReply("y")


def test_an_image_answer_goes_out_as_an_image_message(tl: Timeline, fake: FakeWeChat) -> None:
    s = make(tl, fake, seconds=8.0, answer=lambda msg: ImageReply("MEDIA_1"))
    push(tl, s.user, s.text("draw", 42))
    tl.run()
    assert [c.json for c in fake.calls(SEND)] == [
        {"touser": OPENID, "msgtype": "image", "image": {"media_id": "MEDIA_1"}}
    ]


# -- not slow handlers ----------------------------------------------------------------------------


def test_ordinary_handler_too_slow_means_service_failure() -> None:
    """What slow handlers avoid: WeChatUser.deliver in real time (0.2 s stands for WeChat's 5 s)."""
    acct = Account(appid="wx00000000000slow2", token=TOKEN, cache="simple")
    release = threading.Event()

    @acct.on("text")
    def too_slow(msg: Any) -> str:
        release.wait(10)
        return "late"

    u = WeChatUser(acct.callback, TOKEN, openid=OPENID)
    delivery = u.deliver_text("hi", msg_id=41, timeout=0.2, attempts=3)
    release.set()
    assert delivery.failed and delivery.shown == SERVICE_FAILURE
    assert [a.timed_out for a in delivery.attempts] == [True, True, True]


def test_settings_are_validated() -> None:
    def account(**settings: Any) -> Account:
        return Account(appid="wx00000000000slow2", token=TOKEN, cache="simple", **settings)

    with pytest.raises(ConfigError, match="WXMP_SLOW_STRATEGY"):
        account(slow_strategy="sometimes")
    with pytest.raises(ConfigError, match="WXMP_SLOW_MARGIN"):
        account(slow_wechat_timeout=0.5, slow_margin=0.5)
    with pytest.raises(ConfigError, match="slow"):
        account().on("text", slow="maybe")
    assert account(slow_strategy="customer-service").settings.slow_strategy == "customer_service"
