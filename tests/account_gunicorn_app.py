"""A WxMP app served by gunicorn in the Account tests: /_user calls the API on the shared token."""

import json
import os

import flask

from wxmp import WxMP

app = flask.Flask("acctfleet", instance_path=os.environ["ACCT_INSTANCE"])
app.config.update(json.loads(os.environ["ACCT_CONFIG"]))
wx = WxMP(app)


@app.get("/_user")
def user():
    return wx.user.get("o1")
