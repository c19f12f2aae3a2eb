"""Shared fixtures: FakeWeChat, apps wired to it, and private redis-server / memcached processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask
import pytest

from wxmp import WxMP
from wxmp.testing import FakeWeChat
from wxmp.testing.servers import ServerProcess, memcached_process, redis_process

pytest_plugins = ["wxmp.testing.pytest_plugin"]

# .ci/run sets this: there a missing server is a failure, not a skip.
REQUIRE_SERVICES = os.environ.get("WXMP_REQUIRE_SERVICES") == "1"


def _service(factory: Callable[[], Any], name: str) -> Iterator[ServerProcess]:
    try:
        cm = factory()
        server = cm.__enter__()
    except FileNotFoundError:
        if REQUIRE_SERVICES:
            pytest.fail(f"{name} is not installed and WXMP_REQUIRE_SERVICES=1")
        pytest.skip(f"{name} is not on PATH (apt-get install {name}); .ci/run installs it")
    try:
        yield server
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ServerProcess]:
    """A private redis-server on a free port for the whole session."""
    yield from _service(redis_process, "redis-server")


@pytest.fixture
def redis_url(redis_server: ServerProcess) -> str:
    """The session's Redis, flushed before the test."""
    import redis

    if redis_server.process is None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushdb()
    return redis_server.url


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[ServerProcess]:
    yield from _service(memcached_process, "memcached")


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., tuple[flask.Flask, WxMP]]]:
    """``make_app(fake, **config)`` -> (app, wx), stopped after the test."""
    made: list[WxMP] = []

    def factory(fake: FakeWeChat | None = None, **config: Any) -> tuple[flask.Flask, WxMP]:
        app = flask.Flask(f"app{len(made)}", instance_path=str(tmp_path / f"instance{len(made)}"))
        if fake is not None:
            app.config.update(WXMP_APPID=fake.appid, WXMP_SECRET=fake.secret, WXMP_API_BASE=fake.url)
        app.config.setdefault("WXMP_CACHE", "simple")
        app.config.update({k if k.startswith("WXMP_") else "WXMP_" + k.upper(): v for k, v in config.items()})
        wx = WxMP(app)
        made.append(wx)
        return app, wx

    yield factory
    for wx in made:
        wx.stop()
