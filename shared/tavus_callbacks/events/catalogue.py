"""Every event type this version knows: one registry entry each (registry.py says what an entry holds).

Adding a type is adding an entry here (listed in KINDS), a sample payload under samples/ and its expected
normalization in the tests (README: "Adding an event type"). A payload model's `replica_id` is `Any`:
normalize checks it as a plain identifier itself.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Literal

from tavus_callbacks.events.display import duration, size, when
from tavus_callbacks.events.recording import legacy_location, parse_storage_uri, remediation
from tavus_callbacks.events.registry import (
    TYPE_PREFIX,
    Details,
    DetailsModel,
    Document,
    EventKind,
    Facts,
    Found,
    Invalid,
    Line,
    Payload,
    Sample,
    StateDict,
    StateField,
    conversation,
    event_kind,
    pick,
)
from tavus_callbacks.events.times import to_utc_iso_or_none

Entry = dict[str, Any]  # one event's line in the conversation state (state/fold.py entry_for)


def _mark(entry: Entry, **fields: Any) -> dict[str, Any]:
    """The fields, with when and by which event: what the state keeps of the winning event."""
    return {**fields, "at": entry.get("time"), "event_id": entry["id"]}


# -- system.replica_joined ---------------------------------------------------------------------------

class ReplicaJoinedProperties(Payload):
    """`system.replica_joined`: the replica is ready for the conversation."""

    replica_id: Any = None


def _fold_replica_joined(state: StateDict, entry: Entry) -> None:
    state["joined_at"] = state["joined_at"] or entry.get("time")
    if state["joined_at"] and state["status"] != "ended":
        state["status"] = "in_progress"


REPLICA_JOINED = conversation(
    "system.replica_joined", ReplicaJoinedProperties, facts=pick("replica_id"), fold=_fold_replica_joined,
    state=(StateField("joined_at", str | None),), completes="joined",
    show=(Line(20, "Joined", lambda s: [when(s.get("joined_at"))]),),
    samples=(Sample("replica_joined", "conversation.system.replica_joined.json", "the replica is ready in the room",
                    step=1),))


# -- system.pal_joined -------------------------------------------------------------------------------

class PalJoinedProperties(Payload):
    """`system.pal_joined` (observed): arrives beside replica_joined, names the face."""

    face_id: str | None = None
    replica_id: Any = None


def _fold_pal_joined(state: StateDict, entry: Entry) -> None:
    state["face_id"] = entry["facts"].get("face_id") or state["face_id"]


def _replica_line(state: StateDict) -> list[str]:
    face = f"  (face {state['face_id']})" if state.get("face_id") else ""
    return [(state.get("replica_id") or "-") + face]


PAL_JOINED = conversation(
    "system.pal_joined", PalJoinedProperties, facts=pick("face_id", "replica_id"), fold=_fold_pal_joined,
    state=(StateField("face_id", str | None),), completes="joined", show=(Line(10, "Replica", _replica_line),),
    samples=(Sample("pal_joined", "conversation.system.pal_joined.json",
                    "observed beside replica_joined, with a face_id", step=2),))


# -- system.participant_joined -----------------------------------------------------------------------

class ParticipantJoinedProperties(Payload):
    """`system.participant_joined` (observed): a person joined the conversation's room."""

    participant_id: str | None = None
    name: str | None = None
    replica_id: Any = None


PARTICIPANT_JOINED = conversation(
    "system.participant_joined", ParticipantJoinedProperties,
    facts=pick("participant_id", "name"),
    describe=lambda f: f"participant {f.get('name') or f.get('participant_id') or '?'}",
    samples=(Sample("participant_joined", "conversation.system.participant_joined.json",
                    "a person joined the room (observed)"),))


# -- system.participant_left (modelled) --------------------------------------------------------------

class ParticipantLeftProperties(Payload):
    """`system.participant_left` (modelled: no payload seen yet, shaped as participant_joined): a person left."""

    participant_id: str | None = None
    name: str | None = None
    replica_id: Any = None


def _fold_participant_left(state: StateDict, entry: Entry) -> None:
    state["left_at"] = state["left_at"] or entry.get("time")  # the first to leave: entries come in time order


