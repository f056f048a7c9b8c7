"""The shapes of the five callback families and `normalize`, which turns any body into one typed Event.

Families are told apart by shape (SPEC §1). Each known conversation `event_type` has a shape of its
`properties`; the other families have a shape of the whole payload. `normalize` validates against the
shape once, builds the `details` every consumer relies on (the keys are a contract, see detail_models()),
and never raises: a payload that fails its schema becomes an Event with `valid=False` and readable errors.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from functools import cache, lru_cache, wraps
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic refuses typing.TypedDict before Python 3.12

from .recording import RecordingLocation, legacy_location, parse_storage_uri
from .times import TimeParseError, to_utc_iso, to_utc_iso_or_none

Family = Literal["conversation", "guardrail", "objective", "replica_training", "video_generation", "unrecognized"]


class Event(BaseModel):
    """A normalized callback: what it is, whom it is about, when, and its per-type fields in `details`."""

    # Built on first validation, not at import: the hot path sets checked fields directly (see _event).
    model_config = ConfigDict(frozen=True, defer_build=True)

    family: Family
    type: str = Field(description="CloudEvents type, e.g. io.tavus.conversation.system.shutdown")
    event_type: str | None = None
    message_type: str | None = None
    conversation_id: str | None = None
    replica_id: str | None = None
    video_id: str | None = None
    time: str | None = Field(default=None, description="UTC ISO-8601, e.g. 2025-07-11T06:45:47.472000Z")
    valid: bool = True
    errors: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)

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
# What arrives: the payload shapes, validated once per callback into plain dicts (a model instance per
# callback would cost more than the checks themselves). Unknown fields are ignored: the payload is
# stored whole anyway. A field declared Opt[...] may be missing, and is None then.

_V = TypeVar("_V")
Opt = Annotated[_V, Field(default=None)]
_PAYLOAD_CONFIG = ConfigDict(extra="ignore", allow_inf_nan=False)


@with_config(_PAYLOAD_CONFIG)
class ReplicaJoinedProperties(TypedDict):
    """`system.replica_joined`: the replica is ready for the conversation."""

    replica_id: Opt[Any]  # checked as a plain identifier by normalize


@with_config(_PAYLOAD_CONFIG)
class PalJoinedProperties(TypedDict):
    """`system.pal_joined` (observed): arrives beside replica_joined, names the face."""

    face_id: Opt[str | None]
    replica_id: Opt[Any]  # checked as a plain identifier by normalize


@with_config(_PAYLOAD_CONFIG)
class ShutdownProperties(TypedDict):
    """`system.shutdown`: the room shut down, for `shutdown_reason`."""

    replica_id: Opt[Any]  # checked as a plain identifier by normalize
    shutdown_reason: Opt[str | None]


@with_config(_PAYLOAD_CONFIG)
class TranscriptTurn(TypedDict):
    """One turn of a transcript; the per-turn timing fields only come with newer payloads."""

    role: str
    content: Opt[str | None]
    timestamp: Opt[Any]
    seconds_from_start: Opt[float | None]
    duration: Opt[float | None]
    inference_id: Opt[str | None]


@with_config(_PAYLOAD_CONFIG)
class TranscriptionReadyProperties(TypedDict):
    """`application.transcription_ready`: the conversation's chat history."""

    replica_id: Opt[Any]  # checked as a plain identifier by normalize
    transcript: list[TranscriptTurn]


@with_config(_PAYLOAD_CONFIG)
class RecordingReadyProperties(TypedDict):
    """`application.recording_ready`: `storage_provider` + `storage_uri`, or the legacy `bucket_name` + `s3_key`."""

    replica_id: Opt[Any]  # checked as a plain identifier by normalize
    storage_provider: Opt[str | None]
    storage_uri: Opt[str | None]
    bucket_name: Opt[str | None]
    s3_key: Opt[str | None]
    duration: Opt[float | None]


