"""Start throwaway ``redis-server`` / ``memcached`` processes on free loopback ports (for tests)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["ServerProcess", "free_port", "gunicorn_quiet_flags", "memcached_process", "redis_process"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn_quiet_flags() -> list[str]:
    """Extra flags for a throwaway gunicorn: version 27 opens a control socket at one fixed path in
    the home folder, which parallel test servers would fight over; turn it off."""
    import gunicorn

    return ["--no-control-socket"] if gunicorn.version_info >= (27,) else []


@dataclass
class ServerProcess:
    """A running server: ``url`` to connect, ``stop()``/``start()`` to simulate an outage."""

    name: str
    port: int
    argv: list[str]
    scheme: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        suffix = "/0" if self.scheme == "redis" else ""
        return f"{self.scheme}://127.0.0.1:{self.port}{suffix}"

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not listen on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextlib.contextmanager
def _running(server: ServerProcess) -> Iterator[ServerProcess]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def redis_process() -> Iterator[ServerProcess]:
    """A private ``redis-server`` that keeps nothing on disk."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", tmp]
        with _running(ServerProcess("redis-server", port, argv, "redis")) as server:
            yield server


@contextlib.contextmanager
def memcached_process() -> Iterator[ServerProcess]:
    """A private ``memcached``."""
    exe = shutil.which("memcached")
    if exe is None:
        raise FileNotFoundError("memcached")
    port = free_port()
    argv = [exe, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    with _running(ServerProcess("memcached", port, argv, "memcached")) as server:
        yield server
