"""The async API client: ``acct.aio``, the same API groups awaited on httpx.

::

    acct = Account(appid="wx...", secret="...", cache="redis://localhost:6379/0")
    info = await acct.aio.user.get(openid)
    async for openid in acct.aio.user.iter_followers():
        ...

There is no second copy of the helpers: ``acct.aio.user`` is the same
:class:`~wxmp.api.user.UserAPI` class as ``acct.user``, built on :class:`AsyncApiClient`. Every helper
describes its requests (:class:`~wxmp.client.Call`, plans and streams, see :mod:`wxmp.api._base`);
this client performs them with httpx and returns awaitables (async iterators for the ``iter_*``
helpers). Errors are the same typed exceptions, with the same single replay on an invalid token.

The token is the account's own :class:`~wxmp.token.TokenManager` on the shared store, with its
cross-process lock, so async and sync workers of one fleet share one token. The manager is
synchronous (a fetch, a lock wait): it runs in a thread, except for the Redis fast path, which
reads a token that is not yet due without leaving the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import weakref
from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING, Any

from .client import ApiClient, Blocking, Call, Plan, R, Step, _decode, _Http, _RedactFilter, _Token
from .errors import ConfigError, NetworkError

if TYPE_CHECKING:
    import httpx

    from .account import Account
    from .token import TokenManager

__all__ = ["AsyncAccount", "AsyncApiClient"]

# httpx logs every request's URL at INFO; ours carry the token in the query.
logging.getLogger("httpx").addFilter(_RedactFilter())

_CLIENTS: weakref.WeakSet[AsyncApiClient] = weakref.WeakSet()


def _after_fork() -> None:
    for client in list(_CLIENTS):
        client._http_clients = weakref.WeakKeyDictionary()
        client._redis_clients = weakref.WeakKeyDictionary()


os.register_at_fork(after_in_child=_after_fork)


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise ConfigError(
            "WXMP_API_BASE", "the async client needs httpx: pip install 'flask-wxmp[async]'"
        ) from None
    return httpx


class AsyncApiClient(ApiClient):
    """:class:`~wxmp.client.ApiClient` whose calls are coroutines, on one httpx pool per event loop."""

    def __init__(self, base: str, **kwargs: Any) -> None:
        super().__init__(base, **kwargs)
        self._http_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._redis_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        _CLIENTS.add(self)

    def __repr__(self) -> str:
        return f"<AsyncApiClient {self.base}>"

    def _http(self) -> httpx.AsyncClient:
        # An httpx pool belongs to the loop that opened its connections (asyncio.run makes a new one).
        loop = asyncio.get_running_loop()
        client = self._http_clients.get(loop)
        if client is None:
            httpx = _httpx()
            client = httpx.AsyncClient(
                headers={"User-Agent": self.user_agent},
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
            self._http_clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close this event loop's connections (httpx pool, Redis)."""
        loop = asyncio.get_running_loop()
        client = self._http_clients.pop(loop, None)
        if client is not None:
            await client.aclose()
        redis = self._redis_clients.pop(loop, None)
        if redis is not None:
            await redis.aclose()

    # -- the same plans, awaited ----------------------------------------------------------------

    async def call(self, call: Call) -> Any:  # type: ignore[override]
        return await self.drive(self._exchange(call))

    async def drive(self, plan: Plan[R]) -> R:  # type: ignore[override]
        value: Any = None
        error: Exception | None = None
        while True:
            try:
                step = plan.throw(error) if error is not None else plan.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            try:
                value = await self._astep(step)
            except Exception as exc:
                error = exc

    async def stream(self, plan: Generator[Any, Any, None]) -> AsyncIterator[Any]:  # type: ignore[override]
        value: Any = None
        error: Exception | None = None
        while True:
            try:
                step = plan.throw(error) if error is not None else plan.send(value)
            except StopIteration:
                return
            value, error = None, None
            if not isinstance(step, Step):
                yield step
                continue
            try:
                value = await self._astep(step)
            except Exception as exc:
                error = exc

    async def _astep(self, step: Any) -> Any:
        if isinstance(step, _Http):
            return await self._send(step)
        if isinstance(step, _Token):
            return await self._atoken()
        if isinstance(step, Call):
            return await self.call(step)
        if isinstance(step, Blocking):
            return await asyncio.to_thread(step.fn)
        raise TypeError(f"a plan yielded {type(step).__name__}, not a Call or Blocking step")

    def fetch_access_token(self, appid: str, secret: str, *, stable: bool, force: bool) -> tuple[str, int]:
        raise TypeError("tokens are fetched by the account's TokenManager on the sync client")

    # -- I/O ------------------------------------------------------------------------------------

    async def _send(self, step: _Http) -> Any:
        method, path, params, payload, data, files, token, binary, base = step
        url, query, body, headers = self._prepare(path, params, payload, data, token, base)
        httpx = _httpx()
        content = body if isinstance(body, bytes) else None
        form = None if isinstance(body, bytes) else body
        try:
            response = await self._http().request(
                method,
                url,
                params=query,
                content=content,
                data=form,
                files=files,
                headers=headers,
                timeout=self.timeout,
            )
        except httpx.TimeoutException:
            raise NetworkError(path, f"timed out after {self.timeout}s") from None
        except httpx.HTTPError as exc:
            raise NetworkError(path, f"connection failed ({type(exc).__name__})") from None
        return _decode(response, path, binary)

    async def _atoken(self) -> str | None:
        manager = self.token
        if manager is None:
            return None
        value = await self._cached_token(manager)
        if value is not None:
            return value
        return await asyncio.to_thread(manager.get)

    async def _cached_token(self, manager: TokenManager) -> str | None:
        """The Redis fast path: a token that is not yet due, read without a thread (else None).

        Anything unusual (another backend, a refresher-less process near ``refresh_at``, a Redis
        error, an entry it cannot read) returns None and the TokenManager decides, in a thread.
        """
        store = manager.store
        if store.backend != "redis":
            return None
        try:
            redis = self._redis(store.cache)
            raw = await redis.get(_redis_key(store, manager.key))
        except Exception:
            return None
        entry = _entry_from_redis(raw)
        if entry is None or manager.clock() >= entry.refresh_at:
            return None
        return entry.value

    def _redis(self, cache: Any) -> Any:
        loop = asyncio.get_running_loop()
        client = self._redis_clients.get(loop)
        if client is None:
            client = self._redis_clients[loop] = _async_redis(cache._read_client)
        return client


