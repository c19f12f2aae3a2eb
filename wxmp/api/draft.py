"""Drafts (草稿箱): ``wx.draft`` (``/cgi-bin/draft/*``).

Since 2022 an article is written as a draft, then published (``wx.freepublish``) or mass-sent
(``wx.mass.send_mpnews(draft_media_id, ...)``); permanent news material (``material/add_news``) is
gone. A draft holds 1 to 8 articles of type ``news`` (HTML body, cover from permanent material) or
``newspic`` (plain text and up to 20 images). Images inside the HTML must be hosted by WeChat
(``wx.media.upload_image``): WeChat drops any other ``<img>``.

Article fields and limits from developers.weixin.qq.com/doc/offiaccount/Draft_Box/Add_draft.html;
:func:`validate_article` checks them before the call so a mistake names the field.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from ..client import Call
from ._base import ApiGroup, offset_items, post, stream

__all__ = ["ARTICLE_TYPES", "MAX_ARTICLES", "DraftAPI", "article", "validate_article"]

ARTICLE_TYPES = ("news", "newspic")
MAX_ARTICLES = 8
MAX_TITLE = 32  # characters (the draft page: "总长度不超过32个字" (?))
MAX_AUTHOR = 16  # characters (?)
MAX_DIGEST = 128  # characters; WeChat takes the first 54 characters of the body when empty
MAX_CONTENT_CHARS = 20_000  # "必须少于2万字符"
MAX_CONTENT_BYTES = 1024 * 1024  # "小于1M"
MAX_SOURCE_URL = 1024  # bytes (?)
MAX_IMAGES = 20  # newspic
PAGE_SIZE = 20  # batchget's maximum count
_CROP = re.compile(r"^(0(\.\d{1,6})?|1(\.0{1,6})?)(_(0(\.\d{1,6})?|1(\.0{1,6})?)){3}$")


def article(
    title: str,
    content: str,
    thumb_media_id: str | None = None,
    *,
    author: str | None = None,
    digest: str | None = None,
    content_source_url: str | None = None,
    need_open_comment: bool = False,
    only_fans_can_comment: bool = False,
    pic_crop_235_1: str | None = None,
    pic_crop_1_1: str | None = None,
    article_type: str = "news",
    image_media_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """One article as ``draft/add`` takes it (checked with :func:`validate_article`).

    ``news``: ``content`` is HTML and ``thumb_media_id`` a permanent image (``wx.media.add``);
    the crops are ``X1_Y1_X2_Y2`` in 0..1 of the cover. ``newspic``: ``content`` is plain text
    and ``image_media_ids`` (1 to 20 permanent images, the first is the cover).
    """
    item: dict[str, Any] = {"article_type": article_type, "title": title, "content": content}
    optional = {
        "author": author,
        "digest": digest,
        "content_source_url": content_source_url,
        "thumb_media_id": thumb_media_id,
        "pic_crop_235_1": pic_crop_235_1,
        "pic_crop_1_1": pic_crop_1_1,
    }
    item.update({k: v for k, v in optional.items() if v is not None})
    item["need_open_comment"] = 1 if need_open_comment else 0
    item["only_fans_can_comment"] = 1 if only_fans_can_comment else 0
    if image_media_ids:
        item["image_info"] = {"image_list": [{"image_media_id": m} for m in image_media_ids]}
    return validate_article(item)


def _chars(item: Mapping[str, Any], name: str, limit: int, where: str) -> None:
    value = item.get(name)
    if value is not None and len(str(value)) > limit:
        raise ValueError(f"{where}: {name} is {len(str(value))} characters; WeChat allows {limit}")


def validate_article(item: Mapping[str, Any], where: str = "article") -> dict[str, Any]:
    """Check one draft article against WeChat's rules; return it as a dict or raise ValueError."""
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: expected a dict, got {type(item).__name__}")
    kind = item.get("article_type", "news")
    if kind not in ARTICLE_TYPES:
        raise ValueError(f"{where}: article_type {kind!r}: one of {', '.join(ARTICLE_TYPES)}")
    for name in ("title", "content"):
        if not isinstance(item.get(name), str) or not item[name].strip():
            raise ValueError(f"{where}: needs a {name}")
    _chars(item, "title", MAX_TITLE, where)
    _chars(item, "author", MAX_AUTHOR, where)
    _chars(item, "digest", MAX_DIGEST, where)
    content = item["content"]
    if len(content) >= MAX_CONTENT_CHARS or len(content.encode("utf-8")) >= MAX_CONTENT_BYTES:
        raise ValueError(f"{where}: content must be under {MAX_CONTENT_CHARS} characters and 1 MB")
    url = item.get("content_source_url")
    if url is not None and len(str(url).encode("utf-8")) > MAX_SOURCE_URL:
        raise ValueError(f"{where}: content_source_url is longer than {MAX_SOURCE_URL} bytes")
    if kind == "news":
        if not item.get("thumb_media_id"):
            raise ValueError(
                f"{where}: a news article needs thumb_media_id (a permanent image: wx.media.add)"
            )
        for crop in ("pic_crop_235_1", "pic_crop_1_1"):
            if item.get(crop) is not None and not _CROP.match(str(item[crop])):
                raise ValueError(f"{where}: {crop} is X1_Y1_X2_Y2 with values 0..1 (6 decimals at most)")
    else:
        info = item.get("image_info")
        images = info.get("image_list") if isinstance(info, Mapping) else None
        if not isinstance(images, list) or not 1 <= len(images) <= MAX_IMAGES:
            raise ValueError(
                f"{where}: a newspic article needs image_info.image_list, 1 to {MAX_IMAGES} images"
            )
    return dict(item)


