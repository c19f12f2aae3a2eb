"""wx.oauth (web authorisation) over real HTTP against FakeWeChat."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from wxmp import ApiError, ConfigError, CredentialError, InvalidOpenIDError, TokenInvalidError
from wxmp.testing import FakeWeChat
from wxmp.testing.fake_api.oauth import authorize, expire_web_tokens

EXCHANGE = "/sns/oauth2/access_token"


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    fake_wechat.add_user("oWEB", nickname="小明", unionid="uUNION1")
    return make_app(fake_wechat)[1]


def test_authorize_url_keeps_wechats_order_and_suffix(wx: Any, fake_wechat: FakeWeChat) -> None:
    url = wx.oauth.authorize_url(
        "https://example.com/回调?next=/a b&x=1", scope="snsapi_userinfo", state="abc123"
    )
    assert url == (
        "https://open.weixin.qq.com/connect/oauth2/authorize"
        f"?appid={fake_wechat.appid}"
        "&redirect_uri=https%3A%2F%2Fexample.com%2F%E5%9B%9E%E8%B0%83%3Fnext%3D%2Fa%20b%26x%3D1"
        "&response_type=code&scope=snsapi_userinfo&state=abc123#wechat_redirect"
    )
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["redirect_uri"] == "https://example.com/回调?next=/a b&x=1"
    assert wx.oauth.authorize_url("https://e.com/").endswith("&scope=snsapi_base&state=#wechat_redirect")


def test_authorize_url_force_popup_and_snapshot(wx: Any) -> None:
    url = wx.oauth.authorize_url("https://e.com/", state="s1", force_popup=True, force_snapshot=True)
    assert url.endswith("&state=s1&forcePopup=true&forceSnapShot=true#wechat_redirect")
    assert "forcePopup" not in wx.oauth.authorize_url("https://e.com/")


def test_exchange_surfaces_snapshot_users_and_base_has_no_unionid(wx: Any, fake_wechat: FakeWeChat) -> None:
    base = wx.oauth.exchange(authorize(fake_wechat, "oWEB"))
    assert "unionid" not in base  # WeChat: unionid only with snsapi_userinfo
    assert base["is_snapshotuser"] == 0
    snap = wx.oauth.exchange(authorize(fake_wechat, "oVIRTUAL", snapshot=True))
    assert snap["is_snapshotuser"] == 1


@pytest.mark.parametrize(
    ("scope", "state"), [("snsapi_login", ""), ("snsapi_base", "a-b"), ("snsapi_base", "x" * 129)]
)
def test_authorize_url_validates(wx: Any, scope: str, state: str) -> None:
    with pytest.raises(ValueError):
        wx.oauth.authorize_url("https://e.com/", scope=scope, state=state)


def test_exchange_uses_appid_and_secret_not_the_shared_token(wx: Any, fake_wechat: FakeWeChat) -> None:
    code = authorize(fake_wechat, "oWEB", scope="snsapi_userinfo")
    grant = wx.oauth.exchange(code)
    assert grant["openid"] == "oWEB" and grant["scope"] == "snsapi_userinfo"
    assert grant["unionid"] == "uUNION1" and grant["expires_in"] == 7200
    (call,) = fake_wechat.calls(EXCHANGE)
    assert call.method == "GET"
    assert call.args == {
        "appid": fake_wechat.appid,
        "secret": fake_wechat.secret,
        "code": code,
        "grant_type": "authorization_code",
    }
    assert "access_token" not in call.args

    with pytest.raises(ApiError) as info:  # a code works once
        wx.oauth.exchange(code)
    assert info.value.errcode == 40163
    with pytest.raises(ApiError) as info:
        wx.oauth.exchange("bogus")
    assert info.value.errcode == 40029


def test_userinfo_check_and_refresh(wx: Any, fake_wechat: FakeWeChat) -> None:
    grant = wx.oauth.exchange(authorize(fake_wechat, "oWEB", scope="snsapi_userinfo"))
    info = wx.oauth.userinfo(grant["access_token"], "oWEB", lang="en")
    assert info["nickname"] == "小明" and info["unionid"] == "uUNION1"
    (call,) = fake_wechat.calls("/sns/userinfo")
    assert call.args == {"access_token": grant["access_token"], "openid": "oWEB", "lang": "en"}

    assert wx.oauth.check(grant["access_token"], "oWEB") is True
    assert fake_wechat.calls("/sns/auth")[0].args == {"access_token": grant["access_token"], "openid": "oWEB"}
    assert wx.oauth.check(grant["access_token"], "oOTHER") is False
    assert wx.oauth.check("not-a-token", "oWEB") is False

    expire_web_tokens(fake_wechat)
    assert wx.oauth.check(grant["access_token"], "oWEB") is False
    with pytest.raises(TokenInvalidError) as err:  # 42001: not retried with the shared token
        wx.oauth.userinfo(grant["access_token"], "oWEB")
    assert err.value.errcode == 42001
    assert fake_wechat.count("/sns/userinfo") == 2

    renewed = wx.oauth.refresh(grant["refresh_token"])
    (call,) = fake_wechat.calls("/sns/oauth2/refresh_token")
    assert call.args == {
        "appid": fake_wechat.appid,
        "grant_type": "refresh_token",
        "refresh_token": grant["refresh_token"],
    }
    assert renewed["access_token"] != grant["access_token"]
    assert renewed["refresh_token"] == grant["refresh_token"]
    assert wx.oauth.check(renewed["access_token"], "oWEB") is True
    with pytest.raises(ApiError) as info:
        wx.oauth.refresh("bogus")
    assert info.value.errcode == 40030


def test_base_scope_cannot_read_userinfo(wx: Any, fake_wechat: FakeWeChat) -> None:
    grant = wx.oauth.exchange(authorize(fake_wechat, "oWEB"))
    with pytest.raises(ApiError) as info:
        wx.oauth.userinfo(grant["access_token"], "oWEB")
    assert info.value.errcode == 48001
    with pytest.raises(InvalidOpenIDError):
        wx.oauth.userinfo(grant["access_token"], "oSOMEONE_ELSE")


def test_wrong_secret_and_missing_secret(fake_wechat: FakeWeChat, make_app: Any) -> None:
    _, wrong = make_app(fake_wechat, WXMP_SECRET="not-the-secret", WXMP_REFRESHER=False)
    with pytest.raises(CredentialError) as info:
        wrong.oauth.exchange(authorize(fake_wechat, "oWEB"))
    assert info.value.errcode == 40125

    _, callback_only = make_app(None, WXMP_APPID=fake_wechat.appid, WXMP_API_BASE=fake_wechat.url)
    assert callback_only.oauth.authorize_url("https://e.com/").startswith("https://open.weixin.qq.com/")
    with pytest.raises(ConfigError, match="WXMP_SECRET"):
        callback_only.oauth.exchange("code")
