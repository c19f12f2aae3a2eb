"""Echobot: a complete small WeChat Official Account bot on wxmp.

Try it with no WeChat account:  python examples/echobot.py   (or: flask --app examples/echobot run)
and open the sandbox URL it prints (http://127.0.0.1:5000/wxmp/sandbox) to chat with the bot.

With an account, point its server URL at http://<your host>/wechat with the same Token.

Configuration comes from environment variables (defaults in brackets):
    WXMP_TOKEN [wxmpdemo]   the Token from the server configuration page
    WXMP_AES_KEY, WXMP_APPID  set both for compatible or safe mode
    WXMP_SECRET             the AppSecret (the bot itself needs no API call)
    WXMP_CACHE              shared cache for retry dedup (default: a directory under instance/)
    WXMP_SANDBOX [on when none of WXMP_TOKEN/APPID/SECRET is set]  the local sandbox chat page,
                            backed by an in-process fake WeChat API; its menu is examples/menu.json

What it does: greets new followers, echoes text, answers "help" via a regex, handles the
V1001_HELLO menu button, sends an image back as-is, and reads back a shared location.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from flask import Flask

from wxmp import ImageReply, TextReply, WxMP

app = Flask(__name__)
app.config["WXMP_TOKEN"] = os.environ.get("WXMP_TOKEN", "wxmpdemo")
for key in ("WXMP_AES_KEY", "WXMP_APPID", "WXMP_SECRET", "WXMP_CACHE"):
    if os.environ.get(key):
        app.config[key] = os.environ[key]
# No configuration at all: a local try-out, so serve the sandbox (and the status page, loopback only).
unconfigured = not any(os.environ.get(k) for k in ("WXMP_TOKEN", "WXMP_APPID", "WXMP_SECRET"))
sandbox = os.environ.get("WXMP_SANDBOX", "1" if unconfigured else "0").lower() in ("1", "true", "yes", "on")
app.config["WXMP_SANDBOX"] = sandbox
app.config["WXMP_STATUS"] = sandbox

wx = WxMP(app)

HELP = "Send me anything and I will echo it.\nTry an image or your location too."


@wx.on("subscribe")
def welcome(msg):
    if msg.scene:  # followed through a parameterised QR code
        return f"Welcome! (from QR scene {msg.scene})"
    return "Welcome to echobot! Send 'help' to see what I can do."


@wx.on("text", match=r"^\s*(help|帮助)\s*$")
def help_(msg):
    return TextReply(HELP)


@wx.on("text")
def echo(msg):
    return msg.content


@wx.on("click", key="V1001_HELLO")
def hello_button(msg):
    return "Hello from the menu!"


@wx.on("image")
def image_back(msg):
    return ImageReply(msg.media_id)


@wx.on("location")
def where(msg):
    return f"You are at {msg.latitude:.5f}, {msg.longitude:.5f} ({msg.label or 'somewhere'})"


@app.get("/")
def index():
    return "echobot is running; WeChat talks to /wechat"


def _sandbox_start() -> None:
    """In sandbox mode: push the example menu to the local fake WeChat and say where to look."""
    wx.menu.create(json.loads(Path(__file__).with_name("menu.json").read_text(encoding="utf-8")))
    host, port = _address()
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f" * wxmp sandbox: chat with echobot at http://{host}:{port}/wxmp/sandbox", file=sys.stderr)


def _address() -> tuple[str, str]:
    """Where `flask run` (or `python examples/echobot.py`) will listen: its options, env, defaults."""
    found = {
        "host": os.environ.get("FLASK_RUN_HOST", "127.0.0.1"),
        "port": os.environ.get("FLASK_RUN_PORT", "5000"),
    }
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        for name, short in (("host", "-h"), ("port", "-p")):
            if arg.startswith(f"--{name}="):
                found[name] = arg.split("=", 1)[1]
            elif arg in (f"--{name}", short) and i + 1 < len(args):
                found[name] = args[i + 1]
    return found["host"], found["port"]


if wx.settings.sandbox:
    _sandbox_start()
elif "WXMP_SANDBOX" not in os.environ:
    # Configured for a real account: no sandbox, and say so (a newcomer may expect the chat page).
    print(
        " * wxmp sandbox off: WXMP_TOKEN/WXMP_APPID/WXMP_SECRET are set, so echobot serves the real "
        "callback at /wechat (WXMP_SANDBOX=1 keeps the sandbox, without a secret)",
        file=sys.stderr,
    )

if __name__ == "__main__":
    run_host, run_port = _address()
    app.run(host=run_host, port=int(run_port))
