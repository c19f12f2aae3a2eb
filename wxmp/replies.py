"""Passive replies: small frozen dataclasses rendered to WeChat's reply XML (WeChat's 被动回复用户消息 page,
developers.weixin.qq.com/doc/offiaccount/Message_Management/Passive_user_reply_message.html).

A handler returns a ``str`` (a text reply), one of the reply objects below, or ``None`` (answer
``success``: WeChat shows nothing and does not retry). ``ToUserName``/``FromUserName`` are taken from
the incoming message, swapped, so replies never carry addresses.

Rendering is plain string building. Every text value goes into CDATA; ``]]>`` inside a value is split
across two CDATA sections and characters XML 1.0 forbids (control characters, lone surrogates) are
dropped, so the output is well-formed whatever the content.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .messages import Message

__all__ = [
    "Article",
    "EmptyReply",
    "ImageReply",
    "MusicReply",
    "NewsReply",
    "Reply",
    "SuccessReply",
    "TextReply",
    "TransferCustomerServiceReply",
    "VideoReply",
    "VoiceReply",
    "cdata",
    "parse_reply",
    "render",
    "reply_for",
]

_ILLEGAL = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

MAX_ARTICLES = 8


def cdata(value: object) -> str:
    """``value`` as a CDATA section that is always well-formed XML."""
    text = value if isinstance(value, str) else str(value)
    if _ILLEGAL.search(text):
        text = _ILLEGAL.sub("", text)
    if "]]>" in text:
        text = text.replace("]]>", "]]]]><![CDATA[>")
    return f"<![CDATA[{text}]]>"


@dataclass(frozen=True)
class Reply:
    """Base of the reply types; ``msg_type`` is the ``MsgType`` the reply is sent as."""

    msg_type: ClassVar[str] = ""

    def body(self) -> str:
        """The XML after the common header (``ToUserName`` ... ``MsgType``)."""
        return ""


@dataclass(frozen=True)
class TextReply(Reply):
    """A text reply; newlines are fine."""

    content: str
    msg_type: ClassVar[str] = "text"

    def body(self) -> str:
        return f"<Content>{cdata(self.content)}</Content>"


@dataclass(frozen=True)
class ImageReply(Reply):
    """An image already uploaded as media (temporary or permanent)."""

    media_id: str
    msg_type: ClassVar[str] = "image"

    def body(self) -> str:
        return f"<Image><MediaId>{cdata(self.media_id)}</MediaId></Image>"


@dataclass(frozen=True)
class VoiceReply(Reply):
    """A voice message already uploaded as media."""

    media_id: str
    msg_type: ClassVar[str] = "voice"

    def body(self) -> str:
        return f"<Voice><MediaId>{cdata(self.media_id)}</MediaId></Voice>"


@dataclass(frozen=True)
class VideoReply(Reply):
    """A video already uploaded as media, with an optional title and description."""

    media_id: str
    title: str | None = None
    description: str | None = None
    msg_type: ClassVar[str] = "video"

    def body(self) -> str:
        parts = [f"<Video><MediaId>{cdata(self.media_id)}</MediaId>"]
        if self.title is not None:
            parts.append(f"<Title>{cdata(self.title)}</Title>")
        if self.description is not None:
            parts.append(f"<Description>{cdata(self.description)}</Description>")
        parts.append("</Video>")
        return "".join(parts)


@dataclass(frozen=True)
class MusicReply(Reply):
    """Music: ``music_url`` (``hq_music_url`` for Wi-Fi) with a thumbnail media id."""

    music_url: str
    thumb_media_id: str
    title: str | None = None
    description: str | None = None
    hq_music_url: str | None = None
    msg_type: ClassVar[str] = "music"

    def body(self) -> str:
        parts = ["<Music>"]
        if self.title is not None:
            parts.append(f"<Title>{cdata(self.title)}</Title>")
        if self.description is not None:
            parts.append(f"<Description>{cdata(self.description)}</Description>")
        parts.append(f"<MusicUrl>{cdata(self.music_url)}</MusicUrl>")
        parts.append(f"<HQMusicUrl>{cdata(self.hq_music_url or self.music_url)}</HQMusicUrl>")
        parts.append(f"<ThumbMediaId>{cdata(self.thumb_media_id)}</ThumbMediaId></Music>")
        return "".join(parts)


@dataclass(frozen=True)
class Article:
    """One item of a news reply."""

    title: str
    description: str = ""
    pic_url: str = ""
    url: str = ""

    def render(self) -> str:
        return (
            f"<item><Title>{cdata(self.title)}</Title><Description>{cdata(self.description)}</Description>"
            f"<PicUrl>{cdata(self.pic_url)}</PicUrl><Url>{cdata(self.url)}</Url></item>"
        )


@dataclass(frozen=True)
class NewsReply(Reply):
    """Articles (a tuple of :class:`Article`).

    Since 2018 WeChat shows only one article when replying to a user's message; events may carry up
    to eight (§4). More than eight, or none, raises ValueError.
    """

    articles: tuple[Article, ...]
    msg_type: ClassVar[str] = "news"

    def __init__(self, articles: Iterable[Article] | Article) -> None:
        items = (articles,) if isinstance(articles, Article) else tuple(articles)
        if not 1 <= len(items) <= MAX_ARTICLES:
            raise ValueError(f"a news reply takes 1 to {MAX_ARTICLES} articles, got {len(items)}")
        if not all(isinstance(a, Article) for a in items):
            raise TypeError("articles must be Article objects")
        object.__setattr__(self, "articles", items)

    def body(self) -> str:
        items = "".join(a.render() for a in self.articles)
        return f"<ArticleCount>{len(self.articles)}</ArticleCount><Articles>{items}</Articles>"


@dataclass(frozen=True)
class TransferCustomerServiceReply(Reply):
    """Hand the conversation to customer service, to one agent if ``kf_account`` is given."""

    kf_account: str | None = None
    msg_type: ClassVar[str] = "transfer_customer_service"

    def body(self) -> str:
        if self.kf_account is None:
            return ""
        return f"<TransInfo><KfAccount>{cdata(self.kf_account)}</KfAccount></TransInfo>"


@dataclass(frozen=True)
class SuccessReply(Reply):
    """Answer ``success``: WeChat shows nothing and does not retry (what ``None`` means)."""


@dataclass(frozen=True)
class EmptyReply(Reply):
    """Answer with an empty body; WeChat treats it like ``success``."""


#: The body that tells WeChat "received, no reply" (it then shows nothing and does not retry).
SUCCESS = "success"


def render(reply: Reply, to_user: str, from_user: str, create_time: int) -> str:
    """The complete reply XML for ``reply`` addressed to ``to_user``."""
    if isinstance(reply, SuccessReply):
        return SUCCESS
    if isinstance(reply, EmptyReply):
        return ""
    return (
        f"<xml><ToUserName>{cdata(to_user)}</ToUserName><FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(create_time)}</CreateTime><MsgType><![CDATA[{reply.msg_type}]]></MsgType>"
        f"{reply.body()}</xml>"
    )


def reply_for(msg: Message, value: Any, now: float | None = None) -> str:
    """Turn a handler's return value into the HTTP body: XML, ``"success"`` or ``""``.

    ``str`` becomes a text reply, ``None`` becomes ``success``; anything else must be a :class:`Reply`.
    """
    if value is None:
        return SUCCESS
    if isinstance(value, str):
        value = TextReply(value)
    elif not isinstance(value, Reply):
        raise TypeError(f"a handler must return str, a Reply or None, not {type(value).__name__}")
    raw = msg.raw
    return render(
        value,
        raw.get("FromUserName", ""),
        raw.get("ToUserName", ""),
        int(time.time() if now is None else now),
    )


def _reply_from_fields(fields: dict[str, Any]) -> Reply:
    kind = fields.get("MsgType", "")

    def block(name: str) -> dict[str, Any]:
        value = fields.get(name)
        return value if isinstance(value, dict) else {}

    if kind == "text":
        return TextReply(fields.get("Content", ""))
    if kind in ("image", "voice"):
        media_id = block(kind.capitalize()).get("MediaId", "")
        return ImageReply(media_id) if kind == "image" else VoiceReply(media_id)
    if kind == "video":
        b = block("Video")
        return VideoReply(b.get("MediaId", ""), b.get("Title"), b.get("Description"))
    if kind == "music":
        b = block("Music")
        return MusicReply(
            music_url=b.get("MusicUrl", ""),
            thumb_media_id=b.get("ThumbMediaId", ""),
            title=b.get("Title"),
            description=b.get("Description"),
            hq_music_url=b.get("HQMusicUrl"),
        )
    if kind == "news":
        # an empty <item></item> parses to "" rather than a dict
        items = [i if isinstance(i, dict) else {} for i in block("Articles").get("item", [])]
        return NewsReply(
            Article(i.get("Title", ""), i.get("Description", ""), i.get("PicUrl", ""), i.get("Url", ""))
            for i in items
        )
    if kind == "transfer_customer_service":
        return TransferCustomerServiceReply(block("TransInfo").get("KfAccount"))
    raise ValueError(f"unknown reply MsgType {kind!r}")


@dataclass(frozen=True)
class ParsedReply:
    """A reply read back from XML (used by :class:`wxmp.testing.WeChatUser`)."""

    reply: Reply
    to_user_name: str
    from_user_name: str
    create_time: int
    raw: dict[str, Any] = field(repr=False, compare=False)


def parse_reply(body: bytes | str) -> ParsedReply:
    """Parse reply XML back into a reply object plus its header (the inverse of :func:`render`)."""
    from .messages import parse_fields

    if isinstance(body, bytes):
        body = body.decode()
    if body.strip() in ("", SUCCESS):
        empty: Reply = EmptyReply() if body.strip() == "" else SuccessReply()
        return ParsedReply(empty, "", "", 0, {})
    fields = parse_fields(body)
    return ParsedReply(
        _reply_from_fields(fields),
        fields.get("ToUserName", ""),
        fields.get("FromUserName", ""),
        int(fields.get("CreateTime") or 0),
        fields,
    )
