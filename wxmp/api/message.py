"""Customer-service messages: ``wx.message`` (``POST /cgi-bin/message/custom/send``).

WeChat accepts them only within 48 hours of the user's last interaction (WeChat's 自定义菜单 and 客服消息
pages); outside
that window the send raises :class:`~wxmp.errors.OutOfWindowError` (45015). Since 2023-06 they are
also counted: a user message allows 5 sends within 48 hours, a menu click (click, scancode_push,
scancode_waitmsg), a follow or a QR scan 3 within a minute; beyond that WeChat answers 45047,
raised as :class:`~wxmp.errors.ReplyLimitError` (developers.weixin.qq.com/doc/offiaccount/
Message_Management/Service_Center_messages.html).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._base import ApiGroup

__all__ = ["MessageAPI"]


def _drop_none(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if v is not None}


class MessageAPI(ApiGroup):
    """Messages sent to one follower through the customer-service interface."""

    def send(
        self, openid: str, msgtype: str, payload: Mapping[str, Any], *, kf_account: str | None = None
    ) -> dict[str, Any]:
        """Send any ``msgtype`` with its ``payload``: ``POST /cgi-bin/message/custom/send``."""
        body: dict[str, Any] = {"touser": openid, "msgtype": msgtype, msgtype: _drop_none(payload)}
        if kf_account:
            body["customservice"] = {"kf_account": kf_account}
        return self.client.post("/cgi-bin/message/custom/send", body)

    def send_text(self, openid: str, content: str, *, kf_account: str | None = None) -> dict[str, Any]:
        """A text message: ``POST /cgi-bin/message/custom/send`` (msgtype text)."""
        return self.send(openid, "text", {"content": content}, kf_account=kf_account)

    def send_image(self, openid: str, media_id: str, *, kf_account: str | None = None) -> dict[str, Any]:
        """An uploaded image: ``POST /cgi-bin/message/custom/send`` (msgtype image)."""
        return self.send(openid, "image", {"media_id": media_id}, kf_account=kf_account)

    def send_voice(self, openid: str, media_id: str, *, kf_account: str | None = None) -> dict[str, Any]:
        """An uploaded voice clip: ``POST /cgi-bin/message/custom/send`` (msgtype voice)."""
        return self.send(openid, "voice", {"media_id": media_id}, kf_account=kf_account)

    def send_video(
        self,
        openid: str,
        media_id: str,
        thumb_media_id: str | None = None,
        title: str | None = None,
        description: str | None = None,
        *,
        kf_account: str | None = None,
    ) -> dict[str, Any]:
        """An uploaded video: ``POST /cgi-bin/message/custom/send`` (msgtype video)."""
        payload = {
            "media_id": media_id,
            "thumb_media_id": thumb_media_id,
            "title": title,
            "description": description,
        }
        return self.send(openid, "video", payload, kf_account=kf_account)

    def send_music(
        self,
        openid: str,
        musicurl: str,
        hqmusicurl: str,
        thumb_media_id: str,
        title: str | None = None,
        description: str | None = None,
        *,
        kf_account: str | None = None,
    ) -> dict[str, Any]:
        """A music card: ``POST /cgi-bin/message/custom/send`` (msgtype music)."""
        payload = {
            "title": title,
            "description": description,
            "musicurl": musicurl,
            "hqmusicurl": hqmusicurl,
            "thumb_media_id": thumb_media_id,
        }
        return self.send(openid, "music", payload, kf_account=kf_account)

    def send_news(
        self,
        openid: str,
        title: str,
        url: str,
        description: str | None = None,
        picurl: str | None = None,
        *,
        kf_account: str | None = None,
    ) -> dict[str, Any]:
        """One link article (WeChat allows only one): ``POST /cgi-bin/message/custom/send`` (news)."""
        article = _drop_none({"title": title, "description": description, "url": url, "picurl": picurl})
        return self.send(openid, "news", {"articles": [article]}, kf_account=kf_account)

    def send_mpnews(self, openid: str, media_id: str, *, kf_account: str | None = None) -> dict[str, Any]:
        """An article by media_id (old news material): ``POST /cgi-bin/message/custom/send`` (mpnews).

        Permanent news material is gone since 2022; send a published article with
        :meth:`send_mpnewsarticle` instead.
        """
        return self.send(openid, "mpnews", {"media_id": media_id}, kf_account=kf_account)

    def send_mpnewsarticle(
        self, openid: str, article_id: str, *, kf_account: str | None = None
    ) -> dict[str, Any]:
        """A published article (``article_id`` from ``wx.freepublish``): ``POST /cgi-bin/message/custom/send``
        with msgtype ``mpnewsarticle``.
        """
        return self.send(openid, "mpnewsarticle", {"article_id": article_id}, kf_account=kf_account)

    def send_menu(
        self,
        openid: str,
        items: Sequence[tuple[str, str]] | Mapping[str, str],
        head_content: str = "",
        tail_content: str = "",
        *,
        kf_account: str | None = None,
    ) -> dict[str, Any]:
        """A tappable choice list: ``POST /cgi-bin/message/custom/send`` (msgtype msgmenu).

        ``items`` are ``(id, content)`` pairs (or a dict id -> content); a tap comes back as a text
        message whose ``bizmsgmenuid`` is the id.
        """
        pairs = items.items() if isinstance(items, Mapping) else items
        choices = [{"id": str(i), "content": content} for i, content in pairs]
        if not choices:
            raise ValueError("send_menu: give at least one (id, content) item")
        payload = {"head_content": head_content, "list": choices, "tail_content": tail_content}
        return self.send(openid, "msgmenu", payload, kf_account=kf_account)

    def send_miniprogram(
        self,
        openid: str,
        appid: str,
        pagepath: str,
        thumb_media_id: str,
        title: str | None = None,
        *,
        kf_account: str | None = None,
    ) -> dict[str, Any]:
        """A mini-program card: ``POST /cgi-bin/message/custom/send`` (msgtype miniprogrampage)."""
        payload = {"title": title, "appid": appid, "pagepath": pagepath, "thumb_media_id": thumb_media_id}
        return self.send(openid, "miniprogrampage", payload, kf_account=kf_account)

    def typing(self, openid: str, on: bool = True) -> dict[str, Any]:
        """Show or hide "typing..." to the user: ``POST /cgi-bin/message/custom/typing``."""
        command = "Typing" if on else "CancelTyping"
        return self.client.post("/cgi-bin/message/custom/typing", {"touser": openid, "command": command})
