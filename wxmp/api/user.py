"""Users: ``wx.user`` (``/cgi-bin/user/*`` and the blacklist under ``/cgi-bin/tags/members/*``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._base import ApiGroup, chunks

__all__ = ["UserAPI"]

BATCHGET_MAX = 100
BLACKLIST_MAX = 20


class UserAPI(ApiGroup):
    """Follower information, remarks, the follower list and the blacklist."""

    def get(self, openid: str, lang: str = "zh_CN") -> dict[str, Any]:
        """One follower's info: ``GET /cgi-bin/user/info``."""
        return self.client.get("/cgi-bin/user/info", {"openid": openid, "lang": lang})

    def get_batch(self, openids: Iterable[str], lang: str = "zh_CN") -> list[dict[str, Any]]:
        """Many followers' info, in order: ``POST /cgi-bin/user/info/batchget`` per 100 openids."""
        users: list[dict[str, Any]] = []
        for batch in chunks(openids, BATCHGET_MAX):
            body = {"user_list": [{"openid": openid, "lang": lang} for openid in batch]}
            users.extend(self.client.post("/cgi-bin/user/info/batchget", body).get("user_info_list", []))
        return users

    def get_followers(self, next_openid: str | None = None) -> dict[str, Any]:
        """One page (up to 10,000) of follower openids: ``GET /cgi-bin/user/get``."""
        return self.client.get("/cgi-bin/user/get", {"next_openid": next_openid or None})

    def iter_followers(self, next_openid: str | None = None) -> Iterator[str]:
        """Every follower's openid, page after page of ``GET /cgi-bin/user/get``."""
        yield from _pages(lambda cursor: self.get_followers(cursor), next_openid)

    def set_remark(self, openid: str, remark: str) -> dict[str, Any]:
        """Set the account's private note on a follower: ``POST /cgi-bin/user/info/updateremark``."""
        return self.client.post("/cgi-bin/user/info/updateremark", {"openid": openid, "remark": remark})

    # -- blacklist ------------------------------------------------------------------------------

    def get_blacklist(self, begin_openid: str | None = None) -> dict[str, Any]:
        """One page of blacklisted openids: ``POST /cgi-bin/tags/members/getblacklist``."""
        return self.client.post("/cgi-bin/tags/members/getblacklist", {"begin_openid": begin_openid or ""})

    def iter_blacklist(self, begin_openid: str | None = None) -> Iterator[str]:
        """Every blacklisted openid, page after page of ``POST /cgi-bin/tags/members/getblacklist``."""
        yield from _pages(lambda cursor: self.get_blacklist(cursor), begin_openid)

    def blacklist(self, openids: Iterable[str]) -> None:
        """Blacklist followers: ``POST /cgi-bin/tags/members/batchblacklist``, one call per 20."""
        for batch in chunks(openids, BLACKLIST_MAX):
            self.client.post("/cgi-bin/tags/members/batchblacklist", {"openid_list": batch})

    def unblacklist(self, openids: Iterable[str]) -> None:
        """Lift the blacklist: ``POST /cgi-bin/tags/members/batchunblacklist``, one call per 20."""
        for batch in chunks(openids, BLACKLIST_MAX):
            self.client.post("/cgi-bin/tags/members/batchunblacklist", {"openid_list": batch})


def _pages(fetch: Callable[[str | None], dict[str, Any]], cursor: str | None) -> Iterator[str]:
    """Follow ``next_openid`` through WeChat's openid pages.

    An empty page has no ``data`` key, and the last full page may still carry a ``next_openid``
    (wechat-api.md §5.3): stop on a missing ``data``, ``count == 0`` or an empty cursor, and,
    when the page says how many there are (``total``), as soon as all of them were seen.
    """
    seen = 0
    while True:
        page = fetch(cursor)
        data = page.get("data")
        if not data or not page.get("count"):
            return
        openids = data.get("openid", [])
        yield from openids
        seen += len(openids)
        cursor = page.get("next_openid")
        if not cursor or ("total" in page and seen >= int(page["total"])):
            return
