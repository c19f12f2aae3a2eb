"""An async worker for the mixed-fleet tests: tasks calling ``await acct.aio.user.get`` in a loop.

Usage: python tests/aio_worker.py '<json config>' (the format of account_worker.py, with "tasks"
instead of "threads"); prints {"ready": true}, then one JSON line: calls and errors per account.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

from wxmp import Account, WxMPError


async def main() -> None:
    cfg = json.loads(sys.argv[1])
    accounts = {name: Account(name=name, **settings) for name, settings in cfg["accounts"].items()}
    calls: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    print(json.dumps({"ready": True}), flush=True)
    deadline = time.monotonic() + cfg["duration"]

    async def loop(name: str, acct: Account) -> None:
        while time.monotonic() < deadline:
            try:
                assert (await acct.aio.user.get("o1"))["openid"] == "o1"
                calls[name] += 1
            except WxMPError as exc:
                errors[f"{name}: {type(exc).__name__}: {exc}"] += 1
            await asyncio.sleep(cfg.get("pause", 0.01))

    await asyncio.gather(*(loop(name, acct) for name, acct in accounts.items() for _ in range(cfg["tasks"])))
    for acct in accounts.values():
        await acct.aio.aclose()
    print(json.dumps({"calls": dict(calls), "errors": dict(errors)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
