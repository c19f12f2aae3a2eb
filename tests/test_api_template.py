"""wx.template over real HTTP against FakeWeChat."""

from __future__ import annotations

from typing import Any

import pytest

from wxmp import ApiError, InvalidOpenIDError
from wxmp.api.template import template_data
from wxmp.testing import FakeWeChat
from wxmp.testing.fake_api.template import add_template, sent_templates

PATH = "/cgi-bin/message/template/send"


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    fake_wechat.add_user("oBUYER")
    return make_app(fake_wechat)[1]


def test_send_shapes_data_and_sends_raw_utf8(wx: Any, fake_wechat: FakeWeChat) -> None:
    template_id = add_template(fake_wechat)
    result = wx.template.send(
        "oBUYER",
        template_id,
        {"keyword1": "订单 12345", "keyword2": {"value": "已发货", "color": "#173177"}, "amount": 42},
        url="https://shop.example.com/o/12345",
        miniprogram={"appid": "wxMINI", "pagepath": "pages/order?id=12345"},
        client_msg_id="order-12345",
    )
    assert result["errcode"] == 0 and isinstance(result["msgid"], int)
    (call,) = fake_wechat.calls(PATH)
    assert call.method == "POST" and call.args["access_token"] == wx.access_token
    assert call.json == {
        "touser": "oBUYER",
        "template_id": template_id,
        "data": {
            "keyword1": {"value": "订单 12345"},
            "keyword2": {"value": "已发货", "color": "#173177"},
            "amount": {"value": "42"},
        },
        "url": "https://shop.example.com/o/12345",
        "miniprogram": {"appid": "wxMINI", "pagepath": "pages/order?id=12345"},
        "client_msg_id": "order-12345",
    }
    assert "已发货".encode() in call.body and b"\\u" not in call.body
    assert sent_templates(fake_wechat) == [call.json]


def test_optional_fields_are_left_out(wx: Any, fake_wechat: FakeWeChat) -> None:
    template_id = add_template(fake_wechat)
    wx.template.send("oBUYER", template_id, {"k": "v"})
    assert set(fake_wechat.calls(PATH)[0].json) == {"touser", "template_id", "data"}


def test_template_data_rejects_dicts_without_value() -> None:
    with pytest.raises(ValueError, match="'k'"):
        template_data({"k": {"color": "#000"}})


def test_errors(wx: Any, fake_wechat: FakeWeChat) -> None:
    with pytest.raises(ApiError) as info:
        wx.template.send("oBUYER", "NO_SUCH_TEMPLATE", {"k": "v"})
    assert info.value.errcode == 40037
    template_id = add_template(fake_wechat)
    with pytest.raises(InvalidOpenIDError):
        wx.template.send("oSTRANGER", template_id, {"k": "v"})
    with pytest.raises(ApiError) as info:  # the fake checks the data shape itself
        wx.client.post(PATH, {"touser": "oBUYER", "template_id": template_id, "data": {"k": "v"}})
    assert info.value.errcode == 47001


def test_list_and_delete(wx: Any, fake_wechat: FakeWeChat) -> None:
    first = add_template(fake_wechat, title="订单通知")
    second = add_template(fake_wechat, title="发货通知")
    listed = wx.template.list()
    assert [t["template_id"] for t in listed] == [first, second]
    assert listed[1]["title"] == "发货通知"
    assert fake_wechat.calls("/cgi-bin/template/get_all_private_template")[0].method == "GET"

    wx.template.delete(first)
    assert fake_wechat.calls("/cgi-bin/template/del_private_template")[0].json == {"template_id": first}
    assert [t["template_id"] for t in wx.template.list()] == [second]
    with pytest.raises(ApiError) as info:
        wx.template.delete(first)
    assert info.value.errcode == 40037
