"""``python -m wxmp.testing``: a FakeWeChat in its own process, for trials with several workers.

Prints the address and the (fake) credentials to give the app, then serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from .fake import FakeWeChat


def _parser() -> argparse.ArgumentParser:
    defaults = FakeWeChat()
    p = argparse.ArgumentParser(
        prog="python -m wxmp.testing",
        description="Serve a fake WeChat API (wxmp.testing.FakeWeChat) until Ctrl-C.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=0, help="port to bind (default: a free one)")
    p.add_argument("--appid", default=defaults.appid, help="the fake account's AppID")
    p.add_argument("--secret", default=defaults.secret, help="the fake account's AppSecret")
    p.add_argument("--token-lifetime", type=float, default=7200, help="seconds a token lives")
    p.add_argument(
        "--classic-grace", type=float, default=0.0, help="seconds a classic token survives the next fetch"
    )
    p.add_argument("--daily-quota", type=int, default=2000, help="token fetches allowed per day")
    p.add_argument("--follower", action="append", default=[], metavar="OPENID", help="seed a follower")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.token_lifetime <= 0:
        print("--token-lifetime must be positive", file=sys.stderr)
        return 2
    fake = FakeWeChat(
        args.appid,
        args.secret,
        token_lifetime=args.token_lifetime,
        daily_quota=args.daily_quota,
        classic_grace=args.classic_grace,
        host=args.host,
        port=args.port,
    )
    try:
        fake.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for openid in args.follower:
        fake.add_user(openid)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    # The credentials are the fake's own, printed so that they can be pasted into the app's config.
    print(f"FakeWeChat serving on {fake.url} (Ctrl-C stops it)")
    print(f"WXMP_API_BASE={fake.url}")
    print(f"WXMP_APPID={fake.appid}")
    print(f"WXMP_SECRET={fake.secret}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    print("FakeWeChat stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
