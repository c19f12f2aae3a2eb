"""Benchmark (not a test): the ASGI callback against the WSGI callback.

1. Slow handlers: every delivery's handler waits 1 s of I/O (``await asyncio.sleep(1)`` under
   ASGI, ``time.sleep(1)`` under WSGI). A burst of N deliveries at once, each allowed WeChat's 5 s:
   the ASGI callback under uvicorn with one worker vs the WSGI callback under gunicorn gthread
   (4 workers x 8 threads). The deliveries arrive over 0.5 s. Reported: deliveries answered within 5 s (queueing included), how many
   the server held at once (ASGI: all it answered; gthread: its 32 threads), and the server's
   memory per held delivery (RSS growth while the last arrivals are held / deliveries held).
2. Plain per-message cost, in process, no HTTP server: a signed text push through the WSGI
   callback, the ASGI callback with a plain handler (run in a thread), and with an async handler.

Both servers use the configuration users get by default (Account's filesystem cache for dedup).

    python benchmarks/asgi.py [--burst 1000] [--messages 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wxmp import Account  # noqa: E402
from wxmp.testing import WeChatUser  # noqa: E402
from wxmp.testing.servers import free_port, gunicorn_quiet_flags  # noqa: E402

TOKEN = "benchtoken"
WECHAT_WAIT = 5.0
#: The burst's deliveries arrive evenly over this many seconds (a single instant would only
#: measure the kernel's accept backlog and SYN retries).
SPREAD = 0.5


def _account(slow: bool, kind: str) -> Account:
    acct = Account(token=TOKEN, cache=os.environ.get("BENCH_CACHE") or "simple")
    if kind == "asgi":

        @acct.on("text")
        async def reply(msg):
            if slow:
                await asyncio.sleep(1.0)
            return msg.content

    else:

        @acct.on("text")
        def reply_sync(msg):
            if slow:
                time.sleep(1.0)
            return msg.content

    return acct


def make_asgi() -> Any:
    """uvicorn --factory target."""
    return _account(True, "asgi").asgi


def make_wsgi() -> Any:
    """gunicorn target (``asgi:make_wsgi()``)."""
    return _account(True, "wsgi").callback


# -- 1. slow handlers over HTTP -------------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    """RSS of a process and its children (gunicorn's workers), in kB."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    except FileNotFoundError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def _requests(n: int) -> list[tuple[dict[str, str], bytes]]:
    user = WeChatUser("http://unused", TOKEN)
    ids = itertools.count(10**9)
    return [
        (user._signed(), user.message_xml("text", {"Content": f"m{i}"}, msg_id=next(ids))) for i in range(n)
    ]


async def _post(port: int, params: dict[str, str], body: bytes) -> int:
    """One POST on its own connection, with asyncio streams (a light client: 1000 at once)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        head = (
            f"POST /wechat?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        status = await reader.readline()
        await reader.read()
        return int(status.split()[1])
    finally:
        writer.close()


async def _burst(port: int, n: int, pid: int) -> dict[str, Any]:
    prepared = _requests(n)
    answered = 0

    async def one(i: int, params: dict[str, str], body: bytes) -> None:
        nonlocal answered
        await asyncio.sleep(i / n * SPREAD)  # arrivals spread over SPREAD s, not one instant
        try:
            # WeChat's 5 s is for the whole exchange, queueing included.
            if await asyncio.wait_for(_post(port, params, body), WECHAT_WAIT) == 200:
                answered += 1
        except (OSError, asyncio.TimeoutError, ValueError, IndexError):
            pass  # WeChat gives up after 5 s

    idle = _rss_kb(pid)
    tasks = [asyncio.create_task(one(i, p, b)) for i, (p, b) in enumerate(prepared)]
    await asyncio.sleep(SPREAD + 0.2)  # every delivery is sent and the last are still held
    holding = _rss_kb(pid)
    await asyncio.gather(*tasks)
    return {"answered": answered, "idle_kb": idle, "holding_kb": holding}


def _serve(kind: str, port: int, cache: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]),
        "BENCH_CACHE": cache,
    }
    if kind == "asgi":
        argv = [sys.executable, "-m", "uvicorn", "--factory", "asgi:make_asgi", "--port", str(port),
                "--workers", "1", "--log-level", "warning", "--backlog", "4096"]  # fmt: skip
    else:
        argv = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "4", "--threads", "8",
                "--backlog", "4096", "-b", f"127.0.0.1:{port}", "asgi:make_wsgi()", *gunicorn_quiet_flags()]  # fmt: skip
    proc = subprocess.Popen(
        argv, env=env, cwd=str(ROOT / "benchmarks"), stderr=subprocess.DEVNULL, start_new_session=True
    )
    user = WeChatUser(f"http://127.0.0.1:{port}/wechat", TOKEN, path="")
    deadline = time.monotonic() + 30
    while True:
        try:
            user.verify()
            return proc
        except Exception:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{kind} server did not start") from None
            time.sleep(0.2)


def slow_handlers(burst: int, cache: str | None, kinds: list[str]) -> list[tuple[str, ...]]:
    rows = []
    servers = {"asgi": "ASGI, uvicorn 1 worker", "wsgi": "WSGI, gunicorn gthread 4x8"}
    for kind, label in ((k, servers[k]) for k in kinds):
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as cache_dir:
            port = free_port()
            proc = _serve(kind, port, cache or f"filesystem:{cache_dir}")
            try:
                result = asyncio.run(_burst(port, burst, proc.pid))
            finally:
                # The server's own session: its workers go too, without draining the queued burst.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        held = min(burst, result["answered"]) if kind == "asgi" else min(burst, 32)
        growth = max(0, result["holding_kb"] - result["idle_kb"])
        rows.append(
            (
                label,
                f"{result['answered']}/{burst}",
                str(held),
                f"{growth / max(1, held):.1f} kB",
                f"{result['idle_kb'] / 1024:.0f} MB",
            )
        )
    return rows


# -- 2. plain per-message cost, in process --------------------------------------------------------


def _environ(params: dict[str, str], body: bytes) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/wechat",
        "QUERY_STRING": "&".join(f"{k}={v}" for k, v in params.items()),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }


def per_message(n: int) -> list[tuple[str, ...]]:
    rows = []
    wsgi = _account(False, "wsgi").callback
    prepared = _requests(n)
    start = time.perf_counter()
    for params, body in prepared:
        b"".join(wsgi(_environ(params, body), lambda status, headers: None))
    rows.append(("WSGI callback (plain handler)", f"{(time.perf_counter() - start) / n * 1e6:.0f} µs"))

    for label, kind in (
        ("ASGI callback, plain handler (thread)", "wsgi"),
        ("ASGI callback, async handler", "asgi"),
    ):
        app = _account(False, kind).asgi
        prepared = _requests(n)

        async def run(app: Any = app, prepared: list = prepared) -> float:
            async def send(message: dict[str, Any]) -> None:
                pass

            begin = time.perf_counter()
            for params, body in prepared:
                sent = False

                async def receive(body: bytes = body) -> dict[str, Any]:
                    nonlocal sent
                    if sent:
                        return {"type": "http.disconnect"}
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}

                qs = "&".join(f"{k}={v}" for k, v in params.items()).encode()
                scope = {
                    "type": "http",
                    "method": "POST",
                    "path": "/wechat",
                    "query_string": qs,
                    "headers": [],
                }
                await app(scope, receive, send)
            return time.perf_counter() - begin

        elapsed = asyncio.run(run())
        rows.append((label, f"{elapsed / n * 1e6:.0f} µs"))
    return rows


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=1000, help="deliveries sent at once (default 1000)")
    parser.add_argument("--messages", type=int, default=3000, help="messages for the per-message cost")
    parser.add_argument("--cache", help="WXMP_CACHE of the servers (default: a filesystem cache, as Account)")
    parser.add_argument("--only", choices=["asgi", "wsgi"], help="run one server of part 1, skip part 2")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print(
        f"1. A burst of {args.burst} deliveries whose handler waits 1 s; WeChat waits {WECHAT_WAIT:.0f} s\n"
    )
    header = ("server", "answered within 5 s", "held at once", "memory per held delivery", "idle RSS")
    print(
        _table(header, slow_handlers(args.burst, args.cache, [args.only] if args.only else ["asgi", "wsgi"]))
    )
    if args.only:
        return
    print(f"\n2. Per message, in process (dedup on, a simple cache), mean of {args.messages}\n")
    print(_table(("path", "per message"), per_message(args.messages)))


if __name__ == "__main__":
    main()
