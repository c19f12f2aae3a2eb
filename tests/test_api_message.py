"""wx.message (customer-service messages) over real HTTP against FakeWeChat."""

from __future__ import annotations

import time
from typing import Any

import pytest

from wxmp import ApiError, InvalidOpenIDError, OutOfWindowError, ReplyLimitError
from wxmp.testing import FakeWeChat
from wxmp.testing.clock import FakeClock
from wxmp.testing.fake_api.message import close_window, interact, open_window, sent_messages

PATH = "/cgi-bin/message/custom/send"
USER = "oUSER000000000000000000001"


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    fake_wechat.add_user(USER)
    return make_app(fake_wechat)[1]


def test_send_text_on_the_wire(wx: Any, fake_wechat: FakeWeChat) -> None:
    assert wx.message.send_text(USER, "你好，中文") == {"errcode": 0, "errmsg": "ok"}
    (call,) = fake_wechat.calls(PATH)
    assert call.method == "POST"
    assert call.args["access_token"] == wx.access_token
    assert call.content_type.startswith("application/json")
    assert "你好，中文".encode() in call.body
    assert b"\\u" not in call.body
    assert call.json == {"touser": USER, "msgtype": "text", "text": {"content": "你好，中文"}}
    assert sent_messages(fake_wechat, USER) == [call.json]


@pytest.mark.parametrize(
    ("send", "msgtype", "payload"),
    [
        (lambda m: m.send_image(USER, "MEDIA1"), "image", {"media_id": "MEDIA1"}),
        (lambda m: m.send_voice(USER, "MEDIA2"), "voice", {"media_id": "MEDIA2"}),
        (
            lambda m: m.send_video(USER, "V1", "T1", title="视频", description="说明"),
            "video",
            {"media_id": "V1", "thumb_media_id": "T1", "title": "视频", "description": "说明"},
        ),
        (lambda m: m.send_video(USER, "V1"), "video", {"media_id": "V1"}),
        (
            lambda m: m.send_music(USER, "http://m/a.mp3", "http://m/a-hq.mp3", "T1", title="歌"),
            "music",
            {
                "title": "歌",
                "musicurl": "http://m/a.mp3",
                "hqmusicurl": "http://m/a-hq.mp3",
                "thumb_media_id": "T1",
            },
        ),
        (
            lambda m: m.send_news(
                USER, "标题", "http://example.com/a", description="描述", picurl="http://p/1.jpg"
            ),
            "news",
            {
                "articles": [
                    {
                        "title": "标题",
                        "description": "描述",
                        "url": "http://example.com/a",
                        "picurl": "http://p/1.jpg",
                    }
                ]
            },
        ),
        (lambda m: m.send_mpnews(USER, "NEWS1"), "mpnews", {"media_id": "NEWS1"}),
        (
            lambda m: m.send_menu(
                USER, [("101", "满意"), ("102", "不满意")], "您对本次服务是否满意？", "欢迎再来"
            ),
            "msgmenu",
            {
                "head_content": "您对本次服务是否满意？",
                "list": [{"id": "101", "content": "满意"}, {"id": "102", "content": "不满意"}],
                "tail_content": "欢迎再来",
            },
        ),
        (
            lambda m: m.send_menu(USER, {"1": "是"}),
            "msgmenu",
            {"head_content": "", "list": [{"id": "1", "content": "是"}], "tail_content": ""},
        ),
        (
            lambda m: m.send_miniprogram(USER, "wxMINI", "pages/index", "T1", title="小程序"),
            "miniprogrampage",
            {"title": "小程序", "appid": "wxMINI", "pagepath": "pages/index", "thumb_media_id": "T1"},
        ),
    ],
)
def test_each_message_type_body(
    wx: Any, fake_wechat: FakeWeChat, send: Any, msgtype: str, payload: dict[str, Any]
) -> None:
    assert send(wx.message)["errcode"] == 0
    (call,) = fake_wechat.calls(PATH)
    assert call.json == {"touser": USER, "msgtype": msgtype, msgtype: payload}
    assert b"\\u" not in call.body


