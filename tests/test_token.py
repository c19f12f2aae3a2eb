"""TokenManager over real HTTP against FakeWeChat, driven by a fake clock shared by both."""

from __future__ import annotations

import calendar
import logging
import os
import socket
import threading

import pytest
from cachelib import SimpleCache

from wxmp import (
    ApiClient,
    CredentialError,
    InvalidOpenIDError,
    IPNotWhitelistedError,
    QuotaExceededError,
    SharedStore,
    TokenInvalidError,
    TokenManager,
    TokenUnavailableError,
    mask,
    signals,
)
from wxmp.cache import resolve_cache
from wxmp.testing import FakeWeChat
from wxmp.testing.clock import FakeClock
from wxmp.testing.servers import free_port
from wxmp.token import Backoff

TOKEN = "/cgi-bin/token"
STABLE = "/cgi-bin/stable_token"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def fake(clock):
    with FakeWeChat(token_lifetime=100, clock=clock) as fake:
        fake.add_user("o1")
        yield fake


def manager(fake, clock, *, stable=True, store=None, secret=None, fetch=True, wrap=None, **kw):
    client = ApiClient(fake.url, timeout=1.0)
    store = store or SharedStore(SimpleCache())

    def fetcher(force):
        return client.fetch_access_token(fake.appid, secret or fake.secret, stable=stable, force=force)

    if wrap is not None:
        fetcher = wrap(fetcher)
    tm = TokenManager(
        "access_token",
        fetcher if fetch else None,
        store,
        appid=fake.appid,
        clock=clock,
        sleep=kw.pop("sleep", clock.sleep),
        backoff=Backoff(rng=lambda: 1.0),
        **kw,
    )
    client.token = tm
    return tm, client


def user_info(client):
    return client.get("/cgi-bin/user/info", {"openid": "o1"})


@pytest.mark.parametrize("stable", [True, False])
def test_one_fetch_then_reads_from_the_cache(fake, clock, stable):
    tm, client = manager(fake, clock, stable=stable)
    for _ in range(5):
        assert user_info(client)["openid"] == "o1"
    assert fake.count(STABLE if stable else TOKEN) == 1
    assert fake.count() == 6


@pytest.mark.parametrize("stable", [True, False])
def test_refresh_ahead_of_expiry(fake, clock, stable):
    tm, client = manager(fake, clock, stable=stable, margin=0.1)
    first = tm.get()
    clock.advance(89)
    assert tm.get() == first  # not due yet
    clock.advance(2)  # 91 s: inside the 10 % margin, still valid
    second = tm.get()
    assert second != first
    assert fake.count(STABLE if stable else TOKEN) == 2
    assert user_info(client)["openid"] == "o1"


def test_stable_token_before_its_rotation_window_is_asked_again_later(clock):
    with FakeWeChat(token_lifetime=100, stable_rotate_window=5, clock=clock) as fake:
        tm, _ = manager(fake, clock, margin=0.1)
        first = tm.get()
        clock.advance(91)  # due, but WeChat still hands back the same token (9 s > 5 s window)
        assert tm.get() == first
        assert fake.count(STABLE) == 2
        assert tm.get() == first  # next look is halfway to expiry, not immediately
        assert fake.count(STABLE) == 2
        clock.advance(4.6)  # 4.4 s left: inside WeChat's rotation window
        assert tm.get() != first
        assert fake.count(STABLE) == 3


@pytest.mark.parametrize("stable", [True, False])
def test_invalid_token_is_recovered_once(fake, clock, stable):
    tm, client = manager(fake, clock, stable=stable)
    user_info(client)
    fake.revoke_tokens()  # someone else refreshed: ours is dead
    assert user_info(client)["openid"] == "o1"
    info_calls = fake.calls("/cgi-bin/user/info")
    assert len(info_calls) == 3  # ok, 40001, replay
    assert info_calls[1].token != info_calls[2].token
    assert fake.count(STABLE if stable else TOKEN) == 2


def test_compare_and_refresh_fetches_once_for_many_failures(fake, clock):
    tm, _ = manager(fake, clock, stable=False)
    old = tm.get()
    fake.revoke_tokens()
    new = {tm.invalidate(old) for _ in range(10)}
    assert len(new) == 1 and old not in new
    assert fake.count(TOKEN) == 2


def test_stable_token_forces_a_new_one_when_wechat_rejects_the_current(fake, clock):
    tm, _ = manager(fake, clock)
    old = tm.get()
    new = tm.invalidate(old)  # WeChat said 40001 though its stable endpoint still hands out `old`
    assert new != old
    bodies = [r.json for r in fake.calls(STABLE)]
    assert [b.get("force_refresh", False) for b in bodies] == [False, False, True]


def test_a_token_rejected_again_after_refresh_is_not_retried_in_a_loop(fake, clock):
    tm, client = manager(fake, clock)
    fake.fail_next(10, 40001, paths=("/cgi-bin/user/info",))
    with pytest.raises(TokenInvalidError) as info:
        user_info(client)
    assert info.value.errcode == 40001
    assert fake.count("/cgi-bin/user/info") == 2  # the call and exactly one replay
    assert fake.count(STABLE) <= 3


