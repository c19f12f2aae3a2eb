"""Soak: wxmp under gunicorn with a real Redis, a FakeWeChat and injected faults, measured end to end.

Run (from the repository root, after ``pip install -e '.[test]'``)::

    python benchmarks/soak.py --quick      # both gunicorn configs, every scenario, about 3 minutes
    python benchmarks/soak.py              # the same with longer windows

What runs, all on 127.0.0.1:

- a private ``redis-server`` (``WXMP_CACHE``), a FakeWeChat in this process (classic
  ``/cgi-bin/token``, where a fetch kills the previous token at once; tokens live ``--lifetime`` s);
- gunicorn serving ``benchmarks/soak_app.py`` (echo + ``wx.user.get`` + ``wx.message.send_text`` in
  every handler run), first with 4 sync workers, then with 4 gthread workers x 4 threads;
- load-generator processes (``soak_load.py``) posting signed and encrypted text messages, each with
  a unique MsgId, retried like WeChat when unanswered;
- a timeline of faults while the load runs: WeChat answering -1 then HTTP 500, WeChat hanging past
  the client timeout, Redis stopped and restarted, a worker SIGKILLed while it holds the refresh lock,
  workers restarted (SIGTERM to one, SIGHUP to the arbiter), WeChat's retries of one message landing
  on different workers, and WeChat's clock jumping past every token's expiry.

Each handler run appends its MsgId to a file, so runs are counted exactly. The expectations checked
(and printed as PASS/FAIL): no message lost, no handler run twice, no 5xx, no token-invalid error
ever reaching a handler, no API error outside a fault's window plus its recovery allowance, token
fetches within one per lifetime plus one per fault, no secret or token in gunicorn's output.
Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gunicorn
import redis
import requests

from wxmp.cache import SharedStore, resolve_cache
from wxmp.config import Settings
from wxmp.testing import FakeWeChat, WeChatUser
from wxmp.testing.servers import ServerProcess, free_port, redis_process

HERE = Path(__file__).resolve().parent
TOKEN = "soaktoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ACCOUNT = "gh_50a4b0e7c1d2"
TOKEN_PATHS = ("/cgi-bin/token", "/cgi-bin/stable_token")
RETRY_INDEX = 63  # MsgIds of the retry scenario: 63 << 40 | n (load processes use 1..)


class JumpClock:
    """WeChat's clock for the FakeWeChat: real time plus an offset that ``jump`` moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


class SoakWeChat(FakeWeChat):
    """A FakeWeChat that also notes which worker pid made each token fetch (from the User-Agent)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token_calls: list[tuple[float, int | None]] = []
        self.issue_times: list[float] = []

    def _respond(self, request: Any, args: dict[str, str], body: bytes) -> Any:
        if request.path in TOKEN_PATHS:
            agent = request.headers.get("User-Agent", "")
            pid = int(agent.rpartition("/")[2]) if agent.startswith("wxmp-soak/") else None
            with self._lock:
                self.token_calls.append((time.time(), pid))
        return super()._respond(request, args, body)

    def _issue(self, kind: str) -> Any:
        token = super()._issue(kind)
        self.issue_times.append(time.time())
        return token

    def issued_between(self, start: float, end: float) -> int:
        """Tokens issued (successful fetches) between two wall-clock times."""
        with self._lock:
            return sum(1 for t in self.issue_times if start <= t <= end)


@dataclass
class Window:
    """One scenario on the timeline: the fault lasts start..end, recovery is allowed until settle."""

    name: str
    start: float
    end: float
    settle: float
    fault: bool = True
    notes: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)


def worker_pids(arbiter: int) -> set[int]:
    """Children of the gunicorn arbiter, from /proc."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == arbiter and fields[0] != "Z":
            pids.add(int(entry))
    return pids


