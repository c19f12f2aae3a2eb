"""WxMP as a Flask extension: wiring, API groups, shortcuts, callbacks next to ordinary routes."""

from __future__ import annotations

import flask
import pytest

from wxmp import TokenUnavailableError, WxMP
from wxmp.testing import FakeWeChat, WeChatUser


def test_helpers_work_outside_an_app_context_when_given_the_app(make_app):
    with FakeWeChat() as fake:
        fake.add_user("o1")
        app, wx = make_app(fake)
        assert wx.user.get("o1")["openid"] == "o1"  # no app context needed
        assert wx.access_token == fake.calls("/cgi-bin/user/info")[0].token


def test_helpers_use_current_app_with_the_factory_pattern(tmp_path):
    with FakeWeChat() as fake:
        fake.add_user("o1")
        wx = WxMP()
        app = flask.Flask("factory", instance_path=str(tmp_path))
        app.config.update(
            WXMP_APPID=fake.appid, WXMP_SECRET=fake.secret, WXMP_API_BASE=fake.url, WXMP_REFRESHER=False
        )
        wx.init_app(app)
        with app.app_context():
            assert wx.user.get("o1")["openid"] == "o1"
        # The default cache is a filesystem cache in the instance folder.
        assert wx.state(app).store.backend == "filesystem"
        assert (tmp_path / "wxmp-cache").is_dir()


def test_external_mode_without_a_refresher_names_it(make_app):
    with FakeWeChat() as fake:
        app, wx = make_app(None, appid=fake.appid, api_base=fake.url, refresher="external", external_wait=0.2)
        with pytest.raises(TokenUnavailableError, match="flask wxmp refresher"):
            wx.user.get("o1")
        assert fake.count() == 0


def test_shortcuts_register_on_the_router_and_callback_coexists_with_routes(make_app):
    app, wx = make_app(None, token="tok123")

    @app.get("/hello")
    def hello():
        return "plain flask route"

    @wx.click(key="K1")
    def clicked(msg):
        return f"clicked {msg.event_key}"

    @wx.text(match=r"^hi")
    def hi(msg):
        return f"hi from {flask.current_app.name}"

    @wx.default
    def fallback(msg):
        return "fallback"

    user = WeChatUser(app.test_client(), "tok123")
    assert user.click("K1").content == "clicked K1"
    assert user.send_text("hi there").content == f"hi from {app.name}"
    assert user.send_text("something else").content == "fallback"
    assert app.test_client().get("/hello").text == "plain flask route"
    assert clicked.__name__ == "clicked"  # decorators return the function


def test_repr_shows_no_secret(make_app):
    with FakeWeChat() as fake:
        app, wx = make_app(fake, token="tok123", aes_key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
        state = wx.state()
        text = " ".join(
            repr(x)
            for x in (
                wx,
                state,
                state.settings,
                state.client,
                state.access_token,
                state.store,
                state.callback,
            )
        )
        for secret in (fake.secret, "tok123", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"):
            assert secret not in text


def test_handlers_run_under_wechats_deadline(make_app):
    from wxmp.deadline import remaining

    app, wx = make_app(None, token="tok123")
    seen = []

    @wx.text
    def handler(msg):
        seen.append(remaining())
        return "ok"

    assert WeChatUser(app, "tok123").send_text("hi").content == "ok"
    assert seen and 0 < seen[0] <= 4.0
    assert remaining() is None