@with_config(_PAYLOAD_CONFIG)
class RecordingCopyFailedProperties(TypedDict):
    """`application.recording_copy_failed`: the vendor could not write the recording into the bucket."""

    replica_id: Opt[Any]  # checked as a plain identifier by normalize
    error_code: Opt[str | None]
    error_message: Opt[str | None]
    storage_provider: Opt[str | None]


@with_config(_PAYLOAD_CONFIG)
class PerceptionAnalysisProperties(TypedDict):
    """`application.perception_analysis`: the summary of what the replica saw (markdown text)."""

    replica_id: Opt[Any]  # checked as a plain identifier by normalize
    analysis: str | dict[str, Any] | list[Any]


@with_config(_PAYLOAD_CONFIG)
class PerceptionUnavailableProperties(TypedDict):
    """`application.perception_unavailable` (observed): no perception analysis, with a reason."""

    replica_id: Opt[Any]  # checked as a plain identifier by normalize
    reason: Opt[str | None]
    perception_unavailable_reason: Opt[str | None]
    message: Opt[str | None]


@with_config(_PAYLOAD_CONFIG)
class PostCallActionProperties(TypedDict):
    """`application.post_call_action_executed` (observed): a tool called after the conversation."""

    replica_id: Opt[Any]  # checked as a plain identifier by normalize
    tool_id: Opt[str | int | None]
    tool_name: Opt[str | None]
    status: Opt[str | None]
    request: Opt[Any]
    response: Opt[Any]


@with_config(_PAYLOAD_CONFIG)
class GuardrailProperties(TypedDict):
    guardrail: str


@with_config(_PAYLOAD_CONFIG)
class GuardrailPayload(TypedDict):
    """A guardrail was triggered during a conversation."""

    properties: GuardrailProperties


@with_config(_PAYLOAD_CONFIG)
class ObjectivePayload(TypedDict):
    """An objective was completed during a conversation, with the variables it collected."""

    objective_name: str
    output_variables: Opt[dict[str, Any] | None]


@with_config(_PAYLOAD_CONFIG)
class ReplicaTrainingPayload(TypedDict):
    """Replica training finished: `ready`, or `error` with a message."""

    status: str
    error_message: Opt[str | None]


@with_config(_PAYLOAD_CONFIG)
class VideoData(TypedDict):
    script: Opt[str | None]


@with_config(_PAYLOAD_CONFIG)
class VideoGenerationPayload(TypedDict):
    """Video generation finished (`ready`) or failed (`error`)."""

    video_name: Opt[str | None]
    status: str
    status_details: Opt[str | None]
    generation_progress: Opt[str | None]
    download_url: Opt[str | None]
    hosted_url: Opt[str | None]
    stream_url: Opt[str | None]
    data: Opt[VideoData | None]
    created_at: Opt[Any]
    updated_at: Opt[Any]


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
Shape = type  # one of the TypedDicts above

# event_type -> (shape of its properties, builder of its details)
CONVERSATION_TYPES: dict[str, tuple[Shape, _Builder]] = {
    "system.replica_joined": (ReplicaJoinedProperties, _replica_joined),
    "system.pal_joined": (PalJoinedProperties, _pal_joined),
    "system.shutdown": (ShutdownProperties, _shutdown),
    "application.transcription_ready": (TranscriptionReadyProperties, _transcription_ready),
    "application.recording_ready": (RecordingReadyProperties, _recording_ready),
    "application.recording_copy_failed": (RecordingCopyFailedProperties, _recording_copy_failed),
    "application.perception_analysis": (PerceptionAnalysisProperties, _perception_analysis),
    "application.perception_unavailable": (PerceptionUnavailableProperties, _perception_unavailable),
    "application.post_call_action_executed": (PostCallActionProperties, _post_call_action),
}
FAMILY_SHAPES: list[Shape] = [GuardrailPayload, ObjectivePayload, ReplicaTrainingPayload, VideoGenerationPayload]


