"""The async client (acct.aio) against FakeWeChat: typed errors, one replay, the shared token."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import pytest

from wxmp import Account, NetworkError
from wxmp.aio import AsyncApiClient
from wxmp.client import Call
from wxmp.errors import (
    ConfigError,
    InvalidOpenIDError,
    QuotaExceededError,
    SystemBusyError,
    TokenInvalidError,
)
from wxmp.testing import FakeWeChat
from wxmp.testing.servers import free_port

INFO = "/cgi-bin/user/info"
TOKEN_PATHS = ("/cgi-bin/token", "/cgi-bin/stable_token")


@pytest.fixture
def fake():
    with FakeWeChat() as fake:
        fake.add_user("o1", nickname="Ada")
        yield fake


def account(fake: FakeWeChat, **settings: Any) -> Account:
    settings.setdefault("cache", "simple")
    return Account(appid=fake.appid, secret=fake.secret, api_base=fake.url, **settings)


def run(coro_fn):
    async def main():
        try:
            return await coro_fn()
        finally:
            for acct in list(_opened):
                await acct.aio.aclose()

    _opened.clear()
    return asyncio.run(main())


_opened: list[Account] = []


def test_calls_and_typed_errors(fake):
    acct = account(fake)
    _opened.append(acct)

    async def main():
        assert (await acct.aio.user.get("o1"))["nickname"] == "Ada"
        with pytest.raises(InvalidOpenIDError) as info:
            await acct.aio.user.get("nobody")
        assert (info.value.errcode, info.value.path) == (40003, INFO)
        fake.fail_next(1, 45009, paths=(INFO,))
        with pytest.raises(QuotaExceededError):
            await acct.aio.user.get("o1")
        fake.fail_next(1, -1, paths=(INFO,))
        with pytest.raises(SystemBusyError):
            await acct.aio.user.get("o1")

    run(main)


def test_http_errors_and_timeouts_are_network_errors(fake):
    acct = account(fake, timeout=0.3)
    _opened.append(acct)

    async def main():
        await acct.aio.user.get("o1")  # token in hand
        fake.http_error_next(1, 502, paths=(INFO,))
        with pytest.raises(NetworkError) as info:
            await acct.aio.user.get("o1")
        assert info.value.status == 502
        fake.hang_next(1, 3, paths=(INFO,))
        with pytest.raises(NetworkError, match="timed out"):
            await acct.aio.user.get("o1")

    run(main)


def test_connection_errors_and_logs_do_not_leak_the_token(caplog):
    caplog.set_level(logging.DEBUG)
    client = AsyncApiClient(f"http://127.0.0.1:{free_port()}", timeout=0.5)

    async def main():
        try:
            await client.get("/cgi-bin/token", {"secret": "TOPSECRET", "access_token": "TOKENVALUE"})
        finally:
            await client.aclose()

    with pytest.raises(NetworkError) as info:
        asyncio.run(main())
    text = repr(info.value) + str(info.value) + "".join(r.getMessage() for r in caplog.records)
    assert "TOPSECRET" not in text and "TOKENVALUE" not in text
    assert info.value.__suppress_context__


def test_httpx_request_lines_are_redacted(fake, caplog):
    caplog.set_level(logging.INFO, "httpx")
    acct = account(fake)
    _opened.append(acct)

    async def main():
        await acct.aio.user.get("o1")
        return await acct.aio.token()

    token = run(main)
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any(INFO in line and "access_token=***" in line for line in lines), lines
    assert not any(token in line or fake.secret in line for line in lines)


def test_token_invalid_is_replayed_once(fake):
    acct = account(fake)
    _opened.append(acct)

    async def main():
        await acct.aio.user.get("o1")
        fetches = fake.count("/cgi-bin/stable_token")
        calls = fake.count(INFO)
        fake.revoke_tokens()  # someone else forced a refresh: our cached token is dead
        assert (await acct.aio.user.get("o1"))["openid"] == "o1"
        assert fake.count(INFO) == calls + 2  # the rejected call and its one replay
        assert fake.count("/cgi-bin/stable_token") == fetches + 1
        # WeChat keeps refusing: one replay, then the typed error, no loop
        calls = fake.count(INFO)
        fake.fail_next(5, 40001, paths=(INFO,))
        with pytest.raises(TokenInvalidError):
            await acct.aio.user.get("o1")
        assert fake.count(INFO) == calls + 2
        fake.clear_faults()

    run(main)


def test_sync_and_async_share_one_token(fake, tmp_path):
    cache = f"filesystem:{tmp_path}"
    sync = account(fake, cache=cache)
    other = account(fake, cache=cache)  # another "process" on the same store
    _opened.append(other)
    sync.user.get("o1")

    async def main():
        await other.aio.user.get("o1")
        await other.aio.user.get_batch(["o1"])

    run(main)
    assert fake.tokens_issued == 1
    tokens = {r.token for r in fake.requests if r.path.startswith("/cgi-bin/user/")}
    assert len(tokens) == 1


def test_streams_and_plans_across_event_loops(fake):
    acct = account(fake)
    for i in range(3):
        fake.add_user(f"x{i}")

    async def collect():
        try:
            return [o async for o in acct.aio.user.iter_followers()]
        finally:
            await acct.aio.aclose()

    # A new loop each time (asyncio.run): the client opens a pool per loop.
    assert asyncio.run(collect()) == asyncio.run(collect()) == list(acct.user.iter_followers())


def test_a_plan_yielding_something_else_is_a_type_error(fake):
    client = AsyncApiClient(fake.url)

    def bad():
        yield "not a step"

    with pytest.raises(TypeError, match="not a Call"):
        asyncio.run(client.drive(bad()))
    assert isinstance(Call("GET", "/x"), Call)


def test_redis_fast_path_reads_the_token_without_the_manager(fake, redis_url):
    acct = account(fake, cache=redis_url)
    _opened.append(acct)
    manager = acct.access_token
    calls = {"get": 0}
    original = manager.get

    def counting_get() -> str:
        calls["get"] += 1
        return original()

    manager.get = counting_get  # type: ignore[method-assign]

    async def main():
        for _ in range(10):
            await acct.aio.user.get("o1")
        assert calls["get"] == 1  # the first call fetched; the rest read Redis on the loop
        # Due for a refresh: the manager decides (and refreshes), in a thread.
        entry = manager.peek()
        assert entry is not None
        acct.store.set(manager.key, {**entry.__dict__, "refresh_at": 0.0}, ttl=60)
        await acct.aio.user.get("o1")
        assert calls["get"] == 2

    run(main)
    assert fake.count(INFO) == 11


def test_sync_only_client_pieces_refuse_clearly(fake):
    client = AsyncApiClient(fake.url)
    with pytest.raises(TypeError, match="TokenManager"):
        client.fetch_access_token("a", "b", stable=True, force=False)


def test_without_httpx_the_error_names_the_extra_to_install(fake, monkeypatch):
    acct = account(fake)
    monkeypatch.setitem(sys.modules, "httpx", None)  # import httpx raises ImportError

    async def main():
        await acct.aio.user.get("o1")

    with pytest.raises(ConfigError) as info:
        asyncio.run(main())
    # the distribution is flask-wxmp: "pip install wxmp[...]" would fetch somebody else's package
    assert str(info.value) == "WXMP_API_BASE: the async client needs httpx: pip install 'flask-wxmp[async]'"
