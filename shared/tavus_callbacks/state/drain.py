"""Derived work after the answer: `serve` folds and forwards stored events in the background.

A serverless function cannot work after it has answered, so there the pipeline folds in the request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger("tavus_callbacks")

LINGER_SECONDS = 0.05  # a group's first event waits this long for the others before its batch is worked on
LINGERING = 64  # groups that may be waiting out their linger at once, each on an idle thread
MAX_WAITING = 10_000  # events queued at most: beyond it, adding waits (memory stays bounded under overload)


T = TypeVar("T")


class Drain(Generic[T]):
    """Runs `work` on batches of stored events, one batch per group (a conversation) at a time.

    Events arriving while their group's batch is worked on go together into its next batch (one read and one
    compare-and-swap); `threads` groups are worked on at once. `close` finishes what is queued; what a killed
    process had queued is folded by `repair`.
    """

    def __init__(self, work: Callable[[list[T]], object], threads: int = 8,
                 max_waiting: int = MAX_WAITING, linger: float = LINGER_SECONDS) -> None:
        self.work, self.linger = work, linger
        self._pool = ThreadPoolExecutor(max_workers=threads + LINGERING, thread_name_prefix="tavus-callbacks-drain")
        self._working = threading.Semaphore(threads)
        self._lock = threading.Lock()
        self._room = threading.Semaphore(max_waiting)
        self._waiting: dict[str, list[T]] = {}  # group -> its events not yet worked on
        self._running: set[str] = set()  # groups with a batch being worked on

    def add(self, group: str, item: T) -> None:
        """Queue an event; its group's next batch takes it."""
        self._room.acquire()
        with self._lock:
            self._waiting.setdefault(group, []).append(item)
            if group in self._running:
                return
            self._running.add(group)
        self._pool.submit(self._run, group)

    def close(self) -> None:
        """Finish everything queued, then stop the threads."""
        self._pool.shutdown(wait=True)

    def _run(self, group: str) -> None:
        time.sleep(self.linger)  # a group's events arrive close together: one batch for them
        with self._working:
            while True:
                with self._lock:
                    items = self._waiting.pop(group, None)
                    if items is None:
                        self._running.discard(group)
                        return
                try:
                    self.work(items)
                except Exception:  # a bug: the events are stored all the same, `repair` folds them
                    log.exception("unexpected error in derived work of %s", group)
                finally:
                    self._room.release(len(items))