class _Validators(dict[Shape, Callable[[Any], Any]]):
    """shape -> its validator, which returns a plain dict with every field (None for a missing Opt field).

    Each validator is built the first time its shape is needed, not at import: a cold start pays
    for the one or two shapes its first callback uses, not for all of them.
    """

    def __missing__(self, shape: Shape) -> Callable[[Any], Any]:
        validator: Callable[[Any], Any] = TypeAdapter(shape).validator.validate_python
        self[shape] = validator  # two threads may both build it: the same validator, harmlessly
        return validator


_CHECK = _Validators()


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
    details = _validate(GuardrailPayload, _guardrail_details, payload, "", errors)
    return _event("guardrail", GUARDRAIL_TYPE, conversation_id=conversation_id, time=time, errors=errors,
                  details=details)


def _guardrail_details(m: GuardrailPayload, raw: dict[str, Any]) -> Details:
    return {"guardrail": m["properties"]["guardrail"]}


def _objective(payload: dict[str, Any]) -> Event:
    errors: list[str] = []
    conversation_id = _plain_id(payload, "conversation_id", errors)
    time = _time(payload, "timestamp", errors)
    details = _validate(ObjectivePayload, _objective_details, payload, "", errors)
    return _event("objective", OBJECTIVE_TYPE, conversation_id=conversation_id, time=time, errors=errors,
                  details=details)


def _objective_details(m: ObjectivePayload, raw: dict[str, Any]) -> Details:
    return {"objective_name": m["objective_name"], "output_variables": m["output_variables"]}


def _replica_training(payload: dict[str, Any]) -> Event:
    errors: list[str] = []
    replica_id = _plain_id(payload, "replica_id", errors)
    time = _time(payload, "timestamp", errors)
    details = _validate(ReplicaTrainingPayload, _replica_training_details, payload, "", errors)
    return _event("replica_training", f"{TYPE_PREFIX}replica.{status_part(payload.get('status'))}",
                  replica_id=replica_id, time=time, errors=errors, details=details)


def _replica_training_details(m: ReplicaTrainingPayload, raw: dict[str, Any]) -> Details:
    return {"status": m["status"], "error_message": m["error_message"]}


def _video(payload: dict[str, Any]) -> Event:
    errors: list[str] = []
    video_id = _plain_id(payload, "video_id", errors)
    replica_id = _plain_id(payload, "replica_id", errors, required=False)
    details = _validate(VideoGenerationPayload, _video_details, payload, "", errors)
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
        return build(_CHECK[shape](raw), raw)
    except ValidationError as exc:
        failed = _add_errors(exc, prefix, errors)
        return _salvage(shape, raw, failed)
    except _Invalid as exc:
        errors.append(str(exc))
        return _salvage(shape, raw, set())


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
    return {k: raw[k] for k in shape.__annotations__ if k in raw and k not in failed}


def _event(family: Family, type_: str, *, errors: list[str], event_type: str | None = None,
           message_type: str | None = None, conversation_id: str | None = None, replica_id: str | None = None,
           video_id: str | None = None, time: str | None = None, details: Details | None = None) -> Event:
    # Every value here is already checked, so this is Event.model_construct minus its per-field loop: it sets the
    # same four attributes. Tests hold it to Event.model_validate(event.model_dump()) == event.
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
    _set_fields_set(event, set(_EVENT_FIELDS))
    _set_extra(event, None)
    _set_private(event, None)
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
# The setters of BaseModel's four slots (what object.__setattr__ would look up on every call).
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_EVENT_FIELDS = frozenset(Event.model_fields)


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
# What comes out: the details models, for the JSON Schema (built on first use: they cost import time).


@cache
def detail_models() -> dict[str, type[BaseModel]]:
    """CloudEvents type -> the model of `details` for a valid event of that type."""
    return dict(_build_detail_models())


