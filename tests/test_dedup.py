"""Retry dedup: claim/record semantics, waiting without sleeping, dead caches, and two real processes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from cachelib import BaseCache, SimpleCache

from wxmp.cache import SharedStore
from wxmp.dedup import Deduplicator
from wxmp.dedupstore import PENDING
from wxmp.middleware import Callback
from wxmp.testing.clock import FakeClock
from wxmp.testing.user import WeChatUser

ROOT = Path(__file__).resolve().parent.parent


def simple_store() -> SharedStore:
    return SharedStore(SimpleCache(default_timeout=0))


class DeadCache(BaseCache):
    """A backend that is down: every call raises like a lost connection."""

    def get(self, key: str) -> Any:
        raise ConnectionError("down")

    def set(self, key: str, value: Any, timeout: int | None = None) -> Any:
        raise ConnectionError("down")

    def add(self, key: str, value: Any, timeout: int | None = None) -> Any:
        raise ConnectionError("down")


def test_first_claim_runs_then_retry_gets_the_reply() -> None:
    dedup = Deduplicator(simple_store())
    first = dedup.claim("k")
    assert first.run and first.record
    dedup.record("k", "<xml>r</xml>")
    retry = dedup.claim("k")
    assert not retry.run and retry.reply == "<xml>r</xml>"
    assert dedup.claim("other").run


def test_retry_waits_for_a_running_first() -> None:
    store = simple_store()
    clock = FakeClock(0)
    calls = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        clock.advance(seconds)
        if len(calls) == 3:  # the first run finishes while the retry polls
            dedup.record("k", "<xml>late</xml>")

    dedup = Deduplicator(store, wait=2.0, poll=0.05, clock=clock, sleep=sleep)
    assert dedup.claim("k").run
    retry = dedup.claim("k")
    assert retry == (False, False, "<xml>late</xml>")
    assert len(calls) == 3


def test_retry_gives_up_with_success() -> None:
    clock = FakeClock(0)
    store = simple_store()
    dedup = Deduplicator(store, wait=1.0, poll=0.25, clock=clock, sleep=clock.sleep)
    dedup.claim("k")
    assert dedup.backend.read("k") == PENDING
    assert dedup.claim("k").reply == "success"
    assert clock.slept == [0.25] * 4


def test_dead_cache_processes_without_dedup_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(0)
    dedup = Deduplicator(SharedStore(DeadCache()), clock=clock, warn_every=60)
    with caplog.at_level(logging.WARNING, "wxmp.callback"):
        for _ in range(5):
            claim = dedup.claim("k")
            assert claim.run and not claim.record
        dedup.record("k", "x")  # swallowed
        clock.advance(61)
        dedup.claim("k")
    warnings = [r for r in caplog.records if "without dedup" in r.getMessage()]
    assert len(warnings) == 2


def test_a_cache_that_times_out_is_left_alone_for_a_few_seconds() -> None:
    from wxmp.cache import CacheUnavailable

    clock = FakeClock(0)
    dedup = Deduplicator(simple_store(), clock=clock, retry_after=5)
    calls = []

    class TimingOut:
        def claim(self, key: str, lease: float) -> bytes | None:
            calls.append(key)
            clock.advance(2.0)  # a socket timeout
            raise CacheUnavailable("redis dedup store: TimeoutError")

    dedup.backend = TimingOut()  # type: ignore[assignment]
    assert dedup.claim("a") == (True, False, "")
    assert dedup.claim("b") == (True, False, "")  # not asked: one timeout, not one per message
    assert calls == ["a"]
    clock.advance(5)
    dedup.claim("c")
    assert calls == ["a", "c"]


def test_dead_cache_never_500s_through_the_callback() -> None:
    clock = FakeClock(1714036504)
    cb = Callback("tok123", store=SharedStore(DeadCache()), clock=clock)
    cb.on("text")(lambda msg: "still here")
    user = WeChatUser(cb, "tok123", clock=clock)
    assert user.send_text("hi").content == "still here"  # type: ignore[union-attr]


def test_duplicate_through_the_callback_runs_once() -> None:
    clock = FakeClock(1714036504)
    cb = Callback("tok123", clock=clock)
    runs = []
    cb.on("text")(lambda msg: runs.append(1) or f"run {len(runs)}")
    user = WeChatUser(cb, "tok123", clock=clock)
    assert user.send_text("a", msg_id=5).content == "run 1"  # type: ignore[union-attr]
    assert user.send_text("a", msg_id=5).content == "run 1"  # type: ignore[union-attr]
    assert len(runs) == 1
    assert user.send_text("a", msg_id=6).content == "run 2"  # type: ignore[union-attr]


def test_dedup_off() -> None:
    clock = FakeClock(1714036504)
    cb = Callback("tok123", dedup=False, clock=clock)
    runs = []
    cb.on("text")(lambda msg: runs.append(1) or "ok")
    user = WeChatUser(cb, "tok123", clock=clock)
    user.send_text("a", msg_id=5)
    user.send_text("a", msg_id=5)
    assert len(runs) == 2


def test_events_dedup_on_sender_time_and_name() -> None:
    clock = FakeClock(1714036504)
    cb = Callback("tok123", clock=clock)
    runs = []
    cb.on("click")(lambda msg: runs.append(msg.event_key) or msg.event_key)
    user = WeChatUser(cb, "tok123", clock=clock)
    user.click("A")
    user.click("A")  # same user, same second, same event: a retry
    user.click("B")  # a different button in the same second is not
    clock.advance(1)
    user.click("A")
    assert runs == ["A", "B", "A"]


WORKER = textwrap.dedent(
    """
    import json, sys
    from wxmp.cache import SharedStore, resolve_cache
    from wxmp.middleware import Callback
    from wxmp.testing.user import WeChatUser

    spec, runs_file, who = sys.argv[1:]
    cb = Callback("tok123", store=SharedStore(resolve_cache(spec, ""), namespace="dedup-test"))

    @cb.on("text")
    def handler(msg):
        with open(runs_file, "a") as f:
            f.write(who + "\\n")
        return "reply from " + who

    user = WeChatUser(cb, "tok123", clock=lambda: 1714036504.0)
    cb.verifier.clock = lambda: 1714036504.0
    print("ready", flush=True)
    sys.stdin.readline()  # the test releases both workers at once
    reply = user.send_text("retry me", msg_id=987654321)
    print(json.dumps(reply.content if reply is not None else None), flush=True)
    """
)


def run_workers(tmp_path: Path, spec: str, names: list[str], together: bool) -> list[str | None]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    runs = tmp_path / "runs.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results: list[str | None] = []

    def start(name: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(script), spec, str(runs), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    def finish(proc: subprocess.Popen[str]) -> str | None:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        return json.loads(out.strip().splitlines()[-1])

    if together:
        procs = [start(n) for n in names]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [finish(p) for p in procs]
    else:
        for n in names:
            p = start(n)
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
            results.append(finish(p))
    return results


@pytest.fixture(params=["filesystem", "redis"])
def cache_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "filesystem":
        return f"filesystem:{tmp_path / 'cache'}"
    return request.getfixturevalue("redis_url")


@pytest.mark.fleet
def test_retry_on_another_process_gets_the_same_reply(tmp_path: Path, cache_spec: str) -> None:
    results = run_workers(tmp_path, cache_spec, ["A", "B"], together=False)
    assert results == ["reply from A", "reply from A"]
    assert (tmp_path / "runs.txt").read_text().split() == ["A"]


@pytest.mark.fleet
def test_simultaneous_retries_run_the_handler_once(tmp_path: Path, redis_url: str) -> None:
    results = run_workers(tmp_path, redis_url, ["A", "B", "C"], together=True)
    runs = (tmp_path / "runs.txt").read_text().split()
    assert len(runs) == 1
    winner = f"reply from {runs[0]}"
    # The winner answers its reply; the others answer it too, or "success" if they gave up waiting.
    assert winner in results
    assert set(results) <= {winner, None}


# Workers on one filesystem cache, each its own process: they say what they did and wait for the
# test's word, so the test orders their steps without sleeping.
FILE_WORKER = textwrap.dedent(
    """
    import json, os, sys
    from wxmp.cache import SharedStore, resolve_cache
    from wxmp.middleware import Callback
    from wxmp.testing.user import WeChatUser

    spec, runs_file, who, how = sys.argv[1:]
    cb = Callback("tok123", store=SharedStore(resolve_cache(spec, ""), namespace="dedup-test"))

    def step(word):
        print(word, flush=True)
        assert sys.stdin.readline().strip() == "go"

    @cb.on("text")
    def handler(msg):
        with open(runs_file, "a") as f:
            f.write(who + "\\n")
        if how == "slow":  # still running when the others' deliveries come: its claim is on disk
            step("running")
        return "reply from " + who

    user = WeChatUser(cb, "tok123", clock=lambda: 1714036504.0)
    cb.verifier.clock = lambda: 1714036504.0
    step("ready")
    reply = user.send_text("retry me", msg_id=987654321)
    print(json.dumps(reply.content if reply is not None else None), flush=True)
    if how == "crash":
        os._exit(0)  # no atexit, no flush: only what is on disk survives
    if how == "exit":
        sys.exit(0)  # a clean exit: atexit writes the replies still queued
    if how == "stay":
        step("answered")
    """
)


class FileWorker:
    def __init__(self, tmp_path: Path, name: str, how: str = "") -> None:
        script = tmp_path / "file_worker.py"
        script.write_text(FILE_WORKER)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(script),
                f"filesystem:{tmp_path / 'cache'}",
                str(tmp_path / "runs.txt"),
                name,
                how,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.said("ready")

    def said(self, word: str) -> None:
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == word

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def reply(self) -> str | None:
        assert self.proc.stdout is not None
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def finish(self) -> int:
        self.proc.communicate(timeout=60)
        return self.proc.returncode


@pytest.mark.fleet
def test_a_retry_on_another_process_gets_the_reply(tmp_path: Path) -> None:
    first = FileWorker(tmp_path, "A", "stay")
    second = FileWorker(tmp_path, "B")
    first.go()
    assert first.reply() == "reply from A"
    first.said("answered")  # A is still alive
    second.go()
    assert second.reply() == "reply from A"
    first.go()
    assert first.finish() == 0 and second.finish() == 0
    assert (tmp_path / "runs.txt").read_text().split() == ["A"]


@pytest.mark.fleet
def test_retries_on_other_processes_wait_for_a_first_run_still_going(tmp_path: Path) -> None:
    first = FileWorker(tmp_path, "A", "slow")
    others = [FileWorker(tmp_path, name) for name in ("B", "C")]
    first.go()
    first.said("running")  # A's claim is on disk, its handler is not done
    for other in others:
        other.go()  # they find the claim and wait for the reply (up to 2 s)
    first.go()
    assert first.reply() == "reply from A"
    assert {other.reply() for other in others} <= {"reply from A", None}
    assert all(w.finish() == 0 for w in [first, *others])
    assert (tmp_path / "runs.txt").read_text().split() == ["A"]


@pytest.mark.fleet
def test_a_process_that_exits_right_after_answering_writes_its_reply(tmp_path: Path) -> None:
    """The reply rides with the next claim or a flusher 50 ms later; a clean exit writes it too."""
    leaving = FileWorker(tmp_path, "A", "exit")
    leaving.go()
    assert leaving.reply() == "reply from A"
    assert leaving.finish() == 0
    marks = list((tmp_path / "cache").rglob("dedup/*/*"))  # one file of marks per namespace
    assert marks and all(p.is_file() and p.suffix == ".log" for p in marks)
    retry = FileWorker(tmp_path, "B")
    retry.go()
    assert retry.reply() == "reply from A"
    assert retry.finish() == 0
    assert (tmp_path / "runs.txt").read_text().split() == ["A"]


@pytest.mark.fleet
def test_a_crash_before_the_reply_is_written_costs_one_success_not_a_second_run(tmp_path: Path) -> None:
    """The documented price of a queued reply: a retry within the lease gets ``success``."""
    crashed = FileWorker(tmp_path, "A", "crash")
    crashed.go()
    assert crashed.reply() == "reply from A"
    assert crashed.finish() == 0
    retry = FileWorker(tmp_path, "B")
    retry.go()
    assert retry.reply() is None  # A's claim is still leased: B waited for a reply, then "success"
    assert retry.finish() == 0
    assert (tmp_path / "runs.txt").read_text().split() == ["A"]


def exit_code_of(pid: int) -> int:
    """A forked child's exit code; a child that hangs (say, on a lock held at the fork) is killed."""
    import select
    import signal

    fd = os.pidfd_open(pid)
    try:
        if not select.select([fd], [], [], 60)[0]:  # readable when the child exits
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_records_only_its_own_claims(tmp_path: Path) -> None:
    from wxmp.cache import resolve_cache
    from wxmp.dedupstore import FileDedupStore

    dedup = Deduplicator(SharedStore(resolve_cache(f"filesystem:{tmp_path}", "")))
    backend = dedup.backend
    assert isinstance(backend, FileDedupStore)
    assert dedup.claim("parent").run  # the parent's handler is still running at the fork
    pid = os.fork()
    if pid == 0:  # the child: the parent's claim is not its to answer; its own claims work
        code = 1
        try:
            dedup.record("parent", "<xml>from the child</xml>")
            if dedup.claim("child").run and not dedup.claim("parent").run:
                dedup.record("child", "<xml>child</xml>")
                if backend.flush():
                    code = 0
        finally:
            os._exit(code)
    assert exit_code_of(pid) == 0
    other = FileDedupStore(backend.base, os.path.basename(backend.root), 300)
    assert other.read("child") == b"<xml>child</xml>"
    assert other.read("parent") == PENDING
    dedup.record("parent", "<xml>parent</xml>")
    assert backend.flush() and other.read("parent") == b"<xml>parent</xml>"


