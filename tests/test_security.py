"""Security review, as tests.

- A scripted session (tokens fetched, refreshed, revoked, rejected; WeChat errors, 5xx and
  timeouts; callbacks in every mode, refused ones and a failing handler; the status page; the CLI)
  leaks no secret: not the AppSecret, the server Token, the EncodingAESKey, an access_token or a
  cache password, in any log record (everything at DEBUG, urllib3 and werkzeug included, with
  tracebacks), any exception text, any repr, the status page or the CLI's output.
- The sandbox and the status page are off in a production configuration.
- Signatures outside the timestamp window are refused (replays, clock skew); GET and POST without a
  signature are refused; in safe mode both signature and msg_signature are checked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import flask
import pytest

from wxmp import ApiError, ConfigError, NetworkError, Settings, TokenInvalidError, WxMP, WxMPError
from wxmp.cache import resolve_cache
from wxmp.crypto import MessageCrypto, Verifier, signature
from wxmp.testing import FakeWeChat, WeChatUser
from wxmp.testing.user import CallbackRefused

TOKEN = "secTokenZ9q7Lw"
AES_KEY = "Zq8Lw3Vn5Tb7Rk2Mx4Pc6Hd9Jf1Gs0Ya3Ue5Io7Wp2K"
OTHER_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
REDIS_PASSWORD = "redisPw8Hk2Qz"
STATUS_SECRET = "statusBearer0123456789"


class Capture(logging.Handler):
    """Every record, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    names = ["", "wxmp", "urllib3", "urllib3.connectionpool", "werkzeug", "requests"]
    levels = {name: logging.getLogger(name).level for name in names}
    root.addHandler(handler)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    with FakeWeChat(token_lifetime=60) as fake:
        fake.add_user("o1")
        yield fake


class Leaks:
    """Everything that must never be shown, and the texts to check."""

    def __init__(self, fake: FakeWeChat) -> None:
        self.fake = fake
        self.texts: dict[str, str] = {}

    def secrets(self) -> dict[str, str]:
        found = {
            "AppSecret": self.fake.secret,
            "Token": TOKEN,
            "AES key": AES_KEY,
            "redis password": REDIS_PASSWORD,
        }
        tokens = {r.token for r in self.fake.requests if r.token}
        tokens |= {t for t in self.fake._tokens}  # issued but maybe never used
        found.update({f"access_token {t[:6]}": t for t in tokens})
        return found

    def add(self, where: str, text: Any) -> None:
        self.texts[where] = text if isinstance(text, str) else repr(text)

    def error(self, where: str, exc: BaseException) -> None:
        self.add(f"str({where})", str(exc))
        self.add(f"repr({where})", repr(exc))
        self.add(f"args({where})", repr(exc.args))

    def check(self) -> None:
        found = [
            f"{name} in {where}"
            for where, text in self.texts.items()
            for name, secret in self.secrets().items()
            if secret in text
        ]
        assert not found, found
        assert len(self.secrets()) > 4  # the session did fetch tokens


