"""The base of every resource group."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ..account import Account
    from ..client import ApiClient
    from ..config import Settings

T = TypeVar("T")


class ApiGroup:
    """A group of endpoints sharing one account's :class:`~wxmp.client.ApiClient` and settings."""

    def __init__(self, account: Account) -> None:
        self._account = account

    @property
    def client(self) -> ApiClient:
        return self._account.client

    @property
    def settings(self) -> Settings:
        """The account's validated settings (appid, secret...)."""
        return self._account.settings

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Split ``items`` into lists of at most ``size`` (WeChat's per-call limits)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def offset_pages(fetch: Callable[[int], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every ``item`` of WeChat's offset/count lists (materials, drafts, publications).

    ``fetch(offset)`` returns one page ``{"total_count", "item": [...]}``; stop on an empty page or
    once ``total_count`` items were seen.
    """
    offset = 0
    while True:
        page = fetch(offset)
        items = page.get("item") or []
        yield from items
        offset += len(items)
        if not items or offset >= int(page.get("total_count") or 0):
            return
