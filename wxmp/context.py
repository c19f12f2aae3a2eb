"""Which account is handling the current message (a context variable; safe with threads and asyncio).

The callback of an :class:`~wxmp.account.Account` sets it around each handler, so ``msg.account``
and the Flask extension's API groups (``wx.message.send_text`` inside a handler) use the account
that received the message, not the default one.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .account import Account

__all__ = ["current_account"]

_current: ContextVar[Account | None] = ContextVar("wxmp_account", default=None)


def current_account() -> Account | None:
    """The account that received the message being handled, or None outside a handler."""
    return _current.get()
