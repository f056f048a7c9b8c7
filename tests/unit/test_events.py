"""Every recorded payload normalized to the expected values; invalid known types, unsafe ids, the time forms."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from conftest import EVENTS_DIR, RECORDED, load_event
from tavus_callbacks.cli.conversations import render_show
from tavus_callbacks.events.catalogue import CONVERSATION_TYPES, KINDS, kind_of, shutdown_code
from tavus_callbacks.events.normalize import MAX_DETAIL_DEPTH, Event, family_of, normalize, status_part
from tavus_callbacks.events.registry import SAMPLES_DIR
from tavus_callbacks.events.schema import details_model_for, json_schema, payload_json_schema
from tavus_callbacks.events.times import TimeParseError, to_utc_iso
from tavus_callbacks.layout import Layout
from tavus_callbacks.record import build_record
from tavus_callbacks.state.fold import entry_for, fold

ALL_FILES = sorted(p.stem for p in RECORDED)
EVENT_SCHEMA = jsonschema.Draft202012Validator(json_schema())
PAYLOAD_SCHEMA = payload_json_schema()
R = "r5f0577fc829"


def family_expected(name: str) -> str:
    prefix = name.split(".")[0]
    return {"conversation": "conversation", "guardrail": "guardrail", "objective": "objective",
            "replica": "replica_training", "video": "video_generation", "unrecognized": "unrecognized"}[prefix]


@pytest.mark.parametrize("name", ALL_FILES)
def test_every_recorded_payload_is_a_valid_event_of_its_family(name: str) -> None:
    payload = load_event(name)
    before = copy.deepcopy(payload)
    event = normalize(payload)
    assert event.family == family_expected(name) == family_of(payload)
    assert event.valid, event.errors
    assert event.errors == []
    assert payload == before, "normalize must not change the payload it is given"
    # The details follow their published model exactly (same keys, same values).
    model = details_model_for(event)
    if event.family == "unrecognized":
        assert model is None and event.details == {}
    else:
        assert model is not None
        assert model.model_validate(event.details).model_dump(mode="json") == event.details
    # Built without a second validation, yet exactly what the Event model would accept.
    dumped = event.model_dump(mode="json")
    assert Event.model_validate(dumped) == event
    assert orjson.loads(orjson.dumps(dumped)) == dumped


@pytest.mark.parametrize("name", ALL_FILES)
def test_every_normalized_event_conforms_to_the_published_schema(name: str) -> None:
    EVENT_SCHEMA.validate(normalize(load_event(name)).model_dump(mode="json"))


def test_the_whole_conversation_c123456() -> None:
    names = [n for n in ALL_FILES if load_event(n).get("conversation_id") == "c123456"]
    events = {n: normalize(load_event(n)) for n in names}
    assert len(events) == 10
    assert {e.conversation_id for e in events.values()} == {"c123456"}
    assert {e.type for e in events.values()} == {
        "io.tavus.conversation.system.replica_joined", "io.tavus.conversation.system.pal_joined",
        "io.tavus.guardrail.triggered", "io.tavus.objective.completed",
        "io.tavus.conversation.application.conversation_summary_ready",
        "io.tavus.conversation.system.shutdown", "io.tavus.conversation.application.transcription_ready",
        "io.tavus.conversation.application.perception_analysis",
        "io.tavus.conversation.application.recording_ready",
        "io.tavus.conversation.application.post_call_action_executed"}
    assert all(e.valid and e.subject == "c123456" for e in events.values())
    assert all(Layout().folder(e) == "c123456/events/" for e in events.values())


def test_replica_joined() -> None:
    event = normalize(load_event("conversation.system.replica_joined"))
    assert event.type == "io.tavus.conversation.system.replica_joined"
    assert (event.event_type, event.message_type) == ("system.replica_joined", "system")
    assert (event.conversation_id, event.replica_id, event.video_id) == ("c123456", R, None)
    assert event.time == "2025-07-11T06:45:47.472000Z"
    assert event.details == {"replica_id": R}


def test_pal_joined() -> None:
    event = normalize(load_event("conversation.system.pal_joined"))
    assert event.type == "io.tavus.conversation.system.pal_joined"
    assert event.details == {"face_id": "f8c2e41d9a07", "replica_id": R}
    assert normalize({"conversation_id": "c1", "event_type": "system.pal_joined", "properties": {}}).details == {
        "face_id": None, "replica_id": None}


def test_participant_joined() -> None:
    event = normalize(load_event("conversation.system.participant_joined"))
    assert event.type == "io.tavus.conversation.system.participant_joined" and event.valid
    assert (event.conversation_id, event.replica_id, event.time) == ("c7d2e9a41b05", R, "2025-07-11T06:45:52.118000Z")
    assert event.details == {"participant_id": "p4e1b7c92d03", "name": "Jordan Lee", "replica_id": R}
    assert normalize({"conversation_id": "c1", "event_type": "system.participant_joined", "properties": {}}).details \
        == {"participant_id": None, "name": None, "replica_id": None}


def test_participant_left_and_its_state_field() -> None:
    event = normalize(load_event("conversation.system.participant_left"))
    assert event.type == "io.tavus.conversation.system.participant_left" and event.valid
    assert (event.conversation_id, event.replica_id, event.time) == ("c7d2e9a41b05", R, "2025-07-11T06:48:12.530000Z")
    assert event.details == {"participant_id": "p4e1b7c92d03", "name": "Jordan Lee", "replica_id": R}
    joined = load_event("conversation.system.participant_joined")
    later = {**load_event("conversation.system.participant_left"), "timestamp": "2025-07-11T06:50:00Z"}
    entries = [entry_for(build_record(p, normalize(p), Layout())) for p in (later, load_event(
        "conversation.system.participant_left"), joined)]
    state = fold("c7d2e9a41b05", entries)
    assert state["left_at"] == "2025-07-11T06:48:12.530000Z", "the first to leave"
    assert fold("c7d2e9a41b05", entries[2:])["left_at"] is None
    shown = render_show(state).splitlines()
    assert "  Left         2025-07-11 06:48:12 UTC" in shown
    assert shown.index("  Left         2025-07-11 06:48:12 UTC") == 3, "between Joined and Ended"
    assert not any(line.startswith("  Left") for line in render_show(fold("c7d2e9a41b05", entries[2:])).splitlines())
    assert any("system.participant_left" in line and "participant Jordan Lee" in line for line in shown)


SHUTDOWNS = {
    "max_call_duration": ("max_call_duration reached", "max_call_duration", None),
    "participant_left_timeout": ("participant_left_timeout", "participant_left_timeout", None),
    "participant_left_timeout_reached": ("participant_left_timeout reached", "participant_left_timeout", None),
    "participant_absent_timeout": ("participant_absent_timeout reached", "participant_absent_timeout", None),
    "bot_could_not_join_meeting": ("bot_could_not_join_meeting_it_was_probably_ended", "bot_could_not_join_meeting",
                                   None),
    "daily_room_deleted": ("daily_room_has_been_deleted", "daily_room_deleted", None),
    "startup_exception": ("exception_encountered_during_conversation_startup", "startup_exception", None),
    "end_conversation_endpoint_hit": ("end_conversation_endpoint_hit", "end_conversation_endpoint_hit", None),
    "internal_error": ("internal error occurred at step 7", "internal_error", "7"),
}


@pytest.mark.parametrize("name", sorted(SHUTDOWNS))
def test_every_documented_shutdown_reason_has_its_code(name: str) -> None:
    text, code, step = SHUTDOWNS[name]
    event = normalize(load_event(f"conversation.system.shutdown.{name}"))
    assert event.type == "io.tavus.conversation.system.shutdown" and event.valid
    assert event.details == {"replica_id": R, "shutdown_reason": text, "shutdown_code": code, "shutdown_step": step}


def test_every_documented_shutdown_reason_has_a_file() -> None:
    shutdown_files = {n.removeprefix("conversation.system.shutdown.") for n in ALL_FILES
                      if n.startswith("conversation.system.shutdown.")}
    assert shutdown_files == set(SHUTDOWNS)


@pytest.mark.parametrize(("text", "code", "step"), [
    ("  MAX_CALL_DURATION   Reached ", "max_call_duration", None),
    ("Participant_Left_Timeout", "participant_left_timeout", None),
    ("participant_absent_timeout_reached", "participant_absent_timeout", None),
    ("Daily_Room_Has_Been_Deleted\n", "daily_room_deleted", None),
    ("Internal Error Occurred At Step  llm_inference", "internal_error", "llm_inference"),
    ("internal error occurred at step", "internal_error", None),
    ("internal error occurred at step x", "internal_error", "x"),
    ("the room caught fire", "other", None),
    ("", "other", None),
    (None, "other", None),
])
def test_shutdown_codes_ignore_case_and_whitespace(text: str | None, code: str, step: str | None) -> None:
    assert shutdown_code(text) == (code, step)


def test_transcription_ready_with_per_turn_fields() -> None:
    event = normalize(load_event("conversation.application.transcription_ready"))
    d = event.details
    assert event.time == "2025-07-11T06:48:37.566057Z" and event.replica_id == R
    assert (d["messages"], d["user_turns"], d["assistant_turns"], d["system_messages"]) == (9, 4, 4, 1)
    assert [t["role"] for t in d["transcript"]] == ["system", *["assistant", "user"] * 4]
    assert [t["timestamp"] for t in d["transcript"]] == [  # epoch seconds and ISO times, all made UTC ISO
        None, "2025-07-11T06:45:49.125000Z", "2025-07-11T06:45:55.310000Z", "2025-07-11T06:45:59.804000Z",
        "2025-07-11T06:46:04.002000Z", "2025-07-11T06:46:06.412000Z", "2025-07-11T06:46:12.105000Z",
        "2025-07-11T06:46:15.020000Z", "2025-07-11T06:46:19.377000Z"]
    assert d["transcript"][1] == {
        "role": "assistant", "content": "Hi, I'm Maya. Welcome to Acme Cloud! What would you like to set up today?",
        "timestamp": "2025-07-11T06:45:49.125000Z", "seconds_from_start": 1.653, "duration": 4.62,
        "inference_id": "inf_7c1f02a9e4b3"}
    assert d["transcript"][0] == {
        "role": "system", "content": "You are Maya, a friendly onboarding assistant for Acme Cloud.", "timestamp": None,
        "seconds_from_start": None, "duration": None, "inference_id": None}


def test_transcription_ready_documented_form() -> None:
    d = normalize(load_event("conversation.application.transcription_ready.basic")).details
    assert (d["messages"], d["user_turns"], d["assistant_turns"], d["system_messages"]) == (5, 2, 2, 1)
    assert d["transcript"][4]["content"] == "Sure\u2014what's the order number?"


def test_a_turn_timestamp_that_cannot_be_read_is_left_out_without_failing_the_transcript() -> None:
    payload = load_event("conversation.application.transcription_ready")
    payload["properties"]["transcript"][1]["timestamp"] = "sometime"
    event = normalize(payload)
    assert event.valid and event.details["transcript"][1]["timestamp"] is None


RECORDINGS = {
    "s3": {"storage_provider": "s3", "storage_uri": "s3://acme-tavus-recordings/c123456/1752216347472.mp4",
           "bucket": "acme-tavus-recordings", "key": "c123456/1752216347472.mp4", "account": None,
           "duration": 162.4, "legacy": False, "replica_id": None},
    "gcs": {"storage_provider": "gcs", "storage_uri": "gs://acme-tavus-recordings/c3b9f0e6a214/1777586954112.mp4",
            "bucket": "acme-tavus-recordings", "key": "c3b9f0e6a214/1777586954112.mp4", "account": None,
            "duration": 1234.0, "legacy": False, "replica_id": None},
    "azure_blob": {"storage_provider": "azure_blob",
                   "storage_uri": "https://acmerecordings.blob.core.windows.net/tavus/c5d04a8e7b61/1777587122905.mp4",
                   "bucket": "tavus", "key": "c5d04a8e7b61/1777587122905.mp4", "account": "acmerecordings",
                   "duration": 318.2, "legacy": False, "replica_id": None},
    "legacy": {"storage_provider": "s3", "storage_uri": "s3://acme-tavus-recordings/tavus/c9a27e5b0d48/1752217931448",
               "bucket": "acme-tavus-recordings", "key": "tavus/c9a27e5b0d48/1752217931448", "account": None,
               "duration": 1234.0, "legacy": True, "replica_id": None},
}


@pytest.mark.parametrize("form", sorted(RECORDINGS))
def test_recording_ready_in_every_form(form: str) -> None:
    event = normalize(load_event(f"conversation.application.recording_ready.{form}"))
    assert event.type == "io.tavus.conversation.application.recording_ready" and event.valid
    assert event.details == RECORDINGS[form]


def test_recording_ready_time_without_fraction() -> None:
    assert normalize(load_event("conversation.application.recording_ready.gcs")).time == "2026-04-30T22:11:14.000000Z"


@pytest.mark.parametrize(("props", "error"), [
    ({"duration": 12}, "properties: no recording location; expected storage_uri, or bucket_name and s3_key"),
    ({"bucket_name": "b"}, "properties: the legacy recording location needs both bucket_name and s3_key"),
    ({"storage_provider": "s3", "storage_uri": "ftp://host/file.mp4"},
     "properties.storage_uri: not a recording location; expected s3://bucket/key, gs://bucket/key or "
     "https://<account>.blob.core.windows.net/<container>/<blob>"),
    ({"storage_uri": "s3://bucket-only"}, "properties.storage_uri: not a recording location"),
    ({"storage_uri": ["s3://b/k"]}, "properties.storage_uri: Input should be a valid string"),
    ({"bucket_name": "b", "s3_key": "k", "duration": "long"},
     "properties.duration: Input should be a valid number, unable to parse string as a number"),
])
def test_recording_ready_without_a_usable_location_is_invalid(props: dict[str, Any], error: str) -> None:
    payload = load_event("conversation.application.recording_ready.s3")
    payload["properties"] = props
    event = normalize(payload)
    assert not event.valid and event.type == "io.tavus.conversation.application.recording_ready"
    assert len(event.errors) == 1 and event.errors[0].startswith(error)
    assert event.conversation_id == "c123456"


def test_recording_copy_failed() -> None:
    event = normalize(load_event("conversation.application.recording_copy_failed"))
    assert event.details == {
        "error_code": "DESTINATION_AUTH_FAILED", "storage_provider": "gcs", "replica_id": None,
        "error_message": "Failed to obtain credentials for the destination bucket via workload identity federation "
                         "after 5 attempts"}
    payload = load_event("conversation.application.recording_copy_failed")
    del payload["properties"]["storage_provider"]
    assert normalize(payload).details["storage_provider"] is None


def test_perception_analysis() -> None:
    event = normalize(load_event("conversation.application.perception_analysis"))
    assert event.details["replica_id"] == R
    assert event.details["analysis"].startswith("## Visual summary\n")


@pytest.mark.parametrize(("props", "reason"), [
    ({"replica_id": R, "reason": "no_vision_history"}, "no_vision_history"),
    ({"perception_unavailable_reason": "raven_disabled"}, "raven_disabled"),
    ({"message": "Perception is not enabled for this persona"}, "Perception is not enabled for this persona"),
    ({"replica_id": R, "detail": "no_vision_history"}, "no_vision_history"),
    ({"replica_id": R}, None),
])
def test_perception_unavailable_reason(props: dict[str, Any], reason: str | None) -> None:
    payload = load_event("conversation.application.perception_unavailable")
    payload["properties"] = props
    event = normalize(payload)
    assert event.valid and event.details["reason"] == reason


def test_post_call_action_executed() -> None:
    d = normalize(load_event("conversation.application.post_call_action_executed")).details
    assert (d["tool_id"], d["tool_name"], d["status"]) == ("t4b8e02c6a1f", "send_setup_email", "success")
    assert d["request"]["body"]["email"] == "jordan@example.com" and d["response"]["status_code"] == 202


def test_an_unknown_event_type_is_a_normal_valid_event() -> None:
    payload = load_event("conversation.unknown_event_type")
    event = normalize(payload)
    assert event.valid and event.family == "conversation"
    assert event.type == "io.tavus.conversation.application.conversation_summary_ready"
    assert event.event_type == "application.conversation_summary_ready"
    assert event.details == {"properties": payload["properties"]}
    assert event.replica_id == R and event.time == "2025-07-11T06:48:36.901000Z"


@pytest.mark.parametrize("event_type", ["a", "system.x_1.y2", "a" * 100, "application.new_thing"])
def test_well_formed_unknown_event_types_are_valid(event_type: str) -> None:
    event = normalize({"conversation_id": "c123456", "event_type": event_type, "properties": {}})
    assert event.valid and event.type == f"io.tavus.conversation.{event_type}"


@pytest.mark.parametrize("event_type", ["System.Shutdown", "system..shutdown", ".system", "system.", "1system",
                                        "a" * 101, "system shutdown", "system/../../x", "", 42, None, ["x"]])
def test_a_malformed_event_type_is_an_invalid_conversation_event(event_type: Any) -> None:
    event = normalize({"conversation_id": "c123456", "event_type": event_type, "properties": {"a": 1}})
    assert event.family == "conversation" and event.type == "io.tavus.conversation.invalid"
    assert not event.valid and event.event_type is None
    assert event.errors[0].startswith("event_type: not a well-formed event type")
    assert event.details == {"properties": {"a": 1}} and event.conversation_id == "c123456"


def test_guardrail() -> None:
    event = normalize(load_event("guardrail"))
    assert (event.family, event.type, event.conversation_id) == ("guardrail", "io.tavus.guardrail.triggered",
                                                                 "c123456")
    assert event.details == {"guardrail": "no_pricing_commitments"} and event.time is None


def test_objective() -> None:
    event = normalize(load_event("objective"))
    assert (event.family, event.type, event.conversation_id) == ("objective", "io.tavus.objective.completed",
                                                                 "c123456")
    assert event.details == {"objective_name": "collect_email",
                             "output_variables": {"email": "jordan@example.com", "storage_provider": "s3"}}


@pytest.mark.parametrize(("name", "type_", "replica_id", "error_message"), [
    ("replica.training.ready", "io.tavus.replica.ready", "r79e1c033bdd", None),
    ("replica.training.error", "io.tavus.replica.error", "r2d8f6a41c9e",
     "The training video is too short: at least one minute of speaking is required."),
])
def test_replica_training(name: str, type_: str, replica_id: str, error_message: str | None) -> None:
    event = normalize(load_event(name))
    assert (event.family, event.type, event.replica_id, event.conversation_id) == (
        "replica_training", type_, replica_id, None)
    assert event.details["error_message"] == error_message
    assert Layout("p/").folder(event) == f"p/replicas/{replica_id}/events/"


def test_video_ready() -> None:
    event = normalize(load_event("video.ready"))
    assert (event.family, event.type, event.video_id, event.replica_id) == (
        "video_generation", "io.tavus.video.ready", "1e30440cf9", "r90bbd427f71")
    assert event.time == "2024-08-28T15:29:19.802670Z"
    assert event.details == {
        "video_name": "replica_id: r90bbd427f71 - August 28, 2024 - video: 1e30440cf9", "status": "ready",
        "status_details": "Your request has processed successfully!", "generation_progress": "100/100",
        "download_url": "https://stream.mux.com/H5H029h02tY7XDpNj9JFDbLleTyUpsJr5npddO8gRsKqY/high.mp4?download=1e30440cf9",
        "hosted_url": "https://videos.tavus.io/video/1e30440cf9",
        "stream_url": "https://stream.mux.com/H5H029h02tY7XDpNj9JFDbLleTyUpsJr5npddO8gRsKqY.m3u8",
        "script": "Hello this is a test to give examples of callbacks",
        "created_at": "2024-08-28T15:27:40.824457Z", "updated_at": "2024-08-28T15:29:19.802670Z"}
    assert Layout().folder(event) == "videos/1e30440cf9/events/"


def test_video_error() -> None:
    event = normalize(load_event("video.error"))
    assert event.type == "io.tavus.video.error" and event.valid
    assert event.details["download_url"] is None and event.details["generation_progress"] == "37/100"


def test_video_time_falls_back_to_created_at() -> None:
    payload = load_event("video.ready")
    del payload["updated_at"]
    assert normalize(payload).time == "2024-08-28T15:27:40.824457Z"
    del payload["created_at"]
    assert normalize(payload).time is None and normalize(payload).valid


@pytest.mark.parametrize(("status", "part"), [("ready", "ready"), ("Error", "error"), ("in progress", "in_progress"),
                                              ("../../etc", "etc"), ("!!!", "unknown"), ("", "unknown"),
                                              (None, "unknown"), (7, "unknown"), ("x" * 300, "x" * 64)])
def test_status_becomes_a_safe_type_part(status: Any, part: str) -> None:
    assert status_part(status) == part


def test_a_status_that_is_not_text_is_invalid() -> None:
    event = normalize({"replica_id": "r79e1c033bdd", "status": 3})
    assert event.type == "io.tavus.replica.unknown" and not event.valid
    assert event.errors == ["status: Input should be a valid string"]
    video = load_event("video.ready")
    del video["status"]
    event = normalize(video)
    assert event.type == "io.tavus.video.unknown" and event.errors == ["status: Field required"]


def test_unrecognized_payloads() -> None:
    event = normalize(load_event("unrecognized"))
    assert (event.family, event.type, event.valid, event.subject) == ("unrecognized", "io.tavus.unrecognized",
                                                                      True, None)
    assert event.time == "2025-07-11T06:40:02.000000Z"
    assert Layout().folder(event) == "unrecognized/2025/07/11/"
    assert normalize({}).type == "io.tavus.unrecognized"
    assert normalize({"created_at": "not a time", "x": 1}).valid
    assert normalize({"replica_id": "r1", "status": "ready", "conversation_id": "c1"}).family == "unrecognized"
    assert normalize({"conversation_id": "c1", "properties": {"other": 1}}).family == "unrecognized"
    assert normalize({"timestamp": "2025-07-11T06:45:47Z", "x": 1}).time == "2025-07-11T06:45:47.000000Z"


@pytest.mark.parametrize(("payload", "kind"), [([], "array"), ([{"event_type": "system.shutdown"}], "array"),
                                               ("text", "string"), (3, "number"), (2.5, "number"), (None, "null"),
                                               (True, "boolean")])
def test_a_payload_that_is_not_an_object_is_unrecognized_and_invalid(payload: Any, kind: str) -> None:
    event = normalize(payload)
    assert (event.family, event.type, event.valid) == ("unrecognized", "io.tavus.unrecognized", False)
    assert event.errors == [f"the payload is a JSON {kind}, not an object"]


# --- known types that fail their schema -------------------------------------------------------------


@pytest.mark.parametrize(("name", "change", "errors", "salvaged"), [
    ("conversation.application.transcription_ready", {"transcript": "not a list"},
     ["properties.transcript: Input should be a valid list"], {"replica_id": R}),
    ("conversation.application.transcription_ready", {"transcript": [{"content": "no role"}, "turn"]},
     ["properties.transcript.0.role: Field required", "properties.transcript.1: Input should be a JSON object"],
     {"replica_id": R}),
    ("conversation.application.transcription_ready", {"transcript": [{"role": "user", "duration": "long"}]},
     ["properties.transcript.0.duration: Input should be a valid number, unable to parse string as a number"],
     {"replica_id": R}),
    ("conversation.system.shutdown.max_call_duration", {"shutdown_reason": 42},
     ["properties.shutdown_reason: Input should be a valid string"], {"replica_id": R}),
    ("conversation.application.perception_analysis", {"analysis": 5},
     ["properties.analysis: Input should be a valid string, or an object, or an array"], {"replica_id": R}),
    ("conversation.application.perception_analysis", {"analysis": None},
     ["properties.analysis: Input should be a valid string, or an object, or an array"], {"replica_id": R}),
    ("conversation.application.recording_copy_failed", {"error_code": {"code": 1}},
     ["properties.error_code: Input should be a valid string"], {"storage_provider": "gcs"}),
])
def test_a_known_type_failing_its_schema_is_invalid_with_readable_errors(
        name: str, change: dict[str, Any], errors: list[str], salvaged: dict[str, Any]) -> None:
    payload = load_event(name)
    payload["properties"].update(change)
    event = normalize(payload)
    assert not event.valid and event.errors == errors
    assert event.type == f"io.tavus.conversation.{payload['event_type']}"
    assert event.conversation_id == payload["conversation_id"] and event.time is not None
    assert salvaged.items() <= event.details.items()
    assert not set(change) & set(event.details), "a field that failed is not salvaged"


@pytest.mark.parametrize("properties", [None, "text", [1], 7])
def test_known_type_with_properties_that_are_not_an_object(properties: Any) -> None:
    payload = load_event("conversation.system.shutdown.max_call_duration")
    payload["properties"] = properties
    event = normalize(payload)
    assert not event.valid and event.errors == ["properties: Input should be a JSON object"]
    assert event.details == {} and event.conversation_id == payload["conversation_id"]


def test_known_type_without_properties() -> None:
    payload = load_event("conversation.system.replica_joined")
    del payload["properties"]
    event = normalize(payload)
    assert not event.valid and event.errors == ["properties: Field required"] and event.details == {}


@pytest.mark.parametrize(("payload", "errors"), [
    ({"conversation_id": "c123456", "properties": {"guardrail": ["x"]}},
     ["properties.guardrail: Input should be a valid string"]),
    ({"conversation_id": "c123456", "objective_name": "collect_email", "output_variables": ["a@example.com"]},
     ["output_variables: Input should be a JSON object"]),
    ({"conversation_id": "c123456", "objective_name": None}, ["objective_name: Input should be a valid string"]),
    ({"objective_name": "collect_email"}, ["conversation_id: Field required"]),
    ({"replica_id": "r79e1c033bdd", "status": "error", "error_message": 500},
     ["error_message: Input should be a valid string"]),
])
def test_other_families_failing_their_schema(payload: dict[str, Any], errors: list[str]) -> None:
    event = normalize(payload)
    assert not event.valid and event.errors == errors


def test_message_type_must_be_text() -> None:
    payload = load_event("conversation.system.replica_joined")
    payload["message_type"] = 1
    event = normalize(payload)
    assert not event.valid and event.message_type is None
    assert event.errors == ["message_type: Input should be a valid string"]


# --- ids that are not plain identifiers never reach the Event (nor a key) ----------------------------

UNSAFE_IDS = ["../etc/passwd", "/abs/path", "%2e%2e", "..", "a\\b", "a\x00b", "x" * 129, "", " c123456",
              "c123456\n", "c12 3456", "c123456/..", "_leading", "-leading", "é123", 123456, 1.5, True,
              ["c123456"], {"id": "c123456"}]


@pytest.mark.parametrize("bad", UNSAFE_IDS, ids=repr)
def test_an_unsafe_conversation_id_is_dropped_and_the_event_is_invalid(bad: Any) -> None:
    for name in ("conversation.system.replica_joined", "guardrail", "objective"):
        payload = load_event(name)
        payload["conversation_id"] = bad
        event = normalize(payload)
        assert event.conversation_id is None and event.subject is None and not event.valid
        assert event.errors[0].startswith("conversation_id is not a plain identifier")
        assert Layout().folder(event).startswith("unrecognized/")
        assert family_of(payload) == event.family != "unrecognized"


@pytest.mark.parametrize("bad", UNSAFE_IDS, ids=repr)
def test_unsafe_replica_and_video_ids(bad: Any) -> None:
    replica = normalize({"replica_id": bad, "status": "ready"})
    assert replica.family == "replica_training" and replica.replica_id is None and not replica.valid
    assert replica.errors == ["replica_id is not a plain identifier (letters, digits, '_' and '-', starting with "
                              "a letter or digit, at most 128 characters)"]
    assert Layout().folder(replica).startswith("unrecognized/")
    video = load_event("video.ready")
    video["video_id"] = bad
    event = normalize(video)
    assert event.video_id is None and not event.valid and event.errors[0].startswith("video_id is not a plain")
    assert Layout().folder(event).startswith("unrecognized/")
    video = load_event("video.ready")
    video["replica_id"] = bad
    assert normalize(video).replica_id is None and not normalize(video).valid
    joined = load_event("conversation.system.replica_joined")
    joined["properties"]["replica_id"] = bad
    event = normalize(joined)
    assert event.replica_id is None and event.details == {"replica_id": None} and not event.valid
    assert event.errors[0].startswith("properties.replica_id is not a plain identifier")
    assert event.conversation_id == "c123456"


@pytest.mark.parametrize("good", ["c123456", "C", "0", "a" * 128, "c_1-2", "1e30440cf9"])
def test_plain_ids_are_kept(good: str) -> None:
    payload = load_event("guardrail")
    payload["conversation_id"] = good
    assert normalize(payload).conversation_id == good


def test_a_missing_conversation_id_is_invalid() -> None:
    payload = load_event("conversation.system.shutdown.max_call_duration")
    del payload["conversation_id"]
    event = normalize(payload)
    assert not event.valid and event.errors == ["conversation_id: Field required"]


# --- the three timestamp forms -----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("2025-07-11T06:45:47.472000Z", "2025-07-11T06:45:47.472000Z"),
    ("2025-07-11T06:45:47Z", "2025-07-11T06:45:47.000000Z"),
    ("2025-07-11T08:45:47.472+02:00", "2025-07-11T06:45:47.472000Z"),
    ("2025-07-10T22:45:47.5-08:00", "2025-07-11T06:45:47.500000Z"),
    ("2025-07-11T06:45:47.472000123Z", "2025-07-11T06:45:47.472000Z"),
    ("2024-08-28 15:27:40.824457", "2024-08-28T15:27:40.824457Z"),
    ("2024-08-28 15:27:40", "2024-08-28T15:27:40.000000Z"),
    ("  2024-08-28 15:27:40.824457 ", "2024-08-28T15:27:40.824457Z"),
    (1752216347.472, "2025-07-11T06:45:47.472000Z"),
    (1752216347, "2025-07-11T06:45:47.000000Z"),
    ("1752216347.472", "2025-07-11T06:45:47.472000Z"),
    ("1752216347", "2025-07-11T06:45:47.000000Z"),
    (0, "1970-01-01T00:00:00.000000Z"),
    ("2200-12-31T23:59:59.999999Z", "2200-12-31T23:59:59.999999Z"),
    ("1970-01-01T01:00:00+01:00", "1970-01-01T00:00:00.000000Z"),
])
def test_the_three_timestamp_forms(value: Any, expected: str) -> None:
    assert to_utc_iso(value) == expected
    payload = load_event("conversation.system.replica_joined")
    payload["timestamp"] = value
    event = normalize(payload)
    assert event.valid and event.time == expected


@pytest.mark.parametrize("value", [
    "yesterday", "", "2025-13-01T00:00:00Z", "2025-07-11T25:00:00Z", "11/07/2025 06:45", "1969-12-31T23:59:59Z",
    "2201-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "1970-01-01T00:30:00+01:00",
    -1, -0.5, 7289654400, 99999999999, 7289654400000, 1e20, 10**30, 10**5000, float("nan"), float("inf"), float("-inf"),
    "nan", "inf", "1e400", "-5", True, False, [], {}, ["2025-07-11T06:45:47Z"], "x" * 10000,
    "2025-07-11T06:45:47Z\x00", "2025-07-11\x0006:45:47", "2025-07-11X06:45:47", "2025-07-11\u200506:45:47",
], ids=lambda v: "huge int" if isinstance(v, int) and v > 10**100 else repr(v)[:40])
def test_a_timestamp_that_is_not_a_time_leaves_time_empty_and_marks_the_event_invalid(value: Any) -> None:
    with pytest.raises(TimeParseError):
        to_utc_iso(value)
    payload = load_event("conversation.system.replica_joined")
    payload["timestamp"] = value
    event = normalize(payload)
    assert event.time is None and not event.valid
    assert len(event.errors) == 1 and event.errors[0].startswith("timestamp: ")
    assert "ISO-8601" in event.errors[0] and len(event.errors[0]) < 300
    assert event.details == {"replica_id": R}, "the rest of the event is still normalized"


def test_a_missing_timestamp_is_no_error() -> None:
    payload = load_event("conversation.system.replica_joined")
    del payload["timestamp"]
    event = normalize(payload)
    assert event.valid and event.time is None


def test_epoch_floats_round_to_the_nearest_microsecond() -> None:
    assert to_utc_iso(1752216347.4719996) == "2025-07-11T06:45:47.472000Z"
    assert not math.isnan(float(to_utc_iso(0.000001)[-8:-1]))


# --- the published schemas ---------------------------------------------------------------------------


def test_event_fields_are_the_agreed_ones() -> None:
    assert [f.name for f in dataclasses.fields(Event)] == [
        "family", "type", "event_type", "message_type", "conversation_id", "replica_id", "video_id", "time", "valid",
        "errors", "details"]


def test_json_schema_has_a_details_model_per_type() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    by_type = schema["x-details-by-type"]
    for event_type in CONVERSATION_TYPES:
        assert f"io.tavus.conversation.{event_type}" in by_type
    for type_ in ("io.tavus.guardrail.triggered", "io.tavus.objective.completed", "io.tavus.replica.*",
                  "io.tavus.video.*", "io.tavus.conversation.*"):
        assert type_ in by_type
    for ref in by_type.values():
        assert ref.removeprefix("#/$defs/") in schema["$defs"]
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(Event)}
    assert orjson.loads(orjson.dumps(schema)) == schema


def test_json_schema_rejects_details_that_break_the_contract() -> None:
    good = normalize(load_event("conversation.system.shutdown.internal_error")).model_dump(mode="json")
    EVENT_SCHEMA.validate(good)
    bad = {**good, "details": {**good["details"], "shutdown_code": "not_a_code"}}
    with pytest.raises(jsonschema.ValidationError):
        EVENT_SCHEMA.validate(bad)
    missing = {**good, "details": {"replica_id": R}}
    with pytest.raises(jsonschema.ValidationError):
        EVENT_SCHEMA.validate(missing)
    # An invalid event's details are free-form salvage.
    EVENT_SCHEMA.validate({**missing, "valid": False, "errors": ["x"]})
    unknown = normalize(load_event("conversation.unknown_event_type")).model_dump(mode="json")
    EVENT_SCHEMA.validate(unknown)
    with pytest.raises(jsonschema.ValidationError):
        EVENT_SCHEMA.validate({**unknown, "details": {"summary": "no properties key"}})


FAMILY_DEFS = {"conversation": "ConversationCallback", "guardrail": "GuardrailPayload",
               "objective": "ObjectivePayload", "replica_training": "ReplicaTrainingPayload",
               "video_generation": "VideoGenerationPayload"}


@pytest.mark.parametrize("name", [n for n in ALL_FILES if not n.startswith("unrecognized")])
def test_every_recorded_payload_matches_its_family_in_the_payload_schema(name: str) -> None:
    payload = load_event(name)
    payload_validator(f"#/$defs/{FAMILY_DEFS[family_of(payload)]}").validate(payload)
    if payload.get("event_type") in CONVERSATION_TYPES:
        payload_validator(PAYLOAD_SCHEMA["x-properties-by-event-type"][payload["event_type"]]).validate(
            payload["properties"])


@functools.cache
def payload_validator(ref: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": ref, "$defs": PAYLOAD_SCHEMA["$defs"]})


def test_the_events_folders_hold_only_payloads() -> None:
    for folder in (SAMPLES_DIR, EVENTS_DIR):
        assert {p.suffix for p in Path(folder).iterdir() if p.is_file()} <= {".json", ".md"}
    assert len(ALL_FILES) >= 29
    assert not {p.name for p in SAMPLES_DIR.glob("*.json")} & {p.name for p in EVENTS_DIR.glob("*.json")}, \
        "a payload is either a sample of the package or test-only, not both"


def test_every_sample_of_the_registry_is_a_valid_event_of_its_entry() -> None:
    samples = [(kind, sample) for kind in KINDS for sample in kind.samples]
    assert {sample.file for _, sample in samples} == {p.name for p in SAMPLES_DIR.glob("*.json")}, \
        "every file in samples/ is an entry's sample, and every sample has its file"
    assert len({sample.name for _, sample in samples}) == len(samples)
    for kind, sample in samples:
        event = normalize(sample.payload())
        assert event.valid and kind_of(event.type) is kind, sample.file


# --- raw values copied into details stay serializable ------------------------------------------------


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.fixture
def deep_recursion() -> Iterator[None]:
    """The standard json module recurses once per level: give it room for 1,000 (Python 3.11's limit is 1,000)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    yield
    sys.setrecursionlimit(limit)


@pytest.mark.parametrize(("name", "place", "extra"), [
    # extra: the levels between the details entry and the nested value
    ("conversation.unknown_event_type", ("properties",), 0),
    ("conversation.unknown_event_type", ("properties", "sentiment"), 1),
    ("objective", ("output_variables", "email"), 1),
    ("conversation.application.post_call_action_executed", ("properties", "request"), 0),
    ("conversation.application.post_call_action_executed", ("properties", "response"), 0),
    ("conversation.application.perception_analysis", ("properties", "analysis"), 0),
])
@pytest.mark.usefixtures("deep_recursion")
@pytest.mark.parametrize("depth", [100, 101, 1000])
def test_values_nested_too_deep_for_a_serializer_are_kept_in_the_payload_only(
        name: str, place: tuple[str, ...], extra: int, depth: int) -> None:
    payload = load_event(name)
    target = payload
    for key in place[:-1]:
        target = target[key]
    target[place[-1]] = nested(depth)
    decoded = orjson.loads(json.dumps(payload))  # what the pipeline decodes: orjson accepts up to 1024 levels
    event = normalize(decoded)
    record = build_record(decoded, event, Layout())
    assert json.loads(record.body)["data"]["payload"] == decoded
    too_deep = depth + extra > MAX_DETAIL_DEPTH
    assert event.valid is not too_deep
    if too_deep:
        assert len(event.errors) == 1 and "nested deeper than 100 levels" in event.errors[0]
