"""wx.tag over real HTTP against FakeWeChat."""

from __future__ import annotations

from typing import Any

import pytest

from wxmp import ApiError, InvalidOpenIDError
from wxmp.testing import FakeWeChat
from wxmp.testing.fake_api.user import add_followers


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    return make_app(fake_wechat)[1]


def test_create_list_update_delete(wx: Any, fake_wechat: FakeWeChat) -> None:
    created = wx.tag.create("广东")
    tag_id = created["tag"]["id"]
    assert created == {"tag": {"id": tag_id, "name": "广东"}}
    (call,) = fake_wechat.calls("/cgi-bin/tags/create")
    assert call.method == "POST"
    assert call.json == {"tag": {"name": "广东"}}
    assert "广东".encode() in call.body and b"\\u" not in call.body

    assert wx.tag.list() == [{"id": tag_id, "name": "广东", "count": 0}]
    assert fake_wechat.calls("/cgi-bin/tags/get")[0].method == "GET"

    wx.tag.update(tag_id, "广州")
    assert fake_wechat.calls("/cgi-bin/tags/update")[0].json == {"tag": {"id": tag_id, "name": "广州"}}
    assert wx.tag.list()[0]["name"] == "广州"

    wx.tag.delete(tag_id)
    assert fake_wechat.calls("/cgi-bin/tags/delete")[0].json == {"tag": {"id": tag_id}}
    assert wx.tag.list() == []


def test_tag_errors(wx: Any) -> None:
    wx.tag.create("VIP")
    with pytest.raises(ApiError) as info:
        wx.tag.create("VIP")
    assert info.value.errcode == 45157
    with pytest.raises(ApiError) as info:
        wx.tag.update(2, "星标")
    assert info.value.errcode == 45058
    with pytest.raises(ApiError) as info:
        wx.tag.delete(999)
    assert info.value.errcode == 45159


def test_tag_users_chunks_by_50_and_round_trips(wx: Any, fake_wechat: FakeWeChat) -> None:
    openids = add_followers(fake_wechat, 120)
    tag_id = wx.tag.create("VIP")["tag"]["id"]
    wx.tag.tag_users(tag_id, openids)
    calls = fake_wechat.calls("/cgi-bin/tags/members/batchtagging")
    assert [len(c.json["openid_list"]) for c in calls] == [50, 50, 20]
    assert all(c.json["tagid"] == tag_id for c in calls)

    assert wx.tag.list()[0]["count"] == 120
    assert wx.tag.user_tags(openids[0]) == [tag_id]
    assert fake_wechat.calls("/cgi-bin/tags/getidlist")[0].json == {"openid": openids[0]}

    fake_wechat.state["page_size"] = 50
    assert list(wx.tag.iter_users(tag_id)) == openids
    pages = fake_wechat.calls("/cgi-bin/user/tag/get")
    assert [p.json for p in pages] == [
        {"tagid": tag_id, "next_openid": ""},
        {"tagid": tag_id, "next_openid": openids[49]},
        {"tagid": tag_id, "next_openid": openids[99]},
        # user/tag/get has no "total": the page after the last one comes back without "data"
        {"tagid": tag_id, "next_openid": openids[119]},
    ]

    wx.tag.untag_users(tag_id, openids[:60])
    calls = fake_wechat.calls("/cgi-bin/tags/members/batchuntagging")
    assert [len(c.json["openid_list"]) for c in calls] == [50, 10]
    assert wx.tag.user_tags(openids[0]) == []
    assert list(wx.tag.iter_users(tag_id)) == openids[60:]


def test_deleting_a_tag_untags_its_users(wx: Any, fake_wechat: FakeWeChat) -> None:
    (openid,) = add_followers(fake_wechat, 1)
    tag_id = wx.tag.create("临时")["tag"]["id"]
    wx.tag.tag_users(tag_id, [openid])
    wx.tag.delete(tag_id)
    assert wx.tag.user_tags(openid) == []


def test_tagging_unknown_openid_or_tag(wx: Any, fake_wechat: FakeWeChat) -> None:
    tag_id = wx.tag.create("VIP")["tag"]["id"]
    with pytest.raises(InvalidOpenIDError):
        wx.tag.tag_users(tag_id, ["oNOBODY"])
    add_followers(fake_wechat, 1)
    with pytest.raises(ApiError) as info:
        wx.tag.tag_users(12345, ["oFAKE000001"])
    assert info.value.errcode == 45159


def test_fake_limits_tagging_to_50(wx: Any, fake_wechat: FakeWeChat) -> None:
    openids = add_followers(fake_wechat, 51)
    tag_id = wx.tag.create("VIP")["tag"]["id"]
    with pytest.raises(ApiError) as info:
        wx.client.post("/cgi-bin/tags/members/batchtagging", {"openid_list": openids, "tagid": tag_id})
    assert info.value.errcode == 40032


def test_tag_name_limit_counts_bytes(wx: Any) -> None:
    # WeChat: a tag name is at most 30 bytes of UTF-8, so 10 Chinese characters and no more.
    assert wx.tag.create("标" * 10)["tag"]["name"] == "标" * 10
    with pytest.raises(ApiError) as info:
        wx.tag.create("签" * 11)  # 11 characters, 33 bytes
    assert info.value.errcode == 45158
    assert wx.tag.create("x" * 30)["tag"]["name"] == "x" * 30
