"""The local folder's journal: a batch of writes made durable by one sequential write and one `fdatasync`.

Syncing the whole file system after each batch writes every block the batch touched (each new file's
data and inode, the bitmaps, each folder it went into): ten or more separate disk writes per batch, and
on a virtual machine each one is a round trip through the hypervisor. The journal turns them into one:
every create, replace and delete also appends a record (the key and the whole new content) to a journal
file at the folder's root, and a batch written inside `LocalStore.deferred()` is durable once that file
is synced. The objects themselves are written as before and reach the disk with the kernel's writeback
or at the next checkpoint.

- Appends from every process using the folder go one at a time (`flock`) to the next free offset of
  the current journal file; the offset is shared through memory-mapped counters. The file is written
  with zeros ahead of the records (1 MiB at a time), so syncing it writes the records' blocks and no
  metadata. A record is appended after the write it stands for and under the same lock as that write
  (a replace's lock on its folder), so the journal's order is the order of the writes.
- Two files, `.journal-0` and `.journal-1`, take turns. When the current one is full (64 MiB) it is
  synced, the other one starts a new generation (its header names it; records carry theirs, and one of
  another generation ends the file), and a checkpoint (a sync of the whole file system) runs on a
  thread of its own. A file is started again only once the checkpoint that followed its last records
  has finished, so the journal always holds every write since the last finished checkpoint.
- Replay happens when a process opens the folder and finds no other process using it (a shared
  `flock` on `.journal-users`, held while a store is open): after a crash or a power loss, the first
  process to open the folder again redoes the writes of both files, the older generation first (records
  stop at the first torn one), syncs the file system and starts a new generation. The last process to
  let go of the folder (`close()`, or when it exits) syncs the file system and spends the journal, so
  after a clean stop there is nothing to redo.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import struct
import threading
import weakref
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("tavus_callbacks")

_HEADER = struct.Struct("<8sQI")  # magic, generation, crc32 of the generation
_HEADER_MAGIC = b"TAVUSJNL"
_RECORD = struct.Struct("<4sQIIBH")  # magic, generation, data length, crc32 of key + data, kind, key length
_RECORD_MAGIC = b"TJR1"
START = 4096  # records begin after the header's block
STEP = 1 << 20  # a journal file grows by this much, written with zeros
CAPACITY = 64 << 20  # a full journal file hands over to the other one

CREATE, REPLACE, DELETE = b"C", b"R", b"D"
SYNCED = b"S"  # the object was written outside the journal and synced: its earlier records are spent
# The journal's shared counters, after the group sync's three.
_GENERATION, _OFFSET, _END, _CURRENT, _CHECKPOINTED = range(3, 8)


@dataclass(frozen=True, slots=True)
class Record:
    """One write the journal holds: CREATE or REPLACE with the object's whole content, DELETE, or SYNCED."""

    kind: bytes
    key: str
    data: bytes


class GroupSync(Protocol):
    """What the journal needs of the folder's group sync (see local._GroupSync)."""

    def wait(self) -> None: ...

    def counters(self) -> ctypes.Array[ctypes.c_int64]: ...