def test_scripted_session_leaks_no_secret(fake, make_app, capture, tmp_path):
    leaks = Leaks(fake)
    app, wx = make_app(
        fake,
        token=TOKEN,
        aes_key=AES_KEY,
        stable_token=False,
        timeout=0.5,
        status=True,
        status_secret=STATUS_SECRET,
        allow_plaintext=True,  # every mode below, and the warning it logs at start
        cache=f"filesystem:{tmp_path / 'cache'}",
    )

    @wx.on("text", match="^boom")
    def boom(msg):
        raise RuntimeError("handler exploded")

    @wx.on("text")
    def echo(msg):
        wx.user.get(msg.openid)
        return f"echo {msg.content}"

    # Tokens: fetch, use, revoke (recovered once), rejected twice (raised), forced refresh.
    assert wx.user.get("o1")["openid"] == "o1"
    fake.revoke_tokens()
    wx.message.send_text("o1", "hello")
    fake.fail_next(2, 40001, paths=("/cgi-bin/user/info",))
    with pytest.raises(TokenInvalidError) as exc:
        wx.user.get("o1")
    leaks.error("TokenInvalidError", exc.value)
    wx.state().access_token.refresh()
    # WeChat errors, 5xx, timeouts, a refused fetch.
    for arm, kind in (
        (lambda: fake.fail_next(1, -1, paths=("/cgi-bin/user/info",)), "SystemBusyError"),
        (lambda: fake.http_error_next(1, 502, paths=("/cgi-bin/user/info",)), "NetworkError 502"),
        (lambda: fake.hang_next(1, 2, paths=("/cgi-bin/user/info",)), "NetworkError timeout"),
        (lambda: fake.fail_next(1, 40003, paths=("/cgi-bin/user/info",)), "InvalidOpenIDError"),
    ):
        arm()
        with pytest.raises(WxMPError) as exc:
            wx.user.get("o1")
        leaks.error(kind, exc.value)
    # Callbacks: every mode, a handler that raises, refused ones.
    common = {"openid": "o1", "account": "gh_sec"}
    for mode in ("plain", "compatible", "safe"):
        user = WeChatUser(app, TOKEN, aes_key=AES_KEY, appid=fake.appid, mode=mode, **common)
        assert user.verify("e1") == "e1"
        assert user.send_text("hi").content == "echo hi"
        assert user.send_text("boom") is None  # logged with its traceback, answered success
    for bad in (
        WeChatUser(app, "wrongToken1", **common),
        WeChatUser(app, TOKEN, aes_key=OTHER_AES_KEY, appid=fake.appid, **common),
        WeChatUser(app, TOKEN, clock=lambda: time.time() - 3600, **common),
    ):
        with pytest.raises(CallbackRefused) as refused:
            bad.send_text("x")
        leaks.add(f"refused body {refused.value.status}", refused.value.result.text)
    # The status page, with its bearer secret.
    client = app.test_client()
    for path in ("/wxmp/status", "/wxmp/status.json"):
        response = client.get(path, headers={"Authorization": f"Bearer {STATUS_SECRET}"})
        assert response.status_code == 200, path
        leaks.add(path, response.get_data(as_text=True))
    # The CLI.
    runner = app.test_cli_runner()
    for args in (
        ["wxmp", "token"],
        ["wxmp", "token", "--refresh"],
        ["wxmp", "send", "o1", "hi"],
        ["wxmp", "simulate", "hello", "--xml", "--openid", "o1"],
        ["wxmp", "menu", "show"],
    ):
        result = runner.invoke(args=args)
        leaks.add("cli " + " ".join(args), result.output + str(result.exception or ""))
        assert "Traceback" not in result.output
        assert result.exit_code == (1 if args[1] == "menu" else 0), (args, result.output)  # no menu: 46003
    fake.fail_next(1, 40164, paths=("/cgi-bin/message/custom/send",))
    result = runner.invoke(args=["wxmp", "send", "o1", "hi"])
    assert result.exit_code == 1 and "40164" in result.output
    leaks.add("cli after 40164", result.output)
    # A quota refusal on the token endpoint (logged once as an error).
    fake.revoke_tokens()
    fake.fail_next(1, 45009, paths=("/cgi-bin/token",))
    with pytest.raises(ApiError) as exc:
        wx.user.get("o1")
    leaks.error("QuotaExceededError", exc.value)

    # Reprs of everything a user may print or a debugger may show.
    state = wx.state()
    objects: dict[str, Any] = {
        "WxMP": wx,
        "Settings": state.settings,
        "AppState": state,
        "TokenManager": state.access_token,
        "TokenEntry": state.access_token.peek(),
        "ApiClient": state.client,
        "Callback": state.callback,
        "SharedStore": state.store,
        "Deduplicator": state.callback.dedup if state.callback else None,
        "MessageCrypto": state.callback.crypto if state.callback else None,
        "Verifier": state.callback.verifier if state.callback else None,
        "app.extensions": {k: v for k, v in app.extensions.items() if k.startswith("wxmp")},
    }
    for name, obj in objects.items():
        leaks.add(f"repr({name})", repr(obj))
        leaks.add(f"str({name})", str(obj))
    leaks.add("logs", "\n".join(capture.lines))
    leaks.check()
    # The session did exercise the noisy paths.
    logs = "\n".join(capture.lines)
    assert "urllib3.connectionpool" in logs and "access_token=***" in logs
    assert "handler exploded" in logs and "Traceback" in logs
    assert "callback refused (403)" in logs


