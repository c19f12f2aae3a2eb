"""Account: one official account, usable anywhere (a script, a Celery task, Django, FastAPI, Flask).

An :class:`Account` wires everything one 公众号 needs and nothing of a web framework::

    from wxmp import Account

    acct = Account(appid="wx...", secret="...", cache="redis://localhost:6379/0")
    acct.user.get(openid)                 # API groups on the fleet's shared access_token
    acct.mass.send_text("hi", tag_id=2)

    @acct.on("text")                      # handlers and the callback, as a plain WSGI app
    def echo(msg):
        return msg.content
    application = acct.callback

Settings take the names of the ``WXMP_*`` keys in lower case (``appid``, ``secret``, ``token``,
``aes_key``, ``cache``...) or a mapping of ``WXMP_*`` keys, validated the same way. Accounts
configured with the same appid and cache share one token, whatever process or framework they run
in: the cache keys are namespaced by appid only. The refresher thread is opt-in
(:meth:`Account.start_refresher`): a script gets no thread it did not ask for.

The Flask extension (:class:`wxmp.WxMP`) is a thin adapter that builds accounts from ``app.config``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .api import GROUPS
from .cache import SharedStore, resolve_cache
from .client import ApiClient
from .config import Settings
from .context import _current, current_account
from .dispatch import Router
from .refresher import Refresher
from .session import session_scope
from .token import Fetcher, TokenManager

if TYPE_CHECKING:
    from cachelib import BaseCache

    from .aio import AsyncAccount
    from .api.datacube import DatacubeAPI
    from .api.draft import DraftAPI
    from .api.freepublish import FreePublishAPI
    from .api.jssdk import JSSDKAPI
    from .api.kf import KfAPI
    from .api.mass import MassAPI
    from .api.media import MediaAPI
    from .api.menu import MenuAPI
    from .api.message import MessageAPI
    from .api.misc import MiscAPI
    from .api.notice import NoticeAPI
    from .api.oauth import OAuthAPI
    from .api.qrcode import QRCodeAPI
    from .api.tag import TagAPI
    from .api.template import TemplateAPI
    from .api.user import UserAPI
    from .asgi import AsgiCallback
    from .middleware import Callback

__all__ = ["GROUPS", "Account", "GroupAccess", "current_account", "default_cache_dir"]

F = TypeVar("F", bound=Callable[..., Any])


def default_cache_dir() -> str:
    """Where an :class:`Account` without ``cache`` keeps its filesystem cache.

    ``$XDG_CACHE_HOME/wxmp`` (``~/.cache/wxmp``): shared by every process of this user on this
    host. A Flask app's default is its instance folder instead; pass the same ``cache`` to share.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "wxmp")


def _manager(
    kind: str,
    fetch: Fetcher | None,
    settings: Settings,
    store: SharedStore,
    sender: object,
    exclusive: bool = False,
) -> TokenManager:
    return TokenManager(
        kind,
        fetch,
        store,
        appid=settings.appid or "-",
        margin=settings.refresh_margin,
        exclusive=exclusive,
        lock_ttl=2 * settings.timeout + 1,
        wait=2 * settings.timeout + 2,
        external_wait=settings.external_wait,
        sender=sender,
        no_fetch_reason=_no_fetch_reason(settings),
    )


def _no_fetch_reason(settings: Settings) -> str | None:
    """What is actually missing when this process may not fetch tokens (None: it may, or external)."""
    if settings.can_fetch or settings.refresher == "external":
        return None
    if not settings.appid:
        return "WXMP_APPID is not set, so no token can be fetched"
    return (
        "WXMP_SECRET is not set, so this process cannot fetch one: set WXMP_SECRET, or let a process that "
        "has it (e.g. `flask wxmp refresher`) keep the token in the same WXMP_CACHE"
    )


class Shortcuts:
    """``@x.text``, ``@x.click(key="K")``, ``@x.default``...: sugar over ``x.router`` (see Router)."""

    @property
    def router(self) -> Router:
        raise NotImplementedError

    text = property(lambda self: self.router.text)
    image = property(lambda self: self.router.image)
    voice = property(lambda self: self.router.voice)
    video = property(lambda self: self.router.video)
    location = property(lambda self: self.router.location)
    link = property(lambda self: self.router.link)
    event = property(lambda self: self.router.event)
    subscribe = property(lambda self: self.router.subscribe)
    unsubscribe = property(lambda self: self.router.unsubscribe)
    click = property(lambda self: self.router.click)
    scan = property(lambda self: self.router.scan)
    location_event = property(lambda self: self.router.location_event)
    default = property(lambda self: self.router.default)


