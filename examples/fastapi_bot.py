"""The echo bot as a FastAPI app: the ASGI callback, and an async handler calling the WeChat API.

Install and run (one command after the install):

    pip install 'flask-wxmp[asgi]'
    uvicorn examples.fastapi_bot:app          # WeChat talks to http://<host>:8000/wechat

Configuration comes from environment variables: WXMP_TOKEN [wxmpdemo], WXMP_APPID, WXMP_SECRET,
WXMP_AES_KEY, WXMP_CACHE (give a shared one, e.g. redis://..., when several workers serve).
Without WXMP_APPID/WXMP_SECRET the bot talks to an in-process fake WeChat API (wxmp.testing),
so "whoami" works on a laptop too.

What it does: echoes text (a plain handler, run in a worker thread), answers "whoami" from an
``async def`` handler that awaits the user API on the account's shared token, and greets new
followers. ``GET /`` is an ordinary FastAPI route.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from wxmp import Account

settings = {
    key[5:].lower(): os.environ[key]
    for key in ("WXMP_TOKEN", "WXMP_APPID", "WXMP_SECRET", "WXMP_AES_KEY", "WXMP_CACHE", "WXMP_API_BASE")
    if os.environ.get(key)
}
settings.setdefault("token", "wxmpdemo")
fake = None
if "secret" not in settings:
    from wxmp.testing import FakeWeChat

    fake = FakeWeChat().start()  # a local stand-in for api.weixin.qq.com
    settings.update(appid=fake.appid, secret=fake.secret, api_base=fake.url, cache="simple")

acct = Account(**settings)


@acct.on("subscribe")
def welcome(msg):
    return "Welcome to the FastAPI echo bot! Send 'whoami' or anything else."


@acct.on("text", match=r"^\s*whoami\s*$")
async def whoami(msg):
    # Awaited on the event loop: no thread is held while WeChat's API answers.
    info = await acct.aio.user.get(msg.from_user_name)
    return f"You are {info.get('nickname') or msg.from_user_name} (subscribed: {info.get('subscribe', 0)})"


@acct.on("text")
def echo(msg):
    return msg.content


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await acct.aio.aclose()


api = FastAPI(lifespan=lifespan)


@api.get("/")
def index() -> dict[str, str]:
    return {"bot": "running", "callback": acct.settings.callback_path}


# The callback answers /wechat in front of FastAPI (WeChat's pushes skip its routing); every
# other path is FastAPI's. Alternatively: api.mount("/wechat", acct.asgi) and configure
# http://<host>/wechat/ (with the slash: Starlette redirects a bare mount path).
app = acct.asgi.wrap(api)
