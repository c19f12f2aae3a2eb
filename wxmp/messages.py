"""Incoming callback XML -> typed messages and events (WeChat's 接收普通消息 and 接收事件推送 pages,
developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html).

:func:`parse` reads the body with one hardened lxml parser (no network, no DTD, no entity
resolution, no huge trees) and refuses any document that carries a DOCTYPE. Every field lands in
``msg.raw`` (nested elements as dicts, repeated ones and ``<item>`` as lists); the typed attributes
(``msg.content``, ``msg.latitude``, ``msg.scan_result``...) are computed from ``raw`` when read, so a
message costs one dict and one small object however many attributes its class models.

Dispatch kinds (``msg.kinds``): a message answers to its ``MsgType`` (``"text"``, ``"location"``...);
an event to its lowercased ``Event`` name and to ``"event"``. WeChat uses ``LOCATION`` both as a
message type and as an event name, so the event's kind is ``"location_event"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

from lxml import etree

from .context import current_account
from .errors import ParseError

if TYPE_CHECKING:
    from .account import Account
    from .session import Session

__all__ = [
    "AnnualRenewEvent",
    "ClickEvent",
    "Event",
    "ImageMessage",
    "KfCloseSessionEvent",
    "KfCreateSessionEvent",
    "KfSwitchSessionEvent",
    "LinkMessage",
    "LocationEvent",
    "LocationMessage",
    "LocationSelectEvent",
    "MassSendJobFinishEvent",
    "Message",
    "NamingVerifyFailEvent",
    "NamingVerifySuccessEvent",
    "PicPhotoOrAlbumEvent",
    "PicSysPhotoEvent",
    "PicWeixinEvent",
    "PublishJobFinishEvent",
    "QualificationVerifyFailEvent",
    "QualificationVerifySuccessEvent",
    "ScanCodePushEvent",
    "ScanCodeWaitMsgEvent",
    "ScanEvent",
    "ShortVideoMessage",
    "SubscribeEvent",
    "SubscribeMsgChangeEvent",
    "SubscribeMsgPopupEvent",
    "SubscribeMsgSentEvent",
    "TemplateSendJobFinishEvent",
    "TextMessage",
    "UnsubscribeEvent",
    "VerifyExpiredEvent",
    "VideoMessage",
    "ViewEvent",
    "ViewMiniProgramEvent",
    "VoiceMessage",
    "from_dict",
    "parse",
    "parse_fields",
]

#: Built once: parsing is the hot path. lxml serialises use of one parser object internally.
_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    dtd_validation=False,
    remove_comments=True,
    remove_pis=True,
    collect_ids=False,
)

T = TypeVar("T")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _opt_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


class _Field(Generic[T]):
    """A typed attribute read lazily from ``raw``: ``content = _Field("Content", _text)``."""

    __slots__ = ("convert", "xml_name")

    def __init__(self, xml_name: str, convert: Callable[[Any], T]) -> None:
        self.xml_name = xml_name
        self.convert = convert

    @overload
    def __get__(self, obj: None, owner: type) -> _Field[T]: ...
    @overload
    def __get__(self, obj: Message, owner: type) -> T: ...
    def __get__(self, obj: Message | None, owner: type) -> T | _Field[T]:
        if obj is None:
            return self
        return self.convert(obj.raw.get(self.xml_name))


class _Nested(Generic[T]):
    """A typed attribute read from a nested element: ``_Nested("ScanCodeInfo", "ScanResult", _text)``."""

    __slots__ = ("convert", "inner", "outer")

    def __init__(self, outer: str, inner: str, convert: Callable[[Any], T]) -> None:
        self.outer = outer
        self.inner = inner
        self.convert = convert

    @overload
    def __get__(self, obj: None, owner: type) -> _Nested[T]: ...
    @overload
    def __get__(self, obj: Message, owner: type) -> T: ...
    def __get__(self, obj: Message | None, owner: type) -> T | _Nested[T]:
        if obj is None:
            return self
        block = obj.raw.get(self.outer)
        return self.convert(block.get(self.inner) if isinstance(block, dict) else None)


@dataclass(frozen=True)
class Message:
    """An incoming message; also the generic type of any ``MsgType`` wxmp does not model.

    ``raw`` holds every field as sent (strings; nested elements as dicts/lists). ``match`` is the
    regex match when the handler was selected by ``match=``.
    """

    raw: dict[str, Any]
    match: re.Match[str] | None = field(default=None, repr=False, compare=False)

    to_user_name = _Field("ToUserName", _text)
    from_user_name = _Field("FromUserName", _text)
    create_time = _Field("CreateTime", _int)
    msg_type = _Field("MsgType", _text)
    msg_id = _Field("MsgId", _opt_int)
    msg_data_id = _Field("MsgDataId", _opt_int)
    idx = _Field("Idx", _opt_int)

    @property
    def account(self) -> Account | None:
        """The account that received this message (while its handler runs; None elsewhere)."""
        return current_account()

    @property
    def session(self) -> Session:
        """The sender's conversation state (while its handler runs; see :mod:`wxmp.session`)."""
        from .session import current_session

        return current_session(self)

    @property
    def openid(self) -> str:
        """The sender's OpenID (alias of ``from_user_name``)."""
        return _text(self.raw.get("FromUserName"))

    @property
    def kinds(self) -> tuple[str, ...]:
        """The names this message answers to in ``router.on(kind)``."""
        return (self.msg_type.lower(),)

    @property
    def dedup_key(self) -> str:
        """WeChat's retry identity: sender + MsgId; for events FromUserName + CreateTime + Event (§2.3).

        The sender is part of the key even for messages: MsgId is only WeChat's to assign, and a
        push from another user that carries someone's MsgId must neither get their reply nor
        suppress their message.
        """
        raw = self.raw
        msg_id = raw.get("MsgId")
        if msg_id:
            return f"{raw.get('ToUserName', '')}:m:{raw.get('FromUserName', '')}:{msg_id}"
        return f"{self.raw.get('ToUserName', '')}:e:{self.from_user_name}:{self.create_time}:"


