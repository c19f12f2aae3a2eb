"""TokenManager over real HTTP against FakeWeChat, driven by a fake clock shared by both."""

from __future__ import annotations

import logging

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


def manager(fake, clock, *, stable=True, store=None, secret=None, fetch=True, **kw):
    client = ApiClient(fake.url, timeout=1.0)
    store = store or SharedStore(SimpleCache())

    def fetcher(force):
        return client.fetch_access_token(fake.appid, secret or fake.secret, stable=stable, force=force)

    tm = TokenManager(
        "access_token",
        fetcher if fetch else None,
        store,
        appid=fake.appid,
        clock=clock,
        sleep=clock.sleep,
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
        with pytest.raises(exc):
            tm.get()
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


def test_timeout_is_a_network_error_and_backs_off(clock):
    with FakeWeChat(token_lifetime=100) as fake:
        tm, client = manager(fake, clock)
        client.timeout = 0.3
        fake.hang_next(1, 5, paths=(STABLE,))
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
    failures = 0
    for _ in range(50):
        for client in (client_a, client_b):
            try:
                user_info(client)
            except (TokenInvalidError, TokenUnavailableError):
                failures += 1
    assert fake.count(TOKEN) <= 3
    assert failures > 0  # the price of an outage on the classic endpoint, documented
    clock.advance(26)  # a quarter lifetime later, one more fetch each is allowed
    user_info(client_a)
    assert fake.count(TOKEN) <= 5


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
