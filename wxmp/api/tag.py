"""Tags: ``wx.tag`` (``/cgi-bin/tags/*``)."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

from ..client import Call, Plan
from ._base import ApiGroup, chunks, openid_pages, plan, post, stream

__all__ = ["TagAPI"]

TAGGING_MAX = 50

# `list` is shadowed by TagAPI.list inside the class body
_Tags = list[dict[str, Any]]
_TagIds = list[int]


class TagAPI(ApiGroup):
    """Follower tags: create, rename, delete, and who carries which tag."""

    def create(self, name: str) -> dict[str, Any]:
        """Create a tag; returns ``{"tag": {"id", "name"}}``: ``POST /cgi-bin/tags/create``."""
        return self.client.post("/cgi-bin/tags/create", {"tag": {"name": name}})

    def list(self) -> _Tags:
        """Every tag as ``{"id", "name", "count"}`` (the ``tags`` list): ``GET /cgi-bin/tags/get``."""
        return self.client.get("/cgi-bin/tags/get", then=lambda r: r.get("tags", []))

    def update(self, tag_id: int, name: str) -> dict[str, Any]:
        """Rename a tag: ``POST /cgi-bin/tags/update``."""
        return self.client.post("/cgi-bin/tags/update", {"tag": {"id": tag_id, "name": name}})

    def delete(self, tag_id: int) -> dict[str, Any]:
        """Delete a tag (and remove it from its followers): ``POST /cgi-bin/tags/delete``."""
        return self.client.post("/cgi-bin/tags/delete", {"tag": {"id": tag_id}})

    @plan
    def tag_users(self, tag_id: int, openids: Iterable[str]) -> Plan[None]:
        """Tag followers: ``POST /cgi-bin/tags/members/batchtagging``, one call per 50 openids."""
        for batch in chunks(openids, TAGGING_MAX):
            yield post("/cgi-bin/tags/members/batchtagging", {"openid_list": batch, "tagid": tag_id})

    @plan
    def untag_users(self, tag_id: int, openids: Iterable[str]) -> Plan[None]:
        """Untag followers: ``POST /cgi-bin/tags/members/batchuntagging``, one call per 50 openids."""
        for batch in chunks(openids, TAGGING_MAX):
            yield post("/cgi-bin/tags/members/batchuntagging", {"openid_list": batch, "tagid": tag_id})

    def user_tags(self, openid: str) -> _TagIds:
        """The tag ids one follower carries (``tagid_list``): ``POST /cgi-bin/tags/getidlist``."""
        return self.client.post(
            "/cgi-bin/tags/getidlist", {"openid": openid}, then=lambda r: r.get("tagid_list", [])
        )

    def get_users(self, tag_id: int, next_openid: str | None = None) -> dict[str, Any]:
        """One page of the openids carrying a tag: ``POST /cgi-bin/user/tag/get``."""
        return self.client.call(_tag_page(tag_id, next_openid))

    @stream
    def iter_users(self, tag_id: int) -> Generator[str | Call, Any, None]:
        """Every openid carrying ``tag_id``, page after page of ``POST /cgi-bin/user/tag/get``."""
        yield from openid_pages(lambda cursor: _tag_page(tag_id, cursor), None)


def _tag_page(tag_id: int, next_openid: str | None) -> Call:
    return post("/cgi-bin/user/tag/get", {"tagid": tag_id, "next_openid": next_openid or ""})
