"""Publishing (发布): ``wx.freepublish`` (``/cgi-bin/freepublish/*``).

:meth:`FreePublishAPI.submit` turns a draft into a publishing job; WeChat checks it and reports the
result as the ``PUBLISHJOBFINISH`` event (:class:`~wxmp.messages.PublishJobFinishEvent`) and through
:meth:`FreePublishAPI.get`. A published article has an ``article_id``: fetch it, list it, delete it,
or send it to one follower with ``wx.message.send_mpnewsarticle``. An account that lost the right
to publish through the API gets 48001 on these paths, raised as
:class:`~wxmp.errors.PublishUnauthorizedError`
(developers.weixin.qq.com/doc/offiaccount/Publish/Publish.html).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..client import Call
from ._base import ApiGroup, offset_items, stream
from .draft import _batchget_call, _news_items

__all__ = ["PUBLISH_STATUS", "FreePublishAPI"]

#: ``publish_status`` of freepublish/get and the event, with WeChat's meaning.
PUBLISH_STATUS: dict[int, str] = {
    0: "published",
    1: "publishing",
    2: "refused: originality check failed",
    3: "failed",
    4: "refused by the platform's review",
    5: "published, then every article was deleted by the account",
    6: "published, then every article was banned by the platform",
}
PAGE_SIZE = 20


class FreePublishAPI(ApiGroup):
    """Publish drafts and manage published articles."""

    def submit(self, media_id: str) -> str:
        """Publish the draft ``media_id``; returns the job's ``publish_id``.

        ``POST /cgi-bin/freepublish/submit``; the result comes later (:meth:`get`, or the event).
        """
        return self.client.post(
            "/cgi-bin/freepublish/submit", {"media_id": media_id}, then=lambda r: str(r["publish_id"])
        )

    def get(self, publish_id: str) -> dict[str, Any]:
        """The job's state: ``POST /cgi-bin/freepublish/get``.

        ``{"publish_id", "publish_status", "article_id"?, "article_detail"?: {"count", "item":
        [{"idx", "article_url"}]}, "fail_idx"?}``; see :data:`PUBLISH_STATUS` (1: still running).
        """
        return self.client.post("/cgi-bin/freepublish/get", {"publish_id": publish_id})

    def delete(self, article_id: str, index: int = 0) -> dict[str, Any]:
        """Delete a published article (``index`` from 1; 0: all of them); this cannot be undone.

        ``POST /cgi-bin/freepublish/delete``.
        """
        return self.client.post("/cgi-bin/freepublish/delete", {"article_id": article_id, "index": index})

    def get_article(self, article_id: str) -> list[dict[str, Any]]:
        """The published articles (``news_item``, each with ``url`` and ``is_deleted``):
        ``POST /cgi-bin/freepublish/getarticle``.
        """
        body = {"article_id": article_id}
        return self.client.post("/cgi-bin/freepublish/getarticle", body, then=_news_items)

    def batchget(self, offset: int = 0, count: int = PAGE_SIZE, no_content: bool = False) -> dict[str, Any]:
        """One page of what was published: ``POST /cgi-bin/freepublish/batchget``.

        ``{"total_count", "item_count", "item": [{"article_id", "content": {"news_item"}, "update_time"}]}``.
        """
        return self.client.call(_batchget_call("/cgi-bin/freepublish/batchget", offset, count, no_content))

    @stream
    def iter(self, no_content: bool = False) -> Generator[dict[str, Any] | Call, Any, None]:
        """Every published item, 20 per ``POST /cgi-bin/freepublish/batchget``."""
        path = "/cgi-bin/freepublish/batchget"
        yield from offset_items(lambda offset: _batchget_call(path, offset, PAGE_SIZE, no_content))