def _articles(articles: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    items = [articles] if isinstance(articles, Mapping) else list(articles)
    if not 1 <= len(items) <= MAX_ARTICLES:
        raise ValueError(f"a draft holds 1 to {MAX_ARTICLES} articles, got {len(items)}")
    return [validate_article(a, f"articles[{i}]") for i, a in enumerate(items)]


class DraftAPI(ApiGroup):
    """Create, read, change and list drafts; the draft-box switch."""

    def add(self, articles: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
        """Create a draft of 1 to 8 articles and return its ``media_id``: ``POST /cgi-bin/draft/add``."""
        body = {"articles": _articles(articles)}
        return self.client.post("/cgi-bin/draft/add", body, then=lambda r: str(r["media_id"]))

    def get(self, media_id: str) -> list[dict[str, Any]]:
        """The draft's articles (``news_item``): ``POST /cgi-bin/draft/get``."""
        return self.client.post("/cgi-bin/draft/get", {"media_id": media_id}, then=_news_items)

    def update(self, media_id: str, index: int, article: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the article at ``index`` (from 0): ``POST /cgi-bin/draft/update``."""
        if index < 0:
            raise ValueError("index counts from 0")
        body = {"media_id": media_id, "index": index, "articles": validate_article(article)}
        return self.client.post("/cgi-bin/draft/update", body)

    def delete(self, media_id: str) -> dict[str, Any]:
        """Delete a draft: ``POST /cgi-bin/draft/delete``."""
        return self.client.post("/cgi-bin/draft/delete", {"media_id": media_id})

    def count(self) -> int:
        """How many drafts there are (``total_count``): ``GET /cgi-bin/draft/count``."""
        return self.client.get("/cgi-bin/draft/count", then=lambda r: int(r.get("total_count", 0)))

    def batchget(self, offset: int = 0, count: int = PAGE_SIZE, no_content: bool = False) -> dict[str, Any]:
        """One page of drafts, newest first: ``POST /cgi-bin/draft/batchget``.

        ``{"total_count", "item_count", "item": [{"media_id", "content": {"news_item"}, "update_time"}]}``;
        ``no_content`` leaves the HTML out.
        """
        return self.client.call(_batchget_call("/cgi-bin/draft/batchget", offset, count, no_content))

    @stream
    def iter(self, no_content: bool = False) -> Generator[dict[str, Any] | Call, Any, None]:
        """Every draft, 20 per ``POST /cgi-bin/draft/batchget``."""
        path = "/cgi-bin/draft/batchget"
        yield from offset_items(lambda offset: _batchget_call(path, offset, PAGE_SIZE, no_content))

    def switch(self, *, check_only: bool = True) -> bool:
        """Whether the draft box and publishing are on (``is_open``): ``POST /cgi-bin/draft/switch``.

        With ``check_only=False`` it turns them on, which cannot be undone (accounts created
        before 2022 had to opt in).
        """
        params = {"checkonly": 1} if check_only else None
        return self.client.post("/cgi-bin/draft/switch", params=params, then=_is_open)


def _batchget_call(path: str, offset: int, count: int, no_content: bool) -> Call:
    """One page of ``draft/batchget`` or ``freepublish/batchget`` (same body, 1 to 20 a page)."""
    if not 1 <= count <= PAGE_SIZE:
        raise ValueError(f"count: 1 to {PAGE_SIZE}")
    return post(path, {"offset": offset, "count": count, "no_content": 1 if no_content else 0})


def _news_items(result: dict[str, Any]) -> list[dict[str, Any]]:
    return list(result.get("news_item", []))


def _is_open(result: dict[str, Any]) -> bool:
    return bool(int(result.get("is_open", 0)))
