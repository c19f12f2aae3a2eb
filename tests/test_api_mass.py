"""wx.mass over real HTTP against FakeWeChat."""

from __future__ import annotations

import time
from typing import Any

import pytest

from wxmp import ApiError, DuplicateClientMsgIdError, InvalidOpenIDError, RetryTooSoonError
from wxmp.testing import FakeWeChat
from wxmp.testing.clock import FakeClock
from wxmp.testing.fake_api.mass import mass_jobs
from wxmp.testing.fake_api.publish import drafts
from wxmp.testing.fake_api.user import add_followers

SENDALL = "/cgi-bin/message/mass/sendall"
SEND = "/cgi-bin/message/mass/send"


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    return make_app(fake_wechat)[1]


def test_send_text_to_everyone(wx: Any, fake_wechat: FakeWeChat) -> None:
    result = wx.mass.send_text("群发中文", to_all=True)
    assert result["errmsg"] == "send job submission success"
    (call,) = fake_wechat.calls(SENDALL)
    assert call.method == "POST" and call.args["access_token"] == wx.access_token
    assert call.json == {
        "msgtype": "text",
        "text": {"content": "群发中文"},
        "filter": {"is_to_all": True},
        "send_ignore_reprint": 0,
    }
    assert "群发中文".encode() in call.body and b"\\u" not in call.body
    assert mass_jobs(fake_wechat)[result["msg_id"]]["endpoint"] == "sendall"


def test_send_to_a_tag(wx: Any, fake_wechat: FakeWeChat) -> None:
    tag_id = wx.tag.create("VIP")["tag"]["id"]
    drafts(fake_wechat)["NEWS1"] = {"news_item": [], "update_time": 0}  # a draft's media_id
    result = wx.mass.send_mpnews("NEWS1", tag_id=tag_id, send_ignore_reprint=True, clientmsgid="job-1")
    assert "msg_data_id" in result
    assert fake_wechat.calls(SENDALL)[0].json == {
        "msgtype": "mpnews",
        "mpnews": {"media_id": "NEWS1"},
        "filter": {"is_to_all": False, "tag_id": tag_id},
        "send_ignore_reprint": 1,
        "clientmsgid": "job-1",
    }


def test_reused_clientmsgid(wx: Any, fake_wechat: FakeWeChat) -> None:
    clock = fake_wechat.clock = FakeClock(time.time())
    first = wx.mass.send_text("hi", to_all=True, clientmsgid="job-1")
    with pytest.raises(RetryTooSoonError) as soon:  # again within a minute: 45066
        wx.mass.send_text("hi", to_all=True, clientmsgid="job-1")
    assert soon.value.errcode == 45066
    clock.advance(61)
    with pytest.raises(DuplicateClientMsgIdError) as info:  # later: 45065 and the existing job
        wx.mass.send_text("hi", to_all=True, clientmsgid="job-1")
    assert info.value.errcode == 45065 and info.value.msg_id == first["msg_id"]
    assert info.value.rid and info.value.rid in info.value.errmsg
    assert len(mass_jobs(fake_wechat)) == 1


def test_send_to_openids_uses_send(wx: Any, fake_wechat: FakeWeChat) -> None:
    openids = add_followers(fake_wechat, 3)
    result = wx.mass.send_image("IMG1", openids=iter(openids))
    (call,) = fake_wechat.calls(SEND)
    assert call.json == {
        "msgtype": "image",
        "images": {"media_ids": ["IMG1"], "need_open_comment": 0, "only_fans_can_comment": 0},
        "touser": openids,
        "send_ignore_reprint": 0,
    }
    assert fake_wechat.count(SENDALL) == 0
    assert mass_jobs(fake_wechat)[result["msg_id"]]["endpoint"] == "send"


