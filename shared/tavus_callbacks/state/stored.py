"""Reading stored events back: the CloudEvents this package wrote, by key or by conversation.

A bucket is shared with other writers (the vendor, a team's own jobs, older versions), so an object where an
event should be that is not one this package wrote is skipped, with a log line naming its key and why, and
counted; it never stops the tool that walks the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from tavus_callbacks.events.normalize import Event
from tavus_callbacks.record import Record
from tavus_callbacks.settings import parse_time as parse_time  # read back here, named by the CLI

if TYPE_CHECKING:
    from tavus_callbacks.stores import Store

log = logging.getLogger("tavus_callbacks")


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One stored event as replay needs it: where it is, its id and time, and the bytes to send."""

    key: str
    id: str
    time: str | None
    payload: Any
    document: dict[str, Any]
    body: bytes
    event: Event

    def record(self) -> Record:
        """The Record a bus forwarder publishes: the stored document and bytes as they are."""
        return Record(id=self.id, key=self.key, event=self.event, document=self.document, body=self.body)


@dataclass(frozen=True, slots=True)
class Skipped:
    """An object a tool left out, and why (for its summary)."""

    key: str
    why: str


def read_object(store: Store, key: str) -> dict[str, Any] | None:
    """The JSON object stored at `key`, or None when it is missing, unreadable or not an object."""
    blob = store.read(key)
    try:
        value = orjson.loads(blob.data) if blob else None
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def parse_stored(key: str, data: bytes) -> StoredRecord | str:
    """The stored event in `data`, or why it is not a CloudEvent this package wrote."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "not JSON"
    if not isinstance(document, dict):
        return f"its JSON is {type(document).__name__}, not an object"
    eid, when, fields = document.get("id"), document.get("time"), document.get("data")
    if not isinstance(eid, str) or not eid:
        return "no `id` string" if "id" not in document else "its `id` is not a non-empty string"
    if when is not None and not _is_time(when):
        return "its `time` is not an ISO-8601 time"
    if not isinstance(fields, dict):
        return "no `data` object" if fields is None else "its `data` is not an object"
    if "payload" not in fields:
        return "its `data` has no `payload`"
    try:
        event = Event.model_validate({k: v for k, v in fields.items() if k != "payload"})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "data"
        return f"its `data` is not a normalized event (data.{where}: {first['msg']})"
    return StoredRecord(key, eid, when, fields["payload"], document, data, event)


def _is_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def read_stored(store: Store, key: str, skipped: list[Skipped] | None = None) -> StoredRecord | None:
    """The stored event at `key`, or None when it is gone or is not a CloudEvent this package wrote (logged
    with its key and why, and added to `skipped`)."""
    blob = store.read(key)
    if blob is None:
        return None
    stored = parse_stored(key, blob.data)
    if isinstance(stored, str):
        log.warning("skipped %r: %s (not an event this package wrote)", key, stored,
                    extra={"skipped": key, "why": stored})
        if skipped is not None:
            skipped.append(Skipped(key, stored))
        return None
    return stored


def read_record(store: Store, key: str) -> Record | None:
    """The stored event at `key` as derive works on it, or None (logged) when it is gone or is not a CloudEvent
    this package wrote (another writer's object in the same folder)."""
    stored = read_stored(store, key)
    return None if stored is None else stored.record()