def test_quota_error_is_raised_at_once_logged_once_and_not_retried(clock, caplog):
    with FakeWeChat(token_lifetime=100, daily_quota=1, clock=clock) as fake:
        tm, _ = manager(fake, clock, stable=False)
        old = tm.get()
        fake.revoke_tokens()
        caplog.set_level(logging.INFO, "wxmp")
        for _ in range(5):
            with pytest.raises(QuotaExceededError) as info:
                tm.invalidate(old)
            assert info.value.errcode == 45009
        assert fake.count(TOKEN) == 2  # one success, one 45009, then no more requests
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "45009" in errors[0].getMessage()


@pytest.mark.parametrize(("errcode", "exc"), [(40125, CredentialError), (40164, IPNotWhitelistedError)])
def test_configuration_errors_are_not_retried(fake, clock, errcode, exc):
    if errcode == 40125:
        tm, _ = manager(fake, clock, secret="wrong")
    else:
        tm, _ = manager(fake, clock)
        fake.fail_next(1, 40164, paths=(STABLE,))
    for _ in range(3):
        with pytest.raises(exc) as info:
            tm.get()
        assert info.value.errcode == errcode
    assert fake.count(STABLE) == 1
    clock.advance(301)  # after the cool-down one more attempt is allowed
    if errcode == 40125:
        with pytest.raises(exc) as info:
            tm.get()
        assert info.value.errcode == 40125
        assert fake.count(STABLE) == 2
    else:
        assert tm.get()


def test_backoff_schedule_is_capped_exponential_with_jitter():
    b = Backoff(base=0.5, cap=8, rng=lambda: 1.0)
    assert [b.failed(0) for _ in range(6)] == [0.5, 1, 2, 4, 8, 8]
    b.succeeded()
    assert b.waiting(0) == 0
    low = Backoff(base=0.5, cap=8, rng=lambda: 0.0)
    assert [low.failed(0) for _ in range(3)] == [0.25, 0.5, 1.0]


@pytest.mark.parametrize("fault", ["busy", "http500"])
def test_transient_failures_back_off_then_succeed(fake, clock, fault):
    tm, _ = manager(fake, clock)
    if fault == "busy":
        fake.fail_next(3, -1, paths=(STABLE,))
    else:
        fake.http_error_next(3, 500, paths=(STABLE,))
    assert tm.get()
    assert fake.count(STABLE) == 4
    waits = [s for s in clock.slept if s >= 0.5]
    assert waits == [0.5, 1.0, 2.0]  # exponential, not a hot loop


def test_persistent_failure_gives_up_within_the_wait_budget(fake, clock):
    tm, _ = manager(fake, clock, wait=10)
    fake.fail_next(1000, -1, paths=(STABLE,))
    with pytest.raises(TokenUnavailableError, match="next attempt"):
        tm.get()
    assert fake.count(STABLE) <= 5  # 0.5 + 1 + 2 + 4 = 7.5 s of the 10 s budget


def test_timeout_is_a_network_error_and_backs_off(fake, clock):
    # Only the attempt that hangs gets a short timeout (10 ms of real time: a socket timeout cannot
    # follow the fake clock); the retry after the backoff uses the normal one.
    client_of = {}

    def wrap(fetch):
        def first_attempt_times_out(force):
            client = client_of.pop("client", None)
            if client is None:
                return fetch(force)
            client.timeout = 0.01
            try:
                return fetch(force)
            finally:
                client.timeout = 1.0

        return first_attempt_times_out

    tm, client_of["client"] = manager(fake, clock, wrap=wrap)
    fake.hang_next(1, 30, paths=(STABLE,))
    assert tm.get()
    assert fake.count(STABLE) == 2
    assert 0.5 in clock.slept


def test_dead_cache_degrades_to_a_local_token_with_one_warning(fake, clock, caplog, tmp_path):
    dead = SharedStore(resolve_cache(f"redis://127.0.0.1:{free_port()}/0", str(tmp_path)))
    tm, client = manager(fake, clock, store=dead)
    caplog.set_level(logging.WARNING, "wxmp")
    for _ in range(20):
        assert user_info(client)["openid"] == "o1"
    assert fake.count(STABLE) == 1
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert not tm.cache_ok


def test_a_flushed_cache_gets_the_local_copy_back_instead_of_a_fetch(fake, clock):
    cache = SimpleCache()
    tm, _ = manager(fake, clock, store=SharedStore(cache), stable=False)
    token = tm.get()
    cache.clear()  # e.g. Redis restarted empty
    assert tm.get() == token
    assert fake.count(TOKEN) == 1
    other, _ = manager(fake, clock, store=SharedStore(cache), stable=False)
    assert other.get() == token  # and the fleet sees it again


def test_external_mode_reads_the_shared_cache_and_never_fetches(fake, clock):
    store = SharedStore(SimpleCache())
    worker, _ = manager(fake, clock, store=store, fetch=False, external_wait=2)
    with pytest.raises(TokenUnavailableError, match="flask wxmp refresher"):
        worker.get()
    assert fake.count() == 0
    central, _ = manager(fake, clock, store=store)
    central.get()
    assert worker.get() == central.get()
    assert fake.count(STABLE) == 1


