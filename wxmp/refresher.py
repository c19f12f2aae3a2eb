"""The background refresher: the seed's TokenThread, fork-safe and stoppable.

One daemon thread per process keeps the shared token fresh ahead of expiry (whichever process
wins the lock fetches; the others find the new token on their next tick). ``os.register_at_fork``
restarts it in a forked child, so ``gunicorn --preload`` works; ``stop()`` or interpreter exit
ends it. ``run()`` runs the same loop in the foreground for ``flask wxmp refresher``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Sequence

from .token import TokenManager

__all__ = ["Refresher"]

log = logging.getLogger("wxmp.refresher")

_RUNNING: weakref.WeakSet[Refresher] = weakref.WeakSet()

# Held while a refresher does its work, and taken by the fork hooks: a fork never happens while
# a refresher thread is inside a fetch. Otherwise the child could inherit a lock that thread held
# (glibc's resolver, an import lock...) and hang forever on its first request (gunicorn --preload
# forks its workers while the master's refresher may be fetching).
_WORKING = threading.Lock()


class Refresher:
    """Keep ``managers`` fresh from a thread (``start``) or the calling thread (``run``)."""

    def __init__(self, managers: Sequence[TokenManager], *, max_sleep: float = 60.0) -> None:
        self.managers = list(managers)
        self.max_sleep = max_sleep
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Refresher {[m.kind for m in self.managers]} {state}>"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def add(self, manager: TokenManager) -> None:
        """Keep one more token fresh (the jsapi_ticket joins when JS-SDK is first used)."""
        if manager not in self.managers:
            self.managers.append(manager)
            manager.background = self.running

    def start(self) -> None:
        if self.running:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="wxmp-refresher", daemon=True)
        self._thread.start()
        for manager in self.managers:
            manager.background = True
        _RUNNING.add(self)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for manager in self.managers:
            manager.background = False
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        _RUNNING.discard(self)

    def run(self) -> None:
        """The loop: each manager's ``tick`` says how long until it needs us again."""
        log.debug("refresher started in pid %d", os.getpid())
        while not self._stop.is_set():
            delay = self.max_sleep
            with _WORKING:
                for manager in list(self.managers):
                    try:
                        delay = min(delay, manager.tick())
                    except Exception:  # never let the thread die: log and try again later
                        log.exception("%s refresher step failed", manager.kind)
                        delay = min(delay, 5.0)
            self._stop.wait(max(0.05, delay))
        log.debug("refresher stopped in pid %d", os.getpid())

    def _after_fork(self) -> None:
        # The thread did not survive the fork; the child gets its own.
        self._thread = None
        self.start()


def _before_fork() -> None:
    _WORKING.acquire()


def _after_fork_in_parent() -> None:
    _WORKING.release()


def _restart_after_fork() -> None:
    _WORKING.release()
    for refresher in list(_RUNNING):
        refresher._after_fork()


def _stop_all() -> None:
    for refresher in list(_RUNNING):
        refresher.stop(timeout=1.0)


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_restart_after_fork
)
atexit.register(_stop_all)