def test_config_errors_and_reprs_hide_secrets():
    leaks = Leaks(FakeWeChat())
    secret = "appSecretValue0123456789abcdef01"
    bad_values = {
        "WXMP_AES_KEY": AES_KEY[:-1],  # 42 characters: refused, never echoed
        "WXMP_TOKEN": TOKEN + "!",
    }
    for key, value in bad_values.items():
        with pytest.raises(ConfigError) as exc:
            Settings.from_mapping({"WXMP_APPID": "wx0000000000000001", "WXMP_SECRET": secret, key: value})
        assert value not in str(exc.value) and value not in repr(exc.value)
    with pytest.raises(ConfigError) as exc:
        resolve_cache(f"bogus://user:{REDIS_PASSWORD}@host/0", "/nonexistent")
    leaks.error("ConfigError cache", exc.value)
    settings = Settings.from_mapping(
        {
            "WXMP_APPID": "wx0000000000000001",
            "WXMP_SECRET": secret,
            "WXMP_TOKEN": TOKEN,
            "WXMP_AES_KEY": AES_KEY,
            "WXMP_CACHE": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        }
    )
    leaks.add("repr(Settings)", repr(settings))
    leaks.add("repr(MessageCrypto)", repr(MessageCrypto(AES_KEY, "wx0000000000000001")))
    leaks.add("repr(Verifier)", repr(Verifier(TOKEN)))
    assert secret not in repr(settings)
    found = [w for w, t in leaks.texts.items() for s in (secret, TOKEN, AES_KEY, REDIS_PASSWORD) if s in t]
    assert not found, found


# -- off by default in production -------------------------------------------------------------