def test_refresher_tick_waits_until_due(fake, clock):
    tm, _ = manager(fake, clock, margin=0.1)
    assert tm.tick() == pytest.approx(90)
    clock.advance(90)
    assert tm.tick() == pytest.approx(90)  # refreshed, next due in 90 s
    assert fake.count(STABLE) == 2


def test_signals_report_refreshes_and_api_errors(fake, clock):
    tm, client = manager(fake, clock)
    refreshed, errors = [], []

    def on_refresh(sender, **kw):
        refreshed.append(kw)

    def on_error(sender, **kw):
        errors.append(kw)

    with signals.token_refreshed.connected_to(on_refresh), signals.api_error.connected_to(on_error):
        token = tm.get()
        with pytest.raises(InvalidOpenIDError):
            client.get("/cgi-bin/user/info", {"openid": "nobody"})
    assert refreshed[0]["masked"] == mask(token)
    assert refreshed[0]["kind"] == "access_token"
    assert refreshed[0]["pid"] > 0
    assert errors == [{"errcode": 40003, "errmsg": errors[0]["errmsg"], "path": "/cgi-bin/user/info"}]


def test_mask_shows_prefix_and_length_only():
    assert mask("ABCDEFGHIJ") == "ABCDEF…(10)"
    assert mask(None) == "<none>"


def test_no_secret_or_token_in_any_log_record(fake, clock, caplog):
    caplog.set_level(logging.DEBUG)
    tm, client = manager(fake, clock, stable=False)
    user_info(client)
    fake.revoke_tokens()
    user_info(client)
    fake.fail_next(1, -1, paths=(TOKEN,))
    fake.revoke_tokens()
    user_info(client)
    tokens = {r.token for r in fake.requests if r.token}
    assert tokens
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "refreshed" in text
    assert fake.secret not in text
    for token in tokens:
        assert token not in text


def test_classic_tokens_are_not_refetched_in_a_loop_while_the_cache_is_down(fake, clock, tmp_path):
    # Two processes that cannot see a shared cache kill each other's classic tokens; without a
    # guard, each 40001 would fetch again and burn the 2000/day quota in minutes.
    dead = f"redis://127.0.0.1:{free_port()}/0"
    a, client_a = manager(
        fake, clock, stable=False, exclusive=True, store=SharedStore(resolve_cache(dead, str(tmp_path)))
    )
    b, client_b = manager(
        fake, clock, stable=False, exclusive=True, store=SharedStore(resolve_cache(dead, str(tmp_path)))
    )
    t0 = clock()
    failures = 0
    for _ in range(50):
        for client in (client_a, client_b):
            try:
                user_info(client)
            except (TokenInvalidError, TokenUnavailableError):
                failures += 1
    # a fetched, b fetched (killing a's token); every later call of a is refused without a fetch
    assert fake.count(TOKEN) == 2
    assert failures == 49
    assert clock() - t0 == 15.5  # a's refusals back off: 0.5 + 1 + 2 + 4 + 8 s
    clock.advance(26)  # more than a quarter lifetime later, one more fetch each is allowed
    user_info(client_a)
    user_info(client_b)
    assert fake.count(TOKEN) == 4


@pytest.mark.parametrize(("after", "fetched_at"), [(25, 25), (24, 25.5)])
def test_without_the_cache_a_classic_token_is_refetched_after_a_quarter_lifetime(
    fake, clock, tmp_path, after, fetched_at
):
    dead = SharedStore(resolve_cache(f"redis://127.0.0.1:{free_port()}/0", str(tmp_path)))
    tm, _ = manager(fake, clock, stable=False, exclusive=True, store=dead)
    t0 = clock()
    old = tm.get()
    fake.revoke_tokens()
    clock.advance(after)
    assert tm.invalidate(old) != old
    # refused at 24 s and 24.5 s (backing off 0.5 s, then 1 s), allowed from 25 s = 100 s / 4
    assert tm.peek().fetched_at - t0 == fetched_at
    assert fake.count(TOKEN) == 2


def test_waits_inside_a_callback_handler_are_cut_to_its_deadline(fake, clock):
    from wxmp.deadline import deadline, remaining

    store = SharedStore(SimpleCache())
    tm, _ = manager(fake, clock, store=store, wait=30)
    holder = store.lock(f"{fake.appid}:access_token", ttl=60)
    assert holder.acquire()  # another worker is "fetching" and never finishes
    start = clock()
    with deadline(0.5):
        assert 0 < remaining() <= 0.5
        with pytest.raises(TokenUnavailableError, match="timed out"):
            tm.get()
    assert remaining() is None
    assert clock() - start < 1.0  # not the 30 s the manager would wait outside a handler
    holder.release()


def test_callers_leave_the_early_refresh_to_a_running_refresher(fake, clock):
    tm, _ = manager(fake, clock, margin=0.1)
    first = tm.get()
    tm.background = True  # what Refresher.start() sets
    clock.advance(91)  # due, still valid
    assert tm.get() == first  # the caller does not pay for a fetch
    assert fake.count(STABLE) == 1
    tm.tick()  # the refresher does
    assert tm.get() != first
    assert fake.count(STABLE) == 2


