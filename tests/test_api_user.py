"""wx.user over real HTTP against FakeWeChat: info, batches, pagination, remarks, blacklist."""

from __future__ import annotations

from typing import Any

import pytest

from wxmp import ApiError, InvalidOpenIDError
from wxmp.testing import FakeWeChat
from wxmp.testing.fake_api.user import add_followers, blacklisted


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    return make_app(fake_wechat)[1]


def test_get(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.add_user("oA", remark="老客户")
    info = wx.user.get("oA", lang="en")
    assert info["openid"] == "oA" and info["remark"] == "老客户"
    (call,) = fake_wechat.calls("/cgi-bin/user/info")
    assert call.method == "GET"
    assert call.args == {"access_token": wx.access_token, "openid": "oA", "lang": "en"}
    with pytest.raises(InvalidOpenIDError):
        wx.user.get("oNOBODY")


def test_get_batch_of_250_makes_3_requests_and_keeps_order(wx: Any, fake_wechat: FakeWeChat) -> None:
    openids = add_followers(fake_wechat, 250)
    users = wx.user.get_batch(iter(openids), lang="zh_TW")
    assert [u["openid"] for u in users] == openids
    calls = fake_wechat.calls("/cgi-bin/user/info/batchget")
    assert [c.method for c in calls] == ["POST"] * 3
    assert [len(c.json["user_list"]) for c in calls] == [100, 100, 50]
    assert calls[0].json["user_list"][0] == {"openid": openids[0], "lang": "zh_TW"}


def test_get_batch_empty_makes_no_request(wx: Any, fake_wechat: FakeWeChat) -> None:
    assert wx.user.get_batch([]) == []
    assert fake_wechat.count("/cgi-bin/user/info/batchget") == 0


def test_fake_limits_batchget_to_100(wx: Any, fake_wechat: FakeWeChat) -> None:
    openids = add_followers(fake_wechat, 101)
    with pytest.raises(ApiError) as info:
        wx.client.post("/cgi-bin/user/info/batchget", {"user_list": [{"openid": o} for o in openids]})
    assert info.value.errcode == 40032


def test_get_batch_unknown_openid(wx: Any, fake_wechat: FakeWeChat) -> None:
    add_followers(fake_wechat, 2)
    with pytest.raises(InvalidOpenIDError):
        wx.user.get_batch(["oFAKE000001", "oNOBODY"])


def test_iter_followers_follows_next_openid_across_3_pages(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.state["page_size"] = 4
    openids = add_followers(fake_wechat, 10)
    fake_wechat.add_user("oLEFT", subscribe=0)  # unfollowed users are not listed

    assert list(wx.user.iter_followers()) == openids

    calls = fake_wechat.calls("/cgi-bin/user/get")
    assert [c.method for c in calls] == ["GET"] * 3
    assert "next_openid" not in calls[0].args
    assert calls[1].args["next_openid"] == openids[3]
    assert calls[2].args["next_openid"] == openids[7]


def test_iter_followers_stops_once_total_is_reached(wx: Any, fake_wechat: FakeWeChat) -> None:
    # The last full page still carries a next_openid; "total" spares the request for the empty page.
    fake_wechat.state["page_size"] = 5
    openids = add_followers(fake_wechat, 10)
    assert list(wx.user.iter_followers()) == openids
    assert fake_wechat.count("/cgi-bin/user/get") == 2


def test_iter_followers_stops_on_a_page_without_data(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.state["page_size"] = 5
    openids = add_followers(fake_wechat, 10)
    # followers leave between two pages: "total" is now out of reach, the empty page ends it
    pages = iter(wx.user.iter_followers())
    first = [next(pages) for _ in range(5)]
    for openid in openids[5:]:
        fake_wechat.users[openid]["subscribe"] = 0
    assert first + list(pages) == openids[:5]
    calls = fake_wechat.calls("/cgi-bin/user/get")
    assert [c.args.get("next_openid") for c in calls] == [None, openids[4]]


def test_iter_followers_with_no_followers(wx: Any, fake_wechat: FakeWeChat) -> None:
    assert list(wx.user.iter_followers()) == []
    assert fake_wechat.count("/cgi-bin/user/get") == 1
    page = wx.user.get_followers()
    assert page == {"total": 0, "count": 0, "next_openid": ""}


def test_real_page_size_is_the_default(wx: Any, fake_wechat: FakeWeChat) -> None:
    add_followers(fake_wechat, 3)
    assert wx.user.get_followers()["count"] == 3
    from wxmp.testing.fake_api._util import page_size

    assert page_size(fake_wechat) == 10_000


def test_set_remark_round_trips(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.add_user("oA")
    assert wx.user.set_remark("oA", "中文备注")["errcode"] == 0
    (call,) = fake_wechat.calls("/cgi-bin/user/info/updateremark")
    assert call.json == {"openid": "oA", "remark": "中文备注"}
    assert "中文备注".encode() in call.body and b"\\u" not in call.body
    assert wx.user.get("oA")["remark"] == "中文备注"
    with pytest.raises(ApiError) as info:
        wx.user.set_remark("oA", "长" * 30)
    assert info.value.errcode == 40035


def test_blacklist_chunks_by_20_and_round_trips(wx: Any, fake_wechat: FakeWeChat) -> None:
    openids = add_followers(fake_wechat, 45)
    wx.user.blacklist(openids)
    calls = fake_wechat.calls("/cgi-bin/tags/members/batchblacklist")
    assert [len(c.json["openid_list"]) for c in calls] == [20, 20, 5]
    assert blacklisted(fake_wechat) == openids

    fake_wechat.state["page_size"] = 20
    assert list(wx.user.iter_blacklist()) == openids
    pages = fake_wechat.calls("/cgi-bin/tags/members/getblacklist")
    assert [p.json["begin_openid"] for p in pages] == ["", openids[19], openids[39]]

    page = wx.user.get_blacklist(openids[39])
    assert page["data"]["openid"] == openids[40:] and page["total"] == 45

    wx.user.unblacklist(openids[:21])
    calls = fake_wechat.calls("/cgi-bin/tags/members/batchunblacklist")
    assert [len(c.json["openid_list"]) for c in calls] == [20, 1]
    assert list(wx.user.iter_blacklist()) == openids[21:]


def test_blacklist_unknown_openid(wx: Any, fake_wechat: FakeWeChat) -> None:
    with pytest.raises(InvalidOpenIDError):
        wx.user.blacklist(["oNOBODY"])


def test_remark_limit_counts_bytes(wx: Any, fake_wechat: FakeWeChat) -> None:
    # "under 30 bytes": 9 Chinese characters (27 bytes) fit, 10 (30 bytes) do not.
    fake_wechat.add_user("oA")
    wx.user.set_remark("oA", "备" * 9)
    with pytest.raises(ApiError) as info:
        wx.user.set_remark("oA", "备" * 10)
    assert info.value.errcode == 40035
    wx.user.set_remark("oA", "x" * 29)
