"""The async client (acct.aio) against FakeWeChat: typed errors, one replay, the shared token."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import itertools
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wxmp import Account, NetworkError, signals
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
from wxmp.testing.clock import FakeClock
from wxmp.testing.servers import ServerProcess, free_port

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


# -- on the wire: a loopback server that notes each request's connection and headers ---------------


@dataclass(frozen=True)
class Seen:
    conn: int  # which TCP connection (numbered as the server accepted them)
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Recorder:
    """An HTTP/1.1 (keep-alive) server answering ``{"errcode": 0}`` and noting every request.

    ``hold_until = n`` keeps each request waiting until n requests have arrived in all, so that
    a test can make the client open that many connections at once; ``linger`` holds them a while
    longer, or until request n + 1 arrives (to see whether the client sends more at once).
    """

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.hold_until = 0
        self.linger = 0.0  # then hold them this long more, unless yet another request comes
        self.most_at_once = 0  # the most requests the server held at one moment
        self._arrived = 0
        self._in_flight = 0
        self._cond = threading.Condition()
        self._conns = itertools.count(1)
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.conn = next(recorder._conns)

            def do_GET(self) -> None:
                recorder._answer(self)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 256  # a hundred connections at once are accepted without a retry

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _answer(self, h: Any) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        seen = Seen(
            h.conn, h.command, h.path.split("?")[0], {k.lower(): v for k, v in h.headers.items()}, body
        )
        with self._cond:
            self.requests.append(seen)
            self._arrived += 1
            self._in_flight += 1
            self.most_at_once = max(self.most_at_once, self._in_flight)
            self._cond.notify_all()
            assert self._cond.wait_for(lambda: self._arrived >= self.hold_until, timeout=30)
            if self.linger:
                self._cond.wait_for(lambda: self._arrived > self.hold_until, timeout=self.linger)
            self._in_flight -= 1  # before answering: the client cannot send again before that
        answer = b'{"errcode":0}'
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(answer)))
        h.end_headers()
        h.wfile.write(answer)

    def connections(self) -> int:
        return len({r.conn for r in self.requests})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.close()


def test_custom_calls_go_out_as_described(recorder):
    # An account without an AppID has no token: its calls go out with auth=False only.
    acct = Account(api_base=recorder.url + "/api", cache="simple")
    acct.client.user_agent = "bot/2"  # the async client takes the sync one's settings

    async def main():
        await acct.aio.client.post("/json", {"名": "值"}, auth=False)
        await acct.aio.client.request("POST", "/form", data={"k": "v w"}, auth=False)
        await acct.aio.client.request(
            "GET", "/x", params={"a": "1"}, auth=False, base=recorder.url + "/other"
        )
        await acct.aio.aclose()

    with warnings.catch_warnings():
        # no deprecated httpx usage (data=<bytes>) on the way; only deprecations: a ResourceWarning
        # from an earlier test's garbage collected here must not fail this one
        warnings.simplefilter("error", DeprecationWarning)
        asyncio.run(main())
    json_post, form_post, elsewhere = recorder.requests
    assert (json_post.method, json_post.path, json_post.body) == ("POST", "/api/json", '{"名":"值"}'.encode())
    assert json_post.headers["content-type"] == "application/json; charset=utf-8"
    assert (form_post.path, form_post.body) == ("/api/form", b"k=v+w")
    assert form_post.headers["content-type"] == "application/x-www-form-urlencoded"
    assert (elsewhere.method, elsewhere.path) == ("GET", "/other/x")
    assert {r.headers["user-agent"] for r in recorder.requests} == {"bot/2"}
    assert recorder.connections() == 1  # one pool for the loop: the connection is reused


def test_the_pool_keeps_twenty_idle_connections(recorder):
    client = AsyncApiClient(recorder.url)

    async def main():
        for round_end in (21, 42):
            recorder.hold_until = round_end  # 21 requests at once: 21 connections
            await asyncio.gather(*(client.get("/ping", auth=False) for _ in range(21)))
        await client.aclose()

    asyncio.run(main())
    # the second round found 20 connections kept alive and opened one
    assert recorder.connections() == 22


def test_the_pool_sends_at_most_a_hundred_requests_at_once(recorder):
    client = AsyncApiClient(recorder.url)
    # The first hundred are held until all are in, and then for half a second, in which a client
    # without the cap would send the 101st (the cap holds it back: the test never waits on time
    # for its verdict, only for a chance to see a request too many).
    recorder.hold_until, recorder.linger = 100, 0.5

    async def main():
        await asyncio.gather(*(client.get("/ping", auth=False) for _ in range(101)))
        await client.aclose()

    asyncio.run(main())
    assert len(recorder.requests) == 101 and recorder.most_at_once == 100


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_http_connection(recorder):
    client = AsyncApiClient(recorder.url)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(client.get("/parent", auth=False))  # a pooled connection for this loop
        pid = os.fork()
        if pid == 0:  # the child, on the same loop object: it must not write on the parent's socket
            code = 1
            try:
                loop.run_until_complete(client.get("/child", auth=False))
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        loop.run_until_complete(client.aclose())
    finally:
        loop.close()
    conn = {r.path: r.conn for r in recorder.requests}
    assert conn["/child"] != conn["/parent"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_reads_the_token_from_redis_on_its_own_connection(fake, redis_url):
    acct = account(fake, cache=redis_url)
    manager = acct.access_token
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(acct.aio.user.get("o1"))  # fetched (in a thread)
        loop.run_until_complete(acct.aio.user.get("o1"))  # read from Redis on the loop
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report how often it needed the TokenManager
            try:
                calls = []
                original = manager.get
                manager.get = lambda: calls.append(1) or original()  # type: ignore[method-assign]
                loop.run_until_complete(acct.aio.user.get("o1"))
                os.write(write_end, str(len(calls)).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        try:
            answer = os.read(read_end, 16)
        finally:
            os.close(read_end)
            os.waitpid(pid, 0)
        loop.run_until_complete(acct.aio.aclose())
    finally:
        loop.close()
    assert answer == b"0"  # the child's fast path works: a Redis client of its own


def test_aclose_closes_what_the_loop_opened(fake, redis_url):
    import redis

    acct = account(fake, cache=redis_url)
    server = redis.Redis.from_url(redis_url)

    def accepted() -> int:
        return int(server.info("stats")["total_connections_received"])

    async def main():
        await acct.aio.aclose()  # nothing opened on this loop yet: nothing to close
        await acct.aio.user.get("o1")
        await acct.aio.user.get("o1")
        before = accepted()
        for _ in range(5):
            await acct.aio.user.get("o1")  # the fast path: the loop's one Redis connection
        assert accepted() == before
        pool = acct.aio.client._http()
        clients = len(server.client_list())
        await acct.aio.aclose()
        return pool, clients

    pool, clients = asyncio.run(main())
    assert pool.is_closed
    end = time.monotonic() + 30  # Redis notes the closed connection on its next turn
    while len(server.client_list()) != clients - 1 and time.monotonic() < end:
        threading.Event().wait(0.01)
    assert len(server.client_list()) == clients - 1


def test_the_token_is_due_at_refresh_at_on_the_fast_path_too(fake, redis_url):
    acct = account(fake, cache=redis_url)
    manager = acct.access_token
    calls = []
    original = manager.get
    manager.get = lambda: calls.append(1) or original()  # type: ignore[method-assign]

    async def main():
        await acct.aio.user.get("o1")
        await acct.aio.user.get("o1")
        assert len(calls) == 1  # fetched once, then read from Redis
        entry = manager.peek()
        assert entry is not None
        manager.clock = FakeClock(entry.refresh_at)  # exactly due: the manager decides
        await acct.aio.user.get("o1")
        assert len(calls) == 2
        await acct.aio.aclose()

    asyncio.run(main())


def require(program: str) -> None:
    """Skip without ``program``; under .ci/run (WXMP_REQUIRE_SERVICES=1) fail instead."""
    if shutil.which(program) is None:
        if os.environ.get("WXMP_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{program} is not installed and WXMP_REQUIRE_SERVICES=1")
        pytest.skip(f"{program} is not on PATH")


@contextlib.contextmanager
def private_redis(tmp_path: Path, *options: str, port: int | None = None) -> Iterator[None]:
    """A redis-server of the test's own (a unix socket, TLS), ready when its TCP port answers."""
    require("redis-server")
    port = port or free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    server = ServerProcess("redis-server", port, [*argv, *options], "redis")
    server.start()
    try:
        yield
    finally:
        server.stop()


