"""The stored record: a deterministic CloudEvents 1.0 document per callback, and where it lives."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from tavus_callbacks.events.normalize import Event, normalize

SPECVERSION = "1.0"
ORIGIN_ATTRIBUTE = "tavusorigin"  # CloudEvents extension: where a stored event came from, when not a callback
_KEY_PART = re.compile(r"[^A-Za-z0-9_.-]+")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same bytes for the same JSON value whatever its formatting."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        # Integers beyond 64 bits and similar: the standard library writes them, slower but exact.
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )


# Fields that describe one delivery, not the event: the vendor's API copy of an event leaves them out.
DELIVERY_FIELDS = frozenset({"webhook_url"})


def identity(payload: Any, event: Event) -> bytes:
    """The canonical JSON an event's id is the SHA-256 of: what makes two deliveries one event.

    A conversation event with a plain conversation id, a well-formed `event_type` and a readable
    `timestamp` is (conversation_id, event_type, normalized timestamp), so a callback and the vendor
    API's copy of it (no `webhook_url`, other formatting) are one event. Any other conversation payload
    is its canonical JSON without the delivery-only fields; the other families, their whole payload.
    """
    if event.family == "conversation":
        if event.event_type and event.conversation_id and event.time:
            return canonical_json({"conversation_id": event.conversation_id, "event_type": event.event_type,
                                   "timestamp": event.time})
        if isinstance(payload, dict) and not DELIVERY_FIELDS.isdisjoint(payload):
            return canonical_json({k: v for k, v in payload.items() if k not in DELIVERY_FIELDS})
    return canonical_json(payload)


def event_id(payload: Any) -> str:
    """The id of the event a payload carries: SHA-256 of its `identity`, the same for every delivery of it."""
    return hashlib.sha256(identity(payload, normalize(payload))).hexdigest()


@functools.lru_cache(maxsize=1024)
def _type_part(type_: str) -> str:
    """An event type as a safe piece of an object name: only [A-Za-z0-9_.-], no '..', at most 80 characters."""
    return _KEY_PART.sub("_", type_.removeprefix("io.tavus.")).replace("..", "_")[:80].strip(".") or "_"


def compact_time(iso: str) -> str:
    """'2025-07-11T06:45:47.472000Z' -> '20250711T064547.472000Z', sortable and safe in a key."""
    return iso.replace("-", "").replace(":", "")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where every object goes in the bucket (docs/SPEC.md §4), under an optional key prefix."""

    prefix: str = ""

    def folder(self, event: Event) -> str:
        """The folder of an event's objects; events whose subject is not a plain id go to 'unrecognized'."""
        return self._folder(event.family, event.subject, event.time)

    def event_key(self, event: Event, eid: str) -> str:
        """The event object's key: from the payload only (its time, type and id), never the arrival time."""
        return self._event_key(event.family, event.subject, event.time, event.type, eid)

    def _folder(self, family: str, subject: str | None, time: str | None) -> str:
        # Only the five families have a subject (Event.subject); each has its own tree.
        if subject:
            return f"{self.prefix}{_FOLDERS[family]}{subject}/events/"
        # An undated payload has no day of its own: a day of arrival would store a retry twice.
        day = day_path(time) if time else "undated"
        return f"{self.prefix}unrecognized/{day}/"

    def _event_key(self, family: str, subject: str | None, time: str | None, type_: str, eid: str) -> str:
        folder = self._folder(family, subject, time)
        if time:
            return f"{folder}{compact_time(time)}_{_type_part(type_)}_{eid}.json"
        return f"{folder}{_type_part(type_)}_{eid}.json"

    def conversation_key(self, conversation_id: str) -> str:
        return f"{self.prefix}{conversation_id}/conversation.json"

    def transcript_key(self, conversation_id: str) -> str:
        return f"{self.prefix}{conversation_id}/transcript.json"

    def perception_key(self, conversation_id: str) -> str:
        return f"{self.prefix}{conversation_id}/perception.json"

    def document_key(self, conversation_id: str, name: str) -> str:
        """A document derived beside conversation.json (a registry entry's `document`: transcript.json, ...)."""
        return f"{self.prefix}{conversation_id}/{name}"

    def index_key(self, day: str, conversation_id: str) -> str:
        """The time index's mark that a conversation was active on `day` (yyyy/mm/dd): what `--since` reads."""
        return f"{self.index_prefix(day)}{conversation_id}"

    def index_prefix(self, day: str) -> str:
        return f"{self.prefix}index/{day}/"

    def is_event_key(self, key: str) -> bool:
        """True for the key of a stored event object (under this prefix), the only objects derive works on."""
        if not key.startswith(self.prefix) or not key.endswith(".json"):
            return False
        parts = key[len(self.prefix):].split("/")
        if parts[0] == "unrecognized":
            return len(parts) == 5 or (len(parts) == 3 and parts[1] == "undated")
        folder = parts[1:] if parts[0] not in ("replicas", "videos") else parts[2:]
        return len(folder) == 2 and folder[0] == "events" and bool(parts[0])

    def quarantine_key(self, body: bytes, now: datetime | None = None) -> str:
        digest = hashlib.sha256(body).hexdigest()
        return f"{self.prefix}quarantine/{day_path(None, now)}/{digest}.bin"