def test_kf_account(wx: Any, fake_wechat: FakeWeChat) -> None:
    wx.message.send_text(USER, "hi", kf_account="test1@gh_abc")
    assert fake_wechat.calls(PATH)[0].json["customservice"] == {"kf_account": "test1@gh_abc"}


def test_closed_window_raises_out_of_window(wx: Any, fake_wechat: FakeWeChat) -> None:
    close_window(fake_wechat, USER)
    with pytest.raises(OutOfWindowError) as info:
        wx.message.send_text(USER, "too late")
    assert info.value.errcode == 45015
    assert info.value.path == PATH
    assert sent_messages(fake_wechat) == []
    open_window(fake_wechat, USER)
    wx.message.send_text(USER, "back")
    assert len(sent_messages(fake_wechat)) == 1


def test_unknown_user_and_unfollowed_user(wx: Any, fake_wechat: FakeWeChat) -> None:
    with pytest.raises(InvalidOpenIDError):
        wx.message.send_text("oNOBODY", "hi")
    fake_wechat.add_user("oGONE", subscribe=0)
    with pytest.raises(ApiError) as info:
        wx.message.send_text("oGONE", "hi")
    assert info.value.errcode == 43004


def test_fake_checks_payloads(wx: Any) -> None:
    with pytest.raises(ApiError) as info:
        wx.message.send(USER, "news", {"articles": [{"title": "1"}, {"title": "2"}]})
    assert info.value.errcode == 45008
    with pytest.raises(ApiError) as info:
        wx.message.send(USER, "image", {})
    assert info.value.errcode == 40035
    with pytest.raises(ApiError) as info:
        wx.message.send(USER, "hologram", {"x": 1})
    assert info.value.errcode == 40008


def test_send_menu_needs_items(wx: Any, fake_wechat: FakeWeChat) -> None:
    with pytest.raises(ValueError):
        wx.message.send_menu(USER, [])
    assert fake_wechat.count(PATH) == 0


def test_typing(wx: Any, fake_wechat: FakeWeChat) -> None:
    wx.message.typing(USER)
    with pytest.raises(ApiError) as info:  # already typing
        wx.message.typing(USER, on=True)
    assert info.value.errcode == 45081
    wx.message.typing(USER, on=False)
    calls = fake_wechat.calls("/cgi-bin/message/custom/typing")
    assert [c.json for c in calls] == [
        {"touser": USER, "command": "Typing"},
        {"touser": USER, "command": "Typing"},
        {"touser": USER, "command": "CancelTyping"},
    ]


def test_reply_quota_after_a_user_message(wx: Any, fake_wechat: FakeWeChat) -> None:
    # Since 2023-06: a user message allows 5 sends within 48 hours, then 45047.
    clock = fake_wechat.clock = FakeClock(time.time())
    fake_wechat.add_user("oQ")
    interact(fake_wechat, "oQ", "message")
    for i in range(5):
        wx.message.send_text("oQ", f"answer {i}")
    with pytest.raises(ReplyLimitError) as info:
        wx.message.send_text("oQ", "one too many")
    assert info.value.errcode == 45047
    interact(fake_wechat, "oQ", "message")  # the user writes again: 5 more
    wx.message.send_text("oQ", "again")
    clock.advance(48 * 3600 + 1)
    with pytest.raises(OutOfWindowError):
        wx.message.send_text("oQ", "too late")
    assert len(sent_messages(fake_wechat, "oQ")) == 6


def test_reply_quota_after_a_click(wx: Any, fake_wechat: FakeWeChat) -> None:
    # A menu click, follow or scan allows 3 sends within one minute.
    clock = fake_wechat.clock = FakeClock(time.time())
    fake_wechat.add_user("oC")
    interact(fake_wechat, "oC", "click")
    for _ in range(3):
        wx.message.send_text("oC", "ok")
    with pytest.raises(ReplyLimitError):
        wx.message.send_text("oC", "no")
    interact(fake_wechat, "oC", "subscribe")
    wx.message.send_text("oC", "ok")
    clock.advance(61)
    with pytest.raises(OutOfWindowError):
        wx.message.send_text("oC", "no")
    with pytest.raises(ValueError):
        interact(fake_wechat, "oC", "dance")
