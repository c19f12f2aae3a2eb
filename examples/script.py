"""wxmp without Flask: a script (or a cron job, a Celery task) on the fleet's shared access_token.

    python examples/script.py --fake            # against a local FakeWeChat, no credentials needed
    WXMP_APPID=wx... WXMP_SECRET=... WXMP_CACHE=redis://127.0.0.1:6379/0 python examples/script.py

Give it the same WXMP_CACHE as your web servers and it reads (and, when due, refreshes) the very
token they use: it never invalidates theirs. It lists a few followers, tags them and sends one a
customer-service message.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from wxmp import Account, WxMPError
from wxmp.testing import FakeWeChat


def run(acct: Account, to: str | None) -> None:
    followers = [openid for _, openid in zip(range(5), acct.user.iter_followers(), strict=False)]
    print(f"{len(followers)} follower(s): {', '.join(followers) or '-'}")
    if followers:
        tag = acct.tag.create("script-demo")["tag"]
        acct.tag.tag_users(tag["id"], followers)
        print(f"tagged them with #{tag['id']} script-demo")
    if to:
        acct.message.send_text(to, "Hello from a script that shares the fleet's token.")
        print(f"sent a customer-service message to {to}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake", action="store_true", help="run against a local FakeWeChat")
    parser.add_argument("--to", help="an openid to send a customer-service message to")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.fake:
            fake = stack.enter_context(FakeWeChat())
            for n in range(3):
                fake.add_user(f"oDemoFollower{n}")
            acct = Account(appid=fake.appid, secret=fake.secret, api_base=fake.url, cache="simple")
            to = args.to or "oDemoFollower0"
        else:
            acct = Account(
                appid=os.environ.get("WXMP_APPID"),
                secret=os.environ.get("WXMP_SECRET"),
                cache=os.environ.get("WXMP_CACHE"),
            )
            to = args.to
        try:
            run(acct, to)
        except WxMPError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
