"""A compressed day of access_token traffic: wxmp and wechatpy fleets against one FakeWeChat.

Tokens live ``--lifetime`` seconds (2 by default) and every row runs ``--lifetimes`` of them (40, or
10 with ``--quick``). Each row starts 1, 4 and 16 real worker processes (multiprocessing, spawn); each
process runs ``--threads`` threads calling the user-info API (``GET /cgi-bin/user/info``) in a loop
against one FakeWeChat served from this process on 127.0.0.1. A classic ``/cgi-bin/token`` fetch
invalidates the previous token at once, as WeChat's old docs say and as the fake does by default.

Counted per row: token fetches (requests the fake saw on the token endpoint), fetches per lifetime,
API calls the callers made, and the errors the callers saw (exceptions out of ``wx.user.get`` /
``client.user.get``, wrong answers, RecursionError). wechatpy rows are capped: a row stops when its
fetches reach ``--fetch-cap`` (2000, WeChat's daily quota, which the fake also enforces) or when its
wall-clock time is up, whichever comes first.

Run it::

    pip install -e '.[bench]'
    python benchmarks/token_fleet.py            # the full day, ~16 minutes on 2 cores
    python benchmarks/token_fleet.py --quick    # 10 lifetimes per row, ~5 minutes
    python benchmarks/token_fleet.py --rows wxmp-fs --workers 16 --lifetimes 5

Everything stops by itself: workers have a hard deadline, the parent terminates stragglers, and the
fake and the private redis-server are shut down on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import multiprocessing as mp
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

try:
    import wxmp  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OPENID = "o1"

#: name -> (implementation, storage, endpoint) of each row kind, in the order they are printed.
ROWS: dict[str, tuple[str, str, str]] = {
    "wxmp-fs": ("wxmp", "filesystem", "token"),
    "wxmp-redis": ("wxmp", "redis", "token"),
    "wxmp-stable": ("wxmp", "filesystem", "stable_token"),
    "wechatpy-memory": ("wechatpy", "memory", "token"),
    "wechatpy-redis": ("wechatpy", "redis", "token"),
}


# -- worker processes ---------------------------------------------------------------------------------


class _CountingHandler(logging.Handler):
    """Counts (and keeps the first few of) the warnings wxmp logs in a worker."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(f"{record.name}: {record.getMessage()}")


def _wxmp_caller(spec: dict[str, Any]) -> tuple[Any, Any]:
    from flask import Flask

    from wxmp import WxMP

    app = Flask(f"bench-worker-{os.getpid()}")
    app.config.update(
        WXMP_APPID=spec["appid"],
        WXMP_SECRET=spec["secret"],
        WXMP_API_BASE=spec["base"],
        WXMP_CACHE=spec["cache"],
        WXMP_STABLE_TOKEN=spec["endpoint"] == "stable_token",
        WXMP_TIMEOUT=2,
    )
    if spec.get("margin") is not None:
        app.config["WXMP_REFRESH_MARGIN"] = spec["margin"]
    wx = WxMP(app)  # the refresher thread starts here
    return (lambda: wx.user.get(OPENID)), wx.stop


def _wechatpy_caller(spec: dict[str, Any]) -> tuple[Any, Any]:
    from wechatpy import WeChatClient

    base = spec["base"] + "/cgi-bin/"
    # wechatpy refreshes 60 s before expiry, on a 7200 s token. A 2 s token would be "due" forever,
    # so the margin is scaled with the day: 60/7200 of the lifetime. Everything else is wechatpy's.
    margin = 60.0 * spec["lifetime"] / 7200.0

    class FleetClient(WeChatClient):
        API_BASE_URL = base  # every API group builds its URL on this

        def fetch_access_token(self) -> dict[str, Any]:
            # wechatpy hard-codes https://api.weixin.qq.com/cgi-bin/token here: point it at the fake.
            result = self._fetch_access_token(
                url=base + "token",
                params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
            )
            # wechatpy stores int(time.time()) + expires_in: up to 1 s early, half a compressed
            # lifetime. Keep the fraction, as a real 7200 s day effectively does.
            self.expires_at = time.time() + result.get("expires_in", 7200)
            return result

        @property
        def access_token(self) -> str:
            # wechatpy's property, with the margin scaled (see above).
            token = self.session.get(self.access_token_key)
            if token:
                if not self.expires_at:
                    return token  # another process fetched it (shared storage): trusted as is
                if self.expires_at - time.time() > margin:
                    return token
            self.fetch_access_token()
            return self.session.get(self.access_token_key)

    session = None
    if spec["storage"] == "redis":
        import redis
        from wechatpy.session.redisstorage import RedisStorage

        session = RedisStorage(redis.Redis.from_url(spec["redis_url"]), prefix="wechatpy")
    client = FleetClient(spec["appid"], spec["secret"], session=session, timeout=2)
    return (lambda: client.user.get(OPENID)), (lambda: None)


