"""wx.misc over real HTTP against FakeWeChat."""

from __future__ import annotations

from typing import Any

import pytest

from wxmp import ApiError, QuotaExceededError
from wxmp.testing import FakeWeChat
from wxmp.testing.fake_api.misc import CALLBACK_IPS, DOMAIN_IPS


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    return make_app(fake_wechat, WXMP_STABLE_TOKEN=False)[1]


def test_ip_lists(wx: Any, fake_wechat: FakeWeChat) -> None:
    assert wx.misc.get_callback_ip() == CALLBACK_IPS
    assert wx.get_callback_ip() == CALLBACK_IPS  # the extension's shortcut
    fake_wechat.state["api_domain_ips"] = ["1.2.3.4"]
    assert wx.misc.get_api_domain_ip() == ["1.2.3.4"]
    assert DOMAIN_IPS
    call = fake_wechat.calls("/cgi-bin/getcallbackip")[0]
    assert call.method == "GET" and call.args == {"access_token": wx.access_token}
    assert fake_wechat.calls("/cgi-bin/get_api_domain_ip")[0].method == "GET"


def test_clear_quota_lifts_the_token_quota(fake_wechat: FakeWeChat, make_app: Any) -> None:
    fake_wechat.daily_quota = 1
    _, wx = make_app(fake_wechat, WXMP_STABLE_TOKEN=False, WXMP_REFRESHER=False)
    assert wx.access_token  # the one classic fetch the quota allows

    def fetch() -> tuple[str, int]:
        return wx.client.fetch_access_token(fake_wechat.appid, fake_wechat.secret, stable=False, force=False)

    with pytest.raises(QuotaExceededError):
        fetch()
    wx.misc.clear_quota()  # still works: the token in hand stays valid
    assert fetch()[0]


def test_clear_quota_helper(wx: Any, fake_wechat: FakeWeChat) -> None:
    assert wx.misc.clear_quota() == {"errcode": 0, "errmsg": "ok"}
    assert wx.clear_quota()["errcode"] == 0
    (call, _) = fake_wechat.calls("/cgi-bin/clear_quota")
    assert call.method == "POST" and call.json == {"appid": fake_wechat.appid}
    assert call.args == {"access_token": wx.access_token}
    assert fake_wechat.quota_used["/cgi-bin/token"] == 0


def test_clear_quota_runs_out(wx: Any) -> None:
    for _ in range(10):
        wx.misc.clear_quota()
    with pytest.raises(ApiError) as info:
        wx.misc.clear_quota()
    assert info.value.errcode == 48006


def test_get_quota(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.add_user("oA")
    for _ in range(3):
        wx.message.send_text("oA", "hi")
    quota = wx.misc.get_quota("/cgi-bin/message/custom/send")
    assert quota["used"] == 3 and quota["remain"] == quota["daily_limit"] - 3
    assert set(quota["rate_limit"]) == {"call_count", "refresh_second"}
    assert set(quota["component_rate_limit"]) == {"call_count", "refresh_second"}
    (call,) = fake_wechat.calls("/cgi-bin/openapi/quota/get")
    assert call.json == {"cgi_path": "/cgi-bin/message/custom/send"}
    assert wx.misc.get_quota("/cgi-bin/token")["daily_limit"] == fake_wechat.daily_quota

    wx.misc.clear_quota()
    assert wx.misc.get_quota("/cgi-bin/message/custom/send")["used"] == 0
    with pytest.raises(ApiError) as info:
        wx.misc.get_quota("/cgi-bin/no/such/api")
    assert info.value.errcode == 76021


def test_groups_follow_current_app_with_init_app(fake_wechat: FakeWeChat, tmp_path: Any) -> None:
    import flask

    from wxmp import WxMP

    wx = WxMP()
    apps = []
    for n, ips in enumerate((["1.1.1.1"], ["2.2.2.2"])):
        app = flask.Flask(f"factory{n}", instance_path=str(tmp_path / f"i{n}"))
        app.config.update(
            WXMP_APPID=fake_wechat.appid,
            WXMP_SECRET=fake_wechat.secret,
            WXMP_API_BASE=fake_wechat.url,
            WXMP_CACHE="simple",
            WXMP_REFRESHER=False,
        )
        wx.init_app(app)
        apps.append((app, ips))
    try:
        for app, ips in apps:
            fake_wechat.state["callback_ips"] = ips
            with app.app_context():
                assert wx.misc.get_callback_ip() == ips
                assert wx.misc is wx.state(app).group("misc")
        with pytest.raises(RuntimeError):
            wx.misc  # noqa: B018 (no app context)
    finally:
        wx.stop()
