"""The local folder store: create-only by hard link, atomic replace by exchange, synced before success.

A new object is written into a file with no name (Linux `O_TMPFILE`; elsewhere a hidden temporary
file) and linked under its name, which fails if the name exists: readers never see it half written.

Compare-and-swap holds across threads and processes: a replace takes an exclusive `flock` on the
object's folder, checks the version (a hash of the content), writes the new content into a hidden spare
file beside the object and exchanges the two names in one step (Linux `renameat2(RENAME_EXCHANGE)`;
elsewhere a rename over the object). The spare then holds the previous content; the next replace
releases its blocks (punches a hole) and writes into it again, so a state file updated a thousand times
reuses two files instead of creating and deleting a thousand: on ext4 without a journal every
allocation skips the inodes deleted in the last minutes one by one, which made allocating a new event's
file cost more than storing it.
Reads take a shared `flock` on the folder, so a spare is never rewritten under one.

Durability is a group commit: every write is followed by a wait for a sync that began after it, and
concurrent writers (threads of any process) share one sync instead of each paying for its own `fsync`
of the file and of its folder. A write on its own waits for a `syncfs` of the file system (Linux;
elsewhere each file and folder is fsynced). Inside `deferred()` a thread's writes are not synced one by
one: every write is also recorded in the folder's journal (see `journal.py`), and one `fdatasync` of
the journal afterwards makes all of them durable, before anything they stored may be acknowledged; the
first process to open the folder after a crash redoes what the journal holds. Without a journal, a
crash before the sync can leave an object named but cut short: the next create-only write of the same
object rewrites it, and a state file the conversation fold cannot read is rebuilt from the events.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import itertools
import logging
import mimetypes
import mmap
import os
import re
import secrets
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import orjson

from ..errors import PreconditionFailed, StoreError, StoreUnavailable
from .base import Blob, ObjectInfo
from .journal import CREATE, DELETE, REPLACE, SYNCED, Journal, Record

if TYPE_CHECKING:
    from ..recording import RecordingLocation

log = logging.getLogger("tavus_callbacks")

_HIDDEN = "."  # temporary, spare and sync files start with a dot and are never listed


def _version(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# Unnamed files need /proc to be given a name (linkat of /proc/self/fd/N), and durability relies on syncfs.
_UNNAMED = (os.O_TMPFILE | os.O_WRONLY) if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd") else 0
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.cache
def _libc(name: str) -> Any | None:
    """A libc function, looked up on first use (the running program's own symbols hold libc on Linux);
    None where there is none (glibc before 2.28 has no renameat2, other systems no syncfs or fallocate)."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name, None)
    except OSError:
        return None


def _syncfs() -> Any | None:
    return _libc("syncfs")


_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP)


def _call(name: str, *args: Any) -> bool:
    """Call a libc function; False where it does not exist or the file system does not support it."""
    function = _libc(name)
    if function is None:
        return False
    if function(*args) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code))


def _exchange(a: str, b: str) -> bool:
    """Swap the names `a` and `b` in one step; False where the system or the file system cannot."""
    return _call("renameat2", _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)


_PUNCH_HOLE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


def _punch_hole(fd: int, size: int) -> bool:
    """Release the blocks of the first `size` bytes of `fd`, keeping its size; False where that is not possible."""
    return _call("fallocate", fd, _PUNCH_HOLE, ctypes.c_int64(0), ctypes.c_int64(size))


