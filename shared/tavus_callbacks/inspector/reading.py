"""What the inspector shows, read from a store and never written: the recent conversations' states, one
conversation's documents, a stored event, and the replica training and video generation callbacks."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from tavus_callbacks.errors import StoreError
from tavus_callbacks.state.fold import readable_state
from tavus_callbacks.state.index import recent_conversations
from tavus_callbacks.state.stored import read_object
from tavus_callbacks.stores import open_store

if TYPE_CHECKING:
    from tavus_callbacks.events.recording import RecordingLocation
    from tavus_callbacks.layout import Layout
    from tavus_callbacks.stores import Blob, ObjectInfo, Store

STATE_FILE = "conversation.json"
WINDOW = timedelta(days=7)  # conversations listed: those active within it (as `conversations list` does)
DAMAGED = "damaged"  # the mark of a state shown in place of one that cannot be read
OTHER_FOLDERS = ("replicas/", "videos/")  # the families whose callbacks belong to no conversation
_COMPACT_TIME = len("20250711T064547.472000Z")


class ReadOnly(StoreError):
    """Something tried to write through the inspector's view of a store, which only reads."""


class ReadOnlyStore:
    """A store seen through a view that reads and refuses every write: the inspector never changes a store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.url = store.url

    def create(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        raise ReadOnly(f"the inspector only reads {self.url}; it did not write {key}")

    def read(self, key: str) -> Blob | None:
        return self.store.read(key)

    def replace(self, key: str, data: bytes, version: str | None, content_type: str = "application/json") -> str:
        raise ReadOnly(f"the inspector only reads {self.url}; it did not write {key}")

    def stat(self, key: str) -> ObjectInfo | None:
        return self.store.stat(key)

    def iter_keys(self, prefix: str) -> Iterator[str]:
        return self.store.iter_keys(prefix)

    def delete(self, key: str) -> None:
        raise ReadOnly(f"the inspector only reads {self.url}; it did not delete {key}")

    def locate(self, location: RecordingLocation) -> str | None:
        return self.store.locate(location)


def open_read_only(url: str) -> tuple[ReadOnlyStore, str]:
    """The store a URL names and its key prefix, for reading only: a SQLite file must already hold a store and is
    opened read-only (opening creates nothing); a bucket is opened as it is, which writes nothing."""
    store, prefix = open_store(url, read_only=True)
    return ReadOnlyStore(store), prefix


@dataclass(frozen=True, slots=True)
class Recent:
    """The recent conversations' states, newest first, and a version that changes when any of them does."""

    states: list[dict[str, Any]]
    total: int  # conversations found, of which `states` holds the newest `limit`
    version: str
    scope: str = ""  # which conversations, in words (e.g. "active in the last 7 days")


@dataclass(frozen=True, slots=True)
class Conversation:
    """One conversation's state and its derived documents, and a version that changes when any does."""

    state: dict[str, Any]
    transcript: dict[str, Any] | None
    perception: dict[str, Any] | None
    version: str


@dataclass(frozen=True, slots=True)
class Other:
    """A replica training or video generation callback: where it is stored and what its key says of it."""

    key: str
    id: str
    type: str
    time: str | None
    subject: str
    document: dict[str, Any] | None = None


