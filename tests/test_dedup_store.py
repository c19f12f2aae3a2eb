"""Dedup stores per backend: operations per message, bounded files, keys per sender and mode, plain values."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
from cachelib import BaseCache

from wxmp import WxMP
from wxmp.cache import CacheUnavailable, SharedStore, resolve_cache
from wxmp.dedup import Deduplicator
from wxmp.dedupstore import (
    CONFLICT,
    GONE,
    PENDING,
    FileDedupStore,
    MemcachedDedupStore,
    MemoryDedupStore,
    RedisDedupStore,
)
from wxmp.messages import parse
from wxmp.middleware import Callback
from wxmp.testing.clock import FakeClock
from wxmp.testing.user import WeChatUser

NOW = 1714036504.0
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx1234567890abcdef"


def callback(store: SharedStore | None, clock: FakeClock, runs: list[str], **kw: Any) -> Callback:
    cb = Callback("tok123", store=store, clock=clock, **kw)

    @cb.on("text")
    def text(msg: Any) -> str:
        runs.append(f"{msg.from_user_name}:{msg.content}")
        return f"for {msg.from_user_name}: {msg.content}"

    @cb.on("event")
    def event(msg: Any) -> str:
        runs.append(f"{msg.event}:{msg.event_key}")
        return f"event {msg.event_key}"

    return cb


# -- the default configuration ----------------------------------------------------------------


def test_the_default_app_dedups_on_private_files_under_the_instance_folder(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        app = flask.Flask("default", instance_path=str(tmp_path / "instance"))
        app.config["WXMP_TOKEN"] = "tok123"  # nothing else: what a new user runs
        wx = WxMP(app)
        runs: list[str] = []
        wx.on("text")(lambda msg: runs.append(msg.content) or "once")
        user = WeChatUser(app, "tok123")
        assert user.send_text("hi", msg_id=77).content == "once"  # type: ignore[union-attr]
        assert user.send_text("hi", msg_id=77).content == "once"  # type: ignore[union-attr]
        assert runs == ["hi"]
    finally:
        os.umask(old)
        wx.stop()
    cb = wx.state(app).callback
    assert cb is not None and cb.dedup is not None
    store = cb.dedup.backend
    assert isinstance(store, FileDedupStore)
    root = Path(store.root)
    assert str(root).startswith(str(tmp_path / "instance"))
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    for folder in [files[0].parent, root, root.parent]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_callback_without_a_store_dedups_in_process() -> None:
    cb = Callback("tok123")
    assert cb.dedup is not None and isinstance(cb.dedup.backend, MemoryDedupStore)


# -- filesystem: one append per claim (binding included), one per reply, in a file per span ----


class Syscalls:
    """Counts the file operations the store makes in the calling thread (counting, never timing)."""

    NAMES = (
        "open",
        "write",
        "pwrite",
        "pread",
        "lseek",
        "utime",
        "listdir",
        "scandir",
        "unlink",
        "rmdir",
        "mkdir",
        "stat",
    )

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts = dict.fromkeys(self.NAMES, 0)
        self.written = 0  # bytes passed to write
        self.thread = threading.get_ident()
        for name in self.NAMES:
            real = getattr(os, name)

            def counted(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
                if threading.get_ident() == self.thread:
                    self.counts[_name] += 1
                    if _name == "write":
                        self.written += len(args[1])
                return _real(*args, **kw)

            monkeypatch.setattr(os, name, counted)

    def take(self) -> dict[str, int]:
        out = {k: v for k, v in self.counts.items() if v}
        self.counts = dict.fromkeys(self.NAMES, 0)
        return out


#: A moment in the middle of a span: the previous span's file is past its grace.
MID = 300 * (int(NOW) // 300) + 100


def file_dedup(tmp_path: Path, clock: FakeClock, **kw: Any) -> tuple[Deduplicator, FileDedupStore]:
    dedup = Deduplicator(SharedStore(resolve_cache(f"filesystem:{tmp_path}", "")), wall_clock=clock, **kw)
    backend = dedup.backend
    assert isinstance(backend, FileDedupStore)
    return dedup, backend


def another_process(backend: FileDedupStore, clock: FakeClock) -> FileDedupStore:
    """A store on the same folder and namespace: what another worker process sees (the files only)."""
    return FileDedupStore(backend.base, os.path.basename(backend.root), backend.ttl, clock=clock)


def files_under(root: str | Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def test_a_message_costs_one_append_and_its_reply_one_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(MID)
    dedup, backend = file_dedup(tmp_path, clock)
    calls = Syscalls(monkeypatch)
    assert dedup.claim("m0").run
    # This span's file and (not there) the previous one's, once per process; a listing to retire old files.
    assert calls.take() == {"open": 2, "listdir": 1, "pread": 1, "write": 1, "lseek": 1}
    dedup.record("m0", "<xml>0</xml>")
    calls.take()
    for i in range(1, 20):
        assert dedup.claim(f"m{i}").run
        # Read what others appended, append the last reply and this claim in one write, see where
        # it landed (right after what was read: nothing to read back). No rename, no lock.
        assert calls.take() == {"pread": 1, "write": 1, "lseek": 1}
        dedup.record(f"m{i}", f"<xml>{i}</xml>")
        assert calls.take() == {}  # queued for the next claim's write
    assert files_under(backend.root) == 1
    calls.take()  # the test's own walk
    assert dedup.claim("m3") == (False, False, "<xml>3</xml>")  # a retry: no write
    assert calls.take() == {"pread": 2}  # what is new, then the reply
    assert dedup.claim("m19") == (False, False, "<xml>19</xml>")  # not written yet: from memory
    assert calls.take() == {"pread": 1}
    assert backend.read("m3") == b"<xml>3</xml>" and calls.take() == {"pread": 2}
    assert backend.read("m20") is None and calls.take() == {"pread": 1}
    other = another_process(backend, clock)  # another process: reads the same file
    assert other.claim("m3", 10) == b"<xml>3</xml>"
    assert other.claim("m19", 10) == PENDING  # as if its handler were still running
    assert backend.flush()  # what the flusher thread does flush_after (50 ms) later
    assert other.read("m19") == b"<xml>19</xml>"


def test_a_claim_is_seen_at_once_by_other_processes(tmp_path: Path) -> None:
    """Another process sees a claim still running (and waits for it), then its reply."""
    clock = FakeClock(NOW)
    dedup, backend = file_dedup(tmp_path, clock)
    other = another_process(backend, clock)
    assert dedup.claim("slow").run
    assert other.claim("slow", 10) == PENDING
    assert other.read("slow") == PENDING
    other.record("slow", b"<xml>other</xml>", 300)  # not its claim: writes nothing
    assert other.flush() and other.read("slow") == PENDING
    dedup.record("slow", "<xml>slow</xml>")
    assert backend.read("slow") == b"<xml>slow</xml>"  # this process: from memory at once
    assert backend.flushed.wait(10)  # the flusher thread, flush_after (50 ms) later
    assert other.read("slow") == b"<xml>slow</xml>"
    assert another_process(backend, clock).claim("slow", 10) == b"<xml>slow</xml>"


def test_a_lapsed_claim_is_taken_over_by_one_process_only(tmp_path: Path) -> None:
    clock = FakeClock(MID)
    first = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    second = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    third = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert first.claim("k", 10) is None  # its process dies: no reply ever
    clock.advance(9.9)
    assert second.claim("k", 10) == PENDING  # still within the lease
    clock.advance(0.1)
    assert second.claim("k", 10) is None  # the lease ran out: taken over
    assert third.claim("k", 10) == PENDING  # by one process: the new lease holds
    first.record("k", b"<xml>late</xml>", 300)  # the first claimer comes back after all: first reply wins
    assert first.flush()
    second.record("k", b"<xml>second</xml>", 300)
    assert second.claim("other", 10) is None  # second's reply rides here, after first's: second agrees
    assert [p.read("k") for p in (first, second, third)] == [b"<xml>late</xml>"] * 3


def test_a_mark_outlives_the_span_it_was_made_in_and_no_more_than_the_next(tmp_path: Path) -> None:
    clock = FakeClock(300 * (int(NOW) // 300) + 299)  # the last second of a span
    store = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert store.claim("k", 10) is None
    store.record("k", b"<xml>k</xml>", 300)
    assert store.flush()
    clock.advance(300)  # the last second of the next span: still found (>= ttl after the claim)
    assert FileDedupStore(str(tmp_path), "ns", 300, clock=clock).claim("k", 10) == b"<xml>k</xml>"
    assert store.claim("k", 10) == b"<xml>k</xml>"
    clock.advance(1)  # two spans on: gone, and its file with it
    assert store.claim("k", 10) is None
    assert len(list(Path(store.root).iterdir())) == 2 and store.files() == 2


def test_the_binding_rides_in_the_claims_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plaintext push's (timestamp, nonce, signature) is bound to its body in the claim's own record."""
    clock = FakeClock(MID)
    store = FileDedupStore(str(tmp_path), "ns", 660, clock=clock)
    other = another_process(store, clock)
    assert store.claim("warm-up", 10) is None
    calls = Syscalls(monkeypatch)
    assert store.claim("m1", 10, bind=("1714036504:n1:sig1", b"<xml>real</xml>")) is None
    assert calls.take() == {"pread": 1, "write": 1, "lseek": 1}  # what a claim without a binding costs
    # The logged signature with another body and another MsgId: refused, and its claim is void.
    assert other.claim("m2", 10, bind=("1714036504:n1:sig1", b"<xml>forged</xml>")) == CONFLICT
    assert other.claim("m2", 10) is None  # m2 was never claimed by the forged push
    # The same request again (a replay of the real push): the dedup answer, no conflict.
    assert other.claim("m1", 10, bind=("1714036504:n1:sig1", b"<xml>real</xml>")) == PENDING
    assert other.bind("1714036504:n1:sig1", b"<xml>real</xml>") and not other.bind("1714036504:n1:sig1", b"x")
    assert store.bind("1714036504:n2:sig2", b"y") and not other.bind("1714036504:n2:sig2", b"z")


def test_a_plaintext_push_costs_two_appends_binding_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import urlencode

    from werkzeug.test import Client

    from wxmp.crypto import signature

    clock = FakeClock(MID)
    runs: list[str] = []
    cb = callback(SharedStore(resolve_cache(f"filesystem:{tmp_path}", "")), clock, runs)
    user = WeChatUser(cb, "tok123", clock=clock)
    user.send_text("warm-up", msg_id=1)
    calls = Syscalls(monkeypatch)
    for i in range(10):
        assert user.send_text(f"hi {i}", msg_id=100 + i) is not None
        # The last reply, this claim and its binding: one write.
        assert calls.take() == {"pread": 1, "write": 1, "lseek": 1}
    assert len(runs) == 11
    assert [p.name for p in (tmp_path / "dedup").iterdir()] == [os.path.basename(cb.dedup.backend.root)]  # type: ignore[union-attr]
    ts = str(int(clock()))
    url = "/wechat?" + urlencode({"signature": signature("tok123", ts, "n1"), "timestamp": ts, "nonce": "n1"})
    genuine = user.message_xml("text", {"Content": "genuine"}, msg_id=500)
    assert Client(cb).post(url, data=genuine).status_code == 200
    forged = user.message_xml("text", {"Content": "forged"}, msg_id=501)
    assert Client(cb).post(url, data=forged).status_code == 403  # the logged query, another body
    assert runs[-1] == "oUser:genuine" or runs[-1].endswith(":genuine")
    assert len(runs) == 12


