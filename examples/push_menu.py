"""Push the example bot's menu, read it back, and send a template message.

Run it with no credentials at all:  python examples/push_menu.py
It then starts a local FakeWeChat (wxmp.testing), which checks the menu the way WeChat does.

Against a real account (or any server speaking the WeChat API), set:
    WXMP_API_BASE        e.g. https://api.weixin.qq.com
    WXMP_APPID, WXMP_SECRET
    WXMP_OPENID          a follower who receives the template message (optional)
    WXMP_TEMPLATE_ID     one of the account's template ids (optional)
    WXMP_CACHE           the shared token cache (default: a filesystem cache under instance/)

The menu lives in examples/menu.json; its V1001_HELLO button is handled by examples/echobot.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask

from wxmp import ApiError, WxMP

MENU_FILE = Path(__file__).with_name("menu.json")


@contextlib.contextmanager
def wechat_api() -> Iterator[dict[str, Any]]:
    """The real API from the environment, or a FakeWeChat seeded with a follower and a template."""
    if os.environ.get("WXMP_API_BASE"):
        yield {
            "config": {
                k: os.environ[k]
                for k in ("WXMP_API_BASE", "WXMP_APPID", "WXMP_SECRET", "WXMP_CACHE")
                if k in os.environ
            },
            "openid": os.environ.get("WXMP_OPENID"),
            "template_id": os.environ.get("WXMP_TEMPLATE_ID"),
        }
        return

    from wxmp.testing import FakeWeChat
    from wxmp.testing.fake_api.template import add_template, sent_templates

    with FakeWeChat() as fake:
        fake.add_user("oDEMO_FOLLOWER_000000000001")
        print(f"No WXMP_API_BASE: using a local FakeWeChat at {fake.url}")
        yield {
            "config": {
                "WXMP_API_BASE": fake.url,
                "WXMP_APPID": fake.appid,
                "WXMP_SECRET": fake.secret,
                "WXMP_CACHE": "simple",
            },
            "openid": "oDEMO_FOLLOWER_000000000001",
            "template_id": add_template(fake, title="操作提醒", content="{{thing1.DATA}}\n{{time2.DATA}}"),
        }
        print(f"The fake recorded {len(sent_templates(fake))} template message(s).")


def main() -> int:
    menu = json.loads(MENU_FILE.read_text(encoding="utf-8"))
    with wechat_api() as api:
        app = Flask(__name__)
        app.config.update(api["config"], WXMP_REFRESHER=False)
        wx = WxMP(app)
        try:
            wx.menu.create(menu)  # checked locally first: a bad button raises ValueError
            print("Menu pushed. WeChat now has:")
            print(json.dumps(wx.menu.get()["menu"], ensure_ascii=False, indent=2))

            if api["openid"] and api["template_id"]:
                sent = wx.template.send(
                    api["openid"],
                    api["template_id"],
                    {"thing1": "菜单已更新", "time2": "刚刚"},
                    url="https://github.com/",
                )
                print(f"Template message sent: msgid {sent.get('msgid')}")
            else:
                print("Set WXMP_OPENID and WXMP_TEMPLATE_ID to send a template message too.")
        except ApiError as exc:
            print(f"WeChat refused: {exc}", file=sys.stderr)
            return 1
        finally:
            wx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
