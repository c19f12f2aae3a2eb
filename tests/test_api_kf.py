"""wx.kf (customer-service accounts and sessions) over real HTTP against FakeWeChat."""

from __future__ import annotations

from typing import Any

import pytest

from wxmp import ApiError
from wxmp.messages import KfCloseSessionEvent, KfCreateSessionEvent
from wxmp.testing import FakeWeChat, WeChatUser
from wxmp.testing.fake_api.kf import bind, kf_accounts, kf_event_xml, set_online, wait

AGENT = "alice@gh_shop"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    fake_wechat.add_user("oCUSTOMER")
    return make_app(fake_wechat)[1]


def test_accounts_add_update_invite_head_image_list_delete(wx: Any, fake_wechat: FakeWeChat) -> None:
    wx.kf.add(AGENT, "小爱")
    assert fake_wechat.calls("/customservice/kfaccount/add")[0].json == {
        "kf_account": AGENT,
        "nickname": "小爱",
    }
    wx.kf.update(AGENT, "爱丽丝")
    wx.kf.invite(AGENT, "alice_wechat")
    wx.kf.upload_head_image(AGENT, JPEG, filename="头像.jpg")
    (call,) = fake_wechat.calls("/customservice/kfaccount/uploadheadimg")
    assert call.args["kf_account"] == AGENT and b'filename="%E5%A4%B4%E5%83%8F.jpg"' in call.body
    (row,) = wx.kf.list()
    assert row["kf_nick"] == "爱丽丝" and row["invite_wx"] == "alice_wechat" and row["kf_headimgurl"]
    bind(fake_wechat, AGENT, "alice_wechat")
    assert wx.kf.list()[0]["kf_wx"] == "alice_wechat"
    with pytest.raises(ApiError) as info:  # already bound
        wx.kf.invite(AGENT, "bob")
    assert info.value.errcode == 65409
    assert wx.kf.online() == []
    set_online(fake_wechat, AGENT)
    assert wx.kf.online()[0]["kf_account"] == AGENT

    wx.kf.delete(AGENT)
    assert fake_wechat.calls("/customservice/kfaccount/del")[0].method == "GET"
    assert wx.kf.list() == []


def test_account_errors(wx: Any, fake_wechat: FakeWeChat) -> None:
    with pytest.raises(ValueError, match="prefix"):
        wx.kf.add("no-at-sign", "x")
    with pytest.raises(ValueError, match="nickname"):
        wx.kf.add(AGENT, "名" * 17)
    assert fake_wechat.count("/customservice/kfaccount/add") == 0
    wx.kf.add(AGENT, "小爱")
    for call, errcode in (
        (lambda: wx.kf.add(AGENT, "again"), 65406),
        (lambda: wx.kf.update("nobody@gh_shop", "x"), 65401),
        (
            lambda: wx.client.post("/customservice/kfaccount/add", {"kf_account": "bad", "nickname": "x"}),
            65404,
        ),
        (lambda: wx.kf.upload_head_image(AGENT, b"GIF89a", filename="a.gif"), 40005),
    ):
        with pytest.raises(ApiError) as info:
            call()
        assert info.value.errcode == errcode


def test_sessions(wx: Any, fake_wechat: FakeWeChat) -> None:
    wx.kf.add(AGENT, "小爱")
    wx.kf.add("bob@gh_shop", "小波")
    wait(fake_wechat, "oCUSTOMER")
    assert wx.kf.get_wait_cases()["waitcaselist"][0]["openid"] == "oCUSTOMER"
    with pytest.raises(ApiError) as info:  # not bound to anyone's WeChat yet
        wx.kf.create_session(AGENT, "oCUSTOMER")
    assert info.value.errcode == 65402
    bind(fake_wechat, AGENT)
    with pytest.raises(ApiError) as info:
        wx.kf.create_session(AGENT, "oCUSTOMER")
    assert info.value.errcode == 65415  # offline
    set_online(fake_wechat, AGENT)
    wx.kf.create_session(AGENT, "oCUSTOMER")
    assert wx.kf.get_wait_cases()["count"] == 0
    assert wx.kf.get_session("oCUSTOMER")["kf_account"] == AGENT
    assert [s["openid"] for s in wx.kf.get_sessions(AGENT)] == ["oCUSTOMER"]
    assert wx.kf.online()[0]["accepted_case"] == 1

    bind(fake_wechat, "bob@gh_shop")
    set_online(fake_wechat, "bob@gh_shop")
    with pytest.raises(ApiError) as info:
        wx.kf.create_session("bob@gh_shop", "oCUSTOMER")
    assert info.value.errcode == 65414
    wx.kf.close_session(AGENT, "oCUSTOMER")
    assert wx.kf.get_session("oCUSTOMER")["kf_account"] == ""
    with pytest.raises(ApiError) as info:
        wx.kf.close_session(AGENT, "oCUSTOMER")
    assert info.value.errcode == 65413
    assert AGENT in kf_accounts(fake_wechat)


def test_session_events_reach_handlers(fake_wechat: FakeWeChat, make_app: Any) -> None:
    app, wx = make_app(fake_wechat, TOKEN="tok", REFRESHER=False)
    seen: list[Any] = []
    wx.on("kf_create_session")(seen.append)
    wx.on("kf_close_session")(seen.append)
    fake_wechat.add_user("oCUSTOMER")
    wx.kf.add(AGENT, "小爱")
    bind(fake_wechat, AGENT)
    set_online(fake_wechat, AGENT)
    wx.kf.create_session(AGENT, "oCUSTOMER")
    wx.kf.close_session(AGENT, "oCUSTOMER")
    user = WeChatUser(app, token="tok", openid="oCUSTOMER")
    user.send_raw(kf_event_xml(fake_wechat, 0))
    user.send_raw(kf_event_xml(fake_wechat, 1))
    created, closed = seen
    assert type(created) is KfCreateSessionEvent and created.kf_account == AGENT
    assert type(closed) is KfCloseSessionEvent and closed.openid == "oCUSTOMER"
