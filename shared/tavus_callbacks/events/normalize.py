"""`normalize`, which turns any callback body into one typed Event, and the Event itself.

Families are told apart by shape (docs/SPEC.md §1); each known type has an entry in the registry (catalogue.py)
whose payload model validates the payload once and whose builder makes the `details` every consumer
relies on. `normalize` never raises: a payload that fails its model becomes an Event with `valid=False`
and readable errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, TypeAdapter, ValidationError

from tavus_callbacks.events.catalogue import CONVERSATION_TYPES, FAMILIES, REPLICA_TRAINING, VIDEO_GENERATION
from tavus_callbacks.events.registry import TYPE_PREFIX, Details, EventKind, Family, Invalid
from tavus_callbacks.events.times import TimeParseError, to_utc_iso, to_utc_iso_or_none


@dataclass
class Event:
    """A normalized callback: what it is, whom it is about, when, and its per-type fields in `details`."""

    # Attribute docstrings become the descriptions of the JSON Schema (events/schema.py).
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(use_attribute_docstrings=True)

    family: Family
    type: str
    """CloudEvents type, e.g. io.tavus.conversation.system.shutdown"""
    event_type: str | None = None
    message_type: str | None = None
    conversation_id: str | None = None
    replica_id: str | None = None
    video_id: str | None = None
    time: str | None = None
    """UTC ISO-8601, e.g. 2025-07-11T06:45:47.472000Z"""
    valid: bool = True
    errors: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def subject(self) -> str | None:
        """The id the event is about: conversation, replica or video, by family."""
        if self.family == "replica_training":
            return self.replica_id
        if self.family == "video_generation":
            return self.video_id
        if self.family == "unrecognized":
            return None
        return self.conversation_id

    @classmethod
    def model_validate(cls, data: Any) -> Event:
        """An Event from its dumped fields, checked by pydantic (raises pydantic's ValidationError)."""
        return event_adapter().validate_python(data)

    def model_dump(self, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        """The fields as a new dict, as pydantic dumps them (mode="json": NaN and infinities become null)."""
        dumped: dict[str, Any] = event_adapter().dump_python(self, mode=mode)
        return dumped


@cache
def event_adapter() -> TypeAdapter[Event]:
    """Pydantic's validator and serializer of Event, built on first use."""
    return TypeAdapter(Event)


UNRECOGNIZED_TYPE = "io.tavus.unrecognized"
INVALID_CONVERSATION_TYPE = "io.tavus.conversation.invalid"

_MAX_ID = 128
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*")
_MAX_EVENT_TYPE = 100
_NOT_TYPE_CHARS = re.compile(r"[^a-z0-9_]+")
_MAX_ERRORS = 20
MAX_DETAIL_DEPTH = 100  # raw values copied into details nest at most this deep; the payload keeps the rest
_RAW_DETAIL_KEYS = frozenset({"properties", "output_variables", "request", "response", "analysis"})


def normalize(payload: Any) -> Event:
    """Turn a decoded body into an Event; never raises, whatever JSON value it is given."""
    try:
        if not isinstance(payload, dict):
            return _event("unrecognized", UNRECOGNIZED_TYPE,
                          errors=[f"the payload is a JSON {_kind(payload)}, not an object"])
        family = family_of(payload)
        if family == "conversation":
            return _conversation(payload)
        if family == "video_generation":
            return _video(payload)
        if family in ("guardrail", "objective"):
            return _in_conversation(FAMILIES[family], payload)
        if family == "replica_training":
            return _replica_training(payload)
        return _unrecognized(payload)
    except Exception as exc:  # never reached by a JSON value; a last guard so a callback is still stored
        return _event("unrecognized", UNRECOGNIZED_TYPE,
                      errors=[f"the payload could not be normalized ({type(exc).__name__}); it is stored as received"])


def family_of(payload: dict[str, Any]) -> Family:
    """Which of the five families a payload belongs to, by its shape (docs/SPEC.md §1)."""
    if "event_type" in payload:
        return "conversation"
    if "video_id" in payload:
        return "video_generation"
    if "objective_name" in payload:
        return "objective"
    props = payload.get("properties")
    if "conversation_id" in payload and isinstance(props, dict) and "guardrail" in props:
        return "guardrail"
    if "replica_id" in payload and "status" in payload and "conversation_id" not in payload:
        return "replica_training"
    return "unrecognized"


def _conversation(payload: dict[str, Any]) -> Event:
    errors: list[str] = []
    conversation_id = _plain_id(payload, "conversation_id", errors)
    time = _time(payload, "timestamp", errors)
    message_type = payload.get("message_type")
    if message_type is not None and not isinstance(message_type, str):
        errors.append("message_type: Input should be a valid string")
        message_type = None
    props = payload.get("properties")
    replica_id = _plain_id(props, "replica_id", errors, prefix="properties.", required=False) \
        if isinstance(props, dict) else None
    event_type = payload["event_type"]
    kind = CONVERSATION_TYPES.get(event_type) if type(event_type) is str else None
    if kind is None and not (isinstance(event_type, str) and len(event_type) <= _MAX_EVENT_TYPE
                             and _EVENT_TYPE.fullmatch(event_type)):
        errors.append("event_type: not a well-formed event type; expected dot-separated lower-case words "
                      "such as system.shutdown, at most 100 characters")
        return _event("conversation", INVALID_CONVERSATION_TYPE, message_type=message_type,
                      conversation_id=conversation_id, replica_id=replica_id, time=time, errors=errors,
                      details={"properties": props})
    if kind is None:  # a well-formed type this version does not know: a normal event, properties as received
        details: Details = {"properties": props}
    elif "properties" not in payload:
        errors.append("properties: Field required")
        details = {}
    else:
        details = _validate(kind, props, "properties.", errors)
        if "replica_id" in details:
            details["replica_id"] = replica_id
    return _event("conversation", f"{TYPE_PREFIX}conversation.{event_type}", event_type=event_type,
                  message_type=message_type, conversation_id=conversation_id, replica_id=replica_id, time=time,
                  errors=errors, details=details)


def _in_conversation(kind: EventKind, payload: dict[str, Any]) -> Event:
    """A guardrail or objective callback: about a conversation, of a fixed type."""
    errors: list[str] = []
    conversation_id = _plain_id(payload, "conversation_id", errors)
    time = _time(payload, "timestamp", errors)
    details = _validate(kind, payload, "", errors)
    return _event(kind.family, kind.type, conversation_id=conversation_id, time=time, errors=errors,
                  details=details)


def _replica_training(payload: dict[str, Any]) -> Event:
    errors: list[str] = []
    replica_id = _plain_id(payload, "replica_id", errors)
    time = _time(payload, "timestamp", errors)
    details = _validate(REPLICA_TRAINING, payload, "", errors)
    return _event("replica_training", f"{TYPE_PREFIX}replica.{status_part(payload.get('status'))}",
                  replica_id=replica_id, time=time, errors=errors, details=details)


def _video(payload: dict[str, Any]) -> Event:
    errors: list[str] = []
    video_id = _plain_id(payload, "video_id", errors)
    replica_id = _plain_id(payload, "replica_id", errors, required=False)
    details = _validate(VIDEO_GENERATION, payload, "", errors)
    created_at = _time(payload, "created_at", errors)
    updated_at = _time(payload, "updated_at", errors)
    if details:
        details["created_at"], details["updated_at"] = created_at, updated_at
    return _event("video_generation", f"{TYPE_PREFIX}video.{status_part(payload.get('status'))}",
                  replica_id=replica_id, video_id=video_id, time=updated_at or created_at, errors=errors,
                  details=details)


def _unrecognized(payload: dict[str, Any]) -> Event:
    # A time of the payload's own (when it has one it can be read from) puts the object in a day folder that
    # does not depend on the arrival date; nothing here is an error, the family is unknown.
    time = None
    for name in ("timestamp", "updated_at", "created_at"):
        time = to_utc_iso_or_none(payload.get(name))
        if time:
            break
    return _event("unrecognized", UNRECOGNIZED_TYPE, time=time, errors=[])


# ---------------------------------------------------------------------------------------------------
# helpers


def status_part(status: Any) -> str:
    """A status as the last part of a CloudEvents type: [a-z0-9_] only, `unknown` when there is nothing left."""
    return _status_part(status[:200]) if isinstance(status, str) else "unknown"


@lru_cache(maxsize=1024)
def _status_part(status: str) -> str:
    return _NOT_TYPE_CHARS.sub("_", status.lower()).strip("_")[:64] or "unknown"


def is_plain_id(value: Any) -> bool:
    """Letters, digits, '_' and '-', starting with a letter or digit, at most 128 characters: safe in a key."""
    return isinstance(value, str) and len(value) <= _MAX_ID and _plain_text(value)


@lru_cache(maxsize=4096)
def _plain_text(value: str) -> bool:
    # Memoized: a conversation's id and its replica's come back in each of its ~10 callbacks.
    return _PLAIN_ID.fullmatch(value) is not None


def _plain_id(container: dict[str, Any], name: str, errors: list[str], prefix: str = "",
              required: bool = True) -> str | None:
    value = container.get(name)
    if value is None:
        if required:
            errors.append(f"{prefix}{name}: Field required")
        return None
    if is_plain_id(value):
        return str(value)
    errors.append(f"{prefix}{name} is not a plain identifier "
                  "(letters, digits, '_' and '-', starting with a letter or digit, at most 128 characters)")
    return None


def _time(container: dict[str, Any], name: str, errors: list[str]) -> str | None:
    value = container.get(name)
    if value is None:
        return None
    try:
        return to_utc_iso(value)
    except TimeParseError as exc:
        errors.append(f"{name}: {exc}")
        return None


def _validate(kind: EventKind, raw: Any, prefix: str, errors: list[str]) -> Details:
    """Validate `raw` with the entry's payload model and build its details; on failure record the errors and
    keep the fields that were fine, as received."""
    assert kind.payload is not None
    failed: set[str] = set()
    try:
        return kind.details(kind.payload.model_validate(raw), raw)
    except Invalid as exc:
        errors.append(str(exc))
    except ValidationError as exc:
        failed = _add_errors(exc, prefix, errors)
    if not isinstance(raw, dict):
        return {}
    return {k: raw[k] for k in kind.payload.model_fields if k in raw and k not in failed}


def _add_errors(exc: ValidationError, prefix: str, errors: list[str]) -> set[str]:
    """Readable pydantic errors ('properties.transcript: Input should be a valid list'); the failed fields."""
    failed: set[str] = set()
    messages: dict[str, list[str]] = {}  # where -> messages, in the order pydantic reports them
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = err["loc"]
        if loc:
            failed.add(str(loc[0]))
        parts: list[str] = []
        member = None
        for part in loc:
            if isinstance(part, str) and part in _UNION_MEMBERS:
                member = _UNION_MEMBERS[part]
                break
            parts.append(str(part))
        where = (prefix + ".".join(parts)).rstrip(".") or "payload"
        if member is not None:  # a union reports one error per member: say it once, listing the members
            messages.setdefault(where, []).append(member)
        else:
            messages.setdefault(where, []).append(_OBJECT if err["type"] in _NOT_AN_OBJECT else err["msg"])
    for where, found in messages.items():
        if len(errors) >= _MAX_ERRORS:
            break
        if all(m in _UNION_MEMBERS.values() for m in found):
            errors.append(f"{where}: Input should be {', or '.join(dict.fromkeys(found))}")
        else:
            errors.extend(f"{where}: {m}" for m in dict.fromkeys(found))
    del errors[_MAX_ERRORS:]
    return failed


_OBJECT = "Input should be a JSON object"
_NOT_AN_OBJECT = frozenset({"dict_type", "model_type"})
# How pydantic names the members of a union in an error's location, and how to say them.
_UNION_MEMBERS = {"str": "a valid string", "int": "a valid integer", "float": "a valid number",
                  "bool": "a boolean", "dict[str,any]": "an object", "list[any]": "an array"}


def _event(family: Family, type_: str, *, errors: list[str], event_type: str | None = None,
           message_type: str | None = None, conversation_id: str | None = None, replica_id: str | None = None,
           video_id: str | None = None, time: str | None = None, details: Details | None = None) -> Event:
    details = details or {}
    # Validated fields are shallow by their model; raw ones (and all of a salvage) are checked.
    if errors or not _RAW_DETAIL_KEYS.isdisjoint(details):
        for key in [k for k in details if errors or k in _RAW_DETAIL_KEYS]:
            value = details[key]
            if isinstance(value, dict | list) and not _shallow(value, MAX_DETAIL_DEPTH):
                details[key] = None
                errors.append(f"{key}: nested deeper than {MAX_DETAIL_DEPTH} levels; kept in the stored payload only")
    return Event(family, type_, event_type, message_type, conversation_id, replica_id, video_id, time,
                 not errors, errors, details)


def _shallow(node: dict[str, Any] | list[Any], levels: int) -> bool:
    """Whether a JSON value nests arrays/objects at most `levels` deep (serializers stop near 255)."""
    if levels <= 0:
        return False
    for child in node.values() if isinstance(node, dict) else node:
        if isinstance(child, dict | list) and not _shallow(child, levels - 1):
            return False
    return True


def _kind(value: Any) -> str:
    """The JSON name of a decoded value's kind."""
    if value is None:
        return "null"
    return next((name for kind, name in _JSON_KINDS if isinstance(value, kind)), type(value).__name__)


_JSON_KINDS = ((bool, "boolean"), (int | float, "number"), (str, "string"), (list | tuple, "array"))
