"""Slow handlers: handlers that may take longer than the 5 s WeChat waits (language models, searches).

Mark one with ``slow=True`` (or a strategy name)::

    @acct.on("text", slow=True)
    def ask(msg):
        return model.answer(msg.content)      # may take 20 s

WeChat's rule (developers.weixin.qq.com/doc/offiaccount/Message_Management/
Receiving_standard_messages.html): it waits 5 s for the answer, then drops the connection and
delivers the same push again, about three attempts in all; when none was answered in time the user
sees 「该公众号提供的服务出现故障，请稍后再试」. A passive reply can only be the answer to one of those
deliveries; after that only the customer-service API reaches the user.

What happens to a slow message:

1. The delivery that first *claims* it (an atomic ``add`` on the shared store: one winner across
   processes and hosts) starts the handler on a background pool of its worker; the claim is a
   *lease* renewed while the handler runs, so when that worker dies a later delivery claims it
   again and reruns the handler. Every delivery then waits for the result until
   ``WXMP_SLOW_MARGIN`` before WeChat's deadline and answers it passively when it is ready.
2. Not ready in time, the strategy decides (``WXMP_SLOW_STRATEGY``, or per handler ``slow="..."``):

   - ``customer_service``: answer ``success`` (WeChat stops retrying), show "typing" and send the
     result through ``message/custom/send`` when it is ready, split into messages WeChat accepts.
     45015 (48-hour window closed), 45047 (too many messages for one user message) and 48001
     (the account lacks the API) are logged and signalled, never retried: the unsent part is kept
     for the user's next message instead.
   - ``retries``: leave the delivery unanswered past WeChat's deadline so WeChat retries; the retry
     (on any worker) answers the result passively if it is ready by then. The last expected
     attempt answers ``WXMP_SLOW_HOLDING_TEXT`` if not, and the result is kept so that the user's
     next message (or only ``WXMP_SLOW_KEYWORD``) gets it first, as its passive reply.
   - ``auto`` (the default): ``customer_service`` when the account can call the API (it has a
     secret, or an external refresher), else ``retries``; after a 48001 the account is treated as
     one without the API for a day.

A result is handed out once: the passive answer, the customer-service send and the next-message
pickup race for one atomic ``add``. Records live in the account's message store as plain data
(``slow:*`` keys) for ``WXMP_SLOW_RESULT_TTL`` seconds.

The runner is a seam: :class:`Executor` hands a job (plain JSON data) to whatever runs it. The
default :class:`ThreadExecutor` is a thread pool in the worker that claimed the message; a fleet
whose jobs must survive a restart can hand them to Celery or RQ, whose task calls
:meth:`SlowRunner.run_job` (see docs/en/slow-handlers.md).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import signals
from .cache import CacheUnavailable, SharedStore, local_cache
from .deadline import deadline
from .dispatch import settle
from .errors import ApiError, WxMPError, loggable
from .messages import Message, TextMessage, from_dict
from .replies import (
    SUCCESS,
    ImageReply,
    MusicReply,
    NewsReply,
    Reply,
    TextReply,
    VideoReply,
    VoiceReply,
    reply_for,
)

if TYPE_CHECKING:
    from .account import Account
    from .config import Settings
    from .dispatch import Route
    from .middleware import Callback

__all__ = [
    "MAX_MESSAGES",
    "TEXT_LIMIT",
    "Executor",
    "SlowOptions",
    "SlowRunner",
    "ThreadExecutor",
    "split_text",
]

log = logging.getLogger("wxmp.slow")

#: Bytes of UTF-8 per customer-service text message. WeChat documents about 2048 bytes for the
#: content (the 客服消息 page,
#: developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html (?)); a little
#: less leaves room for the JSON escaping of newlines.
TEXT_LIMIT = 2000
#: Customer-service messages per user message: at most 5 since 2023-06 (errcode 45047 beyond;
#: developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html).
MAX_MESSAGES = 5
#: Errors of a customer-service send that are reported, never retried.
REPORTED = {45015: "the 48-hour window is closed", 45047: "too many messages", 48001: "no API access"}
#: How long an account that answered 48001 is treated as one without the customer-service API.
NO_API_TTL = 86400
#: Results kept for one user's next messages at most (beyond, the oldest is dropped).
MAX_KEPT = 10
#: The key of what customer service did not deliver: its own "sent" record, as the job took the key's.
_REST = ":rest"


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """``text`` cut into parts of at most ``limit`` UTF-8 bytes, at a newline or space when possible."""
    parts: list[str] = []
    rest = text
    while len(rest.encode("utf-8")) > limit:
        # The longest prefix that fits, by bytes (Chinese text is 3 bytes a character).
        cut = len(rest.encode("utf-8")[:limit].decode("utf-8", "ignore"))
        soft = max(rest.rfind("\n", 0, cut), rest.rfind(" ", 0, cut))
        if soft > cut // 2:
            cut = soft + 1
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n")
    if rest.strip() or not parts:
        parts.append(rest)
    return parts


@dataclass(frozen=True)
class SlowOptions:
    """The slow-handler settings of one account (see the ``WXMP_SLOW_*`` keys)."""

    strategy: str = "auto"
    holding_text: str = "答案还在准备中，请稍后发送任意消息查看。"
    keyword: str | None = None
    wechat_timeout: float = 5.0
    margin: float = 0.5
    attempts: int = 3
    lease: float = 4.0
    result_ttl: float = 172800
    workers: int = 8
    poll: float = 0.05

    @classmethod
    def from_settings(cls, settings: Settings) -> SlowOptions:
        return cls(
            strategy=settings.slow_strategy,
            holding_text=settings.slow_holding_text,
            keyword=settings.slow_keyword,
            wechat_timeout=settings.slow_wechat_timeout,
            margin=settings.slow_margin,
            attempts=settings.slow_attempts,
            lease=settings.slow_lease,
            result_ttl=settings.slow_result_ttl,
            workers=settings.slow_workers,
        )


class Executor(Protocol):
    """Runs slow jobs: ``submit`` must return at once and eventually call ``runner.run_job(job)``.

    ``job`` is plain JSON data (the message's fields, its key and strategy), so a task queue can
    carry it to another process that builds the same account and calls ``run_job`` there.
    """

    def submit(self, runner: SlowRunner, job: dict[str, Any]) -> None: ...


class ThreadExecutor:
    """The default executor: a thread pool in this process, created on first use (fork-safe)."""

    def __init__(self, workers: int = 8) -> None:
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ThreadExecutor workers={self.workers}>"

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="wxmp-slow")
                self._pid = os.getpid()
            return self._pool

    def submit(self, runner: SlowRunner, job: dict[str, Any]) -> None:
        self.pool().submit(runner.run_job, job)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait)


def _event_wait(event: threading.Event, seconds: float) -> bool:
    """The default wait of :class:`SlowRunner`: block until ``event`` is set or ``seconds`` pass."""
    return event.wait(seconds)


class _Heartbeat:
    """One thread renewing the leases of the jobs this process runs (every third of the lease)."""

    def __init__(
        self, store: SharedStore, lease: float, wait: Callable[[threading.Event, float], bool] = _event_wait
    ) -> None:
        self.store = store
        self.lease = lease
        self.wait = wait
        self.jobs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = 0

    def add(self, name: str, value: dict[str, Any]) -> None:
        with self.lock:
            self.jobs[name] = value
            if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._run, name="wxmp-slow-lease", daemon=True)
                self.thread.start()

    def remove(self, name: str) -> None:
        with self.lock:
            self.jobs.pop(name, None)

    def _run(self) -> None:
        while True:
            self.wait(self.wake, self.lease / 3)
            self.renew()

    def renew(self) -> None:
        """Extend the lease of every job claimed or running here by a full lease from now.

        A claim whose job started in another process (a task queue's worker: the lease names another
        owner) is dropped: that process renews it now, and stops when it finishes or dies.
        """
        with self.lock:
            jobs = list(self.jobs.items())
        for name, value in jobs:
            try:
                current = self.store.get(name)
                if isinstance(current, dict) and current.get("owner") != value["owner"]:
                    self.remove(name)
                    continue
                self.store.set(name, value, self.lease)
            except CacheUnavailable as exc:
                log.warning("wxmp slow: could not renew a lease (%s)", exc)


class SlowRunner:
    """Runs a callback's slow handlers (see the module docstring); ``Callback.slow`` holds one.

    ``account`` gives the customer-service API and the settings; without one (a bare
    :class:`~wxmp.middleware.Callback`) only the ``retries`` strategy is possible.

    ``clock`` (wall time, for CreateTime and the records), ``monotonic`` (the deadlines) and
    ``wait`` are the seams a test drives time through: ``wait(event, seconds)`` blocks until
    ``event`` is set or ``seconds`` have passed on ``monotonic`` (the default is ``event.wait``); the
    request side (:meth:`process`) and the lease heartbeat wait only through it.
    """

    def __init__(
        self,
        callback: Callback,
        *,
        account: Account | None = None,
        options: SlowOptions | None = None,
        store: SharedStore | None = None,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Callable[[threading.Event, float], bool] = _event_wait,
    ) -> None:
        self.callback = callback
        self.account = account
        if options is None:
            options = SlowOptions.from_settings(account.settings) if account is not None else SlowOptions()
        self.options = options
        if store is None:
            if account is not None:
                store = account.store.for_messages()
            elif callback.dedup is not None:
                store = callback.dedup.store
            else:
                store = SharedStore(local_cache())
        self.store = store
        self.executor: Executor = executor if executor is not None else ThreadExecutor(options.workers)
        self.clock = clock
        self.monotonic = monotonic
        self.wait = wait
        self.owner = uuid.uuid4().hex[:12]
        self._heartbeat = _Heartbeat(store, options.lease, wait)
        self._events: dict[str, threading.Event] = {}
        self._events_lock = threading.Lock()
        self._no_api_until = 0.0

    def __repr__(self) -> str:
        return f"<SlowRunner {self.options.strategy} {self.store!r}>"

    # -- the request side ---------------------------------------------------------------------

    def process(self, msg: Message) -> str | None:
        """The reply for a delivery of ``msg``, or None when it is not for a slow handler.

        Waits for the result in this thread (the WSGI callback's request thread).
        """
        return _drive(self._delivery(msg), self.wait)

    async def process_async(self, msg: Message) -> str | None:
        """:meth:`process` for the ASGI callback: the waits are ``asyncio.sleep``\\s on the loop, so
        a delivery waiting for its result holds no thread; each step between waits (a few store
        operations) runs in a worker thread, keeping blocking I/O off the loop."""
        import asyncio

        loop = asyncio.get_running_loop()
        steps = self._delivery(msg)

        def step() -> _Pause | _Done:
            # StopIteration cannot cross a Future (asyncio would hang): turn it into a value here.
            try:
                return steps.send(None)  # the first send starts the generator, as next() does
            except StopIteration as stop:
                return _Done(stop.value)

        result = await asyncio.to_thread(step)
        while isinstance(result, _Pause):
            # A job finished in this process sets the event: look at it on the loop, cheaply.
            end = loop.time() + result.seconds
            while not result.event.is_set() and (left := end - loop.time()) > 0:
                await asyncio.sleep(min(left, 0.02))
            result = await asyncio.to_thread(step)
        return result.value

    def _delivery(self, msg: Message) -> Generator[_Pause, None, str | None]:
        """The request side as a generator of pauses, so one body serves both drivers."""
        router = self.callback.router
        try:
            held = self._take_held(msg)
            if held is not None:
                return held
            found = router.find(msg)
            if found is None or found[0].slow is None:
                return None
            route = found[0]
            return (yield from self._deliver(msg, self._strategy(route)))
        except CacheUnavailable as exc:
            # Without the shared records a slow handler cannot be run once across the fleet:
            # run it the ordinary way (WeChat may show its failure message, the user is not lost).
            log.warning("wxmp slow: cache unavailable (%s); running the handler in the request", exc)
            return None

    def _strategy(self, route: Route) -> str:
        if self.account is None:
            return "retries"  # customer service needs an account's API
        strategy = self.options.strategy if route.slow == "default" else str(route.slow)
        if strategy == "auto":
            strategy = "customer_service" if self._has_api(self.account) else "retries"
        return strategy

    def _has_api(self, account: Account) -> bool:
        settings = account.settings
        if not (settings.can_fetch or settings.refresher == "external"):
            return False
        now = self.clock()
        if now < self._no_api_until:
            return False
        if self.store.get("slow:no-api"):
            self._no_api_until = now + 60
            return False
        return True

    def _name(self, what: str, key: str) -> str:
        return f"slow:{what}:{key}"

    def _attempt(self, key: str) -> int:
        """Which delivery of this message this is (1, 2, ...): one atomic add per attempt number."""
        ttl = self.options.result_ttl
        for n in range(1, self.options.attempts + 1):
            if self.store.add(self._name("try", f"{key}:{n}"), 1, ttl):
                return n
        return self.options.attempts + 1

    def _deliver(self, msg: Message, strategy: str) -> Generator[_Pause, None, str]:
        opts = self.options
        key = msg.dedup_key  # the identity of a push across WeChat's retries, with its sender
        start = self.monotonic()
        answer_by = start + opts.wechat_timeout - opts.margin
        n = self._attempt(key)
        done = self.store.get(self._name("done", key))
        if done is None and self.store.get(self._name("cs", key)):
            return SUCCESS  # answered already; the result goes through the customer-service API
        if done is None:
            self._claim(msg, key, strategy)
            done = yield from self._wait(msg, key, strategy, answer_by)
        if done is not None:
            return self._hand_out(key, done)
        if strategy == "customer_service":
            self.store.set(self._name("cs", key), 1, opts.result_ttl)
            # The job may have finished in between: whoever wins the "sent" add delivers it.
            done = self.store.get(self._name("done", key))
            if done is not None:
                return self._hand_out(key, done)
            self._typing(msg, True)
            return SUCCESS
        if n < opts.attempts:
            # Leave this delivery unanswered until WeChat has given up on it, so that it retries;
            # keep renewing the claim meanwhile in case the worker running the job dies.
            hold_until = start + opts.wechat_timeout + opts.margin
            yield from self._wait(msg, key, strategy, hold_until, ignore_done=True)
            return SUCCESS
        # The last expected delivery: answer in time, and let the user's next message get the result.
        self.store.set(self._name("gave-up", key), 1, opts.result_ttl)
        done = self.store.get(self._name("done", key))
        if done is not None:
            return self._hand_out(key, done)
        return reply_for(msg, TextReply(opts.holding_text), self.clock())

    def _claim(self, msg: Message, key: str, strategy: str) -> bool:
        """Take the job's lease and start it; False when another delivery holds it."""
        lease = self._name("lease", key)
        if not self.store.add(lease, {"owner": self.owner, "at": self.clock()}, self.options.lease):
            return False
        if self.store.get(self._name("done", key)) is not None:
            return False  # finished while we looked: nothing to run
        job = {"message": msg.raw, "key": key, "strategy": strategy, "claimed_at": self.clock()}
        self._heartbeat.add(lease, {"owner": self.owner, "at": self.clock()})
        try:
            self.executor.submit(self, job)
        except Exception:
            self._heartbeat.remove(lease)
            raise
        return True

    def _event(self, key: str) -> threading.Event:
        with self._events_lock:
            event = self._events.get(key)
            if event is None:
                event = self._events[key] = threading.Event()
            return event

    def _wait(
        self, msg: Message, key: str, strategy: str, until: float, *, ignore_done: bool = False
    ) -> Generator[_Pause, None, dict[str, Any] | None]:
        """Poll for the result until ``until``; re-claim the job if its lease lapses (a dead worker)."""
        # Holding a delivery only watches the lease: a private event, never set, paces the loop.
        event = threading.Event() if ignore_done else self._event(key)
        poll = self.options.lease / 4 if ignore_done else self.options.poll
        done_name = self._name("done", key)
        next_claim = self.monotonic() + self.options.lease / 2
        try:
            while True:
                if not ignore_done:
                    done = self.store.get(done_name)
                    if done is not None:
                        return done  # type: ignore[no-any-return]
                    # Set by a job that ended without a result (its store write failed): waiting on
                    # it again would return at once, a busy loop until the deadline. A job that
                    # finishes after this line is seen at the next poll.
                    event.clear()
                now = self.monotonic()
                if now >= until:
                    return None
                if now >= next_claim:
                    next_claim = now + self.options.lease / 2
                    self._claim(msg, key, strategy)
                yield _Pause(event, min(poll, max(0.0, until - now)))
        finally:
            if not ignore_done:
                with self._events_lock:
                    self._events.pop(key, None)

    def _hand_out(self, key: str, done: dict[str, Any]) -> str:
        """The passive reply for a finished job, if this delivery wins the right to hand it out."""
        if not done.get("ok"):
            return SUCCESS
        if self.store.add(self._name("sent", key), 1, self.options.result_ttl):
            return str(done["xml"])
        return SUCCESS

    def _take_held(self, msg: Message) -> str | None:
        """A result kept for this user's next message (or keyword), handed out once."""
        if msg.msg_type == "event":
            return None  # menu taps and location reports are not the user asking
        keyword = self.options.keyword
        if keyword is not None and not (isinstance(msg, TextMessage) and msg.content.strip() == keyword):
            return None
        name = self._held_name(msg)
        kept = self._kept(name)
        left = list(kept)
        this, now = msg.dedup_key, self.clock()
        for entry in kept:  # the oldest first
            if entry["key"] == this:
                continue
            if now < entry.get("after", 0) and not self.store.get(self._name("gave-up", entry["key"])):
                continue  # WeChat may still retry that message: its retry answers it
            left.remove(entry)
            if left:
                self.store.set(name, left, self.options.result_ttl)
            else:
                self.store.delete(name)
            if self.store.add(self._name("sent", entry["key"]), 1, self.options.result_ttl):
                # The stored XML was rendered for the earlier message: same addresses, older CreateTime.
                return str(entry["xml"])
            # A retry answered that one after all: look at the next.
        return None

    def _held_name(self, msg: Message) -> str:
        return self._name("held", f"{msg.raw.get('ToUserName', '')}:{msg.from_user_name}")

    def _kept(self, name: str) -> list[dict[str, Any]]:
        """The results kept under ``name``, oldest first (one record, as earlier versions kept, counts)."""
        held = self.store.get(name)
        entries = [held] if isinstance(held, dict) else held if isinstance(held, list) else []
        return [h for h in entries if isinstance(h, dict) and "key" in h and "xml" in h]

    def _hold(self, msg: Message, key: str, xml: str, reason: str, after: float = 0.0) -> None:
        """Keep a result for the user's next message (one arriving from ``after`` on, or once the
        last delivery of the message answered the holding text).

        A user may have several (a keyword-only pickup, a result kept while another waits): they
        are handed out oldest first, at most :data:`MAX_KEPT` of them. Two results kept for one user
        at the same moment on two workers can still overwrite each other (no atomic append).
        """
        name = self._held_name(msg)
        kept = [h for h in self._kept(name) if h["key"] != key]
        kept = [*kept[-(MAX_KEPT - 1) :], {"key": key, "xml": xml, "after": after}]
        self.store.set(name, kept, self.options.result_ttl)
        if signals.slow_result_held.receivers:
            signals.slow_result_held.send(self.callback.sender, message=msg, reason=reason)

    # -- the job side ---------------------------------------------------------------------------

    def run_job(self, job: dict[str, Any]) -> None:
        """Run one slow job (called by the executor, in this process or in a task queue's worker)."""
        msg = from_dict(dict(job["message"]))
        key = str(job["key"])
        strategy = str(job.get("strategy", "retries"))
        lease = self._name("lease", key)
        claim = {"owner": self.owner, "at": self.clock()}
        self._heartbeat.add(lease, claim)
        try:
            # The job runs here now: the lease names this process, so a claimer elsewhere stops renewing.
            self.store.set(lease, claim, self.options.lease)
            done = self._execute(msg, key)
            if done.get("ok") and signals.slow_job_finished.receivers:
                signals.slow_job_finished.send(self.callback.sender, message=msg, ok=True)
            self._finish(msg, key, strategy, done, float(job.get("claimed_at") or self.clock()))
        except Exception:  # a pool thread must not swallow it silently
            log.exception(
                "wxmp slow: job for %s from %s failed",
                loggable("/".join(msg.kinds)),
                loggable(msg.from_user_name),
            )
        finally:
            self._heartbeat.remove(lease)
            with self._events_lock:
                event = self._events.get(key)
            if event is not None:
                event.set()

    def _execute(self, msg: Message, key: str) -> dict[str, Any]:
        found = self.callback.router.find(msg)
        if found is None or found[0].slow is None:
            log.warning("wxmp slow: no slow handler matches job %s any more", loggable(key, 200))
            done: dict[str, Any] = {"ok": False}
        else:
            route, handed = found
            context = self.callback.context
            try:
                # A generous deadline: token waits inside the job need not fit WeChat's 5 s.
                with deadline(max(60.0, self.options.result_ttl)):
                    if context is None:
                        value = settle(route.handler(handed))
                    else:
                        with context():
                            value = settle(route.handler(handed))
                if isinstance(value, str):
                    value = TextReply(value)
                done = {"ok": True, "xml": reply_for(msg, value, self.clock()), "out": _outgoing(value)}
            except Exception as exc:
                kinds = "/".join(msg.kinds)
                log.exception(
                    "wxmp slow handler failed for %s from %s", loggable(kinds), loggable(msg.from_user_name)
                )
                if signals.handler_failed.receivers:
                    signals.handler_failed.send(self.callback.sender, message=msg, exception=exc)
                if signals.slow_job_finished.receivers:
                    signals.slow_job_finished.send(self.callback.sender, message=msg, ok=False)
                done = {"ok": False}
        self.store.set(self._name("done", key), done, self.options.result_ttl)
        return done

    def _finish(self, msg: Message, key: str, strategy: str, done: dict[str, Any], claimed_at: float) -> None:
        """After the result is stored: send it, keep it, or leave it to a waiting delivery."""
        if self.store.get(self._name("cs", key)):
            if not done.get("ok"):
                self._typing(msg, False)
            elif self.store.add(self._name("sent", key), 1, self.options.result_ttl):
                self._send(msg, key, done)
        elif done.get("ok") and strategy == "retries" and not _empty(done):
            # A later retry may still answer it; if none does, the user's next message gets it.
            opts = self.options
            after = claimed_at + opts.attempts * opts.wechat_timeout + opts.margin
            self._hold(msg, key, str(done["xml"]), "no delivery answered yet", after)

    def _send(self, msg: Message, key: str, done: dict[str, Any]) -> None:
        """Deliver a result through the customer-service API; reported errors keep it for later."""
        assert self.account is not None
        api = self.account.message
        openid = msg.from_user_name
        out: list[list[Any]] | None = done.get("out")
        if not out:
            self._typing(msg, False)
            if not _empty(done):
                # "sent" is taken for the key already: keep it under the key of a rest, as below.
                self._hold(msg, key + _REST, str(done["xml"]), "not sendable through customer service")
            return
        for i, (msgtype, payload) in enumerate(out):
            if i >= MAX_MESSAGES:
                self._hold_rest(msg, key, out[i:], done, "more than 5 messages")
                return
            try:
                api.send(openid, msgtype, payload)
            except ApiError as exc:
                reason = REPORTED.get(exc.errcode, "customer-service send failed")
                log.warning(
                    "wxmp slow: customer-service message to %s not sent: %s (%s); kept for the next message",
                    loggable(openid),
                    reason,
                    exc.errcode,
                )
                if exc.errcode == 48001:
                    self.store.set("slow:no-api", 1, NO_API_TTL)
                    self._no_api_until = self.clock() + 60
                self._report(msg, exc.errcode, exc.errmsg, i)
                self._hold_rest(msg, key, out[i:], done, reason)
                return
            except WxMPError as exc:  # network, token: one attempt only, never a loop
                log.warning("wxmp slow: customer-service message to %s not sent (%s)", loggable(openid), exc)
                self._report(msg, None, str(exc), i)
                self._hold_rest(msg, key, out[i:], done, "customer-service send failed")
                return
        if signals.slow_result_sent.receivers:
            signals.slow_result_sent.send(self.callback.sender, message=msg, messages=len(out))

    def _report(self, msg: Message, errcode: int | None, errmsg: str, sent: int) -> None:
        if signals.customer_service_failed.receivers:
            signals.customer_service_failed.send(
                self.callback.sender, message=msg, errcode=errcode, errmsg=errmsg, sent=sent
            )

    def _hold_rest(
        self, msg: Message, key: str, rest: list[list[Any]], done: dict[str, Any], reason: str
    ) -> None:
        if all(kind == "text" for kind, _ in rest):
            text = "\n".join(str(payload["content"]) for _, payload in rest)
            xml = reply_for(msg, TextReply(text), self.clock())
        else:
            xml = str(done["xml"])
        self._hold(msg, key + _REST, xml, reason)

    def _typing(self, msg: Message, on: bool) -> None:
        """Show (or hide) "typing..." in the background; failures only logged (45080/45081 are harmless)."""
        account = self.account
        if account is None:
            return
        openid = msg.from_user_name

        def send() -> None:
            try:
                account.message.typing(openid, on)
            except WxMPError as exc:
                log.info("wxmp slow: typing indicator for %s not shown (%s)", loggable(openid), exc)

        threading.Thread(target=send, name="wxmp-slow-typing", daemon=True).start()


@dataclass(frozen=True)
class _Pause:
    """A wait of the request side: ``event`` ends it early in the thread driver (a finished job)."""

    event: threading.Event
    seconds: float


@dataclass(frozen=True)
class _Done:
    value: str | None


def _drive(
    steps: Generator[_Pause, None, str | None], wait: Callable[[threading.Event, float], bool]
) -> str | None:
    """Run the request side in this thread: each pause is a ``wait`` on its event."""
    try:
        pause = next(steps)
        while True:
            wait(pause.event, pause.seconds)
            pause = steps.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _empty(done: dict[str, Any]) -> bool:
    """True for a result that says nothing (None, ``success``, an empty body): nothing to send or keep,
    or the user's next message would be swallowed by it."""
    return done.get("xml") in (SUCCESS, "")


def _outgoing(value: Reply | None) -> list[list[Any]] | None:
    """A reply as customer-service messages ``[msgtype, payload]`` (None: not sendable that way)."""
    if isinstance(value, TextReply):
        return [["text", {"content": part}] for part in split_text(value.content)]
    if isinstance(value, (ImageReply, VoiceReply)):
        return [[value.msg_type, {"media_id": value.media_id}]]
    # MessageAPI.send drops the fields left None.
    if isinstance(value, VideoReply):
        video = {"media_id": value.media_id, "title": value.title, "description": value.description}
        return [["video", video]]
    if isinstance(value, MusicReply):
        music = {
            "title": value.title,
            "description": value.description,
            "musicurl": value.music_url,
            "hqmusicurl": value.hq_music_url or value.music_url,
            "thumb_media_id": value.thumb_media_id,
        }
        return [["music", music]]
    if isinstance(value, NewsReply):
        a = value.articles[0]
        article = {"title": a.title, "description": a.description, "url": a.url, "picurl": a.pic_url}
        return [["news", {"articles": [article]}]]
    return None