def test_entry_times_follow_the_fetch_exactly(fake, clock):
    tm, _ = manager(fake, clock, margin=0.1)
    t0 = clock()
    tm.get()
    entry = tm.peek()
    assert (entry.expires_at, entry.refresh_at, entry.fetched_at) == (t0 + 100, t0 + 90, t0)
    assert (entry.host, entry.pid) == (socket.gethostname(), os.getpid())
    assert fake.count(STABLE) == 1


def test_default_margin_refreshes_two_percent_before_expiry(fake, clock):
    tm, _ = manager(fake, clock)
    first = tm.get()
    assert tm.peek().refresh_at == clock() + 98
    clock.advance(97.9)
    assert tm.get() == first
    clock.advance(0.1)
    assert tm.get() != first
    assert fake.count(STABLE) == 2


def test_same_stable_token_is_looked_at_again_halfway_to_expiry(clock):
    with FakeWeChat(token_lifetime=100, stable_rotate_window=5, clock=clock) as fake:
        tm, _ = manager(fake, clock, margin=0.1)
        t0 = clock()
        tm.get()
        clock.advance(91)
        tm.get()  # same token back: 9 s left, next look in 4.5 s
        entry = tm.peek()
        assert entry.expires_at == t0 + 100
        assert entry.refresh_at == t0 + 91 + 4.5


def test_same_stable_token_is_looked_at_again_no_sooner_than_half_a_second(clock):
    with FakeWeChat(token_lifetime=100, stable_rotate_window=0.2, clock=clock) as fake:
        tm, _ = manager(fake, clock, margin=0.1)
        first = tm.get()
        clock.advance(99.5)  # 0.5 s left, WeChat still hands back the same token
        assert tm.get() == first
        assert tm.peek().refresh_at == clock() + 0.5
        assert fake.count(STABLE) == 2


def test_a_fetch_failing_in_the_early_refresh_window_keeps_the_valid_token(fake, clock):
    tm, _ = manager(fake, clock, margin=0.1)
    first = tm.get()
    clock.advance(91)  # due, valid for 9 s more
    fake.fail_next(1, -1, paths=(STABLE,))
    assert tm.get() == first
    assert fake.count(STABLE) == 2
    assert (tm.backoff.failures, tm.backoff.retry_at) == (1, clock() + 0.5)
    assert tm.get() == first  # backing off: no attempt before retry_at
    assert fake.count(STABLE) == 2
    clock.advance(0.5)
    second = tm.get()
    assert second != first
    assert fake.count(STABLE) == 3
    # a success resets the backoff: the next failure waits the base delay again, not 1 s
    assert (tm.backoff.failures, tm.backoff.retry_at) == (0, 0.0)


def test_a_process_that_lost_the_lock_once_refreshes_later(fake, clock):
    store = SharedStore(SimpleCache())
    tm, _ = manager(fake, clock, store=store, margin=0.1)
    first = tm.get()
    holder = store.lock(f"{fake.appid}:access_token", ttl=60)
    assert holder.acquire()  # another process is refreshing
    clock.advance(91)
    assert tm.get() == first  # lost the lock: keeps the valid token, no fetch
    assert tm.tick() == 0.2  # the refresher looks again shortly
    assert fake.count(STABLE) == 1
    holder.release()
    assert tm.get() != first  # its own lock was released with the shared one
    assert fake.count(STABLE) == 2


def test_two_threads_of_one_process_fetch_once(fake, clock):
    gate, inside = threading.Event(), threading.Event()
    gate.set()

    def wrap(fetch):
        def blocking(force):
            inside.set()
            assert gate.wait(10)
            return fetch(force)

        return blocking

    store = SharedStore(SimpleCache())
    tm, _ = manager(fake, clock, store=store, margin=0.1, wrap=wrap)
    first = tm.get()
    gate.clear()
    inside.clear()
    clock.advance(91)
    got = []
    worker = threading.Thread(target=lambda: got.append(tm.get()))
    worker.start()
    assert inside.wait(10)  # the worker thread is fetching, holding both locks
    assert tm.get() == first  # this thread does not fetch too
    other, _ = manager(fake, clock, store=store, margin=0.1)
    assert other.get() == first  # nor does another process
    gate.set()
    worker.join(10)
    assert got and got[0] != first
    assert fake.count(STABLE) == 2
    assert tm.get() == got[0] == other.get()


def test_tick_reports_time_until_due_and_fatal_cool_down(fake, clock, caplog):
    tm, _ = manager(fake, clock, margin=0.1)
    assert tm.tick() == 90  # fetched; due in 90 s
    clock.advance(30)
    assert tm.tick() == 60  # not yet due: nothing fetched
    assert fake.count(STABLE) == 1
    clock.advance(60)
    fake.fail_next(1, 40164, paths=(STABLE,))
    caplog.set_level(logging.ERROR, "wxmp")
    assert tm.tick() == 0.05  # refused, but the old token is still valid: look again soon
    assert fake.count(STABLE) == 2
    assert tm.tick() == 300  # the cool-down of a fatal error, not a retry loop
    clock.advance(100)
    assert tm.tick() == 200
    assert fake.count(STABLE) == 2
    assert [r.levelno for r in caplog.records] == [logging.ERROR]


