from __future__ import annotations

import flask
import pytest

from wxmp import ConfigError, Settings, WxMP

AES = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def settings(**config):
    return Settings.from_mapping({("WXMP_" + k.upper()): v for k, v in config.items()})


def test_token_only_app_is_valid_and_starts_no_refresher():
    s = settings(token="abc123")
    assert s.refresher == "off"
    assert not s.can_fetch


def test_secret_defaults_to_thread_refresher_and_stable_token():
    s = settings(appid="wx0000000000000001", secret="s")
    assert s.refresher == "thread"
    assert s.stable_token is True
    assert s.can_fetch


@pytest.mark.parametrize(
    ("config", "key", "words"),
    [
        ({"token": 123}, "WXMP_TOKEN", "string"),
        ({"token": "has space"}, "WXMP_TOKEN", "letters or digits"),
        ({"appid": "wx0000000000000001", "aes_key": AES[:-1]}, "WXMP_AES_KEY", "42 characters"),
        ({"aes_key": AES}, "WXMP_APPID", "required"),
        ({"secret": "s"}, "WXMP_APPID", "required"),
        ({"api_base": "ftp://x"}, "WXMP_API_BASE", "http"),
        ({"callback_path": "wechat"}, "WXMP_CALLBACK_PATH", "/"),
        ({"refresher": "cron"}, "WXMP_REFRESHER", "thread"),
        ({"refresher": "thread"}, "WXMP_REFRESHER", "SECRET"),
        ({"refresh_margin": 0.9}, "WXMP_REFRESH_MARGIN", "between"),
        ({"timeout": "5"}, "WXMP_TIMEOUT", "number"),
        ({"status_check": "yes"}, "WXMP_STATUS_CHECK", "callable"),
    ],
)
def test_bad_values_name_the_key(config, key, words):
    with pytest.raises(ConfigError) as info:
        settings(**config)
    assert info.value.key == key
    assert key in str(info.value)
    assert words in str(info.value)


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="WXMP_APPSECRET: unknown setting"):
        Settings.from_mapping({}, {"appsecret": "x"})


def test_repr_hides_secrets():
    s = settings(appid="wx0000000000000001", secret="SUPERSECRET", token="tok123", aes_key=AES)
    text = repr(s)
    assert "wx0000000000000001" in text
    for secret in ("SUPERSECRET", "tok123", AES):
        assert secret not in text


def test_init_app_stores_effective_defaults_and_refuses_second_registration(tmp_path):
    app = flask.Flask("t", instance_path=str(tmp_path))
    app.config["WXMP_CACHE"] = "simple"
    wx = WxMP()
    wx.init_app(app)
    assert app.extensions["wxmp"] is wx
    assert app.config["WXMP_CALLBACK_PATH"] == "/wechat"
    assert app.config["WXMP_STABLE_TOKEN"] is True
    assert app.config["WXMP_CACHE"] == "simple"  # user value untouched
    with pytest.raises(RuntimeError, match="already registered"):
        WxMP(app)


def test_overrides_beat_app_config(tmp_path):
    app = flask.Flask("t", instance_path=str(tmp_path))
    app.config.update(WXMP_CACHE="simple", WXMP_APPID="wxc0000000000000c0")
    wx = WxMP(app, appid="wxa0000000000000a0")
    assert wx.settings.appid == "wxa0000000000000a0"


def test_factory_pattern_uses_current_app(tmp_path):
    wx = WxMP()
    apps = []
    for name in ("a", "b"):
        app = flask.Flask(name, instance_path=str(tmp_path / name))
        app.config.update(WXMP_CACHE="simple", WXMP_APPID=f"wx{name * 16}")
        wx.init_app(app)
        apps.append(app)
    for app in apps:
        with app.app_context():
            assert wx.settings.appid == f"wx{app.name * 16}"
    with pytest.raises(RuntimeError):
        wx.settings  # noqa: B018 (no app context)
