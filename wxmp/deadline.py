"""The time budget of the request being answered, for code that may wait inside a handler.

WeChat waits 5 s for a callback's answer. The callback runs each handler under a deadline, and
waits that a handler cannot control (for a token another worker is fetching, or while fetching is
backing off) are cut to it, so an answer is not lost to a wait nobody asked for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["deadline", "remaining"]

_deadline: ContextVar[float | None] = ContextVar("wxmp_deadline", default=None)


def remaining() -> float | None:
    """Seconds left before the current deadline (negative once passed); None without one."""
    end = _deadline.get()
    if end is None:
        return None
    return end - time.monotonic()


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Run the block under a deadline ``seconds`` from now (an outer, sooner one still wins)."""
    end = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(end if outer is None else min(outer, end))
    try:
        yield
    finally:
        _deadline.reset(token)
