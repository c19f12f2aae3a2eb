"""WxMP: the Flask adapter over :class:`~wxmp.account.Account`.

It reads ``app.config``, builds the app's account(s), mounts their callbacks in front of
``app.wsgi_app`` (handlers run inside an app context), starts one refresher thread for all of
them, and adds the ``flask wxmp`` CLI, the sandbox and the status page. Everything else lives in
the framework-free core.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app

from .account import Account, GroupAccess, Shortcuts, current_account
from .cache import resolve_cache
from .config import DEFAULTS, Settings
from .dispatch import Router
from .errors import ConfigError
from .refresher import Refresher

if TYPE_CHECKING:
    from cachelib import BaseCache

    from .cache import SharedStore
    from .client import ApiClient
    from .middleware import Callback
    from .token import Fetcher, TokenManager

__all__ = ["AppState", "WxMP"]

log = logging.getLogger("wxmp")

F = TypeVar("F", bound=Callable[..., Any])

#: The name of the account the single-account ``WXMP_*`` keys describe.
DEFAULT = "default"
#: Keys each account of ``WXMP_ACCOUNTS`` sets for itself; every other ``WXMP_*`` key is inherited.
PER_ACCOUNT = ("WXMP_APPID", "WXMP_SECRET", "WXMP_TOKEN", "WXMP_AES_KEY", "WXMP_CALLBACK_PATH")


@dataclass(eq=False)
class AppState:
    """What WxMP keeps for one Flask app: its accounts, the default one, and the refresher.

    The attributes of the default account (``settings``, ``store``, ``client``, ``access_token``,
    ``callback``...) are available here directly for the CLI, the sandbox and the status page.
    """

    accounts: dict[str, Account]
    default: Account
    refresher: Refresher | None
    sender: WxMP
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.default.settings

    @property
    def store(self) -> SharedStore:
        return self.default.store

    @property
    def client(self) -> ApiClient:
        return self.default.client

    @property
    def access_token(self) -> TokenManager:
        return self.default.access_token

    @property
    def tokens(self) -> dict[str, TokenManager]:
        return self.default.tokens

    @property
    def callback(self) -> Callback | None:
        return self.default._callback

    def group(self, name: str) -> Any:
        return self.default.group(name)

    def token_manager(self, kind: str, fetch: Fetcher | None) -> TokenManager:
        return self.default.token_manager(kind, fetch)

    def account(self, name: str | None = None) -> Account:
        """The account ``name`` (the default one for None), or a ConfigError listing the names."""
        if name is None:
            return self.default
        try:
            return self.accounts[name]
        except KeyError:
            known = ", ".join(sorted(self.accounts))
            raise ConfigError("WXMP_ACCOUNTS", f"no account named {name!r} (configured: {known})") from None


class WxMP(GroupAccess, Shortcuts):
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
    ``WXMP_ACCOUNTS``            more accounts: ``{"shop": {"appid": ..., "token": ...}}``; each
                                 gets its own callback path (``/wechat/<name>``), token keys,
                                 router and API groups, and inherits the other keys
    ============================ ==========================================================
    """

    def __init__(self, app: Flask | None = None, **overrides: Any) -> None:
        self._app = app
        self._overrides = overrides
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        self._routers: dict[str, Router] = {}
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        apps = ", ".join(a.name for a in self._apps)
        return f"<WxMP [{apps}]>"

    # -- set-up -------------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Read and validate the config, build the accounts, install their callbacks, start the refresher.

        A second ``init_app`` on the same app raises RuntimeError (by this or another WxMP).
        """
        if "wxmp" in app.extensions:
            raise RuntimeError(
                "A WxMP instance is already registered on this app. Call init_app once per app; "
                "reach the existing one with app.extensions['wxmp']."
            )
        development = app.debug or app.testing
        settings = Settings.from_mapping(app.config, self._overrides, development=development)
        named = _named_accounts(app.config, self._overrides)
        single = settings.appid is not None or settings.token is not None or not named
        extra = {
            name: _account_settings(app.config, self._overrides, name, mapping, development, settings.sandbox)
            for name, mapping in named.items()
        }
        if settings.sandbox:
            from .sandbox import prepare

            # Each sandboxed account gets its own local FakeWeChat (the page lets you pick one).
            if single:
                settings = prepare(app, settings, DEFAULT)
            extra = {name: prepare(app, own, name) if own.sandbox else own for name, own in extra.items()}
        settings.store_defaults(app.config)
        default_dir = os.path.join(app.instance_path, "wxmp-cache")
        caches: dict[int, BaseCache] = {}

        def cache_for(spec: Any) -> BaseCache:
            # Accounts configured with the same cache share one client / folder.
            key = id(spec) if not isinstance(spec, (str, type(None))) else hash(spec)
            if key not in caches:
                caches[key] = resolve_cache(spec, default_dir)
            return caches[key]

        accounts: dict[str, Account] = {}
        if single:
            router = self.router_for(DEFAULT)
            accounts[DEFAULT] = Account.from_settings(
                settings, cache_for(settings.cache), name=DEFAULT, router=router, sender=self
            )
        for name, own in extra.items():
            if not accounts:
                self._adopt_default(name)  # the first named account is the default one
            if name in accounts:
                raise ConfigError("WXMP_ACCOUNTS", f"{name!r} is the single-account keys' name: pick another")
            accounts[name] = Account.from_settings(
                own, cache_for(own.cache), name=name, router=self.router_for(name), sender=self
            )
        default = next(iter(accounts.values()))

        paths: dict[str, str] = {}
        for name, acct in accounts.items():
            acct.handler_context = app.app_context  # handlers (and the sandbox's) see current_app
            if acct.settings.token is None:
                app.wsgi_app = _CallbackOff(acct, app.wsgi_app)  # type: ignore[method-assign]
                continue
            path = acct.settings.callback_path
            if path in paths:
                raise ConfigError(
                    "WXMP_ACCOUNTS", f"accounts {paths[path]!r} and {name!r} share the callback path {path}"
                )
            paths[path] = name
            app.wsgi_app = acct.callback.wrap(app.wsgi_app)  # type: ignore[method-assign]

        threaded = [a for a in accounts.values() if a.settings.refresher == "thread"]
        refresher = Refresher([]) if threaded else None
        for acct in threaded:
            acct.start_refresher(refresher)
        state = AppState(accounts, default, refresher, self)
        app.extensions["wxmp"] = self
        app.extensions["wxmp.state"] = state
        self._apps.add(app)
        _register_extras(app, state)
        if refresher is not None:
            refresher.start()
            # A discarded app must not leave its thread running (the state dies with the app).
            weakref.finalize(app, refresher.stop, 1.0)

    def stop(self) -> None:
        """Stop the refresher threads (and sandbox fakes) of every app this extension serves."""
        for app in list(self._apps):
            state = app.extensions.get("wxmp.state")
            if state is not None and state.refresher is not None:
                state.refresher.stop()
            for sandbox in app.extensions.get("wxmp.sandboxes", {}).values():
                sandbox.stop()

    def state(self, app: Flask | None = None) -> AppState:
        """The per-app state: ``app``, the app given to the constructor, or ``current_app``."""
        if app is None:
            app = self._app if self._app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        state = app.extensions.get("wxmp.state")
        if state is None or app.extensions.get("wxmp") is not self:
            raise RuntimeError(f"WxMP is not initialised on app {app.name!r}: call wx.init_app(app)")
        return state  # type: ignore[no-any-return]

    @property
    def accounts(self) -> Mapping[str, Account]:
        """The current app's accounts by name (``"default"`` for the single-account keys)."""
        return self.state().accounts

    def account(self, name: str | None = None) -> Account:
        """The account that is handling a message, else ``name``, else the app's default account."""
        if name is not None:
            return self.state().account(name)
        acct = current_account()
        if acct is not None and acct.sender is self:
            return acct
        return self.state().default

    @property
    def settings(self) -> Settings:
        return self.account().settings

    @property
    def client(self) -> ApiClient:
        return self.account().client

    # -- the token ----------------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        """A valid access_token from the shared cache (fetched if this process may fetch)."""
        return self.account().access_token.get()

    # -- handlers -----------------------------------------------------------------------------

    def router_for(self, account: str) -> Router:
        """The handler registry of the account named ``account`` (shared by every app)."""
        router = self._routers.get(account)
        if router is None:
            router = self._routers.setdefault(account, Router())
        return router

    @property
    def router(self) -> Router:
        """The default account's handler registry."""
        return self.router_for(DEFAULT)

    def _adopt_default(self, name: str) -> None:
        """Make ``name``'s router the default one (handlers registered without ``account=``)."""
        default = self.router_for(DEFAULT)
        own = self._routers.get(name)
        if own is not None and own is not default:
            default.routes.extend(own.routes)
            default._table.clear()
        self._routers[name] = default

    def on(self, kind: str | None = None, *, account: str | None = None, **kwargs: Any) -> Callable[[F], F]:
        """Register a handler: ``@wx.on("text")``, ``@wx.on("click", key="K")``, ``@wx.on()``.

        ``account="shop"`` registers it for that account of ``WXMP_ACCOUNTS`` only.
        """
        router = self.router if account is None else self.router_for(account)
        return router.on(kind, **kwargs)

    # -- API groups: the handling account's inside a handler, else the default account's --------

    def group(self, name: str) -> Any:
        return self.account().group(name)