@pytest.mark.parametrize("with_secret", [True, False], ids=["with-secret", "callback-only"])
def test_sandbox_and_status_are_off_in_production(tmp_path, with_secret):
    app = flask.Flask("prod", instance_path=str(tmp_path))  # not debug, not testing
    app.config.update(WXMP_APPID="wx0000000000000001", WXMP_TOKEN=TOKEN, WXMP_CACHE="simple")
    if with_secret:
        app.config.update(WXMP_SECRET="appSecretValue0123456789abcdef01", WXMP_REFRESHER=False)
    wx = WxMP(app)
    try:
        assert wx.settings.sandbox is False and wx.settings.status is False
        assert [r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/wxmp")] == []
        client = app.test_client()
        for path in ("/wxmp/status", "/wxmp/status.json", "/wxmp/sandbox", "/wxmp/"):
            assert client.get(path).status_code == 404, path
    finally:
        wx.stop()


def test_status_page_behind_a_proxy_that_adds_no_header_needs_its_guard(fake, make_app):
    # nginx's default proxy_pass: every visitor arrives from 127.0.0.1 with no forwarding header.
    with pytest.raises(ConfigError):
        make_app(fake, token=TOKEN, status=True, refresher=False)
    app, wx = make_app(fake, token=TOKEN, status=True, status_secret=STATUS_SECRET, refresher=False)
    client = app.test_client()
    assert client.get("/wxmp/status.json").status_code == 403
    remote = client.get("/wxmp/status.json", environ_overrides={"REMOTE_ADDR": "203.0.113.9"})
    assert remote.status_code == 403
    proxied = client.get("/wxmp/status.json", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403
    bearer = {"Authorization": f"Bearer {STATUS_SECRET}"}
    assert client.get("/wxmp/status.json", headers=bearer).status_code == 200


def test_status_page_refuses_a_rebinding_host_in_development(fake, tmp_path):
    app = flask.Flask("dev", instance_path=str(tmp_path))
    app.debug = True
    app.config.update(WXMP_APPID=fake.appid, WXMP_SECRET=fake.secret, WXMP_API_BASE=fake.url,
                      WXMP_CACHE="simple", WXMP_REFRESHER=False, WXMP_STATUS=True)  # fmt: skip
    wx = WxMP(app)
    try:
        client = app.test_client()
        assert client.get("/wxmp/status.json").status_code == 200  # localhost, loopback
        rebound = client.get("/wxmp/status.json", headers={"Host": "rebind.attacker.example"})
        assert rebound.status_code == 403
    finally:
        wx.stop()


# -- signatures ---------------------------------------------------------------------------------


@pytest.fixture
def callback_app(make_app):
    app, wx = make_app(token=TOKEN, aes_key=AES_KEY, appid="wx0000000000000001")
    runs: list[str] = []

    @wx.on("text")
    def echo(msg):
        runs.append(msg.content)
        return msg.content

    app.runs = runs  # type: ignore[attr-defined]
    return app


@pytest.mark.parametrize("skew", [-301, 301, -3600, 86400])
@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_signatures_outside_the_window_are_refused(callback_app, skew, mode):
    user = WeChatUser(
        callback_app,
        TOKEN,
        aes_key=AES_KEY,
        appid="wx0000000000000001",
        mode=mode,
        clock=lambda: time.time() + skew,
    )
    with pytest.raises(CallbackRefused) as refused:
        user.send_text("replayed")
    assert refused.value.status == 403
    with pytest.raises(CallbackRefused) as refused:
        user.verify("echo-me")
    assert refused.value.status == 403 and "echo-me" not in refused.value.result.text
    assert callback_app.runs == []


def test_inside_the_window_accepted_and_an_exact_replay_runs_nothing(make_app):
    callback_app, wx = make_app(token=TOKEN)  # plaintext mode: no AES key
    callback_app.runs = []  # type: ignore[attr-defined]
    wx.on("text")(lambda msg: callback_app.runs.append(msg.content) or msg.content)  # type: ignore[attr-defined]
    user = WeChatUser(callback_app, TOKEN, clock=lambda: time.time() - 290)
    ts = str(int(user.clock()))
    query = {"signature": signature(TOKEN, ts, "7"), "timestamp": ts, "nonce": "7"}
    xml = user.message_xml("text", {"Content": "once"}, msg_id=42)
    first = user.request("POST", query, xml)
    # The very same signed request again within the window: WeChat's scheme has no nonce store,
    # so it is accepted, and dedup answers it with the same reply without running the handler.
    replay = user.request("POST", query, xml)
    assert first.status == replay.status == 200
    assert first.body == replay.body and b"once" in first.body
    assert callback_app.runs == ["once"]


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"echostr": "echo-me"},
        {"echostr": "echo-me", "timestamp": "1", "nonce": "1"},
        {"echostr": "echo-me", "signature": "0" * 40, "timestamp": "{now}", "nonce": "1"},
        {"echostr": "echo-me", "signature": "", "timestamp": "{now}", "nonce": "1"},
        {"echostr": "echo-me", "signature": "{sig}", "nonce": "1"},
        {"echostr": "echo-me", "signature": "{sig}", "timestamp": "{now}"},
    ],
    ids=["nothing", "echostr-only", "no-signature", "wrong", "empty", "no-timestamp", "no-nonce"],
)
def test_get_without_a_valid_signature_is_refused(callback_app, query):
    now = str(int(time.time()))
    sig = signature(TOKEN, now, "1")
    params = {k: v.format(now=now, sig=sig) for k, v in query.items()}
    response = callback_app.test_client().get("/wechat", query_string=params)
    assert response.status_code == 403
    assert b"echo-me" not in response.data


