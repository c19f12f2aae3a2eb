"""In-process WSGI cost of the callback: wxmp in every cache configuration vs Flask+wechatpy vs WeRoBot.

Each request is a signed text message with a unique MsgId answered with a text reply. All
contenders run interleaved in the same process, several rounds, best round kept; the per-message
cost and the ratios are printed at the end.

- ``wxmp default``: ``WxMP(app)`` with ``WXMP_TOKEN`` only, i.e. what a new user runs: dedup on,
  on the filesystem cache under the app's instance folder.
- ``wxmp redis`` / ``wxmp memcached``: ``WXMP_CACHE`` on a private ``redis-server`` / ``memcached``
  started for the run on a free loopback port (skipped when not installed).
- ``wxmp simple``: ``WXMP_CACHE="simple"`` (dedup within one process only).
- ``wxmp dedup off``: the default configuration with ``WXMP_DEDUP=False``.
- ``bare minimum``: signature check + lxml parse + reply rendering as one WSGI function, no
  framework, no dedup: the floor any Python callback pays.
- ``flask+wechatpy``: a Flask view doing check_signature, parse_message, create_reply(...).render().
- ``werobot``: ``robot.wsgi`` (its Bottle app) with sessions off (wxmp keeps no session either).
- safe mode: wxmp default and dedup off vs Flask+wechatpy's WeChatCrypto.
- ``redis SET NX PX``: one raw redis-py ``SET key value NX PX 10000`` on the same server, the floor
  of a Redis claim.

Then a flood: ``--flood`` unique messages (100,000) through the default configuration, whose clock
runs at ``--flood-rate`` messages per simulated second, so the dedup store's expiry runs during the
flood; it prints the per-message cost at the start and at the end and the files on disk.

Run: ``pip install -e '.[bench]' && python benchmarks/webhook.py [--requests 500 --rounds 15]``;
``--flood 0`` skips the flood; ``--profile CONFIG`` prints a cProfile of one configuration instead;
``--stages`` prices each step of the default configuration on its own.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import hmac
import io
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
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


def make_requests(n: int, start_id: int, safe: bool, now: int | None = None) -> list[tuple[str, bytes]]:
    """Pre-signed (query string, body) pairs with unique MsgIds and nonces."""
    from wxmp.crypto import MessageCrypto, signature

    crypto = MessageCrypto(AES_KEY, APPID)
    now = int(time.time()) if now is None else now
    out = []
    for i in range(n):
        nonce = str(start_id + i)  # unique: a seen (timestamp, nonce, signature) with a new body is refused
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


def serve(app: WSGI, qs: str, body: bytes, statuses: list[str]) -> bytes:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        statuses.append(status)

    environ = dict(BASE_ENVIRON)
    environ["QUERY_STRING"] = qs
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["wsgi.input"] = io.BytesIO(body)
    result = app(environ, start_response)
    try:
        return b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()  # a WSGI server calls it after sending the response


def run(app: WSGI, requests: list[tuple[str, bytes]]) -> tuple[float, float]:
    """(wall, CPU) seconds to serve every request; checks the last answer is a 200 with a reply."""
    statuses: list[str] = []
    out = b""
    cpu = time.process_time()
    begin = time.perf_counter()
    for qs, body in requests:
        out = serve(app, qs, body, statuses)
    extensions = getattr(app, "extensions", {})
    if "wxmp-bench-flush" in extensions:
        extensions["wxmp-bench-flush"]()
    elapsed = time.perf_counter() - begin
    cpu = time.process_time() - cpu
    refused = [s for s in statuses if s[:3] != "200"]
    if refused or b"<xml>" not in out or len(out) < 100:
        raise RuntimeError(f"{len(refused)} refusals ({refused[:1]}); last answer {out[:200]!r}")
    return elapsed, cpu


# -- contenders -------------------------------------------------------------------------------

_WORKDIR: list[str] = []


def workdir() -> str:
    """One temporary folder for every instance path of the run, removed at exit (a flood leaves 40k files)."""
    if not _WORKDIR:
        _WORKDIR.append(tempfile.mkdtemp(prefix="wxmp-bench-"))
        atexit.register(shutil.rmtree, _WORKDIR[0], True)
    return _WORKDIR[0]


def wxmp_app(safe: bool, cache: str | None, dedup: bool = True) -> Any:
    """``WxMP(app)``; ``cache`` None is the default configuration (filesystem under the instance path)."""
    import flask

    from wxmp import WxMP

    app = flask.Flask("bench_wxmp", instance_path=tempfile.mkdtemp(dir=workdir()))
    app.config["WXMP_TOKEN"] = TOKEN
    if cache is not None:
        app.config["WXMP_CACHE"] = cache
    if not dedup:
        app.config["WXMP_DEDUP"] = False
    if safe:
        app.config.update(WXMP_AES_KEY=AES_KEY, WXMP_APPID=APPID)
    wx = WxMP(app)

    @wx.on("text")
    def echo(msg: Any) -> str:
        return f"you said: {msg.content}"

    app.extensions["wxmp-bench"] = wx
    callback = wx.state(app).callback
    if callback.dedup is not None:
        # Work a store defers (Redis replies waiting for the next claim's write) is done and counted
        # inside the timed round, not left to run while the next contender is measured.
        app.extensions["wxmp-bench-flush"] = callback.dedup.backend.flush
    return app


def bare_app() -> WSGI:
    """Signature + parse + render, nothing else: the floor of any Python callback."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = dict(p.partition("=")[::2] for p in environ["QUERY_STRING"].split("&"))
        parts = sorted([TOKEN, query["timestamp"], query["nonce"]])
        expected = hashlib.sha1("".join(parts).encode()).hexdigest()
        if not hmac.compare_digest(expected, query["signature"]):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"forbidden"]
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        msg = {child.tag: child.text for child in etree.fromstring(body, parser)}
        content = f"you said: {msg['Content']}".replace("]]>", "]]]]><![CDATA[>")
        reply = (
            f"<xml><ToUserName><![CDATA[{msg['FromUserName']}]]></ToUserName>"
            f"<FromUserName><![CDATA[{msg['ToUserName']}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content></xml>"
        ).encode()
        start_response("200 OK", [("Content-Type", "application/xml"), ("Content-Length", str(len(reply)))])
        return [reply]

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

    return robot.wsgi  # type: ignore[no-any-return]


