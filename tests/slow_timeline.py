r"""Fake time for the wxmp.slow tests: WeChat's deliveries in threads, clocks that move only when all wait.

A :class:`Timeline` is the ``clock``, ``monotonic`` and ``wait`` of one or more
:class:`~wxmp.slow.SlowRunner`\\ s. Each delivery runs in an *actor* thread (:meth:`Timeline.spawn`);
time stands still while an actor runs and moves on, in :meth:`Timeline.run`, only once every actor
waits: to the earliest wake-up or scheduled action (a job finishing, a lease heartbeat). A wait whose
event is set by an action ends at that instant. At a tie, the waits ending at an instant resume
before the actions due then. So a test states "the handler takes 7 s" and checks
the instants at which each delivery answered, with no real waiting and no dependence on the machine.

A runner's lease heartbeat (its own thread) waits on the timeline too, once the runner is
:meth:`Timeline.watch`\ ed: it renews every third of the lease in fake time, until :meth:`Timeline.stop`. :class:`TimedStore` is the shared store with its expiry on
the fake clock, and :class:`TimedExecutor` runs each job a given number of seconds after its claim.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cachelib import SimpleCache

from wxmp import Account
from wxmp.cache import CacheUnavailable, SharedStore
from wxmp.replies import Reply, SuccessReply, parse_reply, render
from wxmp.slow import SlowRunner
from wxmp.testing import FakeWeChat, WeChatUser

#: The wall clock (``clock``) reads WALL when the monotonic one reads START.
START = 1000.0
WALL = 1_700_000_000.0
#: Real seconds any step may take before the test is declared stuck (a bound, never a timing).
STUCK = 30.0
T0 = START
#: Waits of one thread at one instant beyond which it is declared stuck in a loop.
SPIN = 1000

TOKEN = "slowtoken"
OPENID = "oSlowUser0000000000000000002"
ACCOUNT = "gh_wxmptest000"  # WeChatUser's default ToUserName
SEND = "/cgi-bin/message/custom/send"
TYPING = "/cgi-bin/message/custom/typing"
HOLDING = "答案还在准备中，请稍后发送任意消息查看。"  # WXMP_SLOW_HOLDING_TEXT's default


@dataclass
class _Waiter:
    wake: float
    seq: int
    event: threading.Event
    resumed: bool = False
    killed: bool = False
    seconds: float = 0.0


class Killed(BaseException):
    """Raised in an actor's wait by :meth:`Timeline.kill`: its worker process died."""