class TextMessage(Message):
    """A text message: ``content`` (and ``biz_msg_menu_id`` when a msgmenu item was tapped)."""

    content = _Field("Content", _text)
    biz_msg_menu_id = _Field("bizmsgmenuid", _opt_int)


class ImageMessage(Message):
    """An image: ``pic_url`` and ``media_id``."""

    pic_url = _Field("PicUrl", _text)
    media_id = _Field("MediaId", _text)


class VoiceMessage(Message):
    """A voice message: ``media_id``, ``format`` (amr/speex) and ``recognition`` (often empty)."""

    media_id = _Field("MediaId", _text)
    format = _Field("Format", _text)
    recognition = _Field("Recognition", _text)


class VideoMessage(Message):
    """A video: ``media_id`` and ``thumb_media_id``."""

    media_id = _Field("MediaId", _text)
    thumb_media_id = _Field("ThumbMediaId", _text)


class ShortVideoMessage(VideoMessage):
    """A short video (``shortvideo``): same fields as a video."""


class LocationMessage(Message):
    """A shared location: ``location_x`` (latitude), ``location_y`` (longitude), ``scale``, ``label``."""

    location_x = _Field("Location_X", _float)
    location_y = _Field("Location_Y", _float)
    latitude = _Field("Location_X", _float)
    longitude = _Field("Location_Y", _float)
    scale = _Field("Scale", _int)
    label = _Field("Label", _text)


class LinkMessage(Message):
    """A shared link: ``title``, ``description``, ``url``."""

    title = _Field("Title", _text)
    description = _Field("Description", _text)
    url = _Field("Url", _text)


class Event(Message):
    """An event (``MsgType=event``); also the generic type of any event wxmp does not model."""

    event = _Field("Event", _text)
    event_key = _Field("EventKey", _text)

    @property
    def kinds(self) -> tuple[str, ...]:
        name = self.event.lower()
        return ("location_event" if name == "location" else name, "event")

    @property
    def dedup_key(self) -> str:
        # WeChat's rule is FromUserName + CreateTime + Event; a retry is the same push, so adding
        # EventKey keeps retries together while two taps on different buttons in one second differ.
        raw = self.raw
        key = raw.get("EventKey")
        return (
            f"{raw.get('ToUserName', '')}:e:{raw.get('FromUserName', '')}:{self.create_time}:{self.event}"
            f":{key if isinstance(key, str) else ''}"
        )


class SubscribeEvent(Event):
    """A follow. From a parameterised QR code, ``scene`` is the EventKey without ``qrscene_``."""

    ticket = _Field("Ticket", _text)

    @property
    def scene(self) -> str | None:
        """The QR scene value (``qrscene_`` stripped), or None for a plain follow."""
        key = self.event_key
        if key.startswith("qrscene_"):
            return key[len("qrscene_") :]
        return None


class UnsubscribeEvent(Event):
    """An unfollow (WeChat asks that the user's data be deleted)."""