def test_pending_mark_is_a_short_lease_and_the_reply_is_kept_for_the_ttl(
    redis_url: str, tmp_path: Path
) -> None:
    import redis

    from wxmp.cache import resolve_cache

    store = SharedStore(resolve_cache(redis_url, str(tmp_path)), namespace="lease")
    dedup = Deduplicator(store, ttl=300, lease=10)
    assert dedup.claim("m1").run
    client = redis.Redis.from_url(redis_url)
    name = dedup.backend._key("m1")  # type: ignore[attr-defined]
    assert name.startswith("lease:dedup:")
    assert 0 < client.pttl(name) <= 10_000  # Redis frees a crashed claimer's mark within 10 s
    dedup.record("m1", "<xml>reply</xml>")
    assert dedup.backend.flush()
    assert client.ttl(name) > 250
    assert client.get(name) == b"<xml>reply</xml>"  # raw bytes, no pickle


@pytest.mark.parametrize("kind", ["filesystem", "simple"])
def test_a_lapsed_lease_lets_the_next_attempt_run(kind: str, tmp_path: Path) -> None:
    """A claimer that dies before recording: fake time passes the lease, the next delivery runs."""
    from wxmp.cache import resolve_cache

    spec = f"filesystem:{tmp_path / 'c'}" if kind == "filesystem" else "simple"
    store = SharedStore(resolve_cache(spec, str(tmp_path)), namespace="lease")
    wall = FakeClock(time.time())
    wait = FakeClock(0)
    dedup = Deduplicator(store, ttl=300, lease=10, wall_clock=wall, clock=wait, sleep=wait.sleep)
    assert dedup.claim("crashed").run
    dedup.release("crashed")  # the claimer dies without a reply
    assert dedup.claim("done").run
    dedup.record("done", "<xml>kept</xml>")
    dedup.backend.flush()
    wall.advance(5)  # WeChat's second attempt: still within the lease
    assert dedup.claim("crashed").reply == "success"
    wall.advance(6)  # the third attempt, past the lease: runs again, once
    assert dedup.claim("crashed") == (True, True, "")
    assert not dedup.claim("crashed").run
    wall.advance(250)  # a reply is kept for the ttl
    assert dedup.claim("done") == (False, False, "<xml>kept</xml>")