def test_a_claim_that_loses_the_race_between_its_read_and_its_write_reads_the_winner_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process appends between this one's read and its write: its record comes first, wins."""
    clock = FakeClock(MID)
    slow = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    fast = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert slow.claim("warm-up", 10) is None and fast.claim("warm-up 2", 10) is None
    real_write = os.write
    raced: list[bool] = []

    def write(fd: int, data: bytes) -> int:
        if not raced:  # the other process gets in first, right before this write
            raced.append(True)
            assert fast.claim("k", 10, bind=("t:n:s", b"real")) is None
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    assert slow.claim("k", 10, bind=("t:n:s", b"forged")) == CONFLICT  # read back: the real body won
    assert slow.claim("k", 10) == PENDING  # and so did its claim
    monkeypatch.setattr(os, "write", real_write)
    fast.record("k", b"<xml>fast</xml>", 300)
    assert fast.flush() and slow.read("k") == b"<xml>fast</xml>"
    # A process reading the whole file at once: past the void claim, the reply after it.
    assert FileDedupStore(str(tmp_path), "ns", 300, clock=clock).read("k") == b"<xml>fast</xml>"


def test_processes_racing_for_the_same_messages_agree_on_one_winner_each(tmp_path: Path) -> None:
    """Four real processes claim the same 300 keys at once: each key is won by exactly one."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(4)
    results = ctx.Queue()

    def race(who: int) -> None:
        store = FileDedupStore(str(tmp_path), "race", 300)
        start.wait()
        won = [i for i in range(300) if store.claim(f"key-{i}", 10) is None]
        for i in won:
            store.record(f"key-{i}", f"{who}".encode(), 300)
        assert store.flush()
        results.put((who, won))

    procs = [ctx.Process(target=race, args=(who,)) for who in range(4)]
    for p in procs:
        p.start()
    wins = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    winners: dict[int, int] = {}
    for who, won in wins:
        for i in won:
            assert i not in winners, f"key-{i} won twice"
            winners[i] = who
    assert sorted(winners) == list(range(300))
    reader = FileDedupStore(str(tmp_path), "race", 300)
    assert all(reader.read(f"key-{i}") == f"{who}".encode() for i, who in winners.items())


def test_a_torn_record_is_skipped_and_the_file_stays_usable(tmp_path: Path) -> None:
    """A write cut short by a full disk leaves half a record: readers skip it by its checksum."""
    clock = FakeClock(MID)
    store = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert store.claim("before", 10) is None
    store.record("before", b"<xml>before</xml>", 300)
    assert store.flush()
    log = max(Path(store.root).iterdir(), key=lambda p: p.stat().st_size)
    whole = log.read_bytes()
    with log.open("ab") as f:
        f.write(whole[: len(whole) // 3])  # a torn claim: a header and part of a record
    later = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert later.claim("after", 10) is None  # appended after the torn bytes
    later.record("after", b"<xml>after</xml>", 300)
    assert later.flush()
    fresh = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert fresh.read("before") == b"<xml>before</xml>"
    assert fresh.read("after") == b"<xml>after</xml>"
    assert store.claim("after", 10) == b"<xml>after</xml>"


def test_a_flood_keeps_the_files_bounded_and_each_message_cheap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unique messages at 2/s of fake time for 20 TTLs: three files at most, O(1) work per message."""
    ttl = 60
    clock = FakeClock(MID)
    dedup, backend = file_dedup(tmp_path, clock, ttl=ttl)
    calls = Syscalls(monkeypatch)
    rate, n = 2, 2 * 20 * ttl
    worst: dict[str, int] = {}
    total: dict[str, int] = {}
    most_files = most_bytes = 0
    spans = set()
    for i in range(n):
        spans.add(int(clock() // backend.span))
        assert dedup.claim(f"flood-{i}").run
        dedup.record(f"flood-{i}", "success")
        for name, count in calls.take().items():
            worst[name] = max(worst.get(name, 0), count)
            total[name] = total.get(name, 0) + count
        clock.advance(1 / rate)
        if i % 10 == 0:
            sizes = [p.stat().st_size for p in Path(backend.root).iterdir()]
            most_files = max(most_files, len(sizes))
            most_bytes = max(most_bytes, sum(sizes))
            calls.take()  # the test's own look
    assert backend.span == ttl and most_files <= 3 and backend.files() <= 2
    per_message = 2 * FileDedupStore.record_size(0) + len("success")  # claim + reply
    assert most_bytes <= rate * 2 * backend.span * per_message
    # Per message one read (two while the previous file is in its grace, more at the switch); once
    # a span a new file, a listing of the few files and one deletion.
    # One write per message: its claim, with the reply before it riding along (plus, at a span's
    # switch, the replies still queued for the old file).
    assert worst["pread"] <= 4 and worst["write"] <= 2 and total["write"] <= n + len(spans)
    assert total["open"] == len(spans) + 1 and worst["listdir"] == 1 and total["listdir"] == len(spans)
    assert worst["unlink"] == 1 and total["unlink"] >= len(spans) - 3


def test_old_minute_folders_of_the_file_per_message_store_are_removed(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    store = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    old = Path(store.root) / str(int(NOW // 60) * 60 - 3600)  # a folder wxmp < 0.3 left behind
    old.mkdir()
    (old / ("a" * 40)).write_bytes(b"")
    recent = Path(store.root) / str(int(NOW // 60) * 60)  # still within two spans: kept for now
    recent.mkdir()
    assert store.claim("k", 10) is None
    assert not old.exists() and recent.exists()


def test_replies_and_pending_marks_in_files(tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    store = FileDedupStore(str(tmp_path), "ns", ttl=300, clock=clock)
    assert store.claim("k", 10) is None
    assert store.read("k") == PENDING
    long = "回复 <xml/>".encode() * 20000  # longer than one read: read back whole
    store.record("k", long, 300)
    assert store.read("k") == long
    assert store.flush()
    assert store.read("k") == long
    other = FileDedupStore(str(tmp_path), "ns", ttl=300, clock=clock)
    assert other.read("k") == long
    assert other.claim("after", 10) is None  # records after a long one are found too
    assert store.claim("after", 10) == PENDING
    assert store.claim("empty", 10) is None
    store.record("empty", b"", 300)  # an empty reply: read back empty
    assert store.flush() and other.read("empty") == b""
    # Another namespace on the same folder never sees this one's marks.
    assert FileDedupStore(str(tmp_path), "other", ttl=300, clock=clock).claim("k", 10) is None


def test_a_full_store_runs_without_dedup_rather_than_fill_the_disk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(MID)
    dedup = Deduplicator(SharedStore(resolve_cache(f"filesystem:{tmp_path}", "")), wall_clock=clock)
    claim, reply = FileDedupStore.record_size(0), FileDedupStore.record_size(1)
    full = 5 * (claim + reply)  # five claims and their one-byte replies
    dedup.backend.max_bytes = full  # type: ignore[attr-defined]
    for i in range(5):
        assert dedup.claim(f"m{i}") == (True, True, "")
        dedup.record(f"m{i}", "r")
    assert dedup.claim("m5") == (True, False, "")
    assert "without dedup" in caplog.text and f"over {full} bytes" in caplog.text
    assert max(p.stat().st_size for p in (tmp_path / "dedup").rglob("*.log")) == full


def test_a_cache_folder_that_cannot_hold_marks_runs_without_dedup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # (The tests run as root, for whom permissions are no obstacle: a file where the folder should be is.)
    (tmp_path / "dedup").write_text("not a folder")
    clock = FakeClock(NOW)
    runs: list[str] = []
    cb = callback(SharedStore(resolve_cache(f"filesystem:{tmp_path}", "")), clock, runs)
    user = WeChatUser(cb, "tok123", clock=clock)
    for _ in range(3):
        assert user.send_text("hi", msg_id=5) is not None  # answered, never a 500
    assert len(runs) == 3
    assert [r.getMessage() for r in caplog.records if r.name == "wxmp.callback"] == [
        "wxmp dedup: cache unavailable (filesystem dedup folder: Not a directory); "
        "processing messages without dedup"
    ]


# -- filesystem: what each process sees at the edges (spans, races, damaged files, failures) ----

#: The start of the span NOW falls in (ttl 300: a file per 300 s).
SPAN = 300 * (int(NOW) // 300)


def quiet(store: FileDedupStore) -> FileDedupStore:
    """Keep the flusher thread out: queued replies wait for a claim or flush()."""
    store.flush_after = 3600.0
    return store


def test_replies_queued_for_two_files_each_go_to_their_own_file_once(tmp_path: Path) -> None:
    """A claim's write carries only the replies queued for its own file; flush() writes the others."""
    clock = FakeClock(SPAN - 50)
    store = quiet(FileDedupStore(str(tmp_path), "ns", 300, clock=clock))
    other = another_process(store, clock)
    replies = {f"k{i}": f"<xml>reply {i}</xml>".encode() for i in range(6)}
    assert store.claim("k0", 60) is None and store.claim("k1", 60) is None
    clock.advance(60)  # the next span: k0 and k1 are in the previous file now
    assert store.claim("k2", 60) is None
    store.record("k1", replies["k1"], 300)  # queued for the previous file
    assert store.claim("k3", 60) is None  # this file's write: k1's reply is not in it
    store.record("k2", replies["k2"], 300)  # queued: k1 (previous file), k2 (this one)
    assert store.claim("k4", 60) is None  # carries k2 only
    assert [other.read(k) for k in ("k1", "k2")] == [PENDING, replies["k2"]]
    assert store.flush()  # k1, to its own file
    assert other.read("k1") == replies["k1"]
    store.record("k3", replies["k3"], 300)
    store.record("k0", replies["k0"], 300)  # queued: k3 (this file), k0 (the previous one)
    assert store.claim("k5", 60) is None  # carries k3 only
    assert [other.read(k) for k in ("k0", "k3")] == [PENDING, replies["k3"]]
    store.record("k4", replies["k4"], 300)  # queued: k0 (previous file), k4 (this one)
    assert store.flush()  # both, each to its own file
    assert [other.read(k) for k in ("k0", "k4")] == [replies["k0"], replies["k4"]]
    # Every record once and nothing else: the previous file 2 claims and 2 replies, this one 4 and 3.
    claim, reply = FileDedupStore.record_size(0), FileDedupStore.record_size(len(replies["k0"]))
    sizes = sorted(p.stat().st_size for p in Path(store.root).iterdir())
    assert sizes == [2 * claim + 2 * reply, 4 * claim + 3 * reply]


@pytest.mark.parametrize("stdin", ["open", "closed"])
def test_at_a_spans_switch_the_replies_queued_for_the_old_file_are_written_first(
    tmp_path: Path, stdin: str
) -> None:
    """Also when the file got descriptor 0 (a daemon started with stdin closed)."""
    saved = os.dup(0)
    try:
        if stdin == "closed":
            os.close(0)
        clock = FakeClock(SPAN - 1)
        store = quiet(FileDedupStore(str(tmp_path), "ns", 300, clock=clock))
        assert store.claim("k", 10) is None
        old = Path(store.root) / f"300-{SPAN - 300}.log"
        if stdin == "closed":
            assert os.readlink("/proc/self/fd/0") == str(old)
        store.record("k", b"<xml>k</xml>", 300)  # queued
        clock.advance(2)  # the next span
        assert store.claim("next", 10) is None  # k's reply goes to the old file first
        assert old.stat().st_size == FileDedupStore.record_size(0) + FileDedupStore.record_size(12)
        assert another_process(store, clock).read("k") == b"<xml>k</xml>"
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def test_a_file_that_leaves_every_lookup_gets_its_queued_replies_and_no_later_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(MID)
    store = quiet(FileDedupStore(str(tmp_path), "ns", 300, clock=clock))
    assert store.claim("k1", 10) is None
    store.record("k1", b"<xml>1</xml>", 300)  # queued
    calls = Syscalls(monkeypatch)
    clock.advance(600)  # two spans on: k1's file leaves every lookup and is deleted
    assert store.claim("k2", 10) is None
    # k1's reply to its file before it is closed, then this claim: nothing else.
    assert calls.take() == {"open": 2, "listdir": 1, "unlink": 1, "write": 2, "pread": 1, "lseek": 2}
    assert calls.written == FileDedupStore.record_size(12) + FileDedupStore.record_size(0)
    assert store.flush() and calls.take() == {}  # nothing is left queued
    assert store.claim("k3", 10) is None
    clock.advance(600)
    assert store.claim("k4", 10) is None  # k3's file leaves every lookup
    calls.take()
    store.record("k3", b"<xml>3</xml>", 300)  # too late: its file is gone
    assert store.flush() and calls.take() == {}


def test_the_previous_file_is_read_for_five_seconds_after_its_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process whose clock is a little behind still appends to the previous file: others read it."""
    clock = FakeClock(SPAN - 10)
    store = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    lagging = FileDedupStore(str(tmp_path), "ns", 300, clock=FakeClock(SPAN - 1))
    assert store.claim("early", 10, bind=("1714036490:n1:sig1", b"<xml>real</xml>")) is None
    clock.advance(11)  # the next span
    assert store.claim("switch", 10) is None
    assert lagging.claim("late", 10) is None  # into the previous file
    clock.advance(3.75)  # 4.75 s into the span
    calls = Syscalls(monkeypatch)
    assert store.claim("late", 10) == PENDING
    assert calls.take() == {"pread": 2}  # this file, then the previous one
    assert store.claim("fresh", 10) is None
    assert calls.take() == {"pread": 2, "write": 1, "lseek": 1}
    # The logged signature with another body, in the next span: still refused.
    assert store.claim("forged", 10, bind=("1714036490:n1:sig1", b"<xml>forged</xml>")) == CONFLICT
    clock.advance(0.25)  # 5 s: the previous file is no longer read
    calls.take()
    assert store.claim("after", 10) is None
    assert calls.take() == {"pread": 1, "write": 1, "lseek": 1}


def test_an_instant_belongs_to_the_span_that_starts_at_or_before_it_even_below_zero(tmp_path: Path) -> None:
    """The span's start is the instant rounded down; at or above zero rounding toward zero is the
    same, so a fake clock set back below zero shows the difference: -1 s is in the span from -300 s."""
    clock = FakeClock(-1.0)
    reader = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert reader.read("k") is None  # a read opens the span's file too
    store = another_process(reader, clock)
    assert store.claim("k", 10) is None and store.claim("k", 10) == PENDING
    assert os.listdir(reader.root) == ["300--300.log"]
    assert reader.read("k") == PENDING
    clock.advance(1)  # 0: the next span
    assert store.claim("k", 10) == PENDING and store.claim("next", 10) is None
    assert sorted(os.listdir(reader.root)) == ["300--300.log", "300-0.log"]


def test_a_claim_that_loses_the_race_to_an_answered_claim_gets_its_reply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(MID)
    slow = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    fast = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert slow.claim("warm-up", 10) is None and fast.claim("warm-up 2", 10) is None
    real_write = os.write

    def write(fd: int, data: bytes) -> int:  # between slow's read and its write, fast runs k to the end
        monkeypatch.setattr(os, "write", real_write)
        assert fast.claim("k", 10) is None
        fast.record("k", b"<xml>fast</xml>", 300)
        assert fast.flush()
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    assert slow.claim("k", 10) == b"<xml>fast</xml>"
    assert slow.claim("k", 10) == b"<xml>fast</xml>"


def test_a_retry_after_the_lease_gets_the_reply_still_queued_here(tmp_path: Path) -> None:
    """A handler that outlived its lease: its reply, queued, answers the retry instead of a second run."""
    clock = FakeClock(MID)
    store = quiet(FileDedupStore(str(tmp_path), "ns", 300, clock=clock))
    assert store.claim("k", 10) is None
    clock.advance(11)
    store.record("k", b"<xml>late</xml>", 300)
    assert store.claim("k", 10) == b"<xml>late</xml>"  # the reply is written with this claim, and wins
    assert another_process(store, clock).claim("k", 10) == b"<xml>late</xml>"


def test_a_retry_losing_the_race_to_a_takeover_answers_the_reply_queued_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its claim lapsed in the previous span, its reply is still queued, another process takes over."""
    clock = FakeClock(SPAN - 5)
    store = quiet(FileDedupStore(str(tmp_path), "ns", 300, clock=clock))
    other = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert store.claim("k", 10) is None
    clock.advance(11)  # the next span (past the previous file's grace), the lease over
    assert store.claim("warm-up", 10) is None and other.claim("warm-up 2", 10) is None
    store.record("k", b"<xml>k</xml>", 300)  # queued for the previous file
    real_write = os.write

    def write(fd: int, data: bytes) -> int:  # between this claim's read and its write
        monkeypatch.setattr(os, "write", real_write)
        assert other.claim("k", 10) is None
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    assert store.claim("k", 10) == b"<xml>k</xml>"


def test_a_message_run_again_in_the_next_span_has_both_replies_written_each_to_its_file(
    tmp_path: Path,
) -> None:
    """A handler outlives its lease across a span's switch; the retry claims the key anew in the new
    file and runs too. Each run's reply goes to its own claim's file, and one flush writes both."""
    clock = FakeClock(SPAN - 5)
    store = quiet(FileDedupStore(str(tmp_path), "ns", 300, clock=clock))
    assert store.claim("k", 10) is None
    clock.advance(11)  # the next span, the lease over
    assert store.claim("warm-up", 10) is None  # the switch: nothing queued yet
    store.record("k", b"<xml>first</xml>", 300)  # queued for the previous file
    assert store.claim("k", 10) is None  # its claim there lapsed: claimed anew in this file
    store.record("k", b"<xml>second</xml>", 300)  # queued for this file
    assert store.claim("k", 10) == b"<xml>second</xml>"  # from memory
    assert store.flush()
    other = another_process(store, clock)
    assert other.read("k") == b"<xml>second</xml>"  # this span's file first
    previous = FileDedupStore(str(tmp_path), "ns", 300, clock=FakeClock(SPAN - 1))
    assert previous.read("k") == b"<xml>first</xml>"  # the first run's reply, in its own file
    assert store.flush() and store.claim("k", 10) == b"<xml>second</xml>"  # nothing left queued


def test_a_reply_once_written_is_not_answered_from_memory_again(tmp_path: Path) -> None:
    clock = FakeClock(MID)
    store = quiet(FileDedupStore(str(tmp_path), "ns", 300, clock=clock))
    assert store.claim("k", 10) is None
    store.record("k", b"<xml>k</xml>", 300)
    assert store.claim("other", 10) is None  # k's reply is written with it
    clock.advance(600)  # k's mark has expired with its file: the same key is new
    assert store.claim("k", 10) is None
    assert store.claim("k", 10) == PENDING


def test_the_same_push_after_the_lease_takes_over_its_own_binding(tmp_path: Path) -> None:
    clock = FakeClock(MID)
    first = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    second = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    binding = ("1714036504:n1:sig1", b"<xml>body</xml>")
    assert first.claim("k", 10, bind=binding) is None  # its process dies
    clock.advance(10)
    assert second.claim("k", 10, bind=binding) is None  # WeChat's retry: same query and body, lease over
    # A process reading both records at once agrees: second holds the claim now.
    assert FileDedupStore(str(tmp_path), "ns", 300, clock=clock).claim("k", 10, bind=binding) == PENDING


def test_processes_taking_turns_each_pay_one_read_and_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(MID)
    a = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    b = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert a.claim("a0", 10) is None and b.claim("b0", 10) is None
    calls = Syscalls(monkeypatch)
    for i in range(1, 4):
        for store, key in ((a, f"a{i}"), (b, f"b{i}")):
            assert store.claim(key, 10) is None
            # The other's record, then this one right after it: nothing to read back.
            assert calls.take() == {"pread": 1, "write": 1, "lseek": 1}
    assert a.claim("b3", 10) == PENDING and b.claim("a3", 10) == PENDING


def test_a_record_read_while_half_written_is_applied_once_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader may see a write half done; it waits for the rest, even of a record as long as a file."""
    from wxmp import dedupstore

    monkeypatch.setattr(dedupstore, "MAX_BYTES", 4096)  # the longest payload a record may announce
    clock = FakeClock(MID)
    writer = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert writer.claim("k", 10) is None
    # Inside the reply: what looks like an empty record (a magic byte, and a size of 0 where a
    # header would have it), and a magic byte too close to the end for any header to fit.
    long = b"r" * 100 + b"\xa7" + b"r" * 81 + bytes(4) + b"r" * 3740 + b"\xa7" + b"r" * 169
    assert len(long) == 4096
    writer.record("k", long, 300)
    reader = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    real_write = os.write
    seen = []

    def write(fd: int, data: bytes) -> int:  # the reply lands in two steps; the reader looks between
        monkeypatch.setattr(os, "write", real_write)
        done = real_write(fd, data[:4096])
        seen.append(reader.read("k"))
        return done + real_write(fd, data[4096:])

    monkeypatch.setattr(os, "write", write)
    assert writer.flush()
    assert seen == [PENDING]
    assert reader.read("k") == long


def test_a_damaged_record_is_skipped_and_the_records_after_it_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(MID)
    with monkeypatch.context() as m:
        m.setattr(os, "urandom", bytes)  # claim owners from zero: the same bytes on disk every run
        store = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    for key in ("a", "b", "c"):
        assert store.claim(key, 10) is None
        store.record(key, f"<xml>{key}</xml>".encode(), 300)
    assert store.flush()
    log = next(Path(store.root).iterdir())
    data = bytearray(log.read_bytes())
    for key in ("a", "c"):  # a bit flips in a's reply (mid-file) and in c's (the last record)
        data[data.index(f"<xml>{key}</xml>".encode()) + 1] ^= 1
    log.write_bytes(bytes(data))
    fresh = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert fresh.read("b") == b"<xml>b</xml>"  # read past a's damaged reply in the same pass
    assert [fresh.read("a"), fresh.read("c")] == [PENDING, PENDING]  # their claims stand
    assert fresh.claim("d", 10) is None and store.claim("d", 10) == PENDING  # the file stays usable


@pytest.mark.parametrize("owner", [0x00, 0x80])
def test_a_stray_byte_before_a_record_hides_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: int
) -> None:
    """A write cut after its first byte: the record written after it is still found.

    Read from the stray byte, that record's owner's last byte becomes a size: under the 64 MiB a
    record may have (0x00: a claim still being written, but a whole record follows) or over it.
    """
    clock = FakeClock(MID)
    with monkeypatch.context() as m:
        m.setattr(os, "urandom", lambda n: bytes(n - 1) + bytes([owner]))
        store = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert store.claim("warm-up", 10) is None
    store.record("warm-up", b"<xml>w</xml>", 300)  # it rides in the next claim's write
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:1]))  # the disk is full
    with pytest.raises(CacheUnavailable):
        store.claim("k", 10)
    monkeypatch.setattr(os, "write", real_write)
    clock.advance(5)
    assert store.claim("k", 10) is None  # the reply, then this claim
    fresh = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert fresh.read("warm-up") == b"<xml>w</xml>" and fresh.claim("k", 10) == PENDING


def test_after_a_torn_record_the_reader_waits_for_the_write_still_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torn reply, then (with no whole record between) another process's reply being written."""
    from wxmp import dedupstore

    monkeypatch.setattr(dedupstore, "MAX_BYTES", 4096)  # the longest payload a record may announce
    clock = FakeClock(MID)
    with monkeypatch.context() as m:
        m.setattr(os, "urandom", bytes)
        torn = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
        writing = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
        reader = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert torn.claim("k", 10) is None and writing.claim("m", 10) is None
    torn.record("k", b"k" * 4096, 300)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:96]))  # the disk fills up
    assert torn.flush() is False
    writing.record("m", b"m" * 4000, 300)
    seen = []

    def write(fd: int, data: bytes) -> int:  # m's reply lands in two steps; the reader looks between
        monkeypatch.setattr(os, "write", real_write)
        done = real_write(fd, data[:4050])
        seen.append((reader.read("k"), reader.read("m")))
        return done + real_write(fd, data[4050:])

    monkeypatch.setattr(os, "write", write)
    assert writing.flush()
    assert seen == [(PENDING, PENDING)]
    assert (reader.read("k"), reader.read("m")) == (PENDING, b"m" * 4000)


#: Bytes that are no record (no magic byte first), with 4096 where a header would have its size.
NOT_A_RECORD = b"\n" * 82 + (4096).to_bytes(4, "big") + b"\n" * 10
#: The header of a 4096-byte reply whose write was cut short, then more bytes than that reply could
#: take (the test limits records to 4096 bytes), among them a magic byte that starts no record.
TORN_THEN_FOREIGN = (
    bytes([0xA7, 0x52])
    + bytes(80)
    + (4096).to_bytes(4, "big")
    + b"\n" * 3930
    + b"\xa7"
    + b"\n" * 81
    + (5000).to_bytes(4, "big")
    + b"\n" * 10
)


@pytest.mark.parametrize(
    "tail",
    [NOT_A_RECORD, NOT_A_RECORD[:86], TORN_THEN_FOREIGN],
    ids=["longer than a header", "exactly a header", "torn, then more than a record holds"],
)
def test_bytes_from_elsewhere_at_the_end_of_a_file_are_skipped_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail: bytes
) -> None:
    """Read once and passed over: the next claim lands right after them, with nothing to read back."""
    from wxmp import dedupstore

    monkeypatch.setattr(dedupstore, "MAX_BYTES", 4096)  # the longest payload a record may announce
    clock = FakeClock(MID)
    store = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    other = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert store.claim("a", 10) is None and other.claim("b", 10) is None
    with next(Path(store.root).iterdir()).open("ab") as f:
        f.write(tail)
    calls = Syscalls(monkeypatch)
    assert other.claim("c", 10) is None
    assert calls.take() == {"pread": 1, "write": 1, "lseek": 1}
    assert store.claim("c", 10) == PENDING


def test_a_file_holds_exactly_max_bytes(tmp_path: Path) -> None:
    size = 2 * FileDedupStore.record_size(0)
    store = FileDedupStore(str(tmp_path), "ns", 300, clock=FakeClock(MID), max_bytes=size)
    assert store.claim("a", 10) is None and store.claim("b", 10) is None
    with pytest.raises(CacheUnavailable) as refused:
        store.claim("c", 10)
    assert str(refused.value) == f"filesystem dedup store: a file is over {size} bytes"
    assert next(Path(store.root).iterdir()).stat().st_size == size


def test_a_record_torn_by_a_full_disk_holds_up_nothing_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer says why for five seconds; the records after the torn bytes are read at once."""
    clock = FakeClock(MID)
    with monkeypatch.context() as m:
        m.setattr(os, "urandom", bytes)
        writer = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
        reader = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert writer.claim("k", 10) is None
    writer.record("k", b"\xa7" * 1000, 300)  # every byte of it a magic byte: each read as a header
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:201]))  # the disk fills up
    with pytest.raises(CacheUnavailable) as refused:
        writer.claim("next", 10)  # k's reply and this claim: 201 of their 1180 bytes written
    assert str(refused.value) == "filesystem dedup store: short write"
    monkeypatch.setattr(os, "write", real_write)
    assert [reader.claim(f"r{i}", 10) for i in range(3)] == [None, None, None]
    clock.advance(4.75)
    with pytest.raises(CacheUnavailable) as refused:
        writer.claim("next", 10)
    assert str(refused.value) == "filesystem dedup store: short write"
    clock.advance(0.25)  # five seconds on: the writer tries again, its reply still queued
    assert writer.claim("next", 10) is None
    assert writer.claim("r0", 10) == PENDING
    assert reader.read("k") == b"\xa7" * 1000


def test_a_file_emptied_under_the_store_refuses_claims_until_the_next_span(tmp_path: Path) -> None:
    clock = FakeClock(MID)
    store = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert store.claim("a", 10) is None
    os.truncate(next(Path(store.root).iterdir()), 0)  # e.g. a clean-up script
    with pytest.raises(CacheUnavailable) as refused:
        store.claim("b", 10)
    assert str(refused.value) == "filesystem dedup store: a claim did not read back"
    clock.advance(300)
    assert store.claim("b", 10) is None  # the next span's file


def test_a_flush_that_cannot_write_says_so_and_keeps_the_reply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(MID)
    store = quiet(FileDedupStore(str(tmp_path), "ns", 300, clock=clock))
    assert store.claim("k", 10) is None
    store.record("k", b"<xml>k</xml>", 300)

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    assert store.flush() is False
    with pytest.raises(CacheUnavailable) as refused:
        store.claim("next", 10)
    assert str(refused.value) == "filesystem dedup store: No space left on device"
    monkeypatch.undo()
    clock.advance(5)
    assert store.flush() and another_process(store, clock).read("k") == b"<xml>k</xml>"


def test_refusals_name_what_failed(tmp_path: Path) -> None:
    clock = FakeClock(MID)
    (tmp_path / "dedup").write_text("not a folder")
    store = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    for _ in range(2):  # the folder could not be made: said for five seconds
        with pytest.raises(CacheUnavailable) as refused:
            store.claim("k", 10)
        assert str(refused.value) == "filesystem dedup folder: Not a directory"
        clock.advance(4.75)
    # Then the claim tries again, and fails on the file itself; a read says why as well.
    for attempt in (lambda: store.claim("k", 10), lambda: store.read("k")):
        with pytest.raises(CacheUnavailable) as refused:
            attempt()
        assert str(refused.value) == "filesystem dedup store: Not a directory"
    other = FileDedupStore(str(tmp_path / "elsewhere"), "ns", 300, clock=clock)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "dedup").mkdir()
    os.makedirs(Path(other.root) / f"300-{SPAN}.log")  # a folder where this span's file should be
    with pytest.raises(CacheUnavailable) as refused:
        other.read("k")
    assert str(refused.value) == "filesystem dedup store: Is a directory"


def test_a_cache_folder_that_is_gone_is_not_made_by_the_dedup_store(tmp_path: Path) -> None:
    """Making the cache folder (and checking who may write there) is the cache's job."""
    gone = tmp_path / "cache"
    store = FileDedupStore(str(gone), "ns", 300, clock=FakeClock(MID))
    with pytest.raises(CacheUnavailable) as refused:
        store.claim("k", 10)
    assert str(refused.value) == "filesystem dedup folder: No such file or directory"
    assert not gone.exists()


def test_a_namespace_folder_removed_under_the_store_is_made_again_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    old_umask = os.umask(0)
    try:
        clock = FakeClock(MID)
        store = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
        assert store.claim("a", 10) is None
        shutil.rmtree(store.root)  # someone cleaning up the cache folder
        modes: list[int] = []
        real_chmod = os.chmod

        def chmod(path: str, mode: int) -> None:
            modes.append(stat.S_IMODE(os.stat(path).st_mode))
            real_chmod(path, mode)

        monkeypatch.setattr(os, "chmod", chmod)
        clock.advance(300)  # the next span's file
        assert store.claim("b", 10) is None
        assert modes == [0o700]  # private from the start, not only after the chmod
        assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700
        assert [stat.S_IMODE(p.stat().st_mode) for p in Path(store.root).iterdir()] == [0o600]
        assert another_process(store, clock).claim("b", 10) == PENDING
    finally:
        os.umask(old_umask)


def test_old_minute_folders_go_two_spans_on_and_what_cannot_go_is_left(tmp_path: Path) -> None:
    store = FileDedupStore(str(tmp_path), "ns", 300, clock=FakeClock(MID))
    root = Path(store.root)
    for minute in (SPAN - 660, SPAN - 600, SPAN - 60):  # folders wxmp < 0.3 left behind
        (root / str(minute)).mkdir()
        (root / str(minute) / ("a" * 40)).write_bytes(b"")
    (root / str(SPAN - 900)).write_text("a file, not a folder")  # cannot be removed as a folder
    assert store.claim("k", 10) is None
    left = sorted(p.name for p in root.iterdir() if p.name.isdigit())
    assert left == sorted(str(m) for m in (SPAN - 900, SPAN - 600, SPAN - 60))


def test_an_old_file_another_process_deleted_first_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(MID)
    store = FileDedupStore(str(tmp_path), "ns", 300, clock=clock)
    assert store.claim("k", 10) is None
    old = Path(store.root) / f"300-{SPAN}.log"
    real_listdir = os.listdir

    def listdir(path: str) -> list[str]:  # another process deletes the old file right after this listing
        names = real_listdir(path)
        old.unlink(missing_ok=True)
        return names

    monkeypatch.setattr(os, "listdir", listdir)
    clock.advance(600)
    assert store.claim("k2", 10) is None
    assert [p.name for p in Path(store.root).iterdir()] == [f"300-{SPAN + 600}.log"]


@pytest.mark.parametrize(
    ("namespace", "folder"),
    [
        ("wxmp:wx1234567890abcdef", "wxmp_wx1234567890abcdef"),
        ("a-b_c.d/../e f\tg", "a-b_c.d_.._e_f_g"),
        ("公众号", "公众号"),
        ("", "_"),
        ("n" * 150, "n" * 100),
    ],
)
def test_a_namespace_names_its_folder(tmp_path: Path, namespace: str, folder: str) -> None:
    FileDedupStore(str(tmp_path), namespace, 300)
    assert os.listdir(tmp_path / "dedup") == [folder]


def test_a_released_claim_is_never_answered_and_its_lease_lapses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(0)  # a fake wall clock from zero works as well
    store = quiet(FileDedupStore(str(tmp_path), "ns", 300, clock=clock))
    other = another_process(store, clock)
    assert store.claim("k", 10) is None
    store.release("k")  # the handler was interrupted
    store.release("never claimed here")  # nothing to give up: no error
    calls = Syscalls(monkeypatch)
    store.record("k", b"<xml>late</xml>", 300)  # a reply after all: not written
    assert store.flush() and calls.take() == {}
    assert other.read("k") == PENDING
    clock.advance(10)
    assert other.claim("k", 10) is None


def test_any_string_is_a_key(tmp_path: Path) -> None:
    store = FileDedupStore(str(tmp_path), "ns", 300, clock=FakeClock(MID))
    for key in ("\udcff", "\udcfe", "", "回复"):  # lone surrogates too (from a badly decoded field)
        assert store.claim(key, 10) is None
        assert store.claim(key, 10) == PENDING


@pytest.mark.parametrize("kind", ["filesystem", "redis"])
def test_the_flusher_thread_is_a_named_daemon_that_ends_with_its_store(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    errors: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    store: Any
    if kind == "filesystem":
        store = FileDedupStore(str(tmp_path), "ns", 300)
    else:
        store = Deduplicator(request.getfixturevalue("redis_store")).backend
    assert store.claim("k", 10) is None
    before = set(threading.enumerate())
    store.record("k", b"<xml>k</xml>", 300)
    assert store.flushed.wait(10)
    [thread] = set(threading.enumerate()) - before
    assert thread.name == "wxmp-dedup-flusher"  # as named in a thread dump
    assert thread.daemon  # never holds up the process's exit
    del store
    gc.collect()
    thread.join(10)  # the store's collection wakes it: it ends at once
    assert not thread.is_alive() and errors == []


# -- redis: one round trip, the reply written after the response ------------------------------


def commandstats(client: Any) -> dict[str, int]:
    """Commands served since the last CONFIG RESETSTAT, without the test's own and connection set-up."""
    skip = ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_hello", "cmdstat_client|setinfo")
    return {
        name.removeprefix("cmdstat_"): int(v["calls"])
        for name, v in client.info("commandstats").items()
        if name not in skip
    }


@pytest.fixture
def redis_store(redis_url: str) -> Iterator[SharedStore]:
    yield SharedStore(resolve_cache(redis_url, ""), namespace="wxmp:wx1234567890abcdef")


def test_a_message_costs_two_redis_commands_and_one_wait(redis_url: str, redis_store: SharedStore) -> None:
    import redis

    clock = FakeClock(NOW)
    runs: list[str] = []
    cb = callback(redis_store, clock, runs)
    user = WeChatUser(cb, "tok123", clock=clock)
    user.send_text("warm up")  # connections opened, client info sent
    assert cb.dedup is not None
    backend = cb.dedup.backend
    assert isinstance(backend, RedisDedupStore) and backend.flush()
    admin = redis.Redis.from_url(redis_url)
    admin.config_resetstat()
    for i in range(10):
        user.send_text(f"m{i}", msg_id=1000 + i)
    assert backend.flush()
    # Per message: the claim (SET NX PX GET, waited for) and the reply (SET PX, sent, answer unread);
    # plaintext mode adds the binding of the signature to its body (SET NX, security finding 2),
    # which encrypted pushes do not need (their msg_signature covers the body).
    assert commandstats(admin) == {"set": 20 + 10}
    admin.config_resetstat()
    assert user.send_text("m3", msg_id=1003).content == f"for {user.openid}: m3"  # type: ignore[union-attr]
    # A retry: the claim's GET brings the reply (1 SET); the binding finds its mark (1 SET NX GET).
    assert commandstats(admin) == {"set": 1 + 1}
    assert len(runs) == 11


def test_a_message_costs_one_write_and_one_wait(
    redis_url: str, redis_store: SharedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis
    from redis.connection import AbstractConnection

    calls: list[str] = []
    for method in ("send_packed_command", "read_response"):
        real = getattr(AbstractConnection, method)

        def counted(self: Any, *args: Any, _real: Any = real, _name: str = method, **kw: Any) -> Any:
            calls.append(_name)
            return _real(self, *args, **kw)

        monkeypatch.setattr(AbstractConnection, method, counted)
    backend = Deduplicator(redis_store).backend
    assert isinstance(backend, RedisDedupStore)
    backend.flush_after = 60.0  # keep the flusher thread out of the count
    assert backend.claim("warm-up", 10) is None  # connects (HELLO, CLIENT SETINFO)
    calls.clear()
    assert backend.claim("a", 10) is None
    assert calls == ["send_packed_command", "read_response"]  # one round trip
    calls.clear()
    backend.record("a", b"<xml>a</xml>", 300)
    assert calls == []  # nothing sent, nothing waited for
    assert backend.claim("b", 10) is None
    # a's SET rides in b's write; its +OK is read before b's answer, in the same round trip.
    assert calls == ["send_packed_command", "read_response", "read_response"]
    assert redis.Redis.from_url(redis_url).get(backend._key("a")) == b"<xml>a</xml>"
    assert backend.claim("a", 10) == b"<xml>a</xml>"  # a retry: the claim's GET brings the reply


def test_a_plaintext_push_binds_its_signature_in_the_claims_round_trip(
    redis_url: str, redis_store: SharedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis
    from redis.connection import AbstractConnection

    clock = FakeClock(NOW)
    runs: list[str] = []
    cb = callback(redis_store, clock, runs)
    user = WeChatUser(cb, "tok123", clock=clock)
    user.send_text("warm up")  # connections opened, client info sent
    calls: list[str] = []
    for method in ("send_packed_command", "read_response"):
        real = getattr(AbstractConnection, method)

        def counted(self: Any, *args: Any, _real: Any = real, _name: str = method, **kw: Any) -> Any:
            calls.append(_name)
            return _real(self, *args, **kw)

        monkeypatch.setattr(AbstractConnection, method, counted)
    assert cb.dedup is not None
    backend = cb.dedup.backend
    assert isinstance(backend, RedisDedupStore)
    backend.flush_after = 60.0  # keep the flusher thread out of the count
    backend.flush()
    calls.clear()
    for i in range(5):
        assert user.send_text(f"m{i}", msg_id=2000 + i) is not None
        # One write (the last reply, the binding, the claim), then their three answers: one wait.
        expected = ["send_packed_command", "read_response", "read_response"]
        assert calls == expected + (["read_response"] if i else [])
        calls.clear()
    raw = redis.Redis.from_url(redis_url)
    marks = list(raw.scan_iter(backend.prefix + "bind:*"))
    assert len(marks) == 6  # one per push: twice the timestamp window, and 5 s
    assert all(600_000 < raw.pttl(k) <= 605_000 for k in marks)


def test_a_forged_body_on_redis_neither_runs_nor_keeps_a_claim(
    redis_url: str, redis_store: SharedStore
) -> None:
    from urllib.parse import urlencode

    from werkzeug.test import Client

    from wxmp.crypto import signature

    clock = FakeClock(NOW)
    runs: list[str] = []
    cb = callback(redis_store, clock, runs)
    other = callback(SharedStore(resolve_cache(redis_url, ""), namespace=redis_store.namespace), clock, runs)
    user = WeChatUser(cb, "tok123", clock=clock)
    ts = str(int(clock()))
    url = "/wechat?" + urlencode({"signature": signature("tok123", ts, "n9"), "timestamp": ts, "nonce": "n9"})
    assert (
        Client(cb).post(url, data=user.message_xml("text", {"Content": "real"}, msg_id=7001)).status_code
        == 200
    )
    forged = user.message_xml("text", {"Content": "forged"}, msg_id=7002)
    assert Client(other).post(url, data=forged).status_code == 403  # another worker, the logged query
    assert [r.split(":")[-1].strip() for r in runs] == ["real"]
    assert user.send_text("later", msg_id=7002) is not None  # 7002 was not left claimed by the forgery
    assert [r.split(":")[-1].strip() for r in runs] == ["real", "later"]


def test_a_reply_no_claim_takes_along_is_sent_soon(redis_url: str, redis_store: SharedStore) -> None:
    import redis

    backend = Deduplicator(redis_store).backend
    assert isinstance(backend, RedisDedupStore)
    assert backend.claim("last", 10) is None
    backend.flushed.clear()
    backend.record("last", b"<xml>last</xml>", 300)  # the last message for a while
    assert backend.flushed.wait(10)
    assert redis.Redis.from_url(redis_url).get(backend._key("last")) == b"<xml>last</xml>"


def test_a_connection_closed_while_idle_is_no_outage(
    redis_url: str, redis_store: SharedStore, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    wait = FakeClock(0)
    dedup = Deduplicator(redis_store, clock=wait, sleep=wait.sleep)
    assert dedup.claim("before").run
    dedup.record("before", "<xml>b</xml>")
    redis.Redis.from_url(redis_url).client_kill_filter(_type="normal", skipme=True)  # e.g. Redis's timeout
    assert dedup.claim("after") == (True, True, "")
    assert dedup.claim("after") == (False, False, "success")  # still deduplicating
    assert "without dedup" not in caplog.text


def test_two_accounts_on_one_redis_keep_their_marks_apart(redis_url: str) -> None:
    cache = resolve_cache(redis_url, "")
    a = Deduplicator(SharedStore(cache, namespace="wxmp:wxaaaaaaaaaaaaaaaa"))
    b = Deduplicator(SharedStore(cache, namespace="wxmp:wxbbbbbbbbbbbbbbbb"))
    assert a.claim("same").run and b.claim("same").run
    assert a.backend._key("same").startswith("wxmp:wxaaaaaaaaaaaaaaaa:dedup:")  # type: ignore[attr-defined]


def test_a_caches_key_prefix_leads_the_dedup_keys(
    redis_url: str, memcached_server: Any, memcached_store: SharedStore
) -> None:
    import redis
    from cachelib import MemcachedCache, RedisCache
    from pymemcache.client.base import Client

    from wxmp.dedupstore import digest

    server = ("127.0.0.1", memcached_server.port)
    for cache, read in [
        (
            RedisCache(host=redis.Redis.from_url(redis_url), key_prefix="app:"),
            redis.Redis.from_url(redis_url).get,
        ),
        (MemcachedCache(servers=Client(server), key_prefix="app:"), Client(server).get),
    ]:
        backend = Deduplicator(SharedStore(cache, namespace="wxmp:wx1", probe=False)).backend
        assert backend.claim("k", 10) is None
        assert read("app:wxmp:wx1:dedup:" + digest("k")) == PENDING
    # cachelib also takes a callable prefix, evaluated per call: not applied (the namespace keeps
    # accounts apart), and no reason not to start.
    cache = RedisCache(host=redis.Redis.from_url(redis_url), key_prefix=lambda: "tenant:")
    backend = Deduplicator(SharedStore(cache, namespace="wxmp:wx1", probe=False)).backend
    assert backend.claim("k", 10) is None
    assert redis.Redis.from_url(redis_url).get("wxmp:wx1:dedup:" + digest("k")) == PENDING


def test_a_redis_cache_without_a_key_prefix_attribute_still_gets_the_redis_store(redis_url: str) -> None:
    """A RedisCache subclass that sets up its clients itself (no cachelib __init__, no key_prefix)."""
    import redis
    from cachelib import RedisCache
    from cachelib.base import BaseCache

    from wxmp.dedupstore import digest, open_store

    class OwnClients(RedisCache):
        def __init__(self, client: Any) -> None:
            BaseCache.__init__(self)
            self._write_client = self._read_client = client

    cache = OwnClients(redis.Redis.from_url(redis_url))
    assert not hasattr(cache, "key_prefix")
    backend = open_store(SharedStore(cache, namespace="wxmp:wx1", probe=False), 300)
    assert isinstance(backend, RedisDedupStore)
    assert backend.claim("k", 10) is None
    assert redis.Redis.from_url(redis_url).get("wxmp:wx1:dedup:" + digest("k")) == PENDING


def test_redis_names_and_values_stay_the_same_across_processes_and_versions(
    redis_url: str, redis_store: SharedStore
) -> None:
    """A rolling deploy runs two versions side by side: both must name and fill the same keys."""
    import hashlib

    import redis

    raw = redis.Redis.from_url(redis_url)
    backend = Deduplicator(redis_store, bind_ttl=605).backend
    assert isinstance(backend, RedisDedupStore)
    prefix = "wxmp:wx1234567890abcdef:dedup:"
    mark = prefix + hashlib.sha256(b"k").hexdigest()[:40]
    bound = prefix + "bind:" + hashlib.sha256(b"1714036504:n1:sig1").hexdigest()[:40]
    assert backend.claim("k", 10) is None
    assert backend.bind("1714036504:n1:sig1", b"<xml>body</xml>")
    assert sorted(raw.keys("*")) == sorted([mark.encode(), bound.encode()])
    assert raw.get(bound) == hashlib.sha256(b"<xml>body</xml>").hexdigest()[:32].encode()
    assert backend.bind("1714036504:n1:sig1", b"<xml>body</xml>")  # the same body again
    assert not backend.bind("1714036504:n1:sig1", b"<xml>other</xml>")
    assert backend.bind("1714036504:n1:sig1", b"<xml>body</xml>")  # still bound to the first body
    assert raw.get(bound) == hashlib.sha256(b"<xml>body</xml>").hexdigest()[:32].encode()
    backend.record("k", b"<xml>k</xml>", 300)
    assert backend.flush()
    raw.config_resetstat()
    assert backend.claim("k", 10) == b"<xml>k</xml>"
    assert backend.claim("k", 10) == b"<xml>k</xml>"  # the first retry left the reply in place
    assert commandstats(raw) == {"set": 2}
    assert backend.claim("\udcff", 10) is None and backend.claim("\udcff", 10) == PENDING


def test_a_planted_pickle_is_never_unpickled(redis_url: str, redis_store: SharedStore) -> None:
    import redis

    dedup = Deduplicator(redis_store)

    class Boom:
        def __reduce__(self) -> Any:
            return (os.system, ("touch /tmp/wxmp-pwned-dedup",))

    redis.Redis.from_url(redis_url).set(dedup.backend._key("k"), pickle.dumps(Boom()))  # type: ignore[attr-defined]
    assert dedup.claim("k") == (False, False, "success")
    assert not os.path.exists("/tmp/wxmp-pwned-dedup")


class RedisProxy:
    """A TCP proxy to the test's redis-server that sees each command, one at a time.

    ``redis6``: answer ``SET ... NX ... GET`` as Redis < 7.0 does (a syntax error). ``hang_up``
    (``hang_ups``: the next n): close new connections at once. ``close()``/``reopen()``: Redis goes
    away and comes back.
    ``before(words)`` runs before a command is passed on.
    """

    def __init__(self, port: int, *, redis6: bool = False) -> None:
        self.target, self.redis6, self.hang_up, self.hang_ups = port, redis6, False, 0
        self.commands: list[tuple[str, ...]] = []
        self.accepted = 0
        self.before: Any = None
        self._sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.reopen()

    def reopen(self) -> None:
        if self.listener.fileno() < 0:
            self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # ends the accept() under way
        self.listener.close()
        self.cut()

    def cut(self) -> None:
        """Close every connection (Redis's idle timeout, a restart); new ones are accepted."""
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.hang_up or self.hang_ups:
                self.hang_ups = max(0, self.hang_ups - 1)
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._sockets += [client, upstream]
            threading.Thread(target=self._serve, args=(client, upstream), daemon=True).start()

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        down, up = client.makefile("rb"), upstream.makefile("rb")
        try:
            while (command := _resp_command(down)) is not None:
                words = tuple(arg.decode("latin-1") for arg in command)
                self.commands.append(words)
                options = {w.upper() for w in words[3:]}
                if self.redis6 and words[0].upper() == "SET" and {"NX", "GET"} <= options:
                    client.sendall(b"-ERR syntax error\r\n")
                    continue
                if self.before is not None:
                    self.before(words)
                upstream.sendall(
                    b"*%d\r\n" % len(command) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in command)
                )
                client.sendall(_resp_reply(up))
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    def sent(self, *names: str) -> list[tuple[str, ...]]:
        """The commands named ``names`` (any case), with command and option names upper-cased."""
        options = {"SET", "GET", "DEL", "NX", "PX"}
        return [
            tuple(w.upper() if w.upper() in options else w for w in c)
            for c in self.commands
            if c[0].upper() in names
        ]


def _resp_command(stream: Any) -> list[bytes] | None:
    line = stream.readline()
    if not line:
        return None
    args = []
    for _ in range(int(line[1:-2])):
        size = int(stream.readline()[1:-2])
        args.append(stream.read(size + 2)[:-2])
    return args


def _resp_reply(stream: Any) -> bytes:
    line = stream.readline()
    if not line:
        raise OSError("closed")
    kind, n = line[:1], line[1:-2]
    if kind in b"$=!":
        size = int(n)
        return line + (stream.read(size + 2) if size >= 0 else b"")
    if kind in b"*~>%|":
        count = int(n) * (2 if kind in b"%|" else 1)
        return line + b"".join(_resp_reply(stream) for _ in range(max(count, 0)))
    return line


@pytest.fixture
def proxy(redis_url: str, redis_server: Any) -> Iterator[RedisProxy]:
    made = RedisProxy(redis_server.port)
    yield made
    made.close()


def proxied(proxy: RedisProxy, **kw: Any) -> RedisDedupStore:
    backend = Deduplicator(SharedStore(resolve_cache(proxy.url, ""), namespace="wxmp:wx1"), **kw).backend
    assert isinstance(backend, RedisDedupStore)
    backend.flush_after = 3600.0  # keep the flusher thread out
    proxy.commands.clear()  # (the store's probe)
    proxy.accepted = 0
    return backend


def test_on_redis_6_a_plaintext_push_is_deduplicated_and_bound(
    proxy: RedisProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis < 7.0 refuses SET ... NX GET: claims and bindings fall back to SET NX, then GET."""
    from urllib.parse import urlencode

    from werkzeug.test import Client

    from wxmp.crypto import signature

    proxy.redis6 = True
    clock = FakeClock(NOW)
    runs: list[str] = []
    cb = callback(SharedStore(resolve_cache(proxy.url, ""), namespace="wxmp:wx1"), clock, runs)
    user = WeChatUser(cb, "tok123", clock=clock)
    first = user.send_text("hi", msg_id=7)
    again = user.send_text("hi", msg_id=7)  # WeChat's retry
    assert first is not None and again is not None and again.content == first.content  # type: ignore[attr-defined]
    assert runs == [f"{user.openid}:hi"]
    ts = str(int(clock()))
    url = "/wechat?" + urlencode({"signature": signature("tok123", ts, "n9"), "timestamp": ts, "nonce": "n9"})
    assert (
        Client(cb).post(url, data=user.message_xml("text", {"Content": "real"}, msg_id=8)).status_code == 200
    )
    forged = user.message_xml("text", {"Content": "forged"}, msg_id=9)
    assert Client(cb).post(url, data=forged).status_code == 403  # the logged query with another body
    assert len(runs) == 2
    # Refused once (the binding and the claim of the first push, in one write), never asked again.
    assert len([c for c in proxy.sent("SET") if "GET" in c]) == 2
    assert "without dedup" not in caplog.text


def test_on_redis_6_claims_and_bindings_take_two_commands(proxy: RedisProxy, redis_url: str) -> None:
    import hashlib

    import redis

    proxy.redis6 = True
    backend = proxied(proxy, bind_ttl=605)
    raw = redis.Redis.from_url(redis_url)
    a, b = backend._key("a"), backend._key("b")
    assert backend.claim("a", 10) is None  # SET NX GET refused: SET NX, which wins
    assert backend.claim("a", 10) == PENDING  # SET NX loses: GET
    backend.record("a", b"<xml>a</xml>", 300)
    assert backend.claim("a", 10) == b"<xml>a</xml>"
    raw.set(b, b"<xml>b</xml>")
    proxy.before = lambda words: words[0] == "GET" and raw.delete(b)  # b expires between SET NX and GET
    assert backend.claim("b", 10) == GONE
    proxy.before = None
    px = ("NX", "PX", "10000")
    assert proxy.sent("SET", "GET") == [
        ("SET", a, "\x00pending", *px, "GET"),
        ("SET", a, "\x00pending", *px),
        ("SET", a, "\x00pending", *px),
        ("GET", a),
        ("SET", a, "<xml>a</xml>", "PX", "300000"),
        ("SET", a, "\x00pending", *px),
        ("GET", a),
        ("SET", b, "\x00pending", *px),
        ("GET", b),
    ]
    proxy.commands.clear()
    name = backend.prefix + "bind:" + hashlib.sha256(b"1714036504:n1:sig1").hexdigest()[:40]
    body = hashlib.sha256(b"<xml>body</xml>").hexdigest()[:32]
    assert backend.bind("1714036504:n1:sig1", b"<xml>body</xml>")  # bound here
    assert backend.bind("1714036504:n1:sig1", b"<xml>body</xml>")  # bound before, to this body
    assert not backend.bind("1714036504:n1:sig1", b"<xml>other</xml>")
    other = hashlib.sha256(b"<xml>other</xml>").hexdigest()[:32]
    bind = ("SET", name, body, "NX", "PX", "605000")
    assert proxy.sent("SET", "GET") == [
        bind,
        bind,
        ("GET", name),
        (*bind[:2], other, *bind[3:]),
        ("GET", name),
    ]
    proxy.commands.clear()
    assert backend.claim("c", 10, bind=("1714036504:n1:sig1", b"<xml>forged</xml>")) == CONFLICT
    assert backend.claim("c", 10, bind=("1714036504:n2:sig2", b"<xml>c</xml>")) is None
    assert [c[0] for c in proxy.sent("SET", "GET")] == [
        "SET",
        "GET",
        "SET",
        "SET",
    ]  # the refused binding, no claim


def test_on_redis_6_a_binding_first_also_finds_out(proxy: RedisProxy) -> None:
    proxy.redis6 = True
    backend = proxied(proxy, bind_ttl=605)
    assert backend.bind("1714036504:n1:sig1", b"<xml>body</xml>")
    assert not backend.bind("1714036504:n1:sig1", b"<xml>other</xml>")
    assert backend.claim("k", 10) is None and backend.claim("k", 10) == PENDING
    # SET ... NX GET once (refused), then SET NX and GET only.
    assert [(c[0], c[-1] == "GET") for c in proxy.sent("SET", "GET")] == [
        ("SET", True),
        ("SET", False),
        ("SET", False),
        ("GET", False),
        ("SET", False),
        ("SET", False),
        ("GET", False),
    ]


def test_redis_refusing_writes_runs_messages_without_dedup_and_keeps_set_get(
    redis_url: str, redis_store: SharedStore, caplog: pytest.LogCaptureFixture
) -> None:
    """An error that is not Redis < 7.0's syntax error (here: out of memory) is an outage."""
    import redis

    admin = redis.Redis.from_url(redis_url)
    dedup = Deduplicator(redis_store, bind_ttl=605)
    backend = dedup.backend
    assert isinstance(backend, RedisDedupStore)
    assert backend.claim("k", 10) is None
    policy = admin.config_get("maxmemory-policy")["maxmemory-policy"]
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")
    try:
        for attempt in (
            lambda: backend.claim("m", 10),
            lambda: backend.claim("m", 10, bind=("1714036504:n1:sig1", b"<xml>m</xml>")),
            lambda: backend.bind("1714036504:n1:sig1", b"<xml>m</xml>"),
        ):
            with pytest.raises(CacheUnavailable) as refused:
                attempt()
            assert str(refused.value) == "redis dedup store: OutOfMemoryError"
    finally:
        admin.config_set("maxmemory", "0")
        admin.config_set("maxmemory-policy", policy)
    admin.config_resetstat()
    assert backend.claim("k", 10) == PENDING
    assert commandstats(admin) == {"set": 1}  # still SET NX GET: one command


def test_redis_going_away_is_an_outage_named_in_the_refusal(proxy: RedisProxy) -> None:
    backend = proxied(proxy)
    assert backend.claim("a", 10) is None
    proxy.close()
    # The connection in use was closed: tried once more on a new one, which is refused too.
    for attempt in (lambda: backend.claim("b", 10), lambda: backend.read("a")):
        with pytest.raises(CacheUnavailable) as refused:
            attempt()
        assert str(refused.value) == "redis dedup store: ConnectionError"


def test_a_connection_that_fails_to_close_as_well_is_still_an_outage(
    proxy: RedisProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing the broken connection may fail too: the refusal still names what failed first."""
    from redis.connection import AbstractConnection

    backend = proxied(proxy)
    assert backend.claim("a", 10) is None
    real = AbstractConnection.disconnect
    closes: list[str] = []

    def disconnect(self: Any, *args: Any) -> None:
        real(self, *args)
        if sys._getframe(1).f_globals["__name__"] == "wxmp.dedupstore":  # the store's own call only
            closes.append("failed")
            raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(AbstractConnection, "disconnect", disconnect)
    proxy.close()
    with pytest.raises(CacheUnavailable) as refused:
        backend.claim("b", 10)
    assert str(refused.value) == "redis dedup store: ConnectionError"
    backend.record("a", b"<xml>a</xml>", 300)
    assert backend.flush() is False  # could not send, and could not close cleanly either
    assert len(closes) == 3  # the two tries of the claim, then the flush


def test_a_new_connection_that_fails_is_not_tried_again(proxy: RedisProxy) -> None:
    """Only a connection that worked before and was closed while idle is worth a second try."""
    backend = proxied(proxy)
    proxy.hang_up = True
    with pytest.raises(CacheUnavailable) as refused:
        backend.claim("a", 10)
    assert str(refused.value) == "redis dedup store: ConnectionError"
    assert proxy.accepted == 1


def test_a_reply_waiting_on_a_dropped_connection_goes_out_on_the_next_one(
    proxy: RedisProxy, redis_url: str
) -> None:
    import redis

    backend = proxied(proxy)
    raw = redis.Redis.from_url(redis_url)
    assert backend.claim("a", 10) is None and backend.claim("b", 10) is None
    proxy.close()
    backend.record("x", b"<xml>x</xml>", 300)
    assert backend.flush() is False  # Redis went away: the connection is dropped
    proxy.reopen()
    assert backend.claim("c", 10) is None  # a new connection, nothing left to read on it
    proxy.close()
    backend.record("y", b"<xml>y</xml>", 300)
    assert backend.flush() is False
    proxy.reopen()
    proxy.hang_ups = 1  # the next new connection fails at once, the one after works
    backend.record("a", b"<xml>a</xml>", 300)
    assert backend.claim("d", 10) is None  # tried again on a new connection, a's reply with it
    assert raw.get(backend._key("a")) == b"<xml>a</xml>"
    assert [backend.claim(k, 10) for k in "abcd"] == [b"<xml>a</xml>", PENDING, PENDING, PENDING]
    assert proxy.accepted == 4


def test_the_flusher_survives_an_outage(proxy: RedisProxy, redis_url: str) -> None:
    import redis

    backend = proxied(proxy)
    backend.flush_after = 0.0
    assert backend.claim("a", 10) is None
    proxy.close()
    with pytest.raises(CacheUnavailable):
        backend.claim("x", 10)  # the connection is dropped
    backend.flushed.clear()
    backend.record("a", b"<xml>a</xml>", 300)
    assert backend.flushed.wait(10)  # it could not send: it says nothing and waits for the next reply
    proxy.reopen()
    assert backend.claim("b", 10) is None
    backend.flushed.clear()
    backend.record("b", b"<xml>b</xml>", 300)
    assert backend.flushed.wait(10)
    assert redis.Redis.from_url(redis_url).get(backend._key("b")) == b"<xml>b</xml>"


def test_replies_queued_on_a_connection_are_answered_in_order(
    redis_url: str, redis_store: SharedStore
) -> None:
    """Two replies queued on one connection, one sent by the flusher: each claim reads its own answer."""
    import redis

    backend = Deduplicator(redis_store).backend
    assert isinstance(backend, RedisDedupStore)
    raw = redis.Redis.from_url(redis_url)
    assert backend.claim("a", 10) is None and backend.claim("b", 10) is None
    backend.record("a", b"<xml>a</xml>", 300)
    backend.record("b", b"<xml>b</xml>", 300)  # both wait on the same connection
    assert backend.claim("c", 10) is None
    assert [raw.get(backend._key(k)) for k in "ab"] == [b"<xml>a</xml>", b"<xml>b</xml>"]
    assert backend.flushed.wait(10)  # the flusher's pass for a and b is over: it waits
    backend.flushed.clear()
    backend.record("c", b"<xml>c</xml>", 300)
    assert backend.flushed.wait(10)  # sent by the flusher; its answer is read by the next claim
    assert raw.get(backend._key("c")) == b"<xml>c</xml>"
    assert backend.claim("d", 10) is None
    backend.record("d", b"<xml>d</xml>", 300)
    assert backend.claim("e", 10) is None
    assert [backend.claim(k, 10) for k in "cde"] == [b"<xml>c</xml>", b"<xml>d</xml>", PENDING]


def exit_code_of(pid: int) -> int:
    """A forked child's exit code; a child that hangs (say, on a lock held at the fork) is killed."""
    import select
    import signal

    fd = os.pidfd_open(pid)
    try:
        if not select.select([fd], [], [], 60)[0]:  # readable when the child exits
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_forked_child_uses_connections_and_a_flusher_of_its_own(
    redis_url: str, redis_store: SharedStore
) -> None:
    import redis

    backend = Deduplicator(redis_store).backend
    assert isinstance(backend, RedisDedupStore)
    assert backend.claim("parent", 10) is None  # the parent's connection
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ok = backend.claim("child", 10) is None
            backend.flushed.clear()
            backend.record("child", b"<xml>child</xml>", 300)
            ok = ok and backend.flushed.wait(10)  # its own flusher thread
            backend.flush_after = 3600.0
            assert backend.claim("child 2", 10) is None
            backend.record("child 2", b"<xml>child 2</xml>", 300)
            ok = ok and backend.claim("child 3", 10) is None  # child 2's reply rides along
            code = 0 if ok else 1
        finally:
            os._exit(code)
    assert exit_code_of(pid) == 0
    raw = redis.Redis.from_url(redis_url)
    assert [raw.get(backend._key(k)) for k in ("child", "child 2")] == [
        b"<xml>child</xml>",
        b"<xml>child 2</xml>",
    ]
    assert backend.claim("parent", 10) == PENDING  # the parent's connection still works


def test_what_redis_is_sent_for_short_leases_and_the_default_binding(proxy: RedisProxy) -> None:
    """Expiries in whole milliseconds, never under the 1 ms Redis takes (PX 0 is an error)."""
    import hashlib

    client = resolve_cache(proxy.url, "")._write_client  # type: ignore[attr-defined]
    backend = RedisDedupStore(client, "wxmp:wx1")  # no bind_ttl: a binding lasts 1 ms
    backend.flush_after = 3600.0
    assert backend.claim("a", 0.0001, bind=("1714036504:n1:sig1", b"x")) is None
    backend.record("a", b"r", 0.0001)
    assert backend.claim("b", 9.9999) is None
    backend.record("b", b"r", 299.9999)
    assert backend.claim("c", 10) is None
    bound = backend.prefix + "bind:" + hashlib.sha256(b"1714036504:n1:sig1").hexdigest()[:40]
    a, b, c = (backend._key(k) for k in "abc")
    assert proxy.sent("SET") == [
        ("SET", bound, hashlib.sha256(b"x").hexdigest()[:32], "NX", "PX", "1", "GET"),
        ("SET", a, "\x00pending", "NX", "PX", "1", "GET"),
        ("SET", a, "r", "PX", "1"),  # a's reply rides with b's claim
        ("SET", b, "\x00pending", "NX", "PX", "9999", "GET"),
        ("SET", b, "r", "PX", "299999"),
        ("SET", c, "\x00pending", "NX", "PX", "10000", "GET"),
    ]
    proxy.commands.clear()
    assert backend.bind("1714036504:n2:sig2", b"y")
    from wxmp.dedupstore import open_store

    made = open_store(SharedStore(resolve_cache(proxy.url, ""), probe=False), 300)  # no bind_ttl either
    assert made.claim("d", 10, bind=("1714036504:n3:sig3", b"z")) is None  # type: ignore[call-arg]
    assert [c[4:6] for c in proxy.sent("SET")] == [("PX", "1"), ("PX", "1"), ("PX", "10000")]


# -- memcached: one add, any key ---------------------------------------------------------------

VIEW_URL = (
    "https://example.com/activity/spring-festival/landing?"
    + "&".join(f"utm_param{i}=value{i}" for i in range(10))
    + "&from=menu_bottom_1"
)


@pytest.fixture
def memcached_store(memcached_server: Any) -> SharedStore:
    from pymemcache.client.base import Client

    Client(("127.0.0.1", memcached_server.port)).flush_all()
    return SharedStore(resolve_cache(memcached_server.url, ""), namespace="wxmp:wx1234567890abcdef")


@pytest.mark.parametrize(
    "event, key",
    [
        ("VIEW", VIEW_URL),
        ("subscribe", "qrscene_春节活动"),
        ("CLICK", "a key with spaces"),
        ("CLICK", "tab\there"),
    ],
)
def test_real_event_keys_dedup_on_memcached(
    memcached_store: SharedStore, event: str, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(VIEW_URL) >= 211
    clock = FakeClock(NOW)
    runs: list[str] = []
    cb = callback(memcached_store, clock, runs)
    assert cb.dedup is not None and isinstance(cb.dedup.backend, MemcachedDedupStore)
    user = WeChatUser(cb, "tok123", clock=clock)
    first = user.send_event(event, EventKey=key)
    again = user.send_event(event, EventKey=key)
    assert runs == [f"{event}:{key}"]  # a retry does not run twice
    assert first is not None and again is not None and again.content == first.content  # type: ignore[attr-defined]
    assert "without dedup" not in caplog.text


def test_memcached_values_are_raw_bytes(memcached_server: Any, memcached_store: SharedStore) -> None:
    from pymemcache.client.base import Client

    dedup = Deduplicator(memcached_store)
    assert dedup.claim("k").run
    dedup.record("k", "<xml>r</xml>")  # sent without waiting for an answer
    assert dedup.backend.read("k") == b"<xml>r</xml>"  # on the same connection: after the set
    raw = Client(("127.0.0.1", memcached_server.port))
    name = dedup.backend._key("k")  # type: ignore[attr-defined]
    assert raw.get(name) == b"<xml>r</xml>"
    raw.set(name, pickle.dumps(("not", "ours")), flags=1, noreply=False)  # pickled: not ours
    assert dedup.claim("k") == (False, False, "success")


def memcached_ttl(port: int, key: str, store_it: Any) -> int:
    """The seconds memcached gives ``key`` when ``store_it()`` stores it (its clock did not tick between)."""
    from pymemcache.client.base import Client

    raw = Client(("127.0.0.1", port))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        stream = sock.makefile("rwb")
        for _ in range(10):
            before = raw.stats()[b"time"]
            store_it()
            stream.write(f"mg {key} t\r\n".encode())
            stream.flush()
            answer = stream.readline()  # b"HD t10\r\n"
            if raw.stats()[b"time"] == before:
                return int(answer.split()[1][1:])
    raise AssertionError("memcached's clock ticked during every try")


def test_memcached_expiries_are_whole_seconds_rounded_up(
    memcached_server: Any, memcached_store: SharedStore
) -> None:
    from pymemcache.client.base import Client

    backend = Deduplicator(memcached_store).backend
    assert isinstance(backend, MemcachedDedupStore)
    raw = Client(("127.0.0.1", memcached_server.port))
    name = backend._key("k")

    def claim(lease: float) -> Any:
        def again() -> None:
            raw.delete(name, noreply=False)
            assert backend.claim("k", lease) is None

        return again

    assert memcached_ttl(memcached_server.port, name, claim(9.5)) == 10
    assert memcached_ttl(memcached_server.port, name, claim(0.4)) == 1  # never 0: that is "forever"

    def record() -> None:
        backend.record("k", b"<xml>k</xml>", 299.5)
        assert backend.read("k") == b"<xml>k</xml>"  # (on the same connection: after the set)

    assert memcached_ttl(memcached_server.port, name, record) == 300


def test_a_memcached_claim_waits_for_its_answer_and_a_reply_does_not(
    memcached_store: SharedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymemcache.client import base

    backend = Deduplicator(memcached_store).backend
    assert backend.claim("warm-up", 10) is None
    lines: list[bytes] = []
    real = base._readline

    def readline(*args: Any) -> Any:
        buf, line = real(*args)
        lines.append(line)
        return buf, line

    monkeypatch.setattr(base, "_readline", readline)
    assert backend.claim("k", 10) is None
    assert lines == [b"STORED"]
    lines.clear()
    backend.record("k", b"<xml>k</xml>", 300)
    assert lines == []  # sent with noreply: nothing to wait for
    assert backend.claim("k", 10) == b"<xml>k</xml>"
    assert lines[0] == b"NOT_STORED"


def test_memcached_marks_are_ours_alone(memcached_server: Any, memcached_store: SharedStore) -> None:
    """The pending mark is raw bytes; a value stored with other flags (another client's) answers success."""
    from pymemcache.client.base import Client

    dedup = Deduplicator(memcached_store)
    raw = Client(("127.0.0.1", memcached_server.port))
    name = dedup.backend._key("k")  # type: ignore[attr-defined]
    assert dedup.backend.claim("k", 10) is None
    assert raw.get(name) == PENDING and dedup.backend.claim("k", 10) == PENDING
    raw.set(name, b"<xml>not ours</xml>", flags=2, noreply=False)
    assert dedup.claim("k") == (False, False, "success")
    assert dedup.backend.flush() is True


@pytest.mark.parametrize(
    ("namespace", "prefix"),
    [
        ("wxmp:wx1234567890abcdef", "wxmp:wx1234567890abcdef"),
        ("Any one\x01!~", "Any_one_!~"),  # memcached keys: no spaces, no control characters
        ("n" * 150, "n" * 150),
        ("n" * 151, None),  # too long: its digest
    ],
)
def test_memcached_keys_are_legal_and_short(
    memcached_server: Any, memcached_store: SharedStore, namespace: str, prefix: str | None
) -> None:
    from pymemcache.client.base import Client

    from wxmp.dedupstore import digest

    store = SharedStore(resolve_cache(memcached_server.url, ""), namespace=namespace, probe=False)
    backend = Deduplicator(store).backend
    assert backend.claim("k", 10) is None
    name = f"{prefix or digest(namespace)}:dedup:{digest('k')}"
    assert Client(("127.0.0.1", memcached_server.port)).get(name) == PENDING


def test_memcached_going_away_is_an_outage_named_in_the_refusal(memcached_store: SharedStore) -> None:
    from wxmp.testing.servers import memcached_process

    with memcached_process() as server:
        backend = Deduplicator(SharedStore(resolve_cache(server.url, ""))).backend
        assert backend.claim("k", 10) is None
        server.stop()
        refusals = []
        for attempt in (
            lambda: backend.claim("k", 10),
            lambda: backend.read("k"),
            lambda: backend.record("k", b"r", 300),
        ):
            with pytest.raises(CacheUnavailable) as refused:
                attempt()
            refusals.append(str(refused.value))
    assert refusals == [
        "memcached dedup store: MemcacheUnexpectedCloseError",  # the connection in use was closed
        "memcached dedup store: ConnectionRefusedError",
        "memcached dedup store: ConnectionRefusedError",
    ]


def test_the_memcached_client_is_pooled_raw_and_keeps_the_caches_timeouts(
    memcached_server: Any, memcached_store: SharedStore
) -> None:
    """wxmp's own memcached:// client, or the application's pymemcache client: the same servers and
    timeouts, replies on, TCP_NODELAY; one server: a pooled client, several: a hashing one."""
    from cachelib import MemcachedCache
    from pymemcache.client.base import Client, PooledClient
    from pymemcache.client.hash import HashClient

    from wxmp.dedupstore import CacheDedupStore, open_store
    from wxmp.testing.servers import memcached_process

    server = ("127.0.0.1", memcached_server.port)
    cache = resolve_cache(memcached_server.url, "")
    own = cache._client.default_kwargs  # type: ignore[attr-defined]
    for given, timeouts in [
        (cache, (own["connect_timeout"], own["timeout"])),
        (MemcachedCache(servers=Client(server, connect_timeout=1.5, timeout=2.5)), (1.5, 2.5)),
        (MemcachedCache(servers=PooledClient(server, connect_timeout=1.25, timeout=2.25)), (1.25, 2.25)),
    ]:
        backend = open_store(SharedStore(given, probe=False), 300)
        assert isinstance(backend, MemcachedDedupStore)
        client = backend.client
        assert isinstance(client, PooledClient) and client.server == server
        assert (client.connect_timeout, client.timeout) == timeouts
        assert client.no_delay and not client.default_noreply
        assert backend.claim("k", 10) is None and backend.claim("k", 10) == PENDING
        assert Client(server).delete(backend._key("k"), noreply=False)
    with memcached_process() as second:
        both = resolve_cache(f"{memcached_server.url},127.0.0.1:{second.port}", "")
        backend = open_store(SharedStore(both, probe=False), 300)
        assert isinstance(backend, MemcachedDedupStore) and isinstance(backend.client, HashClient)
        hashing = backend.client
        assert hashing.use_pooling and hashing.retry_attempts == 1 and hashing.dead_timeout == 1
        kw = hashing.default_kwargs
        assert (kw["connect_timeout"], kw["timeout"], kw["no_delay"], kw["default_noreply"]) == (
            own["connect_timeout"],
            own["timeout"],
            True,
            False,
        )
        names = [backend._key(f"k{i}") for i in range(20)]
        assert all(backend.claim(f"k{i}", 10) is None for i in range(20))
        on = [sum(Client(s).get(n) == PENDING for n in names) for s in (server, ("127.0.0.1", second.port))]
        assert sum(on) == 20 and min(on) > 0  # spread over both servers
    other = MemcachedCache(servers=SwitchedOff())  # a client wxmp cannot copy: the cache's own calls
    assert isinstance(open_store(SharedStore(other, probe=False), 300), CacheDedupStore)
    with pytest.raises(AttributeError) as refused:  # made directly, the store says why it cannot be
        MemcachedDedupStore(SwitchedOff(), "wxmp:wx1")
    assert str(refused.value) == "not a pymemcache client"


class SwitchedOff:
    """A memcached client that is not pymemcache's."""


# -- keys per sender and per mode (security finding 3) ----------------------------------------


@pytest.mark.parametrize("attacker_first", [False, True])
def test_another_users_msgid_neither_gets_the_reply_nor_suppresses_the_message(attacker_first: bool) -> None:
    clock = FakeClock(NOW)
    runs: list[str] = []
    cb = callback(None, clock, runs)
    victim = WeChatUser(cb, "tok123", clock=clock, openid="oVictim00000000000000000000")
    attacker = WeChatUser(cb, "tok123", clock=clock, openid="oAttacker000000000000000000")
    order = (
        [(attacker, "guess"), (victim, "secret")]
        if attacker_first
        else [(victim, "secret"), (attacker, "guess")]
    )
    replies = {who.openid: who.send_text(text, msg_id=24536428163871526) for who, text in order}
    assert replies[victim.openid].content == f"for {victim.openid}: secret"  # type: ignore[union-attr]
    assert replies[attacker.openid].content == f"for {attacker.openid}: guess"  # type: ignore[union-attr]
    assert sorted(runs) == sorted([f"{victim.openid}:secret", f"{attacker.openid}:guess"])


def test_a_reply_recorded_for_one_mode_is_never_answered_in_the_other() -> None:
    clock = FakeClock(NOW)
    runs: list[str] = []
    cb = callback(None, clock, runs, aes_key=AES_KEY, appid=APPID)
    user = WeChatUser(cb, "tok123", clock=clock, aes_key=AES_KEY, appid=APPID)
    msg = parse(user.message_xml("text", {"Content": "private"}, msg_id=99))
    sealed = cb.process(msg, encrypted=True)
    assert sealed == cb.process(msg, encrypted=True)  # a retry in the same mode: the same reply
    assert len(runs) == 1
    forged = parse(user.message_xml("text", {"Content": "forged"}, msg_id=99))
    assert "forged" in cb.process(forged, encrypted=False)  # run for itself, not answered "private"
    assert len(runs) == 2
    # ...and a plaintext push that came first does not suppress the genuine encrypted one.
    first = parse(user.message_xml("text", {"Content": "forged first"}, msg_id=100))
    genuine = parse(user.message_xml("text", {"Content": "genuine"}, msg_id=100))
    cb.process(first, encrypted=False)
    assert "genuine" in cb.process(genuine, encrypted=True)
    assert user.send_text("over the wire", msg_id=101).content == f"for {user.openid}: over the wire"  # type: ignore[union-attr]


# -- simple: bounded, O(1) ----------------------------------------------------------------------


def test_the_in_process_store_is_bounded_and_drops_expired_marks_as_it_goes() -> None:
    clock = FakeClock(NOW)
    store = MemoryDedupStore(clock=clock, max_entries=100)
    for i in range(1000):
        assert store.claim(f"k{i}", 10) is None
    assert len(store) == 100
    assert store.claim("k999", 10) == PENDING
    clock.advance(11)
    for i in range(60):  # each claim drops up to two expired marks: the old ones go
        store.claim(f"n{i}", 10)
    assert len(store) == 60
    store.record("n0", b"kept", 300)
    clock.advance(11)
    assert store.claim("n0", 10) == b"kept"


def test_in_process_marks_expire_at_their_instant() -> None:
    clock = FakeClock(NOW)
    store = MemoryDedupStore(clock=clock)
    assert store.claim("k", 10) is None and store.read("absent") is None
    clock.advance(9.75)
    assert store.claim("k", 10) == PENDING and store.read("k") == PENDING
    clock.advance(0.25)  # the lease's instant: over
    assert store.read("k") is None
    assert store.claim("k", 10) is None
    store.record("k", b"<xml>k</xml>", 300)
    clock.advance(299.75)
    assert store.read("k") == b"<xml>k</xml>"
    clock.advance(0.25)
    assert store.read("k") is None and store.flush() is True


def test_in_process_marks_leave_two_per_claim_from_the_instant_they_expire() -> None:
    clock = FakeClock(NOW)
    store = MemoryDedupStore(clock=clock)
    for i in range(100):
        store.claim(f"old{i}", 10)
    clock.advance(10)  # all expire now
    for i in range(10):
        store.claim(f"new{i}", 10)
    assert len(store) == 100 - 2 * 10 + 10


def test_the_in_process_store_holds_fifty_thousand_marks_by_default() -> None:
    store = MemoryDedupStore(clock=FakeClock(NOW))
    for i in range(50_001):
        store.claim(str(i), 10)
    assert len(store) == 50_000 and store.read("0") is None and store.read("1") == PENDING


class DictCache(BaseCache):
    """A cachelib cache wxmp has no fast path for, in a dict; it keeps the timeouts it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] = {}
        self.timeouts: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        self.data[key], self.timeouts[key] = value, timeout
        return True

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        return key not in self.data and self.set(key, value, timeout)

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None


def test_any_other_cache_holds_marks_through_its_own_add_get_and_set() -> None:
    import base64
    import hashlib
    import json

    from wxmp.dedupstore import CacheDedupStore

    cache = DictCache()
    shared = SharedStore(cache, probe=False)
    dedup = Deduplicator(shared)
    backend = dedup.backend
    assert isinstance(backend, CacheDedupStore)
    name = shared.key("dedup:" + hashlib.sha256(b"k").hexdigest()[:40])

    def stored(value: bytes) -> bytes:  # plain text in the cache: base64 in JSON
        return json.dumps(base64.b64encode(value).decode()).encode()

    assert backend.read("k") is None
    assert backend.claim("k", 10) is None
    assert cache.data == {name: stored(PENDING)} and cache.timeouts == {name: 11}
    assert backend.claim("k", 10) == PENDING and backend.read("k") == PENDING
    backend.record("k", b"<xml>k</xml>", 300)
    assert cache.data == {name: stored(b"<xml>k</xml>")} and cache.timeouts == {name: 301}
    assert backend.read("k") == b"<xml>k</xml>" and backend.claim("k", 10) == b"<xml>k</xml>"
    for foreign in (b"5", json.dumps("aGVsbG8=!").encode()):  # not text; not strict base64 ("hello"...)
        cache.data[name] = foreign
        assert backend.read("k") == GONE
        assert dedup.claim("k") == (False, False, "success")
    assert backend.flush() is True


def test_an_in_process_mark_past_the_two_dropped_per_claim_expires_at_its_instant() -> None:
    clock = FakeClock(NOW)
    store = MemoryDedupStore(clock=clock)
    for key in ("a", "b", "k"):
        assert store.claim(key, 10) is None
    clock.advance(10)  # all three expire now; a claim drops two, k is still there but over
    assert store.claim("k", 10) is None
