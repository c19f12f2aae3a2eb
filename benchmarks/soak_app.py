"""The bot the soak runs under gunicorn: echobot's echo plus the API helpers a real bot calls.

Configuration comes from the ``SOAK_CONFIG`` environment variable (JSON: ``WXMP_*`` keys plus
``runs_file`` and ``errors_file``). Every handler run appends one line to ``runs_file`` *before*
doing anything else (``O_APPEND`` writes of a short line are atomic), so the harness counts handler
runs exactly, whatever happens to Redis; every API error a handler sees goes to ``errors_file``.
"""

from __future__ import annotations

import json
import os
import time

from flask import Flask

import wxmp.client
from wxmp import WxMP, WxMPError

CONFIG = json.loads(os.environ["SOAK_CONFIG"])
PID = os.getpid()

# The harness's FakeWeChat tells which worker made a token fetch by its User-Agent (to SIGKILL the
# one holding the refresh lock). Set before WxMP(app) creates the client and starts the refresher.
wxmp.client.ApiClient.__init__.__kwdefaults__["user_agent"] = f"wxmp-soak/{PID}"

app = Flask("soak", instance_path=CONFIG["instance_path"])
app.config.update({k: v for k, v in CONFIG.items() if k.startswith("WXMP_")})
wx = WxMP(app)


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@wx.on("text")
def echo(msg):
    _append(CONFIG["runs_file"], f"{msg.msg_id} {PID} {time.time():.3f}\n")
    calls = (
        lambda: wx.user.get(msg.openid),
        lambda: wx.message.send_text(msg.openid, "got it"),
    )
    for call in calls:
        try:
            call()
        except WxMPError as exc:
            code = getattr(exc, "errcode", "-")
            _append(CONFIG["errors_file"], f"{time.time():.3f} {PID} {type(exc).__name__} {code}\n")
    return msg.content


@app.get("/healthz")
def healthz():
    return {"pid": PID}