def worker(spec: dict[str, Any], index: int, ready: Any, go: Any, stop: Any, results: Any) -> None:
    """One worker process: build the app (or client) when told to go, call until told to stop."""
    logging.basicConfig(level=logging.ERROR if not spec["verbose"] else logging.WARNING)
    counter = _CountingHandler()
    logging.getLogger("wxmp").addHandler(counter)
    if spec["impl"] == "wxmp":
        import flask  # noqa: F401  (import before the clock starts)

        import wxmp.api.user  # noqa: F401
    else:
        import wechatpy  # noqa: F401
    ready.put(index)
    if not go.wait(spec["ready_timeout"]):
        return
    deadline = time.monotonic() + spec["duration"] + spec["grace"]  # hard stop, whatever the parent does
    report: dict[str, Any] = {"index": index, "pid": os.getpid(), "calls": 0, "errors": 0}
    kinds: Counter[str] = Counter()
    lock = threading.Lock()
    try:
        call, close = (_wxmp_caller if spec["impl"] == "wxmp" else _wechatpy_caller)(spec)
    except Exception as exc:  # a broken set-up is one visible error, not a hang
        results.put({**report, "errors": 1, "kinds": {f"setup {type(exc).__name__}: {exc}": 1}})
        return

    def loop() -> None:
        calls = errors = 0
        mine: Counter[str] = Counter()
        for _ in range(spec["max_calls"]):
            if stop.is_set() or time.monotonic() >= deadline:
                break
            calls += 1
            try:
                answer = call()
                if not isinstance(answer, dict) or answer.get("openid") != OPENID:
                    errors += 1
                    mine["wrong answer"] += 1
            except RecursionError:
                errors += 1
                mine["RecursionError"] += 1
            except Exception as exc:
                errors += 1
                code = getattr(exc, "errcode", None)
                mine[f"{type(exc).__name__}{f' {code}' if code is not None else ''}"] += 1
            if spec["think"]:
                time.sleep(spec["think"])
        with lock:
            report["calls"] += calls
            report["errors"] += errors
            kinds.update(mine)

    # A big stack: wechatpy's unbounded retry recursion should end in RecursionError, not a segfault.
    threading.stack_size(32 * 1024 * 1024)
    threads = [threading.Thread(target=loop, name=f"caller-{i}", daemon=True) for i in range(spec["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic() + 1))
    with contextlib.suppress(Exception):
        close()
    with lock:
        report["kinds"] = dict(kinds)
        report["warnings"] = counter.count
        report["first_warnings"] = counter.first
        report["stuck_threads"] = sum(t.is_alive() for t in threads)
        results.put(report)


# -- the parent ----------------------------------------------------------------------------------------


@dataclass
class Row:
    impl: str
    storage: str
    endpoint: str
    workers: int
    margin: float | None = None
    lifetimes: float = 0.0
    fetches: int = 0
    calls: int = 0
    errors: int = 0
    http_calls: int = 0
    distinct_tokens: int = 0
    seconds: float = 0.0
    capped: str = ""
    kinds: Counter[str] = field(default_factory=Counter)
    warnings: int = 0
    first_warnings: list[str] = field(default_factory=list)
    lost_workers: int = 0
    gaps: int = 0
    gap_seconds: float = 0.0

    @property
    def per_lifetime(self) -> float:
        return self.fetches / self.lifetimes if self.lifetimes else float("nan")

    def notes(self) -> str:
        parts = []
        if self.capped:
            parts.append(self.capped)
        if self.endpoint == "stable_token":
            parts.append(f"{self.distinct_tokens} distinct tokens")
        retries = self.http_calls - self.calls
        if retries > 0:
            parts.append(f"{retries} token-invalid replays")
        for kind, n in self.kinds.most_common(3):
            parts.append(f"{n}× {kind}")
        if self.gaps:
            parts.append(f"no valid token for {self.gap_seconds:.2f}s in {self.gaps} gaps")
        if self.warnings:
            parts.append(f"{self.warnings} wxmp warnings")
        if self.lost_workers:
            parts.append(f"{self.lost_workers} workers did not report")
        return "; ".join(parts)


def run_row(
    ctx: Any, name: str, workers: int, args: argparse.Namespace, redis_url: str | None, margin: float | None
) -> Row:
    from wxmp.testing import FakeWeChat

    impl, storage, endpoint = ROWS[name]
    row = Row(impl, storage, endpoint, workers, margin=margin)
    token_path = "/cgi-bin/stable_token" if endpoint == "stable_token" else "/cgi-bin/token"
    capped_row = impl == "wechatpy"
    duration = args.lifetime * args.lifetimes
    if capped_row:
        duration = min(duration, args.wechatpy_seconds)
    tmp = tempfile.mkdtemp(prefix="wxmp-bench-")
    if storage == "redis":
        assert redis_url is not None
        import redis

        redis.Redis.from_url(redis_url).flushdb()
    spec = {
        "impl": impl,
        "storage": storage,
        "endpoint": endpoint,
        "cache": f"filesystem:{tmp}" if storage == "filesystem" else redis_url,
        "redis_url": redis_url,
        "lifetime": args.lifetime,
        "duration": duration,
        "grace": 10.0,
        "ready_timeout": 120.0,
        "threads": args.threads,
        "think": args.think,
        "max_calls": args.max_calls,
        "margin": margin,
        "verbose": args.verbose,
    }
    fake = FakeWeChat(token_lifetime=args.lifetime, daily_quota=args.fetch_cap).start()
    procs: list[Any] = []
    try:
        fake.add_user(OPENID)
        spec.update(appid=fake.appid, secret=fake.secret, base=fake.url)
        ready, results = ctx.Queue(), ctx.Queue()
        go, stop = ctx.Event(), ctx.Event()
        procs = [
            ctx.Process(target=worker, args=(spec, i, ready, go, stop, results), daemon=True)
            for i in range(workers)
        ]
        for p in procs:
            p.start()
        for _ in range(workers):
            ready.get(timeout=spec["ready_timeout"])
        start = time.monotonic()
        go.set()
        while True:
            time.sleep(0.05)
            elapsed = time.monotonic() - start
            if elapsed >= duration:
                break
            if fake.quota_used[token_path] >= args.fetch_cap:
                row.capped = f"hit the {args.fetch_cap}-fetch cap after {elapsed:.1f}s"
                break
        stop.set()
        row.seconds = time.monotonic() - start
        reports = []
        until = time.monotonic() + spec["grace"] + 5
        while len(reports) < workers and time.monotonic() < until:
            try:
                reports.append(results.get(timeout=0.2))
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    with contextlib.suppress(queue.Empty):
                        while True:
                            reports.append(results.get(timeout=0.5))
                    break
        for rep in reports:
            row.calls += rep["calls"]
            row.errors += rep["errors"]
            row.kinds.update(rep.get("kinds", {}))
            row.warnings += rep.get("warnings", 0)
            row.first_warnings.extend(rep.get("first_warnings", []))
            if rep.get("stuck_threads"):
                row.kinds["caller thread still stuck at the deadline"] += rep["stuck_threads"]
        row.lost_workers = workers - len(reports)
        row.lifetimes = row.seconds / args.lifetime
        row.fetches = fake.count(token_path)
        row.http_calls = fake.count("/cgi-bin/user/info")
        row.distinct_tokens = fake.issued["stable" if endpoint == "stable_token" else "classic"]
        if endpoint == "token":
            # A classic token lives from its fetch until the next fetch or its expiry, whichever is first:
            # a fetch later than the previous one's expiry means a stretch with no valid token at all.
            times = [r.time for r in fake.calls(token_path)]
            late = [b - a - args.lifetime for a, b in itertools.pairwise(times) if b - a > args.lifetime]
            row.gaps, row.gap_seconds = len(late), sum(late)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return row


HEADER = (
    "implementation",
    "storage",
    "endpoint",
    "workers",
    "lifetimes",
    "token fetches",
    "fetches/lifetime",
    "API calls",
    "errors",
    "notes",
)


def row_cells(row: Row) -> tuple[str, ...]:
    endpoint = "stable_token" if row.endpoint == "stable_token" else "token (classic)"
    impl = row.impl if row.margin is None else f"{row.impl}, margin {row.margin:g}"
    return (
        impl,
        row.storage,
        endpoint,
        str(row.workers),
        f"{row.lifetimes:.1f}",
        str(row.fetches),
        f"{row.per_lifetime:.2f}",
        str(row.calls),
        str(row.errors),
        row.notes(),
    )


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(row_cells(row)) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lifetime", type=int, default=2, help="token lifetime in seconds (default 2)")
    parser.add_argument("--lifetimes", type=float, default=None, help="lifetimes per row (default 40)")
    parser.add_argument("--quick", action="store_true", help="10 lifetimes per row")
    parser.add_argument("--workers", default="1,4,16", help="worker counts, comma-separated (1,4,16)")
    parser.add_argument("--threads", type=int, default=2, help="caller threads per worker (2)")
    parser.add_argument("--think", type=float, default=0.005, help="pause between calls, s (0.005)")
    parser.add_argument("--max-calls", type=int, default=1_000_000, help="bound on calls per thread")
    parser.add_argument(
        "--rows", default=",".join(ROWS), help=f"row kinds, comma-separated ({','.join(ROWS)})"
    )
    parser.add_argument("--fetch-cap", type=int, default=2000, help="stop a row at this many fetches")
    parser.add_argument(
        "--wechatpy-seconds", type=float, default=90.0, help="wall-clock cap of a wechatpy row (90)"
    )
    parser.add_argument(
        "--margin", type=float, default=None, help="WXMP_REFRESH_MARGIN for wxmp rows (default: wxmp's)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    parser.add_argument("--verbose", action="store_true", help="show workers' warnings")
    args = parser.parse_args(argv)
    if args.lifetimes is None:
        args.lifetimes = 10.0 if args.quick else 40.0
    if args.lifetime < 1:
        parser.error("--lifetime must be at least 1 (WeChat's expires_in is whole seconds)")
    args.worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    args.row_names = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in args.row_names if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ctx = mp.get_context("spawn")
    names = list(args.row_names)
    if any(ROWS[n][0] == "wechatpy" for n in names):
        try:
            import wechatpy  # noqa: F401
        except ImportError:
            print("wechatpy is not installed (pip install -e '.[bench]'): skipping its rows", file=sys.stderr)
            names = [n for n in names if ROWS[n][0] != "wechatpy"]
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        redis_url = None
        if any(ROWS[n][1] == "redis" for n in names):
            try:
                from wxmp.testing.servers import redis_process

                redis_url = stack.enter_context(redis_process()).url
            except (FileNotFoundError, RuntimeError) as exc:
                print(f"no redis-server ({exc}): skipping the Redis rows", file=sys.stderr)
                names = [n for n in names if ROWS[n][1] != "redis"]
        print(
            f"token lifetime {args.lifetime}s, {args.lifetimes:g} lifetimes per row, {args.threads} threads per "
            f"worker, think {args.think}s, fetch cap {args.fetch_cap}, wechatpy rows capped at "
            f"{args.wechatpy_seconds:g}s; {os.cpu_count()} CPUs",
            flush=True,
        )
        for name in names:
            for workers in args.worker_counts:
                row = run_row(ctx, name, workers, args, redis_url, args.margin)
                rows.append(row)
                print(" | ".join(row_cells(row)), flush=True)
                if args.verbose and row.first_warnings:
                    for line in row.first_warnings[:5]:
                        print(f"    {line}", flush=True)
    print()
    print(markdown_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                [
                    {
                        **{k: v for k, v in vars(r).items() if k != "kinds"},
                        "kinds": dict(r.kinds),
                        "per_lifetime": r.per_lifetime,
                    }
                    for r in rows
                ],
                f,
                indent=2,
            )
    # The headline: one fetch per lifetime for the whole fleet, at most 5% over (the first fetch alone
    # adds 1/lifetimes, so short runs get that much more room), and no caller-visible error.
    bound = 1.05 + max(0.0, 1 / args.lifetimes - 0.025)
    headline = [r for r in rows if r.impl == "wxmp" and r.endpoint == "token"]
    bad = [r for r in headline if r.per_lifetime > bound or r.errors]
    if headline:
        verdict = "FAIL: " + ", ".join(f"{r.storage}×{r.workers}" for r in bad) if bad else "ok"
        print(f"\nheadline (wxmp, classic endpoint: ≤ {bound:.3f} fetches/lifetime, 0 errors): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