# -- the defaults the callback uses, boundaries, and what a stored value answers ---------------


def test_the_defaults_wait_2s_in_50ms_polls_with_a_10s_lease_and_a_5min_ttl() -> None:
    wall = FakeClock(1714036504)
    waits = FakeClock(0)
    dedup = Deduplicator(simple_store(), clock=waits, sleep=waits.sleep, wall_clock=wall)
    assert dedup.claim("k") == (True, True, "")
    assert dedup.claim("k") == (False, False, "success")  # the first run is still going
    assert waits.slept == [0.05] * 40
    wall.advance(9.9)
    assert not dedup.claim("k").run  # within the lease
    wall.advance(0.2)
    assert dedup.claim("k") == (True, True, "")  # the lease lapsed: the claimer is presumed dead
    dedup.record("k", "<xml>r</xml>")
    wall.advance(299)
    assert dedup.claim("k") == (False, False, "<xml>r</xml>")
    wall.advance(1.5)
    assert dedup.claim("k").run  # the reply is kept for 300 s
    assert repr(dedup) == "<Deduplicator <SharedStore simple 'wxmp'> ttl=300>"


def test_the_lease_never_outlasts_the_ttl() -> None:
    wall = FakeClock(1714036504)
    dedup = Deduplicator(
        simple_store(), ttl=5, lease=10, wall_clock=wall, clock=FakeClock(0), sleep=lambda s: None
    )
    assert dedup.claim("k").run
    wall.advance(5.1)
    assert dedup.claim("k").run