class Timeline:
    """Fake monotonic and wall clocks plus the ``wait`` seam of :class:`~wxmp.slow.SlowRunner`."""

    def __init__(self, start: float = START) -> None:
        self.start = start
        self.now = start
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._actors: dict[threading.Thread, _Waiter | None] = {}
        self._running = 0
        self._waiters: list[_Waiter] = []
        self._actions: list[tuple[float, int, Callable[[], None]]] = []
        self._runners: list[SlowRunner] = []
        self._parked: dict[threading.Thread, _Waiter] = {}
        self._stopped: set[int] = set()
        self._same_instant: dict[threading.Thread, tuple[float, int]] = {}
        #: every wait of an actor: (thread name, instant, seconds)
        self.pauses: list[tuple[str, float, float]] = []
        #: every wait of a lease heartbeat: (instant, seconds)
        self.beats: list[tuple[float, float]] = []

    # -- the seams ---------------------------------------------------------------------------

    def monotonic(self) -> float:
        return self.now

    def clock(self) -> float:
        return WALL + (self.now - self.start)

    def wall(self, instant: float) -> float:
        """The wall-clock reading at monotonic ``instant``."""
        return WALL + (instant - self.start)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        me = threading.current_thread()
        with self._cond:
            waiter = _Waiter(self.now + seconds, next(self._seq), event, seconds=seconds)
            if me in self._actors:
                self.pauses.append((me.name, self.now, seconds))
                self._check_progress(me)
                self._actors[me] = waiter
                self._running -= 1
                self._waiters.append(waiter)
            else:  # a runner's lease heartbeat
                self.beats.append((self.now, seconds))
                self._parked[me] = waiter
                if id(me) not in self._stopped:
                    self._waiters.append(waiter)
            self._cond.notify_all()
            while not waiter.resumed:
                self._cond.wait()
            if waiter.killed:
                raise Killed
            return event.is_set()

    def _check_progress(self, me: threading.Thread) -> None:
        """A delivery waiting again and again at one instant never lets time move: fail it at once
        rather than loop until the test's own time limit."""
        same = self._same_instant.get(me)
        count = same[1] + 1 if same is not None and same[0] == self.now else 1
        self._same_instant[me] = (self.now, count)
        if count > SPIN:
            raise AssertionError(f"{me.name} waited {count} times at {self.now} without time moving")

    # -- driving -----------------------------------------------------------------------------

    def watch(self, runner: SlowRunner) -> SlowRunner:
        """Drive ``runner``'s lease heartbeat on this timeline (every runner using it must be watched)."""
        self._runners.append(runner)
        return runner

    def stop(self, runner: SlowRunner) -> None:
        """``runner``'s heartbeat stops renewing (its process died)."""
        with self._cond:
            thread = runner._heartbeat.thread
            if thread is not None:
                self._stopped.add(id(thread))
                parked = self._parked.get(thread)
                if parked in self._waiters:
                    self._waiters.remove(parked)

    def kill(self, name: str) -> None:
        """The actor ``name`` dies in its current wait (its worker process was killed)."""
        with self._cond:
            for thread, waiter in self._actors.items():
                if thread.name == name and waiter is not None and waiter in self._waiters:
                    waiter.killed = True
                    waiter.wake = self.now

    def nudge(self) -> None:
        """Look at the threads again: a heartbeat thread that died (an error) ended without a wait."""
        with self._cond:
            self._cond.notify_all()

    def at(self, instant: float, action: Callable[[], Any]) -> None:
        """Run ``action`` (in the test's thread) when time reaches ``instant``."""
        with self._cond:
            heapq.heappush(self._actions, (instant, next(self._seq), action))

    def spawn(self, name: str, fn: Callable[[], Any]) -> dict[str, Any]:
        """Run ``fn`` in an actor thread now; the returned box gets "value" (or "error") and "at"."""
        box: dict[str, Any] = {}

        def body() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc
            finally:
                with self._cond:
                    box["at"] = self.now
                    del self._actors[thread]
                    self._running -= 1
                    self._cond.notify_all()

        thread = threading.Thread(target=body, name=name, daemon=True)
        with self._cond:
            self._actors[thread] = None
            self._running += 1
        thread.start()
        return box

    def _settled(self) -> bool:
        """No actor runs and every started heartbeat is back in its wait."""
        if self._running:
            return False
        for runner in self._runners:
            thread = runner._heartbeat.thread
            if thread is not None and thread.is_alive() and thread not in self._parked:
                return False
        return True

    def run(self, until: float | None = None) -> None:
        """Move time on until no delivery waits and no action is left (or up to ``until``); the
        heartbeats alone do not keep it going."""
        while True:
            action = None
            with self._cond:
                if not self._cond.wait_for(self._settled, STUCK):
                    raise AssertionError(
                        f"a thread never came back to a wait (running={self._running}, "
                        f"heartbeats parked={len(self._parked)}, at {self.now})"
                    )
                due = [w for w in self._waiters if w.event.is_set() or w.wake <= self.now]
                if due:
                    waiter = min(due, key=lambda w: (w.wake, w.seq))
                    self._waiters.remove(waiter)
                    waiter.resumed = True
                    parked = [t for t, w in self._parked.items() if w is waiter]
                    if parked:
                        del self._parked[parked[0]]
                    else:
                        self._running += 1
                    self._cond.notify_all()
                    continue
                self._skip_idle_heartbeats(until)
                times = [w.wake for w in self._waiters] + [a[0] for a in self._actions]
                if until is not None:
                    times = [t for t in times if t <= until]
                heartbeats_only = not self._actions and all(w in self._parked.values() for w in self._waiters)
                if not times or (until is None and heartbeats_only):
                    if until is not None:
                        self.now = max(self.now, until)
                    return
                if min(times) > self.now:
                    self.now = min(times)
                    continue  # the waits ending now resume before the actions due now
                action = heapq.heappop(self._actions)[2]
            if action is not None:
                action()

    def _skip_idle_heartbeats(self, until: float | None) -> None:
        """Move the wake-ups of heartbeats with no lease to renew past the next other event, on their
        own beat: waking them would only renew nothing (a test may jump a day ahead)."""
        idle = {
            id(w)
            for r in self._runners
            if not r._heartbeat.jobs and (w := self._parked.get(r._heartbeat.thread)) is not None  # type: ignore[arg-type]
        }
        others = [w.wake for w in self._waiters if id(w) not in idle] + [a[0] for a in self._actions]
        if until is not None:
            others.append(until)
        if not others:
            return
        target = min(others)
        for w in self._waiters:
            if id(w) in idle and w.wake < target and w.seconds > 0:
                w.wake += math.ceil((target - w.wake) / w.seconds) * w.seconds

    def close(self) -> None:
        """Nothing to release: parked heartbeats are daemon threads of a finished test."""