def wait_for(predicate: Callable[[], Any], timeout: float, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


class Gunicorn:
    """gunicorn serving soak_app:app; ``kind`` is "sync" or "gthread"."""

    def __init__(self, kind: str, workers: int, threads: int, config: dict[str, Any], log: Path) -> None:
        self.kind, self.workers, self.threads = kind, workers, threads
        self.config, self.log = config, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "gunicorn", "-w", str(self.workers), "-b", f"127.0.0.1:{self.port}"]
        argv += ["--pythonpath", str(HERE), "--graceful-timeout", "10", "--timeout", "30"]
        if self.kind == "gthread":
            argv += ["-k", "gthread", "--threads", str(self.threads)]
        if gunicorn.version_info >= (27,):
            argv.append("--no-control-socket")  # several gunicorns may run at once (tests, CI)
        argv.append("soak_app:app")
        env = {**os.environ, "SOAK_CONFIG": json.dumps(self.config)}
        self._logf = open(self.log, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(argv, env=env, stdout=self._logf, stderr=subprocess.STDOUT)
        ok = wait_for(self._ready, 30, 0.1)
        if not ok:
            self.stop()
            raise RuntimeError(f"gunicorn did not start; see {self.log}")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log}")
        if len(worker_pids(self.proc.pid)) < self.workers:
            return False
        try:
            return requests.get(self.url + "/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    def pids(self) -> set[int]:
        assert self.proc is not None
        return worker_pids(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # quick shutdown: the load is already stopped
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logf.close()


class Rig:
    """One gunicorn config under load, with the fault scenarios as methods (also used by the tests)."""

    def __init__(
        self,
        fake: SoakWeChat,
        redis_server: ServerProcess,
        workdir: Path,
        *,
        kind: str = "sync",
        workers: int = 4,
        threads: int = 4,
        lifetime: float = 3.0,
        timeout: float = 1.0,
    ) -> None:
        self.fake, self.redis, self.workdir = fake, redis_server, workdir
        self.lifetime, self.timeout = lifetime, timeout
        workdir.mkdir(parents=True, exist_ok=True)
        self.runs_file = workdir / "runs.txt"
        self.errors_file = workdir / "errors.txt"
        self.stop_file = workdir / "stop"
        self.config = {
            "WXMP_APPID": fake.appid,
            "WXMP_SECRET": fake.secret,
            "WXMP_TOKEN": TOKEN,
            "WXMP_AES_KEY": AES_KEY,
            "WXMP_ALLOW_PLAINTEXT": True,  # the soak alternates plaintext and safe pushes
            "WXMP_API_BASE": fake.url,
            "WXMP_CACHE": redis_server.url,
            "WXMP_STABLE_TOKEN": False,  # the classic endpoint: every fetch kills the previous token
            "WXMP_TIMEOUT": timeout,
            "instance_path": str(workdir / "instance"),
            "runs_file": str(self.runs_file),
            "errors_file": str(self.errors_file),
        }
        self.gunicorn = Gunicorn(kind, workers, threads, self.config, workdir / "gunicorn.log")
        self.windows: list[Window] = []
        self.loads: list[subprocess.Popen[str]] = []
        self.retry_records: dict[int, list[str]] = {}
        self.started = 0.0

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        redis.Redis.from_url(self.redis.url).flushdb()
        self.gunicorn.start()
        self.started = time.time()

    def start_load(self, procs: int, threads: int, rate: float, duration: float, max_messages: int) -> None:
        for index in range(1, procs + 1):
            for t in range(threads):
                self.fake.add_user(f"oSoak{index:02d}x{t:02d}")
            cfg = {
                "url": self.gunicorn.url, "token": TOKEN, "aes_key": AES_KEY, "appid": self.fake.appid,
                "account": ACCOUNT, "index": index, "threads": threads, "procs": procs, "rate": rate,
                "duration": duration, "max": max_messages // procs, "stop_file": str(self.stop_file),
            }  # fmt: skip
            self.loads.append(
                subprocess.Popen(
                    [sys.executable, str(HERE / "soak_load.py"), json.dumps(cfg)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )

    def stop_load(self) -> list[dict[str, Any]]:
        self.stop_file.touch()
        results: list[dict[str, Any]] = []
        for proc in self.loads:
            out, _ = proc.communicate(timeout=60)
            results.extend(json.loads(out)["results"])
        return results

    def stop(self) -> None:
        self.stop_file.touch()
        for proc in self.loads:
            if proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(30)
                if proc.poll() is None:
                    proc.kill()
        self.gunicorn.stop()

    @contextlib.contextmanager
    def window(self, name: str, settle: float, fault: bool = True) -> Iterator[Window]:
        w = Window(name, time.time(), 0.0, 0.0, fault)
        yield w
        w.end = time.time()
        time.sleep(settle)
        w.settle = time.time()
        self.windows.append(w)

    # -- scenarios ----------------------------------------------------------------------------

    def steady(self, hold: float, name: str = "steady") -> Window:
        with self.window(name, 0, fault=False) as w:
            time.sleep(hold)
        return w

    def api_errors(self, hold: float, settle: float) -> Window:
        """WeChat answers errcode -1 to everything for hold/2 s, then HTTP 500 for hold/2 s."""
        with self.window("wechat -1 then 500", settle) as w:
            before = self.fake.count()
            self.fake.fail_next(1_000_000, -1)
            time.sleep(hold / 2)
            self.fake.clear_faults()
            self.fake.http_error_next(1_000_000, 500)
            time.sleep(hold / 2)
            self.fake.clear_faults()
            w.notes["requests answered with a fault"] = self.fake.count() - before
        return w

    def hang(self, hold: float, settle: float) -> Window:
        """WeChat hangs past the client timeout (token and API endpoints alike)."""
        with self.window("wechat hangs past the client timeout", settle) as w:
            self.fake.hang_next(8, seconds=self.timeout + 1.5)
            time.sleep(hold)
            self.fake.clear_faults()
            w.notes["hung requests"] = 8
        return w

    def redis_outage(self, hold: float, settle: float) -> Window:
        """Redis stops (the token cache and dedup vanish) and comes back empty."""
        with self.window("redis stopped and restarted", settle) as w:
            self.redis.stop()
            time.sleep(hold)
            self.redis.start()
            w.notes["outage seconds"] = round(hold, 1)
        return w

    def kill_lock_holder(self, settle: float) -> Window:
        """Revoke every token while the next fetch hangs; SIGKILL the worker that holds the lock."""
        # The key the workers' SharedStore uses (namespaced by appid and the fake's host, maybe hashed).
        namespace = Settings(appid=self.fake.appid, api_base=self.fake.url).namespace
        store = SharedStore(resolve_cache(self.redis.url, ""), namespace=namespace)
        lock_key = store.key(f"lock:{self.fake.appid}:access_token")
        client = redis.Redis.from_url(self.redis.url)
        with self.window("SIGKILL the refresh-lock holder", settle) as w:
            seen = len(self.fake.token_calls)
            self.fake.hang_next(1, seconds=10, paths=("/cgi-bin/token",))
            self.fake.revoke_tokens()
            call = wait_for(lambda: self.fake.token_calls[seen:], 10, 0.005)
            pid = call[0][1] if call else None
            held = bool(client.exists(lock_key))
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            w.notes.update(killed_pid=pid, lock_held_at_kill=held)
            self.fake.clear_faults()
            freed = wait_for(lambda: not client.exists(lock_key), 10, 0.01)
            w.notes["lock freed after (s)"] = round(time.time() - w.start, 2) if freed else None
            replaced = wait_for(lambda: len(self.gunicorn.pids()) >= self.gunicorn.workers, 30, 0.1)
            w.notes["gunicorn replaced it"] = bool(replaced) and pid not in self.gunicorn.pids()
            w.checks["worker holding the lock killed"] = pid is not None and held
        return w

    def restart_workers(self, settle: float) -> Window:
        """SIGTERM one worker (gunicorn replaces it), then SIGHUP the arbiter (all replaced)."""
        assert self.gunicorn.proc is not None
        with self.window("workers restarted (SIGTERM one, SIGHUP all)", settle) as w:
            before = self.gunicorn.pids()
            victim = min(before)
            os.kill(victim, signal.SIGTERM)
            ok1 = wait_for(
                lambda: victim not in (p := self.gunicorn.pids()) and len(p) >= self.gunicorn.workers, 30, 0.1
            )
            time.sleep(self.lifetime / 2)
            mid = self.gunicorn.pids()
            os.kill(self.gunicorn.proc.pid, signal.SIGHUP)
            ok2 = wait_for(
                lambda: not (mid & (p := self.gunicorn.pids())) and len(p) >= self.gunicorn.workers, 30, 0.1
            )
            w.notes.update(sigterm_replaced=bool(ok1), sighup_replaced_all=bool(ok2))
            w.checks["gunicorn replaced the workers"] = bool(ok1 and ok2)
        return w

    def retries(self, messages: int, settle: float) -> Window:
        """WeChat's retries: each message posted twice at once (so two workers) and once more after."""
        self.fake.add_user("oSoakRetry")
        common = {"openid": "oSoakRetry", "account": ACCOUNT, "timeout": 5.0}
        users = [
            # An account with an AES key refuses plaintext pushes: compatible mode carries both.
            WeChatUser(self.gunicorn.url, TOKEN, aes_key=AES_KEY, appid=self.fake.appid, mode="compatible", **common),
            WeChatUser(self.gunicorn.url, TOKEN, aes_key=AES_KEY, appid=self.fake.appid, mode="safe", **common),
        ]  # fmt: skip
        from soak_load import outcome

        with (
            self.window("WeChat retries one message on other workers", settle) as w,
            ThreadPoolExecutor(2) as pool,
        ):
            for n in range(messages):
                user = users[n % 2]
                msg_id = RETRY_INDEX << 40 | n
                content = f"retry {msg_id} ]]>"
                xml = user.message_xml("text", {"Content": content}, msg_id=msg_id)

                def post(user: WeChatUser = user, xml: bytes = xml, content: str = content) -> str:
                    try:
                        result = user.post(xml)
                    except requests.RequestException as exc:
                        return f"conn:{type(exc).__name__}"
                    return outcome(user, result.status, result.body, content)

                first = list(pool.map(lambda _: post(), range(2)))
                self.retry_records[msg_id] = [*first, post()]
            w.notes["messages x posts"] = f"{messages} x 3"
        return w

    def clock_jump(self, settle: float) -> Window:
        """WeChat's clock jumps past every token's expiry: what the workers hold is now expired."""
        with self.window("WeChat's clock jumps forward", settle) as w:
            self.fake.clock.jump(2 * self.lifetime + 1)  # type: ignore[attr-defined]
            w.notes["jump (s)"] = 2 * self.lifetime + 1
        return w

    # -- analysis -----------------------------------------------------------------------------

    def analyse(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        runs: Counter[int] = Counter()
        if self.runs_file.exists():
            for line in self.runs_file.read_text().splitlines():
                runs[int(line.split()[0])] += 1
        errors = []
        if self.errors_file.exists():
            for line in self.errors_file.read_text().splitlines():
                t, _pid, name, code = line.split()
                errors.append((float(t), name, code))
        sent = {r["id"]: r for r in results}
        end = max((r["t"] + r["ms"] / 1000 for r in results), default=time.time())
        span = end - self.started
        outcomes = Counter(r["outcome"] for r in results)
        lost = [i for i in sent if runs[i] == 0]
        dups = [i for i, n in runs.items() if n > 1]
        strangers = [i for i in runs if i not in sent and i >> 40 != RETRY_INDEX]
        latencies = sorted(r["ms"] for r in results if r["outcome"] in ("verified", "success"))
        e5xx = sum(r["e5xx"] for r in results)
        conn = sum(r["conn"] for r in results)

        faults = [w for w in self.windows if w.fault]

        def in_fault(t: float) -> Window | None:
            return next((w for w in faults if w.start <= t <= w.settle), None)

        per_window: dict[str, Counter[str]] = {w.name: Counter() for w in self.windows}
        stray: Counter[str] = Counter()
        for t, name, code in errors:
            w = in_fault(t)
            (per_window[w.name] if w else stray)[f"{name}({code})"] += 1
        # Without Redis the workers cannot coordinate: each may fetch a classic token (killing the
        # others') once per quarter lifetime, and a replayed call may meet a token killed meanwhile.
        outages = [w for w in faults if w.name.startswith("redis")]
        token_invalid = sum(
            1 for t, name, _ in errors if name == "TokenInvalidError" and not any(
                w.start <= t <= w.settle for w in outages
            )
        )  # fmt: skip

        # Token fetches: one per lifetime over the run, plus one per fault, plus the degraded
        # allowance of the outages (workers x one per quarter lifetime).
        issued = self.fake.issued_between(self.started - 1, end + 1)
        lifetimes = math.ceil(span / self.lifetime)
        processes = self.gunicorn.workers
        degraded = sum(processes * (math.ceil((w.end - w.start) * 4 / self.lifetime) + 1) for w in outages)
        allowed = lifetimes + 1 + len(faults) + degraded

        # Retry scenario: one run per message, the same reply to every post.
        retry_ok = all(runs[i] == 1 and set(v) == {"verified"} for i, v in self.retry_records.items())

        log = self.gunicorn.log.read_text(errors="replace")
        tokens_used = {r.token for r in self.fake.requests if r.token}
        leaks = [s for s in (self.fake.secret, AES_KEY, *tokens_used) if s and s in log]
        tracebacks = log.count("Traceback")
        log_lines = Counter(
            line.split("] ", 2)[-1][:100]
            for line in log.splitlines()
            if "[ERROR]" in line or "[CRITICAL]" in line or "WORKER TIMEOUT" in line
        )

        for w in self.windows:
            msgs = [r for r in results if w.start <= r["t"] <= w.settle]
            w.notes.setdefault("messages sent", len(msgs))
            w.notes["answered with the echo"] = sum(1 for r in msgs if r["outcome"] == "verified")
            w.notes["answered 'success'"] = sum(1 for r in msgs if r["outcome"] == "success")
            w.notes["lost"] = sum(1 for r in msgs if runs[r["id"]] == 0)
            w.notes["handler run twice"] = sum(1 for r in msgs if runs[r["id"]] > 1)
            w.notes["5xx"] = sum(r["e5xx"] for r in msgs)
            w.notes["no answer (retried)"] = sum(r["conn"] for r in msgs)
            why = Counter(x.split(" after ")[0] for r in msgs for x in r.get("why", ()))
            if why:
                w.notes["why unanswered"] = dict(why)
            w.notes["max latency ms"] = max((r["ms"] for r in msgs), default=0)
            w.notes["token fetches"] = self.fake.issued_between(w.start, w.settle)
            w.notes["API errors seen by handlers"] = dict(per_window[w.name])
            last = max((t for t, _, _ in errors if w.start <= t <= w.settle), default=None)
            if w.fault:
                w.notes["recovered (s after the fault ended)"] = (
                    round(max(0.0, last - w.end), 2) if last is not None else 0.0
                )
            w.checks.setdefault("no message lost", w.notes["lost"] == 0)
            w.checks["no duplicate handler run"] = w.notes["handler run twice"] == 0
            w.checks["no 5xx"] = w.notes["5xx"] == 0
            if not w.fault:
                w.checks["no API error"] = not per_window[w.name]
            if w.name.startswith("WeChat retries"):
                w.checks["one run and the same reply per retried message"] = retry_ok

        checks = {
            "no message lost (every MsgId ran its handler)": not lost,
            "no handler ran twice": not dups,
            "no 5xx to WeChat": e5xx == 0,
            "no token-invalid error reached a handler (outside a Redis outage)": token_invalid == 0,
            "no API error outside fault windows + recovery": not stray,
            f"token fetches <= lifetimes + 1 + faults + outage allowance ({allowed})": issued <= allowed,
            "no secret, AES key or token in gunicorn's output": not leaks,
            "no traceback in gunicorn's output": tracebacks == 0,
            "every window passed": all(all(w.checks.values()) for w in self.windows),
        }
        return {
            "config": f"gunicorn {self.gunicorn.kind}, {self.gunicorn.workers} workers"
            + (f" x {self.gunicorn.threads} threads" if self.gunicorn.kind == "gthread" else ""),
            "duration s": round(span, 1),
            "token lifetime s": self.lifetime,
            "messages sent (unique MsgIds)": len(sent),
            "HTTP attempts": sum(r["attempts"] for r in results),
            "replies received and verified": outcomes["verified"],
            "answered 'success' (first run's worker died)": outcomes["success"],
            "other outcomes": {k: v for k, v in outcomes.items() if k not in ("verified", "success")},
            "handler runs": sum(runs[i] for i in sent),
            "lost (no handler run)": len(lost),
            "handler ran twice": len(dups),
            "handler runs for unknown MsgIds": len(strangers),
            "latency p50 ms": _pct(latencies, 50),
            "latency p99 ms": _pct(latencies, 99),
            "token fetches": issued,
            "token lifetimes": lifetimes,
            "token fetches per lifetime": round(issued / max(1, lifetimes), 2),
            "API errors seen by handlers": dict(Counter(f"{n}({c})" for _, n, c in errors)),
            "API errors outside fault windows": dict(stray),
            "5xx": e5xx,
            "unanswered attempts (retried)": conn,
            "gunicorn errors logged": dict(log_lines),
            "windows": self.windows,
            "checks": checks,
        }


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1], 1)


def print_report(report: dict[str, Any]) -> None:
    print(f"\n== {report['config']} ==")
    for key, value in report.items():
        if key in ("config", "windows", "checks"):
            continue
        print(f"  {key}: {value}")
    print("  scenarios:")
    for w in report["windows"]:
        status = "PASS" if all(w.checks.values()) else "FAIL"
        print(f"    [{status}] {w.name} ({w.end - w.start:.1f}s + {w.settle - w.end:.1f}s recovery)")
        for key, value in w.notes.items():
            print(f"        {key}: {value}")
        for key, ok in w.checks.items():
            if not ok:
                print(f"        FAILED: {key}")
    print("  checks:")
    for key, ok in report["checks"].items():
        print(f"    [{'PASS' if ok else 'FAIL'}] {key}")


def run_config(
    kind: str, args: argparse.Namespace, fake: SoakWeChat, server: ServerProcess, tmp: Path
) -> dict:
    lt = args.lifetime
    hold, settle = (lt, lt + 2) if args.quick else (2 * lt, 2 * lt + 2)
    rig = Rig(fake, server, tmp / kind, kind=kind, workers=args.workers, threads=args.threads, lifetime=lt)
    rig.start()
    try:
        rig.start_load(args.load_procs, args.load_threads, args.rate, args.max_seconds, args.max_messages)
        rig.steady((2 if args.quick else 4) * lt, "steady state")
        rig.api_errors(hold, settle)
        rig.hang(hold, settle)
        rig.redis_outage(hold, settle)
        rig.kill_lock_holder(settle)
        rig.restart_workers(settle)
        rig.retries(10 if args.quick else 30, 1.0)
        rig.clock_jump(settle)
        rig.steady((1 if args.quick else 2) * lt, "steady state after the faults")
        results = rig.stop_load()
    finally:
        rig.stop()
    return rig.analyse(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows (about 3 minutes in all)")
    parser.add_argument("--configs", default="sync,gthread", help="gunicorn worker kinds to run")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--lifetime", type=float, default=3.0, help="token lifetime at the fake (s)")
    parser.add_argument("--load-procs", type=int, default=2)
    parser.add_argument("--load-threads", type=int, default=4, help="sender threads per load process")
    parser.add_argument("--rate", type=float, default=40.0, help="messages per second, all senders")
    parser.add_argument("--max-messages", type=int, default=20_000)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, run files)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="hard cap on each load run")
    args = parser.parse_args()

    sys.path.insert(0, str(HERE))
    reports = []
    with redis_process() as server, tempfile.TemporaryDirectory(prefix="wxmp-soak-") as tmp:
        if args.keep:
            tmp = tempfile.mkdtemp(prefix="wxmp-soak-kept-")
            print(f"work directory: {tmp}")
        for kind in args.configs.split(","):
            # A fresh WeChat per config, so each config's token figures are its own.
            with SoakWeChat(token_lifetime=args.lifetime, clock=JumpClock()) as fake:
                report = run_config(kind, args, fake, server, Path(tmp))
            print_report(report)
            reports.append(report)
    ok = all(all(r["checks"].values()) for r in reports)
    print(f"\nsoak {'PASSED' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