class GroupAccess:
    """The API groups as typed attributes (``x.menu``, ``x.user``...), for anything with ``group(name)``."""

    def group(self, name: str) -> Any:
        raise NotImplementedError

    @property
    def user(self) -> UserAPI:
        return self.group("user")

    @property
    def menu(self) -> MenuAPI:
        return self.group("menu")

    @property
    def message(self) -> MessageAPI:
        return self.group("message")

    @property
    def tag(self) -> TagAPI:
        return self.group("tag")

    @property
    def mass(self) -> MassAPI:
        return self.group("mass")

    @property
    def template(self) -> TemplateAPI:
        return self.group("template")

    @property
    def media(self) -> MediaAPI:
        return self.group("media")

    @property
    def qrcode(self) -> QRCodeAPI:
        return self.group("qrcode")

    @property
    def jssdk(self) -> JSSDKAPI:
        return self.group("jssdk")

    @property
    def oauth(self) -> OAuthAPI:
        return self.group("oauth")

    @property
    def misc(self) -> MiscAPI:
        return self.group("misc")

    @property
    def draft(self) -> DraftAPI:
        return self.group("draft")

    @property
    def freepublish(self) -> FreePublishAPI:
        return self.group("freepublish")

    @property
    def notice(self) -> NoticeAPI:
        return self.group("notice")

    @property
    def kf(self) -> KfAPI:
        return self.group("kf")

    @property
    def datacube(self) -> DatacubeAPI:
        return self.group("datacube")

    def get_callback_ip(self) -> list[str]:
        """The IPs WeChat pushes callbacks from: ``GET /cgi-bin/getcallbackip``."""
        return self.misc.get_callback_ip()

    def clear_quota(self) -> dict[str, Any]:
        """Reset the account's daily API quotas (10 times a month): ``POST /cgi-bin/clear_quota``."""
        return self.misc.clear_quota()


