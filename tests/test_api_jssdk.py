"""wx.jssdk: the signature, wx.config parameters, and the jsapi_ticket on the shared cache."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from wxmp import IPNotWhitelistedError
from wxmp.api.jssdk import sign
from wxmp.testing import FakeWeChat
from wxmp.testing.fake_api.jssdk import PATH, current_ticket, ticket_valid, tickets_issued

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    return make_app(fake_wechat)[1]


def test_sign_matches_wechats_documented_example() -> None:
    # WeChat's JS-SDK 说明文档 appendix 1, developers.weixin.qq.com/doc/offiaccount/OA_Web_Apps/JS-SDK.html
    ticket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
    assert sign(ticket, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com") == (
        "f4d90daf4b3bca3078ab155816175ba34c443a7b"
    )
    assert sign(ticket, "Wm3WZYTPz0wzccnW", "1414587457", "http://mp.weixin.qq.com") == (
        "f4d90daf4b3bca3078ab155816175ba34c443a7b"
    )
    # the url is signed raw, not URL-encoded, and a different one changes the signature
    assert sign(ticket, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value") != (
        "f4d90daf4b3bca3078ab155816175ba34c443a7b"
    )


def test_config_for_a_page(wx: Any, fake_wechat: FakeWeChat) -> None:
    url = "https://shop.example.com/商品?id=1&from=中文#section-2"
    config = wx.jssdk.config(
        url, api_list=["scanQRCode", "chooseImage"], debug=True, open_tag_list=["wx-open-launch-app"]
    )
    assert set(config) == {"debug", "appId", "timestamp", "nonceStr", "signature", "jsApiList", "openTagList"}
    assert config["appId"] == fake_wechat.appid
    assert config["debug"] is True
    assert config["jsApiList"] == ["scanQRCode", "chooseImage"]
    assert config["openTagList"] == ["wx-open-launch-app"]
    assert isinstance(config["timestamp"], int) and abs(config["timestamp"] - time.time()) < 60
    assert config["nonceStr"].isalnum() and len(config["nonceStr"]) >= 16

    ticket = current_ticket(fake_wechat)
    assert ticket is not None and wx.jssdk.ticket == ticket
    page = "https://shop.example.com/商品?id=1&from=中文"  # without the fragment
    assert config["signature"] == sign(ticket, config["nonceStr"], config["timestamp"], page)

    (call,) = fake_wechat.calls(PATH)
    assert call.method == "GET"
    assert call.args == {"access_token": wx.access_token, "type": "jsapi"}


def test_config_defaults_and_fresh_nonces(wx: Any, fake_wechat: FakeWeChat) -> None:
    first = wx.jssdk.config("http://example.com/")
    second = wx.jssdk.config("http://example.com/")
    assert first["debug"] is False and first["jsApiList"] == [] and "openTagList" not in first
    assert first["nonceStr"] != second["nonceStr"]
    assert fake_wechat.count(PATH) == 1  # the ticket is cached, not fetched per page


def test_ticket_is_shared_through_the_cache(fake_wechat: FakeWeChat, make_app: Any, tmp_path: Path) -> None:
    cache = f"filesystem:{tmp_path / 'shared'}"
    _, wx1 = make_app(fake_wechat, WXMP_CACHE=cache)
    _, wx2 = make_app(fake_wechat, WXMP_CACHE=cache)
    assert wx1.jssdk.ticket == wx2.jssdk.ticket
    assert fake_wechat.count(PATH) == 1


def test_a_busy_answer_is_retried_after_a_backoff(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.fail_next(1, errcode=-1, paths=(PATH,))
    assert wx.jssdk.config("http://example.com/")["signature"]
    assert fake_wechat.count(PATH) == 2


def test_a_refusal_raises(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.fail_next(1, errcode=40164, paths=(PATH,))
    with pytest.raises(IPNotWhitelistedError):
        wx.jssdk.config("http://example.com/")


def test_fake_ticket_rules_follow_the_token_rules() -> None:
    now = [1_000_000.0]
    with FakeWeChat(token_lifetime=100, stable_rotate_window=10, clock=lambda: now[0]) as fake:

        def getticket(kind: str = "jsapi") -> dict[str, Any]:
            token = requests.post(
                f"{fake.url}/cgi-bin/stable_token",
                json={"grant_type": "client_credential", "appid": fake.appid, "secret": fake.secret},
                timeout=5,
            ).json()["access_token"]
            return requests.get(
                f"{fake.url}{PATH}", params={"access_token": token, "type": kind}, timeout=5
            ).json()

        first = getticket()
        assert first["errcode"] == 0 and first["expires_in"] == 100
        now[0] += 50
        again = getticket()
        assert again["ticket"] == first["ticket"] and again["expires_in"] == 50
        now[0] += 45  # inside the rotation window: a new ticket, the old one still valid
        rotated = getticket()
        assert rotated["ticket"] != first["ticket"] and rotated["expires_in"] == 100
        assert ticket_valid(fake, first["ticket"]) and ticket_valid(fake, rotated["ticket"])
        now[0] += 6
        assert not ticket_valid(fake, first["ticket"])
        assert tickets_issued(fake) == 2
        assert getticket("wx_card")["ticket"] != rotated["ticket"]
        assert getticket("nope")["errcode"] == 40097
        assert fake.count(PATH) == 5


WORKER = r"""
import json, sys, time
import flask
from wxmp import WxMP