class TimedStore(SharedStore):
    """A process-local shared store whose entries expire on the timeline's clock; records writes."""

    def __init__(self, timeline: Timeline, namespace: str = "wxmp") -> None:
        super().__init__(SimpleCache(threshold=100_000, default_timeout=0), namespace, probe=False)
        self.timeline = timeline
        self.expires: dict[str, float] = {}
        #: (instant, "set" | "add" | "add refused", name, value, ttl) of every write and attempted add
        self.writes: list[tuple[float, str, str, Any, float]] = []
        #: names starting with one of these raise CacheUnavailable (the backend is down for them)
        self.down: tuple[str, ...] = ()
        #: writes (set, add) of names starting with one of these raise CacheUnavailable
        self.down_for_writes: tuple[str, ...] = ()

    def _check(self, name: str, write: bool = False) -> None:
        prefixes = self.down + self.down_for_writes if write else self.down
        if prefixes and name.startswith(prefixes):
            raise CacheUnavailable(f"{name.split(':')[1]} down")

    def _expire(self, name: str) -> None:
        end = self.expires.get(name)
        if end is not None and self.timeline.now >= end:
            del self.expires[name]
            super().delete(name)

    def _note(self, op: str, name: str, value: Any, ttl: float) -> None:
        self.writes.append((self.timeline.now, op, name, value, ttl))
        if ttl and ttl > 0:
            self.expires[name] = self.timeline.now + ttl
        else:
            self.expires.pop(name, None)

    def get(self, name: str) -> Any:
        self._check(name)
        self._expire(name)
        return super().get(name)

    def set(self, name: str, value: Any, ttl: float = 0) -> None:
        self._check(name, write=True)
        super().set(name, value, 0)  # no real expiry: a loaded machine must not change the outcome
        self._note("set", name, value, ttl)

    def add(self, name: str, value: Any, ttl: float = 0) -> bool:
        self._check(name, write=True)
        self._expire(name)
        if not super().add(name, value, 0):
            self.writes.append((self.timeline.now, "add refused", name, value, ttl))
            return False
        self._note("add", name, value, ttl)
        return True

    def delete(self, name: str) -> None:
        self._check(name)
        self.expires.pop(name, None)
        super().delete(name)

    def names(self, prefix: str) -> list[str]:
        """The names written so far that start with ``prefix`` (in order, once each)."""
        return list(
            dict.fromkeys(w[2] for w in self.writes if w[2].startswith(prefix) and w[1] != "add refused")
        )

    def log(self, name: str, *ops: str) -> list[tuple[float, str, Any, float]]:
        """(instant, op, value, ttl) of the writes to ``name`` (only ``ops`` if given)."""
        return [
            (at, op, value, ttl)
            for at, op, n, value, ttl in self.writes
            if n == name and (not ops or op in ops)
        ]


class TimedExecutor:
    """Runs each job ``seconds`` after it was submitted, on the timeline (the handler's duration)."""

    def __init__(self, timeline: Timeline, seconds: float | Sequence[float | None]) -> None:
        self.timeline = timeline
        # None: the job is never run (a queue that lost it, a worker that died)
        self.durations: list[float | None] = [seconds] if isinstance(seconds, (int, float)) else list(seconds)
        self.jobs: list[tuple[float, dict[str, Any]]] = []

    def submit(self, runner: SlowRunner, job: dict[str, Any]) -> None:
        duration = self.durations[min(len(self.jobs), len(self.durations) - 1)]
        self.jobs.append((self.timeline.now, job))
        if duration is not None:
            self.timeline.at(self.timeline.now + duration, lambda: runner.run_job(job))