class _GroupSync:
    """Many writers, one sync: each waits for a sync that started after its own writes (group commit).

    The writers may be threads of any process using the same folder: counters in a small shared file
    (memory-mapped) say how many syncs have started and finished and which one last failed, and an
    exclusive `flock` on it lets one sync run at a time. A writer whose writes a sync begun after them
    has covered returns at once. The counters are aligned 64-bit integers read and written whole, so a
    writer may read how many syncs have started without taking the lock. `sync` is what one sync does
    (syncfs of the folder's file system, or fdatasync of its journal); `extra` counters after the three
    are the caller's, shared the same way.
    """

    _STARTED, _DONE, _FAILED = range(3)

    def __init__(self, root: str, name: str = "sync", sync: Callable[[int], bool] | None = None,
                 extra: int = 0) -> None:
        self._path = os.path.join(root, f"{_HIDDEN}{name}")
        self._do_sync = sync or _syncfs_ok
        self._slots = 3 + extra
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._counters: ctypes.Array[ctypes.c_int64] | None = None

    def wait(self, *paths: str) -> None:
        """Return once everything written before this call is on disk; `paths` are synced where syncfs is not."""
        if _syncfs() is None:
            for path in dict.fromkeys(paths):
                _fsync(path)
            return
        counters = self.counters()
        target = counters[self._STARTED] + 1  # a sync running now may have begun before our writes
        with self._lock:  # a thread of this process at a time, then a process at a time
            assert self._fd is not None
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if counters[self._DONE] < target:
                    number = counters[self._STARTED] + 1
                    counters[self._STARTED] = number
                    if not self._do_sync(self._fd):
                        counters[self._FAILED] = number
                    counters[self._DONE] = number
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        if counters[self._FAILED] >= target:
            raise OSError(errno.EIO, "syncing the store's file system failed")

    def counters(self) -> ctypes.Array[ctypes.c_int64]:
        if self._counters is None:
            with self._lock:
                if self._counters is None:
                    size = ctypes.sizeof(ctypes.c_int64) * self._slots
                    fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
                    if os.fstat(fd).st_size < size:
                        os.ftruncate(fd, size)
                    self._counters = (ctypes.c_int64 * self._slots).from_buffer(mmap.mmap(fd, size))
                    self._fd = fd
                    weakref.finalize(self, os.close, fd)
        return self._counters


def _syncfs_ok(fd: int) -> bool:
    """Sync the file system `fd` is on; False when that failed (or there is no syncfs)."""
    function = _syncfs()
    try:
        return function is not None and function(fd) == 0
    except OSError:
        return False


class PendingSync:
    """Writes made durable together by one `commit()` (see LocalStore.deferred)."""

    def __init__(self, sync: _GroupSync, journal: Journal | None) -> None:
        self._sync = sync
        self._journal = journal
        self.journaled = False  # some writes are in the journal: syncing it makes them durable
        self.paths: list[str] = []  # written, not journaled: synced with the file system (or one by one)
        self.unjournaled: list[str] = []  # keys of those, marked in the journal once synced

    def commit(self) -> None:
        """Return once every write of the block is on disk; StoreUnavailable when that failed."""
        try:
            if self.journaled and self._journal is not None:
                self._journal.sync()
            if self.paths:
                self._sync.wait(*self.paths)
                _mark_synced(self._journal, self.unjournaled)
        except OSError as exc:
            raise _unavailable("sync", "the objects just written", exc) from exc


# An empty key or part ("//", a leading or trailing "/"), a part starting with "." (".", "..", and our
# hidden files), a backslash or a NUL.
_UNSAFE_KEY = re.compile(r"(?:^|/)(?:\.|/|$)|\\|\x00")


def _joined(root: str, key: str) -> str:
    if _UNSAFE_KEY.search(key):
        raise StoreError(f"refusing an unsafe object key {key[:200]!r}")
    return f"{root}{os.sep}{key}" if os.sep == "/" else os.path.join(root, *key.split("/"))


_serial = itertools.count()
_prefix: tuple[int, str] = (0, "")


def _temp_prefix() -> str:
    """Unique to this process (a random part, in case its id was used by one that left files behind)."""
    global _prefix
    pid = os.getpid()
    if _prefix[0] != pid:
        _prefix = (pid, f"{pid}-{secrets.token_hex(4)}-")
    return _prefix[1]


def _spare(directory: str, name: str) -> str:
    """The hidden file beside an object that its next replace writes into (see LocalStore.replace)."""
    return f"{directory}{os.sep}{_HIDDEN}spare-{name}"


