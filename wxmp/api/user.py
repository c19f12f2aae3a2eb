"""Users: ``wx.user`` (``/cgi-bin/user/*`` and the blacklist under ``/cgi-bin/tags/members/*``)."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

from ..client import Call, Plan
from ._base import ApiGroup, chunks, get, openid_pages, plan, post, stream

__all__ = ["UserAPI"]

BATCHGET_MAX = 100
BLACKLIST_MAX = 20


class UserAPI(ApiGroup):
    """Follower information, remarks, the follower list and the blacklist."""

    def get(self, openid: str, lang: str = "zh_CN") -> dict[str, Any]:
        """One follower's info: ``GET /cgi-bin/user/info``."""
        return self.client.get("/cgi-bin/user/info", {"openid": openid, "lang": lang})

    @plan
    def get_batch(self, openids: Iterable[str], lang: str = "zh_CN") -> Plan[list[dict[str, Any]]]:
        """Many followers' info, in order: ``POST /cgi-bin/user/info/batchget`` per 100 openids."""
        users: list[dict[str, Any]] = []
        for batch in chunks(openids, BATCHGET_MAX):
            body = {"user_list": [{"openid": openid, "lang": lang} for openid in batch]}
            users.extend((yield post("/cgi-bin/user/info/batchget", body)).get("user_info_list", []))
        return users

    def get_followers(self, next_openid: str | None = None) -> dict[str, Any]:
        """One page (up to 10,000) of follower openids: ``GET /cgi-bin/user/get``."""
        return self.client.call(_followers(next_openid))

    @stream
    def iter_followers(self, next_openid: str | None = None) -> Generator[str | Call, Any, None]:
        """Every follower's openid, page after page of ``GET /cgi-bin/user/get``."""
        yield from openid_pages(_followers, next_openid)

    def set_remark(self, openid: str, remark: str) -> dict[str, Any]:
        """Set the account's private note on a follower: ``POST /cgi-bin/user/info/updateremark``."""
        return self.client.post("/cgi-bin/user/info/updateremark", {"openid": openid, "remark": remark})

    # -- blacklist ------------------------------------------------------------------------------

    def get_blacklist(self, begin_openid: str | None = None) -> dict[str, Any]:
        """One page of blacklisted openids: ``POST /cgi-bin/tags/members/getblacklist``."""
        return self.client.call(_blacklist_page(begin_openid))

    @stream
    def iter_blacklist(self, begin_openid: str | None = None) -> Generator[str | Call, Any, None]:
        """Every blacklisted openid, page after page of ``POST /cgi-bin/tags/members/getblacklist``."""
        yield from openid_pages(_blacklist_page, begin_openid)

    @plan
    def blacklist(self, openids: Iterable[str]) -> Plan[None]:
        """Blacklist followers: ``POST /cgi-bin/tags/members/batchblacklist``, one call per 20."""
        for batch in chunks(openids, BLACKLIST_MAX):
            yield post("/cgi-bin/tags/members/batchblacklist", {"openid_list": batch})

    @plan
    def unblacklist(self, openids: Iterable[str]) -> Plan[None]:
        """Lift the blacklist: ``POST /cgi-bin/tags/members/batchunblacklist``, one call per 20."""
        for batch in chunks(openids, BLACKLIST_MAX):
            yield post("/cgi-bin/tags/members/batchunblacklist", {"openid_list": batch})


def _followers(next_openid: str | None) -> Call:
    return get("/cgi-bin/user/get", {"next_openid": next_openid or None})


def _blacklist_page(begin_openid: str | None) -> Call:
    return post("/cgi-bin/tags/members/getblacklist", {"begin_openid": begin_openid or ""})