def fast_path_reads(acct: Account) -> int:
    """How many of ten calls needed the TokenManager (1: the fetch; the rest read Redis on the loop)."""
    manager = acct.access_token
    calls = []
    original = manager.get
    manager.get = lambda: calls.append(1) or original()  # type: ignore[method-assign]

    async def main():
        try:
            for _ in range(10):
                assert (await acct.aio.user.get("o1"))["openid"] == "o1"
        finally:
            await acct.aio.aclose()

    asyncio.run(main())
    return len(calls)


def test_the_redis_fast_path_over_a_unix_socket(fake, tmp_path):
    sock = tmp_path / "redis.sock"
    with private_redis(tmp_path, "--port", str(port := free_port()), "--unixsocket", str(sock), port=port):
        assert fast_path_reads(account(fake, cache=f"unix://{sock}?db=0")) == 1


def test_the_redis_fast_path_over_tls(fake, tmp_path):
    require("openssl")  # for a throw-away certificate
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subject = ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject],
        check=True,
        capture_output=True,
    )
    port = free_port()
    tls = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    tls += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
    with private_redis(tmp_path, *tls, port=port):
        url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none"
        assert fast_path_reads(account(fake, cache=url)) == 1


# -- the account's async side ----------------------------------------------------------------------


def test_binary_answers_and_form_fields(fake):
    acct = account(fake)
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 32

    async def main():
        try:
            media_id = (await acct.aio.media.upload("image", png, filename="a.png"))["media_id"]
            assert await acct.aio.media.get(media_id) == png  # bytes, not JSON
            # a permanent video's title travels as the "description" form field
            video = await acct.aio.media.add("video", b"\0" * 64, "Title", "Intro", filename="v.mp4")
            return video["media_id"]
        finally:
            await acct.aio.aclose()

    video_id = asyncio.run(main())
    assert acct.media.get_material(video_id)["title"] == "Title"


