"""The JSON Schemas of what comes out (the normalized Event, its `details` per type) and of what arrives.

Built with pydantic on first use, for `tavus-callbacks schema`, the OpenAPI document and the tests:
nothing on the path of a callback imports this module.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

from tavus_callbacks.events.normalize import (
    CONVERSATION_TYPES,
    FAMILY_SHAPES,
    GUARDRAIL_TYPE,
    INVALID_CONVERSATION_TYPE,
    OBJECTIVE_TYPE,
    TYPE_PREFIX,
    Event,
)
from tavus_callbacks.events.shapes import SHAPES


@cache
def event_adapter() -> TypeAdapter[Event]:
    """Pydantic's validator and serializer of Event (a dataclass), for Event.model_validate / model_dump."""
    return TypeAdapter(Event)


# ---------------------------------------------------------------------------------------------------
# What comes out: the details models.


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

    schema = event_adapter().json_schema(mode="serialization")
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

    families: list[type] = [ConversationCallback, *(SHAPES[name] for name in FAMILY_SHAPES)]
    props = [SHAPES[name] for name, _ in CONVERSATION_TYPES.values()]
    _, defs = TypeAdapter.json_schemas([(m, "validation", TypeAdapter(m)) for m in [*families, *props]],
                                       ref_template="#/$defs/{model}")
    return {
        "title": "TavusCallback",
        "description": "Any JSON object is accepted; these are the families told apart by shape.",
        "anyOf": [*({"$ref": f"#/$defs/{m.__name__}"} for m in families), {"type": "object"}],
        "$defs": defs.get("$defs", {}),
        "x-properties-by-event-type": {t: f"#/$defs/{name}" for t, (name, _) in CONVERSATION_TYPES.items()},
    }
