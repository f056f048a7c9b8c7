"""The stored record: a deterministic CloudEvents 1.0 document per callback (where it goes: layout.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import orjson

from tavus_callbacks.events.normalize import Event, normalize
from tavus_callbacks.layout import Layout

SPECVERSION = "1.0"
ORIGIN_ATTRIBUTE = "tavusorigin"  # CloudEvents extension: where a stored event came from, when not a callback


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


def _source(family: str, subject: str | None) -> str:
    return f"/tavus/{_SOURCES[family]}{subject}" if subject else "/tavus/unrecognized"


# The CloudEvents source of each family that has a subject (see Event.subject).
_SOURCES = {"conversation": "conversations/", "guardrail": "conversations/", "objective": "conversations/",
            "replica_training": "replicas/", "video_generation": "videos/"}


@dataclass(slots=True)
class Record:
    """A callback ready to store: its id, its object key, the CloudEvent and its encoded bytes."""

    id: str
    key: str
    event: Event
    document: dict[str, Any]
    body: bytes


def build_record(payload: Any, event: Event, layout: Layout, *, original: Any = None,
                 origin: str | None = None) -> Record:
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
    return Record(eid, layout._event_key(family, subject, time, type_, eid), event, document,
                       body or canonical_json(document))
