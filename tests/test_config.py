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


# -- mistakes a newcomer makes are loud --------------------------------------------------------------


def test_a_misspelt_key_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"WXMP_SECRE: unknown setting; did you mean WXMP_SECRET\?"):
        Settings.from_mapping({"WXMP_APPID": "wx0000000000000001", "WXMP_SECRE": "s"})
    with pytest.raises(
        ConfigError, match=r"WXMP_NOTHING_LIKE_IT: unknown setting; known keys: WXMP_ACCOUNTS"
    ):
        Settings.from_mapping({"WXMP_NOTHING_LIKE_IT": 1})
    # Other prefixes are none of wxmp's business; WXMP_ACCOUNTS belongs to the Flask adapter.
    Settings.from_mapping({"SECRET_KEY": "x", "WXMPSOMETHING": 1, "WXMP_ACCOUNTS": {}})


def test_an_aes_key_with_padding_says_so_without_showing_the_key():
    key = "A" * 42 + "="
    with pytest.raises(ConfigError) as info:
        settings(appid="wx0000000000000001", token="tok123", aes_key=key)
    message = str(info.value)
    assert "'='" in message and "no '=' padding" in message
    assert key not in message and "A" * 10 not in message


def test_blanks_around_pasted_values_are_stripped():
    aes = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    s = settings(appid=" wx0000000000000001\n", token=" tok123 ", aes_key=" " + aes)
    assert (s.appid, s.token, s.aes_key) == ("wx0000000000000001", "tok123", aes)
    assert settings(secret="   ").secret is None


def test_the_undocumented_lazy_refresher_value_is_gone():
    with pytest.raises(
        ConfigError, match=r"WXMP_REFRESHER: must be 'thread', 'external' or False, not 'lazy'"
    ):
        settings(appid="wx0000000000000001", refresher="lazy")


def test_accounts_on_different_api_hosts_keep_their_tokens_apart():
    real = settings(appid="wx0000000000000001")
    fake = settings(appid="wx0000000000000001", api_base="http://127.0.0.1:8900")
    other = settings(appid="wx0000000000000001", api_base="http://127.0.0.1:8901/")
    assert real.namespace == "wxmp:wx0000000000000001"  # a script and a fleet on WeChat share it
    assert fake.namespace == "wxmp:wx0000000000000001@127.0.0.1:8900"
    assert len({real.namespace, fake.namespace, other.namespace}) == 3


def test_handlers_without_a_token_say_why_the_callback_is_off(tmp_path, caplog):
    app = flask.Flask("notoken", instance_path=str(tmp_path))
    app.config["WXMP_CACHE"] = "simple"
    wx = WxMP(app)
    client = app.test_client()
    assert client.post("/wechat").status_code == 404  # no handlers: the path is the app's business

    @wx.on("text")
    def echo(msg):
        return msg.content

    with caplog.at_level("WARNING", logger="wxmp"):
        first = client.post("/wechat", data=b"<xml/>")
        client.post("/wechat", data=b"<xml/>")
    assert first.status_code == 404
    assert b"off because WXMP_TOKEN is not set" in first.data
    assert [r.getMessage() for r in caplog.records].count(
        "wxmp: handlers are registered but WXMP_TOKEN is not set: the callback at /wechat (account 'default') is off"
    ) == 1


@pytest.mark.parametrize("spec", ["redis:/localhost:6379/0", "redis://:hunter2@localhost:notaport/0"])
def test_a_malformed_redis_url_is_a_config_error_without_the_password(spec):
    from wxmp.cache import resolve_cache

    with pytest.raises(ConfigError, match=r"^WXMP_CACHE: not a valid Redis URL \(") as info:
        resolve_cache(spec, "/tmp/unused")
    assert "hunter2" not in str(info.value)