@pytest.mark.parametrize(
    ("method", "arg", "msgtype", "payload"),
    [
        ("send_voice", "V1", "voice", {"media_id": "V1"}),
        ("send_mpvideo", "MV1", "mpvideo", {"media_id": "MV1"}),
        ("send_wxcard", "CARD1", "wxcard", {"card_id": "CARD1"}),
    ],
)
def test_siblings(
    wx: Any, fake_wechat: FakeWeChat, method: str, arg: str, msgtype: str, payload: Any
) -> None:
    getattr(wx.mass, method)(arg, to_all=True)
    assert fake_wechat.calls(SENDALL)[0].json[msgtype] == payload


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"openids": ["oA"]}, "1 openids; WeChat needs 2 to 10000"),
        ({"openids": "oA"}, "1 openids"),
        ({"openids": [f"o{i}" for i in range(10_001)]}, "10001 openids"),
        ({}, "say who receives it"),
        ({"to_all": True, "tag_id": 3}, "drop tag_id"),
        ({"openids": ["oA", "oB"], "to_all": True}, "not both"),
        ({"to_all": True, "clientmsgid": "x" * 65}, "clientmsgid"),
    ],
)
def test_local_validation(wx: Any, fake_wechat: FakeWeChat, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        wx.mass.send_text("hi", **kwargs)
    assert fake_wechat.count(SEND) + fake_wechat.count(SENDALL) == 0


def test_fake_answers_40130_to_a_single_openid(wx: Any, fake_wechat: FakeWeChat) -> None:
    add_followers(fake_wechat, 1)
    body = {"touser": ["oFAKE000001"], "msgtype": "text", "text": {"content": "x"}}
    with pytest.raises(ApiError) as info:
        wx.client.post(SEND, body)
    assert info.value.errcode == 40130


def test_unknown_openid_and_unknown_tag(wx: Any, fake_wechat: FakeWeChat) -> None:
    with pytest.raises(InvalidOpenIDError):
        wx.mass.send_text("hi", openids=["oX", "oY"])
    with pytest.raises(ApiError) as info:
        wx.mass.send_text("hi", tag_id=999)
    assert info.value.errcode == 45159


def test_preview_delete_status(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.add_user("oADMIN")
    drafts(fake_wechat)["NEWS1"] = {"news_item": [], "update_time": 0}
    wx.mass.preview("oADMIN", text="预览")
    wx.mass.preview(wxname="admin_wechat_id", mpnews="NEWS1")
    calls = fake_wechat.calls("/cgi-bin/message/mass/preview")
    assert [c.json for c in calls] == [
        {"msgtype": "text", "text": {"content": "预览"}, "touser": "oADMIN"},
        {"msgtype": "mpnews", "mpnews": {"media_id": "NEWS1"}, "towxname": "admin_wechat_id"},
    ]
    assert "预览".encode() in calls[0].body

    msg_id = wx.mass.send_mpnews("NEWS1", to_all=True)["msg_id"]
    assert wx.mass.status(msg_id) == {"msg_id": msg_id, "msg_status": "SEND_SUCCESS"}
    assert fake_wechat.calls("/cgi-bin/message/mass/get")[0].json == {"msg_id": msg_id}
    wx.mass.delete(msg_id, article_idx=2)
    assert fake_wechat.calls("/cgi-bin/message/mass/delete")[0].json == {"msg_id": msg_id, "article_idx": 2}
    assert wx.mass.status(msg_id)["msg_status"] == "DELETE"
    with pytest.raises(ApiError):
        wx.mass.status(123)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"openid": "oA"}, "exactly one of text"),
        ({"openid": "oA", "text": "a", "mpnews": "b"}, "exactly one of text"),
        ({"text": "a"}, "openid or wxname"),
        ({"openid": "oA", "wxname": "x", "text": "a"}, "openid or wxname"),
    ],
)
def test_preview_needs_one_target_and_one_message(
    wx: Any, fake_wechat: FakeWeChat, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        wx.mass.preview(**kwargs)
    assert fake_wechat.count("/cgi-bin/message/mass/preview") == 0


def test_upload_video_for_mass(wx: Any, fake_wechat: FakeWeChat) -> None:
    media_id = wx.media.upload("video", b"\x00\x00\x00\x18ftypmp42", filename="clip.mp4")["media_id"]
    result = wx.mass.upload_video(media_id, "标题", "描述")
    assert fake_wechat.calls("/cgi-bin/media/uploadvideo")[0].json == {
        "media_id": media_id,
        "title": "标题",
        "description": "描述",
    }
    wx.mass.send_mpvideo(result["media_id"], to_all=True)


def test_fake_checks_mass_payloads(wx: Any) -> None:
    # The fake answers like WeChat: a payload without its required field is 40035, an unknown
    # msgtype 40008 (shared with the customer-service endpoint's validation).
    client = wx.client
    with pytest.raises(ApiError) as info:
        client.post(SENDALL, {"msgtype": "image", "image": {}, "filter": {"is_to_all": True}})
    assert info.value.errcode == 40035
    with pytest.raises(ApiError) as info:
        client.post(SENDALL, {"msgtype": "hologram", "hologram": {"x": 1}, "filter": {"is_to_all": True}})
    assert info.value.errcode == 40008


def test_images_current_and_legacy_forms(wx: Any, fake_wechat: FakeWeChat) -> None:
    wx.mass.send_image(
        ["IMG1", "IMG2"], to_all=True, recommend="看图", need_open_comment=True, only_fans_can_comment=True
    )
    wx.mass.send_image("IMG3", to_all=True, legacy=True)
    new, old = (c.json for c in fake_wechat.calls(SENDALL))
    assert new["msgtype"] == "image" and "image" not in new
    assert new["images"] == {
        "media_ids": ["IMG1", "IMG2"],
        "recommend": "看图",
        "need_open_comment": 1,
        "only_fans_can_comment": 1,
    }
    assert old["image"] == {"media_id": "IMG3"} and "images" not in old
    with pytest.raises(ValueError, match="legacy"):
        wx.mass.send_image(["A", "B"], to_all=True, legacy=True)
    with pytest.raises(ValueError, match="at least one"):
        wx.mass.send_image([], to_all=True)
    with pytest.raises(ApiError) as info:  # the fake checks the new form too
        wx.client.post(
            SENDALL, {"msgtype": "image", "images": {"media_ids": []}, "filter": {"is_to_all": True}}
        )
    assert info.value.errcode == 40035
