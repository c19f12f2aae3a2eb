"""The time budget of the request being answered, for code that may wait inside a handler.

WeChat waits 5 s for a callback's answer. The callback runs each handler under a deadline, and
waits that a handler cannot control (for a token another worker is fetching, or while fetching is
backing off) are cut to it, so an answer is not lost to a wait nobody asked for.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from typing import Any

__all__ = ["deadline", "remaining"]

_deadline: ContextVar[float | None] = ContextVar("wxmp_deadline", default=None)


def remaining() -> float | None:
    """Seconds left before the current deadline (negative once passed); None without one."""
    end = _deadline.get()
    if end is None:
        return None
    return end - time.monotonic()


class deadline:
    """Run the block under a deadline ``seconds`` from now (an outer, sooner one still wins).

    A class rather than a generator-based context manager: it wraps every handler call.
    """

    __slots__ = ("_token", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        end = time.monotonic() + self.seconds
        outer = _deadline.get()
        self._token: Token[float | None] = _deadline.set(end if outer is None or outer > end else outer)

    def __exit__(self, *exc: Any) -> None:
        _deadline.reset(self._token)