def test_post_without_a_signature_is_refused(callback_app):
    user = WeChatUser(callback_app, TOKEN)
    xml = user.message_xml("text", {"Content": "x"})
    assert user.request("POST", {}, xml).status == 403
    assert user.request("POST", {"timestamp": str(int(time.time())), "nonce": "1"}, xml).status == 403
    assert callback_app.runs == []


def test_safe_mode_checks_signature_and_msg_signature(callback_app):
    appid = "wx0000000000000001"
    user = WeChatUser(callback_app, TOKEN, aes_key=AES_KEY, appid=appid, mode="safe")
    crypto = MessageCrypto(AES_KEY, appid)
    encrypted = crypto.encrypt(user.message_xml("text", {"Content": "secret"}))
    body = f"<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    ts, nonce = str(int(time.time())), "99"
    good_sig, good_msg_sig = signature(TOKEN, ts, nonce), signature(TOKEN, ts, nonce, encrypted)
    base = {"timestamp": ts, "nonce": nonce, "encrypt_type": "aes"}
    for params in (
        {**base, "msg_signature": good_msg_sig},  # no plaintext signature
        {**base, "signature": "0" * 40, "msg_signature": good_msg_sig},
        {**base, "signature": good_sig},  # no msg_signature
        {**base, "signature": good_sig, "msg_signature": good_sig},  # the mix-up users make
        {**base, "signature": good_sig, "msg_signature": signature(TOKEN, ts, nonce, encrypted + "x")},
    ):
        assert user.request("POST", params, body.encode()).status == 403, params
    assert callback_app.runs == []
    ok = user.request("POST", {**base, "signature": good_sig, "msg_signature": good_msg_sig}, body.encode())
    assert ok.status == 200 and callback_app.runs == ["secret"]


def test_network_error_text_never_carries_the_query(fake, make_app):
    app, wx = make_app(fake, timeout=0.3, refresher=False)
    fake.hang_next(1, 2, paths=("/cgi-bin/user/info",))
    with pytest.raises(NetworkError) as exc:
        wx.user.get("o1")
    token = wx.state().access_token.peek().value  # type: ignore[union-attr]
    assert token not in str(exc.value) and "access_token" not in str(exc.value)
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_sandbox_pages_show_no_secret(tmp_path, capture):
    app = flask.Flask("dev", instance_path=str(tmp_path))
    app.testing = True
    app.config.update(
        WXMP_APPID="wx0000000000000001",
        WXMP_TOKEN=TOKEN,
        WXMP_AES_KEY=AES_KEY,
        WXMP_SANDBOX=True,
        WXMP_STATUS=True,
    )
    wx = WxMP(app)

    @wx.on("text")
    def echo(msg):
        return f"echo {msg.content}"

    try:
        client = app.test_client()
        texts = {"page": client.get("/wxmp/sandbox").get_data(as_text=True)}
        sent = client.post("/wxmp/sandbox/api/send", json={"action": "text", "content": "hi"})
        assert sent.status_code == 200 and "echo hi" in sent.get_data(as_text=True)
        texts["send"] = sent.get_data(as_text=True)
        texts["poll"] = client.get("/wxmp/sandbox/api/poll").get_data(as_text=True)
        texts["status"] = client.get("/wxmp/status.json").get_data(as_text=True)
        texts["logs"] = "\n".join(capture.lines)
        fake = app.extensions["wxmp.sandbox"].fake
        tokens = {r.token for r in fake.requests if r.token} | set(fake._tokens)
        secrets = {TOKEN, AES_KEY, fake.secret, *tokens}
        assert not [(where, s[:6]) for where, text in texts.items() for s in secrets if s in text]
    finally:
        wx.stop()
