"""A worker process of the slow-handler tests: an Account's callback served over HTTP (threaded).

Usage: python tests/slow_worker.py '<json>' with {"account": {...Account settings...}, "redis": url};
prints {"port": N} once serving. Handlers:

- ``remember <x>`` / ``recall``: an ordinary handler keeping ``note`` in ``msg.session``;
- ``boom``: a slow handler that raises;
- any other text ``<seconds> <tag>``: a slow handler that sleeps that long and answers
  ``done: <tag>``; every start is counted in Redis (``runs:<MsgId>``) and the tag is appended to
  the session's ``history``.
"""

from __future__ import annotations

import json
import sys
import time

import redis
from werkzeug.serving import WSGIRequestHandler, make_server

from wxmp import Account


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


def main() -> None:
    cfg = json.loads(sys.argv[1])
    counter = redis.Redis.from_url(cfg["redis"])
    acct = Account(**cfg["account"])

    @acct.on("text", match=r"^remember (.+)")
    def remember(msg):
        msg.session["note"] = msg.match.group(1)
        return "ok"

    @acct.on("text", match=r"^recall$")
    def recall(msg):
        return "note: " + str(msg.session.get("note"))

    @acct.on("text", match=r"^boom", slow=True)
    def boom(msg):
        counter.incr(f"runs:{msg.msg_id}")
        raise RuntimeError("the model is down")

    @acct.on("text", slow=True)
    def slow(msg):
        counter.incr(f"runs:{msg.msg_id}")
        seconds, _, tag = msg.content.partition(" ")
        time.sleep(float(seconds))
        msg.session["history"] = [*msg.session.get("history", []), tag]
        return f"done: {tag}"

    server = make_server("127.0.0.1", 0, acct.callback, threaded=True, request_handler=_Quiet)
    print(json.dumps({"port": server.server_port}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