class ScanEvent(Event):
    """A follower scanned a parameterised QR code: ``scene`` (= ``event_key``) and ``ticket``."""

    ticket = _Field("Ticket", _text)
    scene = _Field("EventKey", _text)


class LocationEvent(Event):
    """The reported location (``LOCATION`` event): ``latitude``, ``longitude``, ``precision``."""

    latitude = _Field("Latitude", _float)
    longitude = _Field("Longitude", _float)
    precision = _Field("Precision", _float)


class ClickEvent(Event):
    """A ``click`` menu button: ``event_key`` (alias ``key``) is the button's key."""

    key = _Field("EventKey", _text)


class ViewEvent(Event):
    """A ``view`` menu button: ``url`` (= ``event_key``) and ``menu_id`` for conditional menus."""

    url = _Field("EventKey", _text)
    menu_id = _Field("MenuId", _opt_int)


class _ScanCodeEvent(Event):
    key = _Field("EventKey", _text)
    scan_type = _Nested("ScanCodeInfo", "ScanType", _text)
    scan_result = _Nested("ScanCodeInfo", "ScanResult", _text)


class ScanCodePushEvent(_ScanCodeEvent):
    """``scancode_push`` menu: ``scan_type`` (qrcode/barcode) and ``scan_result``."""


class ScanCodeWaitMsgEvent(_ScanCodeEvent):
    """``scancode_waitmsg`` menu: like ``scancode_push``, but the user waits for a reply."""


class _PicEvent(Event):
    key = _Field("EventKey", _text)
    count = _Nested("SendPicsInfo", "Count", _int)

    @property
    def pic_md5_sums(self) -> list[str]:
        """The MD5 of each sent picture (the pictures also arrive as image messages)."""
        info = self.raw.get("SendPicsInfo")
        pics = info.get("PicList") if isinstance(info, dict) else None
        items = pics.get("item") if isinstance(pics, dict) else None
        return [_text(i.get("PicMd5Sum")) for i in _as_list(items) if isinstance(i, dict)]


class PicSysPhotoEvent(_PicEvent):
    """``pic_sysphoto`` menu: the camera was used; ``count`` and ``pic_md5_sums``."""


class PicPhotoOrAlbumEvent(_PicEvent):
    """``pic_photo_or_album`` menu: ``count`` and ``pic_md5_sums``."""


class PicWeixinEvent(_PicEvent):
    """``pic_weixin`` menu (WeChat album): ``count`` and ``pic_md5_sums``."""


class LocationSelectEvent(Event):
    """``location_select`` menu: the picked place (``location_x``/``location_y``, ``label``, ``poiname``)."""

    key = _Field("EventKey", _text)
    location_x = _Nested("SendLocationInfo", "Location_X", _float)
    location_y = _Nested("SendLocationInfo", "Location_Y", _float)
    latitude = _Nested("SendLocationInfo", "Location_X", _float)
    longitude = _Nested("SendLocationInfo", "Location_Y", _float)
    scale = _Nested("SendLocationInfo", "Scale", _int)
    label = _Nested("SendLocationInfo", "Label", _text)
    poiname = _Nested("SendLocationInfo", "Poiname", _text)


class ViewMiniProgramEvent(Event):
    """``view_miniprogram`` menu: ``page_path`` (= ``event_key``) and ``menu_id``."""

    page_path = _Field("EventKey", _text)
    menu_id = _Field("MenuId", _opt_int)


class TemplateSendJobFinishEvent(Event):
    """Template message delivery result: ``msg_id`` (from ``MsgID``) and ``status``."""

    msg_id = _Field("MsgID", _opt_int)
    status = _Field("Status", _text)


class MassSendJobFinishEvent(Event):
    """Mass send result: ``msg_id``, ``status`` and the counts."""

    msg_id = _Field("MsgID", _opt_int)
    status = _Field("Status", _text)
    total_count = _Field("TotalCount", _int)
    filter_count = _Field("FilterCount", _int)
    sent_count = _Field("SentCount", _int)
    error_count = _Field("ErrorCount", _int)

    @property
    def copyright_check_result(self) -> dict[str, Any]:
        """The ``CopyrightCheckResult`` block as a dict (empty if absent)."""
        value = self.raw.get("CopyrightCheckResult")
        return value if isinstance(value, dict) else {}


class KfCreateSessionEvent(Event):
    """A customer-service agent took the session: ``kf_account``."""

    kf_account = _Field("KfAccount", _text)


class KfCloseSessionEvent(Event):
    """A customer-service session was closed: ``kf_account``."""

    kf_account = _Field("KfAccount", _text)