def _build_detail_models() -> list[tuple[str, type[BaseModel]]]:
    deferred = ConfigDict(defer_build=True)

    class ReplicaJoinedDetails(BaseModel):
        """system.replica_joined"""

        model_config = deferred
        replica_id: str | None

    class PalJoinedDetails(BaseModel):
        """system.pal_joined"""

        model_config = deferred
        face_id: str | None
        replica_id: str | None

    class ShutdownDetails(BaseModel):
        """system.shutdown: the original text and its stable code (internal_error keeps the step)."""

        model_config = deferred
        replica_id: str | None
        shutdown_reason: str | None
        shutdown_code: Literal["max_call_duration", "participant_left_timeout", "participant_absent_timeout",
                               "bot_could_not_join_meeting", "daily_room_deleted", "startup_exception",
                               "end_conversation_endpoint_hit", "internal_error", "other"]
        shutdown_step: str | None

    class TranscriptTurnDetails(BaseModel):
        """One transcript turn; timestamp normalized to UTC."""

        model_config = deferred
        role: str
        content: str | None
        timestamp: str | None
        seconds_from_start: float | None
        duration: float | None
        inference_id: str | None

    class TranscriptionReadyDetails(BaseModel):
        """application.transcription_ready, with the turns counted."""

        model_config = deferred
        replica_id: str | None
        transcript: list[TranscriptTurnDetails]
        messages: int
        user_turns: int
        assistant_turns: int
        system_messages: int

    class RecordingReadyDetails(BaseModel):
        """application.recording_ready: where the recording is (legacy = from bucket_name + s3_key)."""

        model_config = deferred
        storage_provider: Literal["s3", "gcs", "azure_blob"]
        storage_uri: str
        bucket: str
        key: str
        account: str | None
        duration: float | None
        legacy: bool
        replica_id: str | None

    class RecordingCopyFailedDetails(BaseModel):
        """application.recording_copy_failed"""

        model_config = deferred
        error_code: str | None
        error_message: str | None
        storage_provider: str | None
        replica_id: str | None

    class PerceptionAnalysisDetails(BaseModel):
        """application.perception_analysis"""

        model_config = deferred
        replica_id: str | None
        analysis: str | dict[str, Any] | list[Any]

    class PerceptionUnavailableDetails(BaseModel):
        """application.perception_unavailable"""

        model_config = deferred
        replica_id: str | None
        reason: str | None

    class PostCallActionDetails(BaseModel):
        """application.post_call_action_executed"""

        model_config = deferred
        tool_id: str | int | None
        tool_name: str | None
        status: str | None
        request: Any
        response: Any
        replica_id: str | None

    class UnknownConversationDetails(BaseModel):
        """A conversation event_type this version does not know yet: its properties as received."""

        model_config = deferred
        properties: Any

    class GuardrailDetails(BaseModel):
        """io.tavus.guardrail.triggered"""

        model_config = deferred
        guardrail: str

    class ObjectiveDetails(BaseModel):
        """io.tavus.objective.completed"""

        model_config = deferred
        objective_name: str
        output_variables: dict[str, Any] | None

    class ReplicaTrainingDetails(BaseModel):
        """io.tavus.replica.<status>"""

        model_config = deferred
        status: str
        error_message: str | None

    class VideoGenerationDetails(BaseModel):
        """io.tavus.video.<status>; created_at and updated_at normalized to UTC."""

        model_config = deferred
        video_name: str | None
        status: str
        status_details: str | None
        generation_progress: str | None
        download_url: str | None
        hosted_url: str | None
        stream_url: str | None
        script: str | None
        created_at: str | None
        updated_at: str | None

    conv = f"{TYPE_PREFIX}conversation."
    return [
        (f"{conv}system.replica_joined", ReplicaJoinedDetails),
        (f"{conv}system.pal_joined", PalJoinedDetails),
        (f"{conv}system.shutdown", ShutdownDetails),
        (f"{conv}application.transcription_ready", TranscriptionReadyDetails),
        (f"{conv}application.recording_ready", RecordingReadyDetails),
        (f"{conv}application.recording_copy_failed", RecordingCopyFailedDetails),
        (f"{conv}application.perception_analysis", PerceptionAnalysisDetails),
        (f"{conv}application.perception_unavailable", PerceptionUnavailableDetails),
        (f"{conv}application.post_call_action_executed", PostCallActionDetails),
        (f"{conv}*", UnknownConversationDetails),
        (GUARDRAIL_TYPE, GuardrailDetails),
        (OBJECTIVE_TYPE, ObjectiveDetails),
        (f"{TYPE_PREFIX}replica.*", ReplicaTrainingDetails),
        (f"{TYPE_PREFIX}video.*", VideoGenerationDetails),
    ]