class Journal:
    """The journal of one folder (see the module's description)."""

    def __init__(self, root: str, group: Callable[[str, str, Callable[[int], bool], int], GroupSync],
                 syncfs: Callable[[int], bool], replay: Callable[[list[Record]], None]) -> None:
        self._syncfs = syncfs
        self._lock = threading.Lock()
        self._fds: list[int] = []
        for n in (0, 1):
            self._fds.append(os.open(os.path.join(root, f".journal-{n}"), os.O_RDWR | os.O_CREAT, 0o644))
        self._sync = group(root, "journal-sync", self._fdatasync, 5)
        self._shared = self._sync.counters()
        self._checkpointing: threading.Thread | None = None
        self._users = os.open(os.path.join(root, ".journal-users"), os.O_RDWR | os.O_CREAT, 0o644)
        # When the store is let go (or the process ends): the last process out leaves a spent journal.
        self._finalizer = weakref.finalize(self, _retire, list(self._fds), self._users, self._lock, syncfs)
        try:
            fcntl.flock(self._users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # others have the folder open: the journal is theirs and ours, live
            fcntl.flock(self._users, fcntl.LOCK_SH)
            return
        try:
            with self._appending():
                self._recover(root, replay)
        finally:
            fcntl.flock(self._users, fcntl.LOCK_SH)

    def close(self) -> None:
        """Let go of the journal; the last process using the folder checkpoints it first."""
        if self._checkpointing is not None:
            self._checkpointing.join()
        self._finalizer()

    # -- writing ---------------------------------------------------------------------------------
    def append(self, kind: bytes, key: str, data: bytes = b"") -> bool:
        """Add a record (not yet synced); False when it is larger than a journal file can hold."""
        name = key.encode()
        size = _RECORD.size + len(name) + len(data)
        if START + size > CAPACITY:
            return False
        head = _RECORD.pack(_RECORD_MAGIC, 0, len(data), zlib.crc32(data, zlib.crc32(name)), kind[0], len(name))
        with self._appending():
            shared = self._shared
            if shared[_OFFSET] + size > CAPACITY:
                self._hand_over()
            offset, generation, fd = shared[_OFFSET], shared[_GENERATION], self._fds[shared[_CURRENT]]
            if offset + size > shared[_END]:
                self._grow(fd, offset + size)
            _pwrite_all(fd, head[:4] + struct.pack("<Q", generation) + head[12:] + name + data, offset)
            shared[_OFFSET] = offset + size
        return True

    def sync(self) -> None:
        """Return once every record appended before this call is on disk (one sync shared by all waiters)."""
        self._sync.wait()

    def _fdatasync(self, _counters_fd: int) -> bool:
        """Sync the current journal file (a file handed over was synced when it was)."""
        try:
            os.fdatasync(self._fds[self._shared[_CURRENT]])
        except OSError:
            return False
        return True

    def _appending(self) -> _Appending:
        """Appends take turns: threads of this process, then processes (an exclusive `flock`)."""
        return _Appending(self._lock, self._fds[0])

    def _hand_over(self) -> None:
        """The current file is full: sync it, start the other one afresh, checkpoint in the background."""
        shared = self._shared
        full, other, generation = shared[_CURRENT], 1 - shared[_CURRENT], shared[_GENERATION]
        if shared[_CHECKPOINTED] < generation - 1:  # the other file's records are not yet spent
            self._checkpoint(generation)
        os.fdatasync(self._fds[full])
        self._start(other, generation + 1)
        thread = threading.Thread(target=self._checkpoint_in_background, args=(generation,),
                                  name="tavus-callbacks-checkpoint", daemon=True)
        self._checkpointing = thread
        thread.start()

    def _checkpoint_in_background(self, generation: int) -> None:
        try:
            if self._syncfs(self._fds[0]):
                with self._appending():
                    self._shared[_CHECKPOINTED] = max(self._shared[_CHECKPOINTED], generation)
        except OSError:  # the next hand-over checkpoints in the foreground
            log.warning("a checkpoint of the local folder's journal failed; the next one retries", exc_info=True)

    def _checkpoint(self, generation: int) -> None:
        """Everything written so far onto the disk: every record of `generation` and before is spent."""
        if not self._syncfs(self._fds[0]):
            raise OSError(errno.EIO, "syncing the store's file system failed")
        self._shared[_CHECKPOINTED] = max(self._shared[_CHECKPOINTED], generation)

    def _start(self, index: int, generation: int) -> None:
        """Make file `index` the current one, empty, of a new generation (its header synced)."""
        fd = self._fds[index]
        _pwrite_all(fd, _HEADER.pack(_HEADER_MAGIC, generation, _crc(generation)), 0)
        os.fsync(fd)
        shared = self._shared
        shared[_CURRENT], shared[_GENERATION], shared[_OFFSET] = index, generation, START
        shared[_END] = max(os.fstat(fd).st_size, START)

    def _grow(self, fd: int, needed: int) -> None:
        """Write zeros up to past `needed`, so that appending a record changes no metadata to sync."""
        end = self._shared[_END]
        new_end = min(CAPACITY, -(-needed // STEP) * STEP)
        zeros = bytes(min(STEP, new_end - end))
        for offset in range(end, new_end, len(zeros)):
            _pwrite_all(fd, zeros[:new_end - offset], offset)
        os.fsync(fd)
        self._shared[_END] = new_end

    # -- recovery ----------------------------------------------------------------------------------
    def _recover(self, root: str, replay: Callable[[list[Record]], None]) -> None:
        """The folder's only user: redo what the journal holds, make it durable, start a new generation."""
        generations = [self._generation(fd) for fd in self._fds]
        records = [r for _, fd in sorted(zip(generations, self._fds, strict=True)) for r in self._records(fd)]
        if records:
            log.warning("finishing %d writes from the journal of %s: the folder was not closed cleanly",
                        len(records), root)
            replay(records)
        newest = max(generations)
        self._checkpoint(newest)
        self._shared[_CHECKPOINTED] = newest
        _forget(self._fds[1])  # its records, now spent, are never replayed
        self._start(0, newest + 1)

    def _generation(self, fd: int) -> int:
        raw = os.pread(fd, _HEADER.size, 0)
        if len(raw) == _HEADER.size:
            magic, generation, crc = _HEADER.unpack(raw)
            if magic == _HEADER_MAGIC and crc == _crc(generation):
                return int(generation)
        return 0

    def _records(self, fd: int) -> Iterator[Record]:
        """The file's records of its generation from the start, up to the first torn one or of another."""
        generation = self._generation(fd)
        offset, end = START, os.fstat(fd).st_size
        while generation and offset + _RECORD.size <= end:
            magic, gen, length, crc, kind, key_length = _RECORD.unpack(os.pread(fd, _RECORD.size, offset))
            if magic != _RECORD_MAGIC or gen != generation:
                return
            body = os.pread(fd, key_length + length, offset + _RECORD.size)
            if len(body) != key_length + length or zlib.crc32(body) != crc:
                return
            try:
                key = body[:key_length].decode()
            except UnicodeDecodeError:
                return
            yield Record(bytes([kind]), key, body[key_length:])
            offset += _RECORD.size + key_length + length


class _Appending:
    __slots__ = ("fd", "lock")

    def __init__(self, lock: threading.Lock, fd: int) -> None:
        self.lock, self.fd = lock, fd

    def __enter__(self) -> None:
        self.lock.acquire()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.lock.release()


def _retire(fds: list[int], users: int, lock: threading.Lock, syncfs: Callable[[int], bool]) -> None:
    """Close the journal's files; the folder's last user first makes everything durable and spends the
    journal, so that the next process to open the folder has nothing to redo."""
    try:
        # Let go first, then try to be alone: of processes leaving together, one always is.
        fcntl.flock(users, fcntl.LOCK_UN)
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # others still use the folder: the journal is theirs
        with _Appending(lock, fds[0]):
            if syncfs(fds[0]):
                for fd in fds:
                    _forget(fd)
    except OSError:  # a journal that is not spent is replayed by the next process: nothing is lost
        log.warning("could not checkpoint the local folder's journal on close", exc_info=True)
    finally:
        for fd in (*fds, users):
            with contextlib.suppress(OSError):
                os.close(fd)


def _forget(fd: int) -> None:
    """Make a journal file's records unreadable: its header names no generation."""
    _pwrite_all(fd, bytes(_HEADER.size), 0)
    os.fsync(fd)


def _crc(generation: int) -> int:
    return zlib.crc32(struct.pack("<Q", generation))


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
