"""Parsing: every message and event type of WeChat's 接收普通消息 and 接收事件推送 pages, developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html from captured-looking samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wxmp import messages as m
from wxmp.errors import ParseError

DATA = Path(__file__).parent / "data"


def load(name: str) -> m.Message:
    return m.parse((DATA / name).read_bytes())


def test_common_header_is_typed() -> None:
    msg = load("text.xml")
    assert msg.to_user_name == "gh_3a8c1f2b9d07"
    assert msg.from_user_name == msg.openid == "oQ8Xk5Yb2pN7dLrT0vWmZsH3cE1A"
    assert msg.create_time == 1714036504
    assert msg.msg_type == "text"
    assert msg.msg_id == 24536428163871526
    assert msg.match is None


EXPECTED: list[tuple[str, type[m.Message], tuple[str, ...], dict[str, Any]]] = [
    ("text.xml", m.TextMessage, ("text",), {"content": "你好，wxmp"}),
    (
        "image.xml",
        m.ImageMessage,
        ("image",),
        {
            "pic_url": "http://mmbiz.qpic.cn/mmbiz_jpg/5Hq0Fz2WcIbYw/0",
            "media_id": "Ht2e3h6kdEOpGXvm0Hl9HiNmRJUuXdg8r2ZjWwE5kaQ",
        },
    ),
    (
        "voice.xml",
        m.VoiceMessage,
        ("voice",),
        {"format": "amr", "recognition": "腾讯微信团队", "msg_id": 24536428163871528},
    ),
    (
        "video.xml",
        m.VideoMessage,
        ("video",),
        {"media_id": "p3QWJz0bXjr5Cf9rU", "thumb_media_id": "tH1o2z9XkQeYb"},
    ),
    ("shortvideo.xml", m.ShortVideoMessage, ("shortvideo",), {"thumb_media_id": "svth9XkQeYb"}),
    (
        "location.xml",
        m.LocationMessage,
        ("location",),
        {
            "location_x": 23.134521,
            "location_y": 113.358803,
            "latitude": 23.134521,
            "longitude": 113.358803,
            "scale": 20,
            "label": "广州市天河区天河路",
        },
    ),
    ("link.xml", m.LinkMessage, ("link",), {"title": "公众平台官网链接", "url": "https://mp.weixin.qq.com/"}),
    ("unknown_type.xml", m.Message, ("miniprogrampage",), {"msg_id": 24536428163871533}),
    (
        "event_subscribe.xml",
        m.SubscribeEvent,
        ("subscribe", "event"),
        {"event": "subscribe", "event_key": "", "scene": None},
    ),
    (
        "event_subscribe_qr.xml",
        m.SubscribeEvent,
        ("subscribe", "event"),
        {"scene": "123123", "event_key": "qrscene_123123"},
    ),
    ("event_unsubscribe.xml", m.UnsubscribeEvent, ("unsubscribe", "event"), {"event": "unsubscribe"}),
    (
        "event_scan.xml",
        m.ScanEvent,
        ("scan", "event"),
        {"event": "SCAN", "scene": "123123", "event_key": "123123"},
    ),
    (
        "event_location.xml",
        m.LocationEvent,
        ("location_event", "event"),
        {"latitude": 23.137466, "longitude": 113.352425, "precision": 119.38504},
    ),
    (
        "event_click.xml",
        m.ClickEvent,
        ("click", "event"),
        {"event_key": "V1001_TODAY_MUSIC", "key": "V1001_TODAY_MUSIC"},
    ),
    ("event_view.xml", m.ViewEvent, ("view", "event"), {"url": "https://www.qq.com/", "menu_id": 208396938}),
    (
        "event_scancode_push.xml",
        m.ScanCodePushEvent,
        ("scancode_push", "event"),
        {"scan_type": "qrcode", "scan_result": "1"},
    ),
    (
        "event_scancode_waitmsg.xml",
        m.ScanCodeWaitMsgEvent,
        ("scancode_waitmsg", "event"),
        {"scan_type": "barcode", "scan_result": "EAN_13,6901234567892", "event_key": "rselfmenu_0_0"},
    ),
    (
        "event_pic_sysphoto.xml",
        m.PicSysPhotoEvent,
        ("pic_sysphoto", "event"),
        {"count": 1, "pic_md5_sums": ["1b5f7c23b5bf75682a53e7b6d163e185"]},
    ),
    (
        "event_pic_photo_or_album.xml",
        m.PicPhotoOrAlbumEvent,
        ("pic_photo_or_album", "event"),
        {
            "count": 2,
            "pic_md5_sums": ["5a75aaca956d97be686719218f275c6b", "0c5aa8a2e3c5b8bd2d4d0e6ce1b1a0f3"],
        },
    ),
    ("event_pic_weixin.xml", m.PicWeixinEvent, ("pic_weixin", "event"), {"count": 1}),
    (
        "event_location_select.xml",
        m.LocationSelectEvent,
        ("location_select", "event"),
        {
            "location_x": 23.0,
            "location_y": 113.0,
            "scale": 15,
            "label": " 广州市海珠区客村艺苑路 106号",
            "poiname": "",
        },
    ),
    (
        "event_view_miniprogram.xml",
        m.ViewMiniProgramEvent,
        ("view_miniprogram", "event"),
        {"page_path": "pages/index/index", "menu_id": None},
    ),
    (
        "event_templatesendjobfinish.xml",
        m.TemplateSendJobFinishEvent,
        ("templatesendjobfinish", "event"),
        {"msg_id": 200163836, "status": "failed:user block"},
    ),
    (
        "event_masssendjobfinish.xml",
        m.MassSendJobFinishEvent,
        ("masssendjobfinish", "event"),
        {"msg_id": 1000001625, "status": "err(30003)", "total_count": 0, "error_count": 0},
    ),
    (
        "event_kf_create_session.xml",
        m.KfCreateSessionEvent,
        ("kf_create_session", "event"),
        {"kf_account": "test1@test"},
    ),
    (
        "event_kf_close_session.xml",
        m.KfCloseSessionEvent,
        ("kf_close_session", "event"),
        {"kf_account": "test1@test"},
    ),
    (
        "event_kf_switch_session.xml",
        m.KfSwitchSessionEvent,
        ("kf_switch_session", "event"),
        {"from_kf_account": "test1@test", "to_kf_account": "test2@test"},
    ),
    (
        "event_subscribe_msg_popup_event.xml",
        m.SubscribeMsgPopupEvent,
        ("subscribe_msg_popup_event", "event"),
        {},
    ),
    (
        "event_subscribe_msg_change_event.xml",
        m.SubscribeMsgChangeEvent,
        ("subscribe_msg_change_event", "event"),
        {},
    ),
    (
        "event_subscribe_msg_sent_event.xml",
        m.SubscribeMsgSentEvent,
        ("subscribe_msg_sent_event", "event"),
        {},
    ),
    (
        "event_publishjobfinish.xml",
        m.PublishJobFinishEvent,
        ("publishjobfinish", "event"),
        {
            "publish_id": "2247503051",
            "publish_status": 0,
            "article_urls": ["ARTICLE_URL"],
            "ok": True,
            "fail_idx": [],
        },
    ),
    (
        "event_publishjobfinish_fail.xml",
        m.PublishJobFinishEvent,
        ("publishjobfinish", "event"),
        {"publish_status": 2, "fail_idx": [1, 2], "ok": False, "article_id": "", "article_urls": []},
    ),
    (
        "event_qualification_verify_success.xml",
        m.QualificationVerifySuccessEvent,
        ("qualification_verify_success", "event"),
        {"expired_time": 1745572504},
    ),
    (
        "event_qualification_verify_fail.xml",
        m.QualificationVerifyFailEvent,
        ("qualification_verify_fail", "event"),
        {"fail_time": 1714036504, "fail_reason": "营业执照信息不清晰"},
    ),
    (
        "event_naming_verify_success.xml",
        m.NamingVerifySuccessEvent,
        ("naming_verify_success", "event"),
        {"expired_time": 1745572504},
    ),
    (
        "event_naming_verify_fail.xml",
        m.NamingVerifyFailEvent,
        ("naming_verify_fail", "event"),
        {"fail_time": 1714036504, "fail_reason": "名称与主体不符"},
    ),
    ("event_annual_renew.xml", m.AnnualRenewEvent, ("annual_renew", "event"), {"expired_time": 1745572504}),
    (
        "event_verify_expired.xml",
        m.VerifyExpiredEvent,
        ("verify_expired", "event"),
        {"expired_time": 1714036504},
    ),
    (
        "event_user_get_card_padded.xml",
        m.Event,
        ("user_get_card", "event"),
        {
            "event": "user_get_card",
            "openid": "oQ8Xk5Yb2pN7dLrT0vWmZsH3cE1A",
            "to_user_name": "gh_3a8c1f2b9d07",
        },
    ),
    ("event_unknown.xml", m.Event, ("user_get_card", "event"), {"event": "user_get_card"}),
]


@pytest.mark.parametrize(("name", "cls", "kinds", "attrs"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_every_sample(name: str, cls: type[m.Message], kinds: tuple[str, ...], attrs: dict[str, Any]) -> None:
    msg = load(name)
    assert type(msg) is cls
    assert msg.kinds == kinds
    for attr, value in attrs.items():
        assert getattr(msg, attr) == value, attr
    assert msg.create_time == 1714036504


def test_every_sample_file_is_covered() -> None:
    samples = {p.name for p in DATA.glob("*.xml") if not p.name.startswith("hostile_")}
    assert samples == {e[0] for e in EXPECTED}


def test_nested_fields_in_raw() -> None:
    mass = load("event_masssendjobfinish.xml")
    assert isinstance(mass, m.MassSendJobFinishEvent)
    result = mass.copyright_check_result
    assert result["Count"] == "2" and result["CheckState"] == "2"
    assert [i["OriginalArticleUrl"] for i in result["ResultList"]["item"]] == ["Url_1", "Url_2"]
    popup = load("event_subscribe_msg_popup_event.xml")
    assert isinstance(popup, m.SubscribeMsgPopupEvent)
    assert [i["SubscribeStatusString"] for i in popup.items] == ["accept", "reject"]
    sent = load("event_subscribe_msg_sent_event.xml")
    assert isinstance(sent, m.SubscribeMsgSentEvent)
    assert sent.items == [
        {
            "TemplateId": "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc",
            "MsgID": "1700827132819554304",
            "ErrorCode": "0",
            "ErrorStatus": "success",
        }
    ]


def test_unmodelled_fields_stay_in_raw() -> None:
    card = load("event_unknown.xml")
    assert card.raw["CardId"] == "po2VNuCuRo-8sxxxxxxxxxxx"
    assert card.raw["UserCardCode"] == "226009850808"
    page = load("unknown_type.xml")
    assert page.raw["PagePath"] == "pages/index"


def test_messages_are_frozen() -> None:
    msg = load("text.xml")
    with pytest.raises(AttributeError):
        msg.raw = {}  # type: ignore[misc]


def test_missing_numbers_do_not_crash() -> None:
    msg = m.parse(b"<xml><MsgType>location</MsgType><Location_X></Location_X></xml>")
    assert isinstance(msg, m.LocationMessage)
    assert msg.latitude == 0.0 and msg.scale == 0 and msg.msg_id is None and msg.create_time == 0


def test_dedup_keys() -> None:
    # The sender is part of a message's key (security review, finding 3).
    assert load("text.xml").dedup_key == "gh_3a8c1f2b9d07:m:oQ8Xk5Yb2pN7dLrT0vWmZsH3cE1A:24536428163871526"
    key = load("event_click.xml").dedup_key
    assert "oQ8Xk5Yb2pN7dLrT0vWmZsH3cE1A" in key and "1714036504" in key and "CLICK" in key


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<xml><MsgType>text</MsgType>",
        b"<xml><MsgType>text</MsgType></xml><xml/>",
        b"not xml at all",
        b"<xml><Content>hi</Content></xml>",  # no MsgType
    ],
)
def test_malformed(body: bytes) -> None:
    with pytest.raises(ParseError):
        m.parse(body)


@pytest.mark.parametrize("name", ["hostile_xxe_file.xml", "hostile_billion_laughs.xml"])
def test_doctype_refused(name: str) -> None:
    # libxml2 may already stop at the entity loop; either way nothing is expanded or fetched.
    with pytest.raises(ParseError):
        load(name)


def test_doctype_refused_in_utf16() -> None:
    body = (DATA / "hostile_xxe_file.xml").read_text().replace('encoding="utf-8"', 'encoding="utf-16"')
    with pytest.raises(ParseError):
        m.parse(body.encode("utf-16"))


def test_doctype_text_inside_content_is_fine() -> None:
    msg = m.parse(b"<xml><MsgType>text</MsgType><Content><![CDATA[<!DOCTYPE html>]]></Content></xml>")
    assert isinstance(msg, m.TextMessage) and msg.content == "<!DOCTYPE html>"


def test_whitespace_around_cdata_in_header_fields() -> None:
    # WeChat's own card-event samples pad header fields: <MsgType> <![CDATA[event]]> </MsgType>.
    plain = load("event_unknown.xml")
    padded = load("event_user_get_card_padded.xml")
    for attr in ("to_user_name", "openid", "create_time", "msg_type", "event", "dedup_key", "kinds"):
        assert getattr(padded, attr) == getattr(plain, attr), attr
    text = m.parse(
        b"<xml><ToUserName> <![CDATA[gh_1]]> </ToUserName><FromUserName>\n <![CDATA[oA]]>\n</FromUserName>"
        b"<CreateTime> 1 </CreateTime><MsgType> <![CDATA[text]]> </MsgType>"
        b"<Content><![CDATA[  two spaces  ]]></Content><MsgId> 42 </MsgId></xml>"
    )
    assert type(text) is m.TextMessage and text.openid == "oA" and text.msg_id == 42
    assert text.content == "  two spaces  "  # user text keeps its spaces