def test_tick_after_a_failure_waits_for_the_backoff(fake, clock):
    tm, _ = manager(fake, clock, margin=0.1, wait=0.1)
    fake.fail_next(1, -1, paths=(STABLE,))
    assert tm.tick() == 0.5  # no token yet, the fetch failed: retry after the backoff
    clock.advance(0.2)
    assert tm.tick() == pytest.approx(0.3)
    clock.advance(0.3)
    assert tm.tick() == 90
    assert fake.count(STABLE) == 2


def test_fatal_error_while_expired_is_raised_by_get_until_the_cool_down_ends(fake, clock):
    tm, _ = manager(fake, clock)
    fake.fail_next(1, 40164, paths=(STABLE,))
    with pytest.raises(IPNotWhitelistedError):
        tm.get()
    clock.advance(299)
    with pytest.raises(IPNotWhitelistedError):
        tm.get()
    assert tm.tick() == pytest.approx(1)
    assert fake.count(STABLE) == 1
    clock.advance(1)
    assert tm.get()
    assert fake.count(STABLE) == 2


def test_the_cache_warning_is_rate_limited_on_the_injected_clock(fake, clock, caplog, tmp_path):
    dead = SharedStore(resolve_cache(f"redis://127.0.0.1:{free_port()}/0", str(tmp_path)))
    tm, _ = manager(fake, clock, store=dead)
    caplog.set_level(logging.WARNING, "wxmp")
    tm.get()

    def warnings():
        return [r for r in caplog.records if "using this process's copy" in r.getMessage()]

    assert len(warnings()) == 1
    clock.advance(59.9)
    tm.get()
    assert len(warnings()) == 1
    clock.advance(0.1)  # a minute after the first warning
    tm.get()
    assert len(warnings()) == 2


def test_cache_recovery_is_logged_once(fake, clock, caplog, redis_server, redis_url):
    store = SharedStore(resolve_cache(redis_url, "unused"))
    tm, _ = manager(fake, clock, store=store)
    token = tm.get()
    caplog.set_level(logging.WARNING, "wxmp")
    redis_server.stop()
    try:
        assert tm.get() == token  # the local copy
        assert not tm.cache_ok
    finally:
        redis_server.start()
    for _ in range(3):
        assert tm.get() == token
    assert tm.cache_ok
    again = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert [r.getMessage() for r in again] == ["access_token: the shared cache is reachable again"]
    assert tm.cache_ok is True


def test_a_token_read_from_the_cache_survives_its_outage(fake, clock, redis_server, redis_url):
    url = redis_url  # flushed: nothing from earlier tests
    a, _ = manager(fake, clock, store=SharedStore(resolve_cache(url, "unused")))
    b, _ = manager(fake, clock, store=SharedStore(resolve_cache(url, "unused")))
    token = a.get()
    assert b.get() == token  # b only read it
    redis_server.stop()
    try:
        assert b.get() == token  # b's own copy of what it read
    finally:
        redis_server.start()
    assert fake.count(STABLE) == 1


def test_cached_values_expire_with_the_token(fake, clock, redis_url):
    import redis

    with FakeWeChat(token_lifetime=100, stable_rotate_window=0.2, clock=clock) as fake2:
        store = SharedStore(resolve_cache(redis_url, "unused"))
        tm, _ = manager(fake2, clock, store=store, margin=0.1)

        def wrap(fetch):
            def fetch_while_watching_the_lock(force):
                locks = [k for k in r.keys("*") if b"lock" in k]
                ttls.extend(r.pttl(k) for k in locks)
                return fetch(force)

            return fetch_while_watching_the_lock

        r = redis.Redis.from_url(redis_url)
        ttls = []
        watcher, _ = manager(fake2, clock, store=store, wrap=wrap)
        watcher.get()
        assert len(ttls) == 1 and 14_000 < ttls[0] <= 15_000  # the fetch lock frees itself after 15 s
        token_keys = [k for k in r.keys("*") if k.endswith(b"access_token")]
        assert len(token_keys) == 1
        assert 99 <= r.ttl(token_keys[0]) <= 101  # the cache drops the token when it expires (+1: rounding)
        counters = [k for k in r.keys("*") if b":fetches:" in k]
        assert len(counters) == 1 and 2 * 86400 - 2 <= r.ttl(counters[0]) <= 2 * 86400 + 1
        clock.advance(99.5)
        tm.get()  # same token back, 0.5 s left: kept for at least a second
        assert 0 < r.pttl(token_keys[0]) <= 2000  # a second, which the store may round up by one


def test_the_fork_hook_gives_the_child_a_free_local_lock(fake, clock):
    # A thread of the parent holds the process-local lock at the moment of fork (a refresher
    # mid-fetch): without the os.register_at_fork hook the child would inherit it held forever.
    tm, _ = manager(fake, clock)
    assert tm._local_lock.acquire()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running any test machinery
        try:
            free = tm._local_lock.acquire(blocking=False)
            os.write(write_end, b"free" if free else b"held")
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        answer = os.read(read_end, 16)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
        tm._local_lock.release()
    assert answer == b"free"