base, cache, appid, secret, start_at, duration = sys.argv[1:7]
app = flask.Flask("jssdk_worker")
app.config.update(
    WXMP_APPID=appid, WXMP_SECRET=secret, WXMP_API_BASE=base, WXMP_CACHE="filesystem:" + cache
)
wx = WxMP(app)
time.sleep(max(0.0, float(start_at) - time.time()))
until = time.time() + float(duration)  # a slow start shortens nothing
configs, last = [], 0.0
while time.time() < until:
    configs.append(wx.jssdk.config("http://example.com/page?x=1#frag", api_list=["scanQRCode"]))
    last = time.time()
    time.sleep(0.03)
wx.stop()
print(json.dumps({"configs": configs, "last": last}))
"""


@pytest.mark.fleet
def test_four_processes_share_one_ticket_per_lifetime(tmp_path: Path) -> None:
    lifetime = 2.0
    with FakeWeChat(token_lifetime=lifetime) as fake:
        start_at = time.time() + 2.0  # let the interpreters import flask first
        args = [
            fake.url,
            str(tmp_path / "cache"),
            fake.appid,
            fake.secret,
            repr(start_at),
            repr(3 * lifetime),
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(4)
        ]
        results = []
        for worker in workers:
            out, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, err.decode()
            results.append(json.loads(out))

        fetches = fake.calls(PATH)
        first_fetch = fetches[0].time
        last_call = max(r["last"] for r in results)
        lifetimes = math.ceil((last_call - first_fetch) / lifetime)
        assert lifetimes >= 3
        # one fetch per ticket lifetime for the whole fleet (plus the first one)
        assert 2 <= len(fetches) <= lifetimes + 1, (len(fetches), lifetimes)

        expiry = {value: at for (kind, value), at in fake.state["ticket_expiry"].items() if kind == "jsapi"}
        used = set()
        for result in results:
            assert len(result["configs"]) > 10
            for config in result["configs"]:
                page = "http://example.com/page?x=1"
                (ticket,) = [
                    t
                    for t in expiry
                    if sign(t, config["nonceStr"], config["timestamp"], page) == config["signature"]
                ]
                # signed with a ticket WeChat still honoured at that second
                assert config["timestamp"] < expiry[ticket]
                used.add(ticket)
        assert len(used) >= 3  # the pages followed the ticket across its lifetimes
        print(f"{len(fetches)} getticket calls over {lifetimes} lifetimes, {len(used)} tickets used")