def details_model_for(event: Event) -> type[BaseModel] | None:
    """The model `event.details` follows, or None for an invalid or unrecognized event (free-form salvage)."""
    if not event.valid or event.family == "unrecognized":
        return None
    models = detail_models()
    if event.type in models:
        return models[event.type]
    family_wildcard = {"conversation": "conversation.*", "replica_training": "replica.*",
                       "video_generation": "video.*"}.get(event.family)
    return models.get(f"{TYPE_PREFIX}{family_wildcard}") if family_wildcard else None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a normalized Event, with the model of `details` per type under `$defs`."""
    return copy.deepcopy(_json_schema())


def payload_json_schema() -> dict[str, Any]:
    """The JSON Schema of the callbacks as they arrive: one of the five families, or any other JSON object."""
    return copy.deepcopy(_payload_json_schema())


@cache
def _json_schema() -> dict[str, Any]:
    from pydantic.json_schema import models_json_schema

    schema = Event.model_json_schema(mode="serialization")
    models = detail_models()
    _, defs = models_json_schema([(m, "serialization") for m in models.values()], ref_template="#/$defs/{model}")
    schema.setdefault("$defs", {}).update(defs.get("$defs", {}))
    schema["properties"]["details"]["description"] = (
        "Per-type fields: see x-details-by-type. An invalid event holds what could be salvaged.")
    schema["x-details-by-type"] = {t: f"#/$defs/{m.__name__}" for t, m in models.items()}
    conditions: list[dict[str, Any]] = []
    for type_, model in models.items():
        match: dict[str, Any] = ({"const": type_} if not type_.endswith("*")
                                 else {"pattern": f"^{re.escape(type_[:-1])}"})
        conditions.append({
            "if": {"properties": {"type": match, "valid": {"const": True}}, "required": ["type", "valid"]},
            "then": {"properties": {"details": {"$ref": f"#/$defs/{model.__name__}"}}},
        })
    # Known conversation types match both their own entry and the wildcard; exclude them from the wildcard.
    known = [f"{TYPE_PREFIX}conversation.{t}" for t in CONVERSATION_TYPES]
    for cond in conditions:
        if cond["if"]["properties"]["type"].get("pattern") == f"^{re.escape(TYPE_PREFIX + 'conversation.')}":
            cond["if"]["not"] = {"properties": {"type": {"enum": [*known, INVALID_CONVERSATION_TYPE]}}}
    schema["allOf"] = conditions
    return schema


@cache
def _payload_json_schema() -> dict[str, Any]:
    class ConversationCallback(BaseModel):
        """A conversation callback; `properties` depends on `event_type`, see x-properties-by-event-type."""

        model_config = ConfigDict(extra="allow", defer_build=True)
        conversation_id: str
        event_type: str
        message_type: str | None = None
        webhook_url: str | None = None
        timestamp: str | float | None = None
        properties: dict[str, Any] | None = None

    families: list[type] = [ConversationCallback, *FAMILY_SHAPES]
    props = [shape for shape, _ in CONVERSATION_TYPES.values()]
    _, defs = TypeAdapter.json_schemas([(m, "validation", TypeAdapter(m)) for m in [*families, *props]],
                                       ref_template="#/$defs/{model}")
    return {
        "title": "TavusCallback",
        "description": "Any JSON object is accepted; these are the families told apart by shape.",
        "anyOf": [*({"$ref": f"#/$defs/{m.__name__}"} for m in families), {"type": "object"}],
        "$defs": defs.get("$defs", {}),
        "x-properties-by-event-type": {t: f"#/$defs/{m.__name__}" for t, (m, _) in CONVERSATION_TYPES.items()},
    }
