"""The bucket layout (docs/SPEC.md §4): where every object goes, under an optional key prefix."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from tavus_callbacks.events.normalize import Event

_KEY_PART = re.compile(r"[^A-Za-z0-9_.-]+")
# The folder of each family that has a subject (see Event.subject).
_FOLDERS = {"conversation": "", "guardrail": "", "objective": "", "replica_training": "replicas/",
            "video_generation": "videos/"}


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
