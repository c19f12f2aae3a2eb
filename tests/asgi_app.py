"""One account's callback served by uvicorn (``asgi_app:asgi``) or gunicorn (``asgi_app:wsgi``).

For the cross-process dedup test: the text handler counts its runs in the shared Redis, takes
ASGI_APP_DELAY seconds (awaited under ASGI, slept under WSGI) and names the server that ran it.
"""

import asyncio
import json
import os
import time

import redis

from wxmp import Account

acct = Account(**json.loads(os.environ["ASGI_APP_SETTINGS"]))
runs = redis.Redis.from_url(acct.settings.cache)
delay = float(os.environ.get("ASGI_APP_DELAY", "0"))

if os.environ.get("ASGI_APP_MODE") == "asgi":

    @acct.on("text")
    async def reply_async(msg):
        await asyncio.to_thread(runs.incr, "runs:" + msg.content)
        await asyncio.sleep(delay)
        return f"asgi ran {msg.content}"

else:

    @acct.on("text")
    def reply_sync(msg):
        runs.incr("runs:" + msg.content)
        time.sleep(delay)
        return f"wsgi ran {msg.content}"


asgi = acct.asgi
wsgi = acct.callback
