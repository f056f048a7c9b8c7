"""The embedded store: one SQLite file (`sqlite:///tavus.db`), one table of objects keyed like the bucket.

Create-only is `INSERT ... ON CONFLICT DO NOTHING`, compare-and-swap is `UPDATE ... WHERE version = ?`; WAL with
`synchronous=FULL`, so a write returns once it is on disk. Concurrent writes of one process share a transaction.
Every object created is also appended to `changes` (by a trigger, in the same transaction): the change feed `serve`
derives from, in the order of creation, up to a checkpoint kept in the same file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tavus_callbacks.errors import ConfigError, PreconditionFailed, StoreUnavailable
from tavus_callbacks.stores.base import Blob, ObjectInfo

if TYPE_CHECKING:
    from tavus_callbacks.events.recording import RecordingLocation

SCHEMA = """CREATE TABLE IF NOT EXISTS objects (
    key          TEXT PRIMARY KEY NOT NULL,  -- the object's name in the bucket layout, e.g. c123/conversation.json
    body         BLOB NOT NULL,              -- its bytes
    content_type TEXT NOT NULL,
    version      TEXT NOT NULL               -- changes on every write; what a compare-and-swap must match
)"""
# The change feed: what was created, in order (SQLite's own AUTOINCREMENT), and how far its consumer has got.
FEED_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS object_created AFTER INSERT ON objects "
    "BEGIN INSERT INTO changes (key) VALUES (NEW.key); END",
    "CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL)",
)
_CREATE = "INSERT INTO objects (key, body, content_type, version) VALUES (?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
_REPLACE = "UPDATE objects SET body = ?, content_type = ?, version = ? WHERE key = ? AND version = ?"
_DELETE = "DELETE FROM objects WHERE key = ?"
_MAX_GROUP = 256  # writes committed together at most
_PAGE = 1000  # keys listed per query
_LOCK_WAIT = 0.0005  # seconds between tries for the write lock that another process holds


@dataclass(eq=False, slots=True)
class _Write:
    """One statement waiting for the transaction that commits it."""

    sql: str
    params: tuple[Any, ...]
    ready: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    changed: int = 0
    error: StoreUnavailable | None = None


class SQLiteStore:
    """A SQLite file holding every object; safe for many threads and many processes at once."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = 10.0, *, create: bool = True,
                 read_only: bool = False) -> None:
        """Open the file, creating it and its table unless `create` is False; `read_only` opens it with
        SQLite's `mode=ro`, so nothing can be written through this store."""
        self.path = Path(path).absolute()
        self.url = f"sqlite:///{self.path}"
        self.timeout = timeout
        self._mode = "ro" if read_only else "rwc" if create else "rw"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._queue: list[_Write] = []
        self._committing = False
        self._write_conn: sqlite3.Connection | None = None
        self._write_pid = 0
        if self._mode != "rwc" and not self.path.is_file():
            raise ConfigError(f"no such store: {self.path}; check the path (sqlite:///relative.db is relative to "
                              "the working directory, sqlite:////absolute/path.db is absolute), or run "
                              "`tavus-callbacks serve` once to create it")
        try:
            if self._mode == "rwc":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            if self._mode == "rwc":
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(SCHEMA)
                for statement in FEED_SCHEMA:
                    conn.execute(statement)
            elif conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'objects'").fetchone() \
                    is None:
                raise ConfigError(f"{self.path} is a SQLite file but not a store of this package (it has no "
                                  "`objects` table): check --store / TAVUS_STORE_URL")
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_NOTADB:
                raise ConfigError(f"{self.path} is not a SQLite file: check --store / TAVUS_STORE_URL") from None
            raise self._unavailable("open", exc) from exc
        except OSError as exc:
            raise self._unavailable("open", exc) from exc

    @classmethod
    def from_url(cls, url: str, *, create: bool = True, read_only: bool = False) -> tuple[SQLiteStore, str]:
        """`sqlite:///relative.db` or `sqlite:////absolute/path.db`; a SQLite store has no key prefix."""
        parts = urlsplit(url)
        path = parts.path[1:]
        if parts.scheme.lower() == "sqlite" and not parts.netloc and parts.path and not parts.path.startswith("/"):
            raise ConfigError(f"TAVUS_STORE_URL {url!r} lacks the slashes of a SQLite file URL: use "
                              f"sqlite:///{parts.path} (relative to the working directory) or "
                              "sqlite:////absolute/path/tavus.db")
        if parts.scheme.lower() != "sqlite" or parts.netloc or not path or path == ":memory:" or parts.query:
            raise ConfigError(f"TAVUS_STORE_URL {url!r} is not a SQLite file URL: use sqlite:///tavus.db "
                              "(relative to the working directory) or sqlite:////absolute/path/tavus.db")
        return cls(path, create=create, read_only=read_only), ""

    def create(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        return self._write(_CREATE, (key, data, content_type, _new_version())) == 1

    def read(self, key: str) -> Blob | None:
        rows = self._query("SELECT body, version FROM objects WHERE key = ?", (key,))
        return Blob(bytes(rows[0][0]), rows[0][1]) if rows else None

    def replace(self, key: str, data: bytes, version: str | None, content_type: str = "application/json") -> str:
        new = _new_version()
        if version is None:
            changed = self._write(_CREATE, (key, data, content_type, new))
        else:
            changed = self._write(_REPLACE, (data, content_type, new, key, version))
        if changed != 1:
            raise PreconditionFailed(f"{key} changed since it was read")
        return new

    def stat(self, key: str) -> ObjectInfo | None:
        rows = self._query("SELECT length(body), version, content_type FROM objects WHERE key = ?", (key,))
        return ObjectInfo(key, rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def iter_keys(self, prefix: str) -> Iterator[str]:
        """Keys in the byte order of their UTF-8 text (SQLite's), which is the lexical order of the strings; each
        page a range of the primary key bounded on both sides, so a listing reads only the keys under `prefix`."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else None
        upper, after = ("AND key < ? ", (end,)) if end is not None else ("", ())
        start, bound = ">=", prefix
        while True:
            rows = self._query(f"SELECT key FROM objects WHERE key {start} ? {upper}ORDER BY key LIMIT ?",
                               (bound, *after, _PAGE))
            yield from (key for (key,) in rows)
            if len(rows) < _PAGE:
                return
            start, bound = ">", rows[-1][0]

    def delete(self, key: str) -> None:
        self._write(_DELETE, (key,))

    def locate(self, location: RecordingLocation) -> str | None:
        return None  # recordings live in a cloud bucket, never in this file

    def changes(self, after: int, limit: int = _PAGE) -> list[tuple[int, str]]:
        """(sequence number, key) of the objects created after `after`, oldest first."""
        return [(seq, key) for seq, key in
                self._query("SELECT seq, key FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))]

    def checkpoint(self, name: str = "derive") -> int:
        """How far the feed's consumer `name` has got: every change up to it is done."""
        rows = self._query("SELECT seq FROM checkpoints WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def save_checkpoint(self, seq: int, name: str = "derive") -> None:
        """Record that every change up to `seq` is done, and forget those changes (the feed stays short)."""
        self._write("INSERT INTO checkpoints (name, seq) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET seq = "
                    "excluded.seq WHERE excluded.seq > checkpoints.seq", (name, seq))
        self._write("DELETE FROM changes WHERE seq <= (SELECT min(seq) FROM checkpoints)", ())

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection for reads (one per thread: a connection is not shared between threads)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = self._connect(self.timeout)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _writer(self) -> sqlite3.Connection:
        """The process's connection for writes, used by one committing thread at a time; `_begin` waits."""
        if self._write_conn is None or self._write_pid != os.getpid():
            self._write_conn, self._write_pid = self._connect(0), os.getpid()
        return self._write_conn

    def _drop_writer(self) -> None:
        conn, self._write_conn = self._write_conn, None
        if conn is not None and self._write_pid == os.getpid():  # never one inherited through a fork
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _connect(self, timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(f"{self.path.as_uri()}?mode={self._mode}", timeout=timeout, isolation_level=None,
                               check_same_thread=False, uri=True)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._unavailable("read", exc) from exc

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        """Run one statement in the next transaction; the rows it changed, once that transaction is durable.

        The first writer to arrive commits for those queued behind it; the first of those arriving meanwhile
        commits the next transaction.
        """
        write = _Write(sql, params)
        with self._lock:
            self._queue.append(write)
            lead = not self._committing
            self._committing = True
        if not lead:
            write.ready.wait()
        if not write.done:
            self._commit_queued()
        if write.error is not None:
            raise write.error
        return write.changed

    def _commit_queued(self) -> None:
        with self._lock:
            group, self._queue = self._queue[:_MAX_GROUP], self._queue[_MAX_GROUP:]
        try:
            conn = self._writer()
            self._begin(conn)
            try:
                for write in group:
                    write.changed = conn.execute(write.sql, write.params).rowcount
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            failure = self._unavailable("write", exc)
            for write in group:
                write.error = failure
            # The connection may be what fails (one opened while the file was read-only stays read-only): the
            # next write opens a new one, so the store recovers as soon as the file does.
            self._drop_writer()
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].ready.set()  # it commits the next group
                else:
                    self._committing = False
            for write in group:
                write.done = True
                write.ready.set()

    def _begin(self, conn: sqlite3.Connection) -> None:
        """Take the write lock, waiting for another process's transaction in short steps (SQLite's own busy
        wait sleeps up to 100 ms, far longer than a transaction holds the lock)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(_LOCK_WAIT)

    def _unavailable(self, op: str, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"SQLite store could not {op} {self.path}: {exc}; check that the file's folder "
                                "is writable and has space, then retry")


def _new_version() -> str:
    return secrets.token_hex(8)
