"""wx.qrcode over real HTTP against FakeWeChat."""

from __future__ import annotations

from typing import Any

import pytest

from wxmp import ApiError
from wxmp.testing import FakeWeChat
from wxmp.testing.fake_api.qrcode import qrcodes

PATH = "/cgi-bin/qrcode/create"


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    return make_app(fake_wechat)[1]


@pytest.mark.parametrize(
    ("scene", "expire", "body"),
    [
        (
            123,
            600,
            {"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 123}}, "expire_seconds": 600},
        ),
        (
            "活动-2024",
            2_592_000,
            {
                "action_name": "QR_STR_SCENE",
                "action_info": {"scene": {"scene_str": "活动-2024"}},
                "expire_seconds": 2_592_000,
            },
        ),
        (100_000, None, {"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 100_000}}}),
        (
            "shop",
            None,
            {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "shop"}}},
        ),
        (
            2**32 - 1,
            60,
            {
                "action_name": "QR_SCENE",
                "action_info": {"scene": {"scene_id": 2**32 - 1}},
                "expire_seconds": 60,
            },
        ),
    ],
)
def test_create_picks_the_action(
    wx: Any, fake_wechat: FakeWeChat, scene: Any, expire: int | None, body: dict[str, Any]
) -> None:
    result = wx.qrcode.create(scene, expire_seconds=expire)
    (call,) = fake_wechat.calls(PATH)
    assert call.method == "POST" and call.args["access_token"] == wx.access_token
    assert call.json == body
    assert b"\\u" not in call.body
    assert result["url"].startswith("http://weixin.qq.com/q/")
    assert ("expire_seconds" in result) == (expire is not None)
    stored = qrcodes(fake_wechat)[result["ticket"]]
    assert stored["action_name"] == body["action_name"]


@pytest.mark.parametrize(
    ("scene", "expire", "message"),
    [
        (0, 60, "scene_id 0"),
        (2**32, 60, "temporary code takes 1 to 4294967295"),
        (100_001, None, "permanent code takes 1 to 100000"),
        ("", None, "scene_str: 1 to 64"),
        ("x" * 65, 60, "got 65"),
        (5, 2_592_001, "expire_seconds 2592001"),
        (5, 0, "expire_seconds 0"),
        (True, None, "not bool"),
        (1.5, None, "not float"),
    ],
)
def test_create_validates_locally(
    wx: Any, fake_wechat: FakeWeChat, scene: Any, expire: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        wx.qrcode.create(scene, expire_seconds=expire)
    assert fake_wechat.count(PATH) == 0


def test_fake_checks_ranges_too(wx: Any) -> None:
    body = {"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 100_001}}}
    with pytest.raises(ApiError) as info:
        wx.client.post(PATH, body)
    assert info.value.errcode == 40035


def test_url_needs_no_request(wx: Any, fake_wechat: FakeWeChat) -> None:
    assert wx.access_token  # the refresher's first fetch is done: nothing else should reach the fake
    before = fake_wechat.count()
    ticket = (
        "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw=="
    )
    assert wx.qrcode.url(ticket) == (
        "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket="
        "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw%3D%3D"
    )
    assert wx.qrcode.url("a+b/c") == "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=a%2Bb%2Fc"
    assert fake_wechat.count() == before
