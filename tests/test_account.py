"""Account: the core without Flask, several accounts in one Flask app, one token per appid for the fleet."""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import threading
import time
import weakref
from collections import Counter
from pathlib import Path

import flask
import pytest
import requests

from wxmp import Account, ConfigError, TextReply, WxMP
from wxmp.testing import FakeWeChat, WeChatUser
from wxmp.testing.servers import free_port, gunicorn_quiet_flags

TESTS = Path(__file__).parent
LIFETIME = 3.0
TOKEN_PATHS = ("/cgi-bin/token", "/cgi-bin/stable_token")


@pytest.fixture
def fake():
    with FakeWeChat() as fake:
        fake.add_user("o1")
        yield fake


@pytest.fixture
def fake_b():
    with FakeWeChat(appid="wx00000000000000b2", secret="secret-of-account-b-0123456789ab") as fake:
        fake.add_user("o1")
        yield fake


def _settings(fake: FakeWeChat, **extra):
    return {"appid": fake.appid, "secret": fake.secret, "api_base": fake.url, **extra}


# -- Account on its own ------------------------------------------------------------------------------


def test_account_from_keywords_or_a_mapping_validates_like_the_config(fake):
    by_kw = Account(cache="simple", **_settings(fake))
    by_map = Account({"WXMP_APPID": fake.appid, "WXMP_SECRET": fake.secret, "WXMP_API_BASE": fake.url})
    assert by_kw.settings.appid == by_map.settings.appid == fake.appid
    assert by_map.settings.api_base == fake.url
    with pytest.raises(ConfigError, match=r"WXMP_AES_KEY: must be 43"):
        Account(appid=fake.appid, token="tok123", aes_key="short")
    with pytest.raises(ConfigError, match=r"WXMP_APPIDD: unknown setting"):
        Account(appidd="wx1")


def test_account_calls_the_api_and_starts_no_thread_until_asked(fake, tmp_path):
    acct = Account(cache=f"filesystem:{tmp_path}", **_settings(fake))
    assert acct.user.get("o1")["openid"] == "o1"
    assert acct.menu is acct.group("menu")
    assert "wxmp-refresher" not in [t.name for t in threading.enumerate()]
    refresher = acct.start_refresher()
    try:
        assert refresher.running and acct.access_token.background
        assert acct.start_refresher() is refresher  # idempotent
    finally:
        acct.stop()
    assert not refresher.running


def test_accounts_with_the_same_appid_and_cache_share_one_token(fake, tmp_path):
    cache = f"filesystem:{tmp_path / 'shared'}"
    first = Account(cache=cache, **_settings(fake))
    second = Account(cache=cache, **_settings(fake))
    assert first.access_token.get() == second.access_token.get()
    assert fake.count("/cgi-bin/stable_token") == 1


