"""wxmp.slow's machinery on fake time: leases and heartbeats, the records, the strategy choice, the
pickup of kept results, the job side, the executors, the asyncio driver and the text split.

What the user and WeChat see is in tests/test_slow_strategies.py; this file checks the parts that
make it hold across workers (a dead worker's job is rerun once, a running one never), again with the
instants on a :class:`Timeline` (tests/slow_timeline.py) and no real waits except where a test says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cachelib import SimpleCache
from slow_timeline import (
    ACCOUNT,
    HOLDING,
    OPENID,
    SEND,
    STUCK,
    T0,
    TOKEN,
    ActorExecutor,
    Killed,
    TimedStore,
    Timeline,
    finished,
    join_typing,
    listen,
    logged,
    make,
    push,
    sleep,
    xml_at,
)

from wxmp import Account, signals
from wxmp.cache import SharedStore
from wxmp.deadline import remaining
from wxmp.messages import parse as parse_message
from wxmp.middleware import Callback
from wxmp.replies import Article, MusicReply, NewsReply, TextReply, VideoReply, VoiceReply
from wxmp.slow import MAX_MESSAGES, TEXT_LIMIT, SlowOptions, SlowRunner, ThreadExecutor, split_text
from wxmp.testing import FakeWeChat, WeChatUser


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


def key(msg_id: int, openid: str = OPENID, account: str = ACCOUNT) -> str:
    return f"{account}:m:{openid}:{msg_id}"  # the dedup key of a message


# -- leases and heartbeats ------------------------------------------------------------------------


def test_a_running_job_keeps_its_lease_so_no_other_worker_runs_it(tl: Timeline) -> None:
    store = TimedStore(tl)
    a = make(tl, seconds=12.0, store=store, slow_strategy="retries", slow_lease=3.0)
    b = make(tl, seconds=1.0, store=store, slow_strategy="retries", slow_lease=3.0)
    p = push(tl, [a.user, b.user], a.text("twelve", 1))
    tl.run()
    assert finished(p) == [pytest.approx(T0 + 5.5), pytest.approx(T0 + 10.5), T0 + 12.0]
    assert p.reply == TextReply("answer to twelve")  # the third delivery, on a again
    assert a.runs == ["twelve"] and b.runs == [] and b.executor.jobs == []
    lease = f"slow:lease:{key(1)}"
    claim = {"owner": a.runner.owner, "at": tl.wall(T0)}
    assert store.log(lease, "add") == [(T0, "add", claim, 3.0)]
    # Renewed every third of the lease while the job ran, by a's heartbeat, for a full lease each time;
    # the job's own start (T0 + 12) writes it once more, then nothing.
    renewals = [(at, value, ttl) for at, op, value, ttl in store.log(lease, "set")]
    assert [at for at, _, _ in renewals] == [T0 + k for k in range(1, 13)] + [T0 + 12.0]
    assert all(value["owner"] == a.runner.owner and ttl == 3.0 for _, value, ttl in renewals)
    assert all(value == claim for _, value, _ in renewals[:-1])  # the claim as made, owner and time
    assert renewals[-1][1] == {"owner": a.runner.owner, "at": tl.wall(T0 + 12)}  # the job's start
    assert {seconds for _, seconds in tl.beats} == {1.0}
    # b's deliveries tried to claim it and were refused: at their start, then every half lease.
    refused = [at for at, op, _, _ in store.log(lease, "add refused")]
    assert T0 + 5.0 in refused and T0 + 10.0 in refused


def test_a_dead_workers_job_is_claimed_again_once_its_lease_lapses(tl: Timeline) -> None:
    store = TimedStore(tl)
    a = make(tl, seconds=[None], store=store, slow_strategy="retries", slow_lease=3.0)
    b = make(tl, seconds=0.3, store=store, slow_strategy="retries", slow_lease=3.0)
    p = push(tl, [a.user, b.user], a.text("phoenix", 2))

    def die() -> None:  # a's process is killed at T0 + 2.5: its delivery and its heartbeat end
        tl.kill("delivery-1")
        tl.stop(a.runner)

    tl.at(T0 + 2.5, die)
    tl.run()
    assert isinstance(p.tries[0].box["error"], Killed)
    # a renewed at T0 + 1 and T0 + 2, so the lease lapsed at T0 + 5: the second delivery (on b)
    # claims it at its start and b runs it.
    lease = f"slow:lease:{key(2)}"
    assert [(at, op) for at, op, _, _ in store.log(lease, "add", "set")] == [
        (T0, "add"),
        (T0 + 1.0, "set"),
        (T0 + 2.0, "set"),
        (T0 + 5.0, "add"),
        (T0 + 5.3, "set"),  # the job starting on b
    ]
    assert [at for at, _ in b.executor.jobs] == [T0 + 5.0]
    assert finished(p)[1] == T0 + 5.3 and p.reply == TextReply("answer to phoenix")
    assert a.runs == [] and b.runs == ["phoenix"]


def test_a_waiting_delivery_checks_the_lease_every_half_lease(tl: Timeline) -> None:
    """The dead worker renewed until T0 + 3.5: its lease lapses at T0 + 6.5. The second delivery
    (T0 + 5) is refused at its start and at T0 + 6.5 - no: at T0 + 5 + 1.5 = 6.5 it finds it lapsed."""
    store = TimedStore(tl)
    a = make(tl, seconds=[None], store=store, slow_strategy="retries", slow_lease=3.0)
    b = make(tl, seconds=0.5, store=store, slow_strategy="retries", slow_lease=3.0)
    p = push(tl, [a.user, b.user], a.text("check", 3))

    def die() -> None:
        tl.kill("delivery-1")
        tl.stop(a.runner)

    tl.at(T0 + 3.5, die)
    tl.run()
    lease = f"slow:lease:{key(3)}"
    adds = [(at, op) for at, op, _, _ in store.log(lease, "add", "add refused")]
    # a's own delivery: claimed at T0, refused (its own live lease) at T0 + 1.5 and T0 + 3.
    # b's: refused at T0 + 5 (the lease runs to T0 + 6), claimed at T0 + 6.5.
    assert adds == [
        (T0, "add"),
        (pytest.approx(T0 + 1.5, abs=0.06), "add refused"),
        (pytest.approx(T0 + 3.0, abs=0.11), "add refused"),
        (T0 + 5.0, "add refused"),
        (pytest.approx(T0 + 6.5, abs=0.06), "add"),
    ]
    assert p.reply == TextReply("answer to check")
    assert finished(p)[1] == pytest.approx(T0 + 7.0, abs=0.06)
    # The job b claimed while waiting is the same job, strategy and all.
    [(_, job)] = b.executor.jobs
    assert (job["key"], job["strategy"], job["message"]["Content"]) == (key(3), "retries", "check")


def test_a_claimer_stops_renewing_once_a_queue_worker_runs_the_job(tl: Timeline) -> None:
    """With a task queue the job runs in another process: that one renews the lease while the handler
    runs and stops when it ends, so the lease can lapse (and a dead queue worker's job be rerun)."""
    store = TimedStore(tl)
    web = make(tl, seconds=[None], store=store, slow_strategy="retries", slow_lease=3.0, handler=False)
    queue = make(tl, store=store, slow_strategy="retries", slow_lease=3.0, handler=False)
    queue.runner.executor = ActorExecutor(tl)

    @web.acct.on("text", slow=True)
    @queue.acct.on("text", slow=True)
    def slow(msg: Any) -> str:
        sleep(tl, 4.0)  # the handler takes 4 s of fake time
        return "from the queue"

    p = push(tl, web.user, web.text("queued", 4))
    tl.at(T0 + 1.5, lambda: tl.spawn("queue worker", lambda: queue.runner.run_job(web.executor.jobs[0][1])))
    tl.run()
    # The first delivery was held to T0 + 5.5; the retry (T0 + 5) sees the result stored in the other
    # process on its next look (a poll: no event crosses processes).
    assert p.reply == TextReply("from the queue")
    assert finished(p) == [T0 + 5.5, pytest.approx(T0 + 5.55, abs=0.051)]
    lease = f"slow:lease:{key(4)}"
    owners = [(at, value["owner"]) for at, op, value, _ in store.log(lease, "add", "set")]
    w, q = web.runner.owner, queue.runner.owner
    # The web worker renews its claim until the queue worker has taken the lease over (T0 + 1.5),
    # then only the queue worker renews it, until its handler returns at T0 + 5.5.
    assert owners == [(T0, w), (T0 + 1.0, w), (T0 + 1.5, q), (T0 + 2.5, q), (T0 + 3.5, q), (T0 + 4.5, q)]
    assert [at for at, _ in web.executor.jobs] == [T0]


def test_one_heartbeat_thread_renews_every_job_of_a_runner(tl: Timeline) -> None:
    s = make(tl, seconds=[6.0, 6.0], slow_strategy="retries", slow_lease=3.0)
    push(tl, s.user, s.text("one", 5), attempts=1)
    push(tl, s.user, s.text("two", 6), attempts=1, at=T0 + 0.5)
    tl.run()
    sets = [
        (at, name) for at, op, name, _, _ in s.store.writes if op == "set" and name.startswith("slow:lease:")
    ]
    # Both leases renewed by the same heartbeat, on its own beat (T0 + 1, 2, ...), not the claims'.
    assert sets[:4] == [
        (T0 + 1.0, f"slow:lease:{key(5)}"),
        (T0 + 2.0, f"slow:lease:{key(5)}"),
        (T0 + 2.0, f"slow:lease:{key(6)}"),
        (T0 + 3.0, f"slow:lease:{key(5)}"),
    ] or sets[:4] == [
        (T0 + 1.0, f"slow:lease:{key(5)}"),
        (T0 + 1.0, f"slow:lease:{key(6)}"),
        (T0 + 2.0, f"slow:lease:{key(5)}"),
        (T0 + 2.0, f"slow:lease:{key(6)}"),
    ]
    assert len({at for at, _ in tl.beats if at < T0 + 6}) == len([b for b in tl.beats if b[0] < T0 + 6])
    assert s.runner._heartbeat.thread is not None and s.runner._heartbeat.thread.name == "wxmp-slow-lease"
    assert s.runner._heartbeat.thread.daemon


def test_a_heartbeat_that_died_is_started_again_by_the_next_job(tl: Timeline, monkeypatch: Any) -> None:
    """An unexpected store error kills the heartbeat thread at its first beat (T0 + 1). The next job
    that starts (T0 + 2, here from the test's own thread, not a daemon) starts a new one, a daemon,
    which renews the later job's lease so that it is not run twice."""
    died: list[BaseException | None] = []

    def excepthook(args: Any) -> None:
        died.append(args.exc_value)
        dying = args.thread
        # Once it has ended, the timeline must look again (it waits for every heartbeat to settle).
        threading.Thread(target=lambda: (dying.join(STUCK), tl.nudge()), daemon=True).start()

    monkeypatch.setattr(threading, "excepthook", excepthook)
    s = make(tl, seconds=[2.0, 6.0], slow_strategy="retries", slow_lease=3.0)
    original = s.store.get

    def get(name: str) -> Any:
        if threading.current_thread().name == "wxmp-slow-lease" and not died:
            raise RuntimeError("backend bug")
        return original(name)

    s.store.get = get  # type: ignore[method-assign]
    threads: list[Any] = []
    push(tl, s.user, s.text("first", 166), attempts=1)
    tl.at(T0 + 0.5, lambda: threads.append(s.runner._heartbeat.thread))
    tl.run(until=T0 + 3)
    assert [str(e) for e in died] == ["backend bug"]
    push(tl, s.user, s.text("second", 167), attempts=1, at=T0 + 10)
    tl.run()
    assert threads[0] is not None and not threads[0].is_alive()
    assert s.runner._heartbeat.thread is not threads[0]
    assert threading.current_thread().daemon is False and s.runner._heartbeat.thread.daemon
    lease = f"slow:lease:{key(167)}"
    assert [at for at, _, _, _ in s.store.log(lease, "set")][:3] == [T0 + 11, T0 + 12, T0 + 13]
    assert [at for at, _ in s.executor.jobs] == [T0, T0 + 10] and s.runs == ["first", "second"]


def test_a_lease_that_cannot_be_renewed_is_logged(tl: Timeline, caplog: Any) -> None:
    s = make(tl, seconds=2.5, slow_strategy="retries", slow_lease=3.0)
    push(tl, s.user, s.text("q", 7), attempts=1)

    def outage() -> None:
        s.store.down = ("slow:lease:",)

    tl.at(T0 + 0.5, outage)
    tl.at(T0 + 1.5, lambda: setattr(s.store, "down", ()))
    with caplog.at_level(logging.WARNING, logger="wxmp.slow"):
        tl.run()
    warnings = [r.getMessage() for r in caplog.records if "renew" in r.getMessage()]
    assert warnings == ["wxmp slow: could not renew a lease (lease down)"]  # at T0 + 1; T0 + 2 renews
    assert s.runs == ["q"]


def test_an_executor_that_refuses_the_job_leaves_the_lease_to_lapse(tl: Timeline) -> None:
    s = make(tl, slow_strategy="retries", slow_lease=3.0)

    class Broken:
        def submit(self, runner: SlowRunner, job: dict[str, Any]) -> None:
            raise RuntimeError("queue down")

    s.runner.executor = Broken()
    p = push(tl, s.user, s.text("q", 8), attempts=1)
    tl.run(until=T0 + 10)
    assert str(p.tries[0].box["error"]) == "queue down"  # the request fails: WeChat will retry
    lease = f"slow:lease:{key(8)}"
    assert [op for _, op, _, _ in s.store.log(lease)] == ["add"]  # claimed, never renewed


def test_a_held_delivery_claims_a_lapsed_lease_and_reruns_the_job(tl: Timeline) -> None:
    """The heartbeat stalls at T0 + 3.9 (last renewal at T0 + 3.67): the lease lapses while the first
    delivery is held past WeChat's deadline (T0 + 4.5 to 5.5). The held delivery looks at the lease
    every half lease, from T0 + 4.5 on, and at T0 + 5 claims it and starts the same job again."""
    s = make(tl, seconds=[None, 0.25], slow_strategy="retries", slow_lease=1.0)
    p = push(tl, s.user, s.text("again", 160), attempts=1)
    tl.at(T0 + 3.9, lambda: tl.stop(s.runner))
    tl.run()
    assert p.tries[0].body == b"success" and finished(p) == [T0 + 5.5]
    (first_at, first), (second_at, second) = s.executor.jobs
    assert (first_at, second_at) == (T0, T0 + 5.0)
    assert second == {**first, "claimed_at": tl.wall(T0 + 5.0)}
    assert (
        first["key"] == key(160) and first["strategy"] == "retries" and first["message"]["Content"] == "again"
    )
    assert s.runs == ["again"]  # the second run, at T0 + 5.25; its result is kept for the next message
    nxt = push(tl, s.user, s.text("next", 161), at=T0 + 30)
    tl.run()
    assert nxt.tries[0].body == xml_at(TextReply("answer to again"), T0 + 5.25, tl)


def test_a_held_delivery_does_not_rerun_a_job_that_finished(tl: Timeline) -> None:
    """The job ends at T0 + 4.55, after the first delivery's answer time: its lease lapses (T0 + 5.15)
    while that delivery is held (it looks every half lease: T0 + 4.8, 5.1, 5.4). The held delivery
    claims the lapsed lease at T0 + 5.4 but finds the result, so nothing runs twice; WeChat's retry
    (T0 + 5) answers the result."""
    s = make(tl, seconds=[4.55, 1.0], slow_strategy="retries", slow_lease=0.6)
    p = push(tl, s.user, s.text("once", 162))
    tl.run()
    lease = f"slow:lease:{key(162)}"
    assert [at for at, op, _, _ in s.store.log(lease, "add")] == [T0, pytest.approx(T0 + 5.4)]
    assert s.runs == ["once"] and [at for at, _ in s.executor.jobs] == [T0]
    assert p.reply == TextReply("answer to once") and finished(p) == [T0 + 5.5, T0 + 5.0]


# -- the records ----------------------------------------------------------------------------------


def test_records_are_named_per_message_and_live_for_the_result_ttl(tl: Timeline, fake: FakeWeChat) -> None:
    s = make(tl, seconds=[20.0, 1.0], slow_strategy="retries", slow_result_ttl=900, slow_lease=3.0)
    push(tl, s.user, s.text("slow", 9))
    push(tl, s.user, s.text("pickup", 10), at=T0 + 30)
    tl.run()
    k = key(9)
    ttls = {
        name: {w[4] for w in s.store.writes if w[2] == name and w[1] != "add refused"}
        for name in s.store.names("slow:")
    }
    assert ttls == {
        f"slow:try:{k}:1": {900},
        f"slow:try:{k}:2": {900},
        f"slow:try:{k}:3": {900},
        f"slow:lease:{k}": {3.0},
        f"slow:gave-up:{k}": {900},
        f"slow:done:{k}": {900},
        f"slow:held:{ACCOUNT}:{OPENID}": {900},
        f"slow:sent:{k}": {900},
    }
    # Plain data another worker (or version) reads: marks are 1, the result says it is ok.
    values = {
        name: [w[3] for w in s.store.writes if w[2] == name and w[1] != "add refused"]
        for name in s.store.names("slow:")
        if not name.startswith(("slow:lease:", "slow:done:", "slow:held:"))
    }
    assert values == {
        **{f"slow:try:{k}:{n}": [1] for n in (1, 2, 3)},
        f"slow:gave-up:{k}": [1],
        f"slow:sent:{k}": [1],
    }
    assert [v["ok"] for _, _, v, _ in s.store.log(f"slow:done:{k}")] == [True]
    cs = make(tl, fake, seconds=[8.0], slow_result_ttl=900)
    push(tl, cs.user, cs.text("cs", 11), at=T0 + 40)
    tl.run()
    assert cs.store.log(f"slow:cs:{key(11)}") == [(T0 + 44.5, "set", 1, 900)]
    assert cs.store.log(f"slow:sent:{key(11)}") == [(T0 + 48.0, "add", 1, 900)]


def test_a_delivery_beyond_the_expected_attempts_answers_like_the_last(tl: Timeline) -> None:
    s = make(tl, seconds=[None], slow_strategy="retries")
    first = push(tl, s.user, s.text("q", 12))
    tl.run()
    assert first.shown == HOLDING
    fourth = push(tl, s.user, s.text("q", 12), attempts=1, at=T0 + 20)  # WeChat tried once more
    tl.run()
    assert fourth.shown == HOLDING and finished(fourth) == [pytest.approx(T0 + 24.5)]
    assert s.store.names(f"slow:try:{key(12)}") == [f"slow:try:{key(12)}:{n}" for n in (1, 2, 3)]


def test_the_margin_sets_the_passive_deadline(tl: Timeline) -> None:
    s = make(tl, seconds=[None], slow_strategy="retries", slow_margin=0.33, slow_attempts=1)
    p = push(tl, s.user, s.text("q", 13), attempts=1)
    tl.run()
    assert finished(p) == [pytest.approx(T0 + 4.67, abs=1e-6)]
    assert p.tries[0].body == xml_at(TextReply(HOLDING), T0 + 4.67, tl)


def test_a_held_delivery_is_answered_after_wechats_deadline_plus_the_margin(tl: Timeline) -> None:
    s = make(tl, seconds=[None], slow_strategy="retries", slow_margin=0.33, slow_lease=3.0)
    p = push(tl, s.user, s.text("q", 14), attempts=1)
    tl.run()
    assert finished(p) == [pytest.approx(T0 + 5.33, abs=1e-6)]
    held = [(at, seconds) for name, at, seconds in tl.pauses if seconds > 0.05]
    assert held == [(pytest.approx(T0 + 4.67), 0.66)] or all(sec <= 0.75 for _, sec in held)
    assert {round(sec, 6) for _, sec in held} <= {0.75, 0.66}


def test_a_held_delivery_looks_at_the_lease_every_quarter_lease(tl: Timeline) -> None:
    s = make(tl, seconds=[None], slow_strategy="retries", slow_lease=2.0)
    push(tl, s.user, s.text("q", 15), attempts=1)
    tl.run()
    held = [(at, seconds) for name, at, seconds in tl.pauses if at >= T0 + 4.5 - 1e-9 and seconds > 1e-6]
    assert held == [(pytest.approx(T0 + 4.5), 0.5), (pytest.approx(T0 + 5.0), pytest.approx(0.5))]


def test_two_deliveries_waiting_in_one_process_both_wake_when_the_job_ends(tl: Timeline) -> None:
    """WeChat (or a proxy) delivers the same push twice at once: both wait for the one job, and
    both answer the instant it ends (the result once, success for the other)."""
    s = make(tl, seconds=2.0, slow_strategy="retries")
    first = push(tl, s.user, s.text("q", 16), attempts=1)
    second = push(tl, s.user, s.text("q", 16), attempts=1, at=T0 + 1.0)
    tl.run()
    assert finished(first) == [T0 + 2.0] and finished(second) == [T0 + 2.0]
    assert first.reply == TextReply("answer to q") and second.tries[0].body == b"success"
    assert len(s.executor.jobs) == 1
    assert s.runner._events == {}  # the waits' event is dropped with them: nothing piles up per message


# -- which strategy -------------------------------------------------------------------------------


def strategy_of(tl: Timeline, s: Any, msg_id: int, at: float) -> str:
    """The strategy a message (from a user with nothing kept) arriving at ``at`` gets: the job carries
    it. (A quick job: the delivery answers it, no "typing" request goes out.)"""
    before = len(s.executor.jobs)
    probe = WeChatUser(s.acct.callback, TOKEN, openid="oProbeUser000000000000000001")
    push(tl, probe, probe.message_xml("text", {"Content": "which?"}, msg_id=msg_id), attempts=1, at=at)
    tl.run()
    assert len(s.executor.jobs) == before + 1
    return str(s.executor.jobs[-1][1]["strategy"])


def test_auto_means_customer_service_with_a_secret_or_an_external_refresher(
    tl: Timeline, fake: FakeWeChat
) -> None:
    assert strategy_of(tl, make(tl, fake, seconds=1.0), 20, T0) == "customer_service"
    external = make(tl, seconds=1.0, refresher="external")
    assert strategy_of(tl, external, 21, T0 + 10) == "customer_service"
    assert strategy_of(tl, make(tl, seconds=1.0), 22, T0 + 20) == "retries"


def test_a_handlers_own_strategy_wins_over_the_accounts(tl: Timeline, fake: FakeWeChat) -> None:
    s = make(tl, fake, seconds=[None], handler=False, slow_strategy="retries")

    @s.acct.on("text", match="^cs", slow="customer_service")
    @s.acct.on("text", match="^which", slow=True)
    def slow(msg: Any) -> str:
        return "x"

    assert strategy_of(tl, s, 23, T0) == "retries"  # slow=True: the account's
    push(tl, s.user, s.text("cs please", 24), attempts=1, at=T0 + 10)
    tl.run()
    assert s.executor.jobs[-1][1]["strategy"] == "customer_service"


def test_without_an_account_customer_service_falls_back_to_retries(tl: Timeline) -> None:
    callback = Callback(TOKEN)
    runner = SlowRunner(
        callback,
        store=TimedStore(tl),
        executor=(executor := ActorExecutor(tl)),
        clock=tl.clock,
        monotonic=tl.monotonic,
        wait=tl.wait,
        options=SlowOptions(strategy="customer_service"),
    )
    tl.watch(runner)
    callback.slow = runner

    @callback.on("text", slow=True)
    def slow(msg: Any) -> str:
        sleep(tl, 20.0)
        return "late"

    user = WeChatUser(callback, TOKEN, openid=OPENID)
    p = push(tl, user, user.message_xml("text", {"Content": "q"}, msg_id=25))
    tl.run()
    assert executor.jobs[0][1]["strategy"] == "retries"
    assert p.shown == SlowOptions().holding_text
    assert user.send_text("next") == TextReply("late")


def test_after_48001_the_account_uses_retries_for_a_day(tl: Timeline, fake: FakeWeChat) -> None:
    store = TimedStore(tl)
    s = make(tl, fake, seconds=[8.0, 1.0], store=store)
    other = make(tl, fake, seconds=1.0, store=store)  # another process of the same account
    fake.fail_next(errcode=48001, paths=(SEND,))
    push(tl, s.user, s.text("q", 30))
    tl.run()
    assert store.log("slow:no-api") == [(T0 + 8.0, "set", 1, 86400)]
    assert strategy_of(tl, s, 31, T0 + 20) == "retries"
    assert strategy_of(tl, other, 32, T0 + 30) == "retries"
    assert strategy_of(tl, other, 33, T0 + 86_000) == "retries"
    assert strategy_of(tl, s, 34, T0 + 8 + 86_400) == "customer_service"  # the day is over


def test_the_no_api_mark_is_remembered_in_the_process_for_a_minute(tl: Timeline, fake: FakeWeChat) -> None:
    store = TimedStore(tl)
    s = make(tl, fake, seconds=[8.0, 1.0], store=store)
    other = make(tl, fake, seconds=1.0, store=store)
    fake.fail_next(errcode=48001, paths=(SEND,))
    push(tl, s.user, s.text("q", 40))
    tl.run()
    assert strategy_of(tl, other, 41, T0 + 10) == "retries"  # read from the store at T0 + 10
    tl.at(T0 + 11, lambda: store.delete("slow:no-api"))  # the mark is gone from the store
    probe = WeChatUser(s.acct.callback, TOKEN, openid="oProbeUser000000000000000002")
    probe_other = WeChatUser(other.acct.callback, TOKEN, openid="oProbeUser000000000000000002")
    for user, msg_id, at in [
        (probe, 42, T0 + 8 + 59.9),  # s learnt it itself at T0 + 8
        (probe, 43, T0 + 8 + 60),
        (probe_other, 44, T0 + 10 + 59.9),  # other read it at T0 + 10
        (probe_other, 45, T0 + 10 + 60),
    ]:
        push(tl, user, user.message_xml("text", {"Content": "which?"}, msg_id=msg_id), attempts=1, at=at)
    tl.run()
    jobs = {job["message"]["MsgId"]: job["strategy"] for _, job in s.executor.jobs + other.executor.jobs}
    assert [jobs[str(i)] for i in (42, 43, 44, 45)] == ["retries", "customer_service"] * 2


# -- results kept for the next message ------------------------------------------------------------


def kept(tl: Timeline, **settings: Any) -> Any:
    """A runner with a result kept for OPENID (a 20 s job under retries, past the last retry)."""
    s = make(tl, seconds=[20.0, 1.0], slow_strategy="retries", **settings)

    @s.acct.on("click")
    def click(msg: Any) -> str:
        return "menu"

    @s.acct.on("image")
    def image(msg: Any) -> str:
        return "a picture"

    p = push(tl, s.user, s.text("question", 50))
    tl.run()
    assert p.shown == HOLDING
    return s


def test_a_kept_result_is_only_for_its_user_and_account(tl: Timeline) -> None:
    s = kept(tl)
    other = WeChatUser(s.acct.callback, TOKEN, openid="oSomeoneElse0000000000000001")
    other_account = WeChatUser(s.acct.callback, TOKEN, openid=OPENID, account="gh_another0000")
    p1 = push(tl, other, other.message_xml("text", {"Content": "hi"}, msg_id=51), at=T0 + 30)
    p2 = push(tl, other_account, other_account.message_xml("text", {"Content": "hi"}, msg_id=52), at=T0 + 40)
    p3 = push(tl, s.user, s.text("mine?", 53), at=T0 + 50)
    tl.run()
    assert p1.reply == TextReply("answer to hi") and finished(p1) == [T0 + 31]  # their own job
    assert p2.reply == TextReply("answer to hi") and finished(p2) == [T0 + 41]
    assert p3.reply == TextReply("answer to question") and finished(p3) == [T0 + 50]


def test_menu_taps_do_not_take_a_kept_result(tl: Timeline) -> None:
    s = kept(tl)
    assert s.user.click("V1001") == TextReply("menu")
    p = push(tl, s.user, s.text("now", 54), at=T0 + 30)
    tl.run()
    assert p.reply == TextReply("answer to question")


def test_with_a_keyword_only_that_text_takes_the_kept_result(tl: Timeline) -> None:
    s = kept(tl, slow_keyword="1")
    assert s.user.send_image() == TextReply("a picture")
    other = push(tl, s.user, s.text("more?", 55), at=T0 + 30)
    one = push(tl, s.user, s.text(" 1 ", 56), at=T0 + 40)
    again = push(tl, s.user, s.text("1", 57), at=T0 + 50)
    tl.run()
    assert other.reply == TextReply("answer to more?")  # a new question, answered
    assert one.reply == TextReply("answer to question") and finished(one) == [T0 + 40]
    assert again.reply == TextReply("answer to 1")  # handed out once: "1" is now a question


def test_kept_results_are_handed_out_oldest_first_ten_at_most(tl: Timeline) -> None:
    """With a keyword, results pile up until the user asks: each "1" gets the oldest one left."""
    s = make(tl, seconds=[20.0] * 11 + [None], slow_strategy="retries", slow_keyword="1")
    for i in range(1, 12):
        push(tl, s.user, s.text(f"q{i}", 100 + i), at=T0 + 100 * i)
    tl.run()
    asks = [push(tl, s.user, s.text("1", 200 + j), attempts=1, at=T0 + 2000 + 10 * j) for j in range(11)]
    tl.run()
    # The first question's result was dropped when the eleventh was kept.
    assert [a.shown for a in asks[:10]] == [f"answer to q{i}" for i in range(2, 12)]
    assert all(finished(a) == [T0 + 2000 + 10 * j] for j, a in enumerate(asks[:10]))
    assert asks[10].answered is None  # nothing left: "1" became a question of its own
    held = s.store.log(f"slow:held:{ACCOUNT}:{OPENID}")
    taken = [(len(v), ttl) for at, _, v, ttl in held if at >= T0 + 2000]
    assert taken == [(n, 172800) for n in range(9, 0, -1)]  # each ask rewrote the rest...
    assert s.store.get(f"slow:held:{ACCOUNT}:{OPENID}") is None  # ...and the last one removed it
    assert s.runs == [f"q{i}" for i in range(1, 12)]


def test_a_single_kept_record_and_junk_are_understood(tl: Timeline) -> None:
    s = make(tl, seconds=1.0, slow_strategy="retries")
    name = f"slow:held:{ACCOUNT}:{OPENID}"
    old = xml_at(TextReply("kept by an earlier version"), T0, tl).decode()
    s.store.set(name, {"key": "gh:o:m:1", "xml": old}, 100)  # no retry window: an earlier version's
    first = push(tl, s.user, s.text("hello", 150))
    tl.run()
    assert first.tries[0].body == old.encode() and finished(first) == [T0]
    s.store.set(name, ["junk", {"key": "no xml"}], 100)
    second = push(tl, s.user, s.text("hello again", 151), at=T0 + 10)
    tl.run()
    assert second.reply == TextReply("answer to hello again") and finished(second) == [T0 + 11.0]


def test_a_kept_result_still_in_its_window_or_of_this_message_is_passed_over(tl: Timeline) -> None:
    """The oldest kept result may wait for WeChat's retry of its message, or be this very message's
    own: the pickup passes over it and hands out the next one."""
    s = make(tl, seconds=1.0, slow_strategy="retries")
    name = f"slow:held:{ACCOUNT}:{OPENID}"
    ready = xml_at(TextReply("ready"), T0, tl).decode()
    waiting = {"key": "gh:o:m:7", "xml": "<xml>waiting</xml>", "after": tl.wall(T0 + 100)}
    s.store.set(name, [waiting, {"key": "gh:o:m:8", "xml": ready, "after": 0}], 1000)
    first = push(tl, s.user, s.text("hello", 163))
    tl.run()
    assert first.tries[0].body == ready.encode() and finished(first) == [T0]
    assert s.store.get(name) == [waiting]
    # A retry of message 164, whose own result is kept first: the next one goes out to it.
    own = {"key": key(164), "xml": "<xml>own</xml>", "after": tl.wall(T0 + 100)}
    s.store.set(name, [own, {"key": "gh:o:m:9", "xml": ready, "after": 0}], 1000)
    retry = push(tl, s.user, s.text("again", 164), at=T0 + 10)
    tl.run()
    assert retry.tries[0].body == ready.encode() and finished(retry) == [T0 + 10]
    assert s.store.get(name) == [own] and s.runs == []


def test_a_result_for_a_push_without_an_account_is_kept_under_an_empty_one(tl: Timeline) -> None:
    """A push without ToUserName (a hand-made job) keeps its result under an empty account name, as
    its dedup key names it, so no real account's follower can pick it up."""
    s = make(tl, seconds=[None], slow_strategy="retries")
    raw = dict(parse_message(s.text("nameless", 165)).raw)
    del raw["ToUserName"]
    tl.at(T0, lambda: s.runner.run_job({"message": raw, "key": f":m:{OPENID}:165", "strategy": "retries"}))
    tl.run()
    assert s.store.names("slow:held:") == [f"slow:held::{OPENID}"]
    assert [h["key"] for h in s.store.get(f"slow:held::{OPENID}")] == [f":m:{OPENID}:165"]


def test_after_the_holding_text_the_next_message_gets_the_result_at_once(tl: Timeline) -> None:
    """The job ends just after the last delivery answered the holding text: WeChat will not retry,
    so the next message gets the result even within the retry window."""
    s = make(tl, seconds=[14.6, 1.0], slow_strategy="retries")
    p = push(tl, s.user, s.text("q", 57))
    nxt = push(tl, s.user, s.text("next", 58), at=T0 + 15.0)
    tl.run()
    assert p.shown == HOLDING
    assert nxt.tries[0].body == xml_at(TextReply("answer to q"), T0 + 14.6, tl)
    assert finished(nxt) == [T0 + 15.0]


def test_the_retry_window_of_a_kept_result_counts_from_the_claim(tl: Timeline) -> None:
    """WeChat gave up after two deliveries (no holding text was answered): the result, ready at
    T0 + 12, waits out the window counted from the claim (T0 + 15.5), not from its end."""
    s = make(tl, seconds=[12.0, 1.0], slow_strategy="retries")
    first = push(tl, s.user, s.text("q", 62), attempts=2)
    nxt = push(tl, s.user, s.text("next", 63), at=T0 + 16)
    tl.run()
    assert first.answered is None
    assert nxt.tries[0].body == xml_at(TextReply("answer to q"), T0 + 12, tl)


def test_a_job_without_strategy_or_claim_time_is_kept_from_its_run(tl: Timeline) -> None:
    """A job written by hand (or by an older version) has only the message and its key: it runs
    as ``retries`` and its result waits out the retry window counted from the run."""
    s = make(tl, seconds=[None], slow_strategy="retries")
    raw = parse_message(s.text("by hand", 59)).raw
    tl.at(T0 + 100, lambda: s.runner.run_job({"message": raw, "key": key(59)}))
    early = push(tl, s.user, s.text("early", 60), at=T0 + 115)
    late = push(tl, s.user, s.text("late", 61), at=T0 + 115.5)
    tl.run()
    assert early.shown == HOLDING  # its own slow job (never run here), not the kept result
    assert late.tries[0].body == xml_at(TextReply("answer to by hand"), T0 + 100, tl)


# -- the job side ---------------------------------------------------------------------------------


def test_a_job_whose_handler_is_gone_answers_success_and_logs_it(tl: Timeline, caplog: Any) -> None:
    s = make(tl, seconds=[2.0], slow_strategy="retries", handler=False)
    enabled = [True]

    @s.acct.on("text", slow=True, when=lambda msg: enabled[0])
    def slow(msg: Any) -> str:
        s.runs.append(msg.content)
        return "x"

    finished_jobs = listen(signals.slow_job_finished)
    p = push(tl, s.user, s.text("q", 70))
    tl.at(T0 + 1.0, lambda: enabled.__setitem__(0, False))  # the handler no longer takes it
    with caplog.at_level(logging.WARNING, logger="wxmp.slow"):
        tl.run()
    assert p.tries[0].body == b"success" and finished(p) == [T0 + 2.0]
    assert logged(caplog, logging.WARNING) == [f"wxmp slow: no slow handler matches job '{key(70)}' any more"]
    assert finished_jobs == [] and s.runs == []
    assert s.store.get(f"slow:done:{key(70)}") == {"ok": False}


def test_a_long_job_key_is_cut_in_the_log(tl: Timeline, caplog: Any) -> None:
    s = make(tl, seconds=[1.0], slow_strategy="retries", handler=False)
    enabled = [True]

    @s.acct.on("text", slow=True, when=lambda msg: enabled[0])
    def slow(msg: Any) -> str:
        return "x"

    long_id = "o" + "x" * 300
    user = WeChatUser(s.acct.callback, TOKEN, openid=long_id)
    push(tl, user, user.message_xml("text", {"Content": "q"}, msg_id=99))
    tl.at(T0 + 0.5, lambda: enabled.__setitem__(0, False))
    with caplog.at_level(logging.WARNING, logger="wxmp.slow"):
        tl.run()
    k = key(99, openid=long_id)
    assert logged(caplog, logging.WARNING) == [
        f"wxmp slow: no slow handler matches job {k[:200]!r}… any more"
    ]


def test_a_failing_job_is_logged_and_its_lease_released(tl: Timeline, caplog: Any) -> None:
    s = make(tl, seconds=[2.0], slow_strategy="retries", slow_lease=3.0)
    s.store.down_for_writes = ("slow:done:",)
    p = push(tl, s.user, s.text("q", 71), attempts=1)
    tl.at(T0 + 2.5, lambda: setattr(s.store, "down_for_writes", ()))
    with caplog.at_level(logging.ERROR, logger="wxmp.slow"):
        tl.run()
    assert logged(caplog, logging.ERROR) == [f"wxmp slow: job for 'text' from '{OPENID}' failed"]
    assert "CacheUnavailable: done down" in caplog.text
    assert s.runs == ["q"]
    lease = f"slow:lease:{key(71)}"
    assert [at for at, op, _, _ in s.store.log(lease, "set")] == [T0 + 1.0, T0 + 2.0, T0 + 2.0]
    assert p.tries[0].finished is not None


def test_failures_of_event_jobs_name_the_event(tl: Timeline, caplog: Any) -> None:
    s = make(tl, seconds=[1.0, 1.0], handler=False)

    @s.acct.on("click", slow=True)
    def tapped(msg: Any) -> str:
        if msg.event_key == "BROKEN":
            raise RuntimeError("no")
        return "tapped"

    s.store.down_for_writes = ("slow:done:",)
    push(tl, s.user, s.user.message_xml("event", {"Event": "CLICK", "EventKey": "K1"}))
    tl.at(T0 + 5, lambda: setattr(s.store, "down_for_writes", ()))
    push(tl, s.user, s.user.message_xml("event", {"Event": "CLICK", "EventKey": "BROKEN"}), at=T0 + 10)
    with caplog.at_level(logging.ERROR, logger="wxmp.slow"):
        tl.run()
    assert logged(caplog, logging.ERROR) == [
        f"wxmp slow: job for 'click/event' from '{OPENID}' failed",
        f"wxmp slow handler failed for 'click/event' from '{OPENID}'",
    ]


def test_a_job_rerun_in_the_same_process_ends_cleanly_twice(tl: Timeline) -> None:
    """The heartbeat stalls (its store calls hang): the lease lapses, the waiting delivery claims the
    job again and this process runs it a second time; both runs end without an error (a task
    queue would retry a job that raised)."""
    s = make(tl, slow_strategy="retries", slow_lease=3.0, handler=False)
    s.runner.executor = executor = ActorExecutor(tl)
    boxes: list[dict[str, Any]] = []
    original = tl.spawn

    def spawn(name: str, fn: Any) -> dict[str, Any]:
        box = original(name, fn)
        if name == "job":
            boxes.append(box)
        return box

    tl.spawn = spawn  # type: ignore[method-assign]

    @s.acct.on("text", slow=True)
    def slow(msg: Any) -> str:
        sleep(tl, 3.5)
        return "twice"

    p = push(tl, s.user, s.text("q", 96), attempts=1)
    tl.at(T0 + 0.5, lambda: tl.stop(s.runner))
    tl.run()
    assert [at for at, _ in executor.jobs] == [T0, pytest.approx(T0 + 3.0, abs=0.11)]
    assert [sorted(b) for b in boxes] == [["at", "value"], ["at", "value"]]
    assert p.tries[0].finished is not None


def test_a_dropped_claim_does_not_stop_the_renewal_of_the_others(tl: Timeline) -> None:
    store = TimedStore(tl)
    web = make(tl, seconds=[None, 6.0], store=store, slow_strategy="retries", slow_lease=3.0)
    queue = make(tl, seconds=[None], store=store, slow_strategy="retries", slow_lease=3.0)
    push(tl, web.user, web.text("queued", 97), attempts=1)
    push(tl, web.user, web.text("local", 98), attempts=1, at=T0 + 0.25)
    tl.at(T0 + 0.5, lambda: queue.runner.run_job(web.executor.jobs[0][1]))  # another process runs the first
    tl.run(until=T0 + 3)
    local = f"slow:lease:{key(98)}"
    assert [at for at, op, _, _ in store.log(local, "set")] == [T0 + 1.0, T0 + 2.0, T0 + 3.0]


def test_the_handler_runs_in_the_callbacks_context_under_a_long_deadline(tl: Timeline) -> None:
    seen: list[Any] = []
    entered: list[str] = []
    s = make(tl, seconds=[1.0, 1.0], handler=False, slow_result_ttl=30)

    @contextlib.contextmanager
    def scope() -> Iterator[None]:
        entered.append("in")
        yield
        entered.append("out")

    s.acct.callback.context = scope

    @s.acct.on("text", slow=True)
    def slow(msg: Any) -> str:
        seen.append((list(entered), remaining()))
        return "ok"

    push(tl, s.user, s.text("q", 72))
    tl.run()
    (inside, left) = seen[0]
    assert inside == ["in"] and entered == ["in", "out"]
    assert 59.0 < left <= 60.0  # at least 60 s, whatever WeChat's 5 s

    long = make(tl, seconds=1.0, handler=False, slow_result_ttl=600)

    @long.acct.on("text", slow=True)
    def slow2(msg: Any) -> str:
        seen.append(remaining())
        return "ok"

    push(tl, long.user, long.text("q", 73), at=T0 + 10)
    tl.run()
    assert 599.0 < seen[1] <= 600.0  # WXMP_SLOW_RESULT_TTL when longer


def test_a_bare_callbacks_job_runs_without_a_context(tl: Timeline) -> None:
    callback = Callback(TOKEN)
    runner = tl.watch(
        SlowRunner(callback, executor=ActorExecutor(tl), clock=tl.clock, monotonic=tl.monotonic, wait=tl.wait)
    )
    callback.slow = runner

    @callback.on("text", slow=True)
    async def slow(msg: Any) -> str:  # an async handler is run to its end too
        return "async answer to " + msg.content

    user = WeChatUser(callback, TOKEN, openid=OPENID)
    p = push(tl, user, user.message_xml("text", {"Content": "q"}, msg_id=74))
    tl.run()
    assert p.reply == TextReply("async answer to q") and finished(p) == [T0]


def test_job_signals_say_how_it_ended(tl: Timeline) -> None:
    s = make(tl, seconds=1.0, answer=lambda m: TextReply("fine") if m.content == "ok" else 1 / 0)
    ended = listen(signals.slow_job_finished)
    failed = listen(signals.handler_failed)
    push(tl, s.user, s.text("ok", 75))
    push(tl, s.user, s.text("bad", 76), at=T0 + 10)
    tl.run()
    assert [(e["message"].content, e["ok"]) for e in ended] == [("ok", True), ("bad", False)]
    assert [(f["message"].content, type(f["exception"])) for f in failed] == [("bad", ZeroDivisionError)]


def test_a_failing_handler_under_retries_answers_success_at_once(tl: Timeline) -> None:
    s = make(tl, seconds=2.0, slow_strategy="retries", answer=lambda m: 1 / 0)
    p = push(tl, s.user, s.text("q", 77))
    nxt = push(tl, s.user, s.text("q2", 78), at=T0 + 60)
    tl.run()
    assert p.tries[0].body == b"success" and finished(p) == [T0 + 2.0]
    assert nxt.tries[0].body == b"success"  # nothing kept for the next message either
    assert s.store.get(f"slow:done:{key(77)}") == {"ok": False}


@pytest.mark.parametrize(
    ("reply", "sent"),
    [
        (VoiceReply("V1"), {"msgtype": "voice", "voice": {"media_id": "V1"}}),
        (
            VideoReply("M1", title="clip"),
            {"msgtype": "video", "video": {"media_id": "M1", "title": "clip"}},
        ),
        (
            VideoReply("M2", description="a clip"),
            {"msgtype": "video", "video": {"media_id": "M2", "description": "a clip"}},
        ),
        (
            MusicReply("http://m/1.mp3", "TH", title="T", description="D"),
            {
                "msgtype": "music",
                "music": {
                    "title": "T",
                    "description": "D",
                    "musicurl": "http://m/1.mp3",
                    "hqmusicurl": "http://m/1.mp3",
                    "thumb_media_id": "TH",
                },
            },
        ),
        (
            MusicReply("http://m/1.mp3", "TH", title="T", description="D", hq_music_url="http://m/hq.mp3"),
            {
                "msgtype": "music",
                "music": {
                    "title": "T",
                    "description": "D",
                    "musicurl": "http://m/1.mp3",
                    "hqmusicurl": "http://m/hq.mp3",
                    "thumb_media_id": "TH",
                },
            },
        ),
        (
            NewsReply(
                (
                    Article("A", "a", "http://p/a.jpg", "http://u/a"),
                    Article("B", "b", "http://p/b.jpg", "http://u/b"),
                )
            ),
            {
                "msgtype": "news",
                "news": {
                    "articles": [
                        {"title": "A", "description": "a", "url": "http://u/a", "picurl": "http://p/a.jpg"}
                    ]
                },
            },
        ),
    ],
)
def test_each_reply_kind_goes_out_as_its_customer_service_message(
    tl: Timeline, fake: FakeWeChat, reply: Any, sent: dict[str, Any]
) -> None:
    s = make(tl, fake, seconds=8.0, answer=lambda msg: reply)
    push(tl, s.user, s.text("q", 79))
    tl.run()
    assert [c.json for c in fake.calls(SEND)] == [{"touser": OPENID, **sent}]


def test_a_typing_failure_is_only_logged(tl: Timeline, fake: FakeWeChat, caplog: Any) -> None:
    s = make(tl, fake, seconds=8.0)
    fake.fail_next(errcode=45072, paths=("/cgi-bin/message/custom/typing",))
    with caplog.at_level(logging.INFO, logger="wxmp.slow"):
        p = push(tl, s.user, s.text("q", 80))
        tl.at(T0 + 6, lambda: [t.join(STUCK) for t in threading.enumerate() if t.name == "wxmp-slow-typing"])
        tl.run()
    assert p.tries[0].body == b"success"
    (line,) = logged(caplog, logging.INFO)
    assert re.fullmatch(rf"wxmp slow: typing indicator for '{OPENID}' not shown \(.*45072.*\)", line)
    assert fake.count(SEND) == 1


def test_unsent_rests_of_two_users_are_each_kept_for_their_user(tl: Timeline, fake: FakeWeChat) -> None:
    other_id = "oSlowUser0000000000000000003"
    fake.add_user(other_id)
    s = make(
        tl, fake, seconds=[8.0, 8.0, 1.0, 1.0], answer=lambda msg: f"{msg.content} for {msg.from_user_name}"
    )
    other = WeChatUser(s.acct.callback, TOKEN, openid=other_id)
    fake.fail_next(2, errcode=45047, paths=(SEND,))
    push(tl, s.user, s.text("q", 83))
    push(tl, other, other.message_xml("text", {"Content": "q"}, msg_id=84), at=T0 + 1)
    mine = push(tl, s.user, s.text("rest?", 85), at=T0 + 20)
    theirs = push(tl, other, other.message_xml("text", {"Content": "rest?"}, msg_id=86), at=T0 + 21)
    tl.run()
    assert mine.reply == TextReply(f"q for {OPENID}")
    assert theirs.reply == TextReply(f"q for {other_id}")


def test_typing_requests_run_in_daemon_threads(tl: Timeline, fake: FakeWeChat) -> None:
    """A typing request WeChat does not answer must not keep the process from exiting, whichever
    thread asked for it (the request's, or the job's: here the test's own, not a daemon)."""

    def broken(msg: Any) -> str:
        raise RuntimeError("no")

    s = make(tl, fake, seconds=8.0, answer=broken)
    gate = threading.Event()
    original = s.acct.message.typing

    def stuck_typing(openid: str, on: bool = True) -> Any:
        gate.wait(STUCK)
        return original(openid, on)

    s.acct.message.typing = stuck_typing  # type: ignore[method-assign]
    threads: list[threading.Thread] = []
    push(tl, s.user, s.text("q", 82), attempts=1)
    tl.at(T0 + 9, lambda: threads.extend(t for t in threading.enumerate() if t.name == "wxmp-slow-typing"))
    tl.run()
    gate.set()
    assert threading.current_thread().daemon is False
    assert len(threads) == 2 and all(t.daemon for t in threads)  # "typing" on, then off


def test_a_cache_outage_runs_the_handler_in_the_request(tl: Timeline, caplog: Any) -> None:
    s = make(tl, seconds=1.0)
    s.store.down = ("slow:",)
    with caplog.at_level(logging.WARNING, logger="wxmp.slow"):
        p = push(tl, s.user, s.text("q", 81))
        tl.run()
    assert p.reply == TextReply("answer to q") and finished(p) == [T0]
    assert s.executor.jobs == []
    assert logged(caplog, logging.WARNING) == [
        "wxmp slow: cache unavailable (held down); running the handler in the request"
    ]


def test_two_taps_on_two_slow_buttons_in_one_second_are_two_jobs(tl: Timeline) -> None:
    """Events have no MsgId: a push is the sender, the second, the event and its key (as for the
    dedup), so a retry of a tap is the same job and a tap on another button is not."""
    s = make(tl, seconds=[1.0, 1.0], handler=False)

    @s.acct.on("click", slow=True)
    def tapped(msg: Any) -> str:
        return "tapped " + msg.event_key

    clock = lambda: 1_800_000_000.0  # noqa: E731 (both taps in one second)
    user = WeChatUser(s.acct.callback, TOKEN, openid=OPENID, clock=clock)
    one = user.message_xml("event", {"Event": "CLICK", "EventKey": "K1"})
    two = user.message_xml("event", {"Event": "CLICK", "EventKey": "K2"})
    p1, p2 = push(tl, s.user, one), push(tl, s.user, two, at=T0 + 0.5)
    tl.run()
    assert (p1.reply, p2.reply) == (TextReply("tapped K1"), TextReply("tapped K2"))
    assert [job["key"] for _, job in s.executor.jobs] == [
        f"{ACCOUNT}:e:{OPENID}:1800000000:CLICK:K1",
        f"{ACCOUNT}:e:{OPENID}:1800000000:CLICK:K2",
    ]


# -- the runner's parts ---------------------------------------------------------------------------


def test_the_runner_takes_the_accounts_settings() -> None:
    acct = Account(
        appid="wx00000000000slow2",
        token=TOKEN,
        cache="simple",
        slow_strategy="retries",
        slow_holding_text="wait",
        slow_keyword="go",
        slow_wechat_timeout=4.0,
        slow_margin=0.25,
        slow_attempts=2,
        slow_lease=2.0,
        slow_result_ttl=60,
        slow_workers=3,
    )
    runner = acct.callback.slow
    assert isinstance(runner, SlowRunner)
    assert runner.options == SlowOptions("retries", "wait", "go", 4.0, 0.25, 2, 2.0, 60, 3, 0.05)
    assert isinstance(runner.executor, ThreadExecutor) and runner.executor.workers == 3
    assert repr(runner.executor) == "<ThreadExecutor workers=3>"
    assert ThreadExecutor().workers == SlowOptions().workers == 8  # alone, WXMP_SLOW_WORKERS' default
    assert repr(runner) == f"<SlowRunner retries {runner.store!r}>"
    assert runner.account is acct and runner.callback is acct.callback


def test_the_runner_shares_the_accounts_store_across_processes(tl: Timeline, redis_url: str) -> None:
    """Two workers of one account on one Redis: the second sees the first's claim."""
    runners = []
    for _ in range(2):
        acct = Account(
            appid="wx00000000000slow2", token=TOKEN, cache=redis_url, slow_strategy="retries", slow_lease=600
        )
        executor = ActorExecutor(tl)
        runner = tl.watch(
            SlowRunner(
                acct.callback,
                account=acct,
                executor=executor,
                clock=tl.clock,
                monotonic=tl.monotonic,
                wait=tl.wait,
            )
        )
        acct.callback.slow = runner

        @acct.on("text", slow=True)
        def slow(msg: Any) -> str:
            sleep(tl, 30.0)
            return "x"

        runners.append((acct, runner, executor))
    users = [WeChatUser(a.callback, TOKEN, openid=OPENID) for a, _, _ in runners]
    assert runners[0][1].store.backend == "redis"
    p = push(tl, users, users[0].message_xml("text", {"Content": "q"}, msg_id=90), attempts=2)
    tl.run(until=T0 + 12)
    assert len(p.tries) == 2
    assert len(runners[0][2].jobs) == 1 and runners[1][2].jobs == []


def test_a_bare_callbacks_runner_uses_its_dedup_store_or_its_own(tl: Timeline) -> None:
    shared = SharedStore(SimpleCache(threshold=100, default_timeout=0), probe=False)
    with_dedup = SlowRunner(Callback(TOKEN, store=shared))
    assert with_dedup.store is shared
    assert with_dedup.options == SlowOptions()
    alone = SlowRunner(Callback(TOKEN, store=shared, dedup=False))
    assert alone.store is not shared and alone.store.backend == "simple"
    alone.store.set("x", 1)
    assert shared.get("x") is None


def test_the_default_wait_ends_when_the_job_does() -> None:
    """Real time, the default clocks and pool: a quick job is answered by the delivery at once."""
    acct = Account(appid="wx00000000000slow2", token=TOKEN, cache="simple", slow_strategy="retries")
    release = threading.Event()

    @acct.on("text", slow=True)
    def slow(msg: Any) -> str:
        assert release.wait(STUCK)
        return "done"

    user = WeChatUser(acct.callback, TOKEN, openid=OPENID)
    timer = threading.Timer(0.05, release.set)
    timer.start()
    assert user.send_text("q", msg_id=91) == TextReply("done")
    runner = acct.callback.slow
    assert isinstance(runner, SlowRunner) and isinstance(runner.executor, ThreadExecutor)
    runner.executor.shutdown()


def test_the_default_wait_gives_up_at_the_deadline() -> None:
    """Real time, the default wait: a job that does not end answers the holding text in time
    (WeChat's timeout scaled to 0.3 s)."""
    acct = Account(
        appid="wx00000000000slow2",
        token=TOKEN,
        cache="simple",
        slow_strategy="retries",
        slow_wechat_timeout=0.3,
        slow_margin=0.1,
        slow_attempts=1,
    )
    release = threading.Event()

    @acct.on("text", slow=True)
    def slow(msg: Any) -> str:
        release.wait(STUCK)
        return "late"

    user = WeChatUser(acct.callback, TOKEN, openid=OPENID)
    try:
        assert user.send_text("q", msg_id=95) == TextReply(HOLDING)
    finally:
        release.set()
        runner = acct.callback.slow
        assert isinstance(runner, SlowRunner) and isinstance(runner.executor, ThreadExecutor)
        runner.executor.shutdown()


def test_the_thread_executor_waits_for_running_jobs_on_shutdown() -> None:
    executor = ThreadExecutor(1)
    started, shutting_down = threading.Event(), threading.Event()
    finished: list[int] = []

    class Runner:
        def run_job(self, job: dict[str, Any]) -> None:
            started.set()
            assert shutting_down.wait(STUCK)
            time.sleep(0.05)  # still running when a shutdown that does not wait would return
            finished.append(1)

    executor.submit(Runner(), {})  # type: ignore[arg-type]
    assert started.wait(STUCK)
    shutting_down.set()
    executor.shutdown()
    assert finished == [1]


def test_the_asyncio_driver_waits_on_the_loop() -> None:
    """process_async: None for an ordinary message, the result once the job ends, the holding
    text when it does not end in time (WeChat's timeout scaled to 0.3 s here: real time)."""
    acct = Account(
        appid="wx00000000000slow2",
        token=TOKEN,
        cache="simple",
        slow_strategy="retries",
        slow_wechat_timeout=0.3,
        slow_margin=0.1,
        slow_attempts=1,
    )
    release = threading.Event()

    @acct.on("text", match="^hello$")
    def hello(msg: Any) -> str:
        return "hi"

    @acct.on("text", slow=True)
    def slow(msg: Any) -> str:
        if msg.content == "quick":
            return "quick answer"
        release.wait(STUCK)
        return "late answer"

    runner = acct.callback.slow
    assert isinstance(runner, SlowRunner)
    user = WeChatUser(acct.callback, TOKEN, openid=OPENID)
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await real_sleep(seconds)

    def message(content: str, msg_id: int) -> Any:
        return parse_message(user.message_xml("text", {"Content": content}, msg_id=msg_id))

    async def main() -> list[Any]:
        asyncio.sleep = recording_sleep  # type: ignore[assignment]
        try:
            return [
                await runner.process_async(message("hello", 92)),
                await runner.process_async(message("quick", 93)),
                await runner.process_async(message("slow", 94)),
            ]
        finally:
            asyncio.sleep = real_sleep  # type: ignore[assignment]

    hello_reply, quick, slow_reply = asyncio.run(main())
    release.set()
    assert hello_reply is None
    assert "<Content><![CDATA[quick answer]]></Content>" in quick
    assert f"<Content><![CDATA[{HOLDING}]]></Content>" in slow_reply
    assert sleeps and max(sleeps) <= 0.02  # the event is looked at every 20 ms at most
    runner.executor.shutdown()  # type: ignore[attr-defined]


def test_the_thread_executor_makes_its_pool_on_first_use_and_anew_after_fork() -> None:
    executor = ThreadExecutor(2)
    assert executor._pool is None
    ran = threading.Event()
    names: list[str] = []

    class Runner:
        def run_job(self, job: dict[str, Any]) -> None:
            names.append(threading.current_thread().name)
            ran.set()

    executor.submit(Runner(), {"key": "k"})  # type: ignore[arg-type]
    assert ran.wait(STUCK)
    assert names[0].startswith("wxmp-slow")
    pool = executor.pool()
    assert executor.pool() is pool and pool._max_workers == 2
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new pool, and it runs jobs
        ok = executor.pool() is not pool
        ran.clear()
        executor.submit(Runner(), {"key": "k"})  # type: ignore[arg-type]
        ok = ok and ran.wait(10)
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        assert pipe.read() == b"1"
    os.waitpid(pid, 0)
    executor.shutdown()
    assert executor._pool is None
    assert pool._shutdown
    executor.shutdown()  # twice is harmless


# -- the split ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "parts"),
    [
        ("", TEXT_LIMIT, [""]),
        ("   ", TEXT_LIMIT, ["   "]),
        ("a" * 2000, None, ["a" * 2000]),
        ("a" * 2001, None, ["a" * 2000, "a"]),
        ("字" * 700, None, ["字" * 666, "字" * 34]),  # 3 bytes a character: 1998 bytes fit
        ("x" * 1500 + " " + "y" * 1000, None, ["x" * 1500, "y" * 1000]),
        ("x" * 500 + " " + "y" * 2000, None, ["x" * 500 + " " + "y" * 1499, "y" * 501]),  # too early a break
        ("x" * 1000 + " " + "y" * 1100, None, ["x" * 1000 + " " + "y" * 999, "y" * 101]),  # half: too early
        ("x" * 1001 + " " + "y" * 1100, None, ["x" * 1001, "y" * 1100]),
        ("a" * 1200 + "\n" + "b" * 300 + " " + "c" * 1000, None, ["a" * 1200 + "\n" + "b" * 300, "c" * 1000]),
        ("a" * 1200 + " " + "b" * 300 + "\n" + "c" * 1000, None, ["a" * 1200 + " " + "b" * 300, "c" * 1000]),
        ("a" * 1999 + "\n\n\n" + "b" * 10, None, ["a" * 1999, "b" * 10]),
        ("a" * 1999 + "\n" + "XYZ", None, ["a" * 1999, "XYZ"]),  # only newlines are dropped
        ("x" * 1500 + " " + "y" * 499, None, ["x" * 1500 + " " + "y" * 499]),  # exactly the limit
        (
            "a" * 1100 + "\n" + "b" * 300 + "\n" + "c" * 1000,
            None,
            ["a" * 1100 + "\n" + "b" * 300, "c" * 1000],
        ),
        ("a" * 1100 + " " + "b" * 300 + " " + "c" * 1000, None, ["a" * 1100 + " " + "b" * 300, "c" * 1000]),
        ("a" * 1999 + " " + "   ", None, ["a" * 1999]),
        ("a" * 1999 + " " + "  b", None, ["a" * 1999, "  b"]),
        ("word " * 30, 100, ["word " * 19 + "word", "word " * 10]),
    ],
    ids=lambda v: f"{len(v)}ch" if isinstance(v, str) else None,
)
def test_split_text(text: str, limit: int | None, parts: list[str]) -> None:
    """Cut at the last newline or space before the limit when it lies past half of it."""
    got = split_text(text) if limit is None else split_text(text, limit)
    assert got == parts
    assert all(len(p.encode()) <= (limit or TEXT_LIMIT) for p in got)


def test_the_limits_are_wechats() -> None:
    assert TEXT_LIMIT == 2000 and MAX_MESSAGES == 5
    assert json.loads(json.dumps(SlowOptions().__dict__)) == SlowOptions().__dict__
