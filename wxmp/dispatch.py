"""The router: ``@router.on(kind, **filters)`` registrations, first match wins.

Kinds are case-insensitive: a ``MsgType`` (``"text"``, ``"image"``, ``"location"``...) or an event
name (``"subscribe"``, ``"click"``, ``"scan"``...). Every event also answers to ``"event"``, and the
``LOCATION`` event is ``"location_event"`` because ``"location"`` is the location message.
``on()`` without a kind matches everything.

Handlers are tried in registration order and the first whose kind and filters accept the message
runs; so register specific handlers before general ones and the catch-all last. Nothing matching
means ``None``, which the callback answers with ``success``.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from . import filters as _filters
from .messages import Message

__all__ = ["Handler", "Route", "Router"]

Handler = Callable[[Any], Any]
F = TypeVar("F", bound=Handler)


@dataclass(frozen=True)
class Route:
    """One registration: the kind (None = any), the combined filter and the handler.

    ``slow`` is None for an ordinary handler, else the strategy of a slow one (see :mod:`wxmp.slow`):
    ``"default"`` (the account's ``WXMP_SLOW_STRATEGY``), ``"auto"``, ``"customer_service"``, ``"retries"``.
    """

    kind: str | None
    check: _filters.Filter | None
    handler: Handler
    slow: str | None = None


class Router:
    """Holds handler registrations and picks the one for a message.

    The per-kind candidate lists are computed once per set of kinds, so dispatch costs a dict
    lookup plus the filters of the candidates.
    """

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._table: dict[tuple[str, ...], tuple[Route, ...]] = {}
        self._has_slow = False

    def __repr__(self) -> str:
        return f"<Router {len(self.routes)} handlers>"

    def on(
        self,
        kind: str | None = None,
        *,
        match: str | re.Pattern[str] | None = None,
        when: Callable[[Message], Any] | None = None,
        slow: bool | str = False,
        **filters: Any,
    ) -> Callable[[F], F]:
        """Register the decorated function for ``kind`` messages passing every filter.

        ``match`` is a regex searched in the text content (``msg.match`` holds the match);
        ``when`` is any filter callable (see :mod:`wxmp.filters`); other keywords compare message
        attributes (``key=`` is ``event_key``). ``slow=True`` (or a strategy name) marks a handler
        that may take longer than WeChat's 5 s (see :mod:`wxmp.slow`). Returns the function unchanged.
        """
        if kind is not None and not isinstance(kind, str):
            raise TypeError("kind must be a message type or event name (use @on() for a catch-all)")
        parts: list[_filters.Filter] = []
        if match is not None:
            parts.append(_filters.regex(match))
        parts.extend(_filters.field(name, value) for name, value in filters.items())
        if when is not None:
            parts.append(_filters.where(when))
        check: _filters.Filter | None = None
        for part in parts:
            check = part if check is None else check & part
        route_kind = kind.lower() if kind is not None else None
        slow_mode = _slow_mode(slow)

        def register(func: F) -> F:
            if not callable(func):
                raise TypeError("a handler must be callable")
            self.routes.append(Route(route_kind, check, func, slow_mode))
            self._has_slow = self._has_slow or slow_mode is not None
            self._table.clear()
            return func

        return register

    def _candidates(self, kinds: tuple[str, ...]) -> tuple[Route, ...]:
        found = self._table.get(kinds)
        if found is None:
            found = tuple(r for r in self.routes if r.kind is None or r.kind in kinds)
            self._table[kinds] = found
        return found

    @property
    def has_slow(self) -> bool:
        """True when a slow handler is registered (the callback then asks :mod:`wxmp.slow` first)."""
        return self._has_slow

    def find(self, msg: Message) -> tuple[Route, Message] | None:
        """The route for ``msg`` and the message to give its handler (with ``match`` set), or None."""
        for route in self._candidates(msg.kinds):
            check = route.check
            if check is None:
                return route, msg
            result = check(msg)
            if result:
                if isinstance(result, re.Match):
                    msg = replace(msg, match=result)
                return route, msg
        return None

    def resolve(self, msg: Message) -> tuple[Handler, Message] | None:
        """The handler for ``msg`` and the message to give it (with ``match`` set), or None."""
        found = self.find(msg)
        if found is None:
            return None
        return found[0].handler, found[1]

    def dispatch(self, msg: Message) -> Any:
        """Run the first matching handler and return what it returned (None if nothing matched)."""
        found = self.resolve(msg)
        if found is None:
            return None
        handler, msg = found
        return handler(msg)

    # Shortcuts: ``@router.text`` or ``@router.text(match=...)`` are ``@router.on("text", ...)``.
    def _shortcut(self, kind: str, func: Handler | None, options: dict[str, Any]) -> Any:
        if func is not None:
            if options:
                raise TypeError("use keyword filters with parentheses: @router.text(match=...)")
            return self.on(kind)(func)
        return self.on(kind, **options)

    def text(self, func: Handler | None = None, /, **options: Any) -> Any:
        """``on("text", ...)``."""
        return self._shortcut("text", func, options)

    def image(self, func: Handler | None = None, /, **options: Any) -> Any:
        """``on("image", ...)``."""
        return self._shortcut("image", func, options)

    def voice(self, func: Handler | None = None, /, **options: Any) -> Any:
        """``on("voice", ...)``."""
        return self._shortcut("voice", func, options)

    def video(self, func: Handler | None = None, /, **options: Any) -> Any:
        """``on("video", ...)``."""
        return self._shortcut("video", func, options)

    def location(self, func: Handler | None = None, /, **options: Any) -> Any:
        """``on("location", ...)``: the location *message*."""
        return self._shortcut("location", func, options)

    def link(self, func: Handler | None = None, /, **options: Any) -> Any:
        """``on("link", ...)``."""
        return self._shortcut("link", func, options)

    def event(self, func: Handler | None = None, /, **options: Any) -> Any:
        """``on("event", ...)``: any event."""
        return self._shortcut("event", func, options)

    def subscribe(self, func: Handler | None = None, /, **options: Any) -> Any:
        """``on("subscribe", ...)``."""
        return self._shortcut("subscribe", func, options)

    def unsubscribe(self, func: Handler | None = None, /, **options: Any) -> Any:
        """``on("unsubscribe", ...)``."""
        return self._shortcut("unsubscribe", func, options)

    def click(self, func: Handler | None = None, /, **options: Any) -> Any:
        """``on("click", ...)``: a click menu button (``key=`` filters by its key)."""
        return self._shortcut("click", func, options)

    def scan(self, func: Handler | None = None, /, **options: Any) -> Any:
        """``on("scan", ...)``: a follower scanned a parameterised QR code."""
        return self._shortcut("scan", func, options)

    def location_event(self, func: Handler | None = None, /, **options: Any) -> Any:
        """``on("location_event", ...)``: the periodic LOCATION report."""
        return self._shortcut("location_event", func, options)

    def default(self, func: Handler | None = None, /, **options: Any) -> Any:
        """``on(None, ...)``: the catch-all (register it last: first match wins)."""
        if func is not None:
            return self.on()(func)
        return self.on(None, **options)


def _slow_mode(slow: bool | str) -> str | None:
    if slow is False or slow is None:
        return None
    if slow is True:
        return "default"
    from .config import slow_strategy

    return slow_strategy("slow", slow)


def settle(value: Any) -> Any:
    """A handler's result, with an ``async def`` handler's coroutine run to its end on this thread.

    The WSGI callback and slow-handler jobs call handlers from plain threads; there an async handler
    gets an event loop of its own for the call (the ASGI callback awaits it on its loop instead).
    """
    if value is None or value.__class__ is str:  # the common answers, without the ABC check
        return value
    if inspect.isawaitable(value):

        async def wait() -> Any:
            return await value

        return asyncio.run(wait())
    return value