class SetNX:
    """One raw redis-py ``SET NX PX`` per "request": the round trip a Redis claim cannot beat."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.n = 0

    def run(self, count: int) -> tuple[float, float]:
        client = self.client
        cpu = time.process_time()
        begin = time.perf_counter()
        for _ in range(count):
            self.n += 1
            client.set(f"bench:setnx:{self.n}", b"\x00pending", nx=True, px=10_000)
        return time.perf_counter() - begin, time.process_time() - cpu


@contextlib.contextmanager
def servers() -> Iterator[dict[str, str]]:
    """Private redis-server and memcached for the run (whichever are installed)."""
    from wxmp.testing.servers import memcached_process, redis_process

    urls: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for name, factory in (("redis", redis_process), ("memcached", memcached_process)):
            try:
                urls[name] = stack.enter_context(factory()).url
            except FileNotFoundError:
                print(f"({name} is not installed: its row is skipped)")
        yield urls


# -- measuring --------------------------------------------------------------------------------


def bench(
    label: str,
    contenders: dict[str, WSGI],
    safe: bool,
    n: int,
    rounds: int,
    setnx: SetNX | None = None,
) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) µs per message of each contender over interleaved rounds.

    The best round is the one least disturbed by the rest of the machine; on a shared machine the
    spread between rounds is large, the order between contenders much less so.
    """
    best = {name: (float("inf"), 0.0) for name in contenders}
    if setnx is not None:
        best["redis SET NX PX"] = (float("inf"), 0.0)
    next_id = 10**15
    for _ in range(rounds):
        for name, app in contenders.items():
            reqs = make_requests(n, next_id, safe)
            next_id += n
            best[name] = min(best[name], run(app, reqs))
        if setnx is not None:
            best["redis SET NX PX"] = min(best["redis SET NX PX"], setnx.run(n))
    print(f"\n{label} ({n} requests, best of {rounds} interleaved rounds; CPU: this process, same round)")
    us = {name: (wall / n * 1e6, cpu / n * 1e6) for name, (wall, cpu) in best.items()}
    for name, (wall, cpu) in us.items():
        print(f"  {name:<18} {1e6 / wall:>9,.0f} msg/s   {wall:7.1f} µs/msg   CPU {cpu:6.1f} µs")
    return us


def count_files(root: str) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def count_bytes(root: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)


