"""The shapes of the callbacks as they arrive, as TypedDicts: the one definition of what each payload holds.

`normalize` does not import this module (pydantic's model machinery costs a cold start more than the
checks themselves): it validates with the pydantic-core schema of each shape, generated from these
classes into `_core_schemas.json`. Regenerate that file after changing a shape:

    python -m tavus_callbacks.events.shapes

Unknown fields are ignored (the payload is stored whole anyway); a field declared Opt[...] may be
missing, and is None then.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict  # pydantic refuses typing.TypedDict before Python 3.12

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


# Every shape normalize validates, by name: the properties of each known conversation event_type
# (events.CONVERSATION_TYPES) and the payloads of the other four families (events.FAMILY_SHAPES).
SHAPES: dict[str, type] = {shape.__name__: shape for shape in (
    ReplicaJoinedProperties, PalJoinedProperties, ShutdownProperties, TranscriptionReadyProperties,
    RecordingReadyProperties, RecordingCopyFailedProperties, PerceptionAnalysisProperties,
    PerceptionUnavailableProperties, PostCallActionProperties, GuardrailPayload, ObjectivePayload,
    ReplicaTrainingPayload, VideoGenerationPayload)}

GENERATED = Path(__file__).with_name("_core_schemas.json")
REGENERATE = "python -m tavus_callbacks.events.shapes"
# Parts of a core schema the validator does not read: the Python class (for pydantic's own use), refs
# that embed an object id, and pydantic's JSON Schema hooks. Without them the schema is plain JSON.
_NOT_FOR_VALIDATION = frozenset({"cls", "ref", "metadata"})


def core_schemas() -> dict[str, Any]:
    """Shape name -> the pydantic-core schema TypeAdapter(shape) validates with, as plain data."""
    return {name: _plain(TypeAdapter(shape).core_schema) for name, shape in SHAPES.items()}


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items() if k not in _NOT_FOR_VALIDATION}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if node is None or isinstance(node, str | int | float | bool):
        return node
    raise TypeError(f"a core schema holds {node!r}, which _core_schemas.json cannot hold")


def generated_json() -> bytes:
    """The content of `_core_schemas.json` for the shapes as they are now (stable: no ids, shapes in order)."""
    import orjson

    return orjson.dumps(core_schemas(), option=orjson.OPT_INDENT_2) + b"\n"


def main() -> int:
    """Write `_core_schemas.json` next to this module."""
    GENERATED.write_bytes(generated_json())
    print(f"wrote {GENERATED}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