def test_errors_name_the_path(fake):
    acct = account(fake, timeout=0.3)

    async def main():
        try:
            await acct.aio.user.get("o1")
            fake.http_error_next(1, 502, paths=(INFO,))
            with pytest.raises(NetworkError) as bad_gateway:
                await acct.aio.user.get("o1")
            fake.hang_next(1, 3, paths=(INFO,))
            with pytest.raises(NetworkError) as hung:
                await acct.aio.user.get("o1")
            return bad_gateway.value, hung.value
        finally:
            await acct.aio.aclose()

    bad_gateway, hung = asyncio.run(main())
    assert (bad_gateway.path, str(bad_gateway)) == (INFO, f"{INFO}: HTTP 502")
    assert (hung.path, str(hung)) == (INFO, f"{INFO}: timed out after 0.3s")
    closed = AsyncApiClient(f"http://127.0.0.1:{free_port()}", timeout=0.5)

    async def refused():
        try:
            await closed.get("/cgi-bin/ping", auth=False)
        finally:
            await closed.aclose()

    with pytest.raises(NetworkError) as info:
        asyncio.run(refused())
    assert (info.value.path, str(info.value)) == (
        "/cgi-bin/ping",
        "/cgi-bin/ping: connection failed (ConnectError)",
    )


def test_a_failing_page_ends_a_stream_with_its_typed_error(fake):
    acct = account(fake)

    async def main():
        try:
            fake.fail_next(1, -1, paths=("/cgi-bin/user/get",))
            return [o async for o in acct.aio.user.iter_followers()]
        finally:
            await acct.aio.aclose()

    with pytest.raises(SystemBusyError):
        asyncio.run(main())


def test_api_errors_are_signalled_by_the_account(fake):
    acct = account(fake)
    got = []

    def receiver(sender, **kw):
        got.append(kw)

    signals.api_error.connect(receiver, sender=acct, weak=False)

    async def main():
        try:
            with pytest.raises(InvalidOpenIDError):
                await acct.aio.user.get("nobody")
        finally:
            await acct.aio.aclose()

    try:
        asyncio.run(main())
    finally:
        signals.api_error.disconnect(receiver)
    assert [(e["errcode"], e["path"]) for e in got] == [(40003, INFO)]


def test_the_token_the_callback_ips_and_the_quota(fake):
    acct = account(fake)

    async def main():
        try:
            return await acct.aio.token(), await acct.aio.get_callback_ip(), await acct.aio.clear_quota()
        finally:
            await acct.aio.aclose()

    token, ips, cleared = asyncio.run(main())
    assert token == acct.access_token.get()
    assert ips == acct.get_callback_ip() and ips
    assert cleared == {"errcode": 0, "errmsg": "ok"} and fake.state["clear_quota_used"] == 1
    assert fake.count("/cgi-bin/getcallbackip") == 2


def test_an_account_without_an_appid_has_no_token():
    acct = Account(token="cbonly", cache="simple")
    with pytest.raises(ConfigError) as info:
        asyncio.run(acct.aio.token())
    assert str(info.value) == "WXMP_APPID: the account has no AppID, so it has no access_token"


def test_the_groups_are_attributes_and_nothing_else():
    acct = Account(token="cbonly", cache="simple")
    names = dir(acct.aio)
    assert {"user", "menu", "media", "token", "aclose"} <= set(names) and names == sorted(names)
    assert acct.aio.user is acct.aio.user
    with pytest.raises(AttributeError) as info:
        acct.aio.nope  # noqa: B018
    assert str(info.value) == "'AsyncAccount' has no attribute 'nope'"


def test_plans_and_steps_refused_by_name(fake):
    client = AsyncApiClient(fake.url)

    def bad():
        yield "not a step"

    with pytest.raises(TypeError) as info:
        asyncio.run(client.drive(bad()))
    assert str(info.value) == "a plan yielded str, not a Call or Blocking step"
    with pytest.raises(TypeError) as info:
        client.fetch_access_token("a", "b", stable=True, force=False)
    assert str(info.value) == "tokens are fetched by the account's TokenManager on the sync client"