class KfSwitchSessionEvent(Event):
    """A customer-service session moved: ``from_kf_account`` -> ``to_kf_account``."""

    from_kf_account = _Field("FromKfAccount", _text)
    to_kf_account = _Field("ToKfAccount", _text)


class _SubscribeMsgEvent(Event):
    _block: ClassVar[str] = ""

    @property
    def items(self) -> list[dict[str, Any]]:
        """One dict per template in the event's ``List`` (TemplateId, SubscribeStatusString...)."""
        block = self.raw.get(self._block)
        entries = block.get("List") if isinstance(block, dict) else None
        return [e for e in _as_list(entries) if isinstance(e, dict)]


class SubscribeMsgPopupEvent(_SubscribeMsgEvent):
    """The user answered a subscription-notice popup: ``items``."""

    _block = "SubscribeMsgPopupEvent"


class SubscribeMsgChangeEvent(_SubscribeMsgEvent):
    """The user changed subscription-notice settings: ``items``."""

    _block = "SubscribeMsgChangeEvent"


class SubscribeMsgSentEvent(_SubscribeMsgEvent):
    """A subscription notice was delivered (or not): ``items``."""

    _block = "SubscribeMsgSentEvent"


class PublishJobFinishEvent(Event):
    """A ``wx.freepublish.submit`` job ended: ``publish_id``, ``publish_status``, ``article_id``...

    ``publish_status``: 0 published, 2 refused by the originality check, 3 failed, 4 refused by the
    platform's review, 5/6 deleted/banned after publishing (wxmp.api.freepublish.PUBLISH_STATUS);
    ``fail_idx`` lists the articles (from 1) that failed (developers.weixin.qq.com/doc/offiaccount/
    Publish/Callback_on_finish.html).
    """

    publish_id = _Nested("PublishEventInfo", "publish_id", _text)
    publish_status = _Nested("PublishEventInfo", "publish_status", _int)
    article_id = _Nested("PublishEventInfo", "article_id", _text)

    @property
    def ok(self) -> bool:
        """Whether the articles were published (status 0)."""
        return self.publish_status == 0 and bool(self.article_id)

    @property
    def article_urls(self) -> list[str]:
        """URLs of the published articles, in order."""
        info = self.raw.get("PublishEventInfo")
        detail = info.get("article_detail") if isinstance(info, dict) else None
        items = detail.get("item") if isinstance(detail, dict) else None
        return [_text(i.get("article_url")) for i in _as_list(items) if isinstance(i, dict)]

    @property
    def fail_idx(self) -> list[int]:
        """Positions (from 1) of the articles that failed, when the job did not publish."""
        info = self.raw.get("PublishEventInfo")
        values = info.get("fail_idx") if isinstance(info, dict) else None
        return [n for n in (_opt_int(v) for v in _as_list(values)) if n is not None]


class _VerifyEvent(Event):
    expired_time = _Field("ExpiredTime", _opt_int)
    fail_time = _Field("FailTime", _opt_int)
    fail_reason = _Field("FailReason", _text)


class QualificationVerifySuccessEvent(_VerifyEvent):
    """The account's qualification verification (资质认证) passed: ``expired_time`` (Unix time)."""


class QualificationVerifyFailEvent(_VerifyEvent):
    """Qualification verification failed: ``fail_time`` and ``fail_reason``."""


class NamingVerifySuccessEvent(_VerifyEvent):
    """Name verification (名称认证) passed: ``expired_time``."""


class NamingVerifyFailEvent(_VerifyEvent):
    """Name verification failed (the qualification stays): ``fail_time`` and ``fail_reason``."""


class AnnualRenewEvent(_VerifyEvent):
    """The yearly re-verification is due: ``expired_time`` is when the verification lapses."""


class VerifyExpiredEvent(_VerifyEvent):
    """The verification lapsed: ``expired_time``; verified-only APIs stop working."""


MESSAGE_TYPES: dict[str, type[Message]] = {
    "text": TextMessage,
    "image": ImageMessage,
    "voice": VoiceMessage,
    "video": VideoMessage,
    "shortvideo": ShortVideoMessage,
    "location": LocationMessage,
    "link": LinkMessage,
}

