"""In-process WSGI throughput of the callback: wxmp vs Flask+wechatpy vs WeRoBot, same run.

Each request is a signed text message with a unique MsgId answered with a text reply. The
contenders run interleaved, several rounds, best round kept; ratios are printed at the end.

- wxmp: ``WxMP(app)`` with its default callback configuration (dedup on, here on a SimpleCache;
  ``--cache filesystem`` uses a filesystem cache instead).
- Flask+wechatpy: a Flask view doing check_signature, parse_message, create_reply(...).render().
- WeRoBot: ``robot.wsgi`` (its Bottle app) with sessions off (wxmp has no session either).
- safe mode: wxmp vs Flask+wechatpy's WeChatCrypto (WeRoBot's crypto path is not measured).

Run: ``pip install -e '.[bench]' && python benchmarks/webhook.py [--requests 3000 --rounds 5]``;
``--profile`` prints a cProfile of the wxmp hot path instead.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

TOKEN = "wxmpbench"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx1234567890abcdef"
ACCOUNT = "gh_3a8c1f2b9d07"
OPENID = "oQ8Xk5Yb2pN7dLrT0vWmZsH3cE1A"

WSGI = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

BASE_ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "POST",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/wechat",
    "CONTENT_TYPE": "text/xml",
    "SERVER_NAME": "localhost",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def text_xml(msg_id: int, now: int) -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
        f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[hello benchmark]]></Content><MsgId>{msg_id}</MsgId></xml>"
    ).encode()


def make_requests(n: int, start_id: int, safe: bool) -> list[tuple[str, bytes]]:
    """Pre-signed (query string, body) pairs with unique MsgIds and nonces."""
    from wxmp.crypto import MessageCrypto, signature

    crypto = MessageCrypto(AES_KEY, APPID)
    now = int(time.time())
    out = []
    for i in range(n):
        nonce = str(100000 + i)
        ts = str(now)
        body = text_xml(start_id + i, now)
        qs = f"signature={signature(TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}"
        if safe:
            enc = crypto.encrypt(body)
            body = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
            body = body.encode()
            qs += f"&encrypt_type=aes&msg_signature={signature(TOKEN, ts, nonce, enc)}&openid={OPENID}"
        out.append((qs, body))
    return out


def run(app: WSGI, requests: list[tuple[str, bytes]]) -> float:
    """Seconds to serve every request; checks each answer is a 200 with a reply."""
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        statuses.append(status)

    begin = time.perf_counter()
    for qs, body in requests:
        environ = dict(BASE_ENVIRON)
        environ["QUERY_STRING"] = qs
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input"] = io.BytesIO(body)
        result = app(environ, start_response)
        out = b"".join(result)
        if hasattr(result, "close"):
            result.close()
    elapsed = time.perf_counter() - begin
    if statuses[-1][:3] != "200" or b"<xml>" not in out or len(out) < 100:
        raise RuntimeError(f"bad answer {statuses[-1]}: {out[:200]!r}")
    return elapsed


# -- contenders -------------------------------------------------------------------------------


def wxmp_app(safe: bool, cache: str) -> WSGI:
    import flask

    from wxmp import WxMP

    app = flask.Flask("bench_wxmp", instance_path=tempfile.mkdtemp(prefix="wxmp-bench-"))
    app.config["WXMP_TOKEN"] = TOKEN
    app.config["WXMP_CACHE"] = "simple" if cache == "simple" else f"filesystem:{tempfile.mkdtemp()}"
    if safe:
        app.config.update(WXMP_AES_KEY=AES_KEY, WXMP_APPID=APPID)
    wx = WxMP(app)

    @wx.on("text")
    def echo(msg: Any) -> str:
        return f"you said: {msg.content}"

    return app


def wechatpy_app(safe: bool) -> WSGI:
    import flask
    from wechatpy import create_reply, parse_message
    from wechatpy.crypto import WeChatCrypto
    from wechatpy.exceptions import InvalidSignatureException
    from wechatpy.utils import check_signature

    app = flask.Flask("bench_wechatpy")
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)

    @app.route("/wechat", methods=["GET", "POST"])
    def wechat() -> Any:
        args = flask.request.args
        timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
        try:
            check_signature(TOKEN, args.get("signature", ""), timestamp, nonce)
        except InvalidSignatureException:
            flask.abort(403)
        if flask.request.method == "GET":
            return args.get("echostr", "")
        data = flask.request.data
        if safe:
            data = crypto.decrypt_message(data, args.get("msg_signature", ""), timestamp, nonce)
        msg = parse_message(data)
        reply = create_reply(f"you said: {msg.content}", msg) if msg.type == "text" else None
        xml = reply.render() if reply is not None else "success"
        if safe:
            xml = crypto.encrypt_message(xml, nonce, timestamp)
        return flask.Response(xml, content_type="application/xml")

    return app


def werobot_app() -> WSGI:
    import werobot

    robot = werobot.WeRoBot(token=TOKEN, SESSION_STORAGE=False)
    robot.logger.setLevel(logging.WARNING)

    @robot.text
    def echo(message: Any) -> str:
        return f"you said: {message.content}"

    return robot.wsgi


def bench(label: str, contenders: dict[str, WSGI], safe: bool, n: int, rounds: int) -> dict[str, float]:
    best = {name: float("inf") for name in contenders}
    next_id = 10**15
    for _ in range(rounds):
        for name, app in contenders.items():
            reqs = make_requests(n, next_id, safe)
            next_id += n
            best[name] = min(best[name], run(app, reqs))
    print(f"\n{label} ({n} requests, best of {rounds} rounds)")
    for name, seconds in best.items():
        print(f"  {name:<16} {n / seconds:>9,.0f} req/s   {seconds / n * 1e6:7.1f} µs/req")
    return {name: n / s for name, s in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache", choices=["simple", "filesystem"], default="simple")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)

    if args.profile:
        import cProfile
        import pstats

        app = wxmp_app(False, args.cache)
        reqs = make_requests(args.requests, 1, False)
        with cProfile.Profile() as prof:
            run(app, reqs)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
        return

    plain = bench(
        "plaintext mode",
        {
            "wxmp": wxmp_app(False, args.cache),
            "flask+wechatpy": wechatpy_app(False),
            "werobot": werobot_app(),
        },
        False,
        args.requests,
        args.rounds,
    )
    safe = bench(
        "safe mode (AES)",
        {"wxmp": wxmp_app(True, args.cache), "flask+wechatpy": wechatpy_app(True)},
        True,
        args.requests,
        args.rounds,
    )
    print("\nratios (higher is better for wxmp)")
    print(f"  plain: wxmp / flask+wechatpy = {plain['wxmp'] / plain['flask+wechatpy']:.2f}x  (target >= 2.5)")
    print(f"  plain: wxmp / werobot        = {plain['wxmp'] / plain['werobot']:.2f}x  (target >= 1.5)")
    print(f"  safe:  wxmp / flask+wechatpy = {safe['wxmp'] / safe['flask+wechatpy']:.2f}x  (target >= 2.5)")


if __name__ == "__main__":
    main()