@pytest.mark.parametrize(
    ("utc", "beijing_day"),
    [
        ((2026, 1, 1, 15, 59, 59), "20260101"),  # 23:59:59 in Beijing
        ((2026, 1, 1, 16, 0, 0), "20260102"),  # midnight in Beijing, 16:00 UTC
    ],
)
def test_fetches_are_counted_per_beijing_day(utc, beijing_day):
    clock = FakeClock(calendar.timegm((*utc, 0, 0, 0)))
    store = SharedStore(SimpleCache())
    with FakeWeChat(token_lifetime=100, clock=clock) as fake:
        tm, _ = manager(fake, clock, store=store)
        assert tm.fetches_today() == 0
        tm.get()
        tm.refresh()
        assert tm.fetches_today() == 2
        assert store.get(f"{fake.appid}:access_token:fetches:{beijing_day}") == 2


def token_log(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "wxmp.token"]


def test_log_lines_name_the_kind_and_mask_the_token(fake, clock, caplog):
    caplog.set_level(logging.INFO, "wxmp.token")
    tm, _ = manager(fake, clock, stable=False)
    fake.fail_next(1, -1, paths=(TOKEN,))
    token = tm.get()
    tm.invalidate(token)
    new = tm.peek().value
    fake.fail_next(1, 40164, paths=(TOKEN,))
    clock.advance(200)
    with pytest.raises(IPNotWhitelistedError):
        tm.get()
    where = f"(host {socket.gethostname()} pid {os.getpid()})"
    assert token_log(caplog) == [
        "access_token fetch failed ([-1] system error (fake fault) (/cgi-bin/token)); retrying in 0.5s",
        f"access_token refreshed: {mask(token)}, expires in 100s {where}",
        f"access_token {mask(token)} was rejected by WeChat; recovering",
        f"access_token refreshed: {mask(new)}, expires in 100s {where}",
        "access_token fetch refused with errcode 40164 (IPNotWhitelistedError); not retrying for 300s: "
        "system error (fake fault)",
    ]


def test_a_fatal_error_is_logged_again_only_when_its_errcode_changes(fake, clock, caplog):
    caplog.set_level(logging.ERROR, "wxmp.token")
    tm, _ = manager(fake, clock)
    for errcode, exc in [
        (40164, IPNotWhitelistedError),
        (40164, IPNotWhitelistedError),
        (45009, QuotaExceededError),
    ]:
        fake.fail_next(1, errcode, paths=(STABLE,))
        with pytest.raises(exc):
            tm.get()
        clock.advance(300)  # the cool-down ends: the next get() asks WeChat again
    assert fake.count(STABLE) == 3
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "access_token fetch refused with errcode 40164",
        "access_token fetch refused with errcode 45009",
    ]
    assert tm.get()


def test_tick_logs_a_failed_refresh_and_returns_the_retry_delay(fake, clock, caplog):
    caplog.set_level(logging.WARNING, "wxmp.token")
    tm, _ = manager(fake, clock)
    fake.fail_next(1, 40164, paths=(STABLE,))
    assert tm.tick() == 300  # no token and a fatal refusal: the whole cool-down
    assert token_log(caplog)[-1] == (
        "access_token refresh failed ([40164] system error (fake fault) (/cgi-bin/stable_token)); "
        "next attempt in 300.0s"
    )


def test_giving_up_names_the_last_fetch_error(fake, clock):
    tm, _ = manager(fake, clock, wait=10)
    fake.fail_next(1000, -1, paths=(STABLE,))
    with pytest.raises(TokenUnavailableError) as info:
        tm.get()
    assert str(info.value) == (
        "access_token unavailable: fetching failed ([-1] system error (fake fault) (/cgi-bin/stable_token)); "
        "next attempt in 8.0s"
    )


def test_giving_up_in_degraded_mode_says_why(fake, clock, tmp_path):
    dead = SharedStore(resolve_cache(f"redis://127.0.0.1:{free_port()}/0", str(tmp_path)))
    tm, _ = manager(fake, clock, stable=False, exclusive=True, store=dead, wait=1)
    old = tm.get()
    fake.revoke_tokens()
    with pytest.raises(TokenUnavailableError) as info:
        tm.invalidate(old)
    assert str(info.value) == (
        "access_token unavailable: fetching failed (access_token: the shared cache is down and a classic "
        "token was fetched 0s ago; not fetching again yet to protect the daily quota); next attempt in 1.0s"
    )


def test_a_stable_manager_refetches_at_once_without_the_cache(fake, clock, tmp_path):
    # Only the classic endpoint (exclusive=True) needs the degraded-mode guard; it is off by default.
    dead = SharedStore(resolve_cache(f"redis://127.0.0.1:{free_port()}/0", str(tmp_path)))
    tm, _ = manager(fake, clock, store=dead)
    old = tm.get()
    assert tm.exclusive is False
    assert tm.invalidate(old) != old
    assert fake.count(STABLE) == 3  # same token back, then forced
    assert clock.slept == []