def day_path(iso: str | None, now: datetime | None = None) -> str:
    """yyyy/mm/dd of the payload's own time, else of `now` (quarantine and the time index)."""
    if iso and len(iso) >= 10:
        return iso[:10].replace("-", "/")
    when = now or datetime.now(UTC)
    return when.strftime("%Y/%m/%d")


def _source(family: str, subject: str | None) -> str:
    return f"/tavus/{_SOURCES[family]}{subject}" if subject else "/tavus/unrecognized"


# The folder and the CloudEvents source of each family that has a subject (see Event.subject).
_FOLDERS = {"conversation": "", "guardrail": "", "objective": "", "replica_training": "replicas/",
            "video_generation": "videos/"}
_SOURCES = {"conversation": "conversations/", "guardrail": "conversations/", "objective": "conversations/",
            "replica_training": "replicas/", "video_generation": "videos/"}


@dataclass(slots=True)
class StoredEvent:
    """A callback ready to store: its id, its object key, the CloudEvent and its encoded bytes."""

    id: str
    key: str
    event: Event
    document: dict[str, Any]
    body: bytes


def build_record(payload: Any, event: Event, layout: Layout, *, original: Any = None,
                 origin: str | None = None) -> StoredEvent:
    """The CloudEvent for a payload: deterministic id and bytes, `data` = normalized fields + payload.

    `payload` is what `event` was normalized from and gives the id (`identity`); `data.payload` keeps
    `original` when given (an API item kept verbatim, normalized from a completed copy). `origin`
    becomes the `tavusorigin` extension attribute (e.g. "api" for an event recovered by reconcile).
    """
    kept = payload if original is None else original
    canonical = canonical_json(kept)
    ident = identity(payload, event) if original is not None or event.family == "conversation" else canonical
    eid = hashlib.sha256(ident).hexdigest()
    # The Event's fields, in order, are JSON values already: cheaper than model_dump. `data` shares its
    # lists and dicts (errors, details), as the stored document is never changed once built.
    fields = vars(event)
    family, type_, subject, time = fields["family"], fields["type"], event.subject, fields["time"]
    document: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": eid,
        "type": type_,
        "source": _source(family, subject),
        "datacontenttype": "application/json",
    }
    if subject:
        document["subject"] = subject
    if time:
        document["time"] = time
    if origin:
        document[ORIGIN_ATTRIBUTE] = origin
    data = document["data"] = {**fields, "payload": orjson.Fragment(canonical)}
    try:
        body = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        body = b""
    data["payload"] = kept
    return StoredEvent(eid, layout._event_key(family, subject, time, type_, eid), event, document,
                       body or canonical_json(document))