class Account(GroupAccess, Shortcuts):
    """One official account: settings, shared store, tokens, API groups, router and callback.

    ``Account(appid=..., secret=..., token=..., aes_key=..., cache=...)`` or
    ``Account({"WXMP_APPID": ...})``. ``name`` labels it among several (``WXMP_ACCOUNTS``).
    ``router`` shares a handler registry; ``sender`` is the sender of wxmp's signals (the account
    itself by default; the Flask extension passes itself). ``cache_dir`` is the filesystem
    cache's folder when ``cache`` is not given (default: :func:`default_cache_dir`).
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        /,
        *,
        name: str = "default",
        router: Router | None = None,
        sender: object | None = None,
        cache_dir: str | None = None,
        **settings: Any,
    ) -> None:
        resolved = Settings.from_mapping(config or {}, settings)
        cache = resolve_cache(resolved.cache, cache_dir or default_cache_dir())
        self._setup(name, resolved, cache, router, sender)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        cache: BaseCache,
        *,
        name: str = "default",
        router: Router | None = None,
        sender: object | None = None,
    ) -> Account:
        """An account from already-validated settings and a resolved cache (the adapters use this)."""
        acct = cls.__new__(cls)
        acct._setup(name, settings, cache, router, sender)
        return acct

    def _setup(
        self,
        name: str,
        settings: Settings,
        cache: BaseCache,
        router: Router | None,
        sender: object | None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.sender = sender if sender is not None else self
        self.store = SharedStore(cache, namespace=settings.namespace)
        self.client = ApiClient(settings.api_base, timeout=settings.timeout, sender=self.sender)
        self._router = router if router is not None else Router()
        #: Entered around every handler (the Flask adapter sets ``app.app_context``).
        self.handler_context: Callable[[], contextlib.AbstractContextManager[Any]] | None = None
        self.refresher: Refresher | None = None
        self._own_refresher = False
        self._callback: Callback | None = None
        self._aio: AsyncAccount | None = None
        self._asgi: AsgiCallback | None = None
        self._groups: dict[str, Any] = {}
        self._lock = threading.Lock()
        fetch: Fetcher | None = None
        if settings.can_fetch:
            appid, secret, stable = settings.appid, settings.secret, settings.stable_token
            assert appid and secret
            client = self.client

            def fetch(force: bool) -> tuple[str, int]:
                return client.fetch_access_token(appid, secret, stable=stable, force=force)

        self.access_token = _manager(
            "access_token", fetch, settings, self.store, self.sender, exclusive=not settings.stable_token
        )
        self.client.token = self.access_token if settings.appid else None
        self.tokens: dict[str, TokenManager] = {"access_token": self.access_token}

    def __repr__(self) -> str:
        return f"<Account {self.name!r} appid={self.settings.appid!r} {self.store.backend}>"

    # -- tokens -------------------------------------------------------------------------------

    def token_manager(self, kind: str, fetch: Fetcher | None) -> TokenManager:
        """The TokenManager of ``kind`` on the shared cache (the jsapi_ticket uses this)."""
        with self._lock:
            manager = self.tokens.get(kind)
            if manager is None:
                manager = self.tokens[kind] = _manager(
                    kind, fetch if self.settings.can_fetch else None, self.settings, self.store, self.sender
                )
                if self.refresher is not None:
                    self.refresher.add(manager)
            return manager

    def start_refresher(self, refresher: Refresher | None = None) -> Refresher:
        """Keep this account's tokens fresh from a background thread (fork-safe).

        With ``refresher``, join that thread (one thread serves many accounts) without starting
        it; otherwise start a thread of this account's own. Only a process holding the secret
        fetches; in external mode nothing is fetched here.
        """
        with self._lock:
            if self.refresher is None:
                if refresher is None:
                    refresher = Refresher([])
                    self._own_refresher = True
                self.refresher = refresher
                for manager in self.tokens.values():
                    refresher.add(manager)
            current = self.refresher
        if self._own_refresher:
            current.start()
        return current

    def stop(self) -> None:
        """Stop this account's own refresher thread (a shared one is stopped by its owner)."""
        if self.refresher is not None and self._own_refresher:
            self.refresher.stop()

    # -- handlers and the callback ------------------------------------------------------------

    @property
    def router(self) -> Router:
        """This account's handler registry."""
        return self._router

    def on(self, kind: str | None = None, **kwargs: Any) -> Callable[[F], F]:
        """Register a handler on this account: ``@acct.on("text")``, ``@acct.on("click", key="K")``."""
        return self.router.on(kind, **kwargs)

    @property
    def callback(self) -> Callback:
        """This account's callback endpoint: a WSGI app, or middleware via ``.wrap(other_app)``."""
        if self._callback is None:
            from .errors import ConfigError

            settings = self.settings
            if not settings.token:
                raise ConfigError("WXMP_TOKEN", "is required for the callback")
            with self._lock:
                if self._callback is None:
                    self._callback = self.make_callback(
                        settings.token, settings.aes_key, store=self.store.for_messages()
                    )
        return self._callback

    def make_callback(self, token: str, aes_key: str | None, *, store: SharedStore | None = None) -> Callback:
        """A callback with this account's handlers, scope, settings and slow-handler runner, signed
        with ``token`` (and ``aes_key``): :attr:`callback` uses the account's own; the sandbox its own."""
        from .middleware import Callback
        from .slow import SlowRunner

        settings = self.settings
        callback = Callback(
            token,
            aes_key,
            settings.appid,
            path=settings.callback_path,
            router=self.router,
            store=store,
            dedup=settings.dedup,
            dedup_ttl=settings.dedup_ttl,
            timestamp_window=settings.timestamp_window,
            max_body=settings.max_body,
            context=self._handler_scope,
            sender=self.sender,
            allow_plaintext=settings.allow_plaintext,
        )
        callback.slow = SlowRunner(callback, account=self)  # wxmp.slow
        return callback

    @property
    def asgi(self) -> AsgiCallback:
        """This account's callback as an ASGI app (``app.mount("/wechat", acct.asgi)``, or uvicorn)."""
        if self._asgi is None:
            from .asgi import AsgiCallback

            self.callback  # noqa: B018 (built first: it takes the same lock)
            with self._lock:
                if self._asgi is None:
                    self._asgi = AsgiCallback(self)
        return self._asgi

    @property
    def aio(self) -> AsyncAccount:
        """The async API client on this account's shared token: ``await acct.aio.user.get(openid)``."""
        if self._aio is None:
            from .aio import AsyncAccount

            with self._lock:
                if self._aio is None:
                    self._aio = AsyncAccount(self)
        return self._aio

    def _handler_scope(self) -> _HandlerScope:
        """Around each handler: this account is current (``msg.account``), plus the adapter's context."""
        return _HandlerScope(self)

    # -- API groups ---------------------------------------------------------------------------

    def group(self, name: str) -> Any:
        """The resource group ``name`` (``"menu"``, ``"user"``...), created on first use."""
        group = self._groups.get(name)
        if group is None:
            module, cls = GROUPS[name]
            group = self._groups.setdefault(name, getattr(importlib.import_module(module), cls)(self))
        return group


class _HandlerScope:
    """What :meth:`Account._handler_scope` enters: the current account, the sessions, the adapter's
    context (Flask's app context), left in the reverse order. A class rather than nested
    generator-based context managers: it wraps every handler call."""

    __slots__ = ("_account", "_inner", "_session", "_token")

    def __init__(self, account: Account) -> None:
        self._account = account

    def __enter__(self) -> None:
        account = self._account
        self._token = _current.set(account)
        try:
            session = self._session = session_scope(account)
            session.__enter__()
            try:
                factory = account.handler_context
                inner = self._inner = factory() if factory is not None else None
                if inner is not None:
                    inner.__enter__()
            except BaseException:
                session.__exit__(*sys.exc_info())
                raise
        except BaseException:
            _current.reset(self._token)
            raise

    def __exit__(self, *exc: Any) -> None:
        try:
            try:
                if self._inner is not None:
                    self._inner.__exit__(*exc)
            finally:
                self._session.__exit__(*exc)
        finally:
            _current.reset(self._token)
