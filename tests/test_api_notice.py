"""wx.notice (subscription notices and the wxaapi/newtmpl library) over real HTTP against FakeWeChat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wxmp import ApiError, TemplateDataError
from wxmp.messages import SubscribeMsgChangeEvent, SubscribeMsgPopupEvent, SubscribeMsgSentEvent, parse
from wxmp.testing import FakeWeChat
from wxmp.testing.fake_api.notice import accept, notice_templates, reject, sent_notices

BIZSEND = "/cgi-bin/message/subscribe/bizsend"
DATA = Path(__file__).parent / "data"


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    fake_wechat.add_user("oFAN")
    return make_app(fake_wechat)[1]


def test_library_browse_add_list_delete(wx: Any, fake_wechat: FakeWeChat) -> None:
    categories = wx.notice.get_category()
    assert {"id": 616, "name": "服装/鞋/箱包"} in categories
    titles = wx.notice.get_pub_titles([616, 2], limit=2)
    assert titles["count"] == 3 and len(titles["data"]) == 2
    assert fake_wechat.calls("/wxaapi/newtmpl/getpubtemplatetitles")[0].args["ids"] == "616,2"
    keywords = wx.notice.get_pub_keywords(99)
    assert [k["name"] for k in keywords] == ["商品名称", "快递单号", "发货时间"]

    pri_id = wx.notice.add_template(99, [k["kid"] for k in keywords], scene_desc="发货后通知")
    assert fake_wechat.calls("/wxaapi/newtmpl/addtemplate")[0].json == {
        "tid": "99",
        "kidList": [1, 2, 3],
        "sceneDesc": "发货后通知",
    }
    (listed,) = wx.notice.get_templates()
    assert listed["priTmplId"] == pri_id and "{{thing1.DATA}}" in listed["content"]
    wx.notice.delete_template(pri_id)
    assert wx.notice.get_templates() == []
    with pytest.raises(ApiError) as info:
        wx.notice.delete_template(pri_id)
    assert info.value.errcode == 20001


def test_library_errors(wx: Any) -> None:
    with pytest.raises(ValueError, match="kid_list"):
        wx.notice.add_template(99, [1])
    with pytest.raises(ValueError, match="scene_desc"):
        wx.notice.add_template(99, [1, 2], scene_desc="太" * 16)
    with pytest.raises(ValueError, match="limit"):
        wx.notice.get_pub_titles([616], limit=31)
    for call, errcode in (
        (lambda: wx.notice.get_pub_titles([999]), 200019),
        (lambda: wx.notice.get_pub_keywords(12345), 200014),
        (lambda: wx.notice.add_template(99, [1, 9]), 200020),
    ):
        with pytest.raises(ApiError) as info:
            call()
        assert info.value.errcode == errcode


def test_send_after_the_user_accepts(wx: Any, fake_wechat: FakeWeChat) -> None:
    pri_id = wx.notice.add_template(99, [1, 2, 3])
    data = {"thing1": "春季新款外套", "character_string2": "SF1234567890", "time3": "2026年3月1日 15:01"}
    with pytest.raises(ApiError) as info:  # not accepted yet
        wx.notice.send("oFAN", pri_id, data)
    assert info.value.errcode == 43101
    accept(fake_wechat, "oFAN", pri_id)
    wx.notice.send("oFAN", pri_id, data, page="https://shop.example.com/o/1")
    (call,) = fake_wechat.calls(BIZSEND)[1:]
    assert call.json == {
        "touser": "oFAN",
        "template_id": pri_id,
        "data": {k: {"value": v} for k, v in data.items()},
        "page": "https://shop.example.com/o/1",
    }
    assert sent_notices(fake_wechat) == [call.json]
    reject(fake_wechat, "oFAN", pri_id)
    with pytest.raises(ApiError) as info:
        wx.notice.send("oFAN", pri_id, data)
    assert info.value.errcode == 43101


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("thing1", "超" * 21, "21 characters; at most 20"),
        ("character_string2", "x" * 33, "at most 32"),
        ("character_string2", "有中文", "letters, digits or symbols"),
        ("time3", "下午三点", "a time"),
        ("thing1", "两行\n文字", "line breaks"),
    ],
)
def test_values_are_checked_before_the_call(
    wx: Any, fake_wechat: FakeWeChat, key: str, value: str, message: str
) -> None:
    pri_id = wx.notice.add_template(99, [1, 2, 3])
    accept(fake_wechat, "oFAN", pri_id)
    data = {"thing1": "外套", "character_string2": "SF1", "time3": "15:01", key: value}
    with pytest.raises(TemplateDataError, match=message) as info:
        wx.notice.send("oFAN", pri_id, data)
    assert info.value.errcode == 47003 and key in str(info.value)
    assert fake_wechat.count(BIZSEND) == 0
    # The fake refuses the same values (sent around the local check).
    body = {"touser": "oFAN", "template_id": pri_id, "data": {k: {"value": v} for k, v in data.items()}}
    with pytest.raises(TemplateDataError):
        wx.client.post(BIZSEND, body)


def test_fake_wants_the_templates_keys(wx: Any, fake_wechat: FakeWeChat) -> None:
    pri_id = wx.notice.add_template(99, [1, 3])
    accept(fake_wechat, "oFAN", pri_id)
    assert set(notice_templates(fake_wechat)[pri_id]["keys"]) == {"thing1", "time2"}
    with pytest.raises(TemplateDataError):
        wx.notice.send("oFAN", pri_id, {"thing1": "外套"})
    with pytest.raises(ApiError) as info:
        wx.notice.send("oFAN", "NO_SUCH", {"thing1": "外套"})
    assert info.value.errcode == 40037


def test_the_three_events_are_typed() -> None:
    popup = parse((DATA / "event_subscribe_msg_popup_event.xml").read_bytes())
    assert isinstance(popup, SubscribeMsgPopupEvent)
    assert [(i["TemplateId"][:4], i["SubscribeStatusString"]) for i in popup.items] == [
        ("VRR0", "accept"),
        ("9nLI", "reject"),
    ]
    change = parse((DATA / "event_subscribe_msg_change_event.xml").read_bytes())
    assert (
        isinstance(change, SubscribeMsgChangeEvent) and change.items[0]["SubscribeStatusString"] == "reject"
    )
    sent = parse((DATA / "event_subscribe_msg_sent_event.xml").read_bytes())
    assert isinstance(sent, SubscribeMsgSentEvent) and sent.items[0]["ErrorStatus"] == "success"
