"""Echobot: a complete small WeChat Official Account bot on wxmp.

Run it:  flask --app examples/echobot run
Then point the account's server URL at http://<your host>/wechat with the same Token.

Configuration comes from environment variables (defaults in brackets):
    WXMP_TOKEN [wxmpdemo]   the Token from the server configuration page
    WXMP_AES_KEY, WXMP_APPID  set both for compatible or safe mode
    WXMP_CACHE              shared cache for retry dedup (default: a directory under instance/)

What it does: greets new followers, echoes text, answers "help" via a regex, handles the
V1001_HELLO menu button, sends an image back as-is, and reads back a shared location.
"""

from __future__ import annotations

import os

from flask import Flask

from wxmp import ImageReply, TextReply, WxMP

app = Flask(__name__)
app.config["WXMP_TOKEN"] = os.environ.get("WXMP_TOKEN", "wxmpdemo")
for key in ("WXMP_AES_KEY", "WXMP_APPID", "WXMP_CACHE"):
    if os.environ.get(key):
        app.config[key] = os.environ[key]

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
