"""wx.template over real HTTP against FakeWeChat."""

from __future__ import annotations

import time
from typing import Any

import pytest

from wxmp import ApiError, InvalidOpenIDError, TemplateDataError
from wxmp.api.template import template_data
from wxmp.testing import FakeWeChat
from wxmp.testing.clock import FakeClock
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


def test_add_library_template_with_keyword_names(wx: Any, fake_wechat: FakeWeChat) -> None:
    template_id = wx.template.add("TM00015", ["订单编号", "支付金额"])
    assert fake_wechat.calls("/cgi-bin/template/api_add_template")[0].json == {
        "template_id_short": "TM00015",
        "keyword_name_list": ["订单编号", "支付金额"],
    }
    assert template_id in [t["template_id"] for t in wx.template.list()]
    wx.template.send("oBUYER", template_id, {"character_string1": "NO.2026-001", "amount2": "¥99.50元"})
    with pytest.raises(ApiError) as info:  # the 2023 categories need keyword_name_list
        wx.template.add("TM00015")
    assert info.value.errcode == 40035
    with pytest.raises(ApiError) as info:
        wx.template.add("TM00015", ["不存在的关键词"])
    assert info.value.errcode == 40035
    with pytest.raises(ApiError) as info:
        wx.template.add("NOPE")
    assert info.value.errcode == 40037


def test_template_value_rules_are_checked_locally(wx: Any, fake_wechat: FakeWeChat) -> None:
    template_id = wx.template.add("TM00015", ["商品名称"])
    with pytest.raises(TemplateDataError, match=r"thing1: 21 characters; at most 20") as info:
        wx.template.send("oBUYER", template_id, {"thing1": "长" * 21})
    assert isinstance(info.value, ValueError) and info.value.errcode == 47003
    with pytest.raises(TemplateDataError, match="line breaks"):
        wx.template.send("oBUYER", template_id, {"keyword1": "a\nb"})
    assert fake_wechat.count(PATH) == 0
    with pytest.raises(TemplateDataError):  # the fake refuses it as WeChat does
        wx.client.post(
            PATH, {"touser": "oBUYER", "template_id": template_id, "data": {"thing1": {"value": "长" * 21}}}
        )


def test_industry(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.clock = clock = FakeClock(time.time())
    wx.template.set_industry(1, 4)
    assert fake_wechat.calls("/cgi-bin/template/api_set_industry")[0].json == {
        "industry_id1": "1",
        "industry_id2": "4",
    }
    assert wx.template.get_industry()["secondary_industry"]["second_class"] == "行业4"
    with pytest.raises(ApiError) as info:  # once a month
        wx.template.set_industry(2, 3)
    assert info.value.errcode == 43100
    clock.advance(31 * 24 * 3600)
    with pytest.raises(ApiError) as info:
        wx.template.set_industry(2, 2)
    assert info.value.errcode == 40102
    wx.template.set_industry(2, 3)