def _async_redis(sync: Any) -> Any:
    """A redis.asyncio client to the server (and database, credentials, timeouts) of a sync one."""
    import redis.asyncio

    pool = sync.connection_pool
    accepted = inspect.signature(redis.asyncio.Redis.__init__).parameters
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k in accepted}
    if "path" in pool.connection_kwargs:
        kwargs["unix_socket_path"] = pool.connection_kwargs["path"]
    if "SSL" in pool.connection_class.__name__:
        kwargs["ssl"] = True
    return redis.asyncio.Redis(**kwargs)


def _redis_key(store: Any, name: str) -> str:
    return str(store.key(name))  # the raw key the store's Redis backend uses (no cachelib prefix)


def _entry_from_redis(raw: bytes | None) -> Any:
    """Decode a token entry read straight from Redis, exactly as ``SharedStore.get`` does.

    Plain JSON only (never unpickled): anything else is a miss, and the thread path then reads it
    through the store (which logs a foreign value once).
    """
    from .token import TokenEntry

    if raw is None:
        return None
    try:
        return TokenEntry.from_cache(json.loads(raw))
    except ValueError:
        return None


class AsyncAccount:
    """The async side of an :class:`~wxmp.account.Account` (``acct.aio``): its API groups, awaited.

    ``await acct.aio.user.get(openid)``, ``async for o in acct.aio.user.iter_followers()``.
    Same settings, same shared token (same store, same lock) as the account. Close the
    connections of the running loop with ``await acct.aio.aclose()`` (e.g. at shutdown).
    """

    def __init__(self, account: Account) -> None:
        self.account = account
        sync = account.client
        self.client = AsyncApiClient(
            sync.base, timeout=sync.timeout, token=sync.token, sender=sync.sender, user_agent=sync.user_agent
        )
        self._groups: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<AsyncAccount {self.account.name!r} appid={self.account.settings.appid!r}>"

    def group(self, name: str) -> Any:
        """The resource group ``name`` on the async client (the same class as ``account.group(name)``)."""
        group = self._groups.get(name)
        if group is None:
            cls = type(self.account.group(name))
            group = self._groups.setdefault(name, cls(self.account, client=self.client))
        return group

    def __getattr__(self, name: str) -> Any:
        # acct.aio.user, acct.aio.menu...: every group in wxmp.account.GROUPS, new ones included.
        from .api import GROUPS

        if name in GROUPS:
            return self.group(name)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        from .api import GROUPS

        return sorted({*super().__dir__(), *GROUPS})

    async def token(self) -> str:
        """A valid access_token from the shared store (fetched, under the fleet's lock, when due)."""
        value = await self.client._atoken()
        if value is None:
            raise ConfigError("WXMP_APPID", "the account has no AppID, so it has no access_token")
        return value

    async def get_callback_ip(self) -> list[str]:
        """The IPs WeChat pushes callbacks from: ``GET /cgi-bin/getcallbackip``."""
        return await self.group("misc").get_callback_ip()  # type: ignore[no-any-return]

    async def clear_quota(self) -> dict[str, Any]:
        """Reset the account's daily API quotas (10 times a month): ``POST /cgi-bin/clear_quota``."""
        return await self.group("misc").clear_quota()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close the connections this account opened on the running event loop."""
        await self.client.aclose()
