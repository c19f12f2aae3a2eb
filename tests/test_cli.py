"""``flask wxmp ...`` through Flask's CLI runner against FakeWeChat: each command and an error path."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
import pytest
from click.testing import Result

from wxmp import WxMP
from wxmp.testing import FakeWeChat
from wxmp.testing.fake_api.mass import mass_jobs
from wxmp.testing.fake_api.message import sent_messages
from wxmp.testing.fake_api.user import add_followers

MakeApp = Callable[..., tuple[flask.Flask, WxMP]]

MENU = {
    "button": [
        {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"},
        {"name": "菜单", "sub_button": [{"type": "view", "name": "搜索", "url": "http://www.soso.com/"}]},
    ]
}


def run(app: flask.Flask, *args: str, input: str | None = None) -> Result:
    return app.test_cli_runner().invoke(args=["wxmp", *args], input=input)


def assert_clean_failure(result: Result, fake: FakeWeChat | None = None) -> None:
    """Exit 1, one error line plus a hint, no traceback, no secret."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    if fake is not None:
        assert fake.secret not in result.output


@pytest.fixture
def app(make_app: MakeApp, fake_wechat: FakeWeChat) -> flask.Flask:
    app, _ = make_app(fake_wechat, REFRESHER=False)
    return app


# -- token ------------------------------------------------------------------------------------


def test_token_shows_masked_token_and_refresh_forces_a_new_one(
    app: flask.Flask, fake_wechat: FakeWeChat
) -> None:
    result = run(app, "token")
    assert result.exit_code == 0, result.output
    entry = app.extensions["wxmp"].state(app).access_token.peek()
    assert entry is not None
    assert entry.value[:6] in result.output
    assert entry.value not in result.output
    assert "fetches today 1 / 2000" in result.output
    assert fake_wechat.secret not in result.output

    result = run(app, "token", "--refresh")
    assert result.exit_code == 0, result.output
    new = app.extensions["wxmp"].state(app).access_token.peek()
    assert new is not None and new.value != entry.value
    assert fake_wechat.calls("/cgi-bin/stable_token")[-1].json["force_refresh"] is True
    assert new.value not in result.output
    assert "fetches today 2 / 2000" in result.output


