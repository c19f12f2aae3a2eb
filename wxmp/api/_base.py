"""The base of every resource group, and the rule that lets one helper serve both clients.

A helper is written once and runs on the sync client (requests) and on the async one (httpx):

- a single request: ``return self.client.post(path, body)``; shape the answer with
  ``then=`` (``self.client.get(path, then=lambda r: r.get("tags", []))``), never by indexing
  the returned value (on the async client it is an awaitable);
- several requests (chunks, a call depending on another's answer, catching an error): a
  generator decorated with :func:`plan` that ``yield``\\s :func:`get` / :func:`post` calls
  (each yield evaluates to that call's answer, or raises its error) and ``return``\\s the value;
- pages handed out one item at a time: a generator decorated with :func:`stream` that yields
  calls and items alike; the sync client makes it an iterator, the async one an async iterator.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from ..client import Blocking, Call, Plan

if TYPE_CHECKING:
    from ..account import Account
    from ..client import ApiClient
    from ..config import Settings

__all__ = ["ApiGroup", "Blocking", "Call", "chunks", "get", "offset_items", "plan", "post", "stream"]

T = TypeVar("T")
R = TypeVar("R")
G = TypeVar("G", bound="ApiGroup")
P = ParamSpec("P")


class ApiGroup:
    """A group of endpoints sharing one account's :class:`~wxmp.client.ApiClient` and settings.

    ``client`` replaces the account's (the async client passes itself: same helpers, other I/O).
    """

    def __init__(self, account: Account, client: ApiClient | None = None) -> None:
        self._account = account
        self._client = client

    @property
    def client(self) -> ApiClient:
        return self._client if self._client is not None else self._account.client

    @property
    def settings(self) -> Settings:
        """The account's validated settings (appid, secret...)."""
        return self._account.settings

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def get(path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Call:
    """A GET :class:`~wxmp.client.Call` for a :func:`plan` to yield."""
    return Call("GET", path, params=params, **kw)


def post(path: str, json: Any = None, params: Mapping[str, Any] | None = None, **kw: Any) -> Call:
    """A POST :class:`~wxmp.client.Call` for a :func:`plan` to yield."""
    return Call("POST", path, params=params, json=json, **kw)


def plan(method: Callable[Concatenate[G, P], Plan[R]]) -> Callable[Concatenate[G, P], R]:
    """Make a generator method a helper: its client drives it (a value, or an awaitable)."""

    @functools.wraps(method)
    def run(self: G, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.client.drive(method(self, *args, **kwargs))

    run.__wxmp_plan__ = "plan"  # type: ignore[attr-defined]
    return run


def stream(
    method: Callable[Concatenate[G, P], Generator[T | Call, Any, None]],
) -> Callable[Concatenate[G, P], Iterator[T]]:
    """Make a generator of calls and items a helper: an iterator (sync) or async iterator of the items."""

    @functools.wraps(method)
    def run(self: G, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self.client.stream(method(self, *args, **kwargs))

    run.__wxmp_plan__ = "stream"  # type: ignore[attr-defined]
    return run


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


def offset_items(page: Callable[[int], Call]) -> Generator[dict[str, Any] | Call, Any, None]:
    """Every ``item`` of WeChat's offset/count lists (materials, drafts, publications), for a :func:`stream`.

    ``page(offset)`` is the call for one page ``{"total_count", "item": [...]}``; stop on an empty
    page or once ``total_count`` items were seen.
    """
    offset = 0
    while True:
        result = yield page(offset)
        items = result.get("item") or []
        yield from items
        offset += len(items)
        if not items or offset >= int(result.get("total_count") or 0):
            return


def openid_pages(
    page_call: Callable[[str | None], Call], cursor: str | None
) -> Generator[str | Call, Any, None]:
    """Every openid of WeChat's ``next_openid`` pages (followers, a tag's users, the blacklist), for a
    :func:`stream`.

    An empty page has no ``data`` key, and the last full page may still carry a ``next_openid``
    (developers.weixin.qq.com/doc/offiaccount/User_Management/Getting_a_User_List.html): stop on a
    missing ``data``, ``count == 0`` or an empty cursor, and, when the page says how many there are
    (``total``), as soon as all of them were seen.
    """
    seen = 0
    while True:
        page = yield page_call(cursor)
        data = page.get("data")
        if not data or not page.get("count"):
            return
        openids = data.get("openid", [])
        yield from openids
        seen += len(openids)
        cursor = page.get("next_openid")
        if not cursor or ("total" in page and seen >= int(page["total"])):
            return