class _CallbackOff:
    """Where an account without ``WXMP_TOKEN`` would have its callback: say why nothing answers.

    Only once handlers are registered (an app may serve that path itself and never use wxmp's
    callback); the first such request logs a warning.
    """

    def __init__(self, account: Account, app: Callable[..., Any]) -> None:
        self.account = account
        self.app = app
        self.path = account.settings.callback_path
        self.warned = False
        if account.router.routes:
            log.warning(_OFF, self.path, account.name)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != self.path or not self.account.router.routes:
            return self.app(environ, start_response)
        if not self.warned:
            self.warned = True
            log.warning(_OFF, self.path, self.account.name)
        body = f"wxmp: the callback at {self.path} is off because WXMP_TOKEN is not set\n".encode()
        start_response(
            "404 Not Found",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]


_OFF = "wxmp: handlers are registered but WXMP_TOKEN is not set: the callback at %s (account %r) is off"


def _named_accounts(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    value = overrides.get("accounts", overrides.get("WXMP_ACCOUNTS", config.get("WXMP_ACCOUNTS")))
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ConfigError("WXMP_ACCOUNTS", 'maps names to settings: {"shop": {"appid": ..., "token": ...}}')
    for name in value:
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError("WXMP_ACCOUNTS", f"account names are letters, digits, - and _: {name!r}")
    return dict(value)


def _account_settings(
    config: Mapping[str, Any],
    overrides: Mapping[str, Any],
    name: str,
    mapping: Mapping[str, Any],
    development: bool,
    sandbox: bool = False,
) -> Settings:
    """One ``WXMP_ACCOUNTS`` entry: its own keys over the app's shared (non-credential) keys.

    In a sandboxed app an account without a secret of its own is sandboxed too.
    """
    shared = {k: config[k] for k in DEFAULTS if k in config and k not in PER_ACCOUNT}
    for key, value in overrides.items():
        full = key if key.startswith("WXMP_") else "WXMP_" + key.upper()
        if full in DEFAULTS and full not in PER_ACCOUNT:
            shared[full] = value
    has_secret = bool(mapping.get("secret") or mapping.get("WXMP_SECRET"))
    own: dict[str, Any] = {
        "WXMP_CALLBACK_PATH": f"/wechat/{name}",
        "WXMP_SANDBOX": sandbox and not has_secret,
    }
    for key, value in mapping.items():
        full = key if key.startswith("WXMP_") else "WXMP_" + key.upper()
        if full not in DEFAULTS:
            raise ConfigError(f"WXMP_ACCOUNTS[{name!r}]", f"unknown setting {key!r}")
        own[full] = value
    try:
        return Settings.from_mapping({**shared, **own}, development=development)
    except ConfigError as exc:
        raise ConfigError(f"WXMP_ACCOUNTS[{name!r}].{exc.key}", exc.problem) from None


def _register_extras(app: Flask, state: AppState) -> None:
    """The CLI group and, when enabled, the sandbox and status blueprints."""
    from .cli import wxmp_cli

    if "wxmp" not in app.cli.commands:
        app.cli.add_command(wxmp_cli)
    if state.settings.sandbox or state.settings.status:
        from .sandbox import register

        register(app, state)
