"""`serve`'s change feed: every stored event is derived after its answer, in the order stored, and what fails is
retried with backoff.

With the SQLite store the feed is the store's own `changes` table and a checkpoint in the same file, so a restart
(after `kill -9` too) goes on from where the last run stopped. A cloud bucket's feed reaches the deployed
functions, not a local server: with a cloud store the keys this process stored go to an in-memory feed instead.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tavus_callbacks.pipeline import Pipeline

log = logging.getLogger("tavus_callbacks")

POLL_SECONDS = 0.05  # an idle feed is read this often
BATCH = 500  # changes derived together at most (one compare-and-swap per conversation among them)
FIRST_RETRY, LAST_RETRY = 0.5, 60.0  # seconds before a failed derive is tried again: doubling, up to the last
GIVE_UP_SECONDS = 3600.0  # a derive still failing this long after its first failure is dead-lettered (logged)


@runtime_checkable
class ChangeFeed(Protocol):
    """Objects created, in order, and how far their consumer has got (the SQLite store is one)."""

    def changes(self, after: int, limit: int) -> list[tuple[int, str]]: ...

    def checkpoint(self) -> int: ...

    def save_checkpoint(self, seq: int) -> None: ...


class MemoryFeed:
    """A change feed of the keys this process stored: for a cloud store under `serve`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[int, str]] = []
        self._last = self._done = 0

    def add(self, key: str) -> None:
        with self._lock:
            self._last += 1
            self._items.append((self._last, key))

    def changes(self, after: int, limit: int) -> list[tuple[int, str]]:
        with self._lock:
            return [item for item in self._items if item[0] > after][:limit]

    def checkpoint(self) -> int:
        return self._done

    def save_checkpoint(self, seq: int) -> None:
        with self._lock:
            self._done = max(self._done, seq)
            self._items = [item for item in self._items if item[0] > self._done]


@dataclass(slots=True)
class _Retry:
    key: str
    attempts: int
    first_failed: float
    due: float


class FeedWorker:
    """Derives what a feed holds beyond its checkpoint, on a thread of its own; the checkpoint never passes an
    event still to be retried, so a restart derives it (and what came after it: derive is idempotent) again."""

    def __init__(self, pipeline: Pipeline, feed: ChangeFeed, poll: float = POLL_SECONDS) -> None:
        self.pipeline, self.feed, self.poll = pipeline, feed, poll
        self._cursor = self._saved = feed.checkpoint()
        self._retry: dict[int, _Retry] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tavus-callbacks-feed", daemon=True)

    def start(self) -> FeedWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Derive what the feed holds now, then stop; retries still waiting stay for the next start (SQLite)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self) -> int:
        """One pass: the next changes and the retries that are due; how many changes it read."""
        rows = self.feed.changes(self._cursor, BATCH)
        if rows:
            self._derive(rows)
            self._cursor = rows[-1][0]
        now = time.monotonic()
        due = [(seq, r.key) for seq, r in self._retry.items() if r.due <= now]
        if due:
            self._derive(due)
        done = min(self._retry) - 1 if self._retry else self._cursor
        if done > self._saved:
            self.feed.save_checkpoint(done)
            self._saved = done
        return len(rows)

    @property
    def waiting(self) -> int:
        """Derives that failed and wait for their next try."""
        return len(self._retry)

    def _loop(self) -> None:
        while True:
            try:
                read = self.run_once()
            except Exception:  # the store could not be read: try again after a pause
                log.exception("the change feed could not be read; trying again")
                read = 0
            if self._stop.is_set() and read == 0:
                return
            if read == 0:
                self._stop.wait(self.poll)

    def _derive(self, rows: list[tuple[int, str]]) -> None:
        results = self.pipeline.derive_many([key for _, key in rows])
        now = time.monotonic()
        for (seq, key), result in zip(rows, results, strict=True):
            if not isinstance(result, Exception):
                self._retry.pop(seq, None)
                continue
            retry = self._retry.get(seq) or _Retry(key, 0, now, now)
            retry.attempts += 1
            retry.due = now + min(FIRST_RETRY * 2 ** (retry.attempts - 1), LAST_RETRY)
            if now - retry.first_failed > GIVE_UP_SECONDS:
                log.error("derive of %s gave up after %d attempts over %.0f s; `tavus-callbacks repair` folds it "
                          "again once the cause is fixed", key, retry.attempts, now - retry.first_failed,
                          extra={"key": key, "dead_letter": True})
                self._retry.pop(seq, None)
            else:
                self._retry[seq] = retry