def test_token_wrong_secret_is_one_line_with_hint(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    app, _ = make_app(fake_wechat, REFRESHER=False, SECRET="not-the-secret-0000000000000000")
    result = run(app, "token")
    assert_clean_failure(result, fake_wechat)
    assert "40125" in result.output
    assert "Hint: WXMP_SECRET is wrong" in result.output
    assert "not-the-secret" not in result.output


def test_ip_whitelist_hint(app: flask.Flask, fake_wechat: FakeWeChat) -> None:
    fake_wechat.fail_next(errcode=40164, paths=("/cgi-bin/menu/get",))
    result = run(app, "menu", "show")
    assert_clean_failure(result, fake_wechat)
    assert "errcode 40164" in result.output
    assert "add this server's IP to the whitelist in the admin console" in result.output


# -- menu -------------------------------------------------------------------------------------


def test_menu_push_json_then_show_then_delete(
    app: flask.Flask, fake_wechat: FakeWeChat, tmp_path: Path
) -> None:
    path = tmp_path / "menu.json"
    path.write_text(json.dumps(MENU, ensure_ascii=False), encoding="utf-8")
    result = run(app, "menu", "push", str(path))
    assert result.exit_code == 0, result.output
    sent = fake_wechat.calls("/cgi-bin/menu/create")[-1]
    assert "今日歌曲".encode() in sent.body  # raw UTF-8, no \\u escapes

    result = run(app, "menu", "show")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["menu"]["button"][0]["key"] == "V1001_TODAY_MUSIC"
    assert "今日歌曲" in result.output

    result = run(app, "menu", "delete", input="n\n")
    assert result.exit_code == 1  # aborted at the prompt
    assert fake_wechat.count("/cgi-bin/menu/delete") == 0
    result = run(app, "menu", "delete", "--yes")
    assert result.exit_code == 0, result.output
    assert fake_wechat.count("/cgi-bin/menu/delete") == 1

    result = run(app, "menu", "show")
    assert_clean_failure(result, fake_wechat)
    assert "46003" in result.output and "flask wxmp menu push" in result.output


def test_menu_push_yaml(app: flask.Flask, fake_wechat: FakeWeChat, tmp_path: Path) -> None:
    path = tmp_path / "menu.yaml"
    path.write_text(
        "button:\n  - type: click\n    name: 你好\n    key: HELLO\n  - type: view\n    name: Docs\n"
        "    url: https://example.com/\n",
        encoding="utf-8",
    )
    result = run(app, "menu", "push", str(path))
    assert result.exit_code == 0, result.output
    body = fake_wechat.calls("/cgi-bin/menu/create")[-1].json
    assert [b["name"] for b in body["button"]] == ["你好", "Docs"]


def test_menu_push_invalid_menu_fails_before_any_request(
    app: flask.Flask, fake_wechat: FakeWeChat, tmp_path: Path
) -> None:
    path = tmp_path / "menu.json"
    path.write_text(
        json.dumps({"button": [{"type": "click", "name": f"b{i}", "key": "k"} for i in range(4)]})
    )
    result = run(app, "menu", "push", str(path))
    assert_clean_failure(result, fake_wechat)
    assert "4 buttons" in result.output
    assert fake_wechat.count("/cgi-bin/menu/create") == 0

    path.write_text("{not json")
    result = run(app, "menu", "push", str(path))
    assert_clean_failure(result)
    assert "not valid JSON" in result.output


# -- users export -------------------------------------------------------------------------------


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_users_export_three_pages(app: flask.Flask, fake_wechat: FakeWeChat, tmp_path: Path) -> None:
    openids = add_followers(fake_wechat, 250, nickname="粉丝")
    fake_wechat.state["page_size"] = 100  # 250 followers: three pages of user/get
    out = tmp_path / "users.csv"
    result = run(app, "users", "export", str(out))
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    assert [r["openid"] for r in rows] == openids
    assert rows[0]["nickname"] == "粉丝" and rows[0]["subscribe"] == "1"
    assert fake_wechat.count("/cgi-bin/user/get") == 3
    batches = fake_wechat.calls("/cgi-bin/user/info/batchget")
    assert [len(c.json["user_list"]) for c in batches] == [100, 100, 50]
    assert "250 followers written" in result.output


def test_users_export_resumes_after_a_failure(
    app: flask.Flask, fake_wechat: FakeWeChat, tmp_path: Path
) -> None:
    openids = add_followers(fake_wechat, 250)
    fake_wechat.state["page_size"] = 100
    out = tmp_path / "users.csv"
    batchget = "/cgi-bin/user/info/batchget"
    respond = fake_wechat._respond

    def fail_second_batch(request: Any, args: Any, body: Any) -> Any:
        if request.path == batchget and fake_wechat.count(batchget) == 2:
            fake_wechat.fail_next(errcode=-1, paths=(batchget,))
        return respond(request, args, body)

    fake_wechat._respond = fail_second_batch  # type: ignore[method-assign]
    result = run(app, "users", "export", str(out))
    assert_clean_failure(result, fake_wechat)
    assert "errcode -1" in result.output and "retry" in result.output
    assert [r["openid"] for r in _rows(out)] == openids[:100]  # the first batch is on disk

    result = run(app, "users", "export", str(out))
    assert result.exit_code == 0, result.output
    assert "100 already in users.csv; 150 to go" in result.output
    rows = _rows(out)
    assert [r["openid"] for r in rows] == openids  # no duplicates, nothing missing
    resumed = fake_wechat.calls("/cgi-bin/user/info/batchget")[2:]
    assert [len(c.json["user_list"]) for c in resumed] == [100, 50]


def test_users_export_refuses_a_foreign_csv(app: flask.Flask, tmp_path: Path) -> None:
    out = tmp_path / "other.csv"
    out.write_text("name,email\nx,y\n")
    result = run(app, "users", "export", str(out))
    assert result.exit_code == 1
    assert "not a wxmp export" in result.output


# -- messages -----------------------------------------------------------------------------------


def test_send(app: flask.Flask, fake_wechat: FakeWeChat) -> None:
    fake_wechat.add_user("oUSER1")
    result = run(app, "send", "oUSER1", "你好，世界")
    assert result.exit_code == 0, result.output
    assert sent_messages(fake_wechat, "oUSER1")[-1]["text"] == {"content": "你好，世界"}

    result = run(app, "send", "oNOBODY", "hi")
    assert_clean_failure(result, fake_wechat)
    assert "40003" in result.output and "Hint: unknown openid" in result.output


def test_mass_preview(app: flask.Flask, fake_wechat: FakeWeChat) -> None:
    fake_wechat.add_user("oUSER1")
    result = run(app, "mass", "preview", "oUSER1", "preview text")
    assert result.exit_code == 0, result.output
    assert fake_wechat.state["mass_previews"][-1] == {
        "msgtype": "text",
        "text": {"content": "preview text"},
        "touser": "oUSER1",
    }
    assert not mass_jobs(fake_wechat)  # a preview is not a mass job

    result = run(app, "mass", "preview", "oNOBODY", "x")
    assert_clean_failure(result, fake_wechat)
    assert "40003" in result.output


# -- simulate ----------------------------------------------------------------------------------


def test_simulate_plain_and_safe_mode(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    seen: list[str] = []
    app, wx = make_app(fake_wechat, REFRESHER=False, TOKEN="simtoken")

    @wx.on("text")
    def echo(msg: Any) -> str:
        seen.append(msg.from_user_name)
        return f"got {msg.content}"

    result = run(app, "simulate", "你好")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "got 你好"
    assert seen == ["oWxmpSimulatedUser0000000000"]

    aes = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    app2, wx2 = make_app(fake_wechat, REFRESHER=False, TOKEN="simtoken", AES_KEY=aes)
    wx2.on("text")(lambda msg: "secret reply")
    result = run(app2, "simulate", "hi", "--xml", "--openid", "oSOMEONE")
    assert result.exit_code == 0, result.output
    assert "<Content><![CDATA[secret reply]]></Content>" in result.output
    assert "<ToUserName><![CDATA[oSOMEONE]]></ToUserName>" in result.output
    assert aes not in result.output


def test_simulate_no_reply_and_no_token(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    app, _ = make_app(fake_wechat, REFRESHER=False, TOKEN="simtoken")
    result = run(app, "simulate", "nobody handles this")
    assert result.exit_code == 0
    assert "no reply" in result.output

    app2, _ = make_app(fake_wechat, REFRESHER=False)
    result = run(app2, "simulate", "hi")
    assert_clean_failure(result, fake_wechat)
    assert "WXMP_TOKEN" in result.output


# -- qrcode ------------------------------------------------------------------------------------


def test_qrcode(app: flask.Flask, fake_wechat: FakeWeChat) -> None:
    result = run(app, "qrcode", "42")
    assert result.exit_code == 0, result.output
    body = fake_wechat.calls("/cgi-bin/qrcode/create")[-1].json
    assert body["action_name"] == "QR_LIMIT_SCENE" and body["action_info"]["scene"] == {"scene_id": 42}
    assert result.output.splitlines()[0].startswith("https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=")

    result = run(app, "qrcode", "promo-2026", "--expire", "3600")
    assert result.exit_code == 0, result.output
    body = fake_wechat.calls("/cgi-bin/qrcode/create")[-1].json
    assert body["action_name"] == "QR_STR_SCENE" and body["expire_seconds"] == 3600

    result = run(app, "qrcode", "200000")  # permanent scene ids stop at 100,000
    assert_clean_failure(result, fake_wechat)
    assert "scene_id 200000" in result.output
    assert fake_wechat.count("/cgi-bin/qrcode/create") == 2


def test_group_lists_every_command_and_keeps_refresher(app: flask.Flask) -> None:
    result = run(app, "--help")
    for name in ("token", "menu", "users", "send", "mass", "simulate", "qrcode", "refresher"):
        assert name in result.output


def test_network_error_hint(app: flask.Flask, fake_wechat: FakeWeChat) -> None:
    run(app, "token")  # a token first, so the failure is the menu call's
    fake_wechat.http_error_next(status=502, paths=("/cgi-bin/menu/get",))
    result = run(app, "menu", "show")
    assert_clean_failure(result, fake_wechat)
    assert "HTTP 502" in result.output and "could not be reached" in result.output


def test_commands_in_sandbox_mode_talk_to_the_sandbox_fake(tmp_path: Path) -> None:
    app = flask.Flask("clisandbox", instance_path=str(tmp_path))
    app.testing = True  # no secret + testing: the sandbox is on
    wx = WxMP(app)
    try:
        result = run(app, "qrcode", "7")
        assert result.exit_code == 0, result.output
        assert "(sandbox mode: this command talks to its own in-process fake WeChat" in result.output
        assert app.extensions["wxmp.sandbox"].fake.count("/cgi-bin/qrcode/create") == 1
    finally:
        wx.stop()


# -- hints say what is actually wrong -----------------------------------------------------------------


def test_no_secret_blames_the_missing_secret_not_external_mode(
    make_app: MakeApp, fake_wechat: FakeWeChat
) -> None:
    app, _ = make_app(None, APPID=fake_wechat.appid, API_BASE=fake_wechat.url, EXTERNAL_WAIT=0)
    result = run(app, "menu", "show")
    assert_clean_failure(result, fake_wechat)
    assert "WXMP_SECRET is not set" in result.output
    assert "Hint: set WXMP_SECRET" in result.output
    assert "external" not in result.output and "refresher` running" not in result.output


def test_unreachable_wechat_names_the_address(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    from wxmp.testing.servers import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    app, _ = make_app(
        None, APPID=fake_wechat.appid, SECRET=fake_wechat.secret, API_BASE=dead, REFRESHER=False, TIMEOUT=0.3
    )
    result = run(app, "token")
    assert_clean_failure(result, fake_wechat)
    assert f"Hint: {dead} could not be reached" in result.output


def test_config_error_hint_points_at_app_config(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    app, _ = make_app(fake_wechat, REFRESHER=False)
    result = run(app, "simulate", "hi")
    assert_clean_failure(result, fake_wechat)
    assert "Hint: set app.config['WXMP_TOKEN'] in your app" in result.output
    assert "or the environment" not in result.output


def test_simulate_exits_non_zero_when_the_handler_crashes(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    app, wx = make_app(fake_wechat, REFRESHER=False, TOKEN="simtoken")

    @wx.on("text")
    def broken(msg):
        raise KeyError("order_id")

    result = run(app, "simulate", "ping")
    assert result.exit_code == 1, result.output
    assert "the handler raised KeyError: 'order_id'" in result.output
    assert "no reply" not in result.output


def test_token_with_the_cache_down_fails_and_says_so(make_app: MakeApp, fake_wechat: FakeWeChat) -> None:
    from wxmp.testing.servers import free_port

    app, _ = make_app(fake_wechat, REFRESHER=False, CACHE=f"redis://127.0.0.1:{free_port()}/0")
    result = run(app, "token")
    assert_clean_failure(result, fake_wechat)
    assert "access_token" in result.output  # the token itself came from WeChat directly
    assert "shared redis cache did not answer" in result.output
    assert "Hint: the shared cache (WXMP_CACHE) did not answer" in result.output
