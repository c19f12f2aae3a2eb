"""wx.menu over real HTTP against FakeWeChat."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from wxmp import ApiError, MatchRuleRefusedError, NoMenuError
from wxmp.api.menu import validate_menu
from wxmp.testing import FakeWeChat

MENU: dict[str, Any] = {
    "button": [
        {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"},
        {
            "name": "菜单",
            "sub_button": [
                {"type": "view", "name": "搜索", "url": "http://www.soso.com/"},
                {"type": "click", "name": "赞一下我们", "key": "V1001_GOOD"},
                {"type": "scancode_push", "name": "扫码", "key": "SCAN"},
            ],
        },
    ]
}


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    return make_app(fake_wechat)[1]


def test_create_sends_raw_utf8_and_get_round_trips(wx: Any, fake_wechat: FakeWeChat) -> None:
    assert wx.menu.create(MENU) == {"errcode": 0, "errmsg": "ok"}

    (call,) = fake_wechat.calls("/cgi-bin/menu/create")
    assert call.method == "POST"
    assert call.args["access_token"] == wx.access_token
    assert "今日歌曲".encode() in call.body
    assert b"\\u" not in call.body
    assert call.json == MENU

    got = wx.menu.get()
    buttons = got["menu"]["button"]
    assert [b["name"] for b in buttons] == ["今日歌曲", "菜单"]
    assert buttons[1]["sub_button"][1] == {
        "type": "click",
        "name": "赞一下我们",
        "key": "V1001_GOOD",
        "sub_button": [],
    }
    assert fake_wechat.calls("/cgi-bin/menu/get")[0].method == "GET"
    # what get() returns can be pushed back unchanged
    wx.menu.create(got["menu"])


def test_create_accepts_a_plain_list_of_buttons(wx: Any, fake_wechat: FakeWeChat) -> None:
    wx.menu.create(MENU["button"])
    assert fake_wechat.calls("/cgi-bin/menu/create")[0].json == MENU


def test_get_without_menu_raises_no_menu_error(wx: Any) -> None:
    with pytest.raises(NoMenuError) as info:
        wx.menu.get()
    assert info.value.errcode == 46003
    assert info.value.path == "/cgi-bin/menu/get"


def test_delete_removes_the_menu(wx: Any, fake_wechat: FakeWeChat) -> None:
    wx.menu.create(MENU)
    assert wx.menu.delete()["errcode"] == 0
    assert fake_wechat.calls("/cgi-bin/menu/delete")[0].method == "GET"
    with pytest.raises(NoMenuError):
        wx.menu.get()


def test_get_current_uses_the_selfmenu_shape(wx: Any, fake_wechat: FakeWeChat) -> None:
    assert wx.menu.get_current() == {"is_menu_open": 0}
    wx.menu.create(MENU)
    current = wx.menu.get_current()
    assert current["is_menu_open"] == 1
    subs = current["selfmenu_info"]["button"][1]["sub_button"]["list"]
    assert [s["name"] for s in subs] == ["搜索", "赞一下我们", "扫码"]
    assert fake_wechat.calls("/cgi-bin/get_current_selfmenu_info")[0].method == "GET"


def _leaf(**kw: Any) -> dict[str, Any]:
    return {"type": "click", "name": "A", "key": "K", **kw}


@pytest.mark.parametrize(
    ("menu", "message"),
    [
        ({"button": []}, "0 buttons; WeChat allows 1 to 3"),
        ({"button": [_leaf(), _leaf(), _leaf(), _leaf()]}, "4 buttons"),
        (
            {
                "button": [
                    _leaf(),
                    {"name": "M", "sub_button": [_leaf(), _leaf(), {"type": "click", "name": "Foo"}]},
                ]
            },
            "button[1].sub_button[2] 'Foo': click needs key",
        ),
        ({"button": [{"name": "M", "sub_button": [_leaf()] * 6}]}, "button[0] 'M': 6 sub-buttons"),
        (
            {"button": [_leaf(name="一二三四五六")]},
            "button[0] '一二三四五六': name is 18 bytes in UTF-8, more than 16",
        ),
        (
            {"button": [{"name": "M", "sub_button": [_leaf(name="字" * 21)]}]},
            "name is 63 bytes in UTF-8, more than 60",
        ),
        ({"button": [_leaf(key="k" * 129)]}, "key is 129 bytes, more than 128"),
        ({"button": [{"type": "view", "name": "V", "url": "http://x/" + "a" * 1020}]}, "url is 1029 bytes"),
        ({"button": [{"type": "view", "name": "V"}]}, "button[0] 'V': view needs url"),
        (
            {"button": [{"type": "miniprogram", "name": "P", "url": "http://x", "appid": "wx1"}]},
            "needs pagepath",
        ),
        ({"button": [{"type": "media_id", "name": "P"}]}, "media_id needs media_id"),
        ({"button": [{"type": "article_id", "name": "P"}]}, "article_id needs article_id"),
        ({"button": [{"type": "clack", "name": "P", "key": "k"}]}, "unknown type 'clack'"),
        ({"button": [{"name": "P"}]}, "needs a type or a non-empty sub_button list"),
        ({"button": [{"type": "click", "key": "k"}]}, "button[0] None: needs a name"),
        ({"menu": []}, "expected {'button': [...]}"),
    ],
)
def test_create_validates_locally_before_any_request(
    wx: Any, fake_wechat: FakeWeChat, menu: Any, message: str
) -> None:
    with pytest.raises(ValueError) as info:
        wx.menu.create(menu)
    assert message in str(info.value)
    assert fake_wechat.count("/cgi-bin/menu/create") == 0


def test_limits_at_the_boundary_pass() -> None:
    menu = {
        "button": [
            _leaf(name="一二三四五", key="k" * 128),  # 15 bytes
            {"name": "M", "sub_button": [_leaf(name="字" * 20)] * 5},  # 60 bytes each
            {"type": "view", "name": "V", "url": "http://x/" + "a" * 1015},  # 1024 bytes
        ]
    }
    assert len(validate_menu(menu)) == 3


def test_fake_rejects_unicode_escapes_with_40033(wx: Any, fake_wechat: FakeWeChat) -> None:
    # what a client with json.dumps' default ensure_ascii=True would send
    body = json.dumps(MENU).encode()
    assert b"\\u" in body
    answer = requests.post(
        f"{fake_wechat.url}/cgi-bin/menu/create",
        params={"access_token": wx.access_token},
        data=body,
        timeout=5,
    ).json()
    assert answer["errcode"] == 40033
    with pytest.raises(NoMenuError):
        wx.menu.get()


@pytest.mark.parametrize(
    ("buttons", "errcode"),
    [
        ([_leaf()] * 4, 40016),
        ([{"type": "nope", "name": "A"}], 40017),
        ([_leaf(name="x" * 17)], 40018),
        ([{"name": "M", "sub_button": [_leaf(name="x" * 61)]}], 40025),
        ([_leaf(key="k" * 129)], 40019),
        ([{"name": "M", "sub_button": [_leaf()] * 6}], 40023),
    ],
)
def test_fake_enforces_wechat_menu_rules(wx: Any, buttons: list[Any], errcode: int) -> None:
    # bypass the local validation to check the fake itself
    with pytest.raises(ApiError) as info:
        wx.client.post("/cgi-bin/menu/create", {"button": buttons})
    assert info.value.errcode == errcode


def test_conditional_menu_and_try_match(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.add_user("oVIP", tagid_list=[101])
    fake_wechat.add_user("oPLAIN")
    with pytest.raises(ApiError) as info:  # WeChat wants a default menu first
        wx.menu.add_conditional([_leaf(name="会员")], {"tag_id": "101"})
    assert info.value.errcode == 65303

    wx.menu.create(MENU)
    menuid = wx.menu.add_conditional([_leaf(name="会员")], {"tag_id": "101", "sex": None})["menuid"]
    call = fake_wechat.calls("/cgi-bin/menu/addconditional")[-1]
    assert call.json == {"button": [_leaf(name="会员")], "matchrule": {"tag_id": "101"}}
    assert "会员".encode() in call.body and b"\\u" not in call.body

    assert wx.menu.get()["conditionalmenu"][0]["menuid"] == int(menuid)
    assert wx.menu.try_match("oVIP")["button"][0]["name"] == "会员"
    assert wx.menu.try_match("oPLAIN")["button"][0]["name"] == "今日歌曲"
    assert fake_wechat.calls("/cgi-bin/menu/trymatch")[0].json == {"user_id": "oVIP"}

    wx.menu.delete_conditional(menuid)
    assert fake_wechat.calls("/cgi-bin/menu/delconditional")[0].json == {"menuid": str(menuid)}
    assert wx.menu.try_match("oVIP")["button"][0]["name"] == "今日歌曲"
    with pytest.raises(ApiError) as info:
        wx.menu.delete_conditional(menuid)
    assert info.value.errcode == 65301


def test_add_conditional_needs_a_rule(wx: Any, fake_wechat: FakeWeChat) -> None:
    with pytest.raises(ValueError, match="matchrule"):
        wx.menu.add_conditional(MENU, {"tag_id": None, "sex": ""})
    assert fake_wechat.count("/cgi-bin/menu/addconditional") == 0


def test_try_match_unknown_user(wx: Any) -> None:
    wx.menu.create(MENU)
    with pytest.raises(ApiError) as info:
        wx.menu.try_match("nobody")
    assert info.value.errcode == 65302


def test_privacy_match_fields_are_refused(wx: Any, fake_wechat: FakeWeChat) -> None:
    # WeChat answers 65320 to sex/country/province/city/language since its privacy changes.
    wx.menu.create(MENU)
    with pytest.raises(ValueError, match="sex"):
        wx.menu.add_conditional([_leaf(name="男")], {"tag_id": "101", "sex": "1"})
    assert fake_wechat.count("/cgi-bin/menu/addconditional") == 0
    with pytest.raises(MatchRuleRefusedError) as info:  # the fake refuses it too
        wx.client.post("/cgi-bin/menu/addconditional", {"button": [_leaf()], "matchrule": {"city": "广州"}})
    assert info.value.errcode == 65320


def test_fake_no_longer_matches_privacy_fields(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.add_user("oIOS", client_platform_type=1, sex=1)
    fake_wechat.add_user("oANDROID", client_platform_type=2, sex=1)
    wx.menu.create(MENU)
    wx.menu.add_conditional([_leaf(name="苹果")], {"client_platform_type": "1"})
    assert wx.menu.try_match("oIOS")["button"][0]["name"] == "苹果"
    assert wx.menu.try_match("oANDROID")["button"][0]["name"] == "今日歌曲"


def test_nested_sub_menu_is_40022(wx: Any) -> None:
    nested = [{"name": "M", "sub_button": [{"name": "S", "sub_button": [_leaf()]}]}]
    with pytest.raises(ValueError, match="two levels"):
        wx.menu.create(nested)
    with pytest.raises(ApiError) as info:
        wx.client.post("/cgi-bin/menu/create", {"button": nested})
    assert info.value.errcode == 40022