def dedup_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "wxmp.callback"]


class SwitchableCache(BaseCache):
    """A cache server in a dict that can go away (``down``) and come back."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("down")

    def get(self, key: str) -> Any:
        self._check()
        return self.data.get(key)

    def set(self, key: str, value: Any, timeout: int | None = None) -> Any:
        self._check()
        self.data[key] = value
        return True

    def add(self, key: str, value: Any, timeout: int | None = None) -> Any:
        self._check()
        return self.data.setdefault(key, value) is value

    def delete(self, key: str) -> Any:
        self._check()
        return self.data.pop(key, None) is not None


def test_the_cache_dying_while_a_retry_waits_answers_success(caplog: pytest.LogCaptureFixture) -> None:
    cache = SwitchableCache()
    waits = FakeClock(1000)
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        waits.advance(seconds)
        cache.down = True  # the server goes away during the first poll

    dedup = Deduplicator(SharedStore(cache, probe=False, cooldown=0), clock=waits, sleep=sleep)
    assert dedup.claim("k").run
    with caplog.at_level(logging.WARNING, "wxmp.callback"):
        assert dedup.claim("k") == (False, False, "success")
    assert polls == [0.05]  # it stopped waiting at once
    assert dedup_warnings(caplog) == [
        "wxmp dedup: cache unavailable (SwitchableCache cache unavailable: ConnectionError); "
        "processing messages without dedup"
    ]


def test_warnings_are_rate_limited_to_one_per_warn_every(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(1000)
    dedup = Deduplicator(SharedStore(DeadCache(), probe=False, cooldown=0), clock=clock)  # warn_every: 60 s
    with caplog.at_level(logging.WARNING, "wxmp.callback"):
        dedup.claim("a")
        clock.advance(59.5)
        dedup.record("a", "x")
        clock.advance(0.5)  # exactly a minute after the first
        dedup.record("a", "x")
        dedup.claim("b")
    cause = "(DeadCache cache unavailable: ConnectionError)"
    assert dedup_warnings(caplog) == [
        f"wxmp dedup: cache unavailable {cause}; processing messages without dedup",
        f"wxmp dedup: could not store a reply {cause}; processing messages without dedup",
    ]


def test_a_slow_failure_is_one_that_took_a_quarter_second() -> None:
    from wxmp.cache import CacheUnavailable

    clock = FakeClock(1000)
    dedup = Deduplicator(simple_store(), clock=clock)  # retry_after: 5 s
    calls: list[str] = []

    class Failing:
        took = 0.0

        def claim(self, key: str, lease: float) -> bytes | None:
            calls.append(key)
            clock.advance(self.took)
            raise CacheUnavailable("down")

    backend = Failing()
    dedup.backend = backend  # type: ignore[assignment]
    backend.took = 0.24  # refused fast: the next message asks again
    dedup.claim("a")
    dedup.claim("b")
    assert calls == ["a", "b"]
    backend.took = 0.25  # timed out: the next 5 s leave the backend alone
    dedup.claim("c")
    clock.advance(4.75)
    dedup.claim("d")
    assert calls == ["a", "b", "c"]
    clock.advance(0.25)  # 5 s after the timeout ended
    dedup.claim("e")
    assert calls == ["a", "b", "c", "e"]


@pytest.mark.parametrize(
    ("stored", "answer"),
    [
        ("<xml>中文</xml>", "<xml>中文</xml>"),
        ("", "success"),  # nothing to answer
        ("\x00foreign", "success"),  # a mark, not a reply
        ("\udcff", "success"),  # not UTF-8
    ],
)
def test_what_a_stored_reply_answers(stored: str, answer: str) -> None:
    dedup = Deduplicator(simple_store())
    dedup.claim("k")
    dedup.record("k", stored)
    assert dedup.claim("k") == (False, False, answer)


def test_a_retry_on_the_filesystem_gets_the_reply_on_the_first_poll(tmp_path: Path) -> None:
    """A retry arriving while the first run is going waits for its reply: one poll, when it comes."""
    from cachelib import FileSystemCache

    wall = FakeClock(60.0 * 28567275 + 58)
    waits = FakeClock(0)

    def sleep(seconds: float) -> None:
        waits.advance(seconds)
        dedup.record("k", "<xml>first run</xml>")  # the first run finishes during the first poll

    store = SharedStore(FileSystemCache(str(tmp_path)), probe=False)
    dedup = Deduplicator(store, wall_clock=wall, clock=waits, sleep=sleep)
    assert dedup.claim("k").run
    assert dedup.claim("k") == (False, False, "<xml>first run</xml>")
    assert waits() == 0.05


def test_releasing_a_filesystem_claim_closes_its_file(tmp_path: Path) -> None:
    from cachelib import FileSystemCache

    dedup = Deduplicator(SharedStore(FileSystemCache(str(tmp_path)), probe=False))
    dedup.claim("warm-up")  # makes the folders
    dedup.record("warm-up", "x")
    before = len(os.listdir("/proc/self/fd"))
    assert dedup.claim("k").run
    dedup.release("k")  # the handler was interrupted
    assert len(os.listdir("/proc/self/fd")) == before
    dedup.record("k", "<xml>too late</xml>")  # a released claim is given up: nothing is recorded
    assert dedup.backend.flush()
    assert dedup.backend.read("k") == PENDING  # until its lease lapses


@pytest.mark.parametrize("cache", ["filesystem", "simple"])
def test_only_a_deduplicator_given_a_binding_ttl_binds(cache: str, tmp_path: Path) -> None:
    """Binding is the callback's (it knows the signature window); a bare Deduplicator never binds."""
    from wxmp.cache import resolve_cache

    store = SharedStore(resolve_cache(f"filesystem:{tmp_path}" if cache == "filesystem" else "simple", ""))
    assert Deduplicator(store).binds is False
    assert Deduplicator(store, bind_ttl=605).binds is (cache == "filesystem")
