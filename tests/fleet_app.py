"""The app the central-refresher test runs with `flask wxmp refresher` (config from the env)."""

import json
import os

import flask

from wxmp import WxMP

app = flask.Flask("central", instance_path=os.environ["FLEET_INSTANCE"])
app.config.update(json.loads(os.environ["FLEET_CONFIG"]))
wx = WxMP(app)
