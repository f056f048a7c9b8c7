"""The Store protocol: four primitives every backend implements, plus three for tools.

Keys are '/'-separated paths inside the bucket (or SQLite file). The key prefix of docs/SPEC.md §4 is applied by
`layout.Layout`, not here, so a store can also stat the recordings the vendor writes beside our folders.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tavus_callbacks.events.recording import RecordingLocation


@dataclass(frozen=True, slots=True)
class Blob:
    """An object's bytes and the opaque version a compare-and-swap must match."""

    data: bytes
    version: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What `stat` tells about an object."""

    key: str
    size: int
    etag: str | None = None
    content_type: str | None = None


@runtime_checkable
class Store(Protocol):
    """Create-only write, read with version, compare-and-swap replace, stat.

    Every method raises `StoreUnavailable` when the backend fails, so the pipeline answers 503 instead of
    acknowledging what is not durable.
    """

    url: str

    def create(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        """Write `data` only if `key` does not exist. True if written, False if it already existed."""

    def read(self, key: str) -> Blob | None:
        """The object's bytes and version, or None when it does not exist."""

    def replace(self, key: str, data: bytes, version: str | None, content_type: str = "application/json") -> str:
        """Write `data` if the object is still at `version` (None: must not exist yet); the new version.
        `PreconditionFailed` when another writer got there first."""

    def stat(self, key: str) -> ObjectInfo | None:
        """Size, ETag and content type of an object, or None when it does not exist."""

    def iter_keys(self, prefix: str) -> Iterator[str]:
        """Every key under `prefix`, in lexical order (for tools, not the hot path)."""

    def delete(self, key: str) -> None:
        """Remove an object if it exists (for tools such as `doctor`, not the hot path)."""

    def locate(self, location: RecordingLocation) -> str | None:
        """The key of a recording in this store's own bucket, or None when it lives elsewhere."""


def normalize_prefix(prefix: str) -> str:
    """'' or a prefix ending in exactly one '/', without a leading '/'."""
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""
