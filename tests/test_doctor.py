"""``flask wxmp doctor`` and wxmp.doctor against FakeWeChat: a good account, 40164, a spent quota."""

from __future__ import annotations

from typing import Any

import flask
import pytest
from click.testing import Result

from wxmp import QuotaExceededError
from wxmp.doctor import MAIN_APIS, diagnose
from wxmp.testing import FakeWeChat


@pytest.fixture
def app(make_app: Any, fake_wechat: FakeWeChat) -> flask.Flask:
    fake_wechat.state["callback_url"] = f"{fake_wechat.url}/wechat"  # something listening on loopback
    app, _ = make_app(fake_wechat, REFRESHER=False)
    return app


def run(app: flask.Flask) -> Result:
    return app.test_cli_runner().invoke(args=["wxmp", "doctor"])


def lines(result: Result) -> dict[str, str]:
    return {
        line.split()[1]: line for line in result.output.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")
    }


def test_a_good_account_passes_every_check(app: flask.Flask, fake_wechat: FakeWeChat) -> None:
    result = run(app)
    assert result.exit_code == 0, result.output
    found = lines(result)
    assert found["credentials"].startswith("PASS") and fake_wechat.appid in found["credentials"]
    assert found["api"].startswith("PASS")
    quota_lines = [line for line in result.output.splitlines() if " quota /cgi-bin/" in line]
    assert len(quota_lines) == len(MAIN_APIS) and all(line.startswith("PASS") for line in quota_lines)
    assert found["callback"].startswith("PASS")
    assert "all checks passed" in result.output
    assert fake_wechat.secret not in result.output
    # The credential check never invalidates the token in use: stable_token, not force.
    assert fake_wechat.count("/cgi-bin/token") == 0
    assert all(not c.json.get("force_refresh") for c in fake_wechat.calls("/cgi-bin/stable_token"))


def test_40164_names_the_egress_ip(app: flask.Flask, fake_wechat: FakeWeChat) -> None:
    fake_wechat.set_ip_whitelist(["198.51.100.1"], caller_ip="203.0.113.7")
    result = run(app)
    assert result.exit_code == 1
    assert "FAIL  credentials" in result.output
    assert "hint: add this server's egress IP 203.0.113.7 to the API IP whitelist" in result.output
    assert "SKIP  quotas" in result.output and "Traceback" not in result.output


def test_a_spent_quota_fails_with_the_way_out(app: flask.Flask, fake_wechat: FakeWeChat) -> None:
    fake_wechat.set_quota("/cgi-bin/message/custom/send", 2)
    fake_wechat.add_user("oA")
    wx = app.extensions["wxmp"]
    with app.app_context():
        wx.message.send_text("oA", "1")
        wx.message.send_text("oA", "2")
        with pytest.raises(QuotaExceededError):  # the quota counts down, then WeChat says 45009
            wx.message.send_text("oA", "3")
    result = run(app)
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if "quota /cgi-bin/message/custom/send" in line]
    assert line.startswith("FAIL") and "0 left" in line
    assert "wx.misc.clear_api_quota('/cgi-bin/message/custom/send')" in result.output
    assert "1 problem(s) found" in result.output


def test_wrong_secret_and_unreachable_callback(make_app: Any, fake_wechat: FakeWeChat) -> None:
    _, wx = make_app(fake_wechat, REFRESHER=False, SECRET="wrong-secret-0123456789abcdef012")
    checks = {c.name: c for c in diagnose(wx)}
    assert checks["credentials"].status == "fail" and "WXMP_SECRET" in checks["credentials"].hint

    _, good = make_app(fake_wechat, REFRESHER=False)
    checks = {c.name: c for c in diagnose(good, quotas=())}
    assert checks["callback url"].status == "fail" and "no server URL" in checks["callback url"].detail
    fake_wechat.state["callback_url"] = "http://127.0.0.1:9/wechat"  # discard port: nothing listens
    checks = {c.name: c for c in diagnose(good, quotas=())}
    assert (
        checks["callback url"].status == "fail" and "cannot reach 127.0.0.1" in checks["callback url"].detail
    )
    assert checks["callback ips"].status == "pass"


def test_quota_clears(app: flask.Flask, fake_wechat: FakeWeChat) -> None:
    fake_wechat.set_quota("/cgi-bin/message/custom/send", 1)
    fake_wechat.add_user("oA")
    wx = app.extensions["wxmp"]
    with app.app_context():
        wx.message.send_text("oA", "1")
        assert wx.misc.get_quota("/cgi-bin/message/custom/send")["remain"] == 0
        wx.misc.clear_api_quota("/cgi-bin/message/custom/send")
        assert wx.misc.get_quota("/cgi-bin/message/custom/send")["remain"] == 1
        wx.message.send_text("oA", "2")
    assert run(app).exit_code == 1
