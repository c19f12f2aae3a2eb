"""Assistant: a chat bot whose answers take longer than WeChat's 5 seconds, and that remembers.

Try it with no WeChat account or API key:  python examples/assistant.py
and open http://127.0.0.1:5000/wxmp/sandbox. Each answer takes ASSISTANT_DELAY seconds (8 by
default): watch the sandbox's exchange panel show WeChat's delivery attempts, the "typing" and the
answer arriving later through the customer-service API (see docs/en/slow-handlers.md).

Environment (defaults in brackets):
    ASSISTANT_DELAY [8]        seconds the stand-in model "thinks"
    ASSISTANT_STRATEGY [auto]  customer_service, retries or auto (WXMP_SLOW_STRATEGY)
    OPENAI_BASE_URL            off by default; set it (e.g. https://api.openai.com/v1 or a local
                               OpenAI-compatible server) to use a real model through /chat/completions
    OPENAI_API_KEY, OPENAI_MODEL [gpt-4o-mini]   for that endpoint
    WXMP_TOKEN, WXMP_APPID, WXMP_SECRET, WXMP_AES_KEY, WXMP_CACHE   as in examples/echobot.py

The conversation (the last 20 turns) is kept in ``msg.session``, shared by every worker through
WXMP_CACHE; "reset" forgets it.
"""

from __future__ import annotations

import os
import sys
import time

from flask import Flask

from wxmp import WxMP

app = Flask(__name__)
app.config["WXMP_TOKEN"] = os.environ.get("WXMP_TOKEN", "wxmpdemo")
for key in ("WXMP_AES_KEY", "WXMP_APPID", "WXMP_SECRET", "WXMP_CACHE"):
    if os.environ.get(key):
        app.config[key] = os.environ[key]
unconfigured = not any(os.environ.get(k) for k in ("WXMP_TOKEN", "WXMP_APPID", "WXMP_SECRET"))
app.config["WXMP_SANDBOX"] = os.environ.get("WXMP_SANDBOX", "1" if unconfigured else "0").lower() in (
    "1",
    "true",
    "yes",
    "on",
)
app.config["WXMP_SLOW_STRATEGY"] = os.environ.get("ASSISTANT_STRATEGY", "auto")

wx = WxMP(app)

DELAY = float(os.environ.get("ASSISTANT_DELAY", "8"))
HISTORY = 20
SYSTEM = "You are a helpful assistant inside a WeChat Official Account. Answer briefly."


def think(history: list[dict[str, str]]) -> str:
    """The model: a real OpenAI-compatible endpoint when OPENAI_BASE_URL is set, else a stand-in."""
    base = os.environ.get("OPENAI_BASE_URL")
    if not base:
        time.sleep(DELAY)
        turns = sum(1 for turn in history if turn["role"] == "user")
        return (
            f"(thought for {DELAY:g} s) You said: {history[-1]['content']}\nThat is message {turns} of ours."
        )
    import requests

    response = requests.post(
        base.rstrip("/") + "/chat/completions",
        headers={"Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', '')}"},
        json={
            "model": os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
            "messages": [{"role": "system", "content": SYSTEM}, *history],
        },
        timeout=120,
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"]).strip()


@wx.on("text", match=r"^\s*(reset|重置)\s*$")
def reset(msg):
    msg.session.clear()
    return "Forgotten. Let's start over."


@wx.on("text", slow=True)
def chat(msg):
    history = list(msg.session.get("history", []))
    history.append({"role": "user", "content": msg.content})
    answer = think(history)
    history.append({"role": "assistant", "content": answer})
    msg.session["history"] = history[-HISTORY:]
    return answer


@wx.on("subscribe")
def welcome(msg):
    return "Hi! Ask me anything; I take a few seconds to think and I remember our conversation."


if wx.settings.sandbox:
    print(" * wxmp sandbox: chat with the assistant at http://127.0.0.1:5000/wxmp/sandbox", file=sys.stderr)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("FLASK_RUN_PORT", "5000")), threaded=True)
