"""The local folder store: create-only by hard link, atomic replace by rename, fsync before success.

Compare-and-swap holds across threads and processes: a replace takes an exclusive `flock` on a
lock file beside the object, checks the version (a hash of the content) and renames a fully
written temporary file over the object.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import mimetypes
import os
import uuid
from collections.abc import Iterator
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


class LocalStore:
    """A folder on disk as a bucket: `file:///abs/path` or `file://./relative/path`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the store folder {self.root}: {exc.strerror}") from exc

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
    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if (not key or key.startswith("/") or "\\" in key or "\x00" in key
                or any(p in ("", ".", "..") or p.startswith(_HIDDEN) for p in parts)):
            raise StoreError(f"refusing an unsafe object key {key[:200]!r}")
        return self.root.joinpath(*parts)

    def _fsync_dir(self, directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_temp(self, directory: Path, data: bytes) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{_HIDDEN}tmp-{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    # -- the four primitives -----------------------------------------------------------
    def create(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        path = self._path(key)
        try:
            tmp = self._write_temp(path.parent, data)
            try:
                os.link(tmp, path)
                created = True
            except FileExistsError:
                created = False
            finally:
                os.unlink(tmp)
            # Also for a duplicate: the first writer may not have synced the folder yet, and the
            # caller is about to acknowledge the object as durable.
            self._fsync_dir(path.parent)
            return created
        except OSError as exc:
            raise _unavailable("create", key, exc) from exc

    def read(self, key: str) -> Blob | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _unavailable("read", key, exc) from exc
        return Blob(data, _version(data))

    def replace(self, key: str, data: bytes, version: str | None, content_type: str = "application/json") -> str:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked(path):
                current = self.read(key)
                if (current is None) != (version is None) or (current and current.version != version):
                    raise PreconditionFailed(f"{key} changed since it was read")
                tmp = self._write_temp(path.parent, data)
                os.replace(tmp, path)
                self._fsync_dir(path.parent)
        except OSError as exc:
            raise _unavailable("replace", key, exc) from exc
        return _version(data)

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _unavailable("stat", key, exc) from exc
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return ObjectInfo(key=key, size=st.st_size, etag=f"{st.st_mtime_ns:x}-{st.st_size:x}",
                          content_type=content_type)

    # -- tools -------------------------------------------------------------------------
    def iter_keys(self, prefix: str) -> Iterator[str]:
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(_HIDDEN)]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel == "." else f"{rel}/"
            if not (base.startswith(prefix) or prefix.startswith(base)):
                dirnames[:] = []
                continue
            keys.extend(k for name in filenames if not name.startswith(_HIDDEN)
                        and (k := base + name).startswith(prefix))
        yield from sorted(keys)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def locate(self, location: RecordingLocation) -> str | None:
        """A folder holds no cloud bucket, so recordings are never checked here."""
        return None

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        fd = os.open(path.parent / f"{_HIDDEN}{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _unavailable(op: str, key: str, exc: OSError) -> StoreUnavailable:
    hint = {errno.ENOSPC: "the disk is full", errno.EACCES: "permission denied",
            errno.EROFS: "the file system is read-only"}.get(exc.errno or 0, exc.strerror or str(exc))
    return StoreUnavailable(f"local store could not {op} {key}: {hint}")
