"""One load-generator process of the soak: threads of WeChatUsers posting to the gunicorn URL.

Usage: ``python benchmarks/soak_load.py '<json>'``; prints one JSON document of per-message results.
Each thread alternates a plaintext (signed) and a safe-mode (signed and encrypted) follower. Like
WeChat, an attempt that gets no answer (connection reset, 5 s timeout) or a 5xx is retried with the
same MsgId and a fresh signature, at most 3 attempts in all. Bounded by ``duration`` and ``max``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import requests

from wxmp.replies import SuccessReply, TextReply, parse_reply
from wxmp.testing import WeChatUser

ATTEMPTS = 3


def outcome(user: WeChatUser, status: int, body: bytes, content: str) -> str:
    """The outcome of one answer: "verified" (the echo, addressed right), "success", or the problem."""
    if status != 200:
        return f"http{status}"
    try:
        if body.startswith(b"<xml><Encrypt>"):
            body = user._decrypt_reply(body)
        parsed = parse_reply(body)
    except Exception as exc:
        return f"bad-reply:{type(exc).__name__}"
    if isinstance(parsed.reply, SuccessReply):
        return "success"
    if (
        parsed.reply == TextReply(content)
        and parsed.to_user_name == user.openid
        and parsed.from_user_name == user.account
    ):
        return "verified"
    return "wrong-reply"


def send(user: WeChatUser, msg_id: int, content: str) -> dict[str, Any]:
    xml = user.message_xml("text", {"Content": content}, msg_id=msg_id)
    first = time.time()
    record: dict[str, Any] = {"id": msg_id, "t": round(first, 3), "mode": user.mode, "attempts": 0}
    record.update(e5xx=0, conn=0, outcome="lost")
    for attempt in range(ATTEMPTS):
        record["attempts"] = attempt + 1
        try:
            result = user.post(xml)
        except requests.RequestException as exc:
            record["conn"] += 1
            record.setdefault("why", []).append(
                f"{type(exc).__name__} after {time.time() - first:.1f}s: {exc}"[:300]
            )
            time.sleep(0.2)
            continue
        if result.status >= 500:
            record["e5xx"] += 1
            time.sleep(0.2)
            continue
        record["outcome"] = outcome(user, result.status, result.body, content)
        break
    record["ms"] = round((time.time() - first) * 1000, 1)
    return record


def main() -> None:
    cfg = json.loads(sys.argv[1])
    deadline = time.monotonic() + cfg["duration"]
    per_thread = cfg["max"] // cfg["threads"]
    interval = cfg["threads"] * cfg["procs"] / cfg["rate"] if cfg["rate"] else 0.0
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def loop(t: int) -> None:
        openid = f"oSoak{cfg['index']:02d}x{t:02d}"
        common = {"openid": openid, "account": cfg["account"], "path": "/wechat", "timeout": 5.0}
        users = [
            # The account has an AES key, so plaintext pushes are refused: compatible mode carries both.
            WeChatUser(
                cfg["url"],
                cfg["token"],
                aes_key=cfg["aes_key"],
                appid=cfg["appid"],
                mode="compatible",
                **common,
            ),
            WeChatUser(
                cfg["url"], cfg["token"], aes_key=cfg["aes_key"], appid=cfg["appid"], mode="safe", **common
            ),
        ]
        mine = []
        for n in range(per_thread):
            start = time.monotonic()
            if start >= deadline or os.path.exists(cfg["stop_file"]):
                break
            msg_id = (cfg["index"] + 1) << 40 | t << 24 | n
            content = f"soak {msg_id} 你好 ]]> <&> ✓"
            mine.append(send(users[n % 2], msg_id, content))
            pause = interval - (time.monotonic() - start)
            if pause > 0:
                time.sleep(pause)
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(cfg["threads"])]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    json.dump({"index": cfg["index"], "results": results}, sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