def test_the_default_cache_is_a_per_user_folder(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    acct = Account(**_settings(fake))
    acct.access_token.get()
    assert acct.store.backend == "filesystem"
    assert (tmp_path / "xdg" / "wxmp").is_dir()


def test_account_callback_is_a_wsgi_app_and_handlers_see_their_account(fake):
    acct = Account(token="acct123", cache="simple", **_settings(fake))
    seen = []

    @acct.on("text")
    def echo(msg):
        seen.append(msg.account)
        acct.message.send_text(msg.openid, "pong")
        return f"got {msg.content}"

    user = WeChatUser(acct.callback, "acct123", openid="o1")
    reply = user.send_text("ping")
    assert isinstance(reply, TextReply) and reply.content == "got ping"
    assert seen == [acct]
    assert [c.json["touser"] for c in fake.calls("/cgi-bin/message/custom/send")] == ["o1"]


def test_account_text_shortcut_registers_on_its_router(fake):
    acct = Account(token="acct123", cache="simple", **_settings(fake))

    @acct.text
    def echo(msg):
        return msg.content

    assert acct.router.routes[0].handler is echo
    assert WeChatUser(acct.callback, "acct123").send_text("hi").content == "hi"


def test_callback_without_a_token_is_a_config_error(fake):
    with pytest.raises(ConfigError, match="WXMP_TOKEN"):
        Account(cache="simple", **_settings(fake)).callback  # noqa: B018


def test_account_in_a_process_that_never_imports_flask(fake, tmp_path):
    script = f"""
import json, sys
from wxmp import Account
acct = Account(appid={fake.appid!r}, secret={fake.secret!r}, api_base={fake.url!r},
               cache={"filesystem:" + str(tmp_path / "c")!r})
user = acct.user.get("o1")
acct.menu.create({{"button": [{{"type": "click", "name": "Hi", "key": "K1"}}]}})
acct.message.send_text("o1", "from a script")
print(json.dumps({{"openid": user["openid"], "flask": "flask" in sys.modules}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"openid": "o1", "flask": False}
    assert fake.count("/cgi-bin/menu/create") == 1
    assert fake.calls("/cgi-bin/message/custom/send")[0].json["text"]["content"] == "from a script"


# -- WxMP over accounts --------------------------------------------------------------------------------


def _multi_app(tmp_path, fake, fake_b, **config):
    app = flask.Flask("multi", instance_path=str(tmp_path / "instance"))
    app.config.update(
        WXMP_CACHE="simple",
        WXMP_ACCOUNTS={
            "main": {"appid": fake.appid, "secret": fake.secret, "api_base": fake.url, "token": "maintoken"},
            "shop": {
                "WXMP_APPID": fake_b.appid,
                "WXMP_SECRET": fake_b.secret,
                "WXMP_API_BASE": fake_b.url,
                "WXMP_TOKEN": "shoptoken",
            },
        },
        **config,
    )
    return app


def test_each_account_has_its_path_router_token_and_groups(tmp_path, fake, fake_b):
    app = _multi_app(tmp_path, fake, fake_b)
    wx = WxMP()
    handled = []

    @wx.on("text")  # no account=: the default account, the first of WXMP_ACCOUNTS
    def main_echo(msg):
        handled.append(("main", msg.account.name))
        wx.message.send_text(msg.openid, "from main")
        return "main"

    @wx.on("text", account="shop")
    def shop_echo(msg):
        handled.append(("shop", msg.account.name))
        wx.message.send_text(msg.openid, "from shop")  # the receiving account's token, not the default
        return "shop"

    wx.init_app(app)
    try:
        with app.app_context():
            assert set(wx.accounts) == {"main", "shop"}
            assert wx.account().name == "main"
            assert wx.accounts["shop"].settings.callback_path == "/wechat/shop"
        main = WeChatUser(app.wsgi_app, "maintoken", openid="o1", path="/wechat/main")
        shop = WeChatUser(app.wsgi_app, "shoptoken", openid="o1", path="/wechat/shop")
        assert main.send_text("a").content == "main"
        assert shop.send_text("b").content == "shop"
        assert handled == [("main", "main"), ("shop", "shop")]
        assert [c.json["text"]["content"] for c in fake.calls("/cgi-bin/message/custom/send")] == [
            "from main"
        ]
        assert [c.json["text"]["content"] for c in fake_b.calls("/cgi-bin/message/custom/send")] == [
            "from shop"
        ]
        # Each fake accepted only its own tokens: nothing crossed over.
        assert all(fake_b.is_valid(c.token) for c in fake_b.calls("/cgi-bin/message/custom/send"))
        with app.app_context():
            assert wx.accounts["shop"].user.get("o1")["openid"] == "o1"
        assert fake_b.count("/cgi-bin/user/info") == 1 and fake.count("/cgi-bin/user/info") == 0
    finally:
        wx.stop()


def test_a_push_signed_for_one_account_is_refused_on_the_other(tmp_path, fake, fake_b):
    app = _multi_app(tmp_path, fake, fake_b)
    wx = WxMP(app)
    try:
        forged = WeChatUser(app.wsgi_app, "maintoken", path="/wechat/shop")
        assert forged.post(forged.message_xml("text", {"Content": "x"})).status == 403
    finally:
        wx.stop()


def test_two_accounts_keep_their_tokens_under_their_own_appid(tmp_path, fake, fake_b):
    app = _multi_app(tmp_path, fake, fake_b)
    wx = WxMP(app)
    try:
        with app.app_context():
            main, shop = wx.accounts["main"], wx.accounts["shop"]
            assert main.access_token.get() != shop.access_token.get()
            assert main.store.namespace.startswith(f"wxmp:{fake.appid}@127.0.0.1:")
            assert shop.store.namespace.startswith(f"wxmp:{fake_b.appid}@127.0.0.1:")
            assert main.store.cache is shop.store.cache  # one cache, two namespaces
    finally:
        wx.stop()


def test_single_account_keys_beside_named_accounts(tmp_path, fake, fake_b):
    app = flask.Flask("mixed", instance_path=str(tmp_path / "i"))
    app.config.update(
        WXMP_APPID=fake.appid,
        WXMP_SECRET=fake.secret,
        WXMP_API_BASE=fake.url,
        WXMP_TOKEN="maintoken",
        WXMP_CACHE="simple",
        WXMP_ACCOUNTS={"shop": {"appid": fake_b.appid, "api_base": fake_b.url, "token": "shoptoken"}},
    )
    wx = WxMP(app)
    try:
        with app.app_context():
            assert list(wx.accounts) == ["default", "shop"]
            assert wx.accounts["shop"].settings.secret is None  # credentials are never inherited
            assert wx.accounts["shop"].settings.cache == "simple"  # the rest is
        assert WeChatUser(app.wsgi_app, "maintoken").verify("e1") == "e1"
        assert WeChatUser(app.wsgi_app, "shoptoken", path="/wechat/shop").verify("e2") == "e2"
    finally:
        wx.stop()


@pytest.mark.parametrize(
    ("accounts", "match"),
    [
        ({"shop": {"tokn": "x"}}, r"WXMP_ACCOUNTS\['shop'\]: unknown setting 'tokn'"),
        ({"shop": {"aes_key": "bad", "appid": "wx1"}}, r"WXMP_ACCOUNTS\['shop'\]\.WXMP_AES_KEY"),
        (["shop"], "maps names to settings"),
        ({"a b": {}}, "account names"),
        (
            {"a": {"token": "tok1", "callback_path": "/w"}, "b": {"token": "tok2", "callback_path": "/w"}},
            "share the callback path /w",
        ),
    ],
)
def test_bad_accounts_config_names_the_account(tmp_path, accounts, match):
    app = flask.Flask("bad", instance_path=str(tmp_path))
    app.config.update(WXMP_CACHE="simple", WXMP_ACCOUNTS=accounts)
    with pytest.raises(ConfigError, match=match):
        WxMP(app)


def test_unknown_account_name_lists_the_configured_ones(tmp_path, fake, fake_b):
    app = _multi_app(tmp_path, fake, fake_b)
    wx = WxMP(app)
    try:
        with (
            app.app_context(),
            pytest.raises(ConfigError, match=r"no account named 'nope' \(configured: main, shop\)"),
        ):
            wx.account("nope")
    finally:
        wx.stop()


def test_cli_account_option(tmp_path, fake, fake_b):
    app = _multi_app(tmp_path, fake, fake_b)
    wx = WxMP(app)
    try:
        runner = app.test_cli_runner()
        result = runner.invoke(args=["wxmp", "--account", "shop", "send", "o1", "hello shop"])
        assert result.exit_code == 0, result.output
        assert fake_b.calls("/cgi-bin/message/custom/send")[0].json["text"]["content"] == "hello shop"
        assert fake.count("/cgi-bin/message/custom/send") == 0
        result = runner.invoke(args=["wxmp", "--account", "nope", "token"])
        assert result.exit_code == 1
        assert "no account named 'nope'" in result.output
    finally:
        wx.stop()


def test_one_refresher_thread_serves_every_account(tmp_path, fake, fake_b):
    app = _multi_app(tmp_path, fake, fake_b)
    wx = WxMP(app)
    try:
        state = wx.state(app)
        assert state.refresher is not None and state.refresher.running
        kinds = {(m.store.namespace, m.kind) for m in state.refresher.managers}
        assert kinds == {(a.store.namespace, "access_token") for a in state.accounts.values()}
        assert len(kinds) == 2
        names = [t.name for t in threading.enumerate()]
        assert names.count("wxmp-refresher") == 1
    finally:
        wx.stop()


def test_second_init_app_on_one_app_is_refused(tmp_path, fake):
    app = flask.Flask("twice", instance_path=str(tmp_path))
    app.config.update(WXMP_APPID=fake.appid, WXMP_API_BASE=fake.url, WXMP_CACHE="simple")
    wx = WxMP(app)
    with pytest.raises(RuntimeError, match="already registered"):
        wx.init_app(app)
    with pytest.raises(RuntimeError, match="already registered"):
        WxMP().init_app(app)


def test_a_discarded_app_is_freed(tmp_path, fake):
    wx = WxMP()
    for i in range(3):
        app = flask.Flask(f"gone{i}", instance_path=str(tmp_path / str(i)))
        app.config.update(
            WXMP_APPID=fake.appid, WXMP_SECRET=fake.secret, WXMP_API_BASE=fake.url, WXMP_TOKEN="tok123"
        )
        wx.init_app(app)
        state = wx.state(app)
        thread = state.refresher
        ref = weakref.ref(app)
        del app, state
        gc.collect()
        assert ref() is None
        assert not thread.running  # its refresher stopped with it
    assert list(wx._apps) == []


# -- real processes --------------------------------------------------------------------------------


def _worker(accounts: dict, duration: float, threads: int = 3) -> subprocess.Popen[str]:
    cfg = {"accounts": accounts, "duration": duration, "threads": threads}
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "account_worker.py"), json.dumps(cfg)], stdout=subprocess.PIPE, text=True
    )
    assert json.loads(proc.stdout.readline()) == {"ready": True}
    return proc


def _result(proc: subprocess.Popen[str]) -> dict:
    stdout, _ = proc.communicate(timeout=120)
    return json.loads(stdout.strip().splitlines()[-1])


def _check_fetches(fake: FakeWeChat) -> None:
    fetches = sorted(r.time for r in fake.requests if r.path in TOKEN_PATHS)
    span = fake.requests[-1].time - fetches[0]
    assert len(fetches) <= math.ceil(span / LIFETIME) + 1, (len(fetches), span)


@pytest.mark.fleet
def test_a_script_and_a_gunicorn_fleet_share_one_token(tmp_path, redis_url):
    with FakeWeChat(token_lifetime=LIFETIME) as fake:
        fake.add_user("o1")
        settings = {
            "WXMP_APPID": fake.appid,
            "WXMP_SECRET": fake.secret,
            "WXMP_API_BASE": fake.url,
            "WXMP_CACHE": redis_url,
            "WXMP_STABLE_TOKEN": False,  # classic: every extra fetch would break the others' token
            "WXMP_TIMEOUT": 2.0,
        }
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            "ACCT_INSTANCE": str(tmp_path / "instance"),
            "ACCT_CONFIG": json.dumps(settings),
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                "4",
                "-b",
                f"127.0.0.1:{port}",
                "account_gunicorn_app:app",
                *gunicorn_quiet_flags(),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}/_user"
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(url, timeout=30)
                    break
                except (requests.ConnectionError, requests.Timeout):
                    assert time.monotonic() < deadline, "gunicorn did not start"
                    time.sleep(0.1)
            script = _worker({"main": {k[5:].lower(): v for k, v in settings.items()}}, duration=10)
            statuses: Counter[int] = Counter()
            stop = time.monotonic() + 10

            def load() -> None:
                with requests.Session() as s:
                    while time.monotonic() < stop:
                        statuses[s.get(url, timeout=10).status_code] += 1
                        time.sleep(0.01)

            loaders = [threading.Thread(target=load) for _ in range(4)]
            for t in loaders:
                t.start()
            for t in loaders:
                t.join()
            result = _result(script)
        finally:
            server.terminate()
            server.communicate(timeout=30)
        assert result["errors"] == {} and result["calls"]["main"] > 50
        assert result["flask"] is False
        assert set(statuses) == {200} and statuses[200] > 50
        _check_fetches(fake)


@pytest.mark.fleet
def test_two_accounts_times_four_processes_on_one_redis(redis_url):
    with (
        FakeWeChat(token_lifetime=LIFETIME) as fake_a,
        FakeWeChat(
            appid="wx00000000000000b2", secret="secret-of-account-b-0123456789ab", token_lifetime=LIFETIME
        ) as fake_b,
    ):
        accounts = {}
        for name, fake in (("a", fake_a), ("b", fake_b)):
            fake.add_user("o1")
            accounts[name] = {
                "appid": fake.appid,
                "secret": fake.secret,
                "api_base": fake.url,
                "cache": redis_url,
                "stable_token": False,
                "timeout": 2.0,
            }
        procs = [_worker(accounts, duration=10, threads=2) for _ in range(4)]
        results = [_result(p) for p in procs]
        errors = {k: v for r in results for k, v in r["errors"].items()}
        assert errors == {}  # a token read across accounts would be refused by the other fake
        for name in ("a", "b"):
            assert sum(r["calls"][name] for r in results) > 100
        _check_fetches(fake_a)
        _check_fetches(fake_b)
        # Each fake only ever saw its own account's credentials.
        assert all(r.args.get("appid") in (None, fake_a.appid) for r in fake_a.requests)
        assert all(r.args.get("appid") in (None, fake_b.appid) for r in fake_b.requests)


def test_the_script_example_runs_without_flask():
    script = TESTS.parent / "examples" / "script.py"
    code = f"import runpy, sys; sys.argv = [{str(script)!r}, '--fake']; runpy.run_path({str(script)!r}, run_name='__main__')"
    wrapper = f"import sys\ntry:\n    exec({code!r})\nexcept SystemExit as e:\n    print('flask' in sys.modules); raise"
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[:3] == [
        "3 follower(s): oDemoFollower0, oDemoFollower1, oDemoFollower2",
        "tagged them with #100 script-demo",
        "sent a customer-service message to oDemoFollower0",
    ]
    assert lines[-1] == "False"  # the script never imported Flask


# -- how an account wires its token managers ------------------------------------------------------

EXTERNAL_REASON = (
    "this process is in external mode (WXMP_REFRESHER='external'): is `flask wxmp refresher` "
    "running against the same WXMP_CACHE?"
)


def test_the_access_token_manager_follows_the_settings(fake):
    owner = object()
    acct = Account(
        cache="simple", timeout=3.0, refresh_margin=0.05, external_wait=7.0, sender=owner, **_settings(fake)
    )
    m = acct.access_token
    assert (m.kind, m.key, m.margin, m.lock_ttl, m.wait, m.external_wait) == (
        "access_token",
        f"{fake.appid}:access_token",
        0.05,
        7.0,  # 2 x timeout + 1: a crashed holder's lock lapses after two request timeouts
        8.0,
        7.0,
    )
    assert m.sender is owner and acct.sender is owner and acct.client.sender is owner
    assert not m.exclusive  # the stable token may be fetched by several processes
    assert acct.tokens == {"access_token": m}
    assert acct.client.token is m and acct.client.timeout == 3.0
    assert m.no_fetch_reason == EXTERNAL_REASON  # it can fetch: the default text stays
    classic = Account(cache="simple", stable_token=False, **_settings(fake))
    assert classic.access_token.exclusive  # a classic fetch revokes the previous token: one at a time
    assert classic.access_token.get()
    assert fake.count("/cgi-bin/token") == 1 and fake.count("/cgi-bin/stable_token") == 0
    first = acct.access_token.get()
    assert acct.access_token.refresh() != first  # WeChat said the token is bad: a forced fetch
    forced = [c.json.get("force_refresh", False) for c in fake.calls("/cgi-bin/stable_token")]
    assert forced[0] is False and forced[-1] is True and forced.count(True) == 1


def test_why_a_process_cannot_fetch_is_named(fake):
    no_secret = Account(appid=fake.appid, cache="simple")
    assert no_secret.access_token.no_fetch_reason == (
        "WXMP_SECRET is not set, so this process cannot fetch one: set WXMP_SECRET, or let a process that "
        "has it (e.g. `flask wxmp refresher`) keep the token in the same WXMP_CACHE"
    )
    nothing = Account(cache="simple")
    assert nothing.access_token.no_fetch_reason == "WXMP_APPID is not set, so no token can be fetched"
    assert nothing.access_token.key == "-:access_token" and nothing.client.token is None
    external = Account(cache="simple", refresher="external", **_settings(fake))
    assert external.access_token.no_fetch_reason == EXTERNAL_REASON
    from wxmp.errors import TokenUnavailableError

    impatient = Account(appid=fake.appid, cache="simple", external_wait=0)
    with pytest.raises(
        TokenUnavailableError, match=r"^no valid access_token in the shared simple cache; WXMP_SECRET"
    ):
        impatient.access_token.get()
    assert fake.count("/cgi-bin/stable_token") == 0


def test_token_manager_is_one_per_kind_and_joins_the_refresher(fake):
    from wxmp.refresher import Refresher

    acct = Account(cache="simple", **_settings(fake))
    fetched: list[bool] = []

    def fetch(force: bool) -> tuple[str, int]:
        fetched.append(force)
        return "TICKET-1", 7200

    ticket = acct.token_manager("my_ticket", fetch)
    assert acct.token_manager("my_ticket", None) is ticket and acct.tokens["my_ticket"] is ticket
    assert (ticket.kind, ticket.key) == ("my_ticket", f"{fake.appid}:my_ticket")
    assert ticket.sender is acct and not ticket.exclusive
    assert ticket.get() == "TICKET-1" and fetched == [False]
    shared = Refresher([])
    assert acct.start_refresher(shared) is shared and not shared.running  # joined, not started
    later = acct.token_manager("later", fetch)
    assert shared.managers == [acct.access_token, ticket, later]
    shared.start()
    try:
        acct.stop()  # not its own thread: its owner stops it
        assert shared.running
    finally:
        shared.stop()
    fetched.clear()  # (the shared thread may have fetched the later token meanwhile)
    no_secret = Account(appid=fake.appid, cache="simple")
    with pytest.raises(Exception, match=r"^no valid my_ticket|my_ticket: cannot fetch here"):
        no_secret.token_manager("my_ticket", fetch).get()
    assert fetched == []  # a process without the secret never calls fetch


def test_handlers_register_by_kind_with_their_options(fake):
    acct = Account(token="acct123", cache="simple", **_settings(fake))
    acct.on("text", match="^a")(lambda msg: "starts with a")
    acct.on("image")(lambda msg: "image")
    user = WeChatUser(acct.callback, "acct123")
    assert user.send_text("abc").content == "starts with a"
    assert user.send_text("xyz") is None
    assert acct.name == "default" and repr(acct) == f"<Account 'default' appid='{fake.appid}' simple>"
    assert Account.from_settings(acct.settings, acct.store.cache).name == "default"


def test_the_default_cache_folder_is_under_the_home_cache(monkeypatch, tmp_path):
    from wxmp.account import default_cache_dir

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == str(tmp_path / ".cache" / "wxmp")


def test_router_sender_cache_and_stop_without_a_thread(fake):
    from cachelib import SimpleCache

    from wxmp.dispatch import Router

    router = Router()
    acct = Account(cache="simple", router=router, **_settings(fake))
    assert acct.router is router and acct.sender is acct
    acct.stop()  # no refresher was started: nothing to stop, no error
    cache = SimpleCache()
    assert Account.from_settings(acct.settings, cache).store.cache is cache


def test_the_async_views_are_built_once(fake):
    from wxmp.aio import AsyncAccount
    from wxmp.asgi import AsgiCallback

    acct = Account(token="acct123", cache="simple", **_settings(fake))
    assert isinstance(acct.asgi, AsgiCallback) and acct.asgi is acct.asgi
    assert isinstance(acct.aio, AsyncAccount) and acct.aio is acct.aio


# -- the callback an account builds: its settings, its scope -----------------------------------

AES = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def test_the_accounts_callback_follows_every_setting(fake, tmp_path):
    from wxmp import signals
    from wxmp.slow import SlowRunner

    acct = Account(
        token="acct123",
        aes_key=AES,
        cache=f"filesystem:{tmp_path}",
        dedup_ttl=120,
        timestamp_window=60,
        max_body=4000,
        allow_plaintext=True,
        **_settings(fake),
    )
    runs = []
    acct.on("text")(lambda msg: runs.append(msg.content) or f"got {msg.content}")
    cb = acct.callback
    received = []
    signals.message_received.connect(lambda sender, **kw: received.append(sender), weak=False)
    try:
        safe = WeChatUser(cb, "acct123", aes_key=AES, appid=fake.appid, mode="safe", openid="o1")
        assert safe.send_text("sealed", msg_id=1).content == "got sealed"  # decrypted with the appid
        assert safe.send_text("sealed", msg_id=1).content == "got sealed"  # a retry: dedup on
        plain = WeChatUser(cb, "acct123", openid="o1")
        assert plain.send_text("open", msg_id=2).content == "got open"  # allow_plaintext
    finally:
        signals.message_received.receivers.clear()
    assert runs == ["sealed", "open"]
    assert received and set(received) == {acct.sender}
    assert cb.dedup is not None and cb.dedup.ttl == 120 and cb.verifier.window == 60
    assert os.path.commonpath([cb.dedup.backend.root, str(tmp_path)]) == str(tmp_path)  # the account's store
    assert isinstance(cb.slow, SlowRunner) and cb.slow.account is acct and cb.slow.callback is cb
    assert Account(token="tok", dedup=False, cache="simple", **_settings(fake)).callback.dedup is None


def test_the_max_body_setting_reaches_the_callback(fake):
    acct = Account(token="acct123", cache="simple", max_body=3000, **_settings(fake))
    acct.on("text")(lambda msg: "ok")
    user = WeChatUser(acct.callback, "acct123", openid="o1")
    result = user.post(user.message_xml("text", {"Content": "x" * 3000}, msg_id=1))
    assert result.status == 413


def test_handlers_run_in_the_accounts_scope_and_sessions_persist(fake):
    import contextlib

    acct = Account(token="acct123", cache="simple", **_settings(fake))
    entered = []

    @contextlib.contextmanager
    def adapter_context():
        entered.append("in")
        yield
        entered.append("out")

    acct.handler_context = adapter_context

    @acct.on("text")
    def count(msg):
        assert entered[-1] == "in" and msg.account is acct
        msg.session["n"] = msg.session.get("n", 0) + 1
        return str(msg.session["n"])

    user = WeChatUser(acct.callback, "acct123", openid="o1")
    assert [user.send_text("hi").content for _ in range(3)] == ["1", "2", "3"]
    assert entered == ["in", "out"] * 3


def test_a_scope_that_fails_to_enter_leaves_no_account_current(fake):
    from wxmp.context import current_account

    acct = Account(token="acct123", cache="simple", **_settings(fake))
    runs = []
    acct.on("text")(lambda msg: runs.append(msg) or "never")

    def broken():
        raise RuntimeError("adapter down")

    acct.handler_context = broken
    user = WeChatUser(acct.callback, "acct123", openid="o1")
    assert user.send_text("hi") is None  # the failure is a logged `success`, not a 500
    assert runs == [] and current_account() is None
