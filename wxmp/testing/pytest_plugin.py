"""pytest fixtures for apps built on wxmp. Enable with ``pytest_plugins = ["wxmp.testing.pytest_plugin"]``.

- ``fake_wechat``: a started :class:`~wxmp.testing.FakeWeChat` (stopped after the test).
- ``wxmp_config``: ``app.config`` entries pointing an app at that fake with a private cache.
- ``wechat_user``: a :class:`~wxmp.testing.WeChatUser` talking to your ``app`` fixture's callback
  (its Token, AES key and path), whose openid is a follower of ``fake_wechat``; define ``app``
  (your Flask app built with ``wxmp_config``) in your conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .fake import FakeWeChat
from .user import WeChatUser

#: The callback Token ``wxmp_config`` gives the app (and ``wechat_user`` signs with).
TEST_TOKEN = "testtoken"  # noqa: S105 (a test fixture's Token, not a secret)


@pytest.fixture
def fake_wechat() -> Iterator[FakeWeChat]:
    with FakeWeChat() as fake:
        yield fake


@pytest.fixture
def wxmp_config(fake_wechat: FakeWeChat, tmp_path: Path) -> dict[str, Any]:
    return {
        "WXMP_APPID": fake_wechat.appid,
        "WXMP_SECRET": fake_wechat.secret,
        "WXMP_API_BASE": fake_wechat.url,
        "WXMP_CACHE": f"filesystem:{tmp_path / 'wxmp-cache'}",
        "WXMP_TOKEN": TEST_TOKEN,
    }


@pytest.fixture
def wechat_user(request: pytest.FixtureRequest, fake_wechat: FakeWeChat) -> WeChatUser:
    try:
        app = request.getfixturevalue("app")
    except pytest.FixtureLookupError:
        pytest.fail(
            "the wechat_user fixture needs an `app` fixture returning your Flask app "
            "(configured with the wxmp_config fixture): define it in your conftest.py",
            pytrace=False,
        )
    config = app.config
    token = config.get("WXMP_TOKEN")
    if not token:
        pytest.fail(
            "the app has no WXMP_TOKEN: update its config with the wxmp_config fixture", pytrace=False
        )
    aes_key = config.get("WXMP_AES_KEY")
    user = WeChatUser(
        app,
        token,
        aes_key=aes_key,
        appid=config.get("WXMP_APPID") if aes_key else None,
        path=config.get("WXMP_CALLBACK_PATH") or "/wechat",
    )
    fake_wechat.add_user(user.openid)  # so handlers may call user/info or the customer-service API
    return user
