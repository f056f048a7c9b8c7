"""The local folder store: create-only by hard link, atomic replace by rename, synced before success.

Compare-and-swap holds across threads and processes: a replace takes an exclusive `flock` on a
lock file beside the object, checks the version (a hash of the content) and renames a fully
written temporary file over the object.

Durability is a group commit: every write is followed by a wait for a file-system sync that began
after it, and concurrent writers share one `syncfs` (Linux) instead of each paying for its own
`fsync` of the file and of its folder. Elsewhere each file and folder is fsynced on its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import mimetypes
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ..errors import PreconditionFailed, StoreError, StoreUnavailable
from .base import Blob, ObjectInfo

if TYPE_CHECKING:
    from ..recording import RecordingLocation

_HIDDEN = "."  # temporary and lock files start with a dot and are never listed


def _version(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """libc's syncfs, looked up on first use (the running program's own symbols hold libc on Linux)."""
    try:
        function: Callable[[int], int] | None = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
    except OSError:
        return None
    return function


class _GroupSync:
    """Many writers, one sync: each waits for a sync that started after its own writes (group commit)."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._fd: int | None = None
        self._cond = threading.Condition()
        self._started = 0  # syncs begun
        self._done = 0  # syncs finished
        self._failed = 0  # the last sync that failed
        self._running = False

    def wait(self, *paths: str) -> None:
        """Return once everything written before this call is on disk; `paths` are synced where syncfs is not."""
        if _syncfs() is None:
            for path in paths:
                _fsync(path)
            return
        with self._cond:
            target = self._started + 1  # a sync already running may have begun before our writes
            while self._done < target:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                self._started += 1
                number = self._started
                self._cond.release()
                failed = True
                try:
                    failed = self._syncfs() != 0
                except OSError:
                    pass
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._done = number
                    if failed:
                        self._failed = number
                    self._cond.notify_all()
            if self._failed >= target:
                raise OSError(errno.EIO, "syncing the store's file system failed")

    def _syncfs(self) -> int:
        if self._fd is None:
            self._fd = os.open(self._root, os.O_RDONLY)
        syncfs = _syncfs()
        assert syncfs is not None
        return syncfs(self._fd)


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
        parts = key.split("/")
        if (not key or key.startswith("/") or "\\" in key or "\x00" in key
                or any(p in ("", ".", "..") or p.startswith(_HIDDEN) for p in parts)):
            raise StoreError(f"refusing an unsafe object key {key[:200]!r}")
        return os.path.join(self._root, *parts)

    def _write_temp(self, directory: str, data: bytes) -> str:
        tmp = os.path.join(directory, f"{_HIDDEN}tmp-{uuid.uuid4().hex}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return tmp

    # -- the four primitives -----------------------------------------------------------
    def create(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        path = self._path(key)
        directory = os.path.dirname(path)
        try:
            tmp = self._write_temp(directory, data)
            try:
                self._sync.wait(tmp)  # the bytes are on disk before the name points at them
                os.link(tmp, path)
                created = True
            except FileExistsError:
                created = False
            finally:
                os.unlink(tmp)
            # Also for a duplicate: the first writer may not have synced the name yet, and the caller
            # is about to acknowledge the object as durable.
            self._sync.wait(directory)
            return created
        except OSError as exc:
            raise _unavailable("create", key, exc) from exc

    def read(self, key: str) -> Blob | None:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _unavailable("read", key, exc) from exc
        return Blob(data, _version(data))

    def replace(self, key: str, data: bytes, version: str | None, content_type: str = "application/json") -> str:
        path = self._path(key)
        directory = os.path.dirname(path)
        try:
            with self._locked(directory, os.path.basename(path)):
                current = self.read(key)
                if (current is None) != (version is None) or (current and current.version != version):
                    raise PreconditionFailed(f"{key} changed since it was read")
                tmp = self._write_temp(directory, data)
                self._sync.wait(tmp)
                os.replace(tmp, path)
                self._sync.wait(directory)
        except OSError as exc:
            raise _unavailable("replace", key, exc) from exc
        return _version(data)

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _unavailable("stat", key, exc) from exc
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return ObjectInfo(key=key, size=st.st_size, etag=f"{st.st_mtime_ns:x}-{st.st_size:x}",
                          content_type=content_type)

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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(key))

    def locate(self, location: RecordingLocation) -> str | None:
        """A folder holds no cloud bucket, so recordings are never checked here."""
        return None

    @contextlib.contextmanager
    def _locked(self, directory: str, name: str) -> Iterator[None]:
        lock = os.path.join(directory, f"{_HIDDEN}{name}.lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _unavailable(op: str, key: str, exc: OSError) -> StoreUnavailable:
    hint = {errno.ENOSPC: "the disk is full", errno.EACCES: "permission denied",
            errno.EROFS: "the file system is read-only"}.get(exc.errno or 0, exc.strerror or str(exc))
    return StoreUnavailable(f"local store could not {op} {key}: {hint}")