def flood(total: int, rate: float, chunk: int = 1000) -> None:
    """``total`` unique messages through the default configuration, its clock at ``rate`` msg/s."""
    from wxmp.testing.clock import FakeClock

    app = wxmp_app(False, None)
    wx = app.extensions["wxmp-bench"]
    callback = wx.state(app).callback
    clock = FakeClock(time.time())
    callback.verifier.clock = clock
    callback.clock = clock
    store = callback.dedup.backend
    store.clock = clock
    costs: list[float] = []
    peak = peak_bytes = 0
    statuses: list[str] = []
    msg_id = 10**16
    for start in range(0, total, chunk):
        reqs = make_requests(chunk, msg_id + start, False, now=int(clock()))
        begin = time.perf_counter()
        for qs, body in reqs:
            serve(app, qs, body, statuses)
            clock.advance(1 / rate)
        costs.append((time.perf_counter() - begin) / chunk * 1e6)
        if (start // chunk) % 10 == 9:
            peak = max(peak, count_files(store.root))
            peak_bytes = max(peak_bytes, count_bytes(store.root))
    peak = max(peak, count_files(store.root))
    peak_bytes = max(peak_bytes, count_bytes(store.root))
    if any(s[:3] != "200" for s in statuses):
        raise RuntimeError("the flood got refusals")
    tenth = max(1, len(costs) // 10)
    first, last = statistics.median(costs[:tenth]), statistics.median(costs[-tenth:])
    print(
        f"\nflood: {total:,} unique messages through the default configuration, "
        f"its clock at {rate:g} msg/s ({total / rate:,.0f} simulated s; dedup TTL 300 s)"
    )
    print(f"  first {tenth * chunk:,}: {first:6.1f} µs/msg (median of {chunk}-message chunks)")
    print(f"  last  {tenth * chunk:,}: {last:6.1f} µs/msg   end/start = {last / first:.2f}x  (target <= 1.2)")
    print(
        f"  dedup files on disk (signature-to-body bindings included): {count_files(store.root):,} at "
        f"the end, {peak:,} at most (bound 3); {peak_bytes / 1e6:.1f} MB at most (the messages of two "
        f"{store.span} s spans = {rate * 2 * store.span:,.0f})"
    )


def stages(n: int = 5000, rounds: int = 7) -> None:
    """CPU µs of each step of the default configuration, each timed on its own over ``n`` messages."""
    from wxmp import signals
    from wxmp.deadline import deadline
    from wxmp.messages import parse
    from wxmp.middleware import _parse_query
    from wxmp.replies import reply_for

    app = wxmp_app(False, None)
    wx = app.extensions["wxmp-bench"]
    callback = wx.state(app).callback
    reqs = make_requests(n, 10**17, False)
    bodies = [body for _, body in reqs]
    queries = [_parse_query(qs) for qs, _ in reqs]
    msgs = [parse(body) for body in bodies]
    now = time.time()
    dedup = callback.dedup
    keys = iter(range(10**9))

    def each(items: list[Any], fn: Callable[[Any], Any]) -> Callable[[], None]:
        def loop() -> None:
            for item in items:
                fn(item)

        return loop

    def app_context(_: Any) -> None:
        with app.app_context():
            pass

    def in_deadline(_: Any) -> None:
        with deadline(4.0):
            pass

    def status_signals(msg: Any) -> None:
        signals.message_received.send(callback.sender, message=msg)
        signals.reply_sent.send(callback.sender, message=msg, reply="x")

    def claim_record(msg: Any) -> None:
        key = f"raw:{next(keys)}"
        dedup.claim(key, now)
        dedup.record(key, "<xml>" + "r" * 250 + "</xml>")

    def claim_bind_record(req: tuple[str, bytes]) -> None:
        key = f"raw:{next(keys)}"
        q = _parse_query(req[0])
        dedup.claim(key, now, (f"{q['timestamp']}:{q['nonce']}:{q['signature']}", req[1]))
        dedup.record(key, "<xml>" + "r" * 250 + "</xml>")

    steps: dict[str, Callable[[], None]] = {
        "query string": each([qs for qs, _ in reqs], _parse_query),
        "signature + timestamp": each(
            queries, lambda q: callback.verifier.check(q["signature"], q["timestamp"], q["nonce"])
        ),
        "parse (lxml, hardened)": each(bodies, parse),
        "route + handler": each(msgs, lambda m: callback.router.resolve(m)[0](m)),
        "render the reply": each(msgs, lambda m: reply_for(m, f"you said: {m.content}", now)),
        "Flask app context": each(msgs, app_context),
        "handler deadline": each(msgs, in_deadline),
        "status counters (signals)": each(msgs, status_signals),
        "dedup: claim + record": each(msgs, claim_record),
        "dedup: the same, binding included": each(reqs, claim_bind_record),
    }
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for name, loop in steps.items():
            cpu = time.thread_time()  # this thread only
            loop()
            best[name] = min(best[name], time.thread_time() - cpu)
    print(
        f"\nstages of the default configuration, CPU µs per message of the request's thread "
        f"(best of {rounds} x {n}, each on its own)"
    )
    for name, seconds in best.items():
        print(f"  {name:<32} {seconds / n * 1e6:6.1f}")


def minus(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return a[0] - b[0], a[1] - b[1]


def ratio(label: str, top: tuple[float, float], bottom: tuple[float, float], target: str) -> None:
    """Print top / bottom for wall time and for CPU time."""
    print(f"  {label:<52} {top[0] / bottom[0]:5.2f}x  {top[1] / bottom[1]:5.2f}x   {target}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--flood", type=int, default=100_000)
    parser.add_argument("--flood-rate", type=float, default=100.0)
    parser.add_argument("--stages", action="store_true", help="price each step of the pipeline instead")
    parser.add_argument(
        "--profile",
        choices=["default", "redis", "memcached", "simple", "off"],
        help="cProfile one configuration",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    for name in ("wechatpy", "werobot"):
        __import__(name)  # the bench extra: pip install -e '.[bench]'
    if args.stages:
        stages()
        return

    with servers() as urls:
        caches: dict[str, str | None] = {"default": None, "simple": "simple"}
        for name, url in urls.items():
            caches[name] = url
        if args.profile:
            import cProfile
            import pstats

            prof_app = (
                wxmp_app(False, None, dedup=False)
                if args.profile == "off"
                else wxmp_app(False, caches[args.profile])
            )
            run(prof_app, make_requests(200, 1, False))
            reqs = make_requests(args.requests, 10**6, False)
            with cProfile.Profile() as prof:
                run(prof_app, reqs)
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
            return

        plain_apps: dict[str, WSGI] = {"wxmp default": wxmp_app(False, None)}
        for name in ("redis", "memcached"):
            if name in urls:
                plain_apps[f"wxmp {name}"] = wxmp_app(False, urls[name])
        plain_apps["wxmp simple"] = wxmp_app(False, "simple")
        plain_apps["wxmp dedup off"] = wxmp_app(False, None, dedup=False)
        plain_apps["bare minimum"] = bare_app()
        plain_apps["flask+wechatpy"] = wechatpy_app(False)
        plain_apps["werobot"] = werobot_app()
        setnx = SetNX(urls["redis"]) if "redis" in urls else None
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        plain = bench("plaintext mode", plain_apps, False, args.requests, args.rounds, setnx)
        safe = bench(
            "safe mode (AES)",
            {
                "wxmp default": wxmp_app(True, None),
                "wxmp dedup off": wxmp_app(True, None, dedup=False),
                "flask+wechatpy": wechatpy_app(True),
            },
            True,
            args.requests,
            args.rounds,
        )

        print("\nratios (the default configuration unless named)        wall     CPU   target")
        ratio(
            "plain: flask+wechatpy / wxmp default", plain["flask+wechatpy"], plain["wxmp default"], ">= 2.5"
        )
        ratio("plain: werobot / wxmp default", plain["werobot"], plain["wxmp default"], ">= 1.5")
        ratio("safe:  flask+wechatpy / wxmp default", safe["flask+wechatpy"], safe["wxmp default"], ">= 2.5")
        ratio(
            "plain: wxmp default / wxmp dedup off", plain["wxmp default"], plain["wxmp dedup off"], "<= 1.5"
        )
        ratio("safe:  wxmp default / wxmp dedup off", safe["wxmp default"], safe["wxmp dedup off"], "<= 1.5")
        ratio(
            "plain: wxmp dedup off / bare minimum", plain["wxmp dedup off"], plain["bare minimum"], "<= 1.5"
        )
        off = plain["wxmp dedup off"]
        for name in ("redis", "memcached"):
            if f"wxmp {name}" in plain:
                added = minus(plain[f"wxmp {name}"], off)
                label = f"{name}: wxmp {name} - wxmp dedup off, µs"
                print(f"  {label:<52} {added[0]:6.1f}  {added[1]:6.1f}")
        if "wxmp redis" in plain:
            added = minus(plain["wxmp redis"], off)
            ratio("redis: that / one raw SET NX PX", added, plain["redis SET NX PX"], "<= 1.5")

    if args.flood:
        flood(args.flood, args.flood_rate)


if __name__ == "__main__":
    main()
