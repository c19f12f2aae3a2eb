"""The sandbox shows WeChat's delivery rule: attempts, their timeout, and later customer-service messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest

from wxmp import WxMP
from wxmp.testing.user import SERVICE_FAILURE

T = 0.5


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[WxMP] = []

    def factory(**config: Any) -> tuple[flask.Flask, WxMP]:
        app = flask.Flask(f"slowsandbox{len(made)}", instance_path=str(tmp_path / f"i{len(made)}"))
        app.testing = True
        app.config.update({"WXMP_SLOW_WECHAT_TIMEOUT": T, "WXMP_SLOW_MARGIN": 0.2, "WXMP_SLOW_LEASE": 1.0})
        app.config.update({"WXMP_" + k: v for k, v in config.items()})
        wx = WxMP(app)
        made.append(wx)
        return app, wx

    yield factory
    for wx in made:
        wx.stop()


def send(app: flask.Flask, **action: Any) -> dict[str, Any]:
    response = app.test_client().post("/wxmp/sandbox/api/send", json=action)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def poll_until(app: flask.Flask, kind: str, via: str) -> dict[str, Any]:
    client = app.test_client()
    end = time.monotonic() + 20
    while time.monotonic() < end:
        for item in client.get("/wxmp/sandbox/api/poll?after=0").json["items"]:
            if item["kind"] == kind and item.get("via") == via:
                return item
        time.sleep(0.05)
    raise AssertionError(f"no {kind} via {via}")


def test_slow_handler_in_the_sandbox_answers_later_through_customer_service(make: Any) -> None:
    app, wx = make()
    release = threading.Event()

    @wx.on("text", slow=True)
    def think(msg: Any) -> str:
        release.wait(10)
        return "42"

    items = send(app, action="text", content="the question")["items"]
    exchange = items[0]["exchange"]
    assert exchange["attempts"] == [{"number": 1, "status": 200, "timeout": T}]
    assert exchange["response_xml"] == "success"  # in time: "success", typing, then the API
    release.set()
    later = poll_until(app, "text", "customer service")
    assert later["content"] == "42"


def test_ordinary_handler_too_slow_shows_every_attempt_and_the_failure(make: Any) -> None:
    app, wx = make()
    release = threading.Event()

    @wx.on("text")
    def too_slow(msg: Any) -> str:
        release.wait(10)
        return "late"

    items = send(app, action="text", content="hi")["items"]
    release.set()
    attempts = items[0]["exchange"]["attempts"]
    assert [a["status"] for a in attempts] == [None, None, None]
    assert [i["kind"] for i in items[1:]] == ["error"]
    assert items[1]["content"].startswith(SERVICE_FAILURE)
