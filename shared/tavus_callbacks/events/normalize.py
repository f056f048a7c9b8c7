"""`normalize`, which turns any callback body into one typed Event, and the Event itself.

Families are told apart by shape (SPEC §1). Each known conversation `event_type` has a shape of its
`properties`; the other families have a shape of the whole payload (shapes.py). `normalize` validates against
the shape once, builds the `details` every consumer relies on (the keys are a contract, see detail_models()),
and never raises: a payload that fails its schema becomes an Event with `valid=False` and readable errors.
Nothing here imports pydantic: a cold start pays for the checks it runs, not for pydantic's machinery.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, wraps
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from tavus_callbacks.events.plain_validator import NOT_PLAIN, compile_plain
from tavus_callbacks.events.times import TimeParseError, to_utc_iso, to_utc_iso_or_none

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic_core import ValidationError

    from tavus_callbacks.events.recording import RecordingLocation
    from tavus_callbacks.events.shapes import (
        GuardrailPayload,
        ObjectivePayload,
        PalJoinedProperties,
        PerceptionAnalysisProperties,
        PerceptionUnavailableProperties,
        PostCallActionProperties,
        RecordingCopyFailedProperties,
        RecordingReadyProperties,
        ReplicaJoinedProperties,
        ReplicaTrainingPayload,
        ShutdownProperties,
        TranscriptionReadyProperties,
        VideoGenerationPayload,
    )

Family = Literal["conversation", "guardrail", "objective", "replica_training", "video_generation", "unrecognized"]


@dataclass(frozen=True)
class Event:
    """A normalized callback: what it is, whom it is about, when, and its per-type fields in `details`."""

    # A plain dataclass, so that normalizing needs no pydantic; pydantic still gives its JSON Schema (with
    # these attribute docstrings as descriptions), and validates and dumps it: see model_validate/model_dump.
    __pydantic_config__: ClassVar[dict[str, Any]] = {"use_attribute_docstrings": True}

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
        from tavus_callbacks.events.schema import event_adapter

        return event_adapter().validate_python(data)

    def model_dump(self, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        """The fields as a new dict, as pydantic dumps them (mode="json": NaN and infinities become null)."""
        from tavus_callbacks.events.schema import event_adapter

        dumped: dict[str, Any] = event_adapter().dump_python(self, mode=mode)
        return dumped


TYPE_PREFIX = "io.tavus."
UNRECOGNIZED_TYPE = "io.tavus.unrecognized"
INVALID_CONVERSATION_TYPE = "io.tavus.conversation.invalid"
GUARDRAIL_TYPE = "io.tavus.guardrail.triggered"
OBJECTIVE_TYPE = "io.tavus.objective.completed"

_MAX_ID = 128
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*")
_MAX_EVENT_TYPE = 100
_NOT_TYPE_CHARS = re.compile(r"[^a-z0-9_]+")
_MAX_ERRORS = 20
MAX_DETAIL_DEPTH = 100  # raw values copied into details nest at most this deep; the payload keeps the rest


# ---------------------------------------------------------------------------------------------------
# Memoized pure functions of short texts that come back in callback after callback.

_T = TypeVar("_T")
_MAX_MEMO_TEXT = 200  # longer texts are worked out each time: a cache of them would hold whole bodies


def _memo_text(fn: Callable[[Any], _T]) -> Callable[[Any], _T]:
    """Memoize `fn` for short texts (shutdown reasons, statuses: a handful of values in practice)."""
    memo = lru_cache(maxsize=1024)(fn)

    @wraps(fn)
    def call(value: Any) -> _T:
        return memo(value) if type(value) is str and len(value) <= _MAX_MEMO_TEXT else fn(value)

    return call


# ---------------------------------------------------------------------------------------------------
# system.shutdown reasons to stable codes.

SHUTDOWN_CODES: dict[str, str] = {
    "max_call_duration": "max_call_duration",
    "participant_left_timeout": "participant_left_timeout",
    "participant_absent_timeout": "participant_absent_timeout",
    "bot_could_not_join_meeting_it_was_probably_ended": "bot_could_not_join_meeting",
    "bot_could_not_join_meeting": "bot_could_not_join_meeting",
    "daily_room_has_been_deleted": "daily_room_deleted",
    "daily_room_deleted": "daily_room_deleted",
    "exception_encountered_during_conversation_startup": "startup_exception",
    "end_conversation_endpoint_hit": "end_conversation_endpoint_hit",
}
_INTERNAL_ERROR = re.compile(r"internal[ _]error[ _]occurred[ _]at[ _]step(?:[ _]+(.*))?", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")


@_memo_text
def shutdown_code(reason: str | None) -> tuple[str, str | None]:
    """A `shutdown_reason` text as (stable code, step); the step only for `internal error occurred at step x`."""
    if reason is None:
        return "other", None
    text = _SPACES.sub(" ", reason).strip()
    internal = _INTERNAL_ERROR.fullmatch(text)
    if internal:
        return "internal_error", (internal.group(1) or "").strip() or None
    key = text.lower()
    for suffix in (" reached", "_reached"):
        key = key.removesuffix(suffix)
    return SHUTDOWN_CODES.get(key.strip(), "other"), None


# ---------------------------------------------------------------------------------------------------
# Per-type details of conversation events: validated properties -> the `details` dict.

Details = dict[str, Any]


def _replica_joined(m: ReplicaJoinedProperties, raw: dict[str, Any]) -> Details:
    return {"replica_id": m["replica_id"]}


def _pal_joined(m: PalJoinedProperties, raw: dict[str, Any]) -> Details:
    return {"face_id": m["face_id"], "replica_id": m["replica_id"]}


def _shutdown(m: ShutdownProperties, raw: dict[str, Any]) -> Details:
    reason = m["shutdown_reason"]
    code, step = shutdown_code(reason)
    return {"replica_id": m["replica_id"], "shutdown_reason": reason, "shutdown_code": code, "shutdown_step": step}


def _transcription_ready(m: TranscriptionReadyProperties, raw: dict[str, Any]) -> Details:
    turns = []
    user = assistant = system = 0
    for t in m["transcript"]:
        role = t["role"]
        if role == "user":
            user += 1
        elif role == "assistant":
            assistant += 1
        elif role == "system":
            system += 1
        turns.append({"role": role, "content": t["content"], "timestamp": to_utc_iso_or_none(t["timestamp"]),
                      "seconds_from_start": t["seconds_from_start"], "duration": t["duration"],
                      "inference_id": t["inference_id"]})
    return {"replica_id": m["replica_id"], "transcript": turns, "messages": len(turns), "user_turns": user,
            "assistant_turns": assistant, "system_messages": system}


class _Invalid(Exception):
    """A field that passed its type check but not its meaning; becomes an entry of Event.errors."""


def _recording_ready(m: RecordingReadyProperties, raw: dict[str, Any]) -> Details:
    from tavus_callbacks.events.recording import (  # on first use: 1 callback of ~10 per conversation
        legacy_location,
        parse_storage_uri,
    )

    location: RecordingLocation | None
    storage_uri, bucket_name, s3_key = m["storage_uri"], m["bucket_name"], m["s3_key"]
    if storage_uri is not None:
        legacy = False
        location = parse_storage_uri(storage_uri)
        if location is None:
            raise _Invalid("properties.storage_uri: not a recording location; expected s3://bucket/key, "
                           "gs://bucket/key or https://<account>.blob.core.windows.net/<container>/<blob>")
        uri = storage_uri.strip()
    elif bucket_name is not None or s3_key is not None:
        legacy = True
        location = legacy_location(bucket_name or "", s3_key or "")
        if location is None:
            raise _Invalid("properties: the legacy recording location needs both bucket_name and s3_key")
        uri = location.uri
    else:
        raise _Invalid("properties: no recording location; expected storage_uri, or bucket_name and s3_key")
    return {"storage_provider": location.provider, "storage_uri": uri, "bucket": location.bucket,
            "key": location.key, "account": location.account, "duration": m["duration"], "legacy": legacy,
            "replica_id": m["replica_id"]}


def _recording_copy_failed(m: RecordingCopyFailedProperties, raw: dict[str, Any]) -> Details:
    return {"error_code": m["error_code"], "error_message": m["error_message"],
            "storage_provider": m["storage_provider"], "replica_id": m["replica_id"]}


def _perception_analysis(m: PerceptionAnalysisProperties, raw: dict[str, Any]) -> Details:
    return {"replica_id": m["replica_id"], "analysis": m["analysis"]}


def _perception_unavailable(m: PerceptionUnavailableProperties, raw: dict[str, Any]) -> Details:
    reason = m["reason"] or m["perception_unavailable_reason"] or m["message"]
    if reason is None:
        reason = next((v for k, v in raw.items() if k != "replica_id" and isinstance(v, str)), None)
    return {"replica_id": m["replica_id"], "reason": reason}


def _post_call_action(m: PostCallActionProperties, raw: dict[str, Any]) -> Details:
    return {"tool_id": m["tool_id"], "tool_name": m["tool_name"], "status": m["status"], "request": m["request"],
            "response": m["response"], "replica_id": m["replica_id"]}


_Builder = Callable[[Any, dict[str, Any]], Details]
Shape = str  # the name of a payload shape in shapes.py (a TypedDict)

# event_type -> (shape of its properties, builder of its details)
CONVERSATION_TYPES: dict[str, tuple[Shape, _Builder]] = {
    "system.replica_joined": ("ReplicaJoinedProperties", _replica_joined),
    "system.pal_joined": ("PalJoinedProperties", _pal_joined),
    "system.shutdown": ("ShutdownProperties", _shutdown),
    "application.transcription_ready": ("TranscriptionReadyProperties", _transcription_ready),
    "application.recording_ready": ("RecordingReadyProperties", _recording_ready),
    "application.recording_copy_failed": ("RecordingCopyFailedProperties", _recording_copy_failed),
    "application.perception_analysis": ("PerceptionAnalysisProperties", _perception_analysis),
    "application.perception_unavailable": ("PerceptionUnavailableProperties", _perception_unavailable),
    "application.post_call_action_executed": ("PostCallActionProperties", _post_call_action),
}
FAMILY_SHAPES: tuple[Shape, ...] = ("GuardrailPayload", "ObjectivePayload", "ReplicaTrainingPayload",
                                    "VideoGenerationPayload")


@lru_cache(maxsize=1)
def _core_schemas() -> dict[str, Any]:
    """Shape name -> its pydantic-core schema, generated from shapes.py into _core_schemas.json."""
    import os

    import orjson

    with open(os.path.join(os.path.dirname(__file__), "_core_schemas.json"), "rb") as file:
        schemas: dict[str, Any] = orjson.loads(file.read())
    return schemas


class _Validators(dict[Shape, Callable[[Any], Any]]):
    """shape -> a validator returning a plain dict with every field (None for a missing Opt field) or NOT_PLAIN.

    Both are what TypeAdapter(shape) would validate with, without pydantic's import and schema generation:
    `_CHECK` checks plainly valid input in Python (plain_validator.py: a cold start's first callback usually
    loads no pydantic-core) and answers NOT_PLAIN for the rest, which `_FULL`, pydantic-core's validator of
    the same schema, then decides, wording the errors. Each is made the first time its shape is needed.
    """

    def __init__(self, full: bool) -> None:
        super().__init__()
        self.full = full

    def __missing__(self, shape: Shape) -> Callable[[Any], Any]:
        schema = _core_schemas()[shape]
        validator = None if self.full else compile_plain(schema)
        if validator is None:  # also for a schema the plain check declines
            from pydantic_core import SchemaValidator

            validator = SchemaValidator(schema).validate_python
        self[shape] = validator  # two threads may both build it: the same validator, harmlessly
        return validator


_CHECK = _Validators(full=False)
_FULL = _Validators(full=True)


def _validation_error() -> type[ValidationError]:
    from pydantic_core import ValidationError

    return ValidationError


# ---------------------------------------------------------------------------------------------------
# normalize


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
        if family == "objective":
            return _objective(payload)
        if family == "guardrail":
            return _guardrail(payload)
        if family == "replica_training":
            return _replica_training(payload)
        return _unrecognized(payload)
    except Exception as exc:  # never reached by a JSON value; a last guard so a callback is still stored
        return _event("unrecognized", UNRECOGNIZED_TYPE,
                      errors=[f"the payload could not be normalized ({type(exc).__name__}); it is stored as received"])


def family_of(payload: dict[str, Any]) -> Family:
    """Which of the five families a payload belongs to, by its shape (SPEC §1)."""
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
    known = CONVERSATION_TYPES.get(event_type) if type(event_type) is str else None
    if known is None and not (isinstance(event_type, str) and len(event_type) <= _MAX_EVENT_TYPE
                              and _EVENT_TYPE.fullmatch(event_type)):
        errors.append("event_type: not a well-formed event type; expected dot-separated lower-case words "
                      "such as system.shutdown, at most 100 characters")
        return _event("conversation", INVALID_CONVERSATION_TYPE, message_type=message_type,
                      conversation_id=conversation_id, replica_id=replica_id, time=time, errors=errors,
                      details={"properties": props})
    if known is None:
        details: Details = {"properties": props}
    elif "properties" not in payload:
        errors.append("properties: Field required")
        details = {}
    else:
        details = _validate(known[0], known[1], props, "properties.", errors)
        if "replica_id" in details:
            details["replica_id"] = replica_id
    return _event("conversation", f"{TYPE_PREFIX}conversation.{event_type}", event_type=event_type,
                  message_type=message_type, conversation_id=conversation_id, replica_id=replica_id, time=time,
                  errors=errors, details=details)


def _guardrail(payload: dict[str, Any]) -> Event:
    errors: list[str] = []
    conversation_id = _plain_id(payload, "conversation_id", errors)
    time = _time(payload, "timestamp", errors)
    details = _validate("GuardrailPayload", _guardrail_details, payload, "", errors)
    return _event("guardrail", GUARDRAIL_TYPE, conversation_id=conversation_id, time=time, errors=errors,
                  details=details)


def _guardrail_details(m: GuardrailPayload, raw: dict[str, Any]) -> Details:
    return {"guardrail": m["properties"]["guardrail"]}


def _objective(payload: dict[str, Any]) -> Event:
    errors: list[str] = []
    conversation_id = _plain_id(payload, "conversation_id", errors)
    time = _time(payload, "timestamp", errors)
    details = _validate("ObjectivePayload", _objective_details, payload, "", errors)
    return _event("objective", OBJECTIVE_TYPE, conversation_id=conversation_id, time=time, errors=errors,
                  details=details)


def _objective_details(m: ObjectivePayload, raw: dict[str, Any]) -> Details:
    return {"objective_name": m["objective_name"], "output_variables": m["output_variables"]}


def _replica_training(payload: dict[str, Any]) -> Event:
    errors: list[str] = []
    replica_id = _plain_id(payload, "replica_id", errors)
    time = _time(payload, "timestamp", errors)
    details = _validate("ReplicaTrainingPayload", _replica_training_details, payload, "", errors)
    return _event("replica_training", f"{TYPE_PREFIX}replica.{status_part(payload.get('status'))}",
                  replica_id=replica_id, time=time, errors=errors, details=details)


def _replica_training_details(m: ReplicaTrainingPayload, raw: dict[str, Any]) -> Details:
    return {"status": m["status"], "error_message": m["error_message"]}


def _video(payload: dict[str, Any]) -> Event:
    errors: list[str] = []
    video_id = _plain_id(payload, "video_id", errors)
    replica_id = _plain_id(payload, "replica_id", errors, required=False)
    details = _validate("VideoGenerationPayload", _video_details, payload, "", errors)
    created_at = _time(payload, "created_at", errors)
    updated_at = _time(payload, "updated_at", errors)
    if details:
        details["created_at"], details["updated_at"] = created_at, updated_at
    return _event("video_generation", f"{TYPE_PREFIX}video.{status_part(payload.get('status'))}",
                  replica_id=replica_id, video_id=video_id, time=updated_at or created_at, errors=errors,
                  details=details)


def _video_details(m: VideoGenerationPayload, raw: dict[str, Any]) -> Details:
    data = m["data"]
    return {"video_name": m["video_name"], "status": m["status"], "status_details": m["status_details"],
            "generation_progress": m["generation_progress"], "download_url": m["download_url"],
            "hosted_url": m["hosted_url"], "stream_url": m["stream_url"],
            "script": data["script"] if data is not None else None, "created_at": None, "updated_at": None}


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


@_memo_text
def status_part(status: Any) -> str:
    """A status as the last part of a CloudEvents type: [a-z0-9_] only, `unknown` when there is nothing left."""
    if not isinstance(status, str):
        return "unknown"
    return _NOT_TYPE_CHARS.sub("_", status[:200].lower()).strip("_")[:64] or "unknown"


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


def _validate(shape: Shape, build: _Builder, raw: Any, prefix: str, errors: list[str]) -> Details:
    """Validate `raw` against `shape` and build the details; on failure record the errors and salvage."""
    try:
        validated = _CHECK[shape](raw)
        if validated is NOT_PLAIN:
            validated = _FULL[shape](raw)
        return build(validated, raw)
    except _Invalid as exc:
        errors.append(str(exc))
        return _salvage(shape, raw, set())
    except _validation_error() as exc:  # looked up only when something was raised
        failed = _add_errors(exc, prefix, errors)
        return _salvage(shape, raw, failed)


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
            messages.setdefault(where, []).append(_OBJECT if err["type"] == "dict_type" else err["msg"])
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
# How pydantic names the members of a union in an error's location, and how to say them.
_UNION_MEMBERS = {"str": "a valid string", "int": "a valid integer", "float": "a valid number",
                  "bool": "a boolean", "dict[str,any]": "an object", "list[any]": "an array"}


def _salvage(shape: Shape, raw: Any, failed: set[str]) -> Details:
    """The fields of a failed payload that were fine, as received."""
    if not isinstance(raw, dict) or "" in failed:
        return {}
    return {k: raw[k] for k in _core_schemas()[shape]["fields"] if k in raw and k not in failed}


def _event(family: Family, type_: str, *, errors: list[str], event_type: str | None = None,
           message_type: str | None = None, conversation_id: str | None = None, replica_id: str | None = None,
           video_id: str | None = None, time: str | None = None, details: Details | None = None) -> Event:
    # Every value here is already checked, so the fields are set in one go, not through the frozen __setattr__.
    # Tests hold it to Event.model_validate(event.model_dump()) == event.
    details = details or {}
    # Validated fields are shallow by their model; raw ones (and all of a salvage) are checked.
    if errors or not _RAW_DETAIL_KEYS.isdisjoint(details):
        for key in [k for k in details if errors or k in _RAW_DETAIL_KEYS]:
            value = details[key]
            if isinstance(value, dict | list) and not _shallow(value, MAX_DETAIL_DEPTH):
                details[key] = None
                errors.append(f"{key}: nested deeper than {MAX_DETAIL_DEPTH} levels; kept in the stored payload only")
    event = _new(Event)
    _set_dict(event, {"family": family, "type": type_, "event_type": event_type, "message_type": message_type,
                      "conversation_id": conversation_id, "replica_id": replica_id, "video_id": video_id,
                      "time": time, "valid": not errors, "errors": errors, "details": details})
    return event


def _shallow(node: dict[str, Any] | list[Any], levels: int) -> bool:
    """Whether a JSON value nests arrays/objects at most `levels` deep (serializers stop near 255)."""
    if levels <= 0:
        return False
    for child in node.values() if isinstance(node, dict) else node:
        if isinstance(child, dict | list) and not _shallow(child, levels - 1):
            return False
    return True


_RAW_DETAIL_KEYS = frozenset({"properties", "output_variables", "request", "response", "analysis"})
_new = object.__new__
_set_dict = Event.__dict__["__dict__"].__set__  # an instance's whole __dict__ at once


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


# ---------------------------------------------------------------------------------------------------
# What comes out, as JSON Schema: built by pydantic in schemas.py, imported only when asked for.


def detail_models() -> dict[str, type[BaseModel]]:
    """CloudEvents type -> the model of `details` for a valid event of that type."""
    from tavus_callbacks.events.schema import detail_models

    return detail_models()


def details_model_for(event: Event) -> type[BaseModel] | None:
    """The model `event.details` follows, or None for an invalid or unrecognized event (free-form salvage)."""
    from tavus_callbacks.events.schema import details_model_for

    return details_model_for(event)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a normalized Event, with the model of `details` per type under `$defs`."""
    from tavus_callbacks.events.schema import json_schema

    return json_schema()


def payload_json_schema() -> dict[str, Any]:
    """The JSON Schema of the callbacks as they arrive: one of the five families, or any other JSON object."""
    from tavus_callbacks.events.schema import payload_json_schema

    return payload_json_schema()
