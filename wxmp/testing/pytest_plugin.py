"""pytest fixtures for apps built on wxmp. Enable with ``pytest_plugins = ["wxmp.testing.pytest_plugin"]``.

- ``fake_wechat``: a started :class:`~wxmp.testing.FakeWeChat` (stopped after the test).
- ``wxmp_config``: ``app.config`` entries pointing an app at that fake with a private cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .fake import FakeWeChat


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
        "WXMP_TOKEN": "testtoken",
    }