class Reader:
    """Reads what the inspector shows from a store (through a ReadOnlyStore); safe to share between threads.

    The conversations listed are those the time index holds since `since` (a window moving with the clock, or a
    fixed time), so a look costs the recent activity only; `whole_store` walks every key instead, when asked.
    """

    def __init__(self, store: Store, layout: Layout, limit: int = 100, since: timedelta | datetime = WINDOW,
                 whole_store: bool = False) -> None:
        self.store = store if isinstance(store, ReadOnlyStore) else ReadOnlyStore(store)
        self.layout = layout
        self.limit = limit
        self.since = since
        self.whole_store = whole_store
        self._parsed: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (version, state): parsed once each
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.store.url

    @property
    def scope(self) -> str:
        """Which conversations are listed, in words."""
        if self.whole_store:
            return "in the whole store"
        if isinstance(self.since, datetime):
            return f"active since {self.since.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        days, seconds = self.since.days, self.since.seconds
        window = f"{days} day{'s' if days != 1 else ''}" if days and not seconds \
            else f"{self.since.total_seconds() / 3600:g} h"
        return f"active in the last {window}"

    def conversation_ids(self) -> list[str]:
        """The ids of the conversations to list: from the time index, or every `<prefix><id>/conversation.json`."""
        if not self.whole_store:
            since = self.since if isinstance(self.since, datetime) else datetime.now(UTC) - self.since
            return recent_conversations(self.store, self.layout, since)
        prefix, ids = self.layout.prefix, []
        for key in self.store.iter_keys(prefix):
            cid, _, name = key[len(prefix):].partition("/")
            if name == STATE_FILE:
                ids.append(cid)
        return ids

    def recent(self) -> Recent:
        """The newest `limit` conversation states by their last activity, and how many there are."""
        states: list[dict[str, Any]] = []
        versions: list[str] = []
        parsed: dict[str, tuple[str, dict[str, Any]]] = {}
        for cid in self.conversation_ids():
            key = self.layout.conversation_key(cid)
            blob = self.store.read(key) if is_conversation_id(cid) else None
            if blob is None:  # listed before its state is written: the next look has it
                continue
            state = self._parse(key, cid, blob)
            parsed[key] = (blob.version, state)
            states.append(state)
            versions.append(f"{key}\0{blob.version}")
        with self._lock:
            self._parsed = parsed  # only what is still recent stays cached
        states.sort(key=lambda s: (last_activity(s), str(s.get("conversation_id"))), reverse=True)
        return Recent(states[:self.limit], len(states), _digest(sorted(versions)), self.scope)

    def conversation(self, conversation_id: str) -> Conversation | None:
        """One conversation's state, transcript.json and perception.json; None when it has no state."""
        if not is_conversation_id(conversation_id):
            return None
        keys = (self.layout.conversation_key(conversation_id), self.layout.transcript_key(conversation_id),
                self.layout.perception_key(conversation_id))
        blobs = [self.store.read(key) for key in keys]
        if blobs[0] is None:
            return None
        state = self._parse(keys[0], conversation_id, blobs[0])
        documents = [_object(blob) for blob in blobs]
        version = _digest(f"{key}\0{blob.version}" for key, blob in zip(keys, blobs, strict=True) if blob)
        transcript = documents[1] or self._from_event(state, "transcript", "transcript")
        perception = documents[2] or self._from_event(state, "perception", "analysis")
        return Conversation(state, transcript, perception, version)

    def _from_event(self, state: dict[str, Any], field: str, detail: str) -> dict[str, Any] | None:
        """`{detail: ...}` from the event a state's field came from, when its derived document is not (yet)
        written: the transcript's turns, the perception's analysis."""
        marked = state.get(field)
        event_id = marked.get("event_id") if isinstance(marked, dict) else None
        if not event_id:
            return None
        for entry in state.get("events") or ():
            if isinstance(entry, dict) and entry.get("id") == event_id and isinstance(entry.get("key"), str):
                document = self.event(entry["key"])
                data = document.get("data") if document else None
                details = data.get("details") if isinstance(data, dict) else None
                if isinstance(details, dict) and detail in details:
                    return {detail: details[detail]}
        return None

    def event(self, key: str) -> dict[str, Any] | None:
        """The stored event (a CloudEvent document) at `key`; None for a key that is not a stored event's."""
        if not self.layout.is_event_key(key) or "/../" in f"/{key}/" or "/./" in f"/{key}/":
            return None
        return read_object(self.store, key)

    def others(self, limit: int) -> list[Other]:
        """The newest `limit` replica training and video generation callbacks, by the time in their key."""
        prefix, found = self.layout.prefix, []
        for folder in OTHER_FOLDERS:
            for key in self.store.iter_keys(prefix + folder):
                relative = key[len(prefix):]
                parts = relative.split("/")
                if len(parts) == 4 and parts[2] == "events" and self.layout.is_event_key(key):
                    other = _other(key, parts[1], parts[3])
                    if other is not None:
                        found.append(other)
        found.sort(key=lambda o: (o.time or "", o.key), reverse=True)
        return [Other(o.key, o.id, o.type, o.time, o.subject, read_object(self.store, o.key)) for o in found[:limit]]

    def _parse(self, key: str, cid: str, blob: Blob) -> dict[str, Any]:
        """The state as readers show it (see fold.readable_state), or one saying it is damaged."""
        with self._lock:
            cached = self._parsed.get(key)
        if cached is not None and cached[0] == blob.version:
            return cached[1]
        return readable_state(cid, blob.data) or damaged_state(cid)


def damaged_state(cid: str) -> dict[str, Any]:
    """What is shown for a conversation.json that cannot be read (damaged, or written by something else)."""
    return {"conversation_id": cid, "status": "damaged", "events": [], DAMAGED: True}


def is_conversation_id(text: str) -> bool:
    """True for what can name a conversation folder: not empty, no '/', not '.' or '..'."""
    return bool(text) and "/" not in text and text not in (".", "..") and len(text) <= 256


def last_activity(state: dict[str, Any]) -> str:
    """The latest time a conversation's events carry (ISO-8601 UTC), or '' when none carries one."""
    times = [e.get("time") for e in state.get("events") or () if isinstance(e, dict)]
    dated = [t for t in times if isinstance(t, str)]
    if dated:
        return max(dated)
    fallback = state.get("ended_at") or state.get("joined_at")
    return fallback if isinstance(fallback, str) else ""


def iso_of_compact(compact: str) -> str | None:
    """'20250711T064547.472000Z' -> '2025-07-11T06:45:47.472000Z' (the inverse of layout.compact_time)."""
    if len(compact) < 16 or compact[8] != "T" or not (compact[:8] + compact[9:15]).isdigit():
        return None
    return f"{compact[:4]}-{compact[4:6]}-{compact[6:8]}T{compact[9:11]}:{compact[11:13]}:{compact[13:]}"


def _other(key: str, subject: str, name: str) -> Other | None:
    """What an event object's name tells: `[<compact time>_]<type>_<id>.json` (see layout.Layout)."""
    stem = name.removesuffix(".json")
    head, _, eid = stem.rpartition("_")
    if not head or not eid:
        return None
    time = iso_of_compact(head[:_COMPACT_TIME]) if head[_COMPACT_TIME:_COMPACT_TIME + 1] == "_" else None
    type_ = head[_COMPACT_TIME + 1:] if time else head
    return Other(key, eid, type_, time, subject)


def _object(blob: Blob | None) -> dict[str, Any] | None:
    if blob is None:
        return None
    try:
        value = orjson.loads(blob.data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]
