"""A worker process of the fleet tests: a WxMP app whose threads call wx.user.get in a loop.

Usage: python tests/fleet_worker.py '<json config>'; prints one JSON line of results.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter

import flask

from wxmp import WxMP, WxMPError


def main() -> None:
    cfg = json.loads(sys.argv[1])
    app = flask.Flask(f"worker{cfg.get('index', 0)}", instance_path=cfg["instance_path"])
    app.config.update(cfg["config"])
    wx = WxMP(app)
    duration = cfg["duration"]
    calls = 0
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    print(json.dumps({"ready": True}), flush=True)
    deadline = time.monotonic() + duration

    def loop() -> None:
        nonlocal calls
        while time.monotonic() < deadline:
            try:
                assert wx.user.get("o1")["openid"] == "o1"
                with lock:
                    calls += 1
            except WxMPError as exc:
                with lock:
                    errors[f"{type(exc).__name__}: {exc}"] += 1
            time.sleep(cfg.get("pause", 0.01))

    threads = [threading.Thread(target=loop) for _ in range(cfg["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wx.stop()
    print(json.dumps({"calls": calls, "errors": dict(errors)}), flush=True)


if __name__ == "__main__":
    main()
