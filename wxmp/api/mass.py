"""Mass sending (群发): ``wx.mass`` (``/cgi-bin/message/mass/*``).

Every ``send_*`` picks the endpoint from its audience: ``tag_id=`` or ``to_all=True`` go through
``sendall``; ``openids=`` (2 to 10,000 of them, checked here: WeChat answers 40130 to one) go
through ``send``. An article is sent from a draft (``wx.draft``) by its media_id. Success means
the job was queued; the result arrives later as the ``MASSSENDJOBFINISH`` event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from ._base import ApiGroup

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Audience", "MassAPI"]

MIN_OPENIDS = 2
MAX_OPENIDS = 10_000
MAX_CLIENTMSGID = 64  # bytes


class Audience(TypedDict, total=False):
    """Who receives a mass message and how: the keyword arguments every ``send_*`` takes.

    ``tag_id`` (followers with that tag) or ``to_all=True`` send through ``sendall``; ``openids``
    (2 to 10,000) through ``send``; exactly one of the three. ``send_ignore_reprint`` sends an
    article even when WeChat judges it a reprint; ``clientmsgid`` (up to 64 bytes) makes the send
    idempotent: a repeat raises :class:`~wxmp.errors.DuplicateClientMsgIdError` with the job's id.
    """

    tag_id: int | None
    to_all: bool
    openids: Iterable[str] | None
    send_ignore_reprint: bool
    clientmsgid: str | None


class MassAPI(ApiGroup):
    """Mass messages to a tag, to every follower, or to a list of openids; previews and status."""

    def send(
        self,
        msgtype: str,
        payload: Mapping[str, Any],
        *,
        payload_key: str | None = None,
        **audience: Unpack[Audience],
    ) -> dict[str, Any]:
        """Any msgtype: ``POST /cgi-bin/message/mass/sendall`` (tag, all) or ``.../send`` (openids).

        The payload goes under ``payload_key`` (default: the msgtype; image sends use ``images``).
        A reused ``clientmsgid`` raises :class:`~wxmp.errors.DuplicateClientMsgIdError` (45065),
        whose ``msg_id`` is the existing job's, or, within a minute of the first,
        :class:`~wxmp.errors.RetryTooSoonError` (45066).
        """
        tag_id = audience.get("tag_id")
        to_all = audience.get("to_all", False)
        openids = audience.get("openids")
        clientmsgid = audience.get("clientmsgid")
        body: dict[str, Any] = {"msgtype": msgtype, payload_key or msgtype: dict(payload)}
        if openids is not None:
            if tag_id is not None or to_all:
                raise ValueError("mass send: give openids, or tag_id / to_all, not both")
            touser = [openids] if isinstance(openids, str) else list(openids)
            if not MIN_OPENIDS <= len(touser) <= MAX_OPENIDS:
                raise ValueError(
                    f"mass send: {len(touser)} openids; WeChat needs {MIN_OPENIDS} to {MAX_OPENIDS} "
                    "(send a single user a customer-service message instead: wx.message)"
                )
            body["touser"] = touser
            path = "/cgi-bin/message/mass/send"
        else:
            if to_all and tag_id is not None:
                raise ValueError("mass send: to_all=True sends to everyone; drop tag_id")
            if not to_all and tag_id is None:
                raise ValueError("mass send: say who receives it: tag_id=, to_all=True or openids=")
            body["filter"] = {"is_to_all": True} if to_all else {"is_to_all": False, "tag_id": tag_id}
            path = "/cgi-bin/message/mass/sendall"
        body["send_ignore_reprint"] = 1 if audience.get("send_ignore_reprint") else 0
        if clientmsgid is not None:
            if not clientmsgid or len(clientmsgid.encode("utf-8")) > MAX_CLIENTMSGID:
                raise ValueError(f"mass send: clientmsgid must be 1 to {MAX_CLIENTMSGID} bytes")
            body["clientmsgid"] = clientmsgid
        return self.client.post(path, body)

    def send_text(
        self,
        content: str,
        **audience: Unpack[Audience],
    ) -> dict[str, Any]:
        """Mass text: ``POST /cgi-bin/message/mass/sendall`` or ``/send`` (msgtype text)."""
        return self.send(
            "text",
            {"content": content},
            **audience,
        )

    def send_image(
        self,
        media_ids: str | Sequence[str],
        *,
        recommend: str | None = None,
        need_open_comment: bool = False,
        only_fans_can_comment: bool = False,
        legacy: bool = False,
        **audience: Unpack[Audience],
    ) -> dict[str, Any]:
        """Mass image(s): ``POST /cgi-bin/message/mass/sendall`` or ``/send`` (msgtype image).

        WeChat's current documentation (developers.weixin.qq.com/doc/offiaccount/Message_Management/
        Batch_Sends_and_Originality_Checks.html) describes ``"images": {"media_ids": [...],
        "recommend", "need_open_comment", "only_fans_can_comment"}``, which is what this sends.
        ``legacy=True`` sends the older ``"image": {"media_id"}`` form (one image, no comment
        options), which WeChat documented until then and still accepts (?).
        """
        ids = [media_ids] if isinstance(media_ids, str) else list(media_ids)
        if not ids:
            raise ValueError("send_image: give at least one media_id")
        options = recommend is not None or need_open_comment or only_fans_can_comment
        if legacy:
            if len(ids) != 1 or options:
                raise ValueError("send_image(legacy=True): one media_id, no recommend/comment options")
            payload: dict[str, Any] = {"media_id": ids[0]}
        else:
            payload = {
                "media_ids": ids,
                "need_open_comment": 1 if need_open_comment else 0,
                "only_fans_can_comment": 1 if only_fans_can_comment else 0,
            }
            if recommend is not None:
                payload["recommend"] = recommend
        return self.send(
            "image",
            payload,
            **audience,
            payload_key="image" if legacy else "images",
        )

    def send_voice(
        self,
        media_id: str,
        **audience: Unpack[Audience],
    ) -> dict[str, Any]:
        """Mass voice: ``POST /cgi-bin/message/mass/sendall`` or ``/send`` (msgtype voice)."""
        return self.send(
            "voice",
            {"media_id": media_id},
            **audience,
        )

    def send_mpnews(
        self,
        media_id: str,
        **audience: Unpack[Audience],
    ) -> dict[str, Any]:
        """Mass article from a draft: ``POST /cgi-bin/message/mass/sendall`` or ``/send`` (mpnews).

        ``media_id`` is a draft's (``wx.draft.add``): since 2022 permanent news material is gone and
        mass-sending an article takes a draft, which WeChat then publishes as a mass message.
        """
        return self.send(
            "mpnews",
            {"media_id": media_id},
            **audience,
        )

    def send_mpvideo(
        self,
        media_id: str,
        **audience: Unpack[Audience],
    ) -> dict[str, Any]:
        """Mass video (from :meth:`upload_video`): ``POST /cgi-bin/message/mass/sendall`` or ``/send``."""
        return self.send(
            "mpvideo",
            {"media_id": media_id},
            **audience,
        )

    def send_wxcard(
        self,
        card_id: str,
        **audience: Unpack[Audience],
    ) -> dict[str, Any]:
        """Mass card: ``POST /cgi-bin/message/mass/sendall`` or ``/send`` (msgtype wxcard)."""
        return self.send(
            "wxcard",
            {"card_id": card_id},
            **audience,
        )

    def upload_video(self, media_id: str, title: str, description: str = "") -> dict[str, Any]:
        """Turn an uploaded video into a mass-sendable one: ``POST /cgi-bin/media/uploadvideo``."""
        body = {"media_id": media_id, "title": title, "description": description}
        return self.client.post("/cgi-bin/media/uploadvideo", body)

    def preview(
        self,
        openid: str | None = None,
        *,
        wxname: str | None = None,
        text: str | None = None,
        mpnews: str | None = None,
        image: str | None = None,
        voice: str | None = None,
        mpvideo: str | None = None,
        wxcard: str | None = None,
    ) -> dict[str, Any]:
        """Send one preview to an openid or a WeChat ID: ``POST /cgi-bin/message/mass/preview``.

        Give exactly one message: ``text=`` content, or a media_id as ``mpnews=``, ``image=``,
        ``voice=``, ``mpvideo=``, or a card_id as ``wxcard=``.
        """
        if (openid is None) == (wxname is None):
            raise ValueError("preview: give openid or wxname (exactly one)")
        given = {
            "text": text and {"content": text},
            "mpnews": mpnews and {"media_id": mpnews},
            "image": image and {"media_id": image},
            "voice": voice and {"media_id": voice},
            "mpvideo": mpvideo and {"media_id": mpvideo},
            "wxcard": wxcard and {"card_id": wxcard},
        }
        chosen = [(kind, payload) for kind, payload in given.items() if payload]
        if len(chosen) != 1:
            raise ValueError("preview: give exactly one of text, mpnews, image, voice, mpvideo, wxcard")
        kind, payload = chosen[0]
        body: dict[str, Any] = {"msgtype": kind, kind: payload}
        if openid is not None:
            body["touser"] = openid
        else:
            body["towxname"] = wxname
        return self.client.post("/cgi-bin/message/mass/preview", body)

    def delete(self, msg_id: int | str, article_idx: int = 0) -> dict[str, Any]:
        """Delete a sent mass article (0: all of it): ``POST /cgi-bin/message/mass/delete``."""
        return self.client.post(
            "/cgi-bin/message/mass/delete", {"msg_id": msg_id, "article_idx": article_idx}
        )

    def status(self, msg_id: int | str) -> dict[str, Any]:
        """``{"msg_id", "msg_status"}`` of a mass job: ``POST /cgi-bin/message/mass/get``."""
        return self.client.post("/cgi-bin/message/mass/get", {"msg_id": msg_id})