#: Keyed by the lowercased ``Event`` value (WeChat mixes ``SCAN``, ``CLICK`` and ``subscribe``).
EVENT_TYPES: dict[str, type[Event]] = {
    "subscribe": SubscribeEvent,
    "unsubscribe": UnsubscribeEvent,
    "scan": ScanEvent,
    "location": LocationEvent,
    "click": ClickEvent,
    "view": ViewEvent,
    "scancode_push": ScanCodePushEvent,
    "scancode_waitmsg": ScanCodeWaitMsgEvent,
    "pic_sysphoto": PicSysPhotoEvent,
    "pic_photo_or_album": PicPhotoOrAlbumEvent,
    "pic_weixin": PicWeixinEvent,
    "location_select": LocationSelectEvent,
    "view_miniprogram": ViewMiniProgramEvent,
    "templatesendjobfinish": TemplateSendJobFinishEvent,
    "masssendjobfinish": MassSendJobFinishEvent,
    "kf_create_session": KfCreateSessionEvent,
    "kf_close_session": KfCloseSessionEvent,
    "kf_switch_session": KfSwitchSessionEvent,
    "subscribe_msg_popup_event": SubscribeMsgPopupEvent,
    "subscribe_msg_change_event": SubscribeMsgChangeEvent,
    "subscribe_msg_sent_event": SubscribeMsgSentEvent,
    "publishjobfinish": PublishJobFinishEvent,
    "qualification_verify_success": QualificationVerifySuccessEvent,
    "qualification_verify_fail": QualificationVerifyFailEvent,
    "naming_verify_success": NamingVerifySuccessEvent,
    "naming_verify_fail": NamingVerifyFailEvent,
    "annual_renew": AnnualRenewEvent,
    "verify_expired": VerifyExpiredEvent,
}


def _element(el: Any, headers: bool = False) -> dict[str, Any]:
    """``el``'s children as a dict; ``headers``: strip the layout around :data:`HEADER_FIELDS` values."""
    out: dict[str, Any] = {}
    for child in el:
        tag = child.tag
        value: Any = _element(child) if len(child) else (child.text or "")
        padded = value.__class__ is str and value and (value[0].isspace() or value[-1].isspace())
        if headers and padded and tag in HEADER_FIELDS:
            value = value.strip()
        if tag == "item":
            out.setdefault("item", []).append(value)
        elif tag in out:
            prev = out[tag]
            if isinstance(prev, list):
                prev.append(value)
            else:
                out[tag] = [prev, value]
        else:
            out[tag] = value
    return out


#: Fields that name or identify a push: whitespace around their value is layout, not data. WeChat's
#: own card-event samples write ``<MsgType> <![CDATA[event]]> </MsgType>``; user text (Content,
#: Label...) keeps its spaces.
HEADER_FIELDS = frozenset(
    {"ToUserName", "FromUserName", "CreateTime", "MsgType", "Event", "MsgId", "MsgID", "MsgDataId", "Idx"}
)


def parse_fields(body: bytes | str) -> dict[str, Any]:
    """Parse callback XML into a dict of its fields with the hardened parser.

    Raises :class:`~wxmp.errors.ParseError` for malformed XML and for any document with a DOCTYPE
    (entity tricks such as XXE and billion laughs need one).
    """
    return _element(_root(body))


def _root(body: bytes | str) -> Any:
    if isinstance(body, str):
        body = body.encode()
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        raise ParseError("malformed XML") from None
    except ValueError:
        raise ParseError("not an XML document") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise ParseError("DOCTYPE refused")
    return root


def from_dict(raw: dict[str, Any]) -> Message:
    """Build the typed message for an already parsed field dict.

    Whitespace around the value of a :data:`HEADER_FIELDS` element is dropped, so a padded
    ``<MsgType> <![CDATA[event]]> </MsgType>`` reads as ``event``.
    """
    padded = [
        n for n in HEADER_FIELDS.intersection(raw) if isinstance(raw[n], str) and raw[n] != raw[n].strip()
    ]
    if padded:
        raw = {**raw, **{n: raw[n].strip() for n in padded}}
    return _typed(raw)


def _typed(raw: dict[str, Any]) -> Message:
    """The message class for ``raw``, whose header fields are already stripped."""
    msg_type = raw.get("MsgType")
    if not isinstance(msg_type, str) or not msg_type:
        raise ParseError("not a WeChat message: no MsgType")
    msg_type = msg_type.lower()
    if msg_type == "event":
        name = raw.get("Event")
        return EVENT_TYPES.get(name.lower() if isinstance(name, str) else "", Event)(raw)
    return MESSAGE_TYPES.get(msg_type, Message)(raw)


def parse(body: bytes | str) -> Message:
    """Parse a (decrypted) callback body into a :class:`Message` or :class:`Event` subclass."""
    return _typed(_element(_root(body), headers=True))
