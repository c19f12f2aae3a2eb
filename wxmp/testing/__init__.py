"""The testing kit: a fake WeChat API server and a simulated WeChat user.

- :class:`FakeWeChat` serves the WeChat API on loopback with WeChat's rules.
- :class:`WeChatUser` sends signed (and encrypted) messages to a callback, as WeChat does.
- ``wxmp.testing.pytest_plugin`` offers fixtures (``fake_wechat``) to a user's test suite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fake import FakeWeChat
    from .user import WeChatUser

__all__ = ["FakeWeChat", "WeChatUser"]


def __getattr__(name: str) -> Any:
    if name == "FakeWeChat":
        from .fake import FakeWeChat

        return FakeWeChat
    if name == "WeChatUser":
        from .user import WeChatUser

        return WeChatUser
    raise AttributeError(name)