def _remove(path: str) -> None:
    """Remove an object and its spare (which holds an earlier version of it), whichever exist."""
    directory, name = path.rsplit(os.sep, 1)
    for doomed in (path, _spare(directory, name)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(doomed)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_file(path: str) -> bytes:
    """The whole file, in as few system calls as the OS allows (no buffered file object)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)  # one more byte: a file that grew since is read to its end
        if len(data) <= size:
            return data
        chunks = [data]
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """A folder on disk as a bucket: `file:///abs/path` or `file://./relative/path`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()
        self._root = str(self.root)
        try:
            os.makedirs(self._root, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the store folder {self.root}: {exc.strerror}") from exc
        self._sync = _GroupSync(self._root)
        self._group = threading.local()  # .pending: the PendingSync of this thread's deferred() block
        self._journal: Journal | None = None
        if _syncfs() is not None:
            try:
                self._journal = Journal(self._root, _GroupSync, _syncfs_ok, self._replay)
            except OSError as exc:
                # A folder this process may only read keeps no journal: its writes would be refused anyway.
                if not isinstance(exc, PermissionError) and exc.errno != errno.EROFS:
                    raise StoreUnavailable(f"cannot open the journal of the store folder {self.root}: "
                                           f"{exc.strerror or exc}") from exc

    def close(self) -> None:
        """Let go of the folder's journal; the last process to let go makes everything durable and spends it."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    @classmethod
    def from_url(cls, url: str) -> tuple[LocalStore, str]:
        """The store for a `file://` URL (or a plain path); a local folder has no key prefix."""
        parts = urlsplit(url)
        if parts.scheme in ("", "file"):
            path = unquote(parts.netloc + parts.path) if parts.scheme else url
        else:
            raise StoreError(f"not a local folder URL: {url!r}")
        if not path:
            raise StoreError(f"the store URL {url!r} names no folder: use file:///absolute/path or file://./relative")
        return cls(path), ""

    # -- paths -----------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        return _joined(self._root, key)

    def _write_temp(self, directory: str, data: bytes) -> str:
        tmp = os.path.join(directory, f"{_HIDDEN}tmp-{_temp_prefix()}{next(_serial)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        return tmp

    def _write_unnamed(self, directory: str, data: bytes) -> int | None:
        """A file with `data` and no name yet (Linux `O_TMPFILE`), open; None where there is no such file."""
        if not _UNNAMED or _syncfs() is None:
            return None
        try:
            fd = os.open(directory, _UNNAMED, 0o644)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(directory, _UNNAMED, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                return None  # a file system without unnamed files: named temporary files instead
            raise
        try:
            _write_all(fd, data)
        except BaseException:
            os.close(fd)
            raise
        return fd

    # -- the four primitives -----------------------------------------------------------
    def create(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        path = self._path(key)
        directory = path[:path.rindex(os.sep)]
        group = getattr(self._group, "pending", None)
        try:
            fd = self._write_unnamed(directory, data)
            if fd is None:
                created = self._create_named(key, path, directory, data, content_type, group)
            else:
                created = self._link_unnamed(fd, path, group)
                if not created and _cut_short(path, data, content_type):
                    created = self._create_named(key, path, directory, data, content_type, group)
            # Also for a duplicate: the first writer may not have synced the name yet, and the caller
            # is about to acknowledge the object as durable.
            self._durable(group, path, directory, self._journaled(group, CREATE, key, data), key)
            return created
        except OSError as exc:
            raise _unavailable("create", key, exc) from exc

    def _link_unnamed(self, fd: int, path: str, group: PendingSync | None) -> bool:
        """Give the unnamed file `fd` the name `path` and close it; False when that name exists."""
        try:
            if group is None:
                self._sync.wait()  # the bytes are on disk before the name points at them
            # linkat(AT_SYMLINK_FOLLOW): a dir fd makes Python call linkat, not link(); the source path
            # is absolute, so that fd is not used.
            os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd, follow_symlinks=True)
            return True
        except FileExistsError:
            return False
        finally:
            os.close(fd)

    def _create_named(self, key: str, path: str, directory: str, data: bytes, content_type: str,
                      group: PendingSync | None) -> bool:
        """Create by a named temporary file and a link; also repairs an object cut short by a crash."""
        tmp = self._write_temp(directory, data)
        try:
            if group is None:
                self._sync.wait(tmp)  # the bytes are on disk before the name points at them
            try:
                os.link(tmp, path)
                created = True
            except FileExistsError:
                created = _cut_short(path, data, content_type)
                if created:  # never acknowledged: this write is the one that stores it
                    os.replace(tmp, path)
                    log.warning("rewrote %s: it was cut short, as a crash before its sync leaves it", key)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return created

    def read(self, key: str) -> Blob | None:
        path = self._path(key)
        try:
            with _FolderLock(os.path.dirname(path), fcntl.LOCK_SH, create=False):
                return self._read(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _unavailable("read", key, exc) from exc

    @staticmethod
    def _read(path: str) -> Blob | None:
        try:
            data = _read_file(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Blob(data, _version(data))

    def replace(self, key: str, data: bytes, version: str | None, content_type: str = "application/json") -> str:
        path = self._path(key)
        directory, name = path.rsplit(os.sep, 1)
        group = getattr(self._group, "pending", None)
        try:
            with _FolderLock(directory, fcntl.LOCK_EX):
                current = self._read(path)
                if (current is None) != (version is None) or (current and current.version != version):
                    raise PreconditionFailed(f"{key} changed since it was read")
                if current is None:
                    tmp = self._write_temp(directory, data)
                    if group is None:
                        self._sync.wait(tmp)
                    os.replace(tmp, path)
                else:
                    spare = _spare(directory, name)
                    self._write_spare(spare, data)
                    if group is None:
                        self._sync.wait(spare)
                    if not _exchange(spare, path):
                        os.replace(spare, path)
                journaled = self._journaled(group, REPLACE, key, data)  # under the lock: in the order of the writes
            self._durable(group, path, directory, journaled, key)
        except OSError as exc:
            raise _unavailable("replace", key, exc) from exc
        return _version(data)

    @staticmethod
    def _write_spare(spare: str, data: bytes) -> None:
        """Release the spare file's blocks (the previous content of the object, or nothing yet) and write `data`.

        The old content is never written over in place: the new content goes to newly allocated blocks,
        which a journaled file system (ext4's default `data=ordered`) writes before it commits the
        exchange. Written over in place, the exchange could reach the disk before the new content, and
        after a crash the object would hold the spare's older version, readable and silently stale; with
        its blocks released, what a crash can leave is a hole, which reads as zero bytes (never JSON).
        The blocks are released by punching a hole rather than by emptying the file: ext4 starts writing
        a file out as soon as it is closed after being emptied (its `auto_da_alloc`), which made every
        replace wait for the disk. Where holes cannot be punched the file is emptied instead.
        """
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and not _punch_hole(fd, size):
                os.ftruncate(fd, 0)
            _write_all(fd, data)
            if size > len(data):
                os.ftruncate(fd, len(data))
        finally:
            os.close(fd)

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _unavailable("stat", key, exc) from exc
        content_type = _type_of(path)
        return ObjectInfo(key=key, size=st.st_size, etag=f"{st.st_mtime_ns:x}-{st.st_size:x}",
                          content_type=content_type)

    # -- durability --------------------------------------------------------------------------
    @contextlib.contextmanager
    def deferred(self) -> Iterator[PendingSync]:
        """Writes this thread makes inside the block are not synced one by one; the block's result syncs them.

        Call its `commit()` (from any thread) before acknowledging anything written in the block: one
        sync for all of them. Blocks nest; the inner ones share the outermost one's result.
        """
        current = getattr(self._group, "pending", None)
        if current is not None:
            yield current
            return
        pending = PendingSync(self._sync, self._journal)
        self._group.pending = pending
        try:
            yield pending
        finally:
            self._group.pending = None

    def _journaled(self, group: PendingSync | None, kind: bytes, key: str, data: bytes) -> bool:
        """Record a write in the journal (every write is, so its order is theirs); False if it cannot be."""
        if self._journal is None:
            return False
        if self._journal.append(kind, key, data):
            return True
        if group is not None:
            group.unjournaled.append(key)
        return False

    def _durable(self, group: PendingSync | None, path: str, directory: str, journaled: bool = False,
                 key: str = "") -> None:
        """Sync a write now (the whole file system, the journal with it), or note it for its deferred sync."""
        if group is None:
            self._sync.wait(path, directory)
            if not journaled:
                _mark_synced(self._journal, [key])
        elif journaled:
            group.journaled = True
        else:
            group.paths += (path, directory)

    def _replay(self, records: list[Record]) -> None:
        """Redo what a journal holds (the folder's only user, before it is used): for each object, the
        outcome of its records in their order, written only where the folder differs from it."""
        outcome: dict[str, Record | None] = {}
        for record in records:
            earlier = outcome.get(record.key)
            if record.kind == SYNCED:
                outcome[record.key] = None  # written and synced outside the journal: the folder has it
            elif record.kind != CREATE or earlier is None or earlier.kind == DELETE:
                outcome[record.key] = record  # (a create-only write over an existing object changes nothing)
        for key, last in outcome.items():
            if last is None:
                continue
            path = self._path(key)
            if last.kind == DELETE:
                _remove(path)
            elif not os.path.exists(path) or (_read_file(path) != last.data if last.kind == REPLACE
                                              else _cut_short(path, last.data, _type_of(path))):
                os.replace(self._write_temp(os.path.dirname(path), last.data), path)

    # -- tools -------------------------------------------------------------------------
    def iter_keys(self, prefix: str) -> Iterator[str]:
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self._root):
            dirnames[:] = [d for d in dirnames if not d.startswith(_HIDDEN)]
            rel = os.path.relpath(dirpath, self._root).replace(os.sep, "/")
            base = "" if rel == "." else f"{rel}/"
            if not (base.startswith(prefix) or prefix.startswith(base)):
                dirnames[:] = []
                continue
            keys.extend(k for name in filenames if not name.startswith(_HIDDEN)
                        and (k := base + name).startswith(prefix))
        yield from sorted(keys)

    def delete(self, key: str) -> None:
        if self._journal is not None:  # a replay must not bring the object back
            self._journal.append(DELETE, key)
        _remove(self._path(key))

    def locate(self, location: RecordingLocation) -> str | None:
        """A folder holds no cloud bucket, so recordings are never checked here."""
        return None


class _FolderLock:
    """The folder itself, locked: replaces of its objects take turns (LOCK_EX) across threads and
    processes, and never overwrite a spare file while a read (LOCK_SH) may be reading it.
    (A class, not a generator: it is entered once or twice per event.)"""

    __slots__ = ("create", "directory", "fd", "mode")

    def __init__(self, directory: str, mode: int, create: bool = True) -> None:
        self.directory, self.mode, self.create, self.fd = directory, mode, create, -1

    def __enter__(self) -> None:
        try:
            self.fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if not self.create:
                raise
            os.makedirs(self.directory, exist_ok=True)
            self.fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self.fd, self.mode)
        except BaseException:
            os.close(self.fd)
            raise

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing the folder releases its lock


def _cut_short(path: str, data: bytes, content_type: str) -> bool:
    """Whether the object already at `path` is a damaged copy of `data` rather than the object itself.

    Names are derived from content, so an intact object under the same name holds the same bytes, or (for
    JSON) a document written by another version of this package, which is kept. Anything else, such as an
    empty or truncated file, is what a crash leaves of an object whose sync never completed.
    """
    existing = _read_file(path)
    if existing == data:
        return False
    if content_type != "application/json":
        return True
    try:
        return not isinstance(orjson.loads(existing), dict)
    except orjson.JSONDecodeError:
        return True


def _mark_synced(journal: Journal | None, keys: list[str]) -> None:
    """After a file-system sync, tell the journal that these objects, too large for it, are on disk."""
    if journal is not None:
        for key in keys:
            journal.append(SYNCED, key)


def _type_of(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def _unavailable(op: str, key: str, exc: OSError) -> StoreUnavailable:
    hint = {errno.ENOSPC: "the disk is full", errno.EACCES: "permission denied",
            errno.EROFS: "the file system is read-only"}.get(exc.errno or 0, exc.strerror or str(exc))
    return StoreUnavailable(f"local store could not {op} {key}: {hint}")
