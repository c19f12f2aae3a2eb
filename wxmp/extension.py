"""WxMP: the Flask extension that wires the shared token, the API helpers and the callback."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app

from .cache import SharedStore, resolve_cache
from .client import ApiClient
from .config import Settings
from .refresher import Refresher
from .token import Fetcher, TokenManager

if TYPE_CHECKING:
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
    from .dispatch import Router
    from .middleware import Callback

__all__ = ["AppState", "WxMP"]

F = TypeVar("F", bound=Callable[..., Any])

#: attribute -> (module, class) of each resource group, imported on first use.
_GROUPS: dict[str, tuple[str, str]] = {
    "user": ("wxmp.api.user", "UserAPI"),
    "menu": ("wxmp.api.menu", "MenuAPI"),
    "message": ("wxmp.api.message", "MessageAPI"),
    "tag": ("wxmp.api.tag", "TagAPI"),
    "mass": ("wxmp.api.mass", "MassAPI"),
    "template": ("wxmp.api.template", "TemplateAPI"),
    "media": ("wxmp.api.media", "MediaAPI"),
    "qrcode": ("wxmp.api.qrcode", "QRCodeAPI"),
    "jssdk": ("wxmp.api.jssdk", "JSSDKAPI"),
    "oauth": ("wxmp.api.oauth", "OAuthAPI"),
    "misc": ("wxmp.api.misc", "MiscAPI"),
    "draft": ("wxmp.api.draft", "DraftAPI"),
    "freepublish": ("wxmp.api.freepublish", "FreePublishAPI"),
    "notice": ("wxmp.api.notice", "NoticeAPI"),
    "kf": ("wxmp.api.kf", "KfAPI"),
    "datacube": ("wxmp.api.datacube", "DatacubeAPI"),
}


@dataclass(eq=False)
class AppState:
    """Everything WxMP keeps for one Flask app (``WxMP.state()`` returns it)."""

    settings: Settings
    store: SharedStore
    client: ApiClient
    access_token: TokenManager
    refresher: Refresher | None
    sender: WxMP
    callback: Callback | None = None
    groups: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, TokenManager] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def group(self, name: str) -> Any:
        """The resource group ``name`` (``"menu"``, ``"user"``...), created on first use."""
        group = self.groups.get(name)
        if group is None:
            module, cls = _GROUPS[name]
            group = self.groups.setdefault(name, getattr(importlib.import_module(module), cls)(self))
        return group

    def token_manager(self, kind: str, fetch: Fetcher | None) -> TokenManager:
        """A TokenManager for ``kind`` on the shared cache (the jsapi_ticket uses this)."""
        with self.lock:
            manager = self.tokens.get(kind)
            if manager is None:
                manager = self.tokens[kind] = _manager(
                    kind, fetch if self.settings.can_fetch else None, self.settings, self.store, self.sender
                )
                if self.refresher is not None:
                    self.refresher.add(manager)
            return manager


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
    )


class WxMP:
    """The WeChat Official Account extension.

    ``WxMP(app)`` or ``wx = WxMP(); wx.init_app(app)``. Configuration comes from ``app.config``
    (keyword arguments such as ``WxMP(app, appid=...)`` override it):

    ============================ ==========================================================
    ``WXMP_APPID``               the account's AppID (``wx`` + 16 characters)
    ``WXMP_SECRET``              the AppSecret; without it no token is fetched here
    ``WXMP_TOKEN``               the server-config Token for callback signatures
    ``WXMP_AES_KEY``             the 43-character EncodingAESKey (compatible and safe modes)
    ``WXMP_API_BASE``            ``https://api.weixin.qq.com`` (tests: a FakeWeChat's url)
    ``WXMP_CACHE``               cachelib cache, ``filesystem:PATH``, ``redis://...``,
                                 ``memcached://host:port`` or ``simple``; default: a
                                 filesystem cache in the instance folder
    ``WXMP_CALLBACK_PATH``       ``/wechat``
    ``WXMP_STABLE_TOKEN``        True: ``/cgi-bin/stable_token``; False: classic ``/cgi-bin/token``
    ``WXMP_REFRESHER``           ``"thread"`` (default with a secret), ``"external"``, or False
    ``WXMP_REFRESH_MARGIN``      fraction of the lifetime refreshed ahead of expiry (0.02)
    ``WXMP_TIMEOUT``             HTTP timeout to WeChat in seconds (5)
    ``WXMP_EXTERNAL_WAIT``       seconds an external-mode worker waits for a token (5)
    ``WXMP_TIMESTAMP_WINDOW``    callback timestamps older or newer than this are refused (300)
    ``WXMP_MAX_BODY``            callback body cap in bytes (1 MiB)
    ``WXMP_DEDUP``               deduplicate WeChat's retries on the shared cache (True)
    ``WXMP_DEDUP_TTL``           how long a message id is remembered (300)
    ``WXMP_SANDBOX``             serve the sandbox chat page on a local fake WeChat API (default:
                                 on only for a debug/testing app without a secret)
    ``WXMP_STATUS``              serve /wxmp/status (off); ``WXMP_STATUS_CHECK`` guards it
    ============================ ==========================================================
    """

    def __init__(self, app: Flask | None = None, **overrides: Any) -> None:
        self._app = app
        self._overrides = overrides
        self._states: dict[Flask, AppState] = {}
        self._router: Router | None = None
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        apps = ", ".join(a.name for a in self._states)
        return f"<WxMP [{apps}]>"

    # -- set-up -------------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Read and validate the config, start the refresher, install the callback on ``app``."""
        if "wxmp" in app.extensions:
            raise RuntimeError(
                "A WxMP instance is already registered on this app. Call init_app once per app; "
                "reach the existing one with app.extensions['wxmp']."
            )
        settings = Settings.from_mapping(app.config, self._overrides, development=app.debug or app.testing)
        if settings.sandbox:
            from .sandbox import prepare

            settings = prepare(app, settings)  # a local FakeWeChat answers every API call
        settings.store_defaults(app.config)
        cache = resolve_cache(settings.cache, os.path.join(app.instance_path, "wxmp-cache"))
        store = SharedStore(cache, namespace=f"wxmp:{settings.appid or '-'}")
        client = ApiClient(settings.api_base, timeout=settings.timeout, sender=self)
        fetch: Fetcher | None = None
        if settings.can_fetch:
            appid, secret, stable = settings.appid, settings.secret, settings.stable_token
            assert appid and secret

            def fetch(force: bool) -> tuple[str, int]:
                return client.fetch_access_token(appid, secret, stable=stable, force=force)

        access = _manager("access_token", fetch, settings, store, self, exclusive=not settings.stable_token)
        client.token = access if settings.appid else None
        refresher = Refresher([access]) if settings.refresher == "thread" else None
        state = AppState(settings, store, client, access, refresher, self)
        state.tokens["access_token"] = access
        self._states[app] = state
        app.extensions["wxmp"] = self

        if settings.token is not None:
            from .middleware import install

            state.callback = install(
                app, router=self.router, settings=settings, store=store.for_messages(), sender=self
            )
        _register_extras(app, state)
        if refresher is not None:
            refresher.start()

    def stop(self) -> None:
        """Stop the refresher threads (and sandbox fakes) of every app this extension serves."""
        for app, state in self._states.items():
            if state.refresher is not None:
                state.refresher.stop()
            sandbox = app.extensions.get("wxmp.sandbox")
            if sandbox is not None:
                sandbox.stop()

    def state(self, app: Flask | None = None) -> AppState:
        """The per-app state: ``app``, the app given to the constructor, or ``current_app``."""
        if app is None:
            app = self._app if self._app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            return self._states[app]
        except KeyError:
            raise RuntimeError(f"WxMP is not initialised on app {app.name!r}: call wx.init_app(app)")

    @property
    def settings(self) -> Settings:
        return self.state().settings

    @property
    def client(self) -> ApiClient:
        return self.state().client

    # -- the token ----------------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        """A valid access_token from the shared cache (fetched if this process may fetch)."""
        return self.state().access_token.get()

    # -- handlers -----------------------------------------------------------------------------

    @property
    def router(self) -> Router:
        """The handler registry shared by every app this extension serves."""
        if self._router is None:
            from .dispatch import Router

            self._router = Router()
        return self._router

    def on(self, kind: str | None = None, **kwargs: Any) -> Callable[[F], F]:
        """Register a handler: ``@wx.on("text")``, ``@wx.on("click", key="K")``, ``@wx.on()``."""
        return self.router.on(kind, **kwargs)

    # Sugar over ``on``: ``@wx.text``, ``@wx.click(key="K")``, ``@wx.default``... (see Router).
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

    # -- API groups ---------------------------------------------------------------------------

    @property
    def user(self) -> UserAPI:
        return self.state().group("user")

    @property
    def menu(self) -> MenuAPI:
        return self.state().group("menu")

    @property
    def message(self) -> MessageAPI:
        return self.state().group("message")

    @property
    def tag(self) -> TagAPI:
        return self.state().group("tag")

    @property
    def mass(self) -> MassAPI:
        return self.state().group("mass")

    @property
    def template(self) -> TemplateAPI:
        return self.state().group("template")

    @property
    def media(self) -> MediaAPI:
        return self.state().group("media")

    @property
    def qrcode(self) -> QRCodeAPI:
        return self.state().group("qrcode")

    @property
    def jssdk(self) -> JSSDKAPI:
        return self.state().group("jssdk")

    @property
    def oauth(self) -> OAuthAPI:
        return self.state().group("oauth")

    @property
    def misc(self) -> MiscAPI:
        return self.state().group("misc")

    @property
    def draft(self) -> DraftAPI:
        return self.state().group("draft")

    @property
    def freepublish(self) -> FreePublishAPI:
        return self.state().group("freepublish")

    @property
    def notice(self) -> NoticeAPI:
        return self.state().group("notice")

    @property
    def kf(self) -> KfAPI:
        return self.state().group("kf")

    @property
    def datacube(self) -> DatacubeAPI:
        return self.state().group("datacube")

    def get_callback_ip(self) -> list[str]:
        """The IPs WeChat pushes callbacks from: ``GET /cgi-bin/getcallbackip``."""
        return self.misc.get_callback_ip()

    def clear_quota(self) -> dict[str, Any]:
        """Reset the account's daily API quotas (10 times a month): ``POST /cgi-bin/clear_quota``."""
        return self.misc.clear_quota()


def _register_extras(app: Flask, state: AppState) -> None:
    """The CLI group and, when enabled, the sandbox and status blueprints."""
    from .cli import wxmp_cli

    if "wxmp" not in app.cli.commands:
        app.cli.add_command(wxmp_cli)
    if state.settings.sandbox or state.settings.status:
        from .sandbox import register

        register(app, state)
