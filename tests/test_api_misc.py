"""wx.misc over real HTTP against FakeWeChat."""

from __future__ import annotations

import time
from typing import Any

import pytest

from wxmp import ApiError, QuotaExceededError
from wxmp.testing import FakeWeChat
from wxmp.testing.clock import FakeClock
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


def test_errors_carry_the_rid_that_rid_get_explains(wx: Any, fake_wechat: FakeWeChat) -> None:
    with pytest.raises(ApiError) as info:
        wx.message.send_text("oNOBODY", "hi")
    rid = info.value.rid
    assert rid and rid in info.value.errmsg
    request = wx.misc.get_rid(rid)
    assert request["request_url"].startswith("/cgi-bin/message/custom/send")
    assert "oNOBODY" in request["request_body"] and '"errcode": 40003' in request["response_body"]
    assert wx.access_token not in request["request_url"]  # the fake never echoes the token
    assert fake_wechat.calls("/cgi-bin/openapi/rid/get")[0].json == {"rid": rid}
    with pytest.raises(ApiError) as info:
        wx.misc.get_rid("0-0-0")
    assert info.value.errcode == 76001


def test_clear_quota_v2_works_without_a_token(fake_wechat: FakeWeChat, make_app: Any, caplog: Any) -> None:
    fake_wechat.daily_quota = 1
    _, wx = make_app(fake_wechat, WXMP_STABLE_TOKEN=False, WXMP_REFRESHER=False)
    assert wx.access_token
    with pytest.raises(QuotaExceededError):  # the token quota is spent: no token, no clear_quota
        wx.client.fetch_access_token(fake_wechat.appid, fake_wechat.secret, stable=False, force=False)
    caplog.set_level("DEBUG")
    assert wx.misc.clear_quota_v2() == {"errcode": 0, "errmsg": "ok"}
    (call,) = fake_wechat.calls("/cgi-bin/clear_quota/v2")
    assert call.args == {"appid": fake_wechat.appid, "appsecret": fake_wechat.secret}  # no access_token
    assert fake_wechat.secret not in caplog.text
    assert wx.client.fetch_access_token(fake_wechat.appid, fake_wechat.secret, stable=False, force=False)[0]


def test_clear_quota_v2_errors_and_the_shared_monthly_limit(fake_wechat: FakeWeChat, make_app: Any) -> None:
    _, bad = make_app(fake_wechat, WXMP_SECRET="wrong-secret-0123456789abcdef012", WXMP_REFRESHER=False)
    with pytest.raises(ApiError) as info:
        bad.misc.clear_quota_v2()
    assert info.value.errcode == 40125 and "wrong-secret" not in str(info.value)
    record = fake_wechat.rids[info.value.rid]  # what rid/get would tell: no secret in it
    assert "wrong-secret" not in str(record) and record["request_url"].startswith("/cgi-bin/clear_quota/v2")
    _, wx = make_app(fake_wechat, WXMP_REFRESHER=False)
    for _ in range(5):
        wx.misc.clear_quota()
        wx.misc.clear_quota_v2()
    with pytest.raises(ApiError) as info:  # clear_quota and clear_quota/v2 share 10 a month
        wx.misc.clear_quota_v2()
    assert info.value.errcode == 48006


def test_clear_one_api_quota(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.add_user("oA")
    wx.message.send_text("oA", "hi")
    wx.message.send_text("oA", "hi")
    wx.misc.clear_api_quota("/cgi-bin/message/custom/send")
    assert fake_wechat.calls("/cgi-bin/openapi/quota/clear")[0].json == {
        "cgi_path": "/cgi-bin/message/custom/send"
    }
    assert wx.misc.get_quota("/cgi-bin/message/custom/send")["used"] == 0
    with pytest.raises(ApiError) as info:
        wx.misc.clear_api_quota("/cgi-bin/not/an/api")
    assert info.value.errcode == 76021


def test_short_keys(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.clock = clock = FakeClock(time.time())
    key = wx.misc.shorten('{"page": "活动/2026"}', expire_seconds=60)
    assert len(key) == 15
    assert fake_wechat.calls("/cgi-bin/shorten/gen")[0].json == {
        "long_data": '{"page": "活动/2026"}',
        "expire_seconds": 60,
    }
    found = wx.misc.fetch_short(key)
    assert found["long_data"] == '{"page": "活动/2026"}' and found["expire_seconds"] == 60
    clock.advance(61)
    with pytest.raises(ApiError):
        wx.misc.fetch_short(key)
    with pytest.raises(ValueError, match="4096 bytes"):
        wx.misc.shorten("长" * 1366)
    with pytest.raises(ValueError, match="expire_seconds"):
        wx.misc.shorten("x", expire_seconds=2_592_001)


def test_callback_check(wx: Any, fake_wechat: FakeWeChat) -> None:
    with pytest.raises(ApiError) as info:  # no server URL configured
        wx.misc.callback_check()
    assert info.value.errcode == 40201
    fake_wechat.state["callback_url"] = f"{fake_wechat.url}/wechat"
    result = wx.misc.callback_check()
    assert result["dns"][0]["ip"] == "127.0.0.1" and result["ping"][0]["package_loss"] == "0%"
    assert fake_wechat.calls("/cgi-bin/callback/check")[-1].json == {
        "action": "all",
        "check_operator": "DEFAULT",
    }
    assert set(wx.misc.callback_check("dns", "UNICOM")) == {"dns"}
    with pytest.raises(ValueError, match="operator"):
        wx.misc.callback_check(operator="MOBILE")