PARTICIPANT_LEFT = conversation(
    "system.participant_left", ParticipantLeftProperties, facts=pick("participant_id", "name"),
    fold=_fold_participant_left,
    describe=lambda f: f"participant {f.get('name') or f.get('participant_id') or '?'}",
    state=(StateField("left_at", str | None),),
    show=(Line(25, "Left", lambda s: [when(s["left_at"])] if s.get("left_at") else []),),
    samples=(Sample("participant_left", "conversation.system.participant_left.json",
                    "a person left the room (modelled)"),))


# -- system.shutdown ---------------------------------------------------------------------------------

ShutdownCode = Literal["max_call_duration", "participant_left_timeout", "participant_absent_timeout",
                       "bot_could_not_join_meeting", "daily_room_deleted", "startup_exception",
                       "end_conversation_endpoint_hit", "internal_error", "other"]
SHUTDOWN_CODES: dict[str, ShutdownCode] = {
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


def shutdown_code(reason: str | None) -> tuple[ShutdownCode, str | None]:
    """A `shutdown_reason` text as (stable code, step); the step only for `internal error occurred at step x`."""
    if reason is None:
        return "other", None
    # A handful of reasons in practice: memoized, but not for long texts (the cache would hold whole bodies).
    return _shutdown_code(reason) if len(reason) <= 200 else _shutdown_code.__wrapped__(reason)


@lru_cache(maxsize=1024)
def _shutdown_code(reason: str) -> tuple[ShutdownCode, str | None]:
    text = _SPACES.sub(" ", reason).strip()
    internal = _INTERNAL_ERROR.fullmatch(text)
    if internal:
        return "internal_error", (internal.group(1) or "").strip() or None
    key = text.lower().removesuffix(" reached").removesuffix("_reached")
    return SHUTDOWN_CODES.get(key.strip(), "other"), None


class ShutdownProperties(Payload):
    """`system.shutdown`: the room shut down, for `shutdown_reason`."""

    replica_id: Any = None
    shutdown_reason: str | None = None


class ShutdownDetails(DetailsModel):
    """system.shutdown: the original text and its stable code (internal_error keeps the step)."""

    replica_id: str | None
    shutdown_reason: str | None
    shutdown_code: ShutdownCode
    shutdown_step: str | None


def _shutdown(m: ShutdownProperties, raw: dict[str, Any]) -> Details:
    code, step = shutdown_code(m.shutdown_reason)
    return {"replica_id": m.replica_id, "shutdown_reason": m.shutdown_reason, "shutdown_code": code,
            "shutdown_step": step}


def _fold_shutdown(state: StateDict, entry: Entry) -> None:
    facts = entry["facts"]
    state["ended_at"] = entry.get("time")
    state["shutdown"] = {"code": facts.get("code"), "reason": facts.get("reason"), "step": facts.get("step"),
                         "event_id": entry["id"]}
    state["status"] = "ended"


def _shutdown_line(state: StateDict) -> list[str]:
    shutdown = state.get("shutdown")
    if not shutdown:
        return []
    step = f" (step {shutdown['step']})" if shutdown.get("step") else ""
    return [f"{shutdown.get('code')}{step}  \"{shutdown.get('reason')}\""]


SHUTDOWN = conversation(
    "system.shutdown", ShutdownProperties, ShutdownDetails, details=_shutdown, fold=_fold_shutdown,
    facts=lambda d, found: {"replica_id": d.get("replica_id"), "code": d.get("shutdown_code"),
                            "reason": d.get("shutdown_reason"), "step": d.get("shutdown_step")},
    describe=lambda f: f"{f.get('code')}  \"{f.get('reason')}\"",
    state=(StateField("ended_at", str | None), StateField("shutdown", dict[str, Any] | None)), completes="ended",
    show=(Line(30, "Ended", lambda s: [when(s.get("ended_at")) + duration(s.get("joined_at"), s.get("ended_at"))]),
          Line(40, "Shutdown", _shutdown_line)),
    samples=(Sample("shutdown", "conversation.system.shutdown.participant_left_timeout_reached.json",
                    "participant_left_timeout reached", step=5),
             Sample("shutdown_internal_error", "conversation.system.shutdown.internal_error.json",
                    "internal error occurred at step 7")))


# -- application.transcription_ready -----------------------------------------------------------------

class TranscriptTurn(Payload):
    """One turn of a transcript; the per-turn timing fields only come with newer payloads."""

    role: str
    content: str | None = None
    timestamp: Any = None
    seconds_from_start: float | None = None
    duration: float | None = None
    inference_id: str | None = None


class TranscriptionReadyProperties(Payload):
    """`application.transcription_ready`: the conversation's chat history."""

    replica_id: Any = None
    transcript: list[TranscriptTurn]


class TranscriptTurnDetails(DetailsModel):
    """One transcript turn; timestamp normalized to UTC."""

    role: str
    content: str | None
    timestamp: str | None
    seconds_from_start: float | None
    duration: float | None
    inference_id: str | None


class TranscriptionReadyDetails(DetailsModel):
    """application.transcription_ready, with the turns counted."""

    replica_id: str | None
    transcript: list[TranscriptTurnDetails]
    messages: int
    user_turns: int
    assistant_turns: int
    system_messages: int


TRANSCRIPT_COUNTS = ("messages", "user_turns", "assistant_turns", "system_messages")


def _transcription_ready(m: TranscriptionReadyProperties, raw: dict[str, Any]) -> Details:
    turns = [{"role": t.role, "content": t.content, "timestamp": to_utc_iso_or_none(t.timestamp),
              "seconds_from_start": t.seconds_from_start, "duration": t.duration, "inference_id": t.inference_id}
             for t in m.transcript]
    roles = [t.role for t in m.transcript]
    return {"replica_id": m.replica_id, "transcript": turns, "messages": len(turns),
            "user_turns": roles.count("user"), "assistant_turns": roles.count("assistant"),
            "system_messages": roles.count("system")}


TRANSCRIPT_DOCUMENT = Document("transcript.json", "transcript",
                               lambda d: {k: d.get(k) for k in ("replica_id", *TRANSCRIPT_COUNTS, "transcript")})


def _fold_transcription_ready(state: StateDict, entry: Entry) -> None:
    counts = {k: entry["facts"].get(k) for k in TRANSCRIPT_COUNTS}
    state["transcript"] = _mark(entry, **counts, object=TRANSCRIPT_DOCUMENT.name)


def _transcript_line(state: StateDict) -> list[str]:
    t = state.get("transcript")
    if not t:
        return ["-"]
    return [f"{t.get('messages')} messages: {t.get('user_turns')} user turns, {t.get('assistant_turns')} assistant "
            f"turns ({t.get('object')})"]


TRANSCRIPTION_READY = conversation(
    "application.transcription_ready", TranscriptionReadyProperties, TranscriptionReadyDetails,
    details=_transcription_ready, facts=pick("replica_id", *TRANSCRIPT_COUNTS), fold=_fold_transcription_ready,
    describe=lambda f: f"{f.get('messages')} messages, {f.get('user_turns')} user / "
                       f"{f.get('assistant_turns')} assistant turns",
    state=(StateField("transcript", dict[str, Any] | None),), completes="transcript",
    show=(Line(50, "Transcript", _transcript_line),), document=TRANSCRIPT_DOCUMENT,
    samples=(Sample("transcription_ready", "conversation.application.transcription_ready.json",
                    "the transcript, with per-turn timing", step=6),))


# -- application.recording_ready ---------------------------------------------------------------------

class RecordingReadyProperties(Payload):
    """`application.recording_ready`: `storage_provider` + `storage_uri`, or the legacy `bucket_name` + `s3_key`."""

    replica_id: Any = None
    storage_provider: str | None = None
    storage_uri: str | None = None
    bucket_name: str | None = None
    s3_key: str | None = None
    duration: float | None = None


class RecordingReadyDetails(DetailsModel):
    """application.recording_ready: where the recording is (legacy = from bucket_name + s3_key)."""

    storage_provider: Literal["s3", "gcs", "azure_blob"]
    storage_uri: str
    bucket: str
    key: str
    account: str | None
    duration: float | None
    legacy: bool
    replica_id: str | None


def _recording_ready(m: RecordingReadyProperties, raw: dict[str, Any]) -> Details:
    if m.storage_uri is not None:
        location = parse_storage_uri(m.storage_uri)
        if location is None:
            raise Invalid("properties.storage_uri: not a recording location; expected s3://bucket/key, "
                          "gs://bucket/key or https://<account>.blob.core.windows.net/<container>/<blob>")
        uri = m.storage_uri.strip()
    elif m.bucket_name is not None or m.s3_key is not None:
        location = legacy_location(m.bucket_name or "", m.s3_key or "")
        if location is None:
            raise Invalid("properties: the legacy recording location needs both bucket_name and s3_key")
        uri = location.uri
    else:
        raise Invalid("properties: no recording location; expected storage_uri, or bucket_name and s3_key")
    return {"storage_provider": location.provider, "storage_uri": uri, "bucket": location.bucket,
            "key": location.key, "account": location.account, "duration": m.duration,
            "legacy": m.storage_uri is None, "replica_id": m.replica_id}


def _recording_facts(d: Details, found: Found) -> Facts:
    facts = {"uri": d.get("storage_uri"), "provider": d.get("storage_provider"), "duration": d.get("duration"),
             "legacy": d.get("legacy")}
    return {**facts, **(found.recording_check or {"checked": False, "note": "not checked"})}


def _fold_recording_ready(state: StateDict, entry: Entry) -> None:
    before = state["recording"] or {}
    kept = {"copy_failure": before["copy_failure"]} if "copy_failure" in before else {}
    state["recording"] = _mark(entry, status="ready", **{k: v for k, v in entry["facts"].items() if k != "replica_id"},
                               **kept)


def _recording_lines(state: StateDict) -> list[str]:
    recording = state.get("recording")
    if not recording:
        return ["-"]
    lines = _ready_lines(recording) if recording.get("status") == "ready" or recording.get("uri") else []
    failure = recording.get("copy_failure")
    if failure:
        lines.append(f"COPY FAILED: {failure.get('error_code')} - {failure.get('error_message')}")
        if failure.get("hint"):
            lines.append(f"fix: {failure['hint']}")
    return lines


def _ready_lines(recording: dict[str, Any]) -> list[str]:
    """Where a ready recording is, and whether it was found in the bucket."""
    extras = [x for x in (recording.get("provider"),
                          f"{recording['duration']} s" if recording.get("duration") is not None else None,
                          "legacy bucket_name + s3_key" if recording.get("legacy") else None) if x]
    lines = [f"ready  {recording.get('uri') or '?'}" + (f"  ({', '.join(extras)})" if extras else "")]
    if not recording.get("checked"):
        lines.append(str(recording.get("note") or "not checked"))
    elif recording.get("found"):
        lines.append(f"found in the bucket: {size(recording.get('size'))}, "
                     f"{recording.get('content_type') or 'unknown type'}")
    else:
        lines.append("MISSING: the object is not in the bucket")
    return lines


RECORDING_READY = conversation(
    "application.recording_ready", RecordingReadyProperties, RecordingReadyDetails, details=_recording_ready,
    facts=_recording_facts, fold=_fold_recording_ready, describe=lambda f: str(f.get("uri") or ""),
    state=(StateField("recording", dict[str, Any] | None),), completes="recording",
    show=(Line(60, "Recording", _recording_lines),),
    samples=(Sample("recording_ready", "conversation.application.recording_ready.s3.json",
                    "storage_provider + storage_uri (s3)", step=7),
             Sample("recording_ready_legacy", "conversation.application.recording_ready.legacy.json",
                    "the legacy form, bucket_name + s3_key")))


# -- application.recording_copy_failed ---------------------------------------------------------------

class RecordingCopyFailedProperties(Payload):
    """`application.recording_copy_failed`: the vendor could not write the recording into the bucket."""

    error_code: str | None = None
    error_message: str | None = None
    storage_provider: str | None = None
    replica_id: Any = None


def _copy_failed_facts(d: Details, found: Found) -> Facts:
    provider = d.get("storage_provider") or found.store_provider
    return {"error_code": d.get("error_code"), "error_message": d.get("error_message"), "provider": provider,
            "hint": remediation(provider)}


def _fold_copy_failed(state: StateDict, entry: Entry) -> None:
    state["recording"] = state["recording"] or {"status": "copy_failed"}
    state["recording"]["copy_failure"] = _mark(entry, **entry["facts"])


RECORDING_COPY_FAILED = conversation(
    "application.recording_copy_failed", RecordingCopyFailedProperties,
    facts=_copy_failed_facts, fold=_fold_copy_failed,
    describe=lambda f: f"{f.get('error_code')}: {f.get('error_message')}", completes="recording",
    samples=(Sample("recording_copy_failed", "conversation.application.recording_copy_failed.json",
                    "DESTINATION_AUTH_FAILED"),))


# -- application.perception_analysis / perception_unavailable ----------------------------------------

class PerceptionAnalysisProperties(Payload):
    """`application.perception_analysis`: the summary of what the replica saw (markdown text)."""

    replica_id: Any = None
    analysis: str | dict[str, Any] | list[Any]


PERCEPTION_DOCUMENT = Document("perception.json", "perception",
                               lambda d: {"replica_id": d.get("replica_id"), "analysis": d.get("analysis")})


def _fold_perception_analysis(state: StateDict, entry: Entry) -> None:
    state["perception"] = _mark(entry, status="ready", chars=entry["facts"].get("chars"),
                                object=PERCEPTION_DOCUMENT.name)


def _perception_line(state: StateDict) -> list[str]:
    perception = state.get("perception")
    if perception and perception.get("status") == "ready":
        return [f"ready, {perception.get('chars')} characters ({perception.get('object')})"]
    return [f"unavailable: {perception.get('reason')}"] if perception else ["-"]


PERCEPTION_ANALYSIS = conversation(
    "application.perception_analysis", PerceptionAnalysisProperties,
    facts=lambda d, found: {"replica_id": d.get("replica_id"),
                            "chars": len(d["analysis"]) if isinstance(d.get("analysis"), str) else 0},
    fold=_fold_perception_analysis, describe=lambda f: f"{f.get('chars')} characters",
    state=(StateField("perception", dict[str, Any] | None),), completes="perception",
    show=(Line(70, "Perception", _perception_line),), document=PERCEPTION_DOCUMENT,
    samples=(Sample("perception_analysis", "conversation.application.perception_analysis.json",
                    "a markdown visual summary", step=8),))


class PerceptionUnavailableProperties(Payload):
    """`application.perception_unavailable` (observed): no perception analysis, with a reason."""

    replica_id: Any = None
    reason: str | None = None
    perception_unavailable_reason: str | None = None
    message: str | None = None


class PerceptionUnavailableDetails(DetailsModel):
    """application.perception_unavailable"""

    replica_id: str | None
    reason: str | None


def _perception_unavailable(m: PerceptionUnavailableProperties, raw: dict[str, Any]) -> Details:
    reason = m.reason or m.perception_unavailable_reason or m.message
    if reason is None:
        reason = next((v for k, v in raw.items() if k != "replica_id" and isinstance(v, str)), None)
    return {"replica_id": m.replica_id, "reason": reason}


def _fold_perception_unavailable(state: StateDict, entry: Entry) -> None:
    if not (state["perception"] and state["perception"]["status"] == "ready"):
        state["perception"] = _mark(entry, status="unavailable", reason=entry["facts"].get("reason"))


PERCEPTION_UNAVAILABLE = conversation(
    "application.perception_unavailable", PerceptionUnavailableProperties, PerceptionUnavailableDetails,
    details=_perception_unavailable, facts=pick("reason"), fold=_fold_perception_unavailable, completes="perception",
    samples=(Sample("perception_unavailable", "conversation.application.perception_unavailable.json",
                    "no_vision_history"),))


# -- application.post_call_action_executed -----------------------------------------------------------

class PostCallActionProperties(Payload):
    """`application.post_call_action_executed` (observed): a tool called after the conversation."""

    tool_id: str | int | None = None
    tool_name: str | None = None
    status: str | None = None
    request: Any = None
    response: Any = None
    replica_id: Any = None


POST_CALL_ACTION = conversation(
    "application.post_call_action_executed", PostCallActionProperties,
    facts=pick("tool_id", "tool_name", "status"),
    fold=lambda state, entry: state["post_call_actions"].append(_mark(entry, **entry["facts"])),
    describe=lambda f: f"{f.get('tool_name')}: {f.get('status')}",
    state=(StateField("post_call_actions", list[dict[str, Any]], []),),
    show=(Line(100, "Post-call", lambda s: [f"{a.get('tool_name')}: {a.get('status')}"
                                            for a in s.get("post_call_actions") or ()]),),
    samples=(Sample("post_call_action_executed", "conversation.application.post_call_action_executed.json",
                    "a tool call after the conversation", step=9),))


# -- any other conversation event_type ---------------------------------------------------------------

class UnknownConversationDetails(DetailsModel):
    """A conversation event_type this version does not know yet: its properties as received."""

    properties: Any


UNKNOWN_CONVERSATION = conversation("*", None, UnknownConversationDetails)


# -- the other families ------------------------------------------------------------------------------

class GuardrailProperties(Payload):
    guardrail: str


class GuardrailPayload(Payload):
    """A guardrail was triggered during a conversation."""

    properties: GuardrailProperties


class GuardrailDetails(DetailsModel):
    """io.tavus.guardrail.triggered"""

    guardrail: str


def _fold_guardrail(state: StateDict, entry: Entry) -> None:
    name = str(entry["facts"].get("guardrail"))
    counts = {g["name"]: g["count"] for g in state["guardrails"]}
    counts[name] = counts.get(name, 0) + 1
    state["guardrails"] = [{"name": n, "count": c} for n, c in sorted(counts.items())]


def _guardrails_line(state: StateDict) -> list[str]:
    guardrails = state.get("guardrails") or []
    return [", ".join(f"{g.get('name')} x{g.get('count')}" for g in guardrails) or "none triggered"]


GUARDRAIL = event_kind(
    "guardrail", f"{TYPE_PREFIX}guardrail.triggered", GuardrailPayload, GuardrailDetails,
    details=lambda m, raw: {"guardrail": m.properties.guardrail},
    facts=pick("guardrail"), fold=_fold_guardrail, describe=lambda f: str(f.get("guardrail")),
    state=(StateField("guardrails", list[dict[str, Any]], []),), show=(Line(80, "Guardrails", _guardrails_line),),
    samples=(Sample("guardrail", "guardrail.json", "guardrail triggered", step=4),))


class ObjectivePayload(Payload):
    """An objective was completed during a conversation, with the variables it collected."""

    objective_name: str
    output_variables: dict[str, Any] | None = None


def variables_text(variables: Any) -> str:
    """Output variables as `name=value, ...`."""
    if isinstance(variables, dict):
        return ", ".join(f"{k}={v}" for k, v in variables.items())
    return "" if variables is None else str(variables)


def _fold_objective(state: StateDict, entry: Entry) -> None:
    facts = entry["facts"]
    state["objectives"][str(facts.get("objective_name"))] = {"output_variables": facts.get("output_variables"),
                                                             "event_id": entry["id"]}


def _objectives_line(state: StateDict) -> list[str]:
    objectives = state.get("objectives") or {}
    return [f"{name}: {variables_text(o.get('output_variables'))}" for name, o in objectives.items()] \
        or ["none completed"]


OBJECTIVE = event_kind(
    "objective", f"{TYPE_PREFIX}objective.completed", ObjectivePayload,
    facts=pick("objective_name", "output_variables"), fold=_fold_objective,
    describe=lambda f: f"{f.get('objective_name')}  {variables_text(f.get('output_variables'))}",
    state=(StateField("objectives", dict[str, dict[str, Any]], {}),), show=(Line(90, "Objectives", _objectives_line),),
    samples=(Sample("objective", "objective.json", "objective completed, with its output variables", step=3),))


class ReplicaTrainingPayload(Payload):
    """Replica training finished: `ready`, or `error` with a message."""

    status: str
    error_message: str | None = None


REPLICA_TRAINING = event_kind(
    "replica_training", f"{TYPE_PREFIX}replica.*", ReplicaTrainingPayload,
    samples=(Sample("replica_training", "replica.training.ready.json", "replica training finished (status ready)",
                    step=10),
             Sample("replica_training_error", "replica.training.error.json", "replica training failed")))


class VideoData(Payload):
    script: str | None = None


class VideoGenerationPayload(Payload):
    """Video generation finished (`ready`) or failed (`error`)."""

    video_name: str | None = None
    status: str
    status_details: str | None = None
    generation_progress: str | None = None
    download_url: str | None = None
    hosted_url: str | None = None
    stream_url: str | None = None
    data: VideoData | None = None
    created_at: Any = None
    updated_at: Any = None


class VideoGenerationDetails(DetailsModel):
    """io.tavus.video.<status>; created_at and updated_at normalized to UTC."""

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


def _video(m: VideoGenerationPayload, raw: dict[str, Any]) -> Details:
    return {"video_name": m.video_name, "status": m.status, "status_details": m.status_details,
            "generation_progress": m.generation_progress, "download_url": m.download_url,
            "hosted_url": m.hosted_url, "stream_url": m.stream_url,
            "script": m.data.script if m.data is not None else None,
            "created_at": None, "updated_at": None}  # normalize sets both from the payload's times


VIDEO_GENERATION = event_kind(
    "video_generation", f"{TYPE_PREFIX}video.*", VideoGenerationPayload, VideoGenerationDetails, details=_video,
    samples=(Sample("video_generation", "video.ready.json", "video generation finished (status ready)", step=11),
             Sample("video_error", "video.error.json", "video generation failed")))


# -- the registry ------------------------------------------------------------------------------------

KINDS: tuple[EventKind, ...] = (
    REPLICA_JOINED, PAL_JOINED, SHUTDOWN, TRANSCRIPTION_READY, RECORDING_READY, RECORDING_COPY_FAILED,
    PERCEPTION_ANALYSIS, PERCEPTION_UNAVAILABLE, POST_CALL_ACTION, PARTICIPANT_JOINED, PARTICIPANT_LEFT,
    UNKNOWN_CONVERSATION, GUARDRAIL, OBJECTIVE, REPLICA_TRAINING, VIDEO_GENERATION,
)
# conversation event_type -> its entry (the known ones); the other families -> their entry
CONVERSATION_TYPES: dict[str, EventKind] = {
    k.event_type: k for k in KINDS if k.event_type is not None and k is not UNKNOWN_CONVERSATION}
FAMILIES: dict[str, EventKind] = {k.family: k for k in KINDS if k.family != "conversation"}
# The parts of a fully received conversation, each as the types that complete it (an entry's `completes`): an
# ended conversation whose state holds an event of every part has nothing more to come from the vendor.
WHOLE: tuple[frozenset[str], ...] = tuple(
    frozenset(k.type for k in KINDS if k.completes == part) for part in dict.fromkeys(
        k.completes for k in KINDS if k.completes))
# Every line of `conversations show` that an entry adds, in their order.
LINES: tuple[Line, ...] = tuple(sorted((line for k in KINDS for line in k.show), key=lambda line: line.place))
_BY_TYPE = {k.type: k for k in KINDS}


def show_lines(state: StateDict) -> list[tuple[str, list[str]]]:
    """A conversation state at a glance, as `conversations show` and the inspector give it: each entry's lines
    (LINES, a line with no text left out), then how many events failed their schema."""
    shown = [(line.label, values) for line in LINES if (values := line.text(state))]
    if state.get("invalid_events"):
        shown.append(("Invalid", [f"{state['invalid_events']} events failed their schema (stored whole, marked "
                                  "invalid)"]))
    return shown
_WILDCARDS = [k for k in KINDS if k.type.endswith("*")]


def kind_of(type_: str) -> EventKind | None:
    """The entry of a CloudEvents type (`io.tavus.video.ready` is the video entry), None for an unknown one."""
    found = _BY_TYPE.get(type_)
    return found or next((k for k in _WILDCARDS if type_.startswith(k.type[:-1])), None)
