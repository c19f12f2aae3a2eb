"""Filters: plain callables on a message, composable with ``&``, ``|`` and ``~``.

A filter returns a truthy value to accept the message. :func:`regex` returns the ``re.Match``,
which the router hands to the handler as ``msg.match``::

    from wxmp import filters as F

    @wx.on("text", when=F.regex(r"^order (\\d+)") & ~F.openid("o_blocked"))
    def order(msg):
        return f"order {msg.match[1]}"

Keyword filters of ``router.on(kind, **fields)`` are built with :func:`field`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .messages import Message

__all__ = ["ALIASES", "Filter", "field", "kind", "openid", "regex", "where"]

#: Short names accepted by :func:`field` (and so by ``router.on(kind, key=...)``).
ALIASES: dict[str, str] = {"key": "event_key", "type": "msg_type"}


class Filter:
    """A predicate on a message; ``a & b``, ``a | b`` and ``~a`` build new filters."""

    __slots__ = ("func", "name")

    def __init__(self, func: Callable[[Message], Any], name: str | None = None) -> None:
        self.func = func
        self.name = name or getattr(func, "__name__", repr(func))

    def __call__(self, msg: Message) -> Any:
        return self.func(msg)

    def __repr__(self) -> str:
        return f"<Filter {self.name}>"

    def __and__(self, other: Callable[[Message], Any]) -> Filter:
        right = _as_filter(other)
        left = self.func

        def both(msg: Message) -> Any:
            a = left(msg)
            if not a:
                return a
            b = right(msg)
            if not b:
                return b
            # Keep a regex match from either side so the handler still gets msg.match.
            return a if isinstance(a, re.Match) else b

        return Filter(both, f"({self.name} & {right.name})")

    def __rand__(self, other: Callable[[Message], Any]) -> Filter:
        return _as_filter(other) & self

    def __or__(self, other: Callable[[Message], Any]) -> Filter:
        right = _as_filter(other)
        left = self.func

        def either(msg: Message) -> Any:
            return left(msg) or right(msg)

        return Filter(either, f"({self.name} | {right.name})")

    def __ror__(self, other: Callable[[Message], Any]) -> Filter:
        return _as_filter(other) | self

    def __invert__(self) -> Filter:
        inner = self.func
        return Filter(lambda msg: not inner(msg), f"~{self.name}")


def _as_filter(value: Callable[[Message], Any]) -> Filter:
    if isinstance(value, Filter):
        return value
    if callable(value):
        return Filter(value)
    raise TypeError(f"a filter must be callable, not {type(value).__name__}")


def where(func: Callable[[Message], Any]) -> Filter:
    """Wrap any ``func(msg) -> bool`` so it composes with ``&``, ``|`` and ``~``."""
    return _as_filter(func)


def field(name: str, expected: Any) -> Filter:
    """Match attribute ``name`` of the message (``key`` means ``event_key``).

    ``expected`` may be a value (equality), a set/list/tuple (membership), a compiled regex
    (search; the match is returned) or a callable on the attribute's value.
    """
    attr = ALIASES.get(name, name)
    missing = object()

    if isinstance(expected, re.Pattern):
        pattern = expected

        def test(msg: Message) -> Any:
            value = getattr(msg, attr, missing)
            return pattern.search(value) if isinstance(value, str) else None

    elif callable(expected):
        func = expected

        def test(msg: Message) -> Any:
            value = getattr(msg, attr, missing)
            return value is not missing and func(value)

    elif isinstance(expected, Collection) and not isinstance(expected, (str, bytes)):
        choices = frozenset(expected) if isinstance(expected, (set, frozenset)) else tuple(expected)

        def test(msg: Message) -> Any:
            return getattr(msg, attr, missing) in choices

    else:

        def test(msg: Message) -> Any:
            return getattr(msg, attr, missing) == expected

    return Filter(test, f"{name}={expected!r}")


def regex(pattern: str | re.Pattern[str], attr: str = "content") -> Filter:
    """Search ``pattern`` in a text attribute (the text content by default); returns the match."""
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern

    def test(msg: Message) -> re.Match[str] | None:
        value = getattr(msg, attr, None)
        return compiled.search(value) if isinstance(value, str) else None

    return Filter(test, f"regex({compiled.pattern!r})")


def kind(*names: str) -> Filter:
    """Accept messages answering to any of ``names`` (MsgType or lowercased event name)."""
    wanted = frozenset(n.lower() for n in names)
    return Filter(lambda msg: not wanted.isdisjoint(msg.kinds), f"kind{tuple(sorted(wanted))}")


def openid(*ids: str) -> Filter:
    """Accept messages from these users only."""
    wanted = frozenset(ids)
    return Filter(lambda msg: msg.from_user_name in wanted, "openid")
