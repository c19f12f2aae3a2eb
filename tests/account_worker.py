"""A plain-script worker for the Account tests: no Flask, threads calling ``acct.user.get`` in a loop.

Usage: python tests/account_worker.py '<json config>'; prints {"ready": true}, then one JSON line:
calls and errors per account, and whether Flask was ever imported.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter

from wxmp import Account, WxMPError


def main() -> None:
    cfg = json.loads(sys.argv[1])
    accounts = {name: Account(name=name, **settings) for name, settings in cfg["accounts"].items()}
    calls: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    print(json.dumps({"ready": True}), flush=True)
    deadline = time.monotonic() + cfg["duration"]

    def loop(name: str, acct: Account) -> None:
        while time.monotonic() < deadline:
            try:
                assert acct.user.get("o1")["openid"] == "o1"
                with lock:
                    calls[name] += 1
            except WxMPError as exc:
                with lock:
                    errors[f"{name}: {type(exc).__name__}: {exc}"] += 1
            time.sleep(cfg.get("pause", 0.01))

    threads = [
        threading.Thread(target=loop, args=(name, acct))
        for name, acct in accounts.items()
        for _ in range(cfg["threads"])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(
        json.dumps({"calls": dict(calls), "errors": dict(errors), "flask": "flask" in sys.modules}),
        flush=True,
    )


if __name__ == "__main__":
    main()
