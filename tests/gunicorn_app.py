"""An app for the gunicorn --preload test: reports whether this worker's refresher runs."""

import json
import os
import threading

import flask

from wxmp import WxMP

app = flask.Flask("preload", instance_path=os.environ["PRELOAD_INSTANCE"])
app.config.update(json.loads(os.environ["PRELOAD_CONFIG"]))
wx = WxMP(app)


@app.get("/_refresher")
def refresher_state():
    state = wx.state()
    names = [t.name for t in threading.enumerate()]
    return {"pid": os.getpid(), "running": state.refresher.running, "threads": names}


@app.get("/_user")
def user():
    return wx.user.get("o1")