def test_external_mode_gives_up_after_five_seconds_by_default(fake, clock):
    worker, _ = manager(fake, clock, fetch=False)
    start = clock()
    with pytest.raises(TokenUnavailableError) as info:
        worker.get()
    assert str(info.value) == (
        "no valid access_token in the shared simple cache; this process is in external mode "
        "(WXMP_REFRESHER='external'): is `flask wxmp refresher` running against the same WXMP_CACHE?"
    )
    assert 5 <= clock() - start < 5.1
    assert set(clock.slept) == {0.05}
    with pytest.raises(TokenUnavailableError) as refused:
        worker.refresh()
    assert str(refused.value) == (
        "access_token: cannot fetch here; this process is in external mode (WXMP_REFRESHER='external'): "
        "is `flask wxmp refresher` running against the same WXMP_CACHE?"
    )


def test_a_process_without_the_secret_says_so_instead_of_blaming_external_mode(fake, clock):
    reason = "WXMP_SECRET is not set, so this process cannot fetch one"
    worker, _ = manager(fake, clock, fetch=False, external_wait=0.05, no_fetch_reason=reason)
    with pytest.raises(TokenUnavailableError) as info:
        worker.get()
    assert str(info.value) == f"no valid access_token in the shared simple cache; {reason}"
    assert "external" not in str(info.value)


def test_external_mode_gives_up_exactly_at_its_deadline(fake, clock):
    worker, _ = manager(fake, clock, fetch=False, external_wait=0.05)
    with pytest.raises(TokenUnavailableError, match=r"^no valid access_token in the shared simple cache"):
        worker.get()
    assert clock.slept == [0.05]


def test_waiting_for_another_process_gives_up_after_ten_seconds_by_default(fake, clock):
    store = SharedStore(SimpleCache())
    tm, _ = manager(fake, clock, store=store)
    holder = store.lock(f"{fake.appid}:access_token", ttl=60)
    assert holder.acquire()
    start = clock()
    with pytest.raises(
        TokenUnavailableError,
        match=r"^access_token: timed out waiting for another process to refresh the token$",
    ):
        tm.get()
    assert 10 <= clock() - start < 10.1
    assert len(clock.slept) >= 200 and all(0.02 <= s <= 0.05 for s in clock.slept)  # jittered, short
    holder.release()


def test_waiting_for_the_lock_gives_up_exactly_at_the_deadline(fake, clock):
    store = SharedStore(SimpleCache())
    naps = []

    def nap(seconds):
        naps.append(seconds)
        clock.advance(1.0)  # lands exactly on the deadline

    tm, _ = manager(fake, clock, store=store, wait=1.0, sleep=nap)
    holder = store.lock(f"{fake.appid}:access_token", ttl=60)
    assert holder.acquire()
    with pytest.raises(TokenUnavailableError, match="timed out"):
        tm.get()
    assert len(naps) == 1
    holder.release()


def test_a_backoff_ending_exactly_at_the_deadline_is_waited_for(fake, clock):
    tm, _ = manager(fake, clock, wait=0.5)
    fake.fail_next(1, -1, paths=(STABLE,))
    assert tm.get()
    assert fake.count(STABLE) == 2
    assert clock.slept == [0.5]


def test_a_valid_cached_token_is_returned_without_the_lock(fake, clock):
    store = SharedStore(SimpleCache())
    a, _ = manager(fake, clock, store=store)
    b, _ = manager(fake, clock, store=store)
    token = a.get()
    holder = store.lock(f"{fake.appid}:access_token", ttl=60)
    assert holder.acquire()  # someone is refreshing right now
    assert b.invalidate("a token from before") == token  # the cache already has a different one
    assert clock.slept == []
    holder.release()


def test_the_winner_re_reads_the_cache_after_taking_the_lock(fake, clock):
    # b finds the token expired and waits for the lock; meanwhile a refreshes and lets go.
    store = SharedStore(SimpleCache())
    a, _ = manager(fake, clock, store=store)
    holder = store.lock(f"{fake.appid}:access_token", ttl=60)
    fresh = []

    def meanwhile(seconds):
        clock.advance(seconds)
        if not fresh:
            holder.release()
            fresh.append(a.get())

    b, _ = manager(fake, clock, store=store, sleep=meanwhile)
    b.get()
    clock.advance(100)  # expired for everyone
    assert holder.acquire()
    assert b.get() == fresh[0]
    assert fake.count(STABLE) == 2  # b's first token and a's refresh: b did not fetch again


@pytest.mark.parametrize("background", [False, True])
def test_an_entry_expires_at_its_expiry_instant(fake, clock, background):
    tm, _ = manager(fake, clock)
    tm.background = background  # a running refresher does not make an expired token acceptable
    first = tm.get()
    clock.advance(100)
    assert tm.get() != first
    assert fake.count(STABLE) == 2


def test_refresh_takes_a_token_another_process_fetched_while_it_backed_off(fake, clock):
    store = SharedStore(SimpleCache())
    other, _ = manager(fake, clock, store=store)
    theirs = []

    def meanwhile(seconds):
        clock.advance(seconds)
        if not theirs:
            theirs.append(other.refresh().value)

    tm, _ = manager(fake, clock, store=store, sleep=meanwhile)
    old = tm.get()
    fake.fail_next(1, -1, paths=(STABLE,))
    assert tm.refresh().value == theirs[0] != old
    # ours: first + failed; theirs: same token back + forced; then no fetch of ours again
    assert fake.count(STABLE) == 4