class ActorExecutor:
    """Runs each job at once in an actor thread, so a handler can take fake time (:func:`sleep`)."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.jobs: list[tuple[float, dict[str, Any]]] = []

    def submit(self, runner: SlowRunner, job: dict[str, Any]) -> None:
        self.jobs.append((self.timeline.now, job))
        self.timeline.spawn("job", lambda: runner.run_job(job))


def sleep(timeline: Timeline, seconds: float) -> None:
    """A handler (in an actor thread) taking ``seconds`` of fake time."""
    timeline.wait(threading.Event(), seconds)


@dataclass
class Try:
    """One delivery of a push: when it started and when (and what) the callback answered."""

    number: int
    started: float
    box: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> float | None:
        return self.box.get("at")

    @property
    def body(self) -> bytes:
        return bytes(self.box["value"].body)

    @property
    def reply(self) -> Reply | None:
        """The parsed answer (None for ``success`` or an empty body)."""
        parsed = parse_reply(self.body).reply
        return None if isinstance(parsed, SuccessReply) or not self.body else parsed


@dataclass
class Push:
    """WeChat delivering one push in fake time (see :func:`push`)."""

    tries: list[Try]
    timeout: float

    def in_time(self, t: Try) -> bool:
        return "value" in t.box and t.box["at"] - t.started < self.timeout

    @property
    def answered(self) -> Try | None:
        """The delivery answered before WeChat gave up on it (None: the user sees the failure)."""
        return next((t for t in self.tries if self.in_time(t)), None)

    @property
    def reply(self) -> Reply | None:
        answered = self.answered
        return answered.reply if answered is not None else None

    @property
    def shown(self) -> str | None:
        content = getattr(self.reply, "content", None)
        return content if isinstance(content, str) else None


def push(
    timeline: Timeline,
    users: WeChatUser | Sequence[WeChatUser],
    xml: str | bytes,
    *,
    attempts: int = 3,
    timeout: float = 5.0,
    at: float | None = None,
) -> Push:
    """Schedule WeChat's deliveries of ``xml``: the first at ``at`` (default: now), another each
    ``timeout`` s while none has answered in time, ``attempts`` in all. ``users`` are the same
    follower on several workers (processes), taking the deliveries in turn."""
    targets = [users] if isinstance(users, WeChatUser) else list(users)
    result = Push([], timeout)

    def start(number: int) -> None:
        user = targets[(number - 1) % len(targets)]
        t = Try(number, timeline.now)
        result.tries.append(t)
        t.box = timeline.spawn(f"delivery-{number}", lambda: user.post(xml))
        if number < attempts:
            timeline.at(t.started + timeout, lambda: None if result.in_time(t) else start(number + 1))

    timeline.at(timeline.now if at is None else at, lambda: start(1))
    return result


# -- an Account with one slow handler on the timeline -------------------------------------------


@dataclass
class Setup:
    acct: Account
    runner: SlowRunner
    executor: TimedExecutor
    store: TimedStore
    user: WeChatUser
    runs: list[str]

    def text(self, content: str, msg_id: int) -> bytes:
        return self.user.message_xml("text", {"Content": content}, msg_id=msg_id)


def make(
    tl: Timeline,
    fake: FakeWeChat | None = None,
    *,
    seconds: Any = 1.0,
    answer: Callable[[Any], Any] | None = None,
    store: TimedStore | None = None,
    handler: bool = True,
    **settings: Any,
) -> Setup:
    """An Account whose slow handler (every text) takes ``seconds`` and answers ``answer(msg)``."""
    if fake is not None:
        settings = {"appid": fake.appid, "secret": fake.secret, "api_base": fake.url, **settings}
    acct = Account(token=TOKEN, cache="simple", **{"appid": "wx00000000000slow2", **settings})
    store = store if store is not None else TimedStore(tl)
    executor = TimedExecutor(tl, seconds)
    runner = SlowRunner(
        acct.callback,
        account=acct,
        store=store,
        executor=executor,
        clock=tl.clock,
        monotonic=tl.monotonic,
        wait=tl.wait,
    )
    tl.watch(runner)
    acct.callback.slow = runner
    runs: list[str] = []
    if handler:

        @acct.on("text", slow=True)
        def slow(msg: Any) -> Any:
            runs.append(msg.content)
            return answer(msg) if answer is not None else f"answer to {msg.content}"

    return Setup(acct, runner, executor, store, WeChatUser(acct.callback, TOKEN, openid=OPENID), runs)


def xml_at(reply: Any, instant: float, tl: Timeline) -> bytes:
    """The passive reply body WeChat gets, rendered at ``instant`` of the fake clock."""
    return render(reply, OPENID, ACCOUNT, int(tl.wall(instant))).encode()


def listen(signal: Any) -> list[dict[str, Any]]:
    """What ``signal`` sends, one dict per send: its keyword arguments and ``sender``."""
    got: list[dict[str, Any]] = []

    def receiver(sender: object, **kw: Any) -> None:
        got.append({"sender": sender, **kw})

    signal.connect(receiver, weak=False)
    return got


def join_typing() -> None:
    """Wait for the background "typing" requests (their own threads) to reach FakeWeChat."""
    for thread in threading.enumerate():
        if thread.name == "wxmp-slow-typing":
            thread.join(STUCK)


def finished(p: Push) -> list[float | None]:
    return [t.finished for t in p.tries]


def logged(caplog: Any, level: int) -> list[str]:
    """The messages wxmp.slow logged at ``level`` (exactly: a changed word shows)."""
    return [r.getMessage() for r in caplog.records if r.name == "wxmp.slow" and r.levelno == level]