def test_a_flushed_cache_at_the_refresh_instant_fetches(fake, clock):
    cache = SimpleCache()
    tm, _ = manager(fake, clock, store=SharedStore(cache), stable=False)
    token = tm.get()
    cache.clear()
    clock.advance(98)  # the local copy is due now: fetch rather than put it back
    assert tm.get() != token
    assert fake.count(TOKEN) == 2


def test_refresh_forces_a_new_token(fake, clock):
    tm, _ = manager(fake, clock, stable=False)
    assert tm.refresh().value  # nothing cached yet
    assert fake.count(TOKEN) == 1
    old = tm.get()
    new = tm.refresh()
    assert new.value != old and tm.get() == new.value
    assert fake.count(TOKEN) == 2  # a classic fetch is new already: no second, forced one


def test_refresh_retries_until_it_has_a_new_token(fake, clock):
    tm, _ = manager(fake, clock)
    old = tm.get()
    fake.fail_next(1, -1, paths=(STABLE,))
    assert tm.refresh().value != old  # the old, still valid token is not an answer
    forced = [r.json.get("force_refresh", False) for r in fake.calls(STABLE)]
    assert forced == [False, False, False, True]  # first, failed, same token back, forced


def test_the_fetcher_is_asked_without_force_first(fake, clock):
    asked = []

    def wrap(fetch):
        def recording(force):
            asked.append(force)
            return fetch(force)

        return recording

    tm, _ = manager(fake, clock, wrap=wrap)
    old = tm.get()
    tm.invalidate(old)
    assert asked == [False, False, True]
    assert all(type(f) is bool for f in asked)


def test_a_signal_reports_each_new_token_once(clock):
    sender = object()
    seen = []

    def on_refresh(sent_by, **kw):
        seen.append((sent_by, kw))

    with (
        FakeWeChat(token_lifetime=100, stable_rotate_window=5, clock=clock) as fake,
        signals.token_refreshed.connected_to(on_refresh),
    ):
        tm, _ = manager(fake, clock, sender=sender, margin=0.1)
        t0 = clock()
        token = tm.get()
        clock.advance(91)
        tm.get()  # stable endpoint: the same token again, nothing new to report
    assert seen == [
        (
            sender,
            {
                "kind": "access_token",
                "masked": mask(token),
                "expires_at": t0 + 100,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            },
        )
    ]


def test_entry_repr_masks_the_token(fake, clock):
    tm, _ = manager(fake, clock)
    token = tm.get()
    entry = tm.peek()
    assert (
        repr(entry)
        == f"<TokenEntry {mask(token)} expires_at={clock() + 100:.0f} by {entry.host}:{entry.pid}>"
    )
    assert token not in repr(entry)


def test_fatal_cool_down_blocks_early_refresh_until_it_ends(clock):
    with FakeWeChat(token_lifetime=1000, clock=clock) as fake:
        tm, _ = manager(fake, clock, margin=0.5)
        first = tm.get()
        clock.advance(500)  # due, valid for 500 s more
        fake.fail_next(1, 40164, paths=(STABLE,))
        assert tm.get() == first  # refused: the valid token is still the answer
        clock.advance(299.5)
        assert tm.get() == first  # cooling down: WeChat is not asked
        assert fake.count(STABLE) == 2
        clock.advance(0.5)  # exactly 300 s after the refusal
        assert tm.get() != first
        assert fake.count(STABLE) == 3


def test_tick_during_a_backoff_does_not_fetch(fake, clock):
    tm, _ = manager(fake, clock, margin=0.1)
    first = tm.get()
    clock.advance(91)
    fake.fail_next(1, -1, paths=(STABLE,))
    assert tm.get() == first
    assert tm.tick() == 0.5
    assert fake.count(STABLE) == 2


def test_tick_at_the_expiry_instant_fetches_with_retries(fake, clock):
    tm, _ = manager(fake, clock, margin=0.1)
    first = tm.get()
    clock.advance(100)  # expired this very instant
    fake.fail_next(1, -1, paths=(STABLE,))
    assert tm.tick() == 90  # failed once, waited 0.5 s, refreshed
    assert tm.get() != first
    assert fake.count(STABLE) == 3


def test_tick_after_the_fatal_cool_down_fetches(fake, clock):
    tm, _ = manager(fake, clock)
    fake.fail_next(1, 40164, paths=(STABLE,))
    assert tm.tick() == 300
    clock.advance(300)
    assert tm.tick() == 98
    assert fake.count(STABLE) == 2


@pytest.mark.parametrize("start", [0.0, 1_700_000_000.0])
def test_the_first_cache_warning_is_logged_whatever_the_clock(start, caplog, tmp_path):
    clock = FakeClock(start)
    with FakeWeChat(token_lifetime=100, clock=clock) as fake:
        dead = SharedStore(resolve_cache(f"redis://127.0.0.1:{free_port()}/0", str(tmp_path)))
        tm, _ = manager(fake, clock, store=dead)
        caplog.set_level(logging.WARNING, "wxmp.token")
        tm.get()
        assert tm.cache_ok is False
        log = token_log(caplog)
        assert len(log) == 1
        assert log[0].startswith("access_token: ") and log[0].endswith(
            "; using this process's copy until it is back"
        )
